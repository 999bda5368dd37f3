//! The journal of a durable outbox: deliveries are scheduled in the engine's memory queue,
//! and every change — a new delivery, a retry with its attempt count and due time, an
//! acknowledgement, a dead letter — is recorded here and handed to the [`Store`] every few
//! milliseconds (group commit: one write per batch, not per event). A crash loses at most the
//! journal not yet written; what was written is resumed later with the same delivery ids.
//! While the store is down a failed batch is kept coalesced — one change per delivery still
//! undelivered, nothing for one admitted and ended meanwhile — so the journal stays bounded by
//! the webhooks' queue capacities.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use uuid::Uuid;

use super::{
    lock_until, unix_ms, Claimed, DeadLetter, DeadRecord, LastChange, Left, Plan, Record, Store, Unwritten,
};
use crate::events::Event;
use crate::stats::OutboxStatus;
use crate::trace::Trace;

/// A delivery to record as pending.
pub(crate) struct Pending<'a> {
    pub id: Uuid,
    /// The webhook's index in config order.
    pub webhook: usize,
    pub event: Event,
    pub attempts: u32,
    pub due: Instant,
    pub body: &'a Bytes,
    pub trace: Option<&'a Trace>,
    /// Events its body frames when it is a whole batch.
    pub batch: Option<u32>,
    /// Not yet in the store (a new delivery, not a retry).
    pub new: bool,
}

/// The final commit at close failed: what it could not keep.
pub(crate) struct Released {
    pub message: String,
    /// The webhook index and event of each admitted delivery that is lost (to be counted).
    pub lost: Vec<(usize, Event)>,
}

