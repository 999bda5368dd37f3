//! What is pending and how each delivery ended. Every delivery admitted is a [`Ticket`]
//! until it ends; whatever path ends it — delivered, failed, abandoned at close, a full
//! queue, or a panic in the task holding it — the ticket's end is counted exactly once and
//! the webhook's queue slot and the engine's pending count are given back. The live counters
//! of each webhook (atomics, so hook calls never contend on a lock) live here too; stats are
//! snapshots of them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

use super::padded::Padded;
use crate::events::Event;
use crate::metrics::{DeliveryMetrics, Outcome};
use crate::stats::{Circuit, WebhookStats};
use crate::trace::Trace;

/// The engine's counters and its pending count, which `flush` and `close` wait on.
pub struct Ledger {
    /// One per webhook, in config order.
    pub counters: Vec<WebhookCounters>,
    /// Deliveries started (hook threads write it) and ended (the runtime does): pending is
    /// the difference, kept as two counters on lines of their own (see [`Padded`]).
    started: Padded<AtomicU64>,
    ended: Padded<AtomicU64>,
    idle_lock: Mutex<()>,
    idle: Condvar,
    /// Wakes async waiters (the shared-engine reaper) when nothing is pending.
    pub idle_async: tokio::sync::Notify,
}

impl Ledger {
    /// A ledger for `webhooks` webhooks.
    pub fn new(webhooks: usize) -> Self {
        Ledger {
            counters: (0..webhooks).map(|_| WebhookCounters::default()).collect(),
            started: Padded::default(),
            ended: Padded::default(),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
            idle_async: tokio::sync::Notify::new(),
        }
    }

    /// Takes a queue slot of `webhook` (capacity `capacity`) for a new delivery; false (and
    /// nothing taken) when its queue is full.
    pub fn reserve(&self, webhook: usize, capacity: usize) -> bool {
        let taken = self.counters[webhook].try_reserve(capacity);
        if taken {
            self.started.fetch_add(1, SeqCst);
        }
        taken
    }

    /// Takes a queue slot whatever the capacity: for deliveries a durable outbox already
    /// holds, which must not be lost to a smaller capacity after a restart.
    pub fn reserve_anyway(&self, webhook: usize) {
        self.counters[webhook].try_reserve(usize::MAX);
        self.started.fetch_add(1, SeqCst);
    }

    /// Takes one of `webhook`'s admission slots for an event on its way to the alerting
    /// stage (filters, digests); None when `capacity` events already wait to be routed.
    pub fn await_routing(self: &std::sync::Arc<Self>, webhook: usize, capacity: usize) -> Option<Routing> {
        let taken = self.counters[webhook]
            .routing
            .fetch_update(Relaxed, Relaxed, |n| (n < capacity as u64).then_some(n + 1))
            .is_ok();
        taken.then(|| Routing {
            ledger: std::sync::Arc::clone(self),
            webhook,
        })
    }

    /// Deliveries not yet ended.
    pub fn pending(&self) -> u64 {
        // Ended first: every end follows its start, so the difference is never negative.
        let ended = self.ended.load(SeqCst);
        self.started.load(SeqCst) - ended
    }

    /// Blocks until nothing is pending or `deadline` passes (None: no deadline).
    pub fn wait_idle(&self, deadline: Option<Instant>) -> bool {
        self.wait_for(deadline, || self.pending() == 0)
    }

