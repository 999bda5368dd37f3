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
//!
//! Layers, bottom up (each imports only layers below it; `python3 ../shared/tools/import-cycles.py
//! src` finds any loop): `error`, `logging`, `json_scan`, `json_text`; `events`, `severity`, `matching`, `template`,
//! `signing`, `network`; `formats`; `config`; `render`, `stats`, `metrics`; `store`; `engine`; `notifier`, `preview`; and the
//! host surfaces `cli`, `ffi`, `python`.

#![deny(unsafe_op_in_unsafe_fn)]

pub(crate) mod config;
pub(crate) mod engine;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod formats;
pub(crate) mod intervals;
pub(crate) mod json_scan;
pub(crate) mod json_text;
pub(crate) mod logging;
pub(crate) mod matching;
pub(crate) mod metrics;
pub(crate) mod network;
pub(crate) mod payload;
pub(crate) mod render;
pub(crate) mod severity;
pub(crate) mod signing;
pub(crate) mod silence;
pub(crate) mod stats;
pub(crate) mod store;
pub(crate) mod template;
pub(crate) mod trace;
// Surfaces: the Rust API, then the hosts.
pub(crate) mod cli;
pub mod ffi;
pub(crate) mod notifier;
pub(crate) mod preview;
#[cfg(feature = "python")]
mod python;

// The `mimalloc` feature (default; the wheel, the C/Go/Lua library): hooks allocate an
// event on the host's thread and the delivery runtime frees it on its own; glibc's malloc
// makes those frees take the lock of the arena the host thread allocates from, so hooks
// stalled on futex waits (~1 Python hook call in 7 in a hot loop; C hook p99 6× mimalloc's,
// see BENCHMARKS.md). On by default because the library's hosts are C, Go, Lua and Python
// programs that would otherwise get glibc's behaviour; a Rust host that sets its own
// `#[global_allocator]` builds with `default-features = false`.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use cli::run as run_cli;
pub use config::Config;
pub use engine::{drain_shared, WORKER_THREADS_ENV};
pub use error::{Error, Result};
pub use events::{Event, Hook};
pub use logging::init_stderr;
pub use network::DENIED;
pub use notifier::{Notifier, Submission, DEFAULT_PLUGIN_NAME};
pub use preview::{preview, Preview};
pub use render::USER_AGENT;
pub use stats::{Circuit, OutboxStatus, Stats, WebhookStats};
pub use store::{DeadLetter, DeadLetterView};
pub use template::Template;
