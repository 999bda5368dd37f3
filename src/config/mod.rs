//! The plugin configuration: the original plugin's schema, defaults and bounds, plus the
//! new optional fields of DESIGN.md. [`Config::load`] does every check up front, so a
//! notifier never starts half-configured, and every error names the field path. No error
//! quotes a value from the config: any of them may be a credential.

mod expand;
mod retry;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::events::Event;
use crate::network::NetworkPolicy;
use crate::signing::{decode_standard_secret, HmacAlgorithm, Secret, Signer};
use crate::template::Template;
use retry::RawDuration;
pub use retry::{RetryPolicy, MAX_SCHEDULE_LEN};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
    #[serde(default)]
    payload_templates: BTreeMap<String, String>,
    #[serde(default)]
    payload_template_files: BTreeMap<String, String>,
    default_template: Option<String>,
    #[serde(default)]
    include_payload_data: bool,
    #[serde(default = "defaults::max_payload_size")]
    max_payload_size: u64,
    #[serde(default = "defaults::queue_capacity")]
    queue_capacity: u64,
    #[serde(default = "defaults::shutdown_timeout")]
    shutdown_timeout: f64,
    #[serde(default)]
    outbox: RawOutbox,
    #[serde(default)]
    network: RawNetwork,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    #[serde(default)]
    deny_private: bool,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    require_https: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<String>,
    client_cert_file: Option<String>,
    client_key_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    id: Option<String>,
    #[serde(default = "defaults::events")]
    events: Vec<Event>,
    #[serde(default)]
    authentication: RawAuth,
    retry_attempts: Option<u64>,
    retry_delay: Option<u64>,
    retry_schedule: Option<Vec<RawDuration>>,
    #[serde(default = "defaults::timeout")]
    timeout: u64,
    #[serde(default = "defaults::enabled")]
    enabled: bool,
    #[serde(default = "defaults::max_concurrency")]
    max_concurrency: u64,
    queue_capacity: Option<u64>,
    max_rate: Option<f64>,
    #[serde(default)]
    circuit_breaker: RawBreaker,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    tls: Option<RawTls>,
    proxy: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum AuthType {
    #[default]
    None,
    Bearer,
    ApiKey,
    Hmac,
    StandardWebhooks,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default, rename = "type")]
    kind: AuthType,
    #[serde(default, deserialize_with = "credential")]
    token: Option<String>,
    #[serde(default, deserialize_with = "credential")]
    api_key: Option<String>,
    api_key_header: Option<String>,
    #[serde(default, deserialize_with = "credential")]
    hmac_secret: Option<String>,
    hmac_algorithm: Option<String>,
    hmac_header: Option<String>,
    secrets: Option<Vec<String>>,
}

/// `circuit_breaker`: `false` (off), `true` (defaults) or `{failures, cooldown}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawBreaker {
    Switch(bool),
    Settings(RawBreakerSettings),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreakerSettings {
    #[serde(default = "defaults::breaker_failures")]
    failures: u64,
    #[serde(default = "defaults::breaker_cooldown")]
    cooldown: f64,
}

impl Default for RawBreaker {
    fn default() -> Self {
        RawBreaker::Switch(true)
    }
}

#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum OutboxType {
    #[default]
    Memory,
    Disk,
    Redis,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbox {
    #[serde(default, rename = "type")]
    kind: OutboxType,
    path: Option<String>,
    url: Option<String>,
    key: Option<String>,
    claim_after: Option<f64>,
    #[serde(default = "defaults::dead_letter_capacity")]
    dead_letter_capacity: u64,
}

impl Default for RawOutbox {
    fn default() -> Self {
        RawOutbox {
            kind: OutboxType::Memory,
            path: None,
            url: None,
            key: None,
            claim_after: None,
            dead_letter_capacity: defaults::dead_letter_capacity(),
        }
    }
}

impl RawOutbox {
    /// Checks the fields of the chosen type (and that no other type's field is set).
    fn build(self) -> Result<OutboxConfig> {
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

mod defaults {
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

/// A loaded, validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Webhooks in config order (disabled ones included, so stats keep config order).
    pub webhooks: Vec<Webhook>,
    templates: HashMap<Event, Template>,
    default_template: Option<Template>,
    /// Whether `{{payload}}` carries the hook's payload.
    pub include_payload_data: bool,
    /// Largest payload JSON (bytes) that `{{payload}}` carries; larger payloads are dropped
    /// when the event is admitted, not kept until render.
    pub max_payload_size: usize,
    /// How long closing waits for pending deliveries.
    pub shutdown_timeout: Duration,
    /// Dead letters kept at most (oldest evicted and counted).
    pub dead_letter_capacity: usize,
    /// Where deliveries wait.
    pub outbox: OutboxConfig,
    /// Which destinations deliveries may reach.
    pub network: std::sync::Arc<NetworkPolicy>,
    /// SHA-256 of the expanded document and template files: instances whose configs have
    /// the same identity (and the same plugin name) share one engine.
    pub identity: [u8; 32],
}

/// One webhook target. Its `Debug` shows only the id and the redacted URL.
pub struct Webhook {
    /// Names the webhook in stats, logs and dead letters (never the URL).
    pub id: String,
    /// The full URL (may hold credentials in its path or query: never log it).
    pub url: Url,
    /// `scheme://host[:port]/…`, safe for logs and stats.
    pub redacted_url: String,
    /// Events this webhook receives.
    pub events: Vec<Event>,
    /// Extra headers: the `headers` map plus bearer/api-key credentials (marked sensitive).
    pub headers: HeaderMap,
    /// How each request body is signed.
    pub signer: Signer,
    /// When failed attempts are tried again.
    pub retry: RetryPolicy,
    /// Bound on each attempt.
    pub timeout: Duration,
    /// A disabled webhook receives nothing.
    pub enabled: bool,
    /// Requests in flight at most for this webhook.
    pub max_concurrency: usize,
    /// Deliveries queued, in flight or waiting to retry at most for this webhook.
    pub queue_capacity: usize,
    /// Requests per second at most (None: unlimited).
    pub max_rate: Option<f64>,
    /// The circuit breaker, if on.
    pub breaker: Option<BreakerSettings>,
    /// A private CA and a client certificate, if configured.
    pub tls: Option<TlsSettings>,
    /// How requests reach the webhook.
    pub proxy: ProxySetting,
}

/// A webhook's TLS material, read at load.
#[derive(Clone)]
pub struct TlsSettings {
    /// Trusted in addition to the bundled roots (every certificate of `ca_file`).
    pub ca: Vec<reqwest::Certificate>,
    /// Presented for mTLS.
    pub identity: Option<reqwest::Identity>,
}

/// `proxy`: the environment's (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`), none, or this URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxySetting {
    Environment,
    None,
    Url(Url),
}

/// When a webhook's circuit opens and how long it stays open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Failed attempts in a row that open the circuit.
    pub failures: u32,
    /// First wait before a probe; doubles on each failed probe, up to 10×.
    pub cooldown: Duration,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.redacted_url)
            .field("events", &self.events)
            .field("signer", &self.signer)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Whether this webhook receives `event`.
    pub fn wants(&self, event: Event) -> bool {
        self.enabled && self.events.contains(&event)
    }
}

