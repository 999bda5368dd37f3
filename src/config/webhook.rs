//! `webhooks[]`: one target each — URL and id, events, retries, limits, breaker, headers,
//! TLS material and proxy — built from the document and checked field by field.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Url;
use sha2::{Digest, Sha256};

use super::alerting::{self, Alerting};
use super::auth::{header_name, header_value, sensitive_header};
use super::batch::{self, BatchSettings};
use super::email::{self, EmailSettings};
use super::expand;
use super::fields::{in_range, seconds};
use super::intervals::{self, Intervals};
use super::redact::redact;
use super::retry::{RawDuration, RetryPolicy, MAX_SCHEDULE_LEN};
use super::schema::{defaults, RawBreaker, RawTls, RawWebhook};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::formats::Format;
use crate::intervals::TimeInterval;
use crate::network::NetworkPolicy;
use crate::signing::Signer;

/// One webhook target. Its `Debug` shows only the id and the redacted URL.
pub struct Webhook {
    /// Names the webhook in stats, logs and dead letters (never the URL).
    pub id: String,
    /// The full URL (may hold credentials in its path or query: never log it).
    pub url: Url,
    /// Names the URL in stored records without revealing it (see [`url_fingerprint`]).
    pub url_fingerprint: String,
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
    /// Match, severity, digest and channel format (all optional).
    pub alerting: Alerting,
    /// Many events per request (log and SIEM sinks), if set.
    pub batch: Option<BatchSettings>,
    /// How notifications are mailed (an smtp:// or smtps:// URL), if so.
    pub email: Option<EmailSettings>,
    /// `mute_time_intervals`: events arriving inside any of these are not sent.
    pub mute: Vec<Arc<TimeInterval>>,
    /// `active_time_intervals`: when given, events are sent only inside one of these.
    pub active: Vec<Arc<TimeInterval>>,
}

/// A webhook's TLS material, read at load.
#[derive(Clone)]
pub struct TlsSettings {
    /// Trusted in addition to the bundled roots (every certificate of `ca_file`).
    pub ca: Vec<reqwest::Certificate>,
    /// `ca_file` as read (PEM), for SMTP's TLS.
    pub ca_pem: Option<Vec<u8>>,
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

    /// Whether its time intervals hold events back at `now` (muted, or outside its active
    /// intervals); the clock is read only for a webhook that has intervals.
    pub fn muted_at(&self, now: impl FnOnce() -> jiff::Timestamp) -> bool {
        if self.mute.is_empty() && self.active.is_empty() {
            return false;
        }
        let now = now();
        self.mute.iter().any(|i| i.contains(now))
            || (!self.active.is_empty() && !self.active.iter().any(|i| i.contains(now)))
    }
}

