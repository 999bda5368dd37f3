//! Where a durable outbox keeps deliveries: the [`Store`] trait and its two backends, `disk`
//! (redb in a directory: survives restarts and crashes) and `redis` (Redis Streams: shared by
//! a gateway fleet, survives the death of any replica). The engine schedules deliveries in
//! memory and hands the store [`Plan`]s (group commit, see `journal`); a store only writes
//! plans, takes over deliveries and reads back what it holds. Stores never see the engine's
//! tickets or counters: they deal in [`Record`]s.

pub(crate) mod disk;
pub(crate) mod fleet;
pub(crate) mod journal;
mod open;

pub(crate) use open::{open, Opened};
pub(crate) mod redis;
pub(crate) mod silences;
pub(crate) mod tenants;

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::events::Event;
use crate::trace::Trace;

/// A pending delivery as stored.
#[derive(Serialize, Deserialize)]
pub(crate) struct Record {
    /// The delivery id (the disk store also keys records by it).
    #[serde(default)]
    pub id: Uuid,
    pub webhook: String,
    pub event: Event,
    pub attempts: u32,
    /// Next attempt, in milliseconds since the Unix epoch.
    pub due_ms: u64,
    pub body: String,
    /// Its event's trace (v4; absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
    /// The fingerprint of its webhook's URL (v4; absent in older records, which go by id):
    /// a delivery is resumed only by an engine with that webhook id for that URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Events its body frames when it is a whole batch (a replayed batch dead letter); None
    /// for one event's body (v4; absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}

impl Record {
    /// The delivery to resume from this record (found under the webhook id `webhook`).
    pub fn resumed(self) -> Resumed {
        Resumed {
            webhook_id: self.webhook,
            event: self.event,
            delivery_id: self.id,
            attempts: self.attempts,
            due: instant_of(self.due_ms),
            body: Bytes::from(self.body),
            trace: self.trace,
            batch: self.batch,
        }
    }
}

/// A delivery read back from a durable outbox at start (or taken over from a shared one).
pub(crate) struct Resumed {
    pub webhook_id: String,
    pub event: Event,
    pub delivery_id: Uuid,
    pub attempts: u32,
    /// When its next attempt is due (now, if that time has passed).
    pub due: Instant,
    pub body: Bytes,
    pub trace: Option<Trace>,
    /// Events its body frames when it is a whole batch (see [`Record::batch`]).
    pub batch: Option<u32>,
}

/// A delivery that failed for good (a non-retryable answer, or retries exhausted).
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// Index of the webhook in config order; None when its webhook is no longer configured
    /// (found in a durable outbox at start).
    pub webhook: Option<usize>,
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
    /// Events the body holds when it is a batch (one dead letter for the whole batch).
    pub batch: Option<u32>,
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
    /// Events the body holds when it is a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_events: Option<u32>,
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
            body: serde_json::from_slice(&self.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.body).into_owned())),
            batch_events: self.batch,
        }
    }
}

/// A dead letter as stored.
#[derive(Serialize, Deserialize)]
pub(crate) struct DeadRecord {
    #[serde(default)]
    pub id: Uuid,
    pub webhook: String,
    pub event: Event,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: String,
    pub time: String,
    pub body: String,
    /// Its webhook's URL fingerprint (see [`Record::url`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Events its body frames when it is a whole batch (a replayed batch dead letter); None
    /// for one event's body (v4; absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}

impl DeadRecord {
    /// The dead letter of a stored delivery no loaded config claimed in time.
    pub fn orphan(record: &Record, time: &str) -> Self {
        DeadRecord {
            id: record.id,
            webhook: record.webhook.clone(),
            event: record.event,
            attempts: record.attempts,
            last_status: None,
            last_error: "no loaded config has its webhook (id and URL) after outbox.orphan_after".into(),
            time: time.to_owned(),
            body: record.body.clone(),
            url: record.url.clone(),
            batch: record.batch,
        }
    }

    /// The record of `letter`.
    pub fn of(letter: &DeadLetter) -> Self {
        DeadRecord {
            id: letter.delivery_id,
            webhook: letter.webhook_id.clone(),
            event: letter.event,
            attempts: letter.attempts,
            last_status: letter.last_status,
            last_error: letter.last_error.clone(),
            time: letter.time.clone(),
            body: String::from_utf8_lossy(&letter.body).into_owned(),
            url: None,
            batch: letter.batch,
        }
    }

    /// The dead letter, for the webhooks `ids` in config order.
    pub fn letter(self, ids: &[String]) -> DeadLetter {
        DeadLetter {
            webhook: ids.iter().position(|id| *id == self.webhook),
            webhook_id: self.webhook,
            event: self.event,
            delivery_id: self.id,
            attempts: self.attempts,
            last_status: self.last_status,
            last_error: self.last_error,
            time: self.time,
            body: Bytes::from(self.body),
            batch: self.batch,
        }
    }
}

/// What a batch does to one delivery, after coalescing its changes.
pub(crate) enum LastChange<'a> {
    Put {
        /// The webhook's index in config order.
        webhook: usize,
        /// Not yet in the store (added, not rescheduled).
        new: bool,
        due_ms: u64,
        /// The [`Record`] as JSON.
        value: &'a [u8],
    },
    Delete,
}

