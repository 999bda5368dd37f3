//! A disk outbox directory as the tests look at it: each process's redb file beside the lock
//! file it holds while it lives (see `src/store/disk`).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The process files (`process-*.redb`) in `dir`.
pub fn process_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "redb"))
        .collect();
    files.sort();
    files
}

/// Waits until no process holds a file of `dir` (an engine's background tasks end a moment
/// after its handle is dropped): then the next start adopts what they left.
pub fn wait_let_go(dir: &Path) {
    super::wait_until("the outbox's files are let go", Duration::from_secs(10), || {
        std::fs::read_dir(dir).unwrap().all(|e| {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "lock") {
                return true;
            }
            let Ok(file) = std::fs::File::open(&path) else {
                return true;
            };
            // SAFETY: flock on a descriptor owned by `file`; released when it closes.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
        })
    });
}