impl Config {
    /// Loads a YAML or JSON config (the `config:` mapping of a plugin entry), expanding
    /// `${env.NAME}` from the environment. JSON is tried first when the text starts with
    /// `{`; YAML (of which JSON is a subset) otherwise, and when JSON fails, so YAML flow
    /// mappings like `{webhooks: [...]}` load too.
    pub fn load(text: &str) -> Result<Self> {
        let mut doc = parse_document(text)?;
        if doc.is_null() {
            doc = serde_yaml::Value::Mapping(Default::default());
        }
        expand::expand_env(&mut doc, &mut String::new())?;
        Self::from_value(doc)
    }

    /// Validates an already-parsed document (after `${env.…}` expansion).
    fn from_value(doc: serde_yaml::Value) -> Result<Self> {
        let mut identity = Sha256::new();
        identity.update(serde_yaml::to_string(&doc).unwrap_or_default());
        let raw: RawConfig = serde_path_to_error::deserialize(doc).map_err(|e| {
            let field = shown_path(e.path());
            Error::config(field, without_values(&e.into_inner().to_string()))
        })?;
        let default_capacity = in_range("queue_capacity", raw.queue_capacity, 1, 10_000_000)?;
        let network = raw.network.build()?;
        let webhooks = raw
            .webhooks
            .into_iter()
            .enumerate()
            .map(|(i, w)| w.build(&format!("webhooks[{i}]"), default_capacity, &network))
            .collect::<Result<Vec<_>>>()?;
        check_unique_ids(&webhooks)?;
        let mut templates = HashMap::new();
        for (name, source) in raw.payload_templates {
            let field = format!("payload_templates.{name}");
            templates.insert(event_key(&field, &name)?, compile(&field, &source)?);
        }
        for (name, path) in raw.payload_template_files {
            let field = format!("payload_template_files.{name}");
            let event = event_key(&field, &name)?;
            if templates.contains_key(&event) {
                return Err(Error::config(
                    field,
                    "event also has an inline payload_templates entry",
                ));
            }
            let source = expand::read_config_file(&path)
                .and_then(|bytes| {
                    String::from_utf8(bytes).map_err(|_| std::io::ErrorKind::InvalidData.into())
                })
                .map_err(|e| Error::config(&field, format!("cannot read `{path}`: {e}")))?;
            identity.update(&source);
            templates.insert(event, compile(&field, &source)?);
        }
        let default_template = match raw.default_template {
            Some(source) => Some(compile("default_template", &source)?),
            None => None,
        };
        Ok(Config {
            webhooks,
            templates,
            default_template,
            include_payload_data: raw.include_payload_data,
            max_payload_size: in_range("max_payload_size", raw.max_payload_size, 0, 16 << 20)? as usize,
            shutdown_timeout: seconds("shutdown_timeout", raw.shutdown_timeout, 0.0, 600.0)?,
            dead_letter_capacity: in_range(
                "outbox.dead_letter_capacity",
                raw.outbox.dead_letter_capacity,
                0,
                10_000_000,
            )? as usize,
            outbox: raw.outbox.build()?,
            network: std::sync::Arc::new(network),
            identity: identity.finalize().into(),
        })
    }

    /// Replaces `event`'s template without the load-time JSON check, so tests can reach the
    /// render-time fallback that the check otherwise makes unreachable.
    #[cfg(test)]
    pub(crate) fn set_template_unchecked(&mut self, event: Event, template: Template) {
        self.templates.insert(event, template);
    }

    /// The template for `event`: its own, else `default_template`, else the built-in one.
    pub fn template(&self, event: Event) -> &Template {
        let configured = self.templates.get(&event).or(self.default_template.as_ref());
        configured.unwrap_or_else(|| Template::builtin())
    }

    /// The index of the webhook with `id`.
    pub fn webhook_index(&self, id: &str) -> Option<usize> {
        self.webhooks.iter().position(|w| w.id == id)
    }
}

