//! One process's file in a disk outbox directory: a redb database (crash-safe, one durable
//! transaction per batch of the journal) beside a lock file the process holds with `flock` for
//! as long as the file is open. The kernel releases that lock the moment the process dies
//! (SIGKILL, OOM), which is how other processes know the file is theirs to adopt; no lease to
//! wait out. Also reads another process's file (or a v3 directory's `outbox.redb`) for adoption.

// redb's own error is large; it is turned into text at once (`ProcessFile::with_db`).
#![allow(clippy::result_large_err)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redb::{Database, DatabaseError, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};
use uuid::Uuid;

use crate::store::{DeadRecord, LastChange, Record};

/// Pending deliveries by delivery id.
const DELIVERIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("deliveries");
/// Dead letters by delivery id (v3 files only: v4 keeps them as files, see `dead`).
const DEAD_LETTERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("dead_letters");
/// Records that did not parse, kept for inspection by `<table>:<delivery id>`.
const UNREADABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("unreadable");

type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// The store file of a v3 directory (one process per directory), adopted on upgrade.
pub const V3_FILE: &str = "outbox.redb";
/// The prefix of every process file's name (`process-<uuid>.redb` and `.lock`).
pub const PROCESS_PREFIX: &str = "process-";

/// How long after a failed write the database is opened again (a full disk, an I/O error).
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// The redb database in one of its states.
enum Handle {
    Open(Database),
    /// A write failed: redb refuses every later one ("Previous I/O error occurred. Please close
    /// and re-open the database"), so it was closed, and is opened again from this instant.
    /// The lock file stays held meanwhile: nobody adopts a file whose process is alive.
    Failed(Instant),
}

/// This process's file of a disk outbox.
pub(crate) struct ProcessFile {
    file: PathBuf,
    handle: Mutex<Handle>,
    failing: AtomicBool,
    /// Held (`flock`) while this process lives; closed, and so released, when this drops.
    _lock: File,
}

impl ProcessFile {
    /// Creates this process's file (under a new name) in `dir`, holding its lock.
    pub fn create(dir: &Path) -> Result<ProcessFile, String> {
        let name = format!("{PROCESS_PREFIX}{}", Uuid::new_v4().simple());
        let lock = File::create(dir.join(format!("{name}.lock")))
            .map_err(|e| format!("cannot create a file in the directory: {e}"))?;
        if !try_lock(&lock) {
            return Err(
                "cannot lock this process's file in the directory (is it on a network file system?)".into(),
            );
        }
        let file = dir.join(format!("{name}.redb"));
        let db = Database::create(&file).map_err(|e| format!("cannot create the outbox store: {e}"))?;
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        for table in [DELIVERIES, UNREADABLE] {
            txn.open_table(table).map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())?;
        Ok(ProcessFile {
            file,
            handle: Mutex::new(Handle::Open(db)),
            failing: AtomicBool::new(false),
            _lock: lock,
        })
    }

    /// The file's name (so that the adoption scan passes over it).
    pub fn name(&self) -> &std::ffi::OsStr {
        self.file.file_name().unwrap_or_default()
    }

    fn handle(&self) -> MutexGuard<'_, Handle> {
        self.handle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `work` on the open database, reopening it first when a failed write closed it.
    /// A failed `work` closes it again (redb refuses every write after an I/O error).
    fn with_db<T>(&self, work: impl FnOnce(&Database) -> Result<T, redb::Error>) -> Result<T, String> {
        let mut handle = self.handle();
        if let Handle::Failed(_) = *handle {
            let reopened = std::panic::catch_unwind(|| Database::create(&self.file))
                .unwrap_or_else(|_| Err(DatabaseError::RepairAborted))
                .map_err(|e| format!("cannot open the outbox store: {e}"));
            match reopened {
                Ok(db) => *handle = Handle::Open(db),
                Err(e) => {
                    *handle = Handle::Failed(Instant::now() + REOPEN_AFTER);
                    self.failing.store(true, Relaxed);
                    return Err(e);
                }
            }
        }
        let Handle::Open(db) = &*handle else {
            unreachable!("reopened above")
        };
        let done = work(db).map_err(|e| e.to_string());
        if done.is_err() {
            *handle = Handle::Failed(Instant::now() + REOPEN_AFTER);
        }
        self.failing.store(done.is_err(), Relaxed);
        done
    }

