//! [`Notifier`]: the library's Rust API, which every host surface wraps. A hook call
//! classifies, admits the event into its webhooks' bounded queues and returns; rendering,
//! signing and HTTP all happen on the background runtime (see `engine/`).
//!
//! A notifier either owns its engine ([`Notifier::new`]: C and Go handles, Rust hosts) or
//! attaches to the process-wide engine of its config ([`Notifier::shared`]: Python plugin
//! instances, which the gateway replaces every 30 s).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::events::{classify_facts, notification, Context, Event, Hook};
use crate::payload::PayloadFacts;
use crate::render::Job;
use crate::stats::Stats;
use crate::store::DeadLetter;

/// `{{plugin_name}}` when the host names none.
pub const DEFAULT_PLUGIN_NAME: &str = "WebhookNotification";

/// Sends webhook notifications for one plugin instance. Safe to share between threads.
/// Dropping an owning notifier closes it (waiting at most `shutdown_timeout`); dropping a
/// shared one detaches it.
pub struct Notifier {
    engine: Arc<Engine>,
    /// `Some(detached)` for a notifier attached to a shared engine.
    shared: Option<AtomicBool>,
}

/// What a hook call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submission {
    /// The event raised, if any.
    pub event: Option<Event>,
    /// Whether it was queued for at least one webhook (false: no subscriber, or full queues).
    pub queued: bool,
}

impl Submission {
    /// A call that raised no event (a quiet pre-hook, or a hook no webhook takes).
    pub const NONE: Submission = Submission {
        event: None,
        queued: false,
    };
}

impl Notifier {
    /// Starts a notifier with an engine of its own; `plugin_name` fills `{{plugin_name}}`.
    /// Fails only when a durable outbox cannot be opened (naming `outbox.path`).
    pub fn new(config: Config, plugin_name: Option<&str>) -> Result<Self> {
        let engine = Engine::start(config, plugin_name.unwrap_or(DEFAULT_PLUGIN_NAME))?;
        Ok(Notifier { engine, shared: None })
    }

    /// Attaches to the process-wide engine of this config and plugin name (started if
    /// none runs): its queues, counters and breakers outlive this notifier, whose
    /// [`close`](Self::close) only detaches.
    pub fn shared(config: Config, plugin_name: Option<&str>) -> Result<Self> {
        let engine = Engine::attach(config, plugin_name.unwrap_or(DEFAULT_PLUGIN_NAME))?;
        Ok(Notifier {
            engine,
            shared: Some(AtomicBool::new(false)),
        })
    }

    /// Loads `config_text` (YAML or JSON) and starts a notifier with its own engine.
    pub fn from_config_text(config_text: &str, plugin_name: Option<&str>) -> Result<Self> {
        Self::new(Config::load(config_text)?, plugin_name)
    }

    /// Handles one gateway hook call: `payload` is the cpex payload of `hook`, `context` a
    /// cpex PluginContext or bare global context (see [`Context::from_json`]). Never waits
    /// on the network.
    pub fn invoke(&self, hook: Hook, payload: Value, context: &Value) -> Result<Submission> {
        if !self.wants_hook(hook) {
            return self.invoke_in(hook, Value::Null, Context::default()); // nothing to read
        }
        self.invoke_in(hook, payload, Context::from_json(context)?)
    }

    /// Whether some enabled webhook takes an event that a call of `hook` can raise. When none
    /// does, a call is answered at once with no event, its payload and context unread: hosts
    /// may skip building them (the Lua module asks once per hook).
    pub fn wants_hook(&self, hook: Hook) -> bool {
        self.engine.config().wants_hook(hook)
    }

    /// [`invoke`](Self::invoke) for hosts that read the context's fields themselves.
    pub fn invoke_in(&self, hook: Hook, payload: Value, context: Context) -> Result<Submission> {
        let facts = PayloadFacts::of(&payload, hook.subject_field(), hook.reads_result());
        self.invoke_facts(hook, facts, Some(payload), context)
    }

