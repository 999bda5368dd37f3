//! The delivery engine behind one config: admission (on the host's thread, microseconds),
//! then on the background runtime an intake task that renders each event once and queues
//! one ticket per subscribed webhook in the outbox, and one dispatcher per webhook (see
//! `dispatch.rs`). Each webhook has its own queue bound, breaker and rate, so one dead
//! receiver never costs another a notification.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::{error, warn};
use reqwest::Client;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch, Notify};
use uuid::Uuid;

use crate::breaker::Breaker;
use crate::config::{Config, OutboxConfig};
use crate::delivery;
use crate::error::{Error, Result};
use crate::events::{Context, Event};
use crate::ledger::{Ledger, Ticket};
use crate::metrics::{exposition, Outcome, WebhookMetrics};
use crate::outbox::{DeadLetter, DiskOutbox, MemoryOutbox, Outbox, RedisOutbox, Released, Resumed, ORPHAN};
use crate::runtime;
use crate::stats::{Stats, WebhookLabels};
use crate::template::Template;

/// An event on its way to its webhooks, before its variables are assembled.
pub(crate) struct Job {
    pub event: Event,
    /// When the hook raised it (formatted on the runtime thread, not the hook's).
    pub raised: std::time::SystemTime,
    pub context: Context,
    pub metadata: Map<String, Value>,
    /// Already limited to `max_payload_size` at admission.
    pub payload: Option<Value>,
    /// The library's own plugin_error: rendered with the built-in default template.
    pub builtin_template: bool,
}

impl Job {
    /// A job stamped with the current time.
    pub fn new(event: Event, context: Context, metadata: Map<String, Value>, payload: Option<Value>) -> Self {
        Job {
            event,
            raised: std::time::SystemTime::now(),
            context,
            metadata,
            payload,
            builtin_template: false,
        }
    }

    /// The template variables (all but `delivery_id`, which differs per delivery).
    pub fn vars(self, plugin_name: &str) -> Map<String, Value> {
        let c = self.context;
        let mut vars = Map::new();
        vars.insert("event".into(), self.event.name().into());
        vars.insert("plugin_name".into(), plugin_name.into());
        let timestamp = humantime::format_rfc3339_millis(self.raised).to_string();
        vars.insert("timestamp".into(), timestamp.into());
        vars.insert("request_id".into(), c.request_id);
        vars.insert("user".into(), c.user);
        vars.insert("user_info".into(), c.user_info);
        vars.insert("tenant_id".into(), c.tenant_id);
        vars.insert("server_id".into(), c.server_id);
        vars.insert("violation".into(), c.violation.unwrap_or(Value::Null));
        vars.insert("metadata".into(), Value::Object(self.metadata));
        vars.insert("payload".into(), self.payload.unwrap_or(Value::Null));
        vars
    }
}

/// Whether the engine runs, gives up on what is pending, or has stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Halt {
    Running,
    /// `close` ran out of time: every queued or running delivery ends as dropped.
    Abandon,
    /// Closing with a durable outbox: no new attempts; what is queued stays stored.
    Suspend,
    /// Closed: tasks exit.
    Stopped,
}

/// An admitted event and its tickets (one per webhook with room); dropping it unrouted
/// counts its tickets as dropped.
struct Admitted {
    job: Job,
    tickets: Vec<Ticket>,
}

/// One engine per config (Python instances share it; C and Go handles own one each).
pub(crate) struct Engine {
    pub config: Config,
    pub plugin_name: String,
    /// One per webhook: the shared client, or the webhook's own (TLS material, proxy).
    pub clients: Vec<Client>,
    pub ledger: Arc<Ledger>,
    pub outbox: Box<dyn Outbox>,
    pub breakers: Vec<Breaker>,
    /// Wakes a webhook's dispatcher: a new delivery, a retry scheduled, a breaker change.
    pub wakers: Vec<Notify>,
    pub halt: watch::Sender<Halt>,
    intake: mpsc::UnboundedSender<Admitted>,
    /// Hook calls between their closed check and their admission; `close` waits for zero.
    admitting: AtomicUsize,
    /// Events admitted and not yet routed into the outbox.
    unrouted: AtomicUsize,
    /// Attempts running now.
    pub in_flight: AtomicUsize,
    closed: AtomicBool,
    /// The process generation the engine's tasks run in (see `runtime`).
    generation: u32,
    host_errors: AtomicU64,
    /// Events raised, by event (for Prometheus).
    events: [AtomicU64; Event::ALL.len()],
    /// Instances attached to a shared engine (see `registry`).
    pub attached: AtomicUsize,
    /// Test hook: the stage (1 routing, 2 an attempt) that panics once, per engine so tests
    /// running in parallel cannot trip each other's.
    #[cfg(test)]
    pub inject_panic: std::sync::atomic::AtomicU8,
}

