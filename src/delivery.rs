//! One delivery to one webhook: the request, its signature, the retry policy and the
//! outcome recorded in the webhook's counters. Also the process-wide delivery runtime.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use log::{debug, warn};
use once_cell::sync::Lazy;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Response, StatusCode};
use tokio::runtime::Runtime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Webhook;
use crate::events::Event;
use crate::stats::WebhookCounters;

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("webhook-notification/", env!("CARGO_PKG_VERSION"));

/// Environment variable setting the delivery runtime's worker threads (default 1: measured
/// faster than 2 on a 2-core host that also runs the gateway; see DESIGN.md).
pub const WORKER_THREADS_ENV: &str = "WEBHOOK_WORKER_THREADS";

/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Response body bytes read (then discarded) so the connection can be reused.
const MAX_DRAIN: usize = 64 * 1024;

/// The one runtime of the process, started on first use and owned by the library.
pub(crate) static RUNTIME: Lazy<Runtime> = Lazy::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads(std::env::var(WORKER_THREADS_ENV).ok().as_deref()))
        .thread_name("webhook-delivery")
        .enable_all()
        .build()
        .expect("the webhook delivery runtime starts")
});

/// Worker threads from the environment value: 1..=64, else the default of 1.
fn worker_threads(value: Option<&str>) -> usize {
    value
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(1)
}

/// The pooled keep-alive client of one notifier. Redirects are not followed: a redirected
/// POST would lose its body or be replayed to a host the operator never configured.
pub(crate) fn client(max_idle_per_host: usize) -> Client {
    Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(max_idle_per_host)
        .tcp_nodelay(true)
        .build()
        .expect("the HTTP client builds")
}

/// What one attempt came to.
enum Outcome {
    Delivered(u16),
    Retry {
        status: Option<u16>,
        error: String,
        after: Option<Duration>,
    },
    Fail {
        status: Option<u16>,
        error: String,
    },
}

/// One event's body on its way to one webhook.
pub(crate) struct Delivery<'a> {
    pub client: &'a Client,
    pub webhook: &'a Webhook,
    pub counters: &'a WebhookCounters,
    /// The webhook's in-flight slots: each attempt holds one; waiting to retry holds none.
    pub slots: &'a Arc<Semaphore>,
    pub event: Event,
    /// `X-Webhook-Delivery`, the same on every attempt.
    pub id: &'a str,
    pub body: Bytes,
}

impl Delivery<'_> {
    /// Attempts until success, a non-retryable answer or the retry budget is spent, then
    /// records the outcome. `first_slot` is the slot the dispatcher acquired for attempt 0.
    pub async fn run(self, first_slot: OwnedSemaphorePermit) {
        let started = Instant::now();
        let url = &self.webhook.redacted_url;
        let mut first_slot = Some(first_slot);
        for attempt in 0.. {
            let slot = match first_slot.take() {
                Some(slot) => slot,
                None => Arc::clone(self.slots)
                    .acquire_owned()
                    .await
                    .expect("slots are never closed"),
            };
            let outcome = self.attempt().await;
            drop(slot);
            match outcome {
                Outcome::Delivered(status) => {
                    debug!(
                        "{url} {} delivery {} attempt {attempt}: HTTP {status}",
                        self.event.name(),
                        self.id
                    );
                    return self.counters.delivered(status, started.elapsed());
                }
                Outcome::Retry { status, error, after } if attempt < self.webhook.retry_attempts => {
                    let delay = after.unwrap_or_else(|| backoff(self.webhook.retry_delay, attempt));
                    debug!(
                        "{url} {} delivery {} attempt {attempt}: {error}; retrying in {delay:?}",
                        self.event.name(),
                        self.id
                    );
                    self.counters.retried(status, error);
                    tokio::time::sleep(delay).await;
                }
                Outcome::Retry { status, error, .. } | Outcome::Fail { status, error } => {
                    let message = format!(
                        "{url} {} delivery {} failed after {} attempts: {error}",
                        self.event.name(),
                        self.id,
                        attempt + 1
                    );
                    // A dead receiver must not flood the gateway's log: warn on the 1st, 2nd,
                    // 4th, 8th… failure in a row, the rest at DEBUG.
                    let streak = self.counters.failed(status, error);
                    if streak.is_power_of_two() {
                        warn!("{message} ({streak} failed in a row)");
                    } else {
                        debug!("{message}");
                    }
                    return;
                }
            }
        }
    }

    async fn attempt(&self) -> Outcome {
        let mut headers = self.webhook.headers.clone();
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            HeaderName::from_static("x-webhook-event"),
            HeaderValue::from_static(self.event.name()),
        );
        headers.insert(
            HeaderName::from_static("x-webhook-delivery"),
            HeaderValue::from_str(self.id).expect("a UUID is a header value"),
        );
        headers.extend(self.webhook.signer.headers(self.id, unix_now, &self.body));
        let request = self
            .client
            .post(self.webhook.url.clone())
            .timeout(self.webhook.timeout)
            .headers(headers)
            .body(self.body.clone());
        // Boxed: a delivery waiting to retry (or queued) then costs a few hundred bytes,
        // not the size of an HTTP request's state machine.
        match Box::pin(request.send()).await {
            Ok(response) => {
                let status = response.status();
                let after = retry_after(status, response.headers());
                drain(response).await;
                classify(status, after)
            }
            Err(e) => Outcome::Retry {
                status: None,
                error: describe(&e, self.webhook.timeout),
                after: None,
            },
        }
    }
}

