//! Where silences are kept: the outbox's store, so they reach every process that shares it
//! (DESIGN "Silences"). Memory: this process only. Disk: `silences.json` in the outbox
//! directory (every worker process on the directory reads it; it survives restarts), changed
//! under an `flock` and replaced by rename, so a reader never sees half a file. Redis: the
//! hash `KEY:silences`, shared by the fleet. Engines read their store again every second.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;

use crate::config::OutboxConfig;
use crate::silence::SilenceRecord;
use crate::store::redis::RedisSilences;

/// A store of silences.
pub(crate) trait SilenceStore: Send + Sync {
    /// Every silence stored (ended ones included until removed).
    fn load(&self) -> Result<Vec<SilenceRecord>, String>;
    /// Adds `silence` unless `limit` silences not yet ended are stored already (false then);
    /// ended ones are forgotten first. Checked under the store's lock where it has one, so the
    /// limit holds across processes.
    fn add(&self, silence: &SilenceRecord, limit: usize) -> Result<bool, String>;
    /// Removes the silence `id`; false when none has that id.
    fn remove(&self, id: &str) -> Result<bool, String>;
    /// Whether other processes may change it (then engines read it again every second).
    fn shared(&self) -> bool {
        true
    }
}

/// The silence store of `outbox`.
pub(crate) fn open(outbox: &OutboxConfig) -> Result<Box<dyn SilenceStore>, String> {
    Ok(match outbox {
        OutboxConfig::Memory => Box::new(MemorySilences::default()),
        OutboxConfig::Disk { path } => Box::new(DiskSilences::new(path)?),
        OutboxConfig::Redis(redis) => Box::new(RedisSilences::new(redis)?),
    })
}

/// This process's silences only.
#[derive(Default)]
pub(crate) struct MemorySilences(Mutex<Vec<SilenceRecord>>);

impl SilenceStore for MemorySilences {
    fn load(&self) -> Result<Vec<SilenceRecord>, String> {
        Ok(self.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    fn add(&self, silence: &SilenceRecord, limit: usize) -> Result<bool, String> {
        let mut silences = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(add_within(&mut silences, silence, limit))
    }

    fn remove(&self, id: &str) -> Result<bool, String> {
        let mut silences = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let before = silences.len();
        silences.retain(|s| s.id != id);
        Ok(silences.len() < before)
    }

    fn shared(&self) -> bool {
        false
    }
}

/// Forgets the ended silences of `silences`, then adds `silence` unless `limit` remain;
/// whether it was added.
fn add_within(silences: &mut Vec<SilenceRecord>, silence: &SilenceRecord, limit: usize) -> bool {
    let now = Timestamp::now();
    silences.retain(|s| !s.ended(now));
    let room = silences.len() < limit;
    if room {
        silences.push(silence.clone());
    }
    room
}

/// `silences.json` in a disk outbox's directory.
pub(crate) struct DiskSilences {
    file: PathBuf,
    lock: PathBuf,
}

impl DiskSilences {
    fn new(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the outbox directory: {e}"))?;
        Ok(DiskSilences {
            file: dir.join("silences.json"),
            lock: dir.join("silences.lock"),
        })
    }

    /// Runs `change` on the stored silences under the directory's silence lock, then writes
    /// what it left (when it returns true).
    fn change<T>(
        &self,
        change: impl FnOnce(&mut Vec<SilenceRecord>) -> Result<(T, bool), String>,
    ) -> Result<T, String> {
        let lock =
            File::create(&self.lock).map_err(|e| format!("cannot open {}: {e}", self.lock.display()))?;
        // SAFETY: flock on a descriptor owned by `lock`, released when it closes.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!("cannot lock {}", self.lock.display()));
        }
        let mut silences = self.load()?;
        let (result, write) = change(&mut silences)?;
        if write {
            let text = serde_json::to_vec_pretty(&silences).expect("records serialise");
            let temporary = self.file.with_extension(format!("json.{}", std::process::id()));
            std::fs::write(&temporary, text)
                .and_then(|()| File::open(&temporary)?.sync_all())
                .and_then(|()| std::fs::rename(&temporary, &self.file))
                .map_err(|e| format!("cannot write {}: {e}", self.file.display()))?;
        }
        Ok(result)
    }
}

impl SilenceStore for DiskSilences {
    fn load(&self) -> Result<Vec<SilenceRecord>, String> {
        match std::fs::read(&self.file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not readable: {e}", self.file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("cannot read {}: {e}", self.file.display())),
        }
    }

    fn add(&self, silence: &SilenceRecord, limit: usize) -> Result<bool, String> {
        self.change(|silences| {
            let before = silences.len();
            let added = add_within(silences, silence, limit);
            Ok((added, added || silences.len() != before))
        })
    }

    fn remove(&self, id: &str) -> Result<bool, String> {
        self.change(|silences| {
            let before = silences.len();
            silences.retain(|s| s.id != id);
            let removed = silences.len() < before;
            Ok((removed, removed))
        })
    }
}