#[cfg(test)]
impl Engine {
    /// Panics if the test armed `stage` on this engine.
    pub(crate) fn injected_panic(&self, stage: u8) {
        if self
            .inject_panic
            .compare_exchange(stage, 0, SeqCst, SeqCst)
            .is_ok()
        {
            panic!("injected panic at stage {stage}");
        }
    }
}

impl Engine {
    /// Opens the config's outbox (resuming what a durable one holds) and starts the engine's
    /// tasks on the process runtime. Fails, naming `outbox.path`, when the store cannot be
    /// opened (e.g. another engine holds it).
    pub fn start(config: Config, plugin_name: &str) -> Result<Arc<Engine>> {
        let webhooks = config.webhooks.len();
        let ids = || config.webhooks.iter().map(|w| w.id.clone()).collect();
        let (outbox, resumed): (Box<dyn Outbox>, Vec<Resumed>) = match &config.outbox {
            OutboxConfig::Memory => (
                Box::new(MemoryOutbox::new(webhooks, config.dead_letter_capacity)),
                Vec::new(),
            ),
            OutboxConfig::Disk { path } => {
                let opened = DiskOutbox::open(path, ids(), config.dead_letter_capacity)
                    .map_err(|m| Error::config("outbox.path", m))?;
                (Box::new(opened.outbox), opened.resumed)
            }
            // Nothing to resume at start: the committer takes over what is free in Redis.
            OutboxConfig::Redis {
                url,
                key,
                claim_after,
            } => {
                let outbox =
                    RedisOutbox::connect(&url.0, key, *claim_after, ids(), config.dead_letter_capacity)
                        .map_err(|m| Error::config("outbox.url", m))?;
                (Box::new(outbox), Vec::new())
            }
        };
        let max_idle = config
            .webhooks
            .iter()
            .map(|w| w.max_concurrency)
            .max()
            .unwrap_or(1);
        let shared = delivery::client(max_idle, &config.network, None);
        let clients = config
            .webhooks
            .iter()
            .map(|w| match delivery::needs_own_client(w) {
                true => delivery::client(w.max_concurrency, &config.network, Some(w)),
                false => shared.clone(),
            })
            .collect();
        let (intake, queue) = mpsc::unbounded_channel();
        let engine = Arc::new(Engine {
            plugin_name: plugin_name.to_owned(),
            clients,
            ledger: Arc::new(Ledger::new(webhooks)),
            outbox,
            breakers: config.webhooks.iter().map(|w| Breaker::new(w.breaker)).collect(),
            wakers: (0..webhooks).map(|_| Notify::new()).collect(),
            halt: watch::Sender::new(Halt::Running),
            intake,
            admitting: AtomicUsize::new(0),
            unrouted: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            generation: runtime::generation(),
            host_errors: AtomicU64::new(0),
            events: Default::default(),
            attached: AtomicUsize::new(0),
            #[cfg(test)]
            inject_panic: Default::default(),
            config,
        });
        engine.resume(resumed);
        let handle = runtime::handle();
        handle.spawn(intake_loop(Arc::clone(&engine), queue));
        for index in 0..webhooks {
            handle.spawn(crate::dispatch::run(Arc::clone(&engine), index));
        }
        if engine.outbox.durable() {
            handle.spawn(commit_loop(Arc::clone(&engine)));
        }
        Ok(engine)
    }

    /// Queues the deliveries a durable outbox held at start, with their ids, attempt
    /// counts and due times; those of webhooks no longer configured become dead letters.
    /// Free queue slots per webhook: how many deliveries a shared outbox may hand over.
    fn room(&self) -> Vec<usize> {
        let counters = &self.ledger.counters;
        self.config
            .webhooks
            .iter()
            .zip(counters)
            .map(|(w, c)| w.queue_capacity.saturating_sub(c.queued() as usize))
            .collect()
    }

