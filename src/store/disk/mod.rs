//! The disk outbox: one directory shared by every config of a process and every process of a
//! host (pre-forked gateway workers, nginx and Envoy workers).
//!
//! - Each process writes its own redb file under a lock it holds while it lives (`file`): no
//!   process ever waits on another's lock, on the hook path or per commit.
//! - In a process, the configs (engines) naming one directory share one [`DiskOutbox`]; each
//!   engine sees it through its own [`DiskView`] (the engine's `Store`). A stored delivery is
//!   held by the engine that admitted or resumed it; the rest wait in a pool until an engine with
//!   their webhook — id *and* URL — claims them.
//! - About once a second (and at open) a process adopts the files of processes that are gone
//!   (the kernel released their locks): their deliveries move into its own file and its pool,
//!   with their delivery ids, attempt counts and due times, and their lock files go.
//! - A delivery no engine of the process claims for `orphan_after` after the outbox was opened
//!   becomes a dead letter (counted, logged once).
//! - Dead letters are files shared by all (`dead`).
//!
//! Network file systems are not supported (their `flock` does not follow a dead process).

mod dead;
mod file;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::tenants::{StoredWebhook, Tenants};
use super::{Claimed, DeadRecord, LastChange, Plan, Record, Store};
use crate::error::{Error, Result};
use dead::DeadLetters;
use file::{Adopted, ProcessFile};

/// How often a process looks for files of processes that are gone (and for orphans).
const SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// The outboxes this process has open, by directory.
static OPEN: LazyLock<Mutex<HashMap<PathBuf, Weak<DiskOutbox>>>> = LazyLock::new(Mutex::default);

/// One directory's outbox in this process.
pub(crate) struct DiskOutbox {
    dir: PathBuf,
    file: ProcessFile,
    dead: DeadLetters,
    state: Mutex<Shared>,
    opened: Instant,
    orphan_after: Duration,
    /// Deliveries adopted from processes that were gone (`stats.outbox.adopted`).
    adopted: AtomicU64,
    /// The process that opened it: a forked child opens its own (and leaves this one alone).
    pid: u32,
    /// Bumped whenever deliveries join the pool, so that an engine which found nothing for
    /// its webhooks there does not look again until something new arrives.
    generation: AtomicU64,
}

struct Shared {
    /// The attached engines and their webhooks.
    tenants: Tenants,
    /// Stored deliveries no engine holds (waiting for one with their webhook).
    pool: Vec<Record>,
    /// Stored deliveries an engine holds, by delivery id.
    held: HashMap<Uuid, u64>,
    next_scan: Instant,
    /// Orphans already moved to dead letters (logged at the first).
    orphaned: u64,
}

impl DiskOutbox {
    /// The outbox of `dir` in this process (opened if none is), with a new engine of
    /// `webhooks` attached: its view, and the deliveries and dead letters it takes over now.
    /// Errors name `outbox.path`, or `webhooks[i].id` when another config of this process
    /// gives that id to another URL.
    pub fn attach(
        dir: &Path,
        webhooks: Vec<StoredWebhook>,
        orphan_after: Duration,
    ) -> Result<(DiskView, Claimed)> {
        let outbox = {
            let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
            open.retain(|_, outbox| outbox.strong_count() > 0);
            let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
            match open.get(&key).and_then(Weak::upgrade) {
                Some(outbox) if outbox.pid == std::process::id() => outbox,
                found => {
                    // One of the parent process (before fork): never touched, never dropped here.
                    std::mem::forget(found);
                    let outbox = Arc::new(
                        DiskOutbox::open(dir, orphan_after).map_err(|m| Error::config("outbox.path", m))?,
                    );
                    let key = std::fs::canonicalize(dir).unwrap_or(key);
                    open.insert(key, Arc::downgrade(&outbox));
                    outbox
                }
            }
        };
        let engine = outbox.register(webhooks.clone())?;
        let view = DiskView {
            outbox: Arc::clone(&outbox),
            engine,
            webhooks,
            released: AtomicBool::new(false),
            looked: AtomicU64::new(u64::MAX),
        };
        let resumed = outbox.take(&view, None);
        let dead = outbox
            .dead
            .list()
            .into_iter()
            .filter(|d| view.owns(&d.webhook, d.url.as_deref()))
            .collect();
        Ok((
            view,
            Claimed {
                resumed,
                dead,
                gone: Vec::new(),
            },
        ))
    }