/// Changes waiting for the store, and the store.
pub(crate) struct Journal {
    store: Arc<dyn Store>,
    /// Webhook ids in config order (records name webhooks by id, never by index).
    ids: Vec<String>,
    /// The fingerprints of their URLs, in the same order (see [`Record::url`]).
    urls: Vec<String>,
    changes: Mutex<Vec<Change>>,
    /// Held while a batch is taken and written, so batches reach the store in order.
    commit_order: Mutex<()>,
    /// Set (under the changes lock) when the store is released at close: no record after it.
    released: AtomicBool,
    committed: AtomicU64,
    /// Changes of the batch being written (set and cleared under the changes lock): they
    /// count as uncommitted until the store has them.
    writing: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Journal {
    /// A journal writing to `store`, for the webhooks `ids` (with their URLs' fingerprints
    /// `urls`) in config order.
    pub fn new(store: Arc<dyn Store>, ids: Vec<String>, urls: Vec<String>) -> Self {
        Journal {
            store,
            ids,
            urls,
            changes: Mutex::default(),
            commit_order: Mutex::default(),
            released: AtomicBool::new(false),
            committed: AtomicU64::new(0),
            writing: AtomicU64::new(0),
            last_error: Mutex::default(),
        }
    }

    /// The webhook ids in config order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    fn changes(&self) -> MutexGuard<'_, Vec<Change>> {
        self.changes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Records a pending delivery; false when the store was released at close (then it is not
    /// kept). The check and the record happen under the journal lock, which the release takes
    /// too, so a record is either in the last batch or not made at all; no write is waited for.
    pub fn pending(&self, delivery: Pending<'_>) -> bool {
        let due_ms = unix_ms(delivery.due);
        let record = Record {
            id: delivery.id,
            webhook: self.ids[delivery.webhook].clone(),
            event: delivery.event,
            attempts: delivery.attempts,
            due_ms,
            body: String::from_utf8_lossy(delivery.body).into_owned(),
            trace: delivery.trace.cloned(),
            url: Some(self.urls[delivery.webhook].clone()),
            batch: delivery.batch,
        };
        let value = serde_json::to_vec(&record).expect("a record serialises");
        let mut changes = self.changes();
        if self.released.load(Relaxed) {
            return false;
        }
        changes.push(Change::Put {
            id: delivery.id,
            webhook: delivery.webhook,
            event: delivery.event,
            new: delivery.new,
            due_ms,
            value,
        });
        true
    }

    /// Records that a delivery left the outbox (delivered).
    pub fn ended(&self, id: Uuid) {
        self.changes().push(Change::Delete(id));
    }

    /// Records a delivery's move to the dead letters, and the eviction of the oldest letter.
    pub fn dead_letter(&self, letter: &DeadLetter, evicted: Option<Uuid>) {
        let record = DeadRecord {
            url: letter.webhook.map(|i| self.urls[i].clone()),
            ..DeadRecord::of(letter)
        };
        let value = serde_json::to_vec(&record).expect("a record serialises");
        let id = letter.delivery_id;
        let mut changes = self.changes();
        changes.push(Change::Delete(id));
        changes.push(Change::PutDead(id, value));
        changes.extend(evicted.map(Change::DeleteDead));
    }

    /// Takes the dead letters `ids` out of the store for a replay (see [`Store::take_dead`]).
    pub fn take_dead(&self, ids: &[Uuid]) -> Vec<bool> {
        self.store.take_dead(ids)
    }

    /// Records dead letters removed (replayed, or evicted).
    pub fn dead_letters_removed(&self, ids: impl IntoIterator<Item = Uuid>) {
        self.changes().extend(ids.into_iter().map(Change::DeleteDead));
    }

    /// Writes every change recorded so far in one transaction.
    pub fn commit(&self) -> Result<(), String> {
        if !self.store.ready() {
            // Between reconnect attempts the journal stays one change per undelivered
            // delivery: compacted on every tick, not only after a failed write.
            let mut changes = self.changes();
            let pending = std::mem::take(&mut *changes);
            *changes = compact(pending);
            drop(changes);
            let error = self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
            return Err(error.unwrap_or_else(|| "outbox store unavailable".into()));
        }
        let _order = self.commit_order.lock().unwrap_or_else(|e| e.into_inner());
        let batch = {
            let mut changes = self.changes();
            self.writing.store(changes.len() as u64, Relaxed);
            std::mem::take(&mut *changes)
        };
        let written = self.write_batch(batch);
        let mut changes = self.changes();
        self.writing.store(0, Relaxed);
        written.map_err(|(message, batch)| {
            let newer = std::mem::replace(&mut *changes, compact(batch));
            changes.extend(newer);
            message
        })
    }

    /// Whether a commit or a claim would do anything now.
    pub fn has_work(&self) -> bool {
        !self.changes().is_empty() || self.store.claim_due()
    }

    /// What the store hands over now (at most `room[webhook]` deliveries per webhook).
    pub fn claim(&self, room: &[usize]) -> Claimed {
        self.store.claim(room)
    }

    /// Commits what is left and lets go of the store (at close), so that a new engine can
    /// open it at once; a delivery recorded after that is not kept. Returns by `deadline`
    /// (None: no deadline): a store call still in flight then, or one that would end later,
    /// leaves the rest unwritten (reported as lost).
    pub fn release(&self, deadline: Option<Instant>) -> Result<(), Released> {
        if let Some(deadline) = deadline {
            self.store.close_by(deadline);
        }
        let order = lock_until(&self.commit_order, deadline);
        let batch = {
            let mut changes = self.changes();
            self.released.store(true, Relaxed);
            std::mem::take(&mut *changes)
        };
        let written = match order {
            // A second try reconnects (or reopens) at once: the connection a store kept may
            // have died without its knowing (a restarted Redis).
            Some(_) => self
                .write_batch(batch)
                .or_else(|(_, batch)| self.write_batch(batch)),
            None => Err((
                "the outbox store was busy past the close deadline".to_owned(),
                batch,
            )),
        };
        self.store.release();
        written.map_err(|(message, batch)| Released {
            message,
            lost: unwritten_news(batch),
        })
    }

    /// What `stats.outbox` shows.
    pub fn status(&self) -> OutboxStatus {
        // Uncommitted before committed: a batch finishing meanwhile is then counted in both,
        // never in neither.
        let uncommitted = {
            let changes = self.changes();
            changes.len() as u64 + self.writing.load(Relaxed)
        };
        OutboxStatus {
            kind: self.store.kind(),
            committed: self.committed.load(SeqCst),
            uncommitted,
            connected: self.store.connected(),
            unreadable: self.store.unreadable(),
            held: self.store.held(),
            adopted: self.store.adopted(),
            last_error: (self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone())
                .or_else(|| self.store.last_error()),
        }
    }

    /// Writes `batch` (with `commit_order` held by the caller); on failure it is returned for
    /// the next attempt.
    fn write_batch(&self, batch: Vec<Change>) -> Result<(), (String, Vec<Change>)> {
        if batch.is_empty() {
            return Ok(());
        }
        let written = batch
            .iter()
            .filter(|c| matches!(c, Change::Put { new: true, .. }))
            .count() as u64;
        match self.store.write(&plan_of(&batch)) {
            Ok(()) => {
                self.committed.fetch_add(written, SeqCst);
                self.set_error(None);
                Ok(())
            }
            Err(Unwritten { message, only }) => {
                let message = format!("outbox commit failed: {message}");
                self.set_error(Some(message.clone()));
                let batch = match only {
                    None => batch,
                    Some(left) => {
                        let (kept, done): (Vec<Change>, Vec<Change>) =
                            batch.into_iter().partition(|change| change.is_left(&left));
                        let news = done.iter().filter(|c| matches!(c, Change::Put { new: true, .. }));
                        self.committed.fetch_add(news.count() as u64, SeqCst);
                        kept
                    }
                };
                Err((message, batch))
            }
        }
    }
}

/// The new deliveries of an unwritten `batch` that did not end within it (those delivered
/// meanwhile were counted as delivered): what a failed last commit loses.
fn unwritten_news(batch: Vec<Change>) -> Vec<(usize, Event)> {
    let ended: HashSet<Uuid> = batch
        .iter()
        .filter_map(|c| match c {
            Change::Delete(id) => Some(*id),
            _ => None,
        })
        .collect();
    batch
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
        .collect()
}

/// A batch that could not be written, reduced to what the store still needs: the last change
/// of each delivery and dead letter (a delivery new in the batch stays new), and nothing for a
/// delivery the batch both created and deleted. Retried batches so stay bounded by what is
/// undelivered, however long the store is away.
fn compact(batch: Vec<Change>) -> Vec<Change> {
    let mut last: HashMap<(bool, Uuid), usize> = HashMap::new();
    let mut born = HashSet::new();
    for (index, change) in batch.iter().enumerate() {
        let key = match change {
            Change::Put { id, new, .. } => {
                if *new && !last.contains_key(&(false, *id)) {
                    born.insert(*id);
                }
                (false, *id)
            }
            Change::Delete(id) => (false, *id),
            Change::PutDead(id, _) | Change::DeleteDead(id) => (true, *id),
        };
        last.insert(key, index);
    }
    let keep: HashSet<usize> = last.into_values().collect();
    batch
        .into_iter()
        .enumerate()
        .filter(|(index, _)| keep.contains(index))
        .filter_map(|(_, change)| match change {
            Change::Delete(id) if born.contains(&id) => None,
            Change::Put {
                id,
                webhook,
                event,
                new,
                due_ms,
                value,
            } => Some(Change::Put {
                new: new || born.contains(&id),
                id,
                webhook,
                event,
                due_ms,
                value,
            }),
            other => Some(other),
        })
        .collect()
}

/// One change waiting for the next write.
enum Change {
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

impl Change {
    /// Whether a store left this change's delivery or dead letter unwritten.
    fn is_left(&self, left: &Left) -> bool {
        match self {
            Change::Put { id, .. } | Change::Delete(id) => left.deliveries.contains(id),
            Change::PutDead(id, _) | Change::DeleteDead(id) => left.dead.contains(id),
        }
    }
}

/// `batch` reduced to the last change of each delivery and of each dead letter, in first-seen
/// order, which is what a store writes: a delivery admitted and delivered within one batch
/// (or while the store was away) costs it nothing; one retried three times is written once.
fn plan_of(batch: &[Change]) -> Plan<'_> {
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
                let last = LastChange::Put {
                    webhook: *webhook,
                    new: *new,
                    due_ms: *due_ms,
                    value,
                };
                upsert(&mut plan.deliveries, &mut delivery_at, *id, last);
            }
            Change::Delete(id) => upsert(&mut plan.deliveries, &mut delivery_at, *id, LastChange::Delete),
            Change::PutDead(id, value) => upsert(&mut plan.dead, &mut dead_at, *id, Some(value.as_slice())),
            Change::DeleteDead(id) => upsert(&mut plan.dead, &mut dead_at, *id, None),
        }
    }
    plan.deliveries
        .retain(|(id, last)| !(matches!(last, LastChange::Delete) && born.contains(id)));
    plan
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
        let plan = plan_of(&batch);
        let deliveries: Vec<_> = plan
            .deliveries
            .iter()
            .map(|(id, last)| match last {
                LastChange::Put { value, .. } => (*id, Some(*value)),
                LastChange::Delete => (*id, None),
            })
            .collect();
        let expected: Vec<(Uuid, Option<&[u8]>)> =
            vec![(retried, Some(b"r3")), (stored, None), (replayed, Some(b"p"))];
        assert_eq!(deliveries, expected);
        assert_eq!(plan.dead, vec![(stored, Some(b"d".as_slice()))]);
    }

    #[test]
    fn a_failed_batch_is_kept_coalesced_and_forgets_what_was_created_and_ended_in_it() {
        let (delivered, retried, dead) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let batch = vec![
            put(delivered, true, b"d"),
            put(retried, true, b"r1"),
            put(dead, true, b"x"),
            put(retried, false, b"r2"),
            Change::Delete(delivered),
            Change::Delete(dead),
            Change::PutDead(dead, b"l".to_vec()),
        ];
        let kept = compact(batch);
        let shape: Vec<String> = kept
            .iter()
            .map(|c| match c {
                Change::Put { id, new, value, .. } => format!("{id} new={new} {value:?}"),
                Change::PutDead(id, _) => format!("{id} dead"),
                _ => panic!("only the retried delivery and the dead letter are left"),
            })
            .collect();
        let expected = [format!("{retried} new=true {:?}", b"r2"), format!("{dead} dead")];
        assert_eq!(shape, expected);
        // Compacting again changes nothing: a store down for long keeps one change each.
        assert_eq!(compact(kept).len(), 2);
    }

    /// A store that is waiting to reconnect.
    struct Down;

    impl Store for Down {
        fn kind(&self) -> &'static str {
            "down"
        }
        fn write(&self, _: &Plan) -> Result<(), Unwritten> {
            Err(String::from("down").into())
        }
        fn release(&self) {}
        fn ready(&self) -> bool {
            false
        }
    }

    #[test]
    fn while_the_store_waits_to_reconnect_every_tick_compacts_the_journal() {
        let journal = Journal::new(Arc::new(Down), vec!["w".into()], vec!["u".into()]);
        let body = Bytes::from_static(b"{}");
        let mut kept = Vec::new();
        for round in 0..50 {
            // 20 deliveries admitted per tick; half end at once, the rest are retried.
            for i in 0..20 {
                let id = Uuid::new_v4();
                let pending = |attempts, new| Pending {
                    id,
                    webhook: 0,
                    event: Event::ToolError,
                    attempts,
                    due: Instant::now(),
                    body: &body,
                    trace: None,
                    batch: None,
                    new,
                };
                assert!(journal.pending(pending(0, true)));
                match i % 2 {
                    0 => journal.ended(id),
                    _ => {
                        assert!(journal.pending(pending(1, false)));
                        kept.push(id);
                    }
                }
            }
            assert!(journal.commit().is_err(), "round {round}: the store is down");
            assert_eq!(
                journal.changes().len(),
                kept.len(),
                "one change per undelivered delivery"
            );
        }
    }

    /// A store that writes everything but the changes of `left` (a cluster slot down).
    struct Partly {
        left: Vec<Uuid>,
    }

    impl Store for Partly {
        fn kind(&self) -> &'static str {
            "partly"
        }
        fn write(&self, plan: &Plan) -> Result<(), Unwritten> {
            let left: HashSet<Uuid> = plan
                .deliveries
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| self.left.contains(id))
                .collect();
            Err(Unwritten {
                message: "slot down".into(),
                only: Some(Left {
                    deliveries: left,
                    dead: HashSet::new(),
                }),
            })
        }
        fn release(&self) {}
    }

    #[test]
    fn a_partly_written_batch_keeps_only_what_the_store_left() {
        let (written, left) = (Uuid::new_v4(), Uuid::new_v4());
        let journal = Journal::new(
            Arc::new(Partly { left: vec![left] }),
            vec!["w".into()],
            vec!["u".into()],
        );
        let body = Bytes::from_static(b"{}");
        for id in [written, left] {
            assert!(journal.pending(Pending {
                id,
                webhook: 0,
                event: Event::ToolError,
                attempts: 0,
                due: Instant::now(),
                body: &body,
                trace: None,
                batch: None,
                new: true,
            }));
        }
        let error = journal.commit().unwrap_err();
        assert!(error.contains("slot down"), "{error}");
        let kept: Vec<Uuid> = journal
            .changes()
            .iter()
            .map(|c| match c {
                Change::Put { id, .. } => *id,
                _ => panic!("only the left delivery's put is kept"),
            })
            .collect();
        assert_eq!(kept, vec![left]);
        assert_eq!(
            journal.status().committed,
            1,
            "the written delivery counts as committed"
        );
    }
}
