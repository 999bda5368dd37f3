//! One attempt of one delivery: the request, its headers and signature, and what the answer
//! means for the retry policy. The engine decides what happens next.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, Response, StatusCode};

use super::ledger::Ticket;
use crate::config::{ProxySetting, Webhook};
use crate::network::{Denied, GuardedResolver, NetworkPolicy, DENIED};
use crate::render::{request_headers, USER_AGENT};
use crate::trace::Trace;

/// Response body bytes read (then discarded) so the connection can be reused.
const MAX_DRAIN: usize = 64 * 1024;

/// A pooled keep-alive client: the engine's shared one (`webhook: None`), or one of its own
/// for a webhook with TLS material or a proxy setting. Every client resolves names through
/// the network policy's guard. Redirects are not followed: a redirected POST would lose its
/// body or be replayed to a host the operator never configured.
pub(crate) fn client(
    max_idle_per_host: usize,
    policy: &Arc<NetworkPolicy>,
    webhook: Option<&Webhook>,
) -> Client {
    let mut builder = Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(max_idle_per_host)
        .tcp_nodelay(true)
        .dns_resolver(Arc::new(GuardedResolver(Arc::clone(policy))));
    if let Some(webhook) = webhook {
        if let Some(tls) = &webhook.tls {
            for ca in &tls.ca {
                builder = builder.add_root_certificate(ca.clone());
            }
            if let Some(identity) = &tls.identity {
                builder = builder.identity(identity.clone());
            }
        }
        builder = match &webhook.proxy {
            ProxySetting::Environment => builder,
            ProxySetting::None => builder.no_proxy(),
            ProxySetting::Url(url) => {
                builder.proxy(reqwest::Proxy::all(url.clone()).expect("a checked proxy URL"))
            }
        };
    }
    builder
        .build()
        .expect("the HTTP client builds (its TLS material was checked at load)")
}

/// Whether `webhook` needs a client of its own (TLS material or a proxy setting).
pub(crate) fn needs_own_client(webhook: &Webhook) -> bool {
    webhook.tls.is_some() || webhook.proxy != ProxySetting::Environment
}

/// What one attempt came to: the receiver's answer as the retry policy reads it.
pub(crate) enum Answer {
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

/// The answer for a webhook whose host is an IP address the network policy denies (names
/// are checked when they resolve).
pub(crate) fn refused_address(webhook: &Webhook, policy: &NetworkPolicy) -> Option<Answer> {
    let host = webhook.url.host_str().unwrap_or_default();
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    literal.filter(|ip| !policy.permits(*ip)).map(|_| Answer::Fail {
        status: None,
        error: DENIED.to_owned(),
    })
}

/// Sends `ticket` to `webhook` once; a destination the network policy denies fails at once.
pub(crate) async fn attempt(
    client: &Client,
    webhook: &Webhook,
    policy: &NetworkPolicy,
    ticket: &Ticket,
) -> Answer {
    if let Some(answer) = refused_address(webhook, policy) {
        return answer;
    }
    let fresh;
    let trace = match &ticket.trace {
        Some(trace) => trace,
        None => {
            fresh = Trace::random();
            &fresh
        }
    };
    let headers = request_headers(
        webhook,
        (ticket.event, ticket.framed()),
        &ticket.id,
        &ticket.body,
        trace,
        ticket.attempts,
    );
    let request = client
        .post(webhook.url.clone())
        .timeout(webhook.timeout)
        .headers(headers)
        .body(ticket.body.clone());
    // Boxed: a delivery waiting to retry (or queued) then costs a few hundred bytes,
    // not the size of an HTTP request's state machine.
    match Box::pin(request.send()).await {
        Ok(response) => {
            let status = response.status();
            let after = retry_after(status, response.headers());
            drain(response).await;
            classify(status, after)
        }
        Err(e) if denied(&e) => Answer::Fail {
            status: None,
            error: DENIED.to_owned(),
        },
        // A certificate the other side refuses (or that we refuse) will not heal by retrying
        // in a second: fail at once with the reason (the breaker and dead letters take over).
        Err(e) if tls_rejected(&e) => Answer::Fail {
            status: None,
            error: describe(&e, webhook.timeout),
        },
        Err(e) => Answer::Retry {
            status: None,
            error: describe(&e, webhook.timeout),
            after: None,
        },
    }
}

/// A computed retry delay spread by a random factor in [0.8, 1.2], so that retries of
/// many deliveries that failed together do not arrive together.
pub(crate) fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(0.8 + 0.4 * fastrand::f64())
}

/// 2xx delivers; 408, 425, 429 and 5xx are retried; anything else fails at once.
fn classify(status: StatusCode, after: Option<Duration>) -> Answer {
    let code = status.as_u16();
    let error = format!("HTTP {code}");
    if status.is_success() {
        Answer::Delivered(code)
    } else if matches!(code, 408 | 425 | 429) || status.is_server_error() {
        Answer::Retry {
            status: Some(code),
            error,
            after,
        }
    } else {
        Answer::Fail {
            status: Some(code),
            error,
        }
    }
}

/// `Retry-After` of a 429 or 503, as seconds or an HTTP date (the caller caps it).
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
    Some(delay)
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

/// Whether the guarded resolver refused every address of the destination.
fn denied(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<Denied>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Whether the TLS handshake failed over a certificate: ours not trusted by the receiver
/// (a fatal alert from it), or its not trusted by us.
fn tls_rejected(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if text.contains("invalid peer certificate") || text.contains("received fatal alert") {
            return true;
        }
        source = cause.source();
    }
    false
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
    use reqwest::header::HeaderValue;

    #[test]
    fn jitter_stays_within_a_fifth_either_way() {
        let base = Duration::from_millis(1000);
        let delays: Vec<u128> = (0..1000).map(|_| jitter(base).as_millis()).collect();
        assert!(delays.iter().all(|d| (800..=1200).contains(d)));
        let spread = delays.iter().max().unwrap() - delays.iter().min().unwrap();
        assert!(spread > 200, "not random: spread {spread} ms");
    }

    #[test]
    fn retry_policy_by_status() {
        let retried = |code| {
            matches!(
                classify(StatusCode::from_u16(code).unwrap(), None),
                Answer::Retry { .. }
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
            Answer::Delivered(204)
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
        assert_eq!(
            retry_after(s429, &headers("3600")),
            Some(Duration::from_secs(3600))
        );
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
}
