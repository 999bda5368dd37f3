//! The disk outbox: an embedded, crash-safe redb database in `outbox.path`. Scheduling runs
//! on an in-memory copy (the memory outbox); every change — a new delivery, a retry with its
//! attempt count and due time, an acknowledgement, a dead letter — is recorded in a journal
//! that the engine's committer writes in one transaction every few milliseconds (group
//! commit: one fsync per batch, not per event). A crash loses at most the journal not yet
//! committed; what was committed is resumed at the next start with the same delivery ids.
//! redb's file lock makes a second engine on the same directory fail to open.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redb::{Database, DatabaseError, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DeadLetter, MemoryOutbox, Next, Outbox, OutboxStatus, Resumed, ORPHAN};
use crate::events::Event;
use crate::ledger::Ticket;

/// Pending deliveries by delivery id.
const DELIVERIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("deliveries");
/// Dead letters by delivery id.
const DEAD_LETTERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("dead_letters");

/// The database file inside `outbox.path`.
pub const FILE_NAME: &str = "outbox.redb";

/// A pending delivery as stored.
#[derive(Serialize, Deserialize)]
struct StoredDelivery {
    webhook: String,
    event: Event,
    attempts: u32,
    /// Next attempt, in milliseconds since the Unix epoch.
    due_ms: u64,
    body: String,
}

/// A dead letter as stored.
#[derive(Serialize, Deserialize)]
struct StoredDeadLetter {
    webhook: String,
    event: Event,
    attempts: u32,
    last_status: Option<u16>,
    last_error: String,
    time: String,
    body: String,
}

/// One change waiting for the next commit.
enum Change {
    /// A pending delivery, new (`true`) or rescheduled.
    Put(Uuid, Vec<u8>, bool),
    Delete(Uuid),
    PutDead(Uuid, Vec<u8>),
    DeleteDead(Uuid),
}

/// Deliveries and dead letters in a redb database, scheduled in memory.
pub struct DiskOutbox {
    memory: MemoryOutbox,
    /// None once released at close, so the next engine on the directory can open it at once.
    db: Mutex<Option<Database>>,
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

/// What opening a store found.
pub struct Opened {
    pub outbox: DiskOutbox,
    /// Pending deliveries to resume, in due order.
    pub resumed: Vec<Resumed>,
}

impl DiskOutbox {
    /// Opens (or creates) the store in directory `path` for webhooks `ids`, reading back
    /// what a previous run left. The error is for `outbox.path` and quotes nothing secret.
    pub fn open(path: &Path, ids: Vec<String>, dead_capacity: usize) -> Result<Opened, String> {
        std::fs::create_dir_all(path).map_err(|e| format!("cannot create the directory: {e}"))?;
        let db = Database::create(path.join(FILE_NAME)).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => {
                "is already used by another webhook engine (in this process or another); give each config its own directory".to_owned()
            }
            other => format!("cannot open the outbox store: {other}"),
        })?;
        let outbox = DiskOutbox {
            memory: MemoryOutbox::new(ids.len(), dead_capacity),
            db: Mutex::new(Some(db)),
            ids,
            journal: Mutex::default(),
            commit_order: Mutex::default(),
            released: AtomicBool::new(false),
            committed: AtomicU64::new(0),
            last_error: Mutex::default(),
        };
        let resumed = outbox
            .load()
            .map_err(|e| format!("cannot read the outbox store: {e}"))?;
        Ok(Opened { outbox, resumed })
    }

    /// Reads pending deliveries (returned) and dead letters (kept, oldest first).
    #[allow(clippy::result_large_err)] // redb's own error, turned into text by the caller
    fn load(&self) -> Result<Vec<Resumed>, redb::Error> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let db = db.as_ref().expect("open while loading");
        let txn = db.begin_write()?;
        txn.open_table(DELIVERIES)?;
        txn.open_table(DEAD_LETTERS)?;
        txn.commit()?;
        let read = db.begin_read()?;
        let mut dead = Vec::new();
        for entry in read.open_table(DEAD_LETTERS)?.iter()? {
            let (key, value) = entry?;
            let Ok(stored) = serde_json::from_slice::<StoredDeadLetter>(value.value()) else {
                continue;
            };
            let index = self.ids.iter().position(|id| *id == stored.webhook);
            dead.push(DeadLetter {
                webhook: index.unwrap_or(ORPHAN),
                webhook_id: stored.webhook,
                event: stored.event,
                delivery_id: uuid_of(key.value()),
                attempts: stored.attempts,
                last_status: stored.last_status,
                last_error: stored.last_error,
                time: stored.time,
                body: Bytes::from(stored.body),
            });
        }
        dead.sort_by(|a, b| a.time.cmp(&b.time));
        for letter in dead {
            if let Some(evicted) = self.memory.keep_dead_letter(letter) {
                self.record(Change::DeleteDead(evicted.delivery_id));
            }
        }
        let mut resumed = Vec::new();
        for entry in read.open_table(DELIVERIES)?.iter()? {
            let (key, value) = entry?;
            let Ok(stored) = serde_json::from_slice::<StoredDelivery>(value.value()) else {
                continue;
            };
            resumed.push(Resumed {
                webhook_id: stored.webhook,
                event: stored.event,
                delivery_id: uuid_of(key.value()),
                attempts: stored.attempts,
                due: instant_of(stored.due_ms),
                body: Bytes::from(stored.body),
            });
        }
        resumed.sort_by_key(|r| r.due);
        Ok(resumed)
    }

    fn journal(&self) -> MutexGuard<'_, Vec<Change>> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, change: Change) {
        self.journal().push(change);
    }

    /// Records `ticket` as pending, next due at `due`, and marks it durable — unless the store
    /// was released at close (then it is not kept, and ends counted like any other). The check
    /// and the record happen under the journal lock, which the release takes too, so a record
    /// is either in the last batch or not made at all; no fsync is ever waited for here.
    fn record_pending(&self, ticket: &mut Ticket, due: Instant) {
        let stored = StoredDelivery {
            webhook: self.ids[ticket.webhook].clone(),
            event: ticket.event,
            attempts: ticket.attempts,
            due_ms: unix_ms(due),
            body: String::from_utf8_lossy(&ticket.body).into_owned(),
        };
        let value = serde_json::to_vec(&stored).expect("a record serialises");
        let mut journal = self.journal();
        if self.released.load(Relaxed) {
            return;
        }
        journal.push(Change::Put(ticket.id, value, ticket.attempts == 0));
        drop(journal);
        ticket.mark_durable();
    }

    /// Writes `batch` in one transaction (with `commit_order` held by the caller); on failure
    /// it goes back to the head of the journal for the next attempt.
    fn write_batch(&self, batch: Vec<Change>) -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let Some(db) = db.as_ref() else {
            return Err("outbox commit after close".into());
        };
        let written = batch
            .iter()
            .filter(|c| matches!(c, Change::Put(_, _, true)))
            .count() as u64;
        match write(db, &batch) {
            Ok(()) => {
                self.committed.fetch_add(written, Relaxed);
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(())
            }
            Err(e) => {
                let mut journal = self.journal();
                let newer = std::mem::replace(&mut *journal, batch);
                journal.extend(newer);
                let message = format!("outbox commit failed: {e}");
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.clone());
                Err(message)
            }
        }
    }
}

