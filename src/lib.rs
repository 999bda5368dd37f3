//! webhook-notification: HTTP webhook notifications for AI gateway hooks, sent without ever
//! blocking the gateway.
//!
//! The core runs config → events → template → signing → delivery and knows nothing of its
//! hosts; `ffi` (C, and Go through cgo) and `python` (PyO3, behind the `python` feature) are
//! thin adapters over [`Notifier`].
//!
//! ```no_run
//! use webhook_notification::{Hook, Notifier};
//! use serde_json::json;
//!
//! let notifier = Notifier::from_config_text(
//!     "webhooks: [{url: 'https://hooks.example/x', events: [tool_error]}]",
//!     None,
//! ).unwrap();
//! let payload = json!({"name": "search", "result": {"isError": true}});
//! notifier.invoke(Hook::ToolPostInvoke, payload, &json!({"request_id": "r1"})).unwrap();
//! notifier.flush(std::time::Duration::from_secs(5));
//! ```

mod breaker;
pub mod cli;
pub mod config;
mod delivery;
mod dispatch;
mod engine;
pub mod error;
pub mod events;
pub mod ffi;
mod ledger;
pub mod logging;
pub mod metrics;
pub mod network;
mod notifier;
pub mod outbox;
pub mod preview;
#[cfg(feature = "python")]
mod python;
mod registry;
pub mod runtime;
pub mod signing;
pub mod stats;
pub mod template;

// The `mimalloc` feature (on in the wheel, opt-in for the C/Go library): hooks allocate an
// event on the host's thread and the delivery runtime frees it on its own; glibc's malloc
// makes those frees take the lock of the arena the host thread allocates from, so hooks
// stalled on futex waits (~1 Python hook call in 7 in a hot loop; C hook p99 6× mimalloc's,
// see BENCHMARKS.md). Off by default so that a Rust host keeps its own allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use breaker::Circuit;
pub use config::Config;
pub use delivery::USER_AGENT;
pub use error::{Error, Result};
pub use events::{Event, Hook};
pub use notifier::{Notifier, Submission, DEFAULT_PLUGIN_NAME};
pub use outbox::{DeadLetter, DeadLetterView};
pub use registry::drain_shared;
pub use runtime::WORKER_THREADS_ENV;
pub use stats::{Stats, WebhookStats};
