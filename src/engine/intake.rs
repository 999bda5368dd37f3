//! Admission and routing. A hook call is admitted on the host's thread in microseconds: a
//! queue slot per subscribed webhook with room (a full queue drops and counts), then the event
//! crosses to the runtime. There the intake task assembles the event's variables once, renders
//! its body, and queues one ticket per webhook; a template that fails raises `plugin_error`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::{error, warn};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::digest::Message;
use super::digests::Digests;
use super::fleet::FleetDigests;
use super::inbox::Inbox;
use super::ledger::{Routing, Ticket};
use super::padded::Padded;
use super::runtime;
use super::shared::{Lifecycle, Shared};
use crate::config::Alerting;
use crate::error::{Error, Result};
use crate::events::{Context, Event};
use crate::metrics::Outcome;
use crate::render::{batch_element, default_body, object, render_json, Job, Source, Vars};
use crate::severity::Severity;
use crate::trace::Trace;

/// An admitted event and the webhooks whose queue slot it took (their tickets are made on
/// the runtime, so that a hook's thread never touches the ledger's reference count).
/// Webhooks that filter or digest take no slot at admission: the alerting stage decides on
/// the runtime whether the event costs them one.
pub(crate) struct Admitted {
    job: Job,
    queued: Webhooks,
    alerting: Vec<Routing>,
}

/// Webhook indices in config order, the first 128 as bits: an admission allocates nothing
/// for them that the runtime would have to free from another thread.
#[derive(Default)]
struct Webhooks {
    first: u128,
    rest: Vec<usize>,
}

impl Webhooks {
    fn push(&mut self, index: usize) {
        match index < 128 {
            true => self.first |= 1 << index,
            false => self.rest.push(index),
        }
    }

    fn is_empty(&self) -> bool {
        self.first == 0 && self.rest.is_empty()
    }

    fn indices(self) -> impl Iterator<Item = usize> {
        let mut bits = self.first;
        let first = std::iter::from_fn(move || {
            (bits != 0).then(|| {
                let index = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                index
            })
        });
        first.chain(self.rest)
    }
}

/// What hook threads write on every call, kept off the runtime's lines (see [`Padded`]).
#[derive(Default)]
struct Calls {
    /// Hook calls between their closed check and their admission; `close` waits for zero.
    admitting: AtomicUsize,
    /// Events admitted so far (those not yet routed are this less [`Intake::routed`]).
    admitted: AtomicUsize,
    /// Events raised, by event (for Prometheus).
    events: [AtomicU64; Event::ALL.len()],
}

/// Admission and routing.
pub(crate) struct Intake {
    shared: Arc<Shared>,
    /// The digesting webhooks' state, and the fleet's side of it.
    digests: Digests,
    inbox: Inbox<Admitted>,
    calls: Padded<Calls>,
    /// Events the intake task has routed into the queues.
    routed: Padded<AtomicUsize>,
    closed: AtomicBool,
    /// Flushes waiting now: batches then leave without waiting for `max_wait`.
    hurrying: AtomicUsize,
    /// The process generation the engine's tasks run in (see `runtime`).
    generation: u32,
    host_errors: AtomicU64,
    /// Panics caught on the engine's tasks and threads (bugs; each logged).
    internal_errors: AtomicU64,
    /// Test hook: the stage (1 routing, 2 an attempt) that panics once, per engine so tests
    /// running in parallel cannot trip each other's.
    #[cfg(test)]
    pub inject_panic: std::sync::atomic::AtomicU8,
}

impl Intake {
    /// The intake of an engine sharing `shared` (its task: [`run`]).
    pub fn new(shared: Arc<Shared>, fleet: Option<FleetDigests>) -> Self {
        Intake {
            digests: Digests::new(&shared.config.webhooks, fleet),
            inbox: Inbox::new(),
            calls: Padded::default(),
            routed: Padded::default(),
            closed: AtomicBool::new(false),
            hurrying: AtomicUsize::new(0),
            generation: runtime::generation(),
            host_errors: AtomicU64::new(0),
            internal_errors: AtomicU64::new(0),
            #[cfg(test)]
            inject_panic: Default::default(),
            shared,
        }
    }

    /// Panics if the test armed `stage` on this engine.
    #[cfg(test)]
    pub fn injected_panic(&self, stage: u8) {
        if self
            .inject_panic
            .compare_exchange(stage, 0, SeqCst, SeqCst)
            .is_ok()
        {
            panic!("injected panic at stage {stage}");
        }
    }