/// JSON when the text looks like JSON and is, else YAML; the error of the format the text
/// was meant to be in.
fn parse_document(text: &str) -> Result<serde_yaml::Value> {
    let json_error = match text.trim_start().starts_with('{') {
        true => match serde_json::from_str(text) {
            Ok(doc) => return Ok(doc),
            Err(e) => Some(e),
        },
        false => None,
    };
    serde_yaml::from_str(text).map_err(|e| {
        let yaml = yaml_error(&e);
        let message = match json_error {
            Some(json) => format!("neither valid JSON ({json}) nor valid YAML ({yaml})"),
            None => format!("invalid YAML: {yaml}"),
        };
        Error::config("", message)
    })
}

/// A YAML syntax error as text. libyaml's own messages quote nothing; messages raised while
/// building the document carry a path of keys and may quote one (a duplicate key), and any
/// of those may be a secret: they are reduced to what went wrong and where.
fn yaml_error(error: &serde_yaml::Error) -> String {
    let text = error.to_string();
    let at = error
        .location()
        .map(|l| format!(" at line {} column {}", l.line(), l.column()))
        .unwrap_or_default();
    if text.contains("duplicate entry") {
        format!("duplicate key{at}")
    } else if text.contains(": ") {
        format!("invalid document structure{at}")
    } else {
        text
    }
}

/// Whether a map key is shown in errors: one that looks like a field, event or header name.
/// Anything else (a URL or a token typed where a key goes) might be a secret.
pub(crate) fn shown_key(key: &str) -> &str {
    let name_like = (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if name_like {
        key
    } else {
        "?"
    }
}

/// A deserializer's path as a field path, keys that might be secrets shown as `?`.
fn shown_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(shown_key(key));
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(shown_key(variant));
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// A deserializer message with any quoted config value taken out: serde writes
/// ``invalid type: string "Bearer s3cret", expected …`` and ``unknown variant `x`, …``.
/// What remains says what was found (its type) and what was expected.
fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let found = rest.split(['"', '`']).next().unwrap_or_default().trim();
            let found = found.trim_end_matches(',').trim();
            let expected = rest.rfind(", expected ").map_or("", |i| &rest[i + 2..]);
            return format!("{prefix}found {found}, {expected}")
                .trim_end_matches(", ")
                .into();
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let expected = rest.rfind(", expected ").map_or("", |i| &rest[i + 2..]);
        return format!("unknown value, {expected}");
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // The name may itself hold a backtick: the message's own part follows the last "`, ".
        let end = rest
            .rfind("`, expected ")
            .or_else(|| rest.rfind("`, there are no fields"));
        let (name, expected) = match end {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest.trim_end_matches('`'), ""),
        };
        return match shown_key(name) {
            "?" => format!("unknown field (its name is not shown){expected}"),
            name => format!("unknown field `{name}`{expected}"),
        };
    }
    if message.starts_with("duplicate ") {
        return "duplicate key".into();
    }
    without_duplicate_keys(message)
}

/// serde_yaml's `duplicate entry with key "<key>" at line …` without the key.
fn without_duplicate_keys(message: &str) -> String {
    const MARK: &str = "duplicate entry with key ";
    let Some(start) = message.find(MARK) else {
        return message.to_owned();
    };
    let rest = &message[start + MARK.len()..];
    let end = rest.find(" at line ").unwrap_or(rest.len());
    format!("{}duplicate key{}", &message[..start], &rest[end..])
}

/// Compiles a template and proves at load time that it renders JSON. Every `{{ }}` renders
/// a value as JSON for its place, so one sample rendering proves every rendering — provided
/// no `{{ }}` stands where a value cannot (`Template::compile` refuses those).
fn compile(field: &str, source: &str) -> Result<Template> {
    let template = Template::compile(source).map_err(|e| Error::config(field, e))?;
    let sample = json!({"event": "violation", "plugin_name": "p", "timestamp": "t",
        "user": "u", "violation": {"reason": "r", "details": {}}, "metadata": {"tool_name": "t"}});
    let rendered = template
        .render(|name| sample.get(name))
        .map_err(|e| Error::config(field, e))?;
    serde_json::from_str::<serde::de::IgnoredAny>(&rendered)
        .map_err(|e| Error::config(field, format!("template does not render valid JSON: {e}")))?;
    Ok(template)
}

fn event_key(field: &str, name: &str) -> Result<Event> {
    Event::from_name(name).map_err(|_| {
        let known: Vec<&str> = Event::ALL.iter().map(|e| e.name()).collect();
        Error::config(
            field,
            format!("unknown event `{name}` (known: {})", known.join(", ")),
        )
    })
}

fn in_range(field: &str, value: u64, min: u64, max: u64) -> Result<u64> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Error::config(field, format!("is out of range {min}..={max}")))
    }
}

fn seconds(field: &str, value: f64, min: f64, max: f64) -> Result<Duration> {
    if (min..=max).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(Error::config(
            field,
            format!("is out of range {min}..={max} seconds"),
        ))
    }
}

