//! [`Notifier`]: the library's Rust API, which every host surface wraps. A hook call
//! classifies, admits the event into a bounded queue and returns; rendering, signing and HTTP
//! all happen on the background runtime.
//!
//! Each webhook has a lane: an unbounded channel (bounded overall by `queue_capacity`, which
//! admission enforces) drained by one dispatcher task that starts a delivery whenever one of
//! the webhook's `max_concurrency` in-flight slots is free. A queued event costs only its
//! shared variables; a delivery waiting to retry gives its slot back and costs a small task.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::{error, warn};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::delivery::{self, Delivery, RUNTIME};
use crate::error::{Error, Result};
use crate::events::{classify, Context, Event, Hook};
use crate::stats::{Stats, WebhookCounters};
use crate::template::Template;

/// `{{plugin_name}}` when the host names none.
pub const DEFAULT_PLUGIN_NAME: &str = "WebhookNotification";

/// Sends webhook notifications for one plugin instance. Safe to share between threads.
/// Dropping it closes it (waiting at most `shutdown_timeout` for pending deliveries).
pub struct Notifier {
    inner: Arc<Inner>,
}

/// What a hook call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submission {
    /// The event raised, if any.
    pub event: Option<Event>,
    /// Whether it was queued for at least one webhook (false: no subscriber, or queue full).
    pub queued: bool,
}

struct Inner {
    config: Config,
    plugin_name: String,
    client: reqwest::Client,
    counters: Vec<WebhookCounters>,
    /// One sender per webhook, to its dispatcher.
    lanes: Vec<mpsc::UnboundedSender<Ticket>>,
    /// Events admitted and not yet fully delivered (bounded by `queue_capacity`).
    queued_events: AtomicUsize,
    /// Deliveries queued or in flight; `flush` waits for zero.
    pending: AtomicU64,
    idle_lock: Mutex<()>,
    idle: Condvar,
    dropped_events: AtomicU64,
    closed: AtomicBool,
    /// Set to true when `close` gives up waiting: every delivery still queued or running
    /// abandons.
    abandon: watch::Sender<bool>,
}

/// An event on its way to its webhooks, before its variables are assembled.
struct Job {
    event: Event,
    timestamp: String,
    context: Context,
    metadata: Map<String, Value>,
    payload: Option<Value>,
    /// The library's own plugin_error: rendered with the built-in default template.
    builtin_template: bool,
}

/// An admitted event, shared by its deliveries; dropping it frees its queue slot.
struct Prepared {
    event: Event,
    builtin_template: bool,
    /// Taken by the first delivery that needs the variables (on the runtime, not the host).
    job: Mutex<Option<Job>>,
    vars: OnceLock<Map<String, Value>>,
    /// The body, rendered once for all webhooks when the template has no `{{delivery_id}}`.
    shared_body: OnceLock<Result<Bytes, String>>,
    inner: Arc<Inner>,
}

/// One delivery of an event to webhook `index`, queued or running; dropping it (delivered,
/// failed, abandoned or panicked) counts it out of `pending`.
struct Ticket {
    prepared: Arc<Prepared>,
    index: usize,
}

impl Notifier {
    /// Starts a notifier for a loaded config; `plugin_name` fills `{{plugin_name}}`.
    pub fn new(config: Config, plugin_name: Option<&str>) -> Self {
        let max_idle = config
            .webhooks
            .iter()
            .map(|w| w.max_concurrency)
            .max()
            .unwrap_or(1);
        let (lanes, receivers): (Vec<_>, Vec<_>) =
            config.webhooks.iter().map(|_| mpsc::unbounded_channel()).unzip();
        let inner = Arc::new(Inner {
            plugin_name: plugin_name.unwrap_or(DEFAULT_PLUGIN_NAME).to_owned(),
            client: delivery::client(max_idle),
            counters: config
                .webhooks
                .iter()
                .map(|_| WebhookCounters::default())
                .collect(),
            lanes,
            config,
            queued_events: AtomicUsize::new(0),
            pending: AtomicU64::new(0),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
            dropped_events: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            abandon: watch::Sender::new(false),
        });
        for (index, receiver) in receivers.into_iter().enumerate() {
            let slots = Arc::new(Semaphore::new(inner.config.webhooks[index].max_concurrency));
            RUNTIME.spawn(dispatch(receiver, slots, inner.abandon.subscribe()));
        }
        Notifier { inner }
    }

    /// Loads `config_text` (YAML or JSON) and starts a notifier.
    pub fn from_config_text(config_text: &str, plugin_name: Option<&str>) -> Result<Self> {
        Ok(Self::new(Config::load(config_text)?, plugin_name))
    }