    /// Admits `job` for every subscribed webhook with room (except `exclude`), without
    /// blocking; false if none took it. Linearised with `close`: once [`Intake::close`] has
    /// begun, a call either fails with `Closed` or is waited for by it.
    pub fn admit(&self, job: Job, exclude: Option<usize>) -> Result<bool> {
        self.calls.admitting.fetch_add(1, SeqCst);
        let result = self.admit_open(job, exclude);
        if self.calls.admitting.fetch_sub(1, SeqCst) == 1 && self.closed.load(SeqCst) {
            self.shared.ledger.wake_waiters();
        }
        result
    }

    fn admit_open(&self, job: Job, exclude: Option<usize>) -> Result<bool> {
        if self.closed.load(SeqCst) {
            return Err(Error::Closed);
        }
        if self.is_forked() {
            return Err(Error::Forked);
        }
        self.calls.events[job.event as usize].fetch_add(1, Relaxed);
        let (mut queued, mut alerting) = (Webhooks::default(), Vec::new());
        for (index, webhook) in self.shared.config.webhooks.iter().enumerate() {
            if !webhook.wants(job.event) || exclude == Some(index) {
                continue;
            }
            if webhook.alerting.routes() {
                match self.shared.ledger.await_routing(index, webhook.queue_capacity) {
                    Some(routing) => alerting.push(routing),
                    None => self.queue_full(index, job.event),
                }
            } else if self.reserve(index, job.event) {
                queued.push(index);
            }
        }
        if queued.is_empty() && alerting.is_empty() {
            return Ok(false);
        }
        self.calls.admitted.fetch_add(1, SeqCst);
        self.inbox.push(Admitted {
            job,
            queued,
            alerting,
        });
        Ok(true)
    }

    /// Takes a slot of webhook `index`'s queue for a delivery of `event`, if it has room; a
    /// full queue drops it (counted, warned about at powers of two).
    fn reserve(&self, index: usize, event: Event) -> bool {
        let reserved = self
            .shared
            .ledger
            .reserve(index, self.shared.webhook(index).queue_capacity);
        if !reserved {
            self.queue_full(index, event);
        }
        reserved
    }

    /// The ticket of a delivery of `event` to webhook `index` whose slot is taken.
    fn reserved_ticket(&self, index: usize, event: Event) -> Ticket {
        // Durable only once a durable outbox has journaled it (`Queue::push`).
        let ledger = Arc::clone(&self.shared.ledger);
        Ticket::new(ledger, index, event, Uuid::nil(), Bytes::new())
    }

    /// A ticket for a new delivery of `event` to webhook `index`, if its queue has room.
    fn ticket(&self, index: usize, event: Event) -> Option<Ticket> {
        self.reserve(index, event)
            .then(|| self.reserved_ticket(index, event))
    }

    /// Counts an event of webhook `index` dropped for want of room (warned about at powers
    /// of two).
    fn queue_full(&self, index: usize, event: Event) {
        let webhook = self.shared.webhook(index);
        let counters = self.shared.counters(index);
        counters.metrics.ended(event, Outcome::Dropped, None);
        let dropped = counters.dropped(1);
        if dropped.is_power_of_two() {
            warn!(
                "webhook {} queue full ({} deliveries): {dropped} dropped so far",
                webhook.id, webhook.queue_capacity
            );
        }
    }

    /// After the intake task routed what it took: wakes whoever waits for routing if that
    /// was everything (checked once per turn, not per event).
    fn caught_up(&self) {
        if self.unrouted() == 0 {
            self.shared.ledger.wake_waiters();
        }
    }

    /// Stops admitting: later calls fail with `Closed`; returns once no call is between its
    /// closed check and its admission.
    pub fn close(&self) {
        self.closed.store(true, SeqCst);
        self.shared.wake_all(); // batches leave at once
        self.shared
            .ledger
            .wait_for(None, || self.calls.admitting.load(SeqCst) == 0);
    }

    /// Waits until every admitted event is routed, or `deadline` passes; false then.
    pub fn wait_routed(&self, deadline: Option<Instant>) -> bool {
        self.shared.ledger.wait_for(deadline, || self.unrouted() == 0)
    }

