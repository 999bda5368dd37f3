//! What the durable outboxes share: deliveries are scheduled in memory (the memory outbox)
//! and every change — a new delivery, a retry with its attempt count and due time, an
//! acknowledgement, a dead letter — is recorded in a journal that the engine's committer hands
//! to a [`Store`] every few milliseconds (group commit: one write per batch, not per event).
//! A crash loses at most the journal not yet written; what was written is resumed later with
//! the same delivery ids. The stores (redb on disk, Redis) only write batches and read back.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DeadLetter, MemoryOutbox, Next, Outbox, OutboxStatus, Released, Resumed, ORPHAN};
use crate::events::Event;
use crate::ledger::Ticket;

/// A pending delivery as stored.
#[derive(Serialize, Deserialize)]
pub struct Record {
    /// The delivery id (the disk store also keys records by it).
    #[serde(default)]
    pub id: Uuid,
    pub webhook: String,
    pub event: Event,
    pub attempts: u32,
    /// Next attempt, in milliseconds since the Unix epoch.
    pub due_ms: u64,
    pub body: String,
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
        }
    }
}

/// A dead letter as stored.
#[derive(Serialize, Deserialize)]
pub struct DeadRecord {
    #[serde(default)]
    pub id: Uuid,
    pub webhook: String,
    pub event: Event,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: String,
    pub time: String,
    pub body: String,
}

impl DeadRecord {
    /// The record of `letter`.
    fn of(letter: &DeadLetter) -> Self {
        DeadRecord {
            id: letter.delivery_id,
            webhook: letter.webhook_id.clone(),
            event: letter.event,
            attempts: letter.attempts,
            last_status: letter.last_status,
            last_error: letter.last_error.clone(),
            time: letter.time.clone(),
            body: String::from_utf8_lossy(&letter.body).into_owned(),
        }
    }

    /// The dead letter, for the webhooks `ids` in config order.
    pub fn letter(self, ids: &[String]) -> DeadLetter {
        DeadLetter {
            webhook: ids.iter().position(|id| *id == self.webhook).unwrap_or(ORPHAN),
            webhook_id: self.webhook,
            event: self.event,
            delivery_id: self.id,
            attempts: self.attempts,
            last_status: self.last_status,
            last_error: self.last_error,
            time: self.time,
            body: Bytes::from(self.body),
        }
    }
}

/// One change waiting for the next write.
pub enum Change {
    /// A pending delivery (a [`Record`] as JSON): new (`push`) or rescheduled.
    Put {
        id: Uuid,
        webhook: usize,
        event: Event,
        new: bool,
        due_ms: u64,
        value: Vec<u8>,
    },
    /// A delivery that left the outbox (delivered, or dead-lettered by the next change).
    Delete(Uuid),
    /// A dead letter (a [`DeadRecord`] as JSON).
    PutDead(Uuid, Vec<u8>),
    DeleteDead(Uuid),
}

/// What a batch does to one delivery, after coalescing its changes.
pub enum Final<'a> {
    Put {
        webhook: usize,
        new: bool,
        due_ms: u64,
        value: &'a [u8],
    },
    Delete,
}