    /// Handles one gateway hook call: `payload` is the cpex payload of `hook`, `context` a
    /// cpex PluginContext or bare global context (see [`Context::from_json`]). Never waits
    /// on the network.
    pub fn invoke(&self, hook: Hook, payload: Value, context: &Value) -> Result<Submission> {
        self.ensure_open()?;
        let context = Context::from_json(context)?;
        let Some((event, metadata)) = classify(hook, &payload, &context) else {
            return Ok(Submission {
                event: None,
                queued: false,
            });
        };
        let payload = self.inner.config.include_payload_data.then_some(payload);
        let queued = self
            .inner
            .submit(Job::new(event, context, metadata, payload, false));
        Ok(Submission {
            event: Some(event),
            queued,
        })
    }

    /// Raises `event` directly (e.g. a host's own policy decision). `violation`, when given,
    /// replaces any violation in `context`; `metadata` must be an object. Returns whether
    /// the event was queued for at least one webhook.
    pub fn notify(
        &self,
        event: Event,
        context: &Value,
        violation: Option<Value>,
        metadata: Option<Value>,
    ) -> Result<bool> {
        self.ensure_open()?;
        let mut context = Context::from_json(context)?;
        if let Some(v) = violation.filter(|v| !v.is_null()) {
            if !v.is_object() {
                return Err(Error::Parse("violation must be a JSON object".into()));
            }
            context.violation = Some(v);
        }
        let metadata = match metadata {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(Error::Parse("metadata must be a JSON object".into())),
        };
        Ok(self.inner.submit(Job::new(event, context, metadata, None, false)))
    }

    /// Blocks until nothing is queued or in flight, or `timeout` passes; true when drained.
    /// Call it from a plain thread (or `spawn_blocking`), not from inside an async task.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.inner.wait_idle(timeout)
    }

    /// Stops accepting events, delivers what is pending for at most `timeout`, then abandons
    /// the rest (counted as dropped) and returns [`Error::Timeout`]. Idempotent.
    pub fn close(&self, timeout: Duration) -> Result<()> {
        self.inner.closed.store(true, SeqCst);
        if self.inner.wait_idle(timeout) {
            return Ok(());
        }
        let pending = self.inner.pending.load(SeqCst);
        self.inner.abandon.send_replace(true);
        // Abandoned deliveries stop at their next await point; wait for their counts.
        self.inner.wait_idle(Duration::from_secs(1));
        Err(Error::Timeout { pending })
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(SeqCst)
    }

    /// A snapshot of the delivery counters.
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        let webhooks = inner.config.webhooks.iter().zip(&inner.counters);
        let webhooks = webhooks.map(|(w, c)| c.snapshot(&w.redacted_url)).collect();
        Stats::new(inner.pending.load(SeqCst), webhooks)
    }

    /// Whether templates may use `{{payload}}` (`include_payload_data`); hosts may skip
    /// serialising large payloads when it is false.
    pub fn includes_payload_data(&self) -> bool {
        self.inner.config.include_payload_data
    }

    /// The configured `shutdown_timeout`.
    pub fn shutdown_timeout(&self) -> Duration {
        self.inner.config.shutdown_timeout
    }

    fn ensure_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if !self.is_closed() {
            let _ = self.close(self.shutdown_timeout());
        }
    }
}

/// A webhook's dispatcher: starts each queued delivery when a slot is free, or drops it once
/// `close` has abandoned the queue. It holds no reference to the notifier (each ticket
/// does), so it ends when the notifier is gone and its sender with it.
async fn dispatch(
    mut queue: mpsc::UnboundedReceiver<Ticket>,
    slots: Arc<Semaphore>,
    mut abandon: watch::Receiver<bool>,
) {
    while let Some(ticket) = queue.recv().await {
        let slot = tokio::select! {
            biased;
            _ = abandon.wait_for(|abandon| *abandon) => None,
            slot = Arc::clone(&slots).acquire_owned() => slot.ok(),
        };
        let inner = Arc::clone(&ticket.prepared.inner);
        match slot {
            Some(slot) => {
                let slots = Arc::clone(&slots);
                tokio::spawn(async move { inner.deliver(ticket, &slots, slot).await });
            }
            None => inner.counters[ticket.index].dropped(1),
        }
    }
}

impl Job {
    fn new(
        event: Event,
        context: Context,
        metadata: Map<String, Value>,
        payload: Option<Value>,
        builtin_template: bool,
    ) -> Self {
        let timestamp = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        Job {
            event,
            timestamp,
            context,
            metadata,
            payload,
            builtin_template,
        }
    }