/// Ids name webhooks in stats, dead letters and outboxes, so they must be unique; two
/// webhooks with the same URL derive the same id and need explicit ones.
fn check_unique_ids(webhooks: &[Webhook]) -> Result<()> {
    let mut seen = HashSet::new();
    for (i, w) in webhooks.iter().enumerate() {
        if !seen.insert(w.id.as_str()) {
            return Err(Error::config(
                format!("webhooks[{i}].id"),
                format!("`{}` is already the id of an earlier webhook (webhooks with the same URL need explicit ids)", w.id),
            ));
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_.-]{1,64}`
fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The first 12 hex digits of SHA-256 of the full URL: stable, and reveals nothing of it.
fn derived_id(url: &str) -> String {
    Sha256::digest(url.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An absolute http(s) URL with a host, and without userinfo or a fragment. The text is
/// checked as well as the parse: `http:///x` would otherwise parse with host `x`.
fn check_url(field: &str, text: &str) -> Result<Url> {
    let bad = |why: &str| Error::config(field, why.to_owned());
    let url = Url::parse(text).map_err(|e| bad(&format!("not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be an http:// or https:// URL"));
    }
    let authority = text.split_once("://").map_or("", |(_, rest)| rest);
    if authority.starts_with(['/', '?', '#']) || authority.is_empty() || url.host_str().is_none() {
        return Err(bad("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "must not carry user:password@ (use authentication or headers)",
        ));
    }
    if url.fragment().is_some() {
        return Err(bad("must not have a #fragment"));
    }
    Ok(url)
}

impl RawNetwork {
    fn build(self) -> Result<NetworkPolicy> {
        let cidrs = |name: &str, list: Vec<String>| {
            list.iter()
                .enumerate()
                .map(|(i, text)| {
                    cidr(text).ok_or_else(|| {
                        Error::config(
                            format!("network.{name}[{i}]"),
                            "is not a CIDR (e.g. 10.0.0.0/8, 127.0.0.1/32, fc00::/7)",
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()
        };
        Ok(NetworkPolicy {
            deny_private: self.deny_private,
            allow: cidrs("allow", self.allow)?,
            deny: cidrs("deny", self.deny)?,
            require_https: self.require_https,
        })
    }
}

/// A CIDR, or a single address (as /32 or /128).
fn cidr(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

impl RawTls {
    /// Reads the PEM files; a missing or invalid file names its field.
    fn build(self, at: &str) -> Result<TlsSettings> {
        let field = |name: &str| format!("{at}.{name}");
        let read = |name: &str, path: &str| {
            expand::read_config_file(path)
                .map_err(|e| Error::config(field(name), format!("cannot read `{path}`: {e}")))
        };
        let ca = match &self.ca_file {
            Some(path) => reqwest::Certificate::from_pem_bundle(&read("ca_file", path)?)
                .ok()
                .filter(|certificates| !certificates.is_empty())
                .ok_or_else(|| {
                    Error::config(field("ca_file"), format!("`{path}` holds no PEM certificate"))
                })?,
            None => Vec::new(),
        };
        let identity = match (&self.client_cert_file, &self.client_key_file) {
            (Some(cert), Some(key)) => {
                let pem = [
                    read("client_cert_file", cert)?,
                    b"\n".to_vec(),
                    read("client_key_file", key)?,
                ]
                .concat();
                let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
                    Error::config(
                        field("client_cert_file"),
                        "with client_key_file is not a PEM certificate and private key",
                    )
                })?;
                // rustls checks that the key fits the certificate when a client is built.
                reqwest::Client::builder()
                    .identity(identity.clone())
                    .build()
                    .map_err(|_| {
                        Error::config(field("client_key_file"), "does not match client_cert_file")
                    })?;
                Some(identity)
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::config(
                    field("client_key_file"),
                    "is required with client_cert_file",
                ))
            }
            (None, Some(_)) => {
                return Err(Error::config(
                    field("client_cert_file"),
                    "is required with client_key_file",
                ))
            }
        };
        Ok(TlsSettings { ca, identity })
    }
}

/// `proxy`: `none`, or an http(s) proxy URL.
fn proxy_of(field: &str, proxy: Option<String>) -> Result<ProxySetting> {
    let Some(text) = proxy else {
        return Ok(ProxySetting::Environment);
    };
    if text.trim() == "none" {
        return Ok(ProxySetting::None);
    }
    let url =
        Url::parse(text.trim()).map_err(|e| Error::config(field, format!("not a valid proxy URL ({e})")))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(ProxySetting::Url(url)),
        _ => Err(Error::config(
            field,
            "must be `none` or an http:// or https:// proxy URL",
        )),
    }
}

impl RawWebhook {
    fn build(self, at: &str, default_capacity: u64, network: &NetworkPolicy) -> Result<Webhook> {
        let field = |name: &str| format!("{at}.{name}");
        let url = check_url(&field("url"), &self.url)?;
        if network.require_https && url.scheme() != "https" {
            return Err(Error::config(
                field("url"),
                "must be https:// (network.require_https)",
            ));
        }
        let id = match self.id {
            Some(id) if valid_id(&id) => id,
            Some(_) => return Err(Error::config(field("id"), "must be 1 to 64 of A-Z a-z 0-9 _ . -")),
            None => derived_id(url.as_str()),
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let at = field(&format!("headers.{name}"));
            headers.insert(header_name(&at, name)?, header_value(&at, value, false)?);
        }
        let signer = self
            .authentication
            .apply(&field("authentication"), &mut headers)?;
        let retry = match (self.retry_schedule, self.retry_attempts, self.retry_delay) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(Error::config(
                    field("retry_schedule"),
                    "replaces retry_attempts and retry_delay: give one form, not both",
                ))
            }
            (Some(schedule), None, None) => schedule_of(&field("retry_schedule"), &schedule)?,
            (None, attempts, delay) => {
                let attempts = attempts.unwrap_or_else(defaults::retry_attempts);
                let delay = delay.unwrap_or_else(defaults::retry_delay);
                RetryPolicy::Exponential {
                    attempts: in_range(&field("retry_attempts"), attempts, 0, 10)? as u32,
                    base: Duration::from_millis(in_range(&field("retry_delay"), delay, 100, 60_000)?),
                }
            }
        };
        let max_rate = match self.max_rate {
            Some(rate) if !(rate > 0.0 && rate <= 1e6) => {
                return Err(Error::config(
                    field("max_rate"),
                    "must be more than 0 (requests per second; fractions allowed)",
                ))
            }
            rate => rate,
        };
        let breaker = match self.circuit_breaker {
            RawBreaker::Switch(false) => None,
            RawBreaker::Switch(true) => Some(BreakerSettings {
                failures: defaults::breaker_failures() as u32,
                cooldown: Duration::from_secs_f64(defaults::breaker_cooldown()),
            }),
            RawBreaker::Settings(s) => Some(BreakerSettings {
                failures: in_range(&field("circuit_breaker.failures"), s.failures, 1, 1000)? as u32,
                cooldown: seconds(&field("circuit_breaker.cooldown"), s.cooldown, 0.01, 86_400.0)?,
            }),
        };
        let capacity = self.queue_capacity.unwrap_or(default_capacity);
        Ok(Webhook {
            id,
            redacted_url: redact(&url),
            url,
            events: self.events,
            headers,
            signer,
            retry,
            timeout: Duration::from_secs(in_range(&field("timeout"), self.timeout, 1, 120)?),
            enabled: self.enabled,
            max_concurrency: in_range(&field("max_concurrency"), self.max_concurrency, 1, 1024)? as usize,
            queue_capacity: in_range(&field("queue_capacity"), capacity, 1, 10_000_000)? as usize,
            max_rate,
            breaker,
            tls: self.tls.map(|t| t.build(&field("tls"))).transpose()?,
            proxy: proxy_of(&field("proxy"), self.proxy)?,
        })
    }
}

fn schedule_of(field: &str, schedule: &[RawDuration]) -> Result<RetryPolicy> {
    if schedule.len() > MAX_SCHEDULE_LEN {
        return Err(Error::config(
            field,
            format!("lists {} delays; at most {MAX_SCHEDULE_LEN}", schedule.len()),
        ));
    }
    let delays = schedule
        .iter()
        .enumerate()
        .map(|(i, d)| d.parse().map_err(|m| Error::config(format!("{field}[{i}]"), m)))
        .collect::<Result<Vec<_>>>()?;
    Ok(RetryPolicy::Schedule(delays))
}

impl RawAuth {
    /// Adds static credential headers and returns the signer for the auth type.
    fn apply(self, at: &str, headers: &mut HeaderMap) -> Result<Signer> {
        let field = |name: &str| format!("{at}.{name}");
        let required = |value: Option<String>, name: &str| {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Error::config(field(name), "is required for this authentication type"))
        };
        match self.kind {
            AuthType::None => Ok(Signer::None),
            AuthType::Bearer => {
                let token = required(self.token, "token")?;
                let value = header_value(&field("token"), &format!("Bearer {token}"), true)?;
                headers.insert(AUTHORIZATION, value);
                Ok(Signer::None)
            }
            AuthType::ApiKey => {
                let key = required(self.api_key, "api_key")?;
                let name = self.api_key_header.unwrap_or_else(|| "X-API-Key".into());
                let name = header_name(&field("api_key_header"), &name)?;
                headers.insert(name, header_value(&field("api_key"), &key, true)?);
                Ok(Signer::None)
            }
            AuthType::Hmac => {
                let key = required(self.hmac_secret, "hmac_secret")?;
                let algorithm = self.hmac_algorithm.unwrap_or_else(|| "sha256".into());
                let algorithm = HmacAlgorithm::from_name(&algorithm).ok_or_else(|| {
                    Error::config(
                        field("hmac_algorithm"),
                        "unknown algorithm (sha1, sha224, sha256, sha384, sha512)",
                    )
                })?;
                let header = self.hmac_header.unwrap_or_else(|| "X-Signature".into());
                Ok(Signer::Hmac {
                    algorithm,
                    key: Secret(key.into_bytes()),
                    header: header_name(&field("hmac_header"), &header)?,
                })
            }
            AuthType::StandardWebhooks => {
                let (name, secrets) = match (self.secrets, self.hmac_secret) {
                    (Some(list), _) if !list.is_empty() => ("secrets", list),
                    (_, Some(one)) => ("hmac_secret", vec![one]),
                    _ => {
                        return Err(Error::config(
                            field("secrets"),
                            "is required for standard_webhooks",
                        ))
                    }
                };
                let keys = secrets
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        decode_standard_secret(s).ok_or_else(|| {
                            let at = if name == "secrets" {
                                format!("secrets[{i}]")
                            } else {
                                name.into()
                            };
                            Error::config(field(&at), "must be `whsec_` followed by a base64 key")
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Signer::StandardWebhooks { keys })
            }
        }
    }
}

/// A header name; the name is a config key, not a value, so the error may quote it.
fn header_name(field: &str, name: &str) -> Result<HeaderName> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| Error::config(field, "is not a valid header name"))
}

