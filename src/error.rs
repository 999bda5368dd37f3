//! The library's one error type. Every variant maps to a C status code (see `ffi.rs`) and a
//! Python exception; none of them ever carries a secret (config values are never quoted).

use std::fmt;

/// What went wrong, in a form each host surface can map to its own convention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A caller passed something unusable: an unknown hook or event name, bad UTF-8, NULL.
    InvalidArgument(String),
    /// The configuration cannot be loaded; `field` is the path of the offending value,
    /// e.g. `webhooks[1].authentication.hmac_secret`.
    Config { field: String, message: String },
    /// A payload, context, violation or metadata document is not valid JSON of the right shape.
    Parse(String),
    /// `flush` or `close` reached its deadline with deliveries still queued or in flight.
    Timeout { pending: u64 },
    /// The notifier was closed; it accepts no new events.
    Closed,
    /// The notifier was created before this process was forked; its delivery tasks live in
    /// the parent. Create a new one in this process.
    Forked,
}

impl Error {
    /// A config error at `field`.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Config { field, message } if field.is_empty() => {
                write!(f, "config error: {message}")
            }
            Error::Config { field, message } => write!(f, "config error at `{field}`: {message}"),
            Error::Parse(m) => write!(f, "parse error: {m}"),
            Error::Timeout { pending } => {
                write!(f, "timed out with {pending} deliveries still pending")
            }
            Error::Closed => write!(f, "the webhook notifier is closed"),
            Error::Forked => write!(
                f,
                "the webhook notifier was created before fork() in the parent process; create it again in this process"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
