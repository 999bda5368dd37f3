//! Where deliveries wait: queued, waiting to retry, or dead-lettered. The delivery engine
//! talks to an [`Outbox`] and knows no backend: `memory` (the default, lost with the
//! process), `disk` (redb in a directory: survives restarts and crashes) or `redis` (Redis
//! Streams: shared by a gateway fleet, survives the death of any replica).

mod disk;
mod journal;
mod memory;
mod redis;

use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::events::Event;
use crate::ledger::Ticket;
pub use disk::DiskOutbox;
pub use memory::MemoryOutbox;
pub use redis::RedisOutbox;

/// What a webhook's dispatcher should do next.
pub enum Next {
    /// Attempt this delivery now.
    Ready(Ticket),
    /// Nothing is due before this instant.
    At(Instant),
    /// Nothing is queued.
    Empty,
}

/// The webhook index of a dead letter whose webhook is no longer configured (found in a
/// durable outbox at start).
pub const ORPHAN: usize = usize::MAX;

/// A delivery that failed for good (a non-retryable answer, or retries exhausted).
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// Index of the webhook in config order, or [`ORPHAN`].
    pub webhook: usize,
    pub webhook_id: String,
    pub event: Event,
    pub delivery_id: Uuid,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: String,
    /// RFC 3339 UTC, when it was dead-lettered.
    pub time: String,
    /// The body that was sent: the event's variables as the template rendered them.
    pub body: Bytes,
}

/// A dead letter as hosts see it (stats-like JSON; the body as a JSON value).
#[derive(Serialize)]
pub struct DeadLetterView {
    pub webhook_id: String,
    pub event: &'static str,
    pub delivery_id: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: String,
    pub time: String,
    pub body: Value,
}

impl DeadLetter {
    /// Its JSON view.
    pub fn view(&self) -> DeadLetterView {
        DeadLetterView {
            webhook_id: self.webhook_id.clone(),
            event: self.event.name(),
            delivery_id: self.delivery_id.to_string(),
            attempts: self.attempts,
            last_status: self.last_status,
            last_error: self.last_error.clone(),
            time: self.time.clone(),
            body: serde_json::from_slice(&self.body).unwrap_or(Value::Null),
        }
    }
}

/// What `stats.outbox` shows.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OutboxStatus {
    /// `memory`, `disk` or `redis`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// New deliveries the outbox has settled so far (0 for memory): written durably, or
    /// (redis, which writes only the last state of a batch) delivered before they had to be.
    pub committed: u64,
    /// Changes waiting for the next commit: what a crash now would lose.
    pub uncommitted: u64,
    /// Whether the store is reachable (always true for memory and disk).
    pub connected: bool,
    /// The latest store error, if any.
    pub last_error: Option<String>,
}

/// The final commit at close failed: what it could not keep.
pub struct Released {
    pub message: String,
    /// The webhook index and event of each admitted delivery that is lost (to be counted).
    pub lost: Vec<(usize, Event)>,
}

/// A delivery read back from a durable outbox at start (or taken over from a shared one).
pub struct Resumed {
    pub webhook_id: String,
    pub event: Event,
    pub delivery_id: Uuid,
    pub attempts: u32,
    /// When its next attempt is due (now, if that time has passed).
    pub due: Instant,
    pub body: Bytes,
}

/// The queue interface the delivery engine uses. Per webhook: FIFO for new deliveries,
/// retries ordered by due time; dead letters bounded, oldest evicted. A durable outbox
/// records every change and writes them in batches ([`Outbox::commit`], group commit).
pub trait Outbox: Send + Sync {
    /// Queues a new delivery, due now (a durable outbox marks the ticket durable once its
    /// record is journaled).
    fn push(&self, ticket: Ticket);
    /// Returns a delivery the dispatcher took but may not send yet; it goes first.
    fn push_front(&self, ticket: Ticket);
    /// Queues a retry, due at `due`.
    fn schedule(&self, ticket: Ticket, due: Instant);
    /// The next delivery of `webhook` due at `now`, or when one will be.
    fn next_due(&self, webhook: usize, now: Instant) -> Next;
    /// Takes every queued delivery of `webhook` (abandoned at close).
    fn drain(&self, webhook: usize) -> Vec<Ticket>;
    /// Keeps a delivery that failed for good.
    fn dead_letter(&self, letter: DeadLetter);
    /// Copies of the dead letters of `webhook` (by id), or of all.
    fn dead_letters(&self, webhook: Option<&str>) -> Vec<DeadLetter>;
    /// Removes and returns the dead letters of `webhook` (by id), or all, for a replay.
    fn take_dead_letters(&self, webhook: Option<&str>) -> Vec<DeadLetter>;
    /// Dead letters held for the webhook at `index`.
    fn dead_letter_count(&self, index: usize) -> u64;
    /// Dead letters evicted because the store was full.
    fn dead_letters_evicted(&self) -> u64;
    /// A delivery succeeded: forget it.
    fn ack(&self, ticket: &Ticket);
    /// Puts a resumed delivery back in its queue (it is already stored).
    fn restore(&self, ticket: Ticket, due: Instant);
    /// Whether deliveries survive the process: closing then leaves what is undelivered in
    /// place for the next start instead of abandoning it.
    fn durable(&self) -> bool;
    /// Writes every change recorded so far in one transaction.
    fn commit(&self) -> Result<(), String>;
    /// Deliveries this process should take over now, at most `room[webhook]` per webhook (a
    /// shared outbox: those left by a process that died); they are already stored.
    fn claim(&self, _room: &[usize]) -> Vec<Resumed> {
        Vec::new()
    }
    /// Commits what is left and lets go of the store (at close), so that a new engine can
    /// open it at once; a delivery queued after that is no longer kept.
    fn release(&self) -> Result<(), Released>;
    /// What `stats.outbox` shows.
    fn status(&self) -> OutboxStatus;
}
