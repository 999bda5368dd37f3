//! The disk outbox: an embedded, crash-safe redb database in `outbox.path`, written in one
//! transaction per batch of the journal (see `journal`). redb's file lock makes a second
//! engine on the same directory fail to open.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redb::{Database, DatabaseError, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};
use uuid::Uuid;

use super::{Claimed, DeadRecord, LastChange, Plan, Record, Store};

/// Pending deliveries by delivery id.
const DELIVERIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("deliveries");
/// Dead letters by delivery id.
const DEAD_LETTERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("dead_letters");
/// Records that did not parse, kept for inspection by `<table>:<delivery id>`.
const UNREADABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("unreadable");

type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// The database file inside `outbox.path`.
pub const FILE_NAME: &str = "outbox.redb";

/// How long after a failed write the database is opened again (a full disk, an I/O error).
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// The redb database in one of its states.
enum Handle {
    Open(Database),
    /// A write failed: redb refuses every later one ("Previous I/O error occurred. Please close
    /// and re-open the database"), so it was closed, and is opened again from this instant.
    Failed(Instant),
    /// Released at close, so the next engine can open it at once.
    Released,
}

/// The redb store of a disk outbox.
pub(crate) struct DiskStore {
    file: PathBuf,
    handle: Mutex<Handle>,
    failing: AtomicBool,
    /// Records kept aside because they did not parse (`stats.outbox.unreadable`).
    unreadable: u64,
}

impl DiskStore {
    /// Opens (or creates) the store in directory `path`, reading back what a previous run left
    /// (pending deliveries in due order, dead letters oldest first). The error is for
    /// `outbox.path` and quotes nothing secret.
    pub fn open(path: &Path) -> Result<(DiskStore, Claimed), String> {
        std::fs::create_dir_all(path).map_err(|e| format!("cannot create the directory: {e}"))?;
        // redb asserts on some damaged files (a truncated one) instead of returning an error.
        let opened = std::panic::catch_unwind(|| open_and_load(&path.join(FILE_NAME)));
        let (db, (found, unreadable)) = opened.map_err(|_| {
            format!("{FILE_NAME} is damaged (truncated?) and cannot be opened; move it aside to start afresh")
        })??;
        let store = DiskStore {
            file: path.join(FILE_NAME),
            handle: Mutex::new(Handle::Open(db)),
            failing: AtomicBool::new(false),
            unreadable,
        };
        Ok((store, found))
    }

    fn handle(&self) -> MutexGuard<'_, Handle> {
        self.handle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Opens (or creates) the database file and reads what it holds.
fn open_and_load(file: &Path) -> Result<(Database, (Claimed, u64)), String> {
    if std::fs::metadata(file).is_ok_and(|m| m.len() == 0) {
        log::warn!(
            "{FILE_NAME} is empty: no delivery to resume (a store file emptied outside this library?)"
        );
    }
    let db = open(file)?;
    let found = load(&db).map_err(|e| format!("cannot read the outbox store: {e}"))?;
    Ok((db, found))
}

/// Opens (or creates) the database file.
fn open(file: &Path) -> Result<Database, String> {
    Database::create(file).map_err(|e| match e {
        DatabaseError::DatabaseAlreadyOpen => {
            "is already used by another webhook engine (in this process or another); give each config its own directory".to_owned()
        }
        other => format!("cannot open the outbox store: {other}"),
    })
}

/// Reads pending deliveries (in due order) and dead letters (oldest first).
#[allow(clippy::result_large_err)] // redb's own error, turned into text by the caller
fn load(db: &Database) -> Result<(Claimed, u64), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(DELIVERIES)?;
    txn.open_table(DEAD_LETTERS)?;
    txn.open_table(UNREADABLE)?;
    txn.commit()?;
    let read = db.begin_read()?;
    let mut unreadable = Vec::new();
    let mut dead = Vec::new();
    for entry in read.open_table(DEAD_LETTERS)?.iter()? {
        let (key, value) = entry?;
        match serde_json::from_slice::<DeadRecord>(value.value()) {
            Ok(mut record) => {
                record.id = uuid_of(key.value());
                dead.push(record);
            }
            Err(_) => unreadable.push((DEAD_LETTERS, key.value().to_vec(), value.value().to_vec())),
        }
    }
    dead.sort_by(|a, b| a.time.cmp(&b.time));
    let mut resumed = Vec::new();
    for entry in read.open_table(DELIVERIES)?.iter()? {
        let (key, value) = entry?;
        match serde_json::from_slice::<Record>(value.value()) {
            Ok(mut record) => {
                record.id = uuid_of(key.value());
                resumed.push(record.resumed());
            }
            Err(_) => unreadable.push((DELIVERIES, key.value().to_vec(), value.value().to_vec())),
        }
    }
    drop(read);
    resumed.sort_by_key(|r| r.due);
    let moved = set_aside(db, unreadable)?;
    let kept = db.begin_read()?.open_table(UNREADABLE)?.len()?;
    if moved > 0 {
        log::warn!("{moved} outbox records could not be read: kept aside in the `unreadable` table of {FILE_NAME} ({kept} there in all)");
    }
    Ok((
        Claimed {
            resumed,
            dead,
            gone: Vec::new(),
        },
        kept,
    ))
}

