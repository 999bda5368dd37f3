//! What is pending and how each delivery ended. Every delivery admitted is a [`Ticket`]
//! until it ends; whatever path ends it — delivered, failed, abandoned at close, a full
//! queue, or a panic in the task holding it — the ticket's end is counted exactly once and
//! the webhook's queue slot and the engine's pending count are given back.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

use crate::events::Event;
use crate::metrics::Outcome;
use crate::stats::WebhookCounters;

/// The engine's counters and its pending count, which `flush` and `close` wait on.
pub struct Ledger {
    /// One per webhook, in config order.
    pub counters: Vec<WebhookCounters>,
    pending: AtomicU64,
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
            pending: AtomicU64::new(0),
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
            self.pending.fetch_add(1, SeqCst);
        }
        taken
    }

    /// Takes a queue slot whatever the capacity: for deliveries a durable outbox already
    /// holds, which must not be lost to a smaller capacity after a restart.
    pub fn reserve_anyway(&self, webhook: usize) {
        self.counters[webhook].try_reserve(usize::MAX);
        self.pending.fetch_add(1, SeqCst);
    }

    /// Deliveries not yet ended.
    pub fn pending(&self) -> u64 {
        self.pending.load(SeqCst)
    }

    /// Blocks until nothing is pending or `deadline` passes (None: no deadline).
    pub fn wait_idle(&self, deadline: Option<Instant>) -> bool {
        let mut lock = self.idle_lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.pending() > 0 {
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

    fn end_one(&self, webhook: usize) {
        self.counters[webhook].release();
        if self.pending.fetch_sub(1, SeqCst) == 1 {
            let _lock = self.idle_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.idle.notify_all();
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
    ledger: std::sync::Arc<Ledger>,
    ended: bool,
    /// Kept by a durable outbox: if the process lets go of it unended (close), it waits there
    /// for the next start instead of being lost, so it is not counted as dropped.
    durable: bool,
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
            ledger,
            ended: false,
            durable: false,
        }
    }

    /// Marks it as held by a durable outbox (once its record is in the outbox's journal).
    pub fn mark_durable(&mut self) {
        self.durable = true;
    }

    /// The webhook's counters.
    pub fn counters(&self) -> &WebhookCounters {
        &self.ledger.counters[self.webhook]
    }

    /// Ends it as delivered with `status`.
    pub fn delivered(mut self, status: u16) {
        let latency = self.first_attempt.map_or(Duration::ZERO, |t| t.elapsed());
        self.counters().delivered(status, latency);
        self.counters()
            .metrics
            .ended(self.event, Outcome::Delivered, Some(latency));
        self.ended = true;
    }

    /// Ends it as failed for good; returns how many deliveries of the webhook have now
    /// failed in a row (for paced warnings).
    pub fn failed(mut self, status: Option<u16>, error: String) -> u64 {
        self.ended = true;
        let took = self.first_attempt.map(|t| t.elapsed());
        self.counters().metrics.ended(self.event, Outcome::Failed, took);
        self.counters().failed(status, error)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.ended && !self.durable {
            self.counters().dropped(1);
            self.counters().metrics.ended(self.event, Outcome::Dropped, None);
        }
        self.ledger.end_one(self.webhook);
    }
}