    /// Makes batches leave at once (and wakes the dispatchers) until the guard is dropped:
    /// for a flush, which waits for everything to be delivered.
    pub fn hurry(&self) -> Hurry<'_> {
        self.hurrying.fetch_add(1, SeqCst);
        self.shared.wake_all();
        Hurry(self)
    }

    /// Whether a batch should leave now rather than wait for more events (a flush or close
    /// waits for it).
    pub fn hurrying(&self) -> bool {
        self.hurrying.load(SeqCst) > 0 || self.is_closed()
    }

    /// Whether `close` has begun.
    pub fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Whether this engine was created before a `fork()` (in the parent process).
    pub fn is_forked(&self) -> bool {
        self.generation != runtime::generation()
    }

    /// Admitted events not yet routed to their webhooks' queues (nor journaled).
    pub fn unrouted(&self) -> usize {
        // Routed first: every event is admitted before it is routed.
        let routed = self.routed.load(SeqCst);
        self.calls.admitted.load(SeqCst) - routed
    }

    /// Counts a hook call whose host data could not become an event.
    pub fn host_error(&self) -> u64 {
        self.host_errors.fetch_add(1, Relaxed) + 1
    }

    /// Counts a panic caught on one of the engine's tasks or threads; returns the count.
    pub fn internal_error(&self) -> u64 {
        self.internal_errors.fetch_add(1, Relaxed) + 1
    }

    /// Panics caught so far.
    pub fn internal_errors(&self) -> u64 {
        self.internal_errors.load(Relaxed)
    }

    /// Hook calls whose host data could not become an event, so far.
    pub fn host_errors(&self) -> u64 {
        self.host_errors.load(Relaxed)
    }

    /// Events raised so far, by event (in [`Event::ALL`] order).
    pub fn events_raised(&self) -> Vec<u64> {
        self.calls.events.iter().map(|e| e.load(Relaxed)).collect()
    }

    /// Renders an admitted event once per body source and queues its tickets, then passes
    /// it through the alerting stage of the webhooks that filter or digest; a render failure
    /// fails the event's deliveries and raises one plugin_error for the event.
    fn route(&self, admitted: Admitted) {
        let Admitted {
            job,
            queued,
            alerting,
        } = admitted;
        let (event, builtin) = (job.event, job.builtin_template);
        // Made before anything can return or panic: a dropped ticket counts as dropped.
        let mut tickets: Vec<Ticket> = queued
            .indices()
            .map(|index| self.reserved_ticket(index, event))
            .collect();
        // Closing with a durable outbox (Suspended) still routes: what was admitted is journaled.
        if self.shared.is(Lifecycle::Abandoning) || self.shared.is(Lifecycle::Stopped) {
            return;
        }
        #[cfg(test)]
        self.injected_panic(1);
        let vars = job.event_vars(&self.shared.common_vars);
        // Shared by the event's deliveries that carry it (a packed one travels under its
        // batch's), made for the first.
        let trace = std::cell::OnceCell::new();
        // The clock is read once, and only when a silence or a time interval needs it.
        let clock = std::cell::OnceCell::new();
        let now = || *clock.get_or_init(jiff::Timestamp::now);
        let silences = self.shared.silences.current();
        let silenced = !silences.is_empty() && silences.silences(vars.map(), now());
        for routing in alerting {
            let index = routing.webhook;
            drop(routing);
            let webhook = self.shared.webhook(index);
            let counters = self.shared.counters(index);
            if silenced {
                counters.silenced();
                continue;
            }
            if !admits(&webhook.alerting, &vars, self.shared.config.severities.of(event)) {
                counters.filtered();
                continue;
            }
            if webhook.muted_at(now) {
                counters.muted();
                continue;
            }
            match self.digests.of(index) {
                Some(mut digest) => {
                    let sample = |vars: &Map<String, Value>| default_body(vars, event);
                    let (message, aged) = digest.add(event, vars.map(), sample, Instant::now());
                    counters.below_threshold(aged.below_threshold);
                    counters.set_groups(digest.groups());
                    drop(digest);
                    if let Some(message) = message {
                        self.send_message(index, message);
                    }
                }
                None => tickets.extend(self.ticket(index, event)),
            }
        }
        // Webhooks whose body comes from the same template share one rendering, unless it
        // uses `{{delivery_id}}`.
        let mut shared: Option<std::result::Result<Bytes, String>> = None;
        let mut failed = Vec::new();
        for mut ticket in tickets {
            let webhook = self.shared.webhook(ticket.webhook);
            if silenced || webhook.muted_at(now) {
                let counters = ticket.counters();
                match silenced {
                    true => counters.silenced(),
                    false => counters.muted(),
                }
                ticket.withhold();
                continue;
            }
            ticket.id = Uuid::new_v4();
            if !self.shared.packs(ticket.webhook) {
                let trace = trace.get_or_init(|| Arc::new(vars.trace().clone()));
                ticket.trace = Some(Arc::clone(trace));
            }
            let source = Source::of(&self.shared.config, webhook, event, builtin);
            let body = match source {
                Source::Template(t) if !t.varies_per_delivery() => shared
                    .get_or_insert_with(|| render_json(t, &vars, event, None))
                    .clone(),
                ref source => source.render(webhook, &vars, event, &ticket.id),
            };
            let body = body.and_then(|body| batch_element(webhook, &source, body, &vars));
            match body {
                Ok(body) => {
                    ticket.body = body;
                    self.shared.requeue(ticket, None);
                }
                Err(e) => failed.push((ticket, e)),
            }
        }
        self.fail_unrendered(event, &vars, failed);
    }

    /// Fails deliveries whose body could not be rendered. The plugin_error is admitted before
    /// the failed deliveries end, so that nothing is ever seen idle (by flush or close) in
    /// between.
    fn fail_unrendered(&self, event: Event, vars: &impl Vars, failed: Vec<(Ticket, String)>) {
        if let Some((_, e)) = failed.first() {
            self.raise_plugin_error(event, vars.map(), e.clone());
        }
        for (ticket, e) in failed {
            let webhook = self.shared.webhook(ticket.webhook);
            error!(
                "webhook {} {} delivery {}: {e}",
                webhook.id,
                event.name(),
                ticket.id
            );
            ticket.failed(None, e);
        }
    }

    /// Renders and queues a digest message (a full queue drops it, counted, and its events
    /// in `digest_events_lost`).
    fn send_message(&self, index: usize, message: Message) {
        let event = message.event;
        let Some(ticket) = self.ticket(index, event) else {
            message.undelivered.store(false, SeqCst);
            self.shared.counters(index).digest_events_lost(message.count);
            return;
        };
        let mut ticket = ticket.for_group(message.undelivered, message.count);
        ticket.id = Uuid::new_v4();
        ticket.trace = Some(Arc::new(trace_of(&message.vars)));
        self.shared.counters(index).digest_message();
        let webhook = self.shared.webhook(index);
        let source = Source::of(&self.shared.config, webhook, event, false);
        match source.render(webhook, &message.vars, event, &ticket.id) {
            Ok(body) => {
                ticket.body = body;
                self.shared.requeue(ticket, None);
            }
            Err(e) => self.fail_unrendered(event, &message.vars, vec![(ticket, e)]),
        }
    }

    /// Queues every digest message due now (all uncounted events when `closing`), and
    /// closes groups quiet for `resolve_after`; returns how many messages it queued.
    pub fn tick_digests(&self, closing: bool) -> usize {
        if self.shared.is(Lifecycle::Abandoning) || self.shared.is(Lifecycle::Stopped) {
            return 0;
        }
        let due = self.digests.due(
            &self.shared.config.webhooks,
            &self.shared.ledger.counters,
            closing,
        );
        self.send_messages(due)
    }

    /// Queues every digest message due now, the fleet's included (exchanging counts with
    /// Redis first: a blocking call, made off the runtime's worker), and — when `closing` —
    /// all uncounted events; returns how many messages it queued.
    /// With a `deadline` (close's), every Redis call of the exchange returns by then.
    pub fn send_digests_now(&self, closing: bool, deadline: Option<Instant>) -> usize {
        if let Some(deadline) = deadline {
            self.digests.close_by(deadline);
        }
        use tokio::runtime::{Handle, RuntimeFlavor};
        let on_worker = Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
        let exchanged = match (self.digests.fleet(), on_worker) {
            (false, _) => 0,
            // The registry's idle close runs on our runtime: let its other tasks move on.
            (true, true) => tokio::task::block_in_place(|| self.exchange_with_fleet(closing)),
            (true, false) => self.exchange_with_fleet(closing),
        };
        exchanged + self.tick_digests(closing)
    }

    /// One exchange of digest counts with the fleet (none without a fleet); queues the
    /// messages of the groups whose lease this process won and returns how many.
    pub fn exchange_with_fleet(&self, closing: bool) -> usize {
        if self.shared.is(Lifecycle::Abandoning) || self.shared.is(Lifecycle::Stopped) {
            return 0;
        }
        #[cfg(test)]
        self.injected_panic(3);
        let taken = self.digests.exchange(
            &self.shared.config.webhooks,
            &self.shared.ledger.counters,
            closing,
        );
        self.send_messages(taken)
    }

    /// Queues digest messages (by webhook index); returns how many.
    fn send_messages(&self, messages: Vec<(usize, Message)>) -> usize {
        let queued = messages.len();
        for (index, message) in messages {
            self.send_message(index, message);
        }
        queued
    }

    /// At the engine's final close: see [`Digests::count_unfired`].
    pub fn count_unfired(&self) {
        self.digests.count_unfired(&self.shared.ledger.counters);
    }

    /// Whether some webhook digests.
    pub fn digests(&self) -> bool {
        self.digests.any()
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
            trace: Some(trace_of(vars)),
        };
        let metadata = json!({"error": error, "event": failed.name()});
        let mut job = Job::new(Event::PluginError, context, object(metadata), None);
        job.builtin_template = true;
        let _ = self.admit(job, None);
    }
}

