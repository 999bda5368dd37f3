//! The plugin configuration: the original plugin's schema, defaults and bounds, plus the
//! new optional fields of DESIGN.md. [`Config::load`] does every check up front, so a
//! notifier never starts half-configured, and every error names the field path.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::events::Event;
use crate::signing::{decode_standard_secret, HmacAlgorithm, Secret, Signer};
use crate::template::Template;

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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    #[serde(default = "defaults::events")]
    events: Vec<Event>,
    #[serde(default)]
    authentication: RawAuth,
    #[serde(default = "defaults::retry_attempts")]
    retry_attempts: u64,
    #[serde(default = "defaults::retry_delay")]
    retry_delay: u64,
    #[serde(default = "defaults::timeout")]
    timeout: u64,
    #[serde(default = "defaults::enabled")]
    enabled: bool,
    #[serde(default = "defaults::max_concurrency")]
    max_concurrency: u64,
    #[serde(default)]
    headers: BTreeMap<String, String>,
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
    token: Option<String>,
    api_key: Option<String>,
    api_key_header: Option<String>,
    hmac_secret: Option<String>,
    hmac_algorithm: Option<String>,
    hmac_header: Option<String>,
    secrets: Option<Vec<String>>,
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
    /// Largest payload JSON (bytes) that `{{payload}}` carries.
    pub max_payload_size: usize,
    /// Events queued or in flight at most; beyond it events are dropped and counted.
    pub queue_capacity: usize,
    /// How long closing waits for pending deliveries.
    pub shutdown_timeout: Duration,
}

/// One webhook target. Its `Debug` shows only the redacted URL.
pub struct Webhook {
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
    /// Retries after the first attempt.
    pub retry_attempts: u32,
    /// Base delay; retry n waits `retry_delay * 2^n`.
    pub retry_delay: Duration,
    /// Bound on each attempt.
    pub timeout: Duration,
    /// A disabled webhook receives nothing.
    pub enabled: bool,
    /// Requests in flight at most for this webhook.
    pub max_concurrency: usize,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
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
    /// `${env.NAME}` from the environment.
    pub fn load(text: &str) -> Result<Self> {
        let mut doc: serde_yaml::Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| Error::config("", format!("invalid JSON: {e}")))?
        } else {
            serde_yaml::from_str(text).map_err(|e| Error::config("", format!("invalid YAML: {e}")))?
        };
        if doc.is_null() {
            doc = serde_yaml::Value::Mapping(Default::default());
        }
        expand_env(&mut doc, &mut String::new())?;
        Self::from_value(doc)
    }

    /// Validates an already-parsed document (after `${env.…}` expansion).
    fn from_value(doc: serde_yaml::Value) -> Result<Self> {
        let raw: RawConfig = serde_path_to_error::deserialize(doc).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            Error::config(field, e.into_inner().to_string())
        })?;
        let webhooks = raw
            .webhooks
            .into_iter()
            .enumerate()
            .map(|(i, w)| w.build(&format!("webhooks[{i}]")))
            .collect::<Result<Vec<_>>>()?;
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
            let source = std::fs::read_to_string(&path)
                .map_err(|e| Error::config(&field, format!("cannot read `{path}`: {e}")))?;
            templates.insert(event, compile(&field, &source)?);
        }
        let default_template = match raw.default_template {
            Some(source) => Some(compile("default_template", &source)?),
            None => None,
        };
        let secs = raw.shutdown_timeout;
        if !(0.0..=600.0).contains(&secs) {
            return Err(Error::config(
                "shutdown_timeout",
                format!("{secs} is out of range 0..=600 seconds"),
            ));
        }
        Ok(Config {
            webhooks,
            templates,
            default_template,
            include_payload_data: raw.include_payload_data,
            max_payload_size: in_range("max_payload_size", raw.max_payload_size, 0, 16 << 20)? as usize,
            queue_capacity: in_range("queue_capacity", raw.queue_capacity, 1, 10_000_000)? as usize,
            shutdown_timeout: Duration::from_secs_f64(secs),
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
}

/// Compiles a template and proves at load time that it renders JSON. A `{{ }}` value always
/// renders as valid JSON, so a template that renders JSON with sample values always will.
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
        Err(Error::config(
            field,
            format!("{value} is out of range {min}..={max}"),
        ))
    }
}

