//! `outbox`: where deliveries wait (memory, a redb directory, or Redis Streams).

use std::time::Duration;

use super::fields::seconds;
use super::schema::{OutboxType, RawOutbox};
use crate::error::{Error, Result};

impl RawOutbox {
    /// Checks the fields of the chosen type (and that no other type's field is set).
    pub(super) fn build(self) -> Result<OutboxConfig> {
        let only = |field: &str, set: bool, kind: &str| match set {
            true => Err(Error::config(
                format!("outbox.{field}"),
                format!("is only for `type: {kind}`"),
            )),
            false => Ok(()),
        };
        if self.kind != OutboxType::Disk {
            only("path", self.path.is_some(), "disk")?;
        }
        if self.kind != OutboxType::Redis {
            only("url", self.url.is_some(), "redis")?;
            only("key", self.key.is_some(), "redis")?;
            only("claim_after", self.claim_after.is_some(), "redis")?;
        }
        Ok(match self.kind {
            OutboxType::Memory => OutboxConfig::Memory,
            OutboxType::Disk => match self.path {
                Some(path) if !path.trim().is_empty() => OutboxConfig::Disk { path: path.into() },
                _ => {
                    return Err(Error::config(
                        "outbox.path",
                        "is required for `type: disk` (a directory)",
                    ))
                }
            },
            OutboxType::Redis => {
                let url = self
                    .url
                    .or_else(|| std::env::var("REDIS_URL").ok())
                    .filter(|url| !url.trim().is_empty())
                    .ok_or_else(|| {
                        Error::config("outbox.url", "is required for `type: redis` (or set REDIS_URL)")
                    })?;
                if !REDIS_SCHEMES.iter().any(|scheme| url.starts_with(scheme)) {
                    return Err(Error::config(
                        "outbox.url",
                        "must start with redis://, rediss:// or redis+unix://",
                    ));
                }
                let key = self.key.unwrap_or_else(|| "webhook-notification".into());
                if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(Error::config(
                        "outbox.key",
                        "must be a non-empty word without spaces",
                    ));
                }
                OutboxConfig::Redis {
                    url: RedisUrl(url),
                    key,
                    claim_after: seconds(
                        "outbox.claim_after",
                        self.claim_after.unwrap_or(60.0),
                        0.1,
                        86_400.0,
                    )?,
                }
            }
        })
    }
}

/// The URL schemes the Redis client accepts.
const REDIS_SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];

/// A Redis URL, which may hold a password: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(pub String);

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisUrl(…)")
    }
}

/// Where deliveries wait (`outbox.type`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboxConfig {
    /// In memory: lost with the process.
    Memory,
    /// A redb store in this directory (created if missing): survives restarts and crashes.
    Disk { path: std::path::PathBuf },
    /// Redis Streams under `key`, shared by every process with the same `url` and `key`;
    /// a delivery left by a process that died is taken over after `claim_after`.
    Redis {
        url: RedisUrl,
        key: String,
        claim_after: Duration,
    },
}