/// A batch reduced to the last change of each delivery and of each dead letter (`None`:
/// deleted), in first-seen order, which is what a store writes: a delivery admitted and
/// delivered within one batch (or while the store was away) costs it nothing; one retried
/// three times is written once.
pub struct Plan<'a> {
    pub deliveries: Vec<(Uuid, Final<'a>)>,
    pub dead: Vec<(Uuid, Option<&'a [u8]>)>,
}

impl<'a> Plan<'a> {
    fn of(batch: &'a [Change]) -> Self {
        let mut plan = Plan {
            deliveries: Vec::new(),
            dead: Vec::new(),
        };
        let (mut delivery_at, mut dead_at) = (HashMap::new(), HashMap::new());
        // Deliveries this batch creates: if it also deletes them, the store never sees them.
        let mut born = HashSet::new();
        for change in batch {
            match change {
                Change::Put {
                    id,
                    webhook,
                    new,
                    due_ms,
                    value,
                    ..
                } => {
                    if *new && !delivery_at.contains_key(id) {
                        born.insert(*id);
                    }
                    let last = Final::Put {
                        webhook: *webhook,
                        new: *new,
                        due_ms: *due_ms,
                        value,
                    };
                    upsert(&mut plan.deliveries, &mut delivery_at, *id, last);
                }
                Change::Delete(id) => upsert(&mut plan.deliveries, &mut delivery_at, *id, Final::Delete),
                Change::PutDead(id, value) => {
                    upsert(&mut plan.dead, &mut dead_at, *id, Some(value.as_slice()))
                }
                Change::DeleteDead(id) => upsert(&mut plan.dead, &mut dead_at, *id, None),
            }
        }
        plan.deliveries
            .retain(|(id, last)| !(matches!(last, Final::Delete) && born.contains(id)));
        plan
    }
}

/// Sets the last change of `id` in `list` (in first-seen order).
fn upsert<T>(list: &mut Vec<(Uuid, T)>, at: &mut HashMap<Uuid, usize>, id: Uuid, last: T) {
    match at.get(&id) {
        Some(&index) => list[index].1 = last,
        None => {
            at.insert(id, list.len());
            list.push((id, last));
        }
    }
}

/// Where a durable outbox writes its batches.
pub trait Store: Send + Sync {
    /// `stats.outbox.type`.
    const KIND: &'static str;
    /// Applies `plan` in one write.
    fn write(&self, plan: &Plan) -> Result<(), String>;
    /// Lets go of the store after the last write (at close).
    fn release(&self);
    /// Whether the store is reachable now.
    fn connected(&self) -> bool {
        true
    }
    /// Why it is not, if it is not.
    fn last_error(&self) -> Option<String> {
        None
    }
    /// Deliveries to take over now, at most `room[webhook]` per webhook; dead letters read
    /// from the store go to `keep_dead` (oldest first) before the store reports itself
    /// connected.
    fn claim(&self, _room: &[usize], _keep_dead: &dyn Fn(Vec<DeadRecord>)) -> Vec<Resumed> {
        Vec::new()
    }
}

/// A durable outbox: memory scheduling, a journal, and a [`Store`] it is written to.
pub struct Journaled<S> {
    memory: MemoryOutbox,
    pub store: S,
    /// Webhook ids in config order (records name webhooks by id, never by index).
    ids: Vec<String>,
    journal: Mutex<Vec<Change>>,
    /// Held while a batch is taken and written, so batches reach the store in order.
    commit_order: Mutex<()>,
    /// Set (under the journal lock) when the store is released at close: no record after it.
    released: AtomicBool,
    committed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl<S: Store> Journaled<S> {
    /// An outbox writing to `store`, for webhooks `ids`, keeping `dead_capacity` dead letters.
    pub fn new(store: S, ids: Vec<String>, dead_capacity: usize) -> Self {
        Journaled {
            memory: MemoryOutbox::new(ids.len(), dead_capacity),
            store,
            ids,
            journal: Mutex::default(),
            commit_order: Mutex::default(),
            released: AtomicBool::new(false),
            committed: AtomicU64::new(0),
            last_error: Mutex::default(),
        }
    }

    /// Keeps dead letters read from the store (oldest first); evictions are recorded.
    pub fn keep_dead(&self, dead: Vec<DeadRecord>) {
        for record in dead {
            if let Some(evicted) = self.memory.keep_dead_letter(record.letter(&self.ids)) {
                self.record(Change::DeleteDead(evicted.delivery_id));
            }
        }
    }

    fn journal(&self) -> MutexGuard<'_, Vec<Change>> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, change: Change) {
        self.journal().push(change);
    }

    fn set_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Records `ticket` as pending, next due at `due`, and marks it durable — unless the store
    /// was released at close (then it is not kept, and ends counted like any other). The check
    /// and the record happen under the journal lock, which the release takes too, so a record
    /// is either in the last batch or not made at all; no write is ever waited for here.
    fn record_pending(&self, ticket: &mut Ticket, due: Instant, new: bool) {
        let due_ms = unix_ms(due);
        let record = Record {
            id: ticket.id,
            webhook: self.ids[ticket.webhook].clone(),
            event: ticket.event,
            attempts: ticket.attempts,
            due_ms,
            body: String::from_utf8_lossy(&ticket.body).into_owned(),
        };
        let value = serde_json::to_vec(&record).expect("a record serialises");
        let (id, webhook, event) = (ticket.id, ticket.webhook, ticket.event);
        let mut journal = self.journal();
        if self.released.load(Relaxed) {
            return;
        }
        journal.push(Change::Put {
            id,
            webhook,
            event,
            new,
            due_ms,
            value,
        });
        drop(journal);
        ticket.mark_durable();
    }

    /// Writes `batch` (with `commit_order` held by the caller); on failure it goes back to the
    /// head of the journal for the next attempt.
    fn write_batch(&self, batch: Vec<Change>) -> Result<(), (String, Vec<Change>)> {
        if batch.is_empty() {
            return Ok(());
        }
        let written = batch
            .iter()
            .filter(|c| matches!(c, Change::Put { new: true, .. }))
            .count() as u64;
        match self.store.write(&Plan::of(&batch)) {
            Ok(()) => {
                self.committed.fetch_add(written, Relaxed);
                self.set_error(None);
                Ok(())
            }
            Err(e) => {
                let message = format!("outbox commit failed: {e}");
                self.set_error(Some(message.clone()));
                Err((message, batch))
            }
        }
    }
}

impl<S: Store> Outbox for Journaled<S> {
    fn push(&self, mut ticket: Ticket) {
        self.record_pending(&mut ticket, Instant::now(), true);
        self.memory.push(ticket);
    }

    fn push_front(&self, ticket: Ticket) {
        self.memory.push_front(ticket);
    }

    fn schedule(&self, mut ticket: Ticket, due: Instant) {
        self.record_pending(&mut ticket, due, false);
        self.memory.schedule(ticket, due);
    }

    fn next_due(&self, webhook: usize, now: Instant) -> Next {
        self.memory.next_due(webhook, now)
    }

    fn drain(&self, webhook: usize) -> Vec<Ticket> {
        self.memory.drain(webhook)
    }

    fn dead_letter(&self, letter: DeadLetter) {
        let value = serde_json::to_vec(&DeadRecord::of(&letter)).expect("a record serialises");
        let id = letter.delivery_id;
        let evicted = self.memory.keep_dead_letter(letter);
        let mut journal = self.journal();
        journal.push(Change::Delete(id));
        journal.push(Change::PutDead(id, value));
        if let Some(evicted) = evicted {
            journal.push(Change::DeleteDead(evicted.delivery_id));
        }
    }

    fn dead_letters(&self, webhook: Option<&str>) -> Vec<DeadLetter> {
        self.memory.dead_letters(webhook)
    }

    fn take_dead_letters(&self, webhook: Option<&str>) -> Vec<DeadLetter> {
        let taken = self.memory.take_dead_letters(webhook);
        let mut journal = self.journal();
        journal.extend(taken.iter().map(|l| Change::DeleteDead(l.delivery_id)));
        taken
    }

    fn dead_letter_count(&self, index: usize) -> u64 {
        self.memory.dead_letter_count(index)
    }

    fn dead_letters_evicted(&self) -> u64 {
        self.memory.dead_letters_evicted()
    }

    fn ack(&self, ticket: &Ticket) {
        self.record(Change::Delete(ticket.id));
    }

    fn restore(&self, ticket: Ticket, due: Instant) {
        self.memory.schedule(ticket, due);
    }

    fn durable(&self) -> bool {
        true
    }

    fn commit(&self) -> Result<(), String> {
        let _order = self.commit_order.lock().unwrap_or_else(|e| e.into_inner());
        let batch = std::mem::take(&mut *self.journal());
        self.write_batch(batch).map_err(|(message, batch)| {
            let mut journal = self.journal();
            let newer = std::mem::replace(&mut *journal, batch);
            journal.extend(newer);
            message
        })
    }

    fn claim(&self, room: &[usize]) -> Vec<Resumed> {
        self.store.claim(room, &|dead| self.keep_dead(dead))
    }

    fn release(&self) -> Result<(), Released> {
        let _order = self.commit_order.lock().unwrap_or_else(|e| e.into_inner());
        let batch = {
            let mut journal = self.journal();
            self.released.store(true, Relaxed);
            std::mem::take(&mut *journal)
        };
        let written = self.write_batch(batch);
        self.store.release();
        written.map_err(|(message, batch)| {
            // New deliveries not written and not ended since (those delivered meanwhile were
            // counted as delivered).
            let ended: std::collections::HashSet<Uuid> = batch
                .iter()
                .filter_map(|c| match c {
                    Change::Delete(id) => Some(*id),
                    _ => None,
                })
                .collect();
            let lost = batch
                .into_iter()
                .filter_map(|c| match c {
                    Change::Put {
                        id,
                        webhook,
                        event,
                        new: true,
                        ..
                    } if !ended.contains(&id) => Some((webhook, event)),
                    _ => None,
                })
                .collect();
            Released { message, lost }
        })
    }

    fn status(&self) -> OutboxStatus {
        OutboxStatus {
            kind: S::KIND,
            committed: self.committed.load(Relaxed),
            uncommitted: self.journal().len() as u64,
            connected: self.store.connected(),
            last_error: (self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone())
                .or_else(|| self.store.last_error()),
        }
    }
}

/// `due` as milliseconds since the Unix epoch.
pub fn unix_ms(due: Instant) -> u64 {
    let now = SystemTime::now();
    let at = match due.checked_duration_since(Instant::now()) {
        Some(ahead) => now + ahead,
        None => now,
    };
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    unix_ms(Instant::now())
}

/// The instant of a Unix time in milliseconds (now, if it has passed).
fn instant_of(ms: u64) -> Instant {
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    let ahead = at.duration_since(SystemTime::now()).unwrap_or_default();
    Instant::now() + ahead
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(id: Uuid, new: bool, value: &[u8]) -> Change {
        Change::Put {
            id,
            webhook: 0,
            event: Event::ToolError,
            new,
            due_ms: 0,
            value: value.to_vec(),
        }
    }

    #[test]
    fn a_plan_keeps_the_last_change_of_each_delivery_and_skips_what_never_needed_storing() {
        let (born, retried, stored, replayed) =
            (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let batch = [
            put(born, true, b"b"),
            put(retried, true, b"r1"),
            put(retried, false, b"r2"),
            Change::Delete(stored),
            put(retried, false, b"r3"),
            Change::Delete(born),
            Change::Delete(replayed),
            put(replayed, true, b"p"),
            Change::PutDead(stored, b"d".to_vec()),
        ];
        let plan = Plan::of(&batch);
        let deliveries: Vec<_> = plan
            .deliveries
            .iter()
            .map(|(id, last)| match last {
                Final::Put { value, .. } => (*id, Some(*value)),
                Final::Delete => (*id, None),
            })
            .collect();
        let expected: Vec<(Uuid, Option<&[u8]>)> =
            vec![(retried, Some(b"r3")), (stored, None), (replayed, Some(b"p"))];
        assert_eq!(deliveries, expected);
        assert_eq!(plan.dead, vec![(stored, Some(b"d".as_slice()))]);
    }
}
