//! Helpers the integration tests share.

#![allow(dead_code)] // each test binary uses a different part of it

use std::time::{Duration, Instant};

pub mod disk;
pub mod heap;
pub mod host;
pub mod pki;
pub mod receiver;
pub mod redis;

/// Asserts that `config` fails to load with a config error whose text names `field`.
pub fn assert_config_error(config: &str, field: &str) {
    match webhook_notification::Config::load(config) {
        Err(e @ webhook_notification::Error::Config { .. }) => {
            assert!(e.to_string().contains(field), "{config}: {e}")
        }
        Err(other) => panic!("{config}: {other}"),
        Ok(_) => panic!("{config}: loaded"),
    }
}

/// Polls `done` every 10 ms until it holds; fails, naming `what`, once `within` has passed.
pub fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A fresh directory under the system's temporary directory, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A new empty directory whose name starts with `name`.
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
