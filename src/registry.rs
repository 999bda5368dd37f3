//! Process-wide engines shared by plugin instances. The real gateway builds a new instance
//! of the plugin every 30 s (and one per `team::tool` context), and awaits the old one's
//! shutdown inside a request: instances with the same plugin name and config therefore
//! attach to one engine, detaching returns at once, and an engine no instance uses any
//! more is closed once it has nothing pending — or drained at process exit.

use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;

use crate::config::Config;
use crate::engine::Engine;
use crate::runtime;

type Key = (String, [u8; 32]);

static ENGINES: Lazy<Mutex<HashMap<Key, Arc<Engine>>>> = Lazy::new(Default::default);

fn engines() -> MutexGuard<'static, HashMap<Key, Arc<Engine>>> {
    ENGINES.lock().unwrap_or_else(|e| e.into_inner())
}

fn key(engine: &Engine) -> Key {
    (engine.plugin_name.clone(), engine.config.identity)
}

/// The engine for `config` under `plugin_name`, started if no live one exists; the caller
/// is attached to it until [`detach`].
pub(crate) fn attach(config: Config, plugin_name: &str) -> crate::Result<Arc<Engine>> {
    let mut engines = engines();
    let key = (plugin_name.to_owned(), config.identity);
    if let Some(engine) = engines.get(&key) {
        if !engine.is_closed() && !engine.is_forked() {
            engine.attached.fetch_add(1, SeqCst);
            return Ok(Arc::clone(engine));
        }
        // An engine of the parent process (before fork) cannot run here; its memory is
        // left alone rather than torn down without its threads.
        if let Some(stale) = engines.remove(&key).filter(|e| e.is_forked()) {
            std::mem::forget(stale);
        }
    }
    let engine = Engine::start(config, plugin_name)?;
    engine.attached.store(1, SeqCst);
    engines.insert(key, Arc::clone(&engine));
    Ok(engine)
}

/// Detaches one instance; the last one out leaves the engine to close when idle.
pub(crate) fn detach(engine: &Arc<Engine>) {
    if engine.attached.fetch_sub(1, SeqCst) == 1 && !engine.is_forked() {
        runtime::handle().spawn(close_when_idle(Arc::clone(engine)));
    }
}

/// Closes an engine nobody uses once nothing is pending (unless someone attaches first).
async fn close_when_idle(engine: Arc<Engine>) {
    loop {
        let idle = engine.ledger.idle_async.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        if engine.attached.load(SeqCst) > 0 {
            return;
        }
        if engine.ledger.pending() == 0 {
            let mut engines = engines();
            if engine.attached.load(SeqCst) > 0 || engine.ledger.pending() > 0 {
                continue;
            }
            if engines
                .get(&key(&engine))
                .is_some_and(|e| Arc::ptr_eq(e, &engine))
            {
                engines.remove(&key(&engine));
            }
            drop(engines);
            let _ = engine.close(Duration::ZERO);
            return;
        }
        idle.await;
    }
}

/// Closes every shared engine of this process (at process exit), all within the longest
/// `shutdown_timeout` among them, each within its own; false if some deliveries were
/// abandoned.
pub fn drain_shared() -> bool {
    let all: Vec<Arc<Engine>> = engines().drain().map(|(_, e)| e).collect();
    let all: Vec<&Arc<Engine>> = all.iter().filter(|e| !e.is_forked()).collect();
    let longest = all
        .iter()
        .map(|e| e.config.shutdown_timeout)
        .max()
        .unwrap_or_default();
    let deadline = Instant::now() + longest;
    let mut drained = true;
    for engine in all {
        let left = deadline.saturating_duration_since(Instant::now());
        drained &= engine.close(left.min(engine.config.shutdown_timeout)).is_ok();
    }
    drained
}