    fn resume(&self, resumed: Vec<Resumed>) {
        let (mut resumed_count, mut orphans) = (0, 0);
        for r in resumed {
            let Some(index) = self.config.webhook_index(&r.webhook_id) else {
                orphans += 1;
                let letter = DeadLetter {
                    webhook: ORPHAN,
                    webhook_id: r.webhook_id,
                    event: r.event,
                    delivery_id: r.delivery_id,
                    attempts: r.attempts,
                    last_status: None,
                    last_error: "its webhook is no longer configured".into(),
                    time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                    body: r.body,
                };
                self.outbox.dead_letter(letter);
                continue;
            };
            self.ledger.reserve_anyway(index);
            let mut ticket = Ticket::new(Arc::clone(&self.ledger), index, r.event, r.delivery_id, r.body);
            // Already stored: kept for the next start if this process lets go of it.
            ticket.mark_durable();
            ticket.attempts = r.attempts;
            self.outbox.restore(ticket, r.due);
            self.wakers[index].notify_one();
            resumed_count += 1;
        }
        if resumed_count > 0 {
            log::info!("resumed {resumed_count} pending deliveries from the outbox");
        }
        if orphans > 0 {
            warn!("{orphans} pending deliveries belong to webhook ids no longer configured: moved to dead letters");
        }
    }

    /// Admits `job` for every subscribed webhook with room (except `exclude`), without
    /// blocking; false if none took it. Linearised with `close`: once `close` has begun, a
    /// call either fails with `Closed` or is waited for by that close.
    pub fn admit(&self, job: Job, exclude: Option<usize>) -> Result<bool> {
        self.admitting.fetch_add(1, SeqCst);
        let result = self.admit_open(job, exclude);
        self.admitting.fetch_sub(1, SeqCst);
        result
    }

    fn admit_open(&self, job: Job, exclude: Option<usize>) -> Result<bool> {
        if self.closed.load(SeqCst) {
            return Err(Error::Closed);
        }
        if self.generation != runtime::generation() {
            return Err(Error::Forked);
        }
        self.events[job.event as usize].fetch_add(1, Relaxed);
        let mut tickets = Vec::new();
        for (index, webhook) in self.config.webhooks.iter().enumerate() {
            if !webhook.wants(job.event) || exclude == Some(index) {
                continue;
            }
            if self.ledger.reserve(index, webhook.queue_capacity) {
                // Durable only once a durable outbox has journaled it (`Outbox::push`).
                let ledger = Arc::clone(&self.ledger);
                let ticket = Ticket::new(ledger, index, job.event, Uuid::nil(), Bytes::new());
                tickets.push(ticket);
            } else {
                let counters = &self.ledger.counters[index];
                counters.metrics.ended(job.event, Outcome::Dropped, None);
                let dropped = counters.dropped(1);
                if dropped.is_power_of_two() {
                    warn!(
                        "webhook {} queue full ({} deliveries): {dropped} dropped so far",
                        webhook.id, webhook.queue_capacity
                    );
                }
            }
        }
        if tickets.is_empty() {
            return Ok(false);
        }
        // A failed send (the intake task is gone) drops the tickets, which counts them.
        self.unrouted.fetch_add(1, SeqCst);
        if self.intake.send(Admitted { job, tickets }).is_err() {
            self.unrouted.fetch_sub(1, SeqCst);
        }
        Ok(true)
    }

    /// Renders an admitted event once and queues its tickets; a render failure fails the
    /// event's deliveries and raises one plugin_error for the event.
    fn route(&self, admitted: Admitted) {
        // Closing with a durable outbox (Suspend) still routes: what was admitted is journaled.
        if matches!(*self.halt.borrow(), Halt::Abandon | Halt::Stopped) {
            return;
        }
        #[cfg(test)]
        self.injected_panic(1);
        let Admitted { job, tickets } = admitted;
        let (event, builtin) = (job.event, job.builtin_template);
        let vars = job.vars(&self.plugin_name);
        let template = match builtin {
            true => Template::builtin(),
            false => self.config.template(event),
        };
        let shared = (!template.varies_per_delivery()).then(|| render_json(template, &vars, event, None));
        let mut failed = Vec::new();
        for mut ticket in tickets {
            ticket.id = Uuid::new_v4();
            let body = match &shared {
                Some(body) => body.clone(),
                None => render_json(template, &vars, event, Some(&ticket.id)),
            };
            match body {
                Ok(body) => {
                    ticket.body = body;
                    let index = ticket.webhook;
                    self.outbox.push(ticket);
                    self.wakers[index].notify_one();
                }
                Err(e) => failed.push((ticket, e)),
            }
        }
        // The plugin_error is admitted before the failed deliveries end, so that nothing is
        // ever seen idle (by flush or close) in between.
        if let Some((_, e)) = failed.first() {
            self.raise_plugin_error(event, &vars, e.clone());
        }
        for (ticket, e) in failed {
            let webhook = &self.config.webhooks[ticket.webhook];
            error!(
                "webhook {} {} delivery {}: {e}",
                webhook.id,
                event.name(),
                ticket.id
            );
            ticket.failed(None, e);
        }
    }

