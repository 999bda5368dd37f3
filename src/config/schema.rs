//! The config document as written: serde types with the original plugin's defaults. Unknown
//! fields are refused here; values are checked by each section's builder.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::retry::RawDuration;
use crate::events::Event;
use crate::formats::Format;
use crate::severity::Severity;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) webhooks: Vec<RawWebhook>,
    #[serde(default)]
    pub(super) payload_templates: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) payload_template_files: BTreeMap<String, String>,
    pub(super) default_template: Option<String>,
    #[serde(default)]
    pub(super) include_payload_data: bool,
    #[serde(default = "defaults::max_payload_size")]
    pub(super) max_payload_size: u64,
    #[serde(default = "defaults::queue_capacity")]
    pub(super) queue_capacity: u64,
    #[serde(default = "defaults::shutdown_timeout")]
    pub(super) shutdown_timeout: f64,
    #[serde(default)]
    pub(super) outbox: RawOutbox,
    #[serde(default)]
    pub(super) network: RawNetwork,
    #[serde(default)]
    pub(super) severity: BTreeMap<String, Severity>,
    #[serde(default)]
    pub(super) time_intervals: BTreeMap<String, Vec<RawWindow>>,
}

/// One window of a time interval as written (see `intervals::build`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    #[serde(default)]
    pub(super) times: Vec<RawTimes>,
    #[serde(default)]
    pub(super) weekdays: Vec<RawBound>,
    #[serde(default)]
    pub(super) days_of_month: Vec<RawBound>,
    #[serde(default)]
    pub(super) months: Vec<RawBound>,
    #[serde(default)]
    pub(super) years: Vec<RawBound>,
    pub(super) location: Option<String>,
}

/// `{start_time, end_time}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimes {
    pub(super) start_time: String,
    pub(super) end_time: String,
}

/// A value or an `a:b` range (`monday:friday`, `1:7`, `-1`, `2026`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawBound {
    Number(i64),
    Text(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    #[serde(default)]
    pub(super) deny_private: bool,
    #[serde(default)]
    pub(super) allow: Vec<String>,
    #[serde(default)]
    pub(super) deny: Vec<String>,
    #[serde(default)]
    pub(super) require_https: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) ca_file: Option<String>,
    pub(super) client_cert_file: Option<String>,
    pub(super) client_key_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    pub(super) url: String,
    pub(super) id: Option<String>,
    #[serde(default = "defaults::events")]
    pub(super) events: Vec<Event>,
    #[serde(default)]
    pub(super) authentication: RawAuth,
    pub(super) retry_attempts: Option<u64>,
    pub(super) retry_delay: Option<u64>,
    pub(super) retry_schedule: Option<Vec<RawDuration>>,
    #[serde(default = "defaults::timeout")]
    pub(super) timeout: u64,
    #[serde(default = "defaults::enabled")]
    pub(super) enabled: bool,
    #[serde(default = "defaults::max_concurrency")]
    pub(super) max_concurrency: u64,
    pub(super) queue_capacity: Option<u64>,
    pub(super) max_rate: Option<f64>,
    #[serde(default)]
    pub(super) circuit_breaker: RawBreaker,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    pub(super) tls: Option<RawTls>,
    pub(super) proxy: Option<String>,
    #[serde(default)]
    pub(super) format: Format,
    #[serde(default, deserialize_with = "credential")]
    pub(super) routing_key: Option<String>,
    #[serde(rename = "match")]
    pub(super) matching: Option<BTreeMap<String, OneOrMany>>,
    pub(super) exclude: Option<BTreeMap<String, OneOrMany>>,
    pub(super) min_severity: Option<Severity>,
    pub(super) digest: Option<RawDigest>,
    pub(super) batch: Option<RawBatch>,
    pub(super) email: Option<RawEmail>,
    #[serde(default)]
    pub(super) mute_time_intervals: Vec<String>,
    #[serde(default)]
    pub(super) active_time_intervals: Vec<String>,
}

impl RawWebhook {
    /// Moves the alerting fields out (see `alerting::build`).
    pub(super) fn take_alerting(&mut self) -> RawAlerting {
        RawAlerting {
            format: self.format,
            routing_key: self.routing_key.take(),
            matching: self.matching.take(),
            exclude: self.exclude.take(),
            min_severity: self.min_severity,
            digest: self.digest.take(),
        }
    }
}

/// A webhook's alerting fields as written.
pub(super) struct RawAlerting {
    pub(super) format: Format,
    pub(super) routing_key: Option<String>,
    pub(super) matching: Option<BTreeMap<String, OneOrMany>>,
    pub(super) exclude: Option<BTreeMap<String, OneOrMany>>,
    pub(super) min_severity: Option<Severity>,
    pub(super) digest: Option<RawDigest>,
}