/// A flush under way (see [`Intake::hurry`]).
pub(crate) struct Hurry<'a>(&'a Intake);

impl Drop for Hurry<'_> {
    fn drop(&mut self) {
        self.0.hurrying.fetch_sub(1, SeqCst);
    }
}

/// The trace of an event's variables (a digest's latest event, a failed event's
/// plugin_error): its `{{trace_id}}`, else a fresh one.
fn trace_of(vars: &Map<String, Value>) -> Trace {
    let trace_id = vars.get("trace_id").and_then(Value::as_str);
    Trace::from_host(None, trace_id, None).unwrap_or_else(Trace::random)
}

/// Whether `match`, `exclude` and `min_severity` let an event with `vars` through (the
/// variables' map is built only for a webhook that matches on them).
fn admits(alerting: &Alerting, vars: &impl Vars, severity: Severity) -> bool {
    alerting.min_severity.is_none_or(|min| severity >= min)
        && alerting.matcher.as_ref().is_none_or(|m| m.all(vars.map()))
        && !alerting.exclude.as_ref().is_some_and(|m| m.any(vars.map()))
}

/// Routes admitted events until the engine stops.
pub(crate) async fn run(intake: Arc<Intake>) {
    // While events keep coming, the intake polls for them every millisecond instead of being
    // woken by each: a wake is a syscall on the hook's thread (measured at ~half of a Python
    // hook's own cost here), a poll a timer tick of the runtime. After IDLE without an event it
    // sleeps, and the next event wakes it. Routing is at most POLL later.
    const POLL: Duration = Duration::from_millis(1);
    const IDLE: Duration = Duration::from_millis(100);
    const TURN_ROOM: usize = 1024;
    let mut lifecycle = intake.shared.subscribe();
    let mut last_event: Option<Instant> = None;
    let mut turn = Vec::new();
    loop {
        intake.inbox.take(&mut turn);
        if !turn.is_empty() {
            turn.drain(..)
                .for_each(|admitted| route_caught(&intake, admitted));
            // The two vectors take turns here: neither keeps a burst's room once it is routed.
            turn.shrink_to(TURN_ROOM);
            intake.caught_up();
            last_event = Some(Instant::now());
        }
        let busy = last_event.is_some_and(|at| at.elapsed() < IDLE);
        tokio::select! {
            biased;
            _ = lifecycle.wait_for(|h| *h == Lifecycle::Stopped) => break,
            _ = tokio::time::sleep(POLL), if busy => {}
            _ = intake.inbox.wait(), if !busy => {}
        }
    }
    // Stopped: what is left is dropped (and counted so) by routing it.
    intake
        .inbox
        .drain()
        .into_iter()
        .for_each(|admitted| route_caught(&intake, admitted));
    intake.caught_up();
}

/// Routes one admitted event; a panic drops the event's tickets, which counts them, and
/// intake goes on.
fn route_caught(intake: &Intake, admitted: Admitted) {
    let routed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| intake.route(admitted)));
    if routed.is_err() {
        // Counted before the event counts as routed, so a flush that returns sees it.
        intake.internal_error();
        error!("a bug dropped an event while routing it (counted as dropped)");
    }
    intake.routed.fetch_add(1, SeqCst);
}

#[cfg(test)]
mod tests {
    use super::Webhooks;

    #[test]
    fn webhook_indices_come_back_in_config_order_beyond_the_first_128() {
        let mut webhooks = Webhooks::default();
        assert!(webhooks.is_empty());
        for index in [0, 5, 127, 128, 300] {
            webhooks.push(index);
        }
        assert!(!webhooks.is_empty());
        assert_eq!(webhooks.indices().collect::<Vec<_>>(), [0, 5, 127, 128, 300]);
    }
}