/// A header value; CR/LF (header injection) and other control bytes are refused. The value
/// itself is never quoted in the error, since it may be a credential.
fn header_value(field: &str, value: &str, sensitive: bool) -> Result<HeaderValue> {
    if value.contains(['\r', '\n']) {
        return Err(Error::config(field, "contains CR/LF, which would inject headers"));
    }
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| Error::config(field, "contains bytes not allowed in an HTTP header"))?;
    value.set_sensitive(sensitive);
    Ok(value)
}

/// `scheme://host[:port]/…`: URL paths and queries are credentials for Slack and others.
pub fn redact(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}/…", url.scheme()),
        None => format!("{}://{host}/…", url.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (String, String) {
        match Config::load(text).unwrap_err() {
            Error::Config { field, message } => (field, message),
            other => panic!("not a config error: {other}"),
        }
    }

    #[test]
    fn defaults_match_the_original() {
        let c = Config::load("webhooks:\n  - url: https://h.example/x\n").unwrap();
        let w = &c.webhooks[0];
        assert_eq!(w.events, vec![Event::Violation]);
        let exponential = RetryPolicy::Exponential {
            attempts: 3,
            base: Duration::from_millis(1000),
        };
        assert_eq!((&w.retry, w.timeout), (&exponential, Duration::from_secs(10)));
        assert_eq!(
            (w.enabled, w.max_concurrency, w.queue_capacity),
            (true, 32, 10_000)
        );
        assert_eq!((w.max_rate, w.id.len()), (None, 12));
        let breaker = BreakerSettings {
            failures: 5,
            cooldown: Duration::from_secs(60),
        };
        assert_eq!(w.breaker, Some(breaker));
        assert_eq!(
            (c.max_payload_size, c.include_payload_data, c.dead_letter_capacity),
            (1000, false, 10_000)
        );
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(w.redacted_url, "https://h.example/…");
    }

    #[test]
    fn empty_config_has_no_webhooks() {
        assert!(Config::load("").unwrap().webhooks.is_empty());
        assert!(Config::load("{}").unwrap().webhooks.is_empty());
    }

    #[test]
    fn each_bad_input_names_its_field() {
        let cases = [
            ("webhooks: [{url: 'https://a/', bogus: 1}]", "webhooks[0].bogus", "unknown field `bogus`"),
            ("webhooks: [{url: 'https://a/', retry_attempts: 11}]", "webhooks[0].retry_attempts", "out of range"),
            ("webhooks: [{url: 'https://a/', retry_delay: 99}]", "webhooks[0].retry_delay", "out of range"),
            ("webhooks: [{url: 'https://a/', timeout: 0}]", "webhooks[0].timeout", "out of range"),
            ("webhooks: [{url: 'https://a/', events: [nope]}]", "webhooks[0].events[0]", "unknown value, expected one of `violation`"),
            ("webhooks: [{url: 'https://a/', authentication: {type: oauth}}]", "webhooks[0].authentication.type", "unknown value"),
            ("webhooks: [{url: 'https://a/', authentication: {type: bearer}}]", "webhooks[0].authentication.token", "required"),
            ("webhooks: [{url: 'https://a/', authentication: {type: api_key}}]", "webhooks[0].authentication.api_key", "required"),
            ("webhooks: [{url: 'https://a/', authentication: {type: hmac}}]", "webhooks[0].authentication.hmac_secret", "required"),
            ("webhooks: [{url: 'https://a/', authentication: {type: hmac, hmac_secret: s, hmac_algorithm: md5}}]", "webhooks[0].authentication.hmac_algorithm", "unknown algorithm"),
            ("webhooks: [{url: 'https://a/', authentication: {type: standard_webhooks, secrets: [whsec_QUJD, 'whsec_!!']}}]", "webhooks[0].authentication.secrets[1]", "whsec_"),
            ("webhooks: [{url: 'ftp://a/'}]", "webhooks[0].url", "http"),
            ("webhooks: [{url: 'https://a/', retry_attempts: 2, retry_schedule: [1s]}]", "webhooks[0].retry_schedule", "not both"),
            ("webhooks: [{url: 'https://a/', retry_schedule: [1s, 2s, 3s, 4s, 5s, 6s, 7s, 8s, 9s, 10s, 11s, 12s, 13s, 14s, 15s, 16s, 17s, 18s, 19s, 20s, 21s]}]", "webhooks[0].retry_schedule", "at most 20"),
            ("webhooks: [{url: 'https://a/', retry_schedule: [1s, soon]}]", "webhooks[0].retry_schedule[1]", "not a duration"),
            ("webhooks: [{url: 'https://a/', retry_schedule: [25h]}]", "webhooks[0].retry_schedule[0]", "24h"),
            ("webhooks: [{url: 'https://a/', id: x}, {url: 'https://b/', id: x}]", "webhooks[1].id", "already"),
            ("webhooks: [{url: 'https://a/'}, {url: 'https://a/'}]", "webhooks[1].id", "explicit ids"),
            ("webhooks: [{url: 'https://a/', id: 'a b'}]", "webhooks[0].id", "A-Z"),
            ("webhooks: [{url: 'https://a/', max_rate: 0}]", "webhooks[0].max_rate", "more than 0"),
            ("webhooks: [{url: 'https://a/', queue_capacity: 0}]", "webhooks[0].queue_capacity", "out of range"),
            ("webhooks: [{url: 'https://a/', circuit_breaker: {failures: 0}}]", "webhooks[0].circuit_breaker.failures", "out of range"),
            ("outbox: {type: floppy}", "outbox.type", "expected one of `memory`, `disk`, `redis`"),
            ("outbox: {type: disk, url: 'redis://x'}", "outbox.url", "only for `type: redis`"),
            ("outbox: {type: redis, url: 'http://x'}", "outbox.url", "must start with"),
            ("outbox: {type: redis}", "outbox.url", "required for `type: redis` (or set REDIS_URL)"),
            ("outbox: {type: redis, url: 'redis://x', key: ''}", "outbox.key", "non-empty"),
            ("outbox: {type: redis, url: 'redis://x', claim_after: 0}", "outbox.claim_after", ""),
            ("outbox: {type: disk}", "outbox.path", "required"),
            ("outbox: {type: memory, path: /tmp/x}", "outbox.path", "only for"),
            ("outbox: {dead_letter_capacity: -1}", "outbox.dead_letter_capacity", "invalid value"),
            ("webhooks: [{url: 'not a url'}]", "webhooks[0].url", "not a valid URL"),
            ("webhooks: [{url: 'https://a/', headers: {X-A: \"v\\r\\nX-B: 1\"}}]", "webhooks[0].headers.X-A", "CR/LF"),
            ("payload_templates: {violation: '{\"a\": {{user}'}", "payload_templates.violation", "line 1"),
            ("payload_templates: {violation: '{\"a\": \"{{user}}\"} x'}", "payload_templates.violation", "valid JSON"),
            ("payload_templates: {nope: '{}'}", "payload_templates.nope", "unknown event `nope`"),
            ("queue_capacity: 0", "queue_capacity", "out of range"),
            ("webhooks: [{url: 'https://a/${env.WEBHOOK_TEST_SURELY_UNSET}'}]", "webhooks[0].url", "WEBHOOK_TEST_SURELY_UNSET"),
            ("payload_template_files: {violation: /nonexistent/t.json}", "payload_template_files.violation", "cannot read"),
            ("payload_template_files: {violation: /dev/zero}", "payload_template_files.violation", "not a regular file"),
            ("webhooks: [{url: 'https://a/', authentication: {type: bearer, token: '${file:/dev/zero}'}}]", "webhooks[0].authentication.token", "not a regular file"),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|(text, field, message)| {
                let (f, m) = err(text);
                (f != *field || !m.contains(message)).then(|| format!("{text}\n  got `{f}`: {m}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// No error quotes a value from the config, whatever was typed where: numbers, booleans,
    /// strings for structs, lists for strings, secrets in the wrong field, `${env}` values.
    #[test]
    fn no_error_quotes_a_config_value() {
        std::env::set_var("WEBHOOK_CFG_SECRET_ENV", "ENVSECRET77");
        let cases = [
            "webhooks: [{url: 'https://a/', authentication: {type: api_key, api_key: [SECRETLIST1]}}]",
            "webhooks: [{url: 'https://a/', authentication: 'Bearer SECRET_TOKEN_123'}]",
            "webhooks: [{url: 'https://a/', authentication: {type: standard_webhooks, secrets: whsec_SECRETWHSEC}}]",
            "webhooks: 'https://hooks.example/SECRETPATH?token=SECRETQ'",
            "webhooks: ['https://hooks.example/SECRETPATH?token=SECRETQ']",
            "webhooks: [{url: 987654321012}]",
            "webhooks: [{url: 'https://a/', retry_attempts: 987654321012}]",
            "webhooks: [{url: 'https://a/', retry_attempts: SECRETWORD}]",
            "webhooks: [{url: 'https://a/', enabled: SECRETBOOL}]",
            "webhooks: [{url: 'https://a/', headers: SECRETHEADERS}]",
            "webhooks: [{url: 'https://a/', headers: {X-K: [SECRETH]}}]",
            "webhooks: [{url: 'https://a/', events: SECRETEVENTS}]",
            "webhooks: [{url: 'https://a/', authentication: {type: SECRETTYPE}}]",
            "webhooks: [{url: 'https://a/', authentication: {type: hmac, hmac_secret: s, hmac_algorithm: SECRETALG}}]",
            "webhooks: [{url: 'https://a/', timeout: '${env.WEBHOOK_CFG_SECRET_ENV}'}]",
            "webhooks: [{url: 'https://a/', max_rate: -987654321012}]",
            "webhooks: [{url: 'https://a/', circuit_breaker: SECRETCB}]",
            "queue_capacity: 987654321012",
            "shutdown_timeout: 987654321012",
            "{\"webhooks\": [{\"url\": \"https://a/SECRETJSON\"}], SECRETTRAIL",
        ];
        let secrets = ["SECRET", "987654321012", "ENVSECRET77", "hooks.example"];
        for text in cases {
            let e = Config::load(text).unwrap_err().to_string();
            assert!(!secrets.iter().any(|s| e.contains(s)), "{text}\n  leaks: {e}");
        }
        let (field, message) =
            err("webhooks: [{url: 'https://a/', authentication: 'Bearer SECRET_TOKEN_123'}]");
        assert_eq!(field, "webhooks[0].authentication");
        assert!(
            message.contains("found string") && message.contains("expected struct"),
            "{message}"
        );
    }

    /// Found by fuzzing: a URL typed where a key goes was echoed as an unknown field and in
    /// the field path. Keys that do not look like names are not shown.
    #[test]
    fn keys_that_might_be_secrets_are_not_shown() {
        let text = r#"{"webhooks": [{"us://h.example/FUZZ/SECRET", "authentication": {"type": "bearer", "tokenr", "token": 12345}}],ue q"ue_capacity": 5}"#;
        let e = Config::load(text).unwrap_err().to_string();
        assert!(!e.contains("SECRET"), "{e}");
        let (field, message) = err("webhooks: [{url: 'https://a/', 'https://hooks.example/T0/SECRET': 1}]");
        assert!(
            !field.contains("SECRET") && !message.contains("SECRET"),
            "{field}: {message}"
        );
        assert_eq!(field, "webhooks[0].?");
        // Also found by fuzzing: an `${env.` reference, a duplicate key (also inside a key
        // path of YAML's own error) and a template path whose text was a secret.
        for text in [
            "{\"webh/FUZZ/SECRETks\": [{authentication: 1, authentication: 2}], 1: 2}",
            "{\"x/FUZZ/SECRET\", \"x/FUZZ/SECRET\", \"a\": 1}",
            "webhooks: [{url: '${env.X: FUZZ/SECRET}'}]",
            "{webhooks: [{authentication: 1, 'authentication': 2, \"x/FUZZ/SECRET\": 3, \"x/FUZZ/SECRET\": 4}]}",
            "payload_templates: {violation: '{\"a\": {{violation.x/FUZZ/SECRET}}}'}",
        ] {
            let e = Config::load(text).unwrap_err().to_string();
            assert!(!e.contains("SECRET"), "{text}: {e}");
        }
        let (field, message) = err("webhooks: [{url: 'https://a/', bogus_field: 1}]");
        assert_eq!(
            (field.as_str(), message.contains("unknown field `bogus_field`")),
            ("webhooks[0].bogus_field", true)
        );
    }

    #[test]
    fn numeric_credentials_are_taken_as_text() {
        let c = Config::load(
            "webhooks: [{url: 'https://a/', authentication: {type: api_key, api_key: 987654321012}}]",
        )
        .unwrap();
        assert_eq!(c.webhooks[0].headers["x-api-key"], "987654321012");
    }

    #[test]
    fn yaml_flow_mappings_load_and_json_errors_stay_readable() {
        let c = Config::load("{webhooks: [{url: 'https://a/'}]}").unwrap();
        assert_eq!(c.webhooks.len(), 1);
        let c = Config::load(r#"{"webhooks": [{"url": "https://a/"}], "queue_capacity": 5}"#).unwrap();
        assert_eq!(c.webhooks[0].queue_capacity, 5);
        let (_, m) = err(r#"{"webhooks": [{"url": "https://a/"}]"#);
        assert!(m.contains("neither valid JSON") && m.contains("line 1"), "{m}");
    }

    #[test]
    fn urls_need_a_host_and_no_userinfo_or_fragment() {
        for (url, why) in [
            ("http:///SECRET_PATH?token=SECRETQ", "has no host"),
            ("https://?SECRETQ", "host"),
            ("https://user:SECRETPW@h.example/x", "user:password"),
            ("https://h.example/x#SECRETFRAG", "fragment"),
        ] {
            let (field, m) = err(&format!("webhooks: [{{url: '{url}'}}]"));
            assert_eq!(field, "webhooks[0].url");
            assert!(m.contains(why) && !m.contains("SECRET"), "{url}: {m}");
        }
    }

    #[test]
    fn v2_fields_load() {
        let c = Config::load("webhooks: [{url: 'https://a/', id: slack-ops, queue_capacity: 7, retry_schedule: [500ms, 5s, 5m, 2h, 250], max_rate: 0.5, circuit_breaker: {failures: 2, cooldown: 1.5}}, {url: 'https://b/', circuit_breaker: false}]").unwrap();
        let w = &c.webhooks[0];
        assert_eq!(
            (w.id.as_str(), w.queue_capacity, w.max_rate),
            ("slack-ops", 7, Some(0.5))
        );
        let ms = |n| Duration::from_millis(n);
        let schedule = RetryPolicy::Schedule(vec![ms(500), ms(5000), ms(300_000), ms(7_200_000), ms(250)]);
        assert_eq!(w.retry, schedule);
        assert_eq!(
            w.breaker,
            Some(BreakerSettings {
                failures: 2,
                cooldown: ms(1500)
            })
        );
        assert_eq!(c.webhooks[1].breaker, None);
        assert_eq!(c.webhooks[1].id, derived_id("https://b/"));
        let again = Config::load("webhooks: [{url: 'https://b/', circuit_breaker: false}]").unwrap();
        assert_ne!(again.identity, c.identity);
        assert_eq!(
            Config::load("webhooks: [{url: 'https://b/', circuit_breaker: false}]")
                .unwrap()
                .identity,
            again.identity
        );
    }

    #[test]
    fn credentials_never_appear_in_errors_or_debug() {
        let (_, m) =
            err("webhooks: [{url: 'https://a/', authentication: {type: bearer, token: \"sec\\nret\"}}]");
        assert!(!m.contains("sec"), "{m}");
        let c = Config::load("webhooks: [{url: 'https://a/T0/B1?k=topsecret', authentication: {type: hmac, hmac_secret: topsecret}}, {url: 'https://b/', authentication: {type: bearer, token: topsecret}}]").unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("topsecret"), "{debug}");
    }

    /// The original plugin's two documented configs load unchanged (URLs aside), and each
    /// seed template renders JSON even with hostile values.
    #[test]
    fn the_seed_configs_load_and_their_templates_render_json() {
        let basic = "webhooks:\n  - url: \"https://hooks.slack.com/services/YOUR/SLACK/WEBHOOK\"\n    events: [\"violation\", \"rate_limit_exceeded\"]\n    authentication:\n      type: \"none\"\n    retry_attempts: 3\n    retry_delay: 1000\n    timeout: 10\n    enabled: true\n";
        let c = Config::load(basic).unwrap();
        assert_eq!(
            c.webhooks[0].events,
            vec![Event::Violation, Event::RateLimitExceeded]
        );
        for (var, value) in [
            ("DEMO_RECEIVER", "https://h"),
            ("SLACK_WEBHOOK_TOKEN", "t"),
            ("WEBHOOK_HMAC_SECRET", "s"),
            ("MONITORING_API_KEY", "k"),
        ] {
            std::env::set_var(var, value);
        }
        let advanced = Config::load(include_str!("../../examples/advanced.yaml")).unwrap();
        assert_eq!(advanced.webhooks.len(), 3);
        let vars = json!({"user": "a\"b\\c\n}", "violation": {"reason": "r\"", "description": "{{x}}", "details": {"q": "\""}}});
        for event in [Event::Violation, Event::RateLimitExceeded] {
            let body = advanced.template(event).render(|name| vars.get(name)).unwrap();
            let parsed: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert!(parsed.to_string().contains("a\\\"b"), "{parsed}");
        }
    }

    #[test]
    fn env_variables_expand_everywhere() {
        std::env::set_var("WEBHOOK_CFG_TEST_TOKEN", "t0k");
        let c = Config::load("webhooks: [{url: 'https://a/${env.WEBHOOK_CFG_TEST_TOKEN}/x', authentication: {type: bearer, token: '${env.WEBHOOK_CFG_TEST_TOKEN}'}}]").unwrap();
        assert_eq!(c.webhooks[0].url.path(), "/t0k/x");
        assert_eq!(c.webhooks[0].headers[AUTHORIZATION], "Bearer t0k");
    }
}