    /// Creates the directory and this process's file, and adopts at once what processes that
    /// are gone left (a v3 directory's store included).
    fn open(dir: &Path, orphan_after: Duration) -> std::result::Result<DiskOutbox, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the directory: {e}"))?;
        let outbox = DiskOutbox {
            dir: dir.to_owned(),
            file: ProcessFile::create(dir)?,
            dead: DeadLetters::open(dir)?,
            state: Mutex::new(Shared {
                tenants: Tenants::default(),
                pool: Vec::new(),
                held: HashMap::new(),
                next_scan: Instant::now() + SCAN_INTERVAL,
                orphaned: 0,
            }),
            opened: Instant::now(),
            orphan_after,
            adopted: AtomicU64::new(0),
            pid: std::process::id(),
            generation: AtomicU64::new(0),
        };
        let mut state = outbox.state();
        outbox.adopt_gone(&mut state, true)?;
        drop(state);
        Ok(outbox)
    }

    fn state(&self) -> MutexGuard<'_, Shared> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attaches an engine of `webhooks` (see [`Tenants::register`]).
    fn register(&self, webhooks: Vec<StoredWebhook>) -> Result<u64> {
        self.state().tenants.register(webhooks)
    }

    /// Adopts the files of processes that are gone: their deliveries join the pool, their dead
    /// letters become files. `first`: at open, where a damaged file is an error; later it is
    /// logged and passed over.
    fn adopt_gone(&self, state: &mut Shared, first: bool) -> std::result::Result<(), String> {
        for orphaned in file::candidates(&self.dir, self.file.name()) {
            let keep = |adopted: &Adopted| {
                for letter in &adopted.dead {
                    let value = serde_json::to_vec(letter).map_err(|e| e.to_string())?;
                    self.dead.put(&letter.id, &value)?;
                }
                self.file.take_in(adopted)
            };
            match file::adopt(&orphaned, keep) {
                Ok(Some(adopted)) => {
                    let count = adopted.records.len();
                    if count > 0 || !adopted.unreadable.is_empty() {
                        log::info!(
                            "adopted {count} pending deliveries left in the outbox by a process that is gone{}",
                            match adopted.unreadable.len() {
                                0 => String::new(),
                                n => format!(" ({n} unreadable records kept aside)"),
                            }
                        );
                    }
                    self.adopted.fetch_add(count as u64, Relaxed);
                    self.generation.fetch_add(1, Relaxed);
                    state.pool.extend(adopted.records);
                }
                Ok(None) => {}
                Err(e) if first => return Err(e),
                Err(e) => log::warn!("outbox: {e}"),
            }
        }
        Ok(())
    }

    /// Deliveries in the pool for `view`'s webhooks, at most `room[webhook]` each (None: all),
    /// now held by it.
    fn take(&self, view: &DiskView, room: Option<&[usize]>) -> Vec<super::Resumed> {
        let generation = self.generation.load(Relaxed);
        if view.looked.load(Relaxed) == generation {
            return Vec::new();
        }
        let mut state = self.state();
        let mut short_of_room = false;
        let mut left: Vec<usize> = match room {
            Some(room) => room.to_vec(),
            None => vec![usize::MAX; view.webhooks.len()],
        };
        let pool = std::mem::take(&mut state.pool);
        let mut taken = Vec::new();
        for record in pool {
            let index = view
                .webhooks
                .iter()
                .position(|w| w.owns(&record.webhook, record.url.as_deref()));
            match index {
                Some(i) if left.get(i).is_some_and(|room| *room > 0) => {
                    left[i] -= 1;
                    state.held.insert(record.id, view.engine);
                    taken.push(record.resumed());
                }
                found => {
                    short_of_room |= found.is_some();
                    state.pool.push(record);
                }
            }
        }
        if !short_of_room {
            view.looked.store(generation, Relaxed);
        }
        taken
    }

    /// The periodic round of every view's claim: at most once per [`SCAN_INTERVAL`], adopt the
    /// files of processes that are gone and move orphans that waited `orphan_after` to dead
    /// letters.
    fn scan(&self) {
        let mut state = self.state();
        let now = Instant::now();
        if now < state.next_scan {
            return;
        }
        state.next_scan = now + SCAN_INTERVAL;
        let _ = self.adopt_gone(&mut state, false);
        if now.duration_since(self.opened) >= self.orphan_after {
            self.dead_letter_orphans(&mut state);
        }
    }

    /// Pool deliveries whose webhook no attached engine has become dead letters.
    fn dead_letter_orphans(&self, state: &mut Shared) {
        let engines: Vec<&StoredWebhook> = state.tenants.webhooks().collect();
        let (orphans, kept): (Vec<Record>, Vec<Record>) = std::mem::take(&mut state.pool)
            .into_iter()
            .partition(|r| !engines.iter().any(|w| w.owns(&r.webhook, r.url.as_deref())));
        state.pool = kept;
        if orphans.is_empty() {
            return;
        }
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let mut moved = Vec::new();
        for record in &orphans {
            let letter = DeadRecord::orphan(record, &time);
            let stored = serde_json::to_vec(&letter)
                .map_err(|e| e.to_string())
                .and_then(|v| self.dead.put(&record.id, &v));
            if stored.is_ok() {
                moved.push(record.id);
            }
        }
        if self.file.remove(&moved).is_err() {
            // Kept in the file: dead-lettered again (the same file name) at the next round.
            state.pool.extend(orphans);
            return;
        }
        state
            .pool
            .extend(orphans.into_iter().filter(|r| !moved.contains(&r.id)));
        if state.orphaned == 0 {
            log::warn!(
                "{} pending deliveries of webhooks (id and URL) no loaded config has became dead letters after outbox.orphan_after",
                moved.len()
            );
        }
        state.orphaned += moved.len() as u64;
    }

    /// Lets go of engine `key`: what it held and is still stored returns to the pool.
    fn detach(&self, key: u64) {
        let mut state = self.state();
        state.tenants.remove(key);
        let ids: Vec<Uuid> = state
            .held
            .iter()
            .filter(|(_, e)| **e == key)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            state.held.remove(id);
        }
        if let Ok(records) = self.file.records(&ids) {
            self.generation.fetch_add(1, Relaxed);
            state.pool.extend(records);
        }
    }

    /// Writes `plan` for engine `key`: dead letters first (a crash in between resumes a
    /// delivery whose letter exists, never loses one), then the deliveries in one transaction.
    fn write(&self, key: u64, plan: &Plan) -> std::result::Result<(), String> {
        for (id, letter) in &plan.dead {
            match letter {
                Some(value) => self.dead.put(id, value)?,
                None => drop(self.dead.take(id)),
            }
        }
        self.file
            .write(plan.deliveries.iter().map(|(id, last)| (id, last)))?;
        let mut state = self.state();
        for (id, last) in &plan.deliveries {
            match last {
                LastChange::Put { .. } => drop(state.held.insert(*id, key)),
                LastChange::Delete => drop(state.held.remove(id)),
            }
        }
        Ok(())
    }
}

