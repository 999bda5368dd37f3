//! Dead letters of a disk outbox: one JSON file each in `<outbox.path>/dead-letters/`, named by
//! delivery id, shared by every process on the directory. Files, not rows of a process's redb
//! file, because a process holds its database locked for its whole life: this way any worker,
//! and the CLI while the workers run, lists and replays every worker's dead letters, and a
//! replay takes a letter by unlinking its file, which exactly one process can do.

use std::io::Write;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::store::DeadRecord;

/// The sub-directory of `outbox.path` holding dead letters.
pub const DIR: &str = "dead-letters";

/// The dead-letter directory of one outbox.
pub(crate) struct DeadLetters {
    dir: PathBuf,
}

impl DeadLetters {
    /// The dead-letter directory inside `outbox`, created if missing.
    pub fn open(outbox: &Path) -> Result<Self, String> {
        let dir = outbox.join(DIR);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {DIR}/: {e}"))?;
        Ok(DeadLetters { dir })
    }

    fn path(&self, id: &Uuid) -> PathBuf {
        self.dir.join(format!("{}.json", id.simple()))
    }

    /// Stores one dead letter (a [`DeadRecord`] as JSON) durably: written aside, synced, then
    /// renamed into place, so a reader never sees half a letter. Storing it again replaces it.
    pub fn put(&self, id: &Uuid, value: &[u8]) -> Result<(), String> {
        let path = self.path(id);
        let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(value)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        })();
        written.map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            format!("cannot write a dead letter: {e}")
        })
    }

    /// Removes one; whether it was still there (false: another process took it first).
    pub fn take(&self, id: &Uuid) -> bool {
        std::fs::remove_file(self.path(id)).is_ok()
    }

    /// Every dead letter stored, oldest first (files that do not parse are passed over and
    /// left where they are, for inspection).
    pub fn list(&self) -> Vec<DeadRecord> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut letters: Vec<DeadRecord> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let id = Uuid::try_parse(name.to_str()?.strip_suffix(".json")?).ok()?;
                let mut record: DeadRecord =
                    serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()?;
                record.id = id;
                Some(record)
            })
            .collect();
        letters.sort_by(|a, b| a.time.cmp(&b.time));
        letters
    }
}