    /// Applies the deliveries of a plan (put or delete, by delivery id) in one durable
    /// transaction.
    pub fn write<'a>(
        &self,
        changes: impl Iterator<Item = (&'a Uuid, &'a LastChange<'a>)>,
    ) -> Result<(), String> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            {
                let mut deliveries = txn.open_table(DELIVERIES)?;
                for (id, last) in changes {
                    match last {
                        LastChange::Put { value, .. } => {
                            drop(deliveries.insert(id.as_bytes().as_slice(), *value)?)
                        }
                        LastChange::Delete => drop(deliveries.remove(id.as_bytes().as_slice())?),
                    }
                }
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// Stores what was adopted from another file in one durable transaction: its deliveries,
    /// and its unreadable records (kept aside here for inspection).
    pub fn take_in(&self, adopted: &Adopted) -> Result<(), String> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            {
                let mut deliveries = txn.open_table(DELIVERIES)?;
                for (id, value) in &adopted.raw {
                    deliveries.insert(id.as_bytes().as_slice(), value.as_slice())?;
                }
                let mut aside = txn.open_table(UNREADABLE)?;
                for (key, value) in &adopted.unreadable {
                    aside.insert(key.as_slice(), value.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// The stored records of `ids` (those still stored).
    pub fn records(&self, ids: &[Uuid]) -> Result<Vec<Record>, String> {
        self.with_db(|db| {
            let read = db.begin_read()?;
            let table = read.open_table(DELIVERIES)?;
            let mut found = Vec::new();
            for id in ids {
                if let Some(value) = table.get(id.as_bytes().as_slice())? {
                    if let Ok(mut record) = serde_json::from_slice::<Record>(value.value()) {
                        record.id = *id;
                        found.push(record);
                    }
                }
            }
            Ok(found)
        })
    }

    /// Removes records from this file without a trace (orphans moved to dead letters).
    pub fn remove(&self, ids: &[Uuid]) -> Result<(), String> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(DELIVERIES)?;
                for id in ids {
                    table.remove(id.as_bytes().as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// Records kept aside in this file because they did not parse.
    pub fn unreadable(&self) -> u64 {
        self.with_db(|db| Ok(db.begin_read()?.open_table(UNREADABLE)?.len()?))
            .unwrap_or(0)
    }

    /// Whether a write may be tried now (not while waiting to reopen after a failure).
    pub fn ready(&self) -> bool {
        match *self.handle() {
            Handle::Failed(retry_at) => Instant::now() >= retry_at,
            Handle::Open(_) => true,
        }
    }

    /// Whether the last write succeeded.
    pub fn healthy(&self) -> bool {
        !self.failing.load(Relaxed)
    }
}

/// What a file left by a process that is gone held.
#[derive(Default)]
pub(crate) struct Adopted {
    /// Its pending deliveries, parsed.
    pub records: Vec<Record>,
    /// The same, as stored (delivery id, JSON).
    pub raw: Vec<(Uuid, Vec<u8>)>,
    /// Its dead letters (v3 files kept them in a table).
    pub dead: Vec<DeadRecord>,
    /// Records that did not parse, by `<table>:<delivery id>`, with what was stored.
    pub unreadable: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A file another process left: `path` is its database, `lock` its lock file (None for a v3
/// file, whose database lock is its only lock).
pub(crate) struct Orphaned {
    pub path: PathBuf,
    pub lock: Option<PathBuf>,
}

/// The files in `dir` that may belong to a process that is gone: every process database but
/// `own`, and a v3 database.
pub(crate) fn candidates(dir: &Path, own: &std::ffi::OsStr) -> Vec<Orphaned> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(text) = name.to_str() else { continue };
        if name == own {
            continue;
        }
        if text == V3_FILE {
            found.push(Orphaned {
                path: entry.path(),
                lock: None,
            });
        } else if let Some(stem) = text
            .strip_prefix(PROCESS_PREFIX)
            .and_then(|t| t.strip_suffix(".redb"))
        {
            found.push(Orphaned {
                path: entry.path(),
                lock: Some(dir.join(format!("{PROCESS_PREFIX}{stem}.lock"))),
            });
        }
    }
    found
}

/// Reads `orphaned` and removes it from the directory, if its process is gone; `Ok(None)` while
/// that process lives (its lock is held) or when another process adopted it first. The caller
/// has stored what it returns before this returns: the file is unlinked only after `keep`
/// succeeded, while its lock is still held, so exactly one process adopts each file. An error
/// names a damaged file (it is left where it is).
pub(crate) fn adopt(
    orphaned: &Orphaned,
    keep: impl FnOnce(&Adopted) -> Result<(), String>,
) -> Result<Option<Adopted>, String> {
    let lock = match &orphaned.lock {
        Some(path) => match File::open(path) {
            Ok(file) if try_lock(&file) => Some(file),
            Ok(_) => return Ok(None),
            // A process file without its lock file: created by a process that died at once.
            Err(_) => None,
        },
        None => None,
    };
    let name = orphaned
        .path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let opened = std::panic::catch_unwind(|| Database::open(&orphaned.path));
    let db = match opened {
        Ok(Ok(db)) => db,
        // Another process adopted it meanwhile, or (v3) its process is alive.
        Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => return Ok(None),
        Ok(Err(DatabaseError::Storage(redb::StorageError::Io(e))))
            if e.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(None)
        }
        // redb asserts on some damaged files (a truncated one) instead of returning an error.
        _ => {
            return Err(format!(
                "{name} is damaged (truncated?) and cannot be opened; move it aside to start afresh"
            ))
        }
    };
    let adopted = read_all(&db).map_err(|e| format!("cannot read {name}: {e}"))?;
    drop(db);
    keep(&adopted)?;
    // Unlinked while its lock is held: nobody else can have opened it since.
    let _ = std::fs::remove_file(&orphaned.path);
    if let Some(path) = &orphaned.lock {
        let _ = std::fs::remove_file(path);
    }
    drop(lock);
    Ok(Some(adopted))
}

/// Everything a file holds: deliveries (in due order) and, in a v3 file, dead letters.
fn read_all(db: &Database) -> Result<Adopted, redb::Error> {
    let read = db.begin_read()?;
    let mut adopted = Adopted::default();
    let tables = read
        .list_tables()?
        .map(|t| t.name().to_owned())
        .collect::<Vec<_>>();
    let has = |table: Table| tables.iter().any(|name| name == table.name());
    if has(DELIVERIES) {
        each::<Record>(
            &read,
            DELIVERIES,
            &mut adopted,
            |id, mut record, value, adopted| {
                record.id = id;
                adopted.records.push(record);
                adopted.raw.push((id, value.to_vec()));
            },
        )?;
    }
    if has(DEAD_LETTERS) {
        each::<DeadRecord>(&read, DEAD_LETTERS, &mut adopted, |id, mut record, _, adopted| {
            record.id = id;
            adopted.dead.push(record);
        })?;
    }
    if has(UNREADABLE) {
        for entry in read.open_table(UNREADABLE)?.iter()? {
            let (key, value) = entry?;
            adopted
                .unreadable
                .push((key.value().to_vec(), value.value().to_vec()));
        }
    }
    adopted.records.sort_by_key(|r| r.due_ms);
    Ok(adopted)
}

/// Calls `keep` with each record of `table` that parses as `T` (its delivery id, the record, what
/// was stored); the others go to `adopted.unreadable`.
fn each<T: serde::de::DeserializeOwned>(
    read: &redb::ReadTransaction,
    table: Table,
    adopted: &mut Adopted,
    mut keep: impl FnMut(Uuid, T, &[u8], &mut Adopted),
) -> Result<(), redb::Error> {
    for entry in read.open_table(table)?.iter()? {
        let (key, value) = entry?;
        match serde_json::from_slice::<T>(value.value()) {
            Ok(record) => keep(
                Uuid::from_slice(key.value()).unwrap_or_default(),
                record,
                value.value(),
                adopted,
            ),
            Err(_) => adopted
                .unreadable
                .push((aside_key(table, key.value()), value.value().to_vec())),
        }
    }
    Ok(())
}

fn aside_key(table: Table, key: &[u8]) -> Vec<u8> {
    [table.name().as_bytes(), b":", key].concat()
}

/// Takes `file`'s exclusive `flock` without waiting; false if another open file holds it.
fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a descriptor this function borrows; no memory is passed.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}
