//! The one background tokio runtime of the process, started on first use and owned by the
//! library, and fork detection: a child of `fork()` has none of its parent's threads, so it
//! gets a runtime of its own, and engines created before the fork refuse new events
//! (their tasks are gone) instead of silently queueing them forever.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Mutex, Once};

use tokio::runtime::{Handle, Runtime};

/// Environment variable setting the delivery runtime's worker threads (default 1: measured
/// faster than 2 on a 2-core host that also runs the gateway; see DESIGN.md).
pub const WORKER_THREADS_ENV: &str = "WEBHOOK_WORKER_THREADS";

/// Bumped in the child of every `fork()`.
static GENERATION: AtomicU32 = AtomicU32::new(0);

/// The runtime of the current process generation (older ones are leaked: their threads
/// belong to a parent process and cannot be joined here).
static RUNTIME: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);

/// Which process this is, as far as the library is concerned: changes in a forked child.
pub fn generation() -> u32 {
    GENERATION.load(SeqCst)
}

/// A handle to this process's delivery runtime, starting it if needed.
pub(crate) fn handle() -> Handle {
    static AT_FORK: Once = Once::new();
    AT_FORK.call_once(|| {
        extern "C" fn in_child() {
            GENERATION.fetch_add(1, SeqCst);
        }
        // SAFETY: registers a handler that only touches an atomic (async-signal-safe).
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    let now = generation();
    match *slot {
        Some((generation, runtime)) if generation == now => runtime.handle().clone(),
        _ => {
            let runtime: &'static Runtime = Box::leak(Box::new(build()));
            *slot = Some((now, runtime));
            runtime.handle().clone()
        }
    }
}

fn build() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads(std::env::var(WORKER_THREADS_ENV).ok().as_deref()))
        .thread_name("webhook-delivery")
        .enable_all()
        .build()
        .expect("the webhook delivery runtime starts")
}

/// Worker threads from the environment value: 1..=64, else the default of 1.
fn worker_threads(value: Option<&str>) -> usize {
    value
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_threads_from_environment_value() {
        assert_eq!(worker_threads(None), 1);
        assert_eq!(worker_threads(Some("3")), 3);
        assert_eq!(worker_threads(Some("0")), 1);
        assert_eq!(worker_threads(Some("lots")), 1);
    }
}