    /// [`invoke_in`](Self::invoke_in) with the payload as JSON text (what C, Go and Lua hosts
    /// pass; `payload_json` in errors): unless the config includes payloads
    /// (`include_payload_data`), only the members classification reads are built — a tool's
    /// result of many kilobytes is checked, not copied into a document.
    pub fn invoke_text(&self, hook: Hook, payload_json: &str, context: Context) -> Result<Submission> {
        if !self.wants_hook(hook) {
            return self.invoke_in(hook, Value::Null, context); // nothing to read
        }
        let named = |e: serde_json::Error| Error::Parse(format!("payload_json: {e}"));
        if self.engine.config().include_payload_data {
            let payload = serde_json::from_str(payload_json).map_err(named)?;
            return self.invoke_in(hook, payload, context);
        }
        let facts = PayloadFacts::from_text(payload_json, hook.subject_field(), hook.reads_result())
            .map_err(named)?;
        self.invoke_facts(hook, facts, None, context)
    }

    /// Queues the event `facts` and `context` raise, with `payload` when the config includes
    /// payloads and it fits.
    fn invoke_facts(
        &self,
        hook: Hook,
        facts: PayloadFacts,
        payload: Option<Value>,
        context: Context,
    ) -> Result<Submission> {
        self.ensure_attached()?;
        if !self.wants_hook(hook) {
            return Ok(Submission::NONE);
        }
        let Some((event, metadata)) = classify_facts(hook, facts, &context) else {
            return Ok(Submission::NONE);
        };
        let config = self.engine.config();
        let payload = payload
            .filter(|_| config.include_payload_data)
            .filter(|p| json_fits(p, config.max_payload_size));
        let queued = self.engine.admit(Job::new(event, context, metadata, payload))?;
        Ok(Submission {
            event: Some(event),
            queued,
        })
    }

    /// Raises `event` directly (e.g. a host's own policy decision). `violation`, when given
    /// and not null, replaces any violation in `context` (a non-object becomes
    /// `{"reason": …}`, as everywhere); `metadata` must be an object. Returns whether the
    /// event was queued for at least one webhook.
    pub fn notify(
        &self,
        event: Event,
        context: &Value,
        violation: Option<Value>,
        metadata: Option<Value>,
    ) -> Result<bool> {
        self.ensure_attached()?;
        let (context, metadata) = notification(context, violation, metadata)?;
        self.engine.admit(Job::new(event, context, metadata, None))
    }

    /// Adds a silence to the outbox's store — `{"matchers": ["tool=search", "tenant!=t1"],
    /// "duration": "2h"}` (or `starts_at`/`ends_at` in RFC 3339; `created_by`, `comment`) —
    /// and returns its id. Events matching an active silence are sent to no webhook. Mistakes
    /// and limits are [`Error::InvalidArgument`]; a store out of reach is a config error at
    /// `outbox`. Talks to the store: call it from an admin path, not a hook.
    pub fn silence(&self, spec: &Value) -> Result<String> {
        self.ensure_attached()?;
        self.engine.silence(spec)
    }

    /// The silences not yet ended (active or pending), as JSON objects.
    pub fn silences(&self) -> Result<Vec<Value>> {
        self.ensure_attached()?;
        self.engine.silences()
    }

    /// Ends the silence `id` now.
    pub fn expire_silence(&self, id: &str) -> Result<()> {
        self.ensure_attached()?;
        self.engine.expire_silence(id)
    }