/// A batch reduced to the last change of each delivery and of each dead letter (`None`:
/// deleted), in first-seen order: what a store writes in one go.
pub(crate) struct Plan<'a> {
    pub deliveries: Vec<(Uuid, LastChange<'a>)>,
    /// Dead letters: a [`DeadRecord`] as JSON, or deleted.
    pub dead: Vec<(Uuid, Option<&'a [u8]>)>,
}

/// What a store could not write of a [`Plan`]: all of it, or — a Redis Cluster with a primary
/// down — the deliveries and dead letters of the slots it could not reach (the rest was
/// written, so the journal keeps only these).
pub(crate) struct Unwritten {
    pub message: String,
    /// None: nothing was written.
    pub only: Option<Left>,
}

/// The ids of a plan's deliveries and dead letters that a store left unwritten.
#[derive(Default)]
pub(crate) struct Left {
    pub deliveries: HashSet<Uuid>,
    pub dead: HashSet<Uuid>,
}

impl From<String> for Unwritten {
    /// Nothing of the plan was written, for the reason `message`.
    fn from(message: String) -> Self {
        Unwritten { message, only: None }
    }
}

/// What a store hands over: deliveries to take over, dead letters it read (oldest first),
/// and dead letters it no longer holds (replayed or evicted by another process of a fleet).
#[derive(Default)]
pub(crate) struct Claimed {
    pub resumed: Vec<Resumed>,
    pub dead: Vec<DeadRecord>,
    pub gone: Vec<Uuid>,
}

/// Where a durable outbox writes its batches.
pub(crate) trait Store: Send + Sync {
    /// `stats.outbox.type`.
    fn kind(&self) -> &'static str;
    /// Applies `plan` in one write (a cluster: one per slot, see [`Unwritten`]).
    fn write(&self, plan: &Plan) -> Result<(), Unwritten>;
    /// Lets go of the store after the last write (at close).
    fn release(&self);
    /// Whether a write may be tried now: false while the store waits to reconnect or reopen
    /// after a failure, so that nothing is planned or sent meanwhile.
    fn ready(&self) -> bool {
        true
    }
    /// From now on every call to the store returns by `deadline` (close is under way).
    fn close_by(&self, _deadline: Instant) {}
    /// Whether the store is reachable now.
    fn connected(&self) -> bool {
        true
    }
    /// Records found in the store that could not be read (kept aside, not resumed).
    fn unreadable(&self) -> u64 {
        0
    }
    /// Deliveries this process holds in the store (disk: its own file), if it knows.
    fn held(&self) -> Option<u64> {
        None
    }
    /// Deliveries this process adopted from processes that were gone (disk).
    fn adopted(&self) -> u64 {
        0
    }
    /// Why it is not, if it is not.
    fn last_error(&self) -> Option<String> {
        None
    }
    /// Removes the dead letters `ids` from the store for a replay, now; for each, whether it was
    /// still there (false: another process replayed it meanwhile, so this one must not). A
    /// store it cannot reach answers true for all (a replay is at-least-once).
    fn take_dead(&self, ids: &[Uuid]) -> Vec<bool> {
        vec![true; ids.len()]
    }
    /// Whether [`Store::claim`] would do anything now (a round is due, or something waits to
    /// be taken): never waits on the store.
    fn claim_due(&self) -> bool {
        false
    }
    /// Deliveries to take over now, at most `room[webhook]` per webhook, and dead letters read
    /// from the store (before the store reports itself connected).
    fn claim(&self, _room: &[usize]) -> Claimed {
        Claimed::default()
    }
}

/// Locks `mutex`, waiting at most until `deadline` (None: as long as it takes); None when the
/// deadline passed first. For the close path, which must not wait on a store call in flight.
pub(crate) fn lock_until<T>(mutex: &Mutex<T>, deadline: Option<Instant>) -> Option<MutexGuard<'_, T>> {
    let Some(deadline) = deadline else {
        return Some(mutex.lock().unwrap_or_else(|e| e.into_inner()));
    };
    loop {
        match mutex.try_lock() {
            Ok(guard) => return Some(guard),
            Err(std::sync::TryLockError::Poisoned(e)) => return Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if Instant::now() >= deadline => return None,
            Err(std::sync::TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// `due` as milliseconds since the Unix epoch.
pub(crate) fn unix_ms(due: Instant) -> u64 {
    let now = SystemTime::now();
    let at = match due.checked_duration_since(Instant::now()) {
        Some(ahead) => now + ahead,
        None => now,
    };
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    unix_ms(Instant::now())
}

/// The instant of a Unix time in milliseconds (now, if it has passed).
fn instant_of(ms: u64) -> Instant {
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    let ahead = at.duration_since(SystemTime::now()).unwrap_or_default();
    Instant::now() + ahead
}
