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

pub mod config;
mod delivery;
pub mod error;
pub mod events;
pub mod ffi;
pub mod logging;
mod notifier;
#[cfg(feature = "python")]
mod python;
pub mod signing;
pub mod stats;
pub mod template;

pub use config::Config;
pub use delivery::{USER_AGENT, WORKER_THREADS_ENV};
pub use error::{Error, Result};
pub use events::{Event, Hook};
pub use notifier::{Notifier, Submission, DEFAULT_PLUGIN_NAME};
pub use stats::{Stats, WebhookStats};
