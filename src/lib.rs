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