/// One string or a list of them: a `match`/`exclude` value (any glob may match), or
/// `outbox.url` (one URL, or a cluster's seeds).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `email` as written (see `email::build`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmail {
    pub(super) from: String,
    pub(super) to: Vec<String>,
    #[serde(default)]
    pub(super) cc: Vec<String>,
    pub(super) subject: Option<String>,
    #[serde(default, deserialize_with = "credential")]
    pub(super) username: Option<String>,
    #[serde(default, deserialize_with = "credential")]
    pub(super) password: Option<String>,
}

/// `batch` as written (see `batch::build`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBatch {
    pub(super) max_events: Option<u64>,
    pub(super) max_bytes: Option<RawSize>,
    pub(super) max_wait: Option<RawDuration>,
}

/// A size: bytes, or text with a unit (`1MiB`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDigest {
    pub(super) group_by: Option<Vec<String>>,
    pub(super) group_wait: Option<RawDuration>,
    pub(super) group_interval: Option<RawDuration>,
    pub(super) threshold: Option<RawThreshold>,
    pub(super) resolve_after: Option<RawDuration>,
    pub(super) max_groups: Option<u64>,
    pub(super) samples: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThreshold {
    pub(super) count: u64,
    pub(super) window: RawDuration,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum AuthType {
    #[default]
    None,
    Bearer,
    ApiKey,
    Hmac,
    StandardWebhooks,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(default, rename = "type")]
    pub(super) kind: AuthType,
    #[serde(default, deserialize_with = "credential")]
    pub(super) token: Option<String>,
    #[serde(default, deserialize_with = "credential")]
    pub(super) api_key: Option<String>,
    pub(super) api_key_header: Option<String>,
    #[serde(default, deserialize_with = "credential")]
    pub(super) hmac_secret: Option<String>,
    pub(super) hmac_algorithm: Option<String>,
    pub(super) hmac_header: Option<String>,
    pub(super) secrets: Option<Vec<String>>,
}

/// `circuit_breaker`: `false` (off), `true` (defaults) or `{failures, cooldown}`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawBreaker {
    Switch(bool),
    Settings(RawBreakerSettings),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreakerSettings {
    #[serde(default = "defaults::breaker_failures")]
    pub(super) failures: u64,
    #[serde(default = "defaults::breaker_cooldown")]
    pub(super) cooldown: f64,
}

impl Default for RawBreaker {
    fn default() -> Self {
        RawBreaker::Switch(true)
    }
}

#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum OutboxType {
    #[default]
    Memory,
    Disk,
    Redis,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutbox {
    #[serde(default, rename = "type")]
    pub(super) kind: OutboxType,
    pub(super) path: Option<String>,
    pub(super) url: Option<OneOrMany>,
    pub(super) cluster: Option<bool>,
    pub(super) key: Option<String>,
    pub(super) claim_after: Option<f64>,
    pub(super) orphan_after: Option<RawDuration>,
    #[serde(default = "defaults::dead_letter_capacity")]
    pub(super) dead_letter_capacity: u64,
    pub(super) tls: Option<RawTls>,
}

impl Default for RawOutbox {
    fn default() -> Self {
        RawOutbox {
            kind: OutboxType::Memory,
            path: None,
            url: None,
            cluster: None,
            key: None,
            claim_after: None,
            orphan_after: None,
            dead_letter_capacity: defaults::dead_letter_capacity(),
            tls: None,
        }
    }
}

pub(super) mod defaults {
    use crate::events::Event;
    pub fn max_payload_size() -> u64 {
        1000
    }
    pub fn queue_capacity() -> u64 {
        10_000
    }
    pub fn shutdown_timeout() -> f64 {
        5.0
    }
    pub fn events() -> Vec<Event> {
        vec![Event::Violation]
    }
    pub fn retry_attempts() -> u64 {
        3
    }
    pub fn retry_delay() -> u64 {
        1000
    }
    pub fn timeout() -> u64 {
        10
    }
    pub fn enabled() -> bool {
        true
    }
    pub fn max_concurrency() -> u64 {
        32
    }
    pub fn breaker_failures() -> u64 {
        5
    }
    pub fn breaker_cooldown() -> f64 {
        60.0
    }
    pub fn dead_letter_capacity() -> u64 {
        10_000
    }
}

/// A credential given as a string, or as a number an unquoted YAML value became.
fn credential<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Signed(i64),
        Unsigned(u64),
    }
    Ok(Option::<Scalar>::deserialize(d)?.map(|s| match s {
        Scalar::Text(t) => t,
        Scalar::Signed(n) => n.to_string(),
        Scalar::Unsigned(n) => n.to_string(),
    }))
}