/// Delay before retry `n` (0-based): `base * 2^n`.
fn backoff(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32 << n.min(16))
}

/// 2xx delivers; 408, 425, 429 and 5xx are retried; anything else fails at once.
fn classify(status: StatusCode, after: Option<Duration>) -> Outcome {
    let code = status.as_u16();
    let error = format!("HTTP {code}");
    if status.is_success() {
        Outcome::Delivered(code)
    } else if matches!(code, 408 | 425 | 429) || status.is_server_error() {
        Outcome::Retry {
            status: Some(code),
            error,
            after,
        }
    } else {
        Outcome::Fail {
            status: Some(code),
            error,
        }
    }
}

/// `Retry-After` of a 429 or 503, as seconds or an HTTP date, capped at a minute.
fn retry_after(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if !matches!(status.as_u16(), 429 | 503) {
        return None;
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(SystemTime::now())
            .unwrap_or_default(),
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// Reads a bounded amount of the response so keep-alive can reuse the connection.
async fn drain(mut response: Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read > MAX_DRAIN {
            break;
        }
    }
}

/// A secret-free description of a transport error: no URL, just the causes.
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timed out after {timeout:?}");
    }
    let mut text = String::from(if error.is_connect() {
        "connect error"
    } else {
        "request error"
    });
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base() {
        let base = Duration::from_millis(100);
        let delays: Vec<_> = (0..4).map(|n| backoff(base, n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800]);
    }

    #[test]
    fn retry_policy_by_status() {
        let retried = |code| {
            matches!(
                classify(StatusCode::from_u16(code).unwrap(), None),
                Outcome::Retry { .. }
            )
        };
        for code in [408, 425, 429, 500, 502, 503, 599] {
            assert!(retried(code), "{code}");
        }
        for code in [301, 400, 401, 403, 404, 410, 422] {
            assert!(!retried(code), "{code}");
        }
        assert!(matches!(
            classify(StatusCode::NO_CONTENT, None),
            Outcome::Delivered(204)
        ));
    }

    #[test]
    fn retry_after_seconds_dates_and_cap() {
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            h
        };
        let s429 = StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(retry_after(s429, &headers("2")), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(s429, &headers("3600")), Some(MAX_RETRY_AFTER));
        assert_eq!(
            retry_after(StatusCode::INTERNAL_SERVER_ERROR, &headers("2")),
            None
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let d = retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers(&later)).unwrap();
        assert!(
            d > Duration::from_secs(27) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }

    #[test]
    fn worker_threads_from_environment_value() {
        assert_eq!(worker_threads(None), 1);
        assert_eq!(worker_threads(Some("3")), 3);
        assert_eq!(worker_threads(Some("0")), 1);
        assert_eq!(worker_threads(Some("lots")), 1);
    }
}