    /// Blocks until `done()` or `deadline` passes (None: no deadline); false on the deadline.
    /// Whoever makes `done()` true calls [`Ledger::wake_waiters`] (the end of the last pending
    /// delivery does so itself).
    pub fn wait_for(&self, deadline: Option<Instant>, done: impl Fn() -> bool) -> bool {
        let mut lock = self.idle_lock.lock().unwrap_or_else(|e| e.into_inner());
        while !done() {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return false;
            }
            lock = self
                .idle
                .wait_timeout(lock, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Wakes every [`Ledger::wait_for`] to check its condition again.
    pub fn wake_waiters(&self) {
        let _lock = self.idle_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.idle.notify_all();
    }

    /// Gives back `slots` queue slots of `webhook`: deliveries that ended.
    fn end(&self, webhook: usize, slots: u64) {
        self.counters[webhook].release(slots);
        let ended = self.ended.fetch_add(slots, SeqCst) + slots;
        if self.started.load(SeqCst) == ended {
            self.wake_waiters();
            self.idle_async.notify_waiters();
        }
    }
}

/// One delivery of an event to one webhook, from admission to its end. Dropping a ticket
/// whose end was not recorded counts it as dropped.
pub struct Ticket {
    pub webhook: usize,
    pub event: Event,
    /// `X-Webhook-Delivery` / `webhook-id`: the same on every attempt and after a replay.
    pub id: Uuid,
    /// The rendered body; shared with the event's other deliveries when the template does
    /// not use `{{delivery_id}}`.
    pub body: Bytes,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the first attempt started (latency is measured from there to the outcome).
    pub first_attempt: Option<Instant>,
    /// Its event's W3C trace (shared by the event's deliveries); None for a replayed dead
    /// letter or a delivery stored before v4, whose attempts each start a fresh trace.
    pub trace: Option<std::sync::Arc<Trace>>,
    /// Set when its body is a whole batch (boxed: most deliveries are not, and a queued
    /// delivery's size matters).
    whole: Option<Box<Whole>>,
    ledger: std::sync::Arc<Ledger>,
    /// Queue slots it holds, given back when it ends: one for an event's delivery, none for a
    /// batch of tickets (each holds its own), one per event for a packed batch.
    slots: u64,
    ended: bool,
    /// Kept by a durable outbox: if the process lets go of it unended (close), it waits there
    /// for the next start instead of being lost, so it is not counted as dropped.
    durable: bool,
    /// A digest message's group flag and event count (boxed: few deliveries are digest
    /// messages, and a queued delivery's size matters).
    group: Option<Box<GroupMessage>>,
}

impl Ticket {
    /// A ticket for a delivery whose queue slot [`Ledger::reserve`] already took; a durable
    /// outbox marks it durable once it holds its record.
    pub fn new(ledger: std::sync::Arc<Ledger>, webhook: usize, event: Event, id: Uuid, body: Bytes) -> Self {
        Ticket {
            webhook,
            event,
            id,
            body,
            attempts: 0,
            first_attempt: None,
            trace: None,
            whole: None,
            ledger,
            slots: 1,
            ended: false,
            durable: false,
            group: None,
        }
    }

    /// A batch of `members` (at least one, of one webhook) whose framed body is `body`: one
    /// delivery with an id and a trace of its own, which takes no queue slot itself.
    pub fn batch(members: Vec<Ticket>, body: Bytes) -> Self {
        let first = &members[0];
        Ticket {
            webhook: first.webhook,
            event: first.event,
            id: Uuid::new_v4(),
            body,
            attempts: members.iter().map(|m| m.attempts).max().unwrap_or(0),
            first_attempt: None,
            trace: Some(std::sync::Arc::new(Trace::random())),
            ledger: std::sync::Arc::clone(&first.ledger),
            slots: 0,
            ended: false,
            durable: true,
            group: None,
            whole: Some(Box::new(Whole::Batch(members))),
        }
    }

    /// Events its body frames when it is a whole batch; None for one event's body.
    pub fn framed(&self) -> Option<u32> {
        match self.whole.as_deref()? {
            Whole::Batch(members) => Some(members.len() as u32),
            Whole::Framed(events) => Some(*events),
            Whole::Packed(packed) => Some(packed.events),
        }
    }

    /// Packs this event's delivery into `batch`, its webhook's open batch: the batch takes
    /// over its queue slot and will count its end.
    pub fn pack_into(mut self, batch: &mut Packed) {
        batch.add(self.event);
        (self.slots, self.ended) = (0, true);
    }

    /// Makes `first`, the ticket of a packed batch's first event, the batch's delivery of
    /// `body`: one delivery id, one trace, and the slots of all its events.
    pub fn packed(mut first: Ticket, batch: Packed, body: Bytes) -> Self {
        first.id = Uuid::new_v4();
        first.trace = Some(std::sync::Arc::new(Trace::random()));
        (first.body, first.slots, first.ended) = (body, u64::from(batch.events), false);
        first.whole = Some(Box::new(Whole::Packed(batch)));
        first
    }

    /// Its packed events (None for any other delivery).
    fn packed_events(&self) -> Option<&Packed> {
        match self.whole.as_deref()? {
            Whole::Packed(packed) => Some(packed),
            _ => None,
        }
    }

    /// Marks its body as an already framed batch of `events` (a replayed batch dead letter,
    /// or one resumed from a store).
    pub fn set_framed(&mut self, events: Option<u32>) {
        self.whole = events.map(|n| Box::new(Whole::Framed(n)));
    }

    /// A batch's events (None for any other delivery).
    fn members(&self) -> Option<&Vec<Ticket>> {
        match self.whole.as_deref()? {
            Whole::Batch(members) => Some(members),
            Whole::Framed(_) | Whole::Packed(_) => None,
        }
    }

    /// Whether it is a batch of events (see [`Ticket::batch`]).
    pub fn is_batch(&self) -> bool {
        self.members().is_some()
    }

    /// Whether its body is sent as it is, never framed with others (a batch, a replayed
    /// batch dead letter).
    pub fn is_whole(&self) -> bool {
        self.whole.is_some()
    }

    /// What a store keeps of it: the batch's events, else itself.
    pub fn records(&self) -> &[Ticket] {
        self.members().map_or(std::slice::from_ref(self), Vec::as_slice)
    }

    /// The batch's events (empty for any other delivery), updated with the batch's attempts.
    pub fn members_mut(&mut self) -> &mut [Ticket] {
        let attempts = self.attempts;
        match self.whole.as_deref_mut() {
            Some(Whole::Batch(members)) => {
                members.iter_mut().for_each(|m| m.attempts = attempts);
                members
            }
            _ => &mut [],
        }
    }

    /// Ends a batch's members with `end` (each one counted); empty for any other delivery.
    fn end_members(&mut self, mut end: impl FnMut(Ticket)) {
        let first_attempt = self.first_attempt;
        let members = match self.whole.as_deref_mut() {
            Some(Whole::Batch(members)) => std::mem::take(members),
            _ => Vec::new(),
        };
        for mut member in members {
            member.first_attempt = first_attempt;
            end(member);
        }
    }

    /// Counts the events of a digest message that will not be delivered.
    fn digest_events_lost(&self) {
        if let Some(group) = &self.group {
            self.counters().digest_events_lost(group.events);
        }
    }

    /// Makes it a digest message of `events` events: `undelivered` is cleared when it ends,
    /// however it ends; if it ends dropped or failed, its events are counted as lost.
    pub fn for_group(
        mut self,
        undelivered: std::sync::Arc<std::sync::atomic::AtomicBool>,
        events: u64,
    ) -> Self {
        self.group = Some(Box::new(GroupMessage { undelivered, events }));
        self
    }

    /// Marks it as held by a durable outbox (once its record is in the outbox's journal).
    pub fn mark_durable(&mut self) {
        self.durable = true;
    }

    /// The webhook's counters.
    pub fn counters(&self) -> &WebhookCounters {
        &self.ledger.counters[self.webhook]
    }

    /// Ends it unsent: a silence or a mute interval held its event back (counted by the
    /// caller).
    pub fn withhold(mut self) {
        self.ended = true;
    }

    /// Ends it as delivered with `status` (a batch: each of its events, and one batch,
    /// counted in one go: its events share the batch's latency).
    pub fn delivered(mut self, status: u16) {
        self.ended = true;
        let latency = self.first_attempt.map_or(Duration::ZERO, |t| t.elapsed());
        if self.is_batch() {
            let ledger = std::sync::Arc::clone(&self.ledger);
            let counters = &ledger.counters[self.webhook];
            counters.batch_delivered();
            // Counted before the members end: a flush that sees them ended sees them counted.
            let events = self.members().map_or(0, |members| members.len() as u64);
            counters.delivered(events, status, latency);
            return self.end_members(|mut member| {
                member.ended = true;
                counters
                    .metrics
                    .ended(member.event, Outcome::Delivered, Some(latency));
            });
        }
        if let Some(packed) = self.packed_events() {
            self.counters().batch_delivered();
            self.counters()
                .delivered(u64::from(packed.events), status, latency);
            return packed.ended(&self.counters().metrics, Outcome::Delivered, Some(latency));
        }
        self.counters().delivered(1, status, latency);
        self.counters()
            .metrics
            .ended(self.event, Outcome::Delivered, Some(latency));
    }

    /// Ends it as failed for good; returns how many deliveries of the webhook have now
    /// failed in a row (for paced warnings).
    pub fn failed(mut self, status: Option<u16>, error: String) -> u64 {
        self.ended = true;
        if self.is_batch() {
            let mut streak = 0;
            self.end_members(|member| streak = member.failed(status, error.clone()));
            return streak;
        }
        let took = self.first_attempt.map(|t| t.elapsed());
        if let Some(packed) = self.packed_events() {
            packed.ended(&self.counters().metrics, Outcome::Failed, took);
            return self.counters().failed(u64::from(packed.events), status, error);
        }
        self.counters().metrics.ended(self.event, Outcome::Failed, took);
        self.digest_events_lost();
        self.counters().failed(1, status, error)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if matches!(self.whole.as_deref(), Some(Whole::Batch(_))) {
            return; // a batch takes no slot; its members (if any are left) count themselves
        }
        if !self.ended && !self.durable {
            match self.packed_events() {
                Some(packed) => {
                    self.counters().dropped(u64::from(packed.events));
                    packed.ended(&self.counters().metrics, Outcome::Dropped, None);
                }
                None => {
                    self.counters().dropped(1);
                    self.counters().metrics.ended(self.event, Outcome::Dropped, None);
                }
            }
            self.digest_events_lost();
        }
        if let Some(group) = &self.group {
            group.undelivered.store(false, SeqCst);
        }
        if self.slots > 0 {
            self.ledger.end(self.webhook, self.slots);
        }
    }
}

/// A digest message's tie to its group.
struct GroupMessage {
    /// The group's "message undelivered" flag, cleared when the ticket ends.
    undelivered: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Events the message counts.
    events: u64,
}

/// What makes a delivery's body whole (sent as it is, never framed with others).
enum Whole {
    /// A batch of these events: sent, retried and ended as one delivery, each event's end
    /// counted when the batch ends.
    Batch(Vec<Ticket>),
    /// An already framed batch of this many events (a replayed batch dead letter).
    Framed(u32),
    /// Events packed into one body as they were routed (see [`Packed`]).
    Packed(Packed),
}

/// The events of a batch packed as they were routed (a batching webhook whose outbox is
/// memory: nothing per event is queued, framed or ended apart), counted by event.
#[derive(Debug, Default)]
pub struct Packed {
    by_event: [u32; Event::ALL.len()],
    /// Events packed so far.
    pub events: u32,
}

impl Packed {
    /// Counts one more event of `event`.
    pub fn add(&mut self, event: Event) {
        self.by_event[event as usize] += 1;
        self.events += 1;
    }

    /// Counts the end of every packed event with `outcome` in `metrics`.
    fn ended(&self, metrics: &DeliveryMetrics, outcome: Outcome, took: Option<Duration>) {
        for (event, count) in Event::ALL.iter().zip(self.by_event) {
            if count > 0 {
                metrics.ended_events(*event, outcome, took, count.into());
            }
        }
    }
}

/// An event admitted for a webhook that filters or digests, until the alerting stage has
/// taken it: such a webhook takes no delivery slot at admission, so this bounds what a storm
/// the runtime has not caught up with may hold (`queue_capacity` events per webhook).
pub struct Routing {
    ledger: std::sync::Arc<Ledger>,
    pub webhook: usize,
}

impl Drop for Routing {
    fn drop(&mut self) {
        self.ledger.counters[self.webhook].routing.fetch_sub(1, Relaxed);
    }
}

/// Latencies kept for the percentiles: the most recent deliveries only.
const LATENCY_WINDOW: usize = 1024;

/// Live counters of one webhook.
#[derive(Default)]
pub struct WebhookCounters {
    delivered: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
    /// Queue slots taken (by hook threads) and given back (by the runtime): the deliveries
    /// queued, in flight or waiting to retry are the difference, bounded by the capacity.
    taken: Padded<AtomicU64>,
    given_back: Padded<AtomicU64>,
    /// Events `match`, `exclude` or `min_severity` turned away.
    filtered: AtomicU64,
    /// Events that left a threshold's window before their group fired.
    below_threshold: AtomicU64,
    /// Digest groups open now.
    groups: AtomicU64,
    /// Digest messages queued so far.
    digest_messages: AtomicU64,
    /// Events of digest messages that were dropped or failed.
    digest_events_lost: AtomicU64,
    /// Whether its digest groups are the fleet's now (see `stats::WebhookStats`).
    digest_shared: AtomicBool,
    /// Batch requests delivered.
    batches: AtomicU64,
    /// Events a mute (or outside an active) time interval held back.
    muted: AtomicU64,
    /// Events an active silence held back.
    silenced: AtomicU64,
    /// Events admitted and not yet routed through the alerting stage (see [`Routing`]).
    routing: AtomicU64,
    /// Failures since the last success (reset by a delivery); paces failure logging.
    failing_streak: AtomicU64,
    last: Mutex<LastOutcome>,
    /// Deliveries by event and outcome, and delivery times (for Prometheus).
    pub metrics: DeliveryMetrics,
}

#[derive(Default)]
struct LastOutcome {
    status: Option<u16>,
    error: Option<String>,
    latencies_ms: VecDeque<f64>,
}

impl WebhookCounters {
    /// `events` deliveries succeeded with `status` after `latency` (first attempt to
    /// success; a batch's events share it).
    pub fn delivered(&self, events: u64, status: u16, latency: Duration) {
        self.delivered.fetch_add(events, Relaxed);
        self.failing_streak.store(0, Relaxed);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.status = Some(status);
        let window = &mut last.latencies_ms;
        for _ in 0..events.min(LATENCY_WINDOW as u64) {
            if window.len() == LATENCY_WINDOW {
                window.pop_front();
            }
            window.push_back(latency.as_secs_f64() * 1000.0);
        }
    }

    /// A delivery failed for good; `error` must already be free of secrets. Returns how
    /// many deliveries in a row have now failed.
    pub fn failed(&self, events: u64, status: Option<u16>, error: String) -> u64 {
        self.failed.fetch_add(events, Relaxed);
        self.record_error(status, error);
        self.failing_streak.fetch_add(events, Relaxed) + events
    }

    /// An attempt failed and will be retried.
    pub fn retried(&self, status: Option<u16>, error: String) {
        self.retries.fetch_add(1, Relaxed);
        self.record_error(status, error);
    }

    /// Deliveries were never attempted (queue full) or abandoned at close; returns the
    /// webhook's drops so far.
    pub fn dropped(&self, count: u64) -> u64 {
        self.dropped.fetch_add(count, Relaxed) + count
    }

    /// An event was filtered (match, exclude, min_severity).
    pub fn filtered(&self) {
        self.filtered.fetch_add(1, Relaxed);
    }

    /// Events filtered so far.
    pub fn filtered_count(&self) -> u64 {
        self.filtered.load(Relaxed)
    }

    /// Events aged out of a threshold's window unfired.
    pub fn below_threshold(&self, count: u64) {
        self.below_threshold.fetch_add(count, Relaxed);
    }

    /// A time interval held an event back.
    pub fn muted(&self) {
        self.muted.fetch_add(1, Relaxed);
    }

    /// A silence held an event back.
    pub fn silenced(&self) {
        self.silenced.fetch_add(1, Relaxed);
    }

    /// A batch request was delivered.
    pub fn batch_delivered(&self) {
        self.batches.fetch_add(1, Relaxed);
    }

    /// Events of a digest message that will not be delivered (dropped or failed).
    pub fn digest_events_lost(&self, events: u64) {
        self.digest_events_lost.fetch_add(events, Relaxed);
    }

    /// A digest message was queued.
    pub fn digest_message(&self) {
        self.digest_messages.fetch_add(1, Relaxed);
    }

    /// Sets how many digest groups are open.
    pub fn set_groups(&self, groups: usize) {
        self.groups.store(groups as u64, Relaxed);
    }

    /// Sets whether the fleet digests this webhook's groups now.
    pub fn set_digest_shared(&self, shared: bool) {
        self.digest_shared.store(shared, Relaxed);
    }

    /// Digest groups open.
    pub fn groups(&self) -> u64 {
        self.groups.load(Relaxed)
    }

    /// The latest status and error seen.
    pub fn last_outcome(&self) -> (Option<u16>, Option<String>) {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        (last.status, last.error.clone())
    }

    /// Takes a queue slot if fewer than `capacity` are taken.
    pub fn try_reserve(&self, capacity: usize) -> bool {
        let capacity = capacity as u64;
        // Slots given back only grow: an older count errs on the side of a full queue.
        let given_back = self.given_back.load(SeqCst);
        self.taken
            .fetch_update(SeqCst, SeqCst, |n| (n - given_back < capacity).then_some(n + 1))
            .is_ok()
    }

    /// Gives a queue slot back.
    pub fn release(&self, slots: u64) {
        self.given_back.fetch_add(slots, SeqCst);
    }

    /// Deliveries queued, in flight or waiting to retry.
    pub fn queued(&self) -> u64 {
        let given_back = self.given_back.load(SeqCst);
        self.taken.load(SeqCst) - given_back
    }

    fn record_error(&self, status: Option<u16>, error: String) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if status.is_some() {
            last.status = status;
        }
        last.error = Some(error);
    }

    /// Attempts retried so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Relaxed)
    }