    /// Blocks until nothing is queued or in flight, or `timeout` passes; true when drained.
    /// A huge timeout (e.g. `Duration::MAX`) means no deadline. Call it from a plain
    /// thread (or `spawn_blocking`), not from inside an async task.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.engine.flush(timeout)
    }

    /// Owning notifier: stops accepting events, delivers what is pending for at most
    /// `timeout`, then abandons the rest (counted as dropped) and returns
    /// [`Error::Timeout`]. Shared notifier: detaches at once (the engine keeps delivering).
    /// Idempotent.
    pub fn close(&self, timeout: Duration) -> Result<()> {
        match &self.shared {
            Some(detached) => {
                if !detached.swap(true, SeqCst) {
                    self.engine.detach();
                }
                Ok(())
            }
            None => self.engine.close(timeout),
        }
    }

    /// Whether `close` was called (for a shared notifier: whether it detached).
    pub fn is_closed(&self) -> bool {
        match &self.shared {
            Some(detached) => detached.load(SeqCst),
            None => self.engine.is_closed(),
        }
    }

    /// Whether this notifier was created in a parent process before `fork()`: it refuses
    /// events (its delivery tasks did not survive the fork); create a new one.
    pub fn is_forked(&self) -> bool {
        self.engine.is_forked()
    }

    /// A snapshot of the delivery counters (of the shared engine, for a shared notifier).
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// The engine's metrics in the Prometheus text format 0.0.4 (labels `plugin`, `webhook`
    /// (the id), `event`, `outcome`; never a URL).
    pub fn metrics(&self) -> String {
        self.engine.metrics()
    }

    /// Counts a hook call whose host data could not be turned into an event (hosts that
    /// convert data themselves report it); returns the count so far, for paced logging.
    pub fn count_host_error(&self) -> u64 {
        self.engine.host_error()
    }

    /// Dead letters of the webhook with id `webhook`, or of all webhooks.
    pub fn dead_letters(&self, webhook: Option<&str>) -> Result<Vec<DeadLetter>> {
        self.engine.dead_letters(webhook)
    }

    /// Sends the dead letters of `webhook` (or all) again with their delivery ids; returns
    /// how many were queued.
    pub fn replay_dead_letters(&self, webhook: Option<&str>) -> Result<usize> {
        self.ensure_attached()?;
        self.engine.replay_dead_letters(webhook)
    }

    /// Whether templates may use `{{payload}}` (`include_payload_data`); hosts may skip
    /// serialising payloads when it is false.
    pub fn includes_payload_data(&self) -> bool {
        self.engine.config().include_payload_data
    }

    /// The configured `max_payload_size`: a payload whose JSON is larger renders as null.
    pub fn max_payload_size(&self) -> usize {
        self.engine.config().max_payload_size
    }

    /// Identifies the engine (shared notifiers of one config have the same): stable while the
    /// engine lives, never the same as another live engine's.
    pub fn engine_id(&self) -> usize {
        Arc::as_ptr(&self.engine) as usize
    }

    /// The configured `shutdown_timeout`.
    pub fn shutdown_timeout(&self) -> Duration {
        self.engine.config().shutdown_timeout
    }

    fn ensure_attached(&self) -> Result<()> {
        match &self.shared {
            Some(detached) if detached.load(SeqCst) => Err(Error::Closed),
            _ => Ok(()),
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if !self.is_closed() && !self.is_forked() {
            let _ = self.close(self.shutdown_timeout());
        }
    }
}

/// Whether `value`'s compact JSON is at most `limit` bytes; stops writing at the limit, so
/// a huge payload costs no more than `limit` bytes of work.
fn json_fits(value: &Value, limit: usize) -> bool {
    struct Budget(usize);
    impl Write for Budget {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 = self
                .0
                .checked_sub(bytes.len())
                .ok_or(std::io::ErrorKind::WriteZero)?;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Budget(limit), value).is_ok()
}