impl RawWebhook {
    fn build(self, at: &str) -> Result<Webhook> {
        let field = |name: &str| format!("{at}.{name}");
        let url = Url::parse(&self.url)
            .map_err(|e| Error::config(field("url"), format!("not a valid URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::config(
                field("url"),
                "must be an http:// or https:// URL with a host",
            ));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let at = field(&format!("headers.{name}"));
            headers.insert(header_name(&at, name)?, header_value(&at, value, false)?);
        }
        let signer = self
            .authentication
            .apply(&field("authentication"), &mut headers)?;
        Ok(Webhook {
            redacted_url: redact(&url),
            url,
            events: self.events,
            headers,
            signer,
            retry_attempts: in_range(&field("retry_attempts"), self.retry_attempts, 0, 10)? as u32,
            retry_delay: Duration::from_millis(in_range(
                &field("retry_delay"),
                self.retry_delay,
                100,
                60_000,
            )?),
            timeout: Duration::from_secs(in_range(&field("timeout"), self.timeout, 1, 120)?),
            enabled: self.enabled,
            max_concurrency: in_range(&field("max_concurrency"), self.max_concurrency, 1, 1024)? as usize,
        })
    }
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
                        format!("unknown algorithm `{algorithm}` (sha1, sha224, sha256, sha384, sha512)"),
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

fn header_name(field: &str, name: &str) -> Result<HeaderName> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| Error::config(field, format!("`{name}` is not a valid header name")))
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

/// Replaces `${env.NAME}` in every string of the document; `path` tracks the field.
fn expand_env(value: &mut serde_yaml::Value, path: &mut String) -> Result<()> {
    use serde_yaml::Value as Y;
    match value {
        Y::String(s) if s.contains("${env.") => *s = expand_string(s, path)?,
        Y::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand_env(item, path)?;
                path.truncate(len);
            }
        }
        Y::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key.as_str().unwrap_or("?"));
                expand_env(item, path)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_string(s: &str, field: &str) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${env.") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 6..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::config(field, "`${env.` without a closing `}`"))?;
        let name = &after[..end];
        let value = std::env::var(name)
            .map_err(|_| Error::config(field, format!("environment variable `{name}` is not set")))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
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
        assert_eq!(
            (w.retry_attempts, w.retry_delay, w.timeout),
            (3, Duration::from_millis(1000), Duration::from_secs(10))
        );
        assert_eq!((w.enabled, w.max_concurrency), (true, 32));
        assert_eq!(
            (c.max_payload_size, c.queue_capacity, c.include_payload_data),
            (1000, 10_000, false)
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
            ("webhooks: [{url: 'https://a/', events: [nope]}]", "webhooks[0].events[0]", "unknown variant `nope`"),
            ("webhooks: [{url: 'https://a/', authentication: {type: oauth}}]", "webhooks[0].authentication.type", "unknown variant"),
            ("webhooks: [{url: 'https://a/', authentication: {type: bearer}}]", "webhooks[0].authentication.token", "required"),
            ("webhooks: [{url: 'https://a/', authentication: {type: api_key}}]", "webhooks[0].authentication.api_key", "required"),
            ("webhooks: [{url: 'https://a/', authentication: {type: hmac}}]", "webhooks[0].authentication.hmac_secret", "required"),
            ("webhooks: [{url: 'https://a/', authentication: {type: hmac, hmac_secret: s, hmac_algorithm: md5}}]", "webhooks[0].authentication.hmac_algorithm", "unknown algorithm"),
            ("webhooks: [{url: 'https://a/', authentication: {type: standard_webhooks, secrets: [whsec_QUJD, 'whsec_!!']}}]", "webhooks[0].authentication.secrets[1]", "whsec_"),
            ("webhooks: [{url: 'ftp://a/'}]", "webhooks[0].url", "http"),
            ("webhooks: [{url: 'not a url'}]", "webhooks[0].url", "not a valid URL"),
            ("webhooks: [{url: 'https://a/', headers: {X-A: \"v\\r\\nX-B: 1\"}}]", "webhooks[0].headers.X-A", "CR/LF"),
            ("payload_templates: {violation: '{\"a\": {{user}'}", "payload_templates.violation", "line 1"),
            ("payload_templates: {violation: '{\"a\": 1} {{user}}'}", "payload_templates.violation", "valid JSON"),
            ("payload_templates: {nope: '{}'}", "payload_templates.nope", "unknown event `nope`"),
            ("queue_capacity: 0", "queue_capacity", "out of range"),
            ("webhooks: [{url: 'https://a/${env.WEBHOOK_TEST_SURELY_UNSET}'}]", "webhooks[0].url", "WEBHOOK_TEST_SURELY_UNSET"),
            ("payload_template_files: {violation: /nonexistent/t.json}", "payload_template_files.violation", "cannot read"),
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
        let advanced = Config::load(include_str!("../examples/advanced.yaml")).unwrap();
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