/// Ids name webhooks in stats, dead letters and outboxes, so they must be unique; two
/// webhooks with the same URL derive the same id and need explicit ones.
pub(super) fn check_unique_ids(webhooks: &[Webhook]) -> Result<()> {
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
pub(crate) fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The first 12 hex digits of SHA-256 of the full URL: stable, and reveals nothing of it.
pub(super) fn derived_id(url: &str) -> String {
    Sha256::digest(url.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 16 hex digits naming a webhook's URL in stored records (a delivery belongs to its webhook's
/// id *and* URL): a hash in its own domain, so it is not the default id and reveals nothing.
pub(crate) fn url_fingerprint(url: &str) -> String {
    let digest = Sha256::new_with_prefix(b"webhook-notification url\0")
        .chain_update(url.as_bytes())
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// An absolute http(s) URL with a host, and without userinfo or a fragment. The text is
/// checked as well as the parse: `http:///x` would otherwise parse with host `x`.
pub(super) fn check_url(field: &str, text: &str) -> Result<Url> {
    let bad = |why: &str| Error::config(field, why.to_owned());
    let url = Url::parse(text).map_err(|e| bad(&format!("not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https" | "smtp" | "smtps") {
        return Err(bad(
            "must be an http:// or https:// URL (or smtp:// or smtps:// with email)",
        ));
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

/// Static `headers` a webhook may have at most.
const MAX_HEADERS: usize = 100;

impl RawTls {
    /// Reads the PEM files; a missing or invalid file names its field.
    pub(super) fn build(self, at: &str) -> Result<TlsSettings> {
        let field = |name: &str| format!("{at}.{name}");
        let read = |name: &str, path: &str| {
            expand::read_config_file(path)
                .map_err(|e| Error::config(field(name), format!("cannot read `{path}`: {e}")))
        };
        let ca_pem = self
            .ca_file
            .as_ref()
            .map(|path| read("ca_file", path))
            .transpose()?;
        let ca = match &ca_pem {
            Some(pem) => reqwest::Certificate::from_pem_bundle(pem)
                .ok()
                .filter(|certificates| !certificates.is_empty())
                .ok_or_else(|| {
                    let path = self.ca_file.as_deref().unwrap_or_default();
                    Error::config(field("ca_file"), format!("`{path}` holds no PEM certificate"))
                })?,
            None => Vec::new(),
        };
        // The PEM envelope parsed; whether the certificates inside do is known once a client
        // is built with them (as the engine will), so build one now.
        let with_ca = ca.iter().fold(reqwest::Client::builder(), |b, c| {
            b.add_root_certificate(c.clone())
        });
        if let (Some(path), Err(_)) = (&self.ca_file, with_ca.build()) {
            return Err(Error::config(
                field("ca_file"),
                format!("`{path}` holds a certificate that cannot be used"),
            ));
        }
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
                    .map_err(|e| match error_chain(&e).contains("UnsupportedCertVersion") {
                        true => Error::config(
                            field("client_cert_file"),
                            "is an X.509 v1 certificate, which TLS refuses; issue it as v3 (e.g. openssl x509 -req … -extfile with basicConstraints)",
                        ),
                        false => Error::config(field("client_key_file"), "does not match client_cert_file"),
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
        Ok(TlsSettings { ca, ca_pem, identity })
    }
}

/// `proxy`: `none`, or an http(s) proxy URL.
pub(super) fn proxy_of(field: &str, proxy: Option<String>, network: &NetworkPolicy) -> Result<ProxySetting> {
    let Some(text) = proxy else {
        return Ok(ProxySetting::Environment);
    };
    if text.trim() == "none" {
        return Ok(ProxySetting::None);
    }
    let url =
        Url::parse(text.trim()).map_err(|e| Error::config(field, format!("not a valid proxy URL ({e})")))?;
    // A proxy named by address bypasses the resolver's guard: check it here, as a name is
    // checked at connect time.
    let literal = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'));
    if literal
        .and_then(|h| h.parse().ok())
        .is_some_and(|ip| !network.permits(ip))
    {
        return Err(Error::config(field, crate::network::DENIED));
    }
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(ProxySetting::Url(url)),
        _ => Err(Error::config(
            field,
            "must be `none` or an http:// or https:// proxy URL",
        )),
    }
}

impl RawWebhook {
    pub(super) fn build(
        mut self,
        at: &str,
        default_capacity: u64,
        network: &NetworkPolicy,
        time_intervals: &Intervals,
    ) -> Result<Webhook> {
        let field = |name: &str| format!("{at}.{name}");
        let mut alerting = alerting::build(at, self.take_alerting())?;
        let url = check_url(&field("url"), &self.url)?;
        let email = match (self.email.take(), matches!(url.scheme(), "smtp" | "smtps")) {
            (Some(raw), true) => Some(email::build(at, raw)?),
            (None, true) => {
                return Err(Error::config(
                    field("email"),
                    "is required with an smtp:// or smtps:// URL (from, to)",
                ))
            }
            (Some(_), false) => {
                return Err(Error::config(
                    field("email"),
                    "is only for smtp:// and smtps:// URLs",
                ))
            }
            (None, false) => None,
        };
        match (email.is_some(), alerting.format) {
            (true, Format::Default | Format::Email) => alerting.format = Format::Email,
            (true, other) => {
                return Err(Error::config(
                    field("format"),
                    format!(
                        "`{}` cannot be mailed: an smtp:// webhook sends format: email",
                        other.name()
                    ),
                ))
            }
            (false, Format::Email) => {
                return Err(Error::config(
                    field("format"),
                    "email is for smtp:// and smtps:// URLs",
                ))
            }
            (false, _) => {}
        }
        let batch = batch::build(at, self.batch.take(), alerting.format, alerting.digest.is_some())?;
        if batch.is_some() && alerting.format == Format::Default {
            alerting.format = Format::Ndjson;
        }
        // smtp:// then requires STARTTLS (see `engine::smtp`).
        if network.require_https && !matches!(url.scheme(), "https" | "smtps" | "smtp") {
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
        if self.headers.len() > MAX_HEADERS {
            let message = format!("has {} entries; at most {MAX_HEADERS}", self.headers.len());
            return Err(Error::config(field("headers"), message));
        }
        let mut headers = HeaderMap::new();
        let api_key_header = self.authentication.api_key_header.as_deref();
        for (name, value) in &self.headers {
            let at = field(&format!("headers.{name}"));
            let sensitive = sensitive_header(name, api_key_header);
            headers.insert(header_name(&at, name)?, header_value(&at, value, sensitive)?);
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
            // Slack accepts about one message a second per webhook.
            None if alerting.format == Format::Slack => Some(1.0),
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
            url_fingerprint: url_fingerprint(url.as_str()),
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
            proxy: proxy_of(&field("proxy"), self.proxy, network)?,
            alerting,
            batch,
            email,
            mute: intervals::named(
                &field("mute_time_intervals"),
                &self.mute_time_intervals,
                time_intervals,
            )?,
            active: intervals::named(
                &field("active_time_intervals"),
                &self.active_time_intervals,
                time_intervals,
            )?,
        })
    }
}

pub(super) fn schedule_of(field: &str, schedule: &[RawDuration]) -> Result<RetryPolicy> {
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

/// An error's message and its causes' (for telling failures apart, never shown: a cause may
/// quote what it read).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
