//! An engine's silences: the set every routed event is checked against (one lock-free read
//! of an `Arc` per event), read again from the outbox's store every second when other
//! processes share it, and what hosts do with them — add, list, expire.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use log::warn;
use serde_json::Value;

use super::padded::Padded;
use crate::error::{Error, Result};
use crate::silence::{Silence, SilenceRecord, SilenceSet, SilenceState, MAX_SILENCES};
use crate::store::silences::SilenceStore;

/// How often a shared store is read again (DESIGN: every replica sees a change within 1 s).
pub(crate) const REFRESH: Duration = Duration::from_millis(500);

/// The silences of one engine's outbox.
pub(crate) struct Silences {
    store: Box<dyn SilenceStore>,
    /// Read (so written: the lock's count, the `Arc`'s) by the runtime for every event, so
    /// kept off the lines hook threads read (see [`Padded`]).
    set: Padded<RwLock<Arc<SilenceSet>>>,
    /// What the set was built from: an unchanged store is not parsed again (its regular
    /// expressions compiled) at every refresh.
    records: Mutex<Vec<SilenceRecord>>,
    /// Failed reads in a row (warnings are paced by powers of two).
    failures: std::sync::atomic::AtomicU64,
}

impl Silences {
    /// The silences kept in `store`; nothing is read until [`Silences::refresh`] (an engine
    /// reads them at start; the CLI only what a command needs).
    pub fn new(store: Box<dyn SilenceStore>) -> Self {
        Silences {
            store,
            set: Padded::default(),
            records: Mutex::default(),
            failures: Default::default(),
        }
    }

    /// The set as last read.
    pub fn current(&self) -> Arc<SilenceSet> {
        Arc::clone(&self.set.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether other processes may change the store (then [`Silences::refresh`] runs every
    /// [`REFRESH`]).
    pub fn shared(&self) -> bool {
        self.store.shared()
    }

    /// Reads the store again and rebuilds the set if it changed (a silence's start and end
    /// need no rebuild: each is checked against the event's time); on failure the last set
    /// stays in force. A store out of reach at start leaves the set empty until a read works.
    pub fn refresh(&self) {
        match self.store.load() {
            Ok(records) => {
                self.failures.store(0, std::sync::atomic::Ordering::Relaxed);
                let mut last = self.records.lock().unwrap_or_else(|e| e.into_inner());
                if *last != records {
                    let set = Arc::new(SilenceSet::of(&records, Timestamp::now()));
                    *self.set.write().unwrap_or_else(|e| e.into_inner()) = set;
                    *last = records;
                }
            }
            Err(e) => {
                let n = self.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!("cannot read the silences ({n} times in a row; the last read stays in force): {e}");
                }
            }
        }
    }

    /// Adds the silence `spec` (see [`Silence::new`]); returns its id.
    pub fn add(&self, spec: &Value) -> Result<String> {
        let silence = Silence::new(spec, Timestamp::now())?;
        if !self
            .store
            .add(&silence.record(), MAX_SILENCES)
            .map_err(unreachable_store)?
        {
            return Err(Error::InvalidArgument(format!(
                "silences: {MAX_SILENCES} are active or pending already; expire one first"
            )));
        }
        self.refresh();
        Ok(silence.id)
    }

    /// The silences not yet ended, as hosts see them (id, matchers, starts_at, ends_at,
    /// created_by, comment, state).
    pub fn list(&self) -> Result<Vec<Value>> {
        let now = Timestamp::now();
        let records = self.store.load().map_err(unreachable_store)?;
        Ok(records
            .iter()
            .filter_map(|r| Silence::from_record(r).ok())
            .filter(|s| s.state(now) != SilenceState::Ended)
            .map(|s| s.view(now))
            .collect())
    }

    /// Ends the silence `id` now.
    pub fn expire(&self, id: &str) -> Result<()> {
        match self.store.remove(id).map_err(unreachable_store)? {
            true => {
                self.refresh();
                Ok(())
            }
            false => Err(Error::InvalidArgument(format!(
                "no silence has the id `{}`",
                id.chars().take(64).collect::<String>()
            ))),
        }
    }
}

/// A store that could not be read or written: reported against `outbox`.
fn unreachable_store(message: String) -> Error {
    Error::config("outbox", message)
}