#[cfg(test)]
#[path = "../tests/common/receiver.rs"]
mod receiver;

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::receiver;
    use super::*;
    use crate::template::Template;

    /// Dropping a notifier releases it: no cycle between it, its queued tickets and its
    /// tasks keeps it (and its HTTP client) alive.
    #[test]
    fn a_dropped_notifier_is_freed() {
        let rx = receiver::Receiver::ok();
        let config = format!("webhooks: [{{url: '{}', events: [violation]}}]", rx.url("/"));
        let n = Notifier::from_config_text(&config, None).unwrap();
        let weak = Arc::downgrade(&n.engine);
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
    /// JSON check still guards every body: a failure becomes one plugin_error per event
    /// (not one per subscribed webhook), never a bad request.
    #[test]
    fn a_body_that_is_not_json_raises_one_plugin_error_instead() {
        let rx = receiver::Receiver::ok();
        let yaml = format!(
            "webhooks:\n  - {{url: '{0}', events: [violation]}}\n  - {{url: '{0}?2', events: [violation]}}\n  - {{url: '{0}?3', events: [violation]}}\n  - {{url: '{1}', events: [plugin_error]}}\n",
            rx.url("/violations"),
            rx.url("/errors")
        );
        let mut config = Config::load(&yaml).unwrap();
        let broken = Template::compile(r#"{"user": "{{user}}"} trailing"#).unwrap();
        config.set_template_unchecked(Event::Violation, broken);
        let n = Notifier::new(config, None).unwrap();
        let context = json!({"request_id": "req-9", "user": "u"});
        assert!(n
            .notify(Event::Violation, &context, Some(json!({"reason": "r"})), None)
            .unwrap());
        assert!(n.flush(Duration::from_secs(10)));
        let got = rx.received();
        assert_eq!(got.len(), 1, "{got:?}");
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
        let failed: Vec<u64> = s.webhooks.iter().map(|w| w.failed).collect();
        assert_eq!((failed, s.webhooks[3].delivered), (vec![1, 1, 1, 0], 1));
    }

    /// A panic on the fleet-exchange thread is caught and counted, and exchanges go on: the
    /// digest message of the group still arrives (needs the suite's Redis).
    #[test]
    fn a_panic_in_a_fleet_exchange_is_counted_and_exchanges_go_on() {
        let Ok(redis) = std::env::var("WEBHOOK_TEST_REDIS_URL") else {
            eprintln!("skipped: WEBHOOK_TEST_REDIS_URL is not set (tests/run.sh sets it)");
            return;
        };
        let rx = receiver::Receiver::ok();
        let key = format!("exchange-panic-{}", uuid::Uuid::new_v4().simple());
        let config = format!(
            "outbox: {{type: redis, url: '{redis}', key: '{key}'}}\nwebhooks: [{{url: '{}', events: [violation], digest: {{group_by: [event], group_wait: 200ms}}}}]",
            rx.url("/")
        );
        let n = Notifier::from_config_text(&config, None).unwrap();
        n.engine.inject_panic(3);
        n.notify(Event::Violation, &json!({}), None, None).unwrap();
        let arrived = rx.wait_for(1, Duration::from_secs(20));
        assert_eq!(arrived[0].json()["digest"]["count"], 1);
        assert_eq!(n.stats().internal_errors, 1);
        n.close(Duration::from_secs(5)).unwrap();
    }

    /// A panic in the task that holds deliveries (routing, or an attempt) still ends each of
    /// them in the stats, and the engine keeps working afterwards.
    #[test]
    fn deliveries_lost_to_a_panic_are_counted_as_dropped() {
        let rx = receiver::Receiver::ok();
        let config = format!(
            "webhooks: [{{url: '{0}', events: [violation]}}, {{url: '{0}?b', events: [violation]}}]",
            rx.url("/")
        );
        for (stage, lost) in [(1, 2), (2, 1)] {
            let n = Notifier::from_config_text(&config, None).unwrap();
            n.engine.inject_panic(stage);
            assert!(n.notify(Event::Violation, &json!({}), None, None).unwrap());
            assert!(n.flush(Duration::from_secs(10)), "stage {stage}: still pending");
            let s = n.stats();
            assert_eq!(s.dropped, lost, "stage {stage}: {s:?}");
            assert_eq!(s.internal_errors, u64::from(stage == 1), "stage {stage}: {s:?}");
            assert_eq!(s.delivered + s.dropped, 2, "stage {stage}: {s:?}");
            n.notify(Event::Violation, &json!({}), None, None).unwrap();
            assert!(n.flush(Duration::from_secs(10)));
            let after = n.stats();
            assert_eq!(after.delivered, s.delivered + 2, "the engine still delivers");
            n.close(Duration::from_secs(1)).unwrap();
        }
    }
}