/// Moves records that do not parse out of their table into `unreadable` (keyed by table name
/// and delivery id), so they are neither resumed nor lost; returns how many.
#[allow(clippy::result_large_err)] // redb's own error, turned into text by the caller
fn set_aside(db: &Database, records: Vec<(Table, Vec<u8>, Vec<u8>)>) -> Result<u64, redb::Error> {
    if records.is_empty() {
        return Ok(0);
    }
    let txn = db.begin_write()?;
    {
        let mut aside = txn.open_table(UNREADABLE)?;
        for (table, key, value) in &records {
            txn.open_table(*table)?.remove(key.as_slice())?;
            let aside_key = [table.name().as_bytes(), b":", key].concat();
            aside.insert(aside_key.as_slice(), value.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(records.len() as u64)
}

impl Store for DiskStore {
    fn kind(&self) -> &'static str {
        "disk"
    }

    fn write(&self, plan: &Plan) -> Result<(), String> {
        let mut handle = self.handle();
        if let Handle::Failed(_) = *handle {
            let reopened = std::panic::catch_unwind(|| open(&self.file))
                .unwrap_or_else(|_| Err(format!("{FILE_NAME} is damaged and cannot be opened")));
            *handle = match reopened {
                Ok(db) => Handle::Open(db),
                Err(e) => {
                    *handle = Handle::Failed(Instant::now() + REOPEN_AFTER);
                    return Err(e);
                }
            };
        }
        let Handle::Open(db) = &*handle else {
            return Err("outbox commit after close".into());
        };
        let written = write(db, plan).map_err(|e| e.to_string());
        if written.is_err() {
            // Closed now (which also lets go of its file lock), opened again after a while.
            *handle = Handle::Failed(Instant::now() + REOPEN_AFTER);
        }
        self.failing.store(written.is_err(), Relaxed);
        written
    }

    fn ready(&self) -> bool {
        match *self.handle() {
            Handle::Failed(retry_at) => Instant::now() >= retry_at,
            _ => true,
        }
    }

    fn release(&self) {
        *self.handle() = Handle::Released;
    }

    fn connected(&self) -> bool {
        !self.failing.load(Relaxed)
    }

    fn unreadable(&self) -> u64 {
        self.unreadable
    }
}

/// Applies a plan in one durable transaction.
#[allow(clippy::result_large_err)] // redb's own error, turned into text by the caller
fn write(db: &Database, plan: &Plan) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut deliveries = txn.open_table(DELIVERIES)?;
        for (id, last) in &plan.deliveries {
            match last {
                LastChange::Put { value, .. } => drop(deliveries.insert(id.as_bytes().as_slice(), *value)?),
                LastChange::Delete => drop(deliveries.remove(id.as_bytes().as_slice())?),
            }
        }
        let mut dead = txn.open_table(DEAD_LETTERS)?;
        for (id, letter) in &plan.dead {
            match letter {
                Some(value) => drop(dead.insert(id.as_bytes().as_slice(), *value)?),
                None => drop(dead.remove(id.as_bytes().as_slice())?),
            }
        }
    }
    txn.commit()?;
    Ok(())
}

fn uuid_of(bytes: &[u8]) -> Uuid {
    Uuid::from_slice(bytes).unwrap_or_default()
}