    /// A snapshot, with what the engine knows of the webhook besides its counters.
    pub fn snapshot(&self, labels: WebhookLabels<'_>) -> WebhookStats {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut sorted: Vec<f64> = last.latencies_ms.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        WebhookStats {
            id: labels.id.to_owned(),
            url: labels.url.to_owned(),
            delivered: self.delivered.load(Relaxed),
            failed: self.failed.load(Relaxed),
            retries: self.retries.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            queued: self.queued(),
            circuit: labels.circuit,
            dead_letters: labels.dead_letters,
            filtered: self.filtered_count(),
            below_threshold: self.below_threshold.load(Relaxed),
            groups: self.groups(),
            digest_messages: self.digest_messages.load(Relaxed),
            digest_shared: self.digest_shared.load(Relaxed),
            digest_events_lost: self.digest_events_lost.load(Relaxed),
            batches: self.batches.load(Relaxed),
            muted: self.muted.load(Relaxed),
            silenced: self.silenced.load(Relaxed),
            last_status: last.status,
            last_error: last.error.clone(),
            latency_p50_ms: percentile(&sorted, 0.50),
            latency_p99_ms: percentile(&sorted, 0.99),
        }
    }
}

/// What a snapshot shows besides the counters.
pub struct WebhookLabels<'a> {
    pub id: &'a str,
    /// The redacted URL.
    pub url: &'a str,
    pub circuit: Circuit,
    pub dead_letters: u64,
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = (q * last as f64).round() as usize;
    Some((sorted[rank] * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_awaiting_the_alerting_stage_are_bounded_per_webhook() {
        let ledger = std::sync::Arc::new(Ledger::new(2));
        let held: Vec<Routing> = (0..2).filter_map(|_| ledger.await_routing(0, 2)).collect();
        assert_eq!(held.len(), 2);
        assert!(ledger.await_routing(0, 2).is_none(), "full at its capacity");
        assert!(ledger.await_routing(1, 2).is_some(), "per webhook");
        drop(held);
        assert!(
            ledger.await_routing(0, 2).is_some(),
            "routing gives the slots back"
        );
        assert_eq!(ledger.pending(), 0, "they are not deliveries");
    }

    #[test]
    fn counters_keep_percentiles_and_the_last_outcome() {
        let c = WebhookCounters::default();
        for ms in 1..=100 {
            c.delivered(1, 200, Duration::from_millis(ms));
        }
        c.retried(Some(503), "HTTP 503".into());
        c.failed(1, None, "connection refused".into());
        let w = c.snapshot(WebhookLabels {
            id: "h1",
            url: "http://h/…",
            circuit: Circuit::Closed,
            dead_letters: 3,
        });
        assert_eq!((w.delivered, w.failed, w.retries), (100, 1, 1));
        assert_eq!((w.latency_p50_ms, w.latency_p99_ms), (Some(51.0), Some(99.0)));
        assert_eq!(
            (w.last_status, w.last_error.as_deref()),
            (Some(503), Some("connection refused"))
        );
    }
}
