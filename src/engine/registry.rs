//! Process-wide engines shared by plugin instances. The real gateway builds a new instance
//! of the plugin every 30 s (and one per `team::tool` context), and awaits the old one's
//! shutdown inside a request: instances with the same plugin name and config therefore
//! attach to one engine, detaching returns at once, and an engine no instance uses any
//! more is closed once it has nothing pending — or drained at process exit.
//!
//! An engine starts (a redb open, a Redis client) outside the registry's lock, under a lock
//! of its own key: two configs starting at once never wait on each other, and two instances
//! of one config never start two engines.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::Config;
use crate::error::Result;

/// What the registry needs of an engine.
pub(crate) trait Shareable: Send + Sync + Sized + 'static {
    /// Starts an engine for `config` under `plugin_name`.
    fn start(config: Config, plugin_name: &str) -> Result<Arc<Self>>;
    /// The plugin name and config identity it serves.
    fn identity(&self) -> Key;
    /// Whether new instances may attach (not closing, not from before a fork).
    fn usable(&self) -> bool;
    /// Whether it was created before a `fork()`: its threads are gone.
    fn is_forked(&self) -> bool;
    /// Instances attached now.
    fn attached(&self) -> &AtomicUsize;
    /// Deliveries not yet ended.
    fn pending(&self) -> u64;
    /// Notified when nothing is pending any more.
    fn idle(&self) -> &Notify;
    /// The config's `shutdown_timeout`.
    fn shutdown_timeout(&self) -> Duration;
    /// Closes it within `timeout`; false if deliveries were abandoned.
    fn close(&self, timeout: Duration) -> bool;
    /// Queues what its digest groups still count (close's last messages); how many.
    fn send_digests(&self) -> usize;
}

/// An engine's key: plugin name and the SHA-256 identity of its expanded config.
pub(crate) type Key = (String, [u8; 32]);

/// One key's engine, behind the lock its start is made under.
type Slot<E> = Arc<Mutex<Option<Arc<E>>>>;

/// The engines of this process, by key.
pub(crate) struct Registry<E> {
    slots: Mutex<HashMap<Key, Slot<E>>>,
}

impl<E> Default for Registry<E> {
    fn default() -> Self {
        Registry {
            slots: Mutex::default(),
        }
    }
}

/// Locks `mutex`, taking it over from a thread that panicked holding it.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<E: Shareable> Registry<E> {
    /// The engine for `config` under `plugin_name`, started if no live one exists; the
    /// caller is attached to it until it detaches.
    pub fn attach(&self, config: Config, plugin_name: &str) -> Result<Arc<E>> {
        let key = (plugin_name.to_owned(), config.identity);
        let slot = Arc::clone(lock(&self.slots).entry(key).or_default());
        let mut engine = lock(&slot);
        if let Some(live) = engine.as_ref().filter(|e| e.usable()) {
            live.attached().fetch_add(1, SeqCst);
            return Ok(Arc::clone(live));
        }
        // An engine of the parent process (before fork) cannot run here; its memory is
        // left alone rather than torn down without its threads.
        if let Some(stale) = engine.take().filter(|e| e.is_forked()) {
            std::mem::forget(stale);
        }
        let started = E::start(config, plugin_name)?;
        started.attached().store(1, SeqCst);
        *engine = Some(Arc::clone(&started));
        Ok(started)
    }

    /// Closes an engine nobody uses once nothing is pending (unless someone attaches first).
    pub async fn close_when_idle(&self, engine: Arc<E>) {
        loop {
            let idle = engine.idle().notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if engine.attached().load(SeqCst) > 0 {
                return;
            }
            // Idle but for digest counts: send them first, then wait for idle again.
            if engine.pending() == 0 && engine.send_digests() > 0 {
                continue;
            }
            if engine.pending() == 0 {
                let Some(slot) = lock(&self.slots).get(&engine.identity()).cloned() else {
                    return;
                };
                let mut current = lock(&slot);
                if engine.attached().load(SeqCst) > 0 || engine.pending() > 0 {
                    continue;
                }
                if current.as_ref().is_some_and(|e| Arc::ptr_eq(e, &engine)) {
                    current.take();
                }
                drop(current);
                engine.close(Duration::ZERO);
                return;
            }
            idle.await;
        }
    }

    /// Closes every engine (at process exit), all within the longest `shutdown_timeout`
    /// among them, each within its own; false if some deliveries were abandoned.
    pub fn drain(&self) -> bool {
        let slots: Vec<Slot<E>> = lock(&self.slots).drain().map(|(_, s)| s).collect();
        let all: Vec<Arc<E>> = slots
            .iter()
            .filter_map(|slot| lock(slot).take())
            .filter(|e| !e.is_forked())
            .collect();
        let longest = all.iter().map(|e| e.shutdown_timeout()).max().unwrap_or_default();
        let deadline = Instant::now() + longest;
        let mut drained = true;
        for engine in all {
            let left = deadline.saturating_duration_since(Instant::now());
            drained &= engine.close(left.min(engine.shutdown_timeout()));
        }
        drained
    }
}