impl Outbox for DiskOutbox {
    fn push(&self, mut ticket: Ticket) {
        self.record_pending(&mut ticket, Instant::now());
        self.memory.push(ticket);
    }

    fn push_front(&self, ticket: Ticket) {
        self.memory.push_front(ticket);
    }

    fn schedule(&self, mut ticket: Ticket, due: Instant) {
        self.record_pending(&mut ticket, due);
        self.memory.schedule(ticket, due);
    }

    fn next_due(&self, webhook: usize, now: Instant) -> Next {
        self.memory.next_due(webhook, now)
    }

    fn drain(&self, webhook: usize) -> Vec<Ticket> {
        self.memory.drain(webhook)
    }

    fn dead_letter(&self, letter: DeadLetter) {
        let stored = StoredDeadLetter {
            webhook: letter.webhook_id.clone(),
            event: letter.event,
            attempts: letter.attempts,
            last_status: letter.last_status,
            last_error: letter.last_error.clone(),
            time: letter.time.clone(),
            body: String::from_utf8_lossy(&letter.body).into_owned(),
        };
        let value = serde_json::to_vec(&stored).expect("a record serialises");
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
        self.write_batch(batch)
    }

    fn release(&self) -> Result<(), String> {
        let _order = self.commit_order.lock().unwrap_or_else(|e| e.into_inner());
        let batch = {
            let mut journal = self.journal();
            self.released.store(true, Relaxed);
            std::mem::take(&mut *journal)
        };
        let written = self.write_batch(batch);
        self.db.lock().unwrap_or_else(|e| e.into_inner()).take();
        written
    }

    fn status(&self) -> OutboxStatus {
        OutboxStatus {
            kind: "disk",
            committed: self.committed.load(Relaxed),
            uncommitted: self.journal().len() as u64,
            connected: true,
            last_error: self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

/// Applies a batch of changes in one durable transaction.
#[allow(clippy::result_large_err)] // redb's own error, turned into text by the caller
fn write(db: &Database, batch: &[Change]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut deliveries = txn.open_table(DELIVERIES)?;
        let mut dead = txn.open_table(DEAD_LETTERS)?;
        for change in batch {
            match change {
                Change::Put(id, value, _) => {
                    drop(deliveries.insert(id.as_bytes().as_slice(), value.as_slice())?)
                }
                Change::Delete(id) => drop(deliveries.remove(id.as_bytes().as_slice())?),
                Change::PutDead(id, value) => drop(dead.insert(id.as_bytes().as_slice(), value.as_slice())?),
                Change::DeleteDead(id) => drop(dead.remove(id.as_bytes().as_slice())?),
            }
        }
    }
    txn.commit()?;
    Ok(())
}

fn uuid_of(bytes: &[u8]) -> Uuid {
    Uuid::from_slice(bytes).unwrap_or_default()
}

/// `due` as milliseconds since the Unix epoch.
fn unix_ms(due: Instant) -> u64 {
    let now = SystemTime::now();
    let at = match due.checked_duration_since(Instant::now()) {
        Some(ahead) => now + ahead,
        None => now,
    };
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// The instant of a Unix time in milliseconds (now, if it has passed).
fn instant_of(ms: u64) -> Instant {
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    let ahead = at.duration_since(SystemTime::now()).unwrap_or_default();
    Instant::now() + ahead
}