    /// Raises plugin_error (built-in template, `metadata.error`) for an event that could not
    /// be rendered; a plugin_error that fails itself is only logged, so nothing loops.
    fn raise_plugin_error(&self, failed: Event, vars: &Map<String, Value>, error: String) {
        if failed == Event::PluginError {
            return;
        }
        let var = |name: &str| vars.get(name).cloned().unwrap_or(Value::Null);
        let context = Context {
            request_id: var("request_id"),
            user: var("user"),
            user_info: var("user_info"),
            tenant_id: var("tenant_id"),
            server_id: var("server_id"),
            violation: None,
        };
        let metadata = json!({"error": error, "event": failed.name()});
        let mut job = Job::new(Event::PluginError, context, object(metadata), None);
        job.builtin_template = true;
        let _ = self.admit(job, None);
    }

    /// Raises `webhook_failing` or `webhook_recovered` about webhook `index`, for the other
    /// webhooks subscribed to it.
    pub fn raise_circuit_event(&self, index: usize, event: Event) {
        let webhook = &self.config.webhooks[index];
        let (last_status, last_error) = self.ledger.counters[index].last_outcome();
        let failures = self.breakers[index].consecutive_failures();
        match event {
            Event::WebhookFailing => warn!(
                "webhook {} circuit opened after {failures} failed attempts in a row; pausing it",
                webhook.id
            ),
            _ => warn!("webhook {} recovered; circuit closed", webhook.id),
        }
        let metadata = json!({"webhook_id": webhook.id, "webhook": webhook.redacted_url,
            "consecutive_failures": failures, "last_status": last_status, "last_error": last_error});
        let _ = self.admit(
            Job::new(event, Context::default(), object(metadata), None),
            Some(index),
        );
    }

    /// Ends `ticket` as failed for good and keeps it as a dead letter.
    pub fn dead_letter(&self, ticket: Ticket, status: Option<u16>, error: String) {
        let webhook = &self.config.webhooks[ticket.webhook];
        let letter = DeadLetter {
            webhook: ticket.webhook,
            webhook_id: webhook.id.clone(),
            event: ticket.event,
            delivery_id: ticket.id,
            attempts: ticket.attempts,
            last_status: status,
            last_error: error.clone(),
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            body: ticket.body.clone(),
        };
        let message = format!(
            "webhook {} ({}) {} delivery {} failed after {} attempts: {error}",
            webhook.id,
            webhook.redacted_url,
            ticket.event.name(),
            ticket.id,
            ticket.attempts
        );
        // Kept before the ticket ends, so whoever waits for idle sees the letter.
        self.outbox.dead_letter(letter);
        ticket
            .counters()
            .metrics
            .ended(ticket.event, Outcome::DeadLettered, None);
        // A dead receiver must not flood the gateway's log: warn on the 1st, 2nd, 4th, 8th…
        // failure in a row, the rest at DEBUG.
        let streak = ticket.failed(status, error);
        if streak.is_power_of_two() {
            warn!("{message} ({streak} failed in a row)");
        } else {
            log::debug!("{message}");
        }
    }

    /// Dead letters of the webhook with id `webhook`, or of all.
    pub fn dead_letters(&self, webhook: Option<&str>) -> Result<Vec<DeadLetter>> {
        self.check_webhook(webhook)?;
        Ok(self.outbox.dead_letters(webhook))
    }