    /// The template variables (all but `delivery_id`, which differs per webhook).
    fn vars(self, inner: &Inner) -> Map<String, Value> {
        let c = self.context;
        let payload = self.payload.filter(|p| {
            serde_json::to_vec(p).is_ok_and(|bytes| bytes.len() <= inner.config.max_payload_size)
        });
        let mut vars = Map::with_capacity(10);
        vars.insert("event".into(), self.event.name().into());
        vars.insert("plugin_name".into(), inner.plugin_name.clone().into());
        vars.insert("timestamp".into(), self.timestamp.into());
        vars.insert("request_id".into(), c.request_id);
        vars.insert("user".into(), c.user);
        vars.insert("tenant_id".into(), c.tenant_id);
        vars.insert("server_id".into(), c.server_id);
        vars.insert("violation".into(), c.violation.unwrap_or(Value::Null));
        vars.insert("metadata".into(), Value::Object(self.metadata));
        vars.insert("payload".into(), payload.unwrap_or(Value::Null));
        vars
    }
}

impl Prepared {
    fn vars(&self) -> &Map<String, Value> {
        self.vars.get_or_init(|| {
            let job = self
                .job
                .lock()
                .expect("job lock")
                .take()
                .expect("the job is taken once");
            job.vars(&self.inner)
        })
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        self.inner.queued_events.fetch_sub(1, SeqCst);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let inner = &self.prepared.inner;
        if inner.pending.fetch_sub(1, SeqCst) == 1 {
            let _lock = inner.idle_lock.lock().expect("idle lock");
            inner.idle.notify_all();
        }
    }
}

/// Renders `template` with the event's variables (and `delivery_id`, if it uses it) and
/// checks that the result parses as JSON.
fn render_json(template: &Template, prepared: &Prepared, delivery_id: Option<&str>) -> Result<Bytes, String> {
    let id = delivery_id.map(|id| Value::String(id.to_owned()));
    let vars = prepared.vars();
    let body = template.render(|name| match name {
        "delivery_id" => id.as_ref(),
        _ => vars.get(name),
    })?;
    serde_json::from_str::<serde::de::IgnoredAny>(&body).map_err(|e| {
        format!(
            "the {} template rendered invalid JSON: {e}",
            prepared.event.name()
        )
    })?;
    Ok(Bytes::from(body))
}

impl Inner {
    /// Admits `job` for its subscribed webhooks without blocking; false if nobody wants it
    /// or the queue is full (then each subscriber counts a drop).
    fn submit(self: &Arc<Self>, job: Job) -> bool {
        let wants = |i: &usize| self.config.webhooks[*i].wants(job.event);
        let targets: Vec<usize> = (0..self.config.webhooks.len()).filter(wants).collect();
        if targets.is_empty() {
            return false;
        }
        if self.queued_events.fetch_add(1, SeqCst) >= self.config.queue_capacity {
            self.queued_events.fetch_sub(1, SeqCst);
            targets.iter().for_each(|&i| self.counters[i].dropped(1));
            let dropped = self.dropped_events.fetch_add(1, Relaxed) + 1;
            if dropped.is_power_of_two() {
                warn!(
                    "webhook queue full ({} events): {dropped} events dropped so far",
                    self.config.queue_capacity
                );
            }
            return false;
        }
        self.pending.fetch_add(targets.len() as u64, SeqCst);
        let prepared = Arc::new(Prepared {
            event: job.event,
            builtin_template: job.builtin_template,
            job: Mutex::new(Some(job)),
            vars: OnceLock::new(),
            shared_body: OnceLock::new(),
            inner: Arc::clone(self),
        });
        for index in targets {
            let ticket = Ticket {
                prepared: Arc::clone(&prepared),
                index,
            };
            // The receiver lives as long as the notifier; a failed send drops (and counts) it.
            let _ = self.lanes[index].send(ticket);
        }
        true
    }

    /// Renders and delivers one ticket, unless `close` abandons it.
    async fn deliver(&self, ticket: Ticket, slots: &Arc<Semaphore>, first_slot: OwnedSemaphorePermit) {
        let (prepared, index) = (&ticket.prepared, ticket.index);
        let counters = &self.counters[index];
        let id = uuid::Uuid::new_v4().to_string();
        let body = match self.render(prepared, &id) {
            Ok(body) => body,
            Err(e) => {
                error!(
                    "{} {} delivery {id}: {e}",
                    self.config.webhooks[index].redacted_url,
                    prepared.event.name()
                );
                counters.failed(None, e.clone());
                return self.report_plugin_error(prepared, e);
            }
        };
        let delivery = Delivery {
            client: &self.client,
            webhook: &self.config.webhooks[index],
            counters,
            slots,
            event: prepared.event,
            id: &id,
            body,
        };
        let mut abandon = self.abandon.subscribe();
        tokio::select! {
            biased;
            _ = abandon.wait_for(|abandon| *abandon) => counters.dropped(1),
            _ = delivery.run(first_slot) => {}
        }
    }

