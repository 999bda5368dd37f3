//! `outbox`: where deliveries wait (memory, a redb directory, or Redis Streams).

use std::time::Duration;

use super::expand;
use super::fields::{duration, seconds};
use super::schema::{OneOrMany, OutboxType, RawOutbox, RawTls};
use crate::error::{Error, Result};

/// `outbox.orphan_after` when not given: a day.
const ORPHAN_AFTER: Duration = Duration::from_secs(24 * 3600);

impl RawOutbox {
    /// `orphan_after` (durable outboxes only): 1 minute to 30 days, default a day.
    pub(super) fn orphan_after(&self) -> Result<Duration> {
        match &self.orphan_after {
            None => Ok(ORPHAN_AFTER),
            Some(_) if self.kind == OutboxType::Memory => Err(Error::config(
                "outbox.orphan_after",
                "is only for `type: disk` or `type: redis`",
            )),
            Some(raw) => duration(
                "outbox.orphan_after",
                raw,
                Duration::from_secs(60),
                Duration::from_secs(30 * 24 * 3600),
            ),
        }
    }

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
            only("tls", self.tls.is_some(), "redis")?;
            only("cluster", self.cluster.is_some(), "redis")?;
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
                let urls = match self.url {
                    Some(OneOrMany::One(url)) => vec![url],
                    Some(OneOrMany::Many(urls)) => urls,
                    None => std::env::var("REDIS_URL").into_iter().collect(),
                };
                let urls: Vec<String> = urls.into_iter().filter(|url| !url.trim().is_empty()).collect();
                if urls.is_empty() {
                    return Err(Error::config(
                        "outbox.url",
                        "is required for `type: redis` (or set REDIS_URL)",
                    ));
                }
                let cluster = self.cluster.unwrap_or(false);
                if urls.len() > 1 && !cluster {
                    return Err(Error::config(
                        "outbox.url",
                        "is a list of seeds, which needs `cluster: true` (a single node takes one url)",
                    ));
                }
                if !urls
                    .iter()
                    .all(|url| REDIS_SCHEMES.iter().any(|scheme| url.starts_with(scheme)))
                {
                    return Err(Error::config(
                        "outbox.url",
                        "must start with redis://, rediss:// or redis+unix://",
                    ));
                }
                if cluster && urls.iter().any(|url| url.contains("unix://")) {
                    return Err(Error::config(
                        "outbox.url",
                        "of a cluster must be redis:// or rediss:// seeds",
                    ));
                }
                let tls = match self.tls {
                    Some(_) if !urls.iter().all(|url| url.starts_with("rediss://")) => {
                        return Err(Error::config("outbox.tls", "needs a rediss:// url"))
                    }
                    Some(tls) => Some(tls.read_for_redis("outbox.tls")?),
                    None => None,
                };
                let key = self.key.unwrap_or_else(|| "webhook-notification".into());
                if key.is_empty()
                    || key
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
                {
                    return Err(Error::config(
                        "outbox.key",
                        "must be a non-empty word without spaces or braces",
                    ));
                }
                OutboxConfig::Redis(RedisOutbox {
                    urls: urls.into_iter().map(RedisUrl).collect(),
                    cluster,
                    tls,
                    key,
                    claim_after: seconds(
                        "outbox.claim_after",
                        self.claim_after.unwrap_or(60.0),
                        0.1,
                        86_400.0,
                    )?,
                })
            }
        })
    }
}

impl RawTls {
    /// The PEM files of `outbox.tls`, read at load (the Redis client parses them when it
    /// connects; a certificate Redis cannot be verified with shows in the outbox's stats).
    fn read_for_redis(self, at: &str) -> Result<RedisTls> {
        let read = |name: &str, path: &str| {
            let field = format!("{at}.{name}");
            let pem = expand::read_config_file(path)
                .map_err(|e| Error::config(&field, format!("cannot read `{path}`: {e}")))?;
            match String::from_utf8_lossy(&pem).contains("-----BEGIN ") {
                true => Ok(pem),
                false => Err(Error::config(field, format!("`{path}` is not PEM"))),
            }
        };
        let ca = self
            .ca_file
            .as_deref()
            .map(|path| read("ca_file", path))
            .transpose()?;
        let client = match (self.client_cert_file.as_deref(), self.client_key_file.as_deref()) {
            (Some(cert), Some(key)) => Some((read("client_cert_file", cert)?, read("client_key_file", key)?)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::config(
                    format!("{at}.client_key_file"),
                    "is required with client_cert_file",
                ))
            }
            (None, Some(_)) => {
                return Err(Error::config(
                    format!("{at}.client_cert_file"),
                    "is required with client_key_file",
                ))
            }
        };
        Ok(RedisTls { ca, client })
    }
}

/// `outbox.tls`: PEM bytes of a private CA and a client certificate and key for `rediss://`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTls {
    /// Trusted instead of the system's roots when given.
    pub ca: Option<Vec<u8>>,
    /// Certificate and private key presented to Redis (mTLS).
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisTls(…)") // a private key: never printed
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
    /// Redis Streams under `key`, shared by every process with the same Redis and `key`.
    Redis(RedisOutbox),
}

/// `outbox` with `type: redis`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisOutbox {
    /// One URL, or the seed nodes of a cluster.
    pub urls: Vec<RedisUrl>,
    /// `outbox.cluster`: Redis Cluster (the keys of one webhook share a hash tag).
    pub cluster: bool,
    /// `outbox.tls`, for `rediss://`.
    pub tls: Option<RedisTls>,
    pub key: String,
    /// A delivery left by a process that died is taken over after this long.
    pub claim_after: Duration,
}