/// One engine's view of its directory's outbox: the engine's [`Store`].
pub(crate) struct DiskView {
    outbox: Arc<DiskOutbox>,
    engine: u64,
    webhooks: Vec<StoredWebhook>,
    released: AtomicBool,
    /// The pool generation this engine last found nothing more for.
    looked: AtomicU64,
}

impl DiskView {
    fn owns(&self, id: &str, url: Option<&str>) -> bool {
        self.webhooks.iter().any(|w| w.owns(id, url))
    }
}

impl Store for DiskView {
    fn kind(&self) -> &'static str {
        "disk"
    }

    fn write(&self, plan: &Plan) -> std::result::Result<(), crate::store::Unwritten> {
        Ok(self.outbox.write(self.engine, plan)?)
    }

    fn ready(&self) -> bool {
        self.outbox.file.ready()
    }

    fn release(&self) {
        if !self.released.swap(true, Relaxed) {
            self.outbox.detach(self.engine);
        }
    }

    fn connected(&self) -> bool {
        self.outbox.file.healthy()
    }

    fn unreadable(&self) -> u64 {
        self.outbox.file.unreadable()
    }

    fn held(&self) -> Option<u64> {
        let state = self.outbox.state();
        Some((state.held.len() + state.pool.len()) as u64)
    }

    fn adopted(&self) -> u64 {
        self.outbox.adopted.load(Relaxed)
    }

    fn take_dead(&self, ids: &[Uuid]) -> Vec<bool> {
        ids.iter().map(|id| self.outbox.dead.take(id)).collect()
    }

    fn claim_due(&self) -> bool {
        if self.released.load(Relaxed) {
            return false;
        }
        let pool_changed = self.looked.load(Relaxed) != self.outbox.generation.load(Relaxed);
        let scan_due = match self.outbox.state.try_lock() {
            Ok(state) => Instant::now() >= state.next_scan,
            Err(_) => false,
        };
        pool_changed || scan_due
    }

    fn claim(&self, room: &[usize]) -> Claimed {
        if self.released.load(Relaxed) {
            return Claimed::default();
        }
        self.outbox.scan();
        Claimed {
            resumed: self.outbox.take(self, Some(room)),
            ..Claimed::default()
        }
    }
}

impl Drop for DiskView {
    fn drop(&mut self) {
        if self.outbox.pid == std::process::id() {
            self.release();
        } else {
            // In a forked child: the parent's database must not be written or closed from here.
            std::mem::forget(Arc::clone(&self.outbox));
        }
    }
}