    /// The body for one delivery: the event's template rendered, and proven to be JSON.
    fn render(&self, prepared: &Prepared, delivery_id: &str) -> Result<Bytes, String> {
        let template = match prepared.builtin_template {
            true => Template::builtin(),
            false => self.config.template(prepared.event),
        };
        if !template.varies_per_delivery() {
            let shared = prepared
                .shared_body
                .get_or_init(|| render_json(template, prepared, None));
            return shared.clone();
        }
        render_json(template, prepared, Some(delivery_id))
    }

    /// Raises plugin_error (built-in template, `metadata.error`) for an event that could not
    /// be rendered; a plugin_error that fails itself is only logged, so nothing loops.
    fn report_plugin_error(&self, failed: &Prepared, error: String) {
        if failed.event == Event::PluginError || self.closed.load(SeqCst) {
            return;
        }
        let vars = failed.vars();
        let var = |name: &str| vars.get(name).cloned().unwrap_or(Value::Null);
        let context = Context {
            request_id: var("request_id"),
            user: var("user"),
            tenant_id: var("tenant_id"),
            server_id: var("server_id"),
            violation: None,
        };
        let metadata = json!({"error": error, "event": failed.event.name()});
        let metadata = metadata.as_object().cloned().unwrap_or_default();
        Arc::clone(&failed.inner).submit(Job::new(Event::PluginError, context, metadata, None, true));
    }

    fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut lock = self.idle_lock.lock().expect("idle lock");
        while self.pending.load(SeqCst) > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            lock = self.idle.wait_timeout(lock, left).expect("idle lock").0;
        }
        true
    }
}

#[cfg(test)]
#[path = "../tests/common/receiver.rs"]
mod receiver;

#[cfg(test)]
mod tests {
    use super::receiver;
    use super::*;

    /// Dropping a notifier releases it: no cycle between it, its queued tickets and its
    /// dispatchers keeps it (and its HTTP client) alive.
    #[test]
    fn a_dropped_notifier_is_freed() {
        let rx = receiver::Receiver::ok();
        let config = format!("webhooks: [{{url: '{}', events: [violation]}}]", rx.url("/"));
        let n = Notifier::from_config_text(&config, None).unwrap();
        let weak = Arc::downgrade(&n.inner);
        for _ in 0..10 {
            n.notify(Event::Violation, &json!({}), None, None).unwrap();
        }
        drop(n);
        assert_eq!(rx.received().len(), 10, "drop drained the queue first");
        let deadline = Instant::now() + Duration::from_secs(5);
        while weak.upgrade().is_some() {
            assert!(
                Instant::now() < deadline,
                "the notifier is still alive after drop"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Load-time checks make a broken template impossible from config, but the render-time
    /// JSON check still guards every body: a failure becomes plugin_error, not a bad request.
    #[test]
    fn a_body_that_is_not_json_raises_plugin_error_instead() {
        let rx = receiver::Receiver::ok();
        let yaml = format!(
            "webhooks:\n  - {{url: '{}', events: [violation]}}\n  - {{url: '{}', events: [plugin_error]}}\n",
            rx.url("/violations"),
            rx.url("/errors")
        );
        let mut config = Config::load(&yaml).unwrap();
        let broken = Template::compile(r#"{"user": "{{user}}"} trailing"#).unwrap();
        config.set_template_unchecked(Event::Violation, broken);
        let n = Notifier::new(config, None);
        let context = json!({"request_id": "req-9", "user": "u"});
        assert!(n
            .notify(Event::Violation, &context, Some(json!({"reason": "r"})), None)
            .unwrap());
        assert!(n.flush(Duration::from_secs(10)));
        let got = rx.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "/errors");
        let v = got[0].json();
        assert_eq!(
            (v["event"].clone(), v["request_id"].clone()),
            (json!("plugin_error"), json!("req-9"))
        );
        assert_eq!(v["metadata"]["event"], "violation");
        assert!(
            v["metadata"]["error"].as_str().unwrap().contains("invalid JSON"),
            "{v}"
        );
        let s = n.stats();
        assert_eq!((s.webhooks[0].failed, s.webhooks[1].delivered), (1, 1));
    }
}