    /// Queues the dead letters of `webhook` (or all) again, as new attempts with their
    /// delivery ids; a letter whose webhook queue is full stays a dead letter. Returns how
    /// many were queued.
    pub fn replay_dead_letters(&self, webhook: Option<&str>) -> Result<usize> {
        self.check_webhook(webhook)?;
        if self.closed.load(SeqCst) {
            return Err(Error::Closed);
        }
        let mut replayed = 0;
        for letter in self.outbox.take_dead_letters(webhook) {
            let capacity = self.config.webhooks.get(letter.webhook).map(|w| w.queue_capacity);
            if !capacity.is_some_and(|c| self.ledger.reserve(letter.webhook, c)) {
                self.outbox.dead_letter(letter);
                continue;
            }
            let ticket = Ticket::new(
                Arc::clone(&self.ledger),
                letter.webhook,
                letter.event,
                letter.delivery_id,
                letter.body,
            );
            self.outbox.push(ticket);
            self.wakers[letter.webhook].notify_one();
            replayed += 1;
        }
        Ok(replayed)
    }

    fn check_webhook(&self, webhook: Option<&str>) -> Result<()> {
        match webhook {
            Some(id) if self.config.webhook_index(id).is_none() => {
                Err(Error::InvalidArgument(format!("no webhook has the id `{id}`")))
            }
            _ => Ok(()),
        }
    }

    /// Counts a hook call whose host data could not become an event.
    pub fn host_error(&self) -> u64 {
        self.host_errors.fetch_add(1, Relaxed) + 1
    }

    /// Blocks until nothing is pending, or `timeout` passes (a huge one means no deadline).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.ledger.wait_idle(Instant::now().checked_add(timeout))
    }

    /// Stops accepting events, delivers what is pending, and at the deadline abandons the
    /// rest (counted as dropped). Returns within `timeout` (plus scheduling noise). With a
    /// durable outbox it only waits for what was admitted to be committed and for attempts
    /// in flight: what is still queued stays stored for the next start.
    pub fn close(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now().checked_add(timeout);
        self.closed.store(true, SeqCst);
        while self.admitting.load(SeqCst) > 0 {
            std::thread::yield_now();
        }
        if self.outbox.durable() {
            return self.close_durable(deadline);
        }
        // Keep a little of the time for the abandoned deliveries to be counted.
        let grace = (timeout / 10).min(Duration::from_millis(100));
        if self.ledger.wait_idle(deadline.map(|d| d - grace)) {
            self.stop();
            return Ok(());
        }
        let pending = self.ledger.pending();
        self.halt.send_replace(Halt::Abandon);
        // Queued deliveries end (as dropped) here and now; attempts in flight end in their
        // tasks, which the halt wakes.
        for index in 0..self.config.webhooks.len() {
            drop(self.outbox.drain(index));
        }
        self.wake_all();
        self.ledger.wait_idle(deadline);
        self.stop();
        Err(Error::Timeout { pending })
    }

    fn close_durable(&self, deadline: Option<Instant>) -> Result<()> {
        let settled = |what: &AtomicUsize| {
            while what.load(SeqCst) > 0 {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            true
        };
        let routed = settled(&self.unrouted);
        self.halt.send_replace(Halt::Suspend);
        self.wake_all();
        let answered = settled(&self.in_flight);
        let committed = self.outbox.release();
        if let Err(Released { message, lost }) = &committed {
            error!("{message}: {} admitted deliveries are lost", lost.len());
            for (webhook, event) in lost {
                let counters = &self.ledger.counters[*webhook];
                counters.dropped(1);
                counters
                    .metrics
                    .ended(*event, crate::metrics::Outcome::Dropped, None);
            }
        }
        let pending = self.ledger.pending();
        self.stop();
        for index in 0..self.config.webhooks.len() {
            drop(self.outbox.drain(index));
        }
        match (routed && answered, committed) {
            (true, Ok(())) => Ok(()),
            _ => Err(Error::Timeout { pending }),
        }
    }

    /// Whether `close` has begun.
    pub fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Whether this engine was created before a `fork()` (in the parent process).
    pub fn is_forked(&self) -> bool {
        self.generation != runtime::generation()
    }

    fn stop(&self) {
        self.halt.send_replace(Halt::Stopped);
        self.wake_all();
    }

    fn wake_all(&self) {
        self.wakers.iter().for_each(Notify::notify_one);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let webhooks = self.config.webhooks.iter().enumerate();
        let webhooks = webhooks
            .map(|(i, w)| {
                self.ledger.counters[i].snapshot(WebhookLabels {
                    id: &w.id,
                    url: &w.redacted_url,
                    circuit: self.breakers[i].circuit(),
                    dead_letters: self.outbox.dead_letter_count(i),
                })
            })
            .collect();
        let mut stats = Stats::new(
            self.ledger.pending(),
            self.host_errors.load(Relaxed),
            webhooks,
            self.outbox.status(),
        );
        stats.dead_letters_evicted = self.outbox.dead_letters_evicted();
        stats
    }
}

impl Engine {
    /// The engine's metrics in the Prometheus text format 0.0.4.
    pub fn metrics(&self) -> String {
        let events: Vec<u64> = self.events.iter().map(|e| e.load(Relaxed)).collect();
        let webhooks: Vec<WebhookMetrics<'_>> = self
            .config
            .webhooks
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let counters = &self.ledger.counters[i];
                WebhookMetrics {
                    id: &w.id,
                    metrics: &counters.metrics,
                    retries: counters.retries(),
                    queued: counters.queued(),
                    circuit_open: self.breakers[i].circuit() != crate::breaker::Circuit::Closed,
                    dead_letters: self.outbox.dead_letter_count(i),
                }
            })
            .collect();
        exposition(&self.plugin_name, &events, &webhooks)
    }
}

/// Routes admitted events until the engine stops.
async fn intake_loop(engine: Arc<Engine>, mut queue: mpsc::UnboundedReceiver<Admitted>) {
    // While events keep coming, the intake polls for them every millisecond instead of being
    // woken by each: a wake is a syscall on the hook's thread (measured at ~half of a Python
    // hook's own cost here), a poll a timer tick of the runtime. After IDLE without an event it
    // parks again, and the next event wakes it. Routing is at most POLL later.
    const POLL: Duration = Duration::from_millis(1);
    const IDLE: Duration = Duration::from_millis(100);
    let mut halt = engine.halt.subscribe();
    let mut last_event: Option<Instant> = None;
    loop {
        loop {
            match queue.try_recv() {
                Ok(admitted) => {
                    route_caught(&engine, admitted);
                    last_event = Some(Instant::now());
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        let busy = last_event.is_some_and(|at| at.elapsed() < IDLE);
        tokio::select! {
            biased;
            _ = halt.wait_for(|h| *h == Halt::Stopped) => return,
            _ = tokio::time::sleep(POLL), if busy => {}
            admitted = queue.recv(), if !busy => match admitted {
                Some(admitted) => {
                    route_caught(&engine, admitted);
                    last_event = Some(Instant::now());
                }
                None => return,
            },
        }
    }
}

/// Routes one admitted event; a panic drops the event's tickets, which counts them, and
/// intake goes on.
fn route_caught(engine: &Engine, admitted: Admitted) {
    let routed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.route(admitted)));
    engine.unrouted.fetch_sub(1, SeqCst);
    if routed.is_err() {
        error!("a bug dropped an event while routing it (counted as dropped)");
    }
}

/// Commits a durable outbox's journal every few milliseconds (group commit), off the
/// runtime's worker thread; failures are logged with pacing and retried.
async fn commit_loop(engine: Arc<Engine>) {
    const INTERVAL: Duration = Duration::from_millis(5);
    let mut halt = engine.halt.subscribe();
    let mut failures = 0u64;
    loop {
        tokio::select! {
            _ = halt.wait_for(|h| *h == Halt::Stopped) => return,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
        let engine = Arc::clone(&engine);
        let done = tokio::task::spawn_blocking(move || {
            let committed = engine.outbox.commit();
            let claimed = engine.outbox.claim(&engine.room());
            engine.resume(claimed);
            committed
        });
        match done.await {
            Ok(Ok(())) => failures = 0,
            Ok(Err(e)) => {
                failures += 1;
                if failures.is_power_of_two() {
                    warn!("{e} ({failures} in a row; retrying)");
                }
            }
            Err(_) => error!("the outbox commit panicked; retrying"),
        }
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Renders `template` with the event's variables (and `delivery_id`, if it uses it) and
/// checks that the result parses as JSON.
pub(crate) fn render_json(
    template: &Template,
    vars: &Map<String, Value>,
    event: Event,
    delivery_id: Option<&Uuid>,
) -> Result<Bytes, String> {
    let id = delivery_id.map(|id| Value::String(id.to_string()));
    let body = template.render(|name| match name {
        "delivery_id" => id.as_ref(),
        _ => vars.get(name),
    })?;
    serde_json::from_str::<serde::de::IgnoredAny>(&body)
        .map_err(|e| format!("the {} template rendered invalid JSON: {e}", event.name()))?;
    Ok(Bytes::from(body))
}
