//! End-to-end delivery through the Rust API to a real HTTP receiver on 127.0.0.1.

mod common;

use std::time::Duration;

use base64::Engine as _;
use hmac::{Mac, SimpleHmac};
use serde_json::{json, Value};
use webhook_notification::{Error, Event, Hook, Notifier};

use common::receiver::{dead_port, Receiver, Reply};
use common::wait_until;

const WAIT: Duration = Duration::from_secs(10);

fn notifier(config: &str) -> Notifier {
    Notifier::from_config_text(config, Some("TestPlugin")).expect("config loads")
}

fn ctx(user: &str) -> Value {
    json!({"global_context": {"request_id": "req-1", "user": user, "tenant_id": "t-1", "server_id": "s-1"}, "state": {}, "metadata": {}})
}

fn tool_ok() -> Value {
    json!({"name": "search", "result": {"content": [{"type": "text", "text": "found"}]}})
}

#[test]
fn every_event_is_delivered_with_its_headers_and_variables() {
    let rx = Receiver::ok();
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [violation, rate_limit_exceeded, pii_detected, harmful_content, tool_success, tool_error, prompt_success, resource_success, plugin_error]}}]",
        rx.url("/hook")
    ));
    let c = ctx("alice");
    let violation = |code: &str, reason: &str| json!({"global_context": {"request_id": "req-1"}, "violation": {"code": code, "reason": reason}});
    type Call<'a> = Box<dyn Fn() -> Option<Event> + 'a>;
    let calls: Vec<(Event, Call)> = vec![
        (
            Event::ToolSuccess,
            Box::new(|| n.invoke(Hook::ToolPostInvoke, tool_ok(), &c).unwrap().event),
        ),
        (
            Event::ToolError,
            Box::new(|| {
                n.invoke(Hook::ToolPostInvoke, json!({"name": "search", "result": {"isError": true, "content": [{"type": "text", "text": "boom"}]}}), &c).unwrap().event
            }),
        ),
        (
            Event::PromptSuccess,
            Box::new(|| {
                n.invoke(
                    Hook::PromptPostFetch,
                    json!({"prompt_id": "p1", "result": {}}),
                    &c,
                )
                .unwrap()
                .event
            }),
        ),
        (
            Event::ResourceSuccess,
            Box::new(|| {
                n.invoke(
                    Hook::ResourcePostFetch,
                    json!({"uri": "file:///a", "content": {}}),
                    &c,
                )
                .unwrap()
                .event
            }),
        ),
        (
            Event::RateLimitExceeded,
            Box::new(|| {
                n.invoke(
                    Hook::ToolPreInvoke,
                    json!({"name": "t"}),
                    &violation("RATE_LIMIT", "Rate limit exceeded"),
                )
                .unwrap()
                .event
            }),
        ),
        (
            Event::PiiDetected,
            Box::new(|| {
                n.invoke(
                    Hook::PromptPreFetch,
                    json!({"prompt_id": "p"}),
                    &violation("PII", "PII found"),
                )
                .unwrap()
                .event
            }),
        ),
        (
            Event::HarmfulContent,
            Box::new(|| {
                n.invoke(
                    Hook::ResourcePreFetch,
                    json!({"uri": "u"}),
                    &violation("CONTENT_MODERATION", "flagged"),
                )
                .unwrap()
                .event
            }),
        ),
        (
            Event::Violation,
            Box::new(|| {
                n.invoke(
                    Hook::ToolPreInvoke,
                    json!({"name": "t"}),
                    &violation("DENY", "deny list"),
                )
                .unwrap()
                .event
            }),
        ),
        (
            Event::PluginError,
            Box::new(|| {
                n.notify(Event::PluginError, &c, None, Some(json!({"error": "x"})))
                    .unwrap()
                    .then_some(Event::PluginError)
            }),
        ),
    ];
    for (i, (want, call)) in calls.iter().enumerate() {
        assert_eq!(call(), Some(*want));
        let got = rx.wait_for(i + 1, WAIT).pop().unwrap();
        let body = got.json();
        assert_eq!(got.header("x-webhook-event"), Some(want.name()));
        assert_eq!(body["event"], want.name());
        assert_eq!(body["plugin"], "TestPlugin");
        assert_eq!(body["request_id"], "req-1");
        assert_eq!(got.header("content-type"), Some("application/json"));
        assert!(got
            .header("user-agent")
            .unwrap()
            .starts_with("webhook-notification/"));
        let id = got.header("x-webhook-delivery").unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        let ts = body["timestamp"].as_str().unwrap();
        assert!(
            humantime::parse_rfc3339(ts).is_ok() && ts.ends_with('Z') && ts.len() == 24,
            "{ts}"
        );
    }
    let bodies: Vec<Value> = rx.received().iter().map(|r| r.json()).collect();
    assert_eq!(bodies[0]["metadata"], json!({"tool_name": "search"}));
    assert_eq!(
        bodies[1]["metadata"],
        json!({"tool_name": "search", "error": "boom"})
    );
    assert_eq!(bodies[2]["metadata"]["prompt_id"], "p1");
    assert_eq!(bodies[3]["metadata"]["resource_uri"], "file:///a");
    assert_eq!(bodies[4]["violation"]["code"], "RATE_LIMIT");
    assert_eq!(bodies[0]["user"], "alice");
    // pre-hooks without a violation raise nothing
    assert_eq!(
        n.invoke(Hook::ToolPreInvoke, json!({"name": "t"}), &c)
            .unwrap()
            .event,
        None
    );
    assert!(n.flush(WAIT));
    assert_eq!(n.stats().delivered, 9);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mac<D: Mac + hmac::digest::KeyInit>(key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = <D as hmac::digest::KeyInit>::new_from_slice(key).unwrap();
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

#[test]
fn each_auth_type_sends_its_headers_and_signatures_verify() {
    let rx = Receiver::ok();
    let algorithms = ["sha1", "sha224", "sha256", "sha384", "sha512"];
    let mut config = format!(
        "webhooks:\n  - {{url: '{0}', events: [tool_success], authentication: {{type: bearer, token: tok-1}}, headers: {{X-Team: ops}}}}\n  - {{url: '{1}', events: [tool_success], authentication: {{type: api_key, api_key: key-1, api_key_header: X-Custom-Key}}}}\n  - {{url: '{2}', events: [tool_success], authentication: {{type: standard_webhooks, secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_c2Vjb25k]}}}}\n",
        rx.url("/bearer"), rx.url("/apikey"), rx.url("/std")
    );
    for alg in algorithms {
        config += &format!("  - {{url: '{}', events: [tool_success], authentication: {{type: hmac, hmac_secret: s3cret, hmac_algorithm: {alg}, hmac_header: X-Hub-Signature}}}}\n", rx.url(&format!("/hmac-{alg}")));
    }
    let n = notifier(&config);
    n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("bob")).unwrap();
    let got = rx.wait_for(3 + algorithms.len(), WAIT);
    let by_path = |p: &str| {
        got.iter()
            .find(|r| r.path == p)
            .unwrap_or_else(|| panic!("no {p}"))
    };
    let bearer = by_path("/bearer");
    assert_eq!(bearer.header("authorization"), Some("Bearer tok-1"));
    assert_eq!(bearer.header("x-team"), Some("ops"));
    assert_eq!(by_path("/apikey").header("x-custom-key"), Some("key-1"));
    for alg in algorithms {
        let r = by_path(&format!("/hmac-{alg}"));
        let digest = match alg {
            "sha1" => mac::<SimpleHmac<sha1::Sha1>>(b"s3cret", &r.body),
            "sha224" => mac::<SimpleHmac<sha2::Sha224>>(b"s3cret", &r.body),
            "sha256" => mac::<SimpleHmac<sha2::Sha256>>(b"s3cret", &r.body),
            "sha384" => mac::<SimpleHmac<sha2::Sha384>>(b"s3cret", &r.body),
            _ => mac::<SimpleHmac<sha2::Sha512>>(b"s3cret", &r.body),
        };
        assert_eq!(
            r.header("x-hub-signature").unwrap(),
            format!("{alg}={}", hex(&digest))
        );
    }
    let std = by_path("/std");
    let (id, ts) = (
        std.header("webhook-id").unwrap(),
        std.header("webhook-timestamp").unwrap(),
    );
    assert_eq!(Some(id), std.header("x-webhook-delivery"));
    let signed = [id.as_bytes(), b".", ts.as_bytes(), b".", &std.body].concat();
    let b64 = base64::engine::general_purpose::STANDARD;
    let sigs: Vec<String> = ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "c2Vjb25k"]
        .iter()
        .map(|k| {
            format!(
                "v1,{}",
                b64.encode(mac::<SimpleHmac<sha2::Sha256>>(&b64.decode(k).unwrap(), &signed))
            )
        })
        .collect();
    assert_eq!(std.header("webhook-signature").unwrap(), sigs.join(" "));
}

#[test]
fn events_are_filtered_and_disabled_webhooks_get_nothing() {
    let rx = Receiver::ok();
    let n = notifier(&format!(
        "webhooks:\n  - {{url: '{}', events: [tool_error]}}\n  - {{url: '{}', events: [tool_success], enabled: false}}\n  - {{url: '{}', events: [tool_success]}}\n  - {{url: '{}'}}\n",
        rx.url("/errors"), rx.url("/disabled"), rx.url("/success"), rx.url("/default-violation")
    ));
    n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("u")).unwrap();
    n.notify(Event::Violation, &ctx("u"), Some(json!({"reason": "r"})), None)
        .unwrap();
    assert!(n.flush(WAIT));
    let mut paths: Vec<String> = rx.received().into_iter().map(|r| r.path).collect();
    paths.sort();
    assert_eq!(paths, ["/default-violation", "/success"]);
}

#[test]
fn several_webhooks_are_served_concurrently() {
    let slow = Receiver::start(|_| Reply::status(200).after(Duration::from_secs(3)));
    let hooks: String = (0..4)
        .map(|i| {
            format!(
                "  - {{url: '{}', events: [tool_success]}}\n",
                slow.url(&format!("/{i}"))
            )
        })
        .collect();
    let n = notifier(&format!("webhooks:\n{hooks}"));
    n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("u")).unwrap();
    // All four requests are at the receiver while none has been answered: concurrent.
    slow.wait_for(4, WAIT);
    assert_eq!(
        n.stats().delivered,
        0,
        "a request was answered before the fourth was sent"
    );
    assert!(n.flush(WAIT));
    assert_eq!(n.stats().delivered, 4);
}

#[test]
fn failures_are_retried_with_exponential_spacing_and_one_delivery_id() {
    let rx = Receiver::start(|n| Reply::status(if n < 2 { 500 } else { 200 }));
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [tool_success], retry_attempts: 3, retry_delay: 150}}]",
        rx.url("/")
    ));
    n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("u")).unwrap();
    assert!(n.flush(WAIT));
    let got = rx.received();
    assert_eq!(got.len(), 3);
    // retry n waits retry_delay × 2^n, spread by a jitter factor in [0.8, 1.2]
    let gap = |i: usize| got[i + 1].at - got[i].at;
    for (i, base) in [(0, 150.0), (1, 300.0)] {
        let ms = gap(i).as_secs_f64() * 1000.0;
        // No upper bound: a loaded machine may run late, never early.
        assert!(ms >= 0.8 * base, "gap {i}: {ms} ms");
    }
    assert!(got
        .iter()
        .all(|r| r.header("x-webhook-delivery") == got[0].header("x-webhook-delivery")));
    let s = n.stats();
    assert_eq!((s.delivered, s.retries, s.failed), (1, 2, 0));
    assert_eq!(s.webhooks[0].last_status, Some(200));
}

#[test]
fn a_404_fails_at_once_and_retries_stop_at_the_budget() {
    let rx = Receiver::start(|_| Reply::status(404));
    let busy = Receiver::start(|_| Reply::status(503));
    let n = notifier(&format!(
        "webhooks:\n  - {{url: '{}', events: [tool_success], retry_delay: 100}}\n  - {{url: '{}', events: [tool_success], retry_attempts: 2, retry_delay: 100}}\n",
        rx.url("/"), busy.url("/")
    ));
    n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("u")).unwrap();
    assert!(n.flush(WAIT));
    assert_eq!(rx.received().len(), 1);
    assert_eq!(busy.received().len(), 3);
    let s = n.stats();
    assert_eq!(
        (
            s.webhooks[0].failed,
            s.webhooks[0].retries,
            s.webhooks[0].last_status
        ),
        (1, 0, Some(404))
    );
    assert_eq!(
        (
            s.webhooks[1].failed,
            s.webhooks[1].retries,
            s.webhooks[1].last_status
        ),
        (1, 2, Some(503))
    );
}

#[test]
fn retry_after_is_honoured() {
    let rx = Receiver::start(|n| {
        if n == 0 {
            Reply::status(429).header("retry-after", "1")
        } else {
            Reply::status(200)
        }
    });
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [tool_success], retry_delay: 100}}]",
        rx.url("/")
    ));
    n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("u")).unwrap();
    assert!(n.flush(WAIT));
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert!(
        got[1].at - got[0].at >= Duration::from_millis(950),
        "{:?}",
        got[1].at - got[0].at
    );
}

#[test]
fn each_attempt_is_bounded_by_the_timeout() {
    let rx = Receiver::start(|_| Reply::status(200).after(Duration::from_secs(30)));
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [tool_success], timeout: 1, retry_attempts: 0}}]",
        rx.url("/")
    ));
    n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("u")).unwrap();
    assert!(n.flush(WAIT), "the 30 s answer was not waited for");
    let w = &n.stats().webhooks[0];
    assert_eq!(w.failed, 1);
    assert!(
        w.last_error.as_deref().unwrap().contains("timed out"),
        "{:?}",
        w.last_error
    );
}

#[test]
fn a_dead_port_fails_after_retries_without_leaking_the_url() {
    let port = dead_port();
    let n = notifier(&format!("webhooks: [{{url: 'http://127.0.0.1:{port}/services/T0/SECRETPATH?token=SECRETQ', events: [tool_success], retry_attempts: 1, retry_delay: 100}}]"));
    n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("u")).unwrap();
    assert!(n.flush(WAIT));
    let s = n.stats();
    assert_eq!((s.failed, s.retries), (1, 1));
    let w = &s.webhooks[0];
    assert!(
        w.last_error.as_deref().unwrap().contains("connect"),
        "{:?}",
        w.last_error
    );
    let json = s.to_json();
    assert!(!json.contains("SECRET"), "{json}");
    assert_eq!(w.url, format!("http://127.0.0.1:{port}/…"));
}

#[test]
fn a_receiver_down_then_up_within_the_retry_budget_loses_nothing() {
    let port = dead_port();
    let n = notifier(&format!("webhooks: [{{url: 'http://127.0.0.1:{port}/', events: [tool_success], retry_attempts: 6, retry_delay: 200, circuit_breaker: false}}]"));
    for _ in 0..5 {
        n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("u")).unwrap();
    }
    // The receiver is down until every delivery has failed an attempt.
    wait_until("a failed attempt each", WAIT, || n.stats().retries >= 5);
    let rx = Receiver::start_on(port, |_| Reply::status(200));
    assert!(n.flush(WAIT));
    let s = n.stats();
    assert_eq!((s.delivered, s.failed, s.dropped), (5, 0, 0));
    assert!(s.retries >= 5, "{s:?}");
    assert_eq!(rx.received().len(), 5);
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_flood_into_a_dead_receiver_is_bounded_and_counted() {
    let port = dead_port();
    let n = notifier(&format!("queue_capacity: 200\nwebhooks: [{{url: 'http://127.0.0.1:{port}/', events: [tool_success], retry_attempts: 10, retry_delay: 60000}}]"));
    let before = rss_kib();
    let mut queued = 0;
    for _ in 0..20_000 {
        queued += n
            .invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("u"))
            .unwrap()
            .queued as u64;
    }
    assert_eq!(queued, 200);
    let s = n.stats();
    assert_eq!(s.dropped, 19_800);
    assert!(s.pending <= 200, "{s:?}");
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 32 * 1024, "RSS grew {grown} KiB for a 200-event queue");
    assert_eq!(
        n.close(Duration::from_millis(200)),
        Err(Error::Timeout { pending: 200 })
    );
    let s = n.stats();
    assert_eq!((s.dropped, s.pending), (20_000, 0));
}

#[test]
fn hook_calls_do_not_wait_for_a_slow_receiver() {
    let rx = Receiver::start(|_| Reply::status(200).after(Duration::from_secs(3)));
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [tool_success], max_concurrency: 1000}}]",
        rx.url("/")
    ));
    for _ in 0..1000 {
        assert!(
            n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("u"))
                .unwrap()
                .queued
        );
    }
    // Every call returned before the receiver answered even once (what a call costs is
    // measured in tests/bench, not asserted here).
    assert_eq!(n.stats().delivered, 0);
    assert!(n.flush(Duration::from_secs(30)));
    assert_eq!(n.stats().delivered, 1000);
}

#[test]
fn close_with_pending_deliveries_returns_within_its_timeout() {
    let rx = Receiver::start(|_| Reply::status(200).after(Duration::from_secs(20)));
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [tool_success], timeout: 60}}]",
        rx.url("/")
    ));
    for _ in 0..3 {
        n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("u")).unwrap();
    }
    rx.wait_for(3, WAIT);
    assert_eq!(
        n.close(Duration::from_millis(300)),
        Err(Error::Timeout { pending: 3 })
    );
    assert_eq!(n.stats().dropped, 3);
    assert_eq!(
        n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("u")),
        Err(Error::Closed)
    );
    assert_eq!(n.close(Duration::ZERO), Ok(()));
}

#[test]
fn templates_quote_anything_and_follow_dotted_paths() {
    let rx = Receiver::ok();
    let n = notifier(&format!(
        r#"webhooks: [{{url: '{}', events: [rate_limit_exceeded, tool_success]}}]
include_payload_data: true
max_payload_size: 200
payload_templates:
  rate_limit_exceeded: |
    {{"text": "Rate limit for {{{{user}}}}: reset in {{{{violation.details.reset_in}}}}s",
     "reset": {{{{violation.details.reset_in}}}}, "missing": {{{{violation.details.nope}}}}, "id": "{{{{delivery_id}}}}"}}
  tool_success: '{{"payload": {{{{payload}}}}, "tool": "{{{{metadata.tool_name}}}}"}}'
"#,
        rx.url("/")
    ));
    let evil = "a\"b\\c\n}{\"x\": 1";
    let violation = json!({"global_context": {"user": evil}, "violation": {"code": "RATE_LIMIT", "details": {"reset_in": 45}}});
    n.invoke(Hook::ToolPreInvoke, json!({"name": "t"}), &violation)
        .unwrap();
    let big = json!({"name": "search", "result": {"text": "x".repeat(500)}});
    n.invoke(Hook::ToolPostInvoke, big, &ctx("u")).unwrap();
    let small = json!({"name": "search", "result": {"text": "q\"uote"}});
    n.invoke(Hook::ToolPostInvoke, small.clone(), &ctx("u")).unwrap();
    assert!(n.flush(WAIT));
    let got = rx.received();
    let body = got
        .iter()
        .find(|r| r.header("x-webhook-event") == Some("rate_limit_exceeded"))
        .unwrap();
    let v = body.json();
    assert_eq!(v["text"], format!("Rate limit for {evil}: reset in 45s"));
    assert_eq!(
        (v["reset"].clone(), v["missing"].clone()),
        (json!(45), Value::Null)
    );
    assert_eq!(v["id"], body.header("x-webhook-delivery").unwrap());
    let payloads: Vec<Value> = got
        .iter()
        .filter(|r| r.header("x-webhook-event") == Some("tool_success"))
        .map(|r| r.json()["payload"].clone())
        .collect();
    assert!(
        payloads.contains(&Value::Null),
        "over max_payload_size → null: {payloads:?}"
    );
    assert!(payloads.contains(&small), "{payloads:?}");
}

#[test]
fn bad_json_shapes_are_parse_errors() {
    // A webhook takes tool_error, so tool_post_invoke calls are read (a hook no webhook takes
    // is answered before anything is parsed).
    let n = notifier("webhooks: [{url: 'http://127.0.0.1:9/', events: [tool_error]}]");
    assert!(matches!(
        n.invoke(Hook::ToolPostInvoke, json!({}), &json!([1])),
        Err(Error::Parse(_))
    ));
    // A violation that is not an object is one all the same (`{"reason": …}`), not an error.
    assert!(matches!(
        n.notify(Event::Violation, &json!({}), Some(json!("x")), None),
        Ok(false)
    ));
    assert!(matches!(
        n.notify(Event::Violation, &json!({}), None, Some(json!([1]))),
        Err(Error::Parse(_))
    ));
    assert!(matches!(
        Notifier::from_config_text("webhooks: [{url: 'https://a/', retry_attempts: 99}]", None),
        Err(Error::Config { .. })
    ));
}

#[test]
fn https_goes_through_rustls_and_a_failed_handshake_is_a_clean_failure() {
    // A plain-HTTP receiver behind an https:// URL: the TLS stack starts (no crypto-provider
    // panic), the handshake fails, and that is an ordinary, retried, recorded failure.
    let rx = Receiver::ok();
    let url = rx.url("/").replace("http://", "https://");
    let n = notifier(&format!(
        "webhooks: [{{url: '{url}', events: [tool_success], retry_attempts: 1, retry_delay: 100}}]"
    ));
    n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("u")).unwrap();
    assert!(n.flush(WAIT));
    let s = n.stats();
    assert_eq!((s.failed, s.retries, s.delivered), (1, 1, 0));
    let error = s.webhooks[0].last_error.clone().unwrap();
    assert!(error.contains("connect error"), "{error}");
}

#[test]
fn each_webhook_gets_its_own_delivery_id_and_a_shared_body_otherwise() {
    let rx = Receiver::ok();
    let n = notifier(&format!(
        "webhooks:\n  - {{url: '{0}', events: [tool_success, tool_error]}}\n  - {{url: '{1}', events: [tool_success, tool_error]}}\npayload_templates:\n  tool_success: '{{\"id\": \"{{{{delivery_id}}}}\"}}'\n",
        rx.url("/a"),
        rx.url("/b")
    ));
    n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("u")).unwrap();
    n.invoke(
        Hook::ToolPostInvoke,
        json!({"name": "t", "result": {"error": "x"}}),
        &ctx("u"),
    )
    .unwrap();
    assert!(n.flush(WAIT));
    let got = rx.received();
    let event = |r: &common::receiver::Received| r.header("x-webhook-event").unwrap().to_owned();
    let ids: Vec<_> = got.iter().filter(|r| event(r) == "tool_success").collect();
    assert_eq!(ids.len(), 2);
    for r in &ids {
        assert_eq!(r.json()["id"], r.header("x-webhook-delivery").unwrap());
    }
    assert_ne!(ids[0].json()["id"], ids[1].json()["id"]);
    let errors: Vec<_> = got
        .iter()
        .filter(|r| event(r) == "tool_error")
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0], errors[1]);
}

#[test]
fn every_attempt_carries_the_events_trace_with_a_span_of_its_own() {
    let rx = Receiver::start(|n| Reply::status(if n == 0 { 503 } else { 200 }));
    let template = r#"{"trace": "{{trace_id}}", "span": "{{span_id}}"}"#;
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [tool_success, tool_error], retry_delay: 100}}]\npayload_templates: {{tool_success: '{template}', tool_error: '{template}'}}",
        rx.url("/")
    ));
    let host_trace = "0af7651916cd43dd8448eb211c80319c";
    let mut context = ctx("u");
    context["global_context"]["traceparent"] = json!(format!("00-{host_trace}-b7ad6b7169203331-00"));
    context["global_context"]["tracestate"] = json!("vendor=abc,other=1");
    n.invoke(Hook::ToolPostInvoke, tool_ok(), &context).unwrap();
    assert!(n.flush(WAIT));
    let got = rx.received();
    assert_eq!(got.len(), 2, "one 503, one retry");
    let parents: Vec<&str> = got.iter().map(|r| r.header("traceparent").unwrap()).collect();
    for parent in &parents {
        // The host's trace id and flags (00: not sampled), never the host's own span.
        assert!(
            parent.starts_with(&format!("00-{host_trace}-")) && parent.ends_with("-00"),
            "{parent}"
        );
        assert!(!parent.contains("b7ad6b7169203331"), "{parent}");
    }
    assert_ne!(
        parents[0][36..52],
        parents[1][36..52],
        "a retry is a span of its own"
    );
    assert!(got
        .iter()
        .all(|r| r.header("tracestate") == Some("vendor=abc,other=1")));
    let body = got[0].json();
    assert_eq!(body["trace"], host_trace);
    assert_eq!(
        body["span"],
        parents[0][36..52],
        "{{span_id}} is the first attempt's"
    );

    // No trace from the host, or a malformed one: a fresh trace per event, never an error.
    let mut bad = ctx("u");
    bad["global_context"]["traceparent"] = json!("00-not-a-trace-01");
    let failing = json!({"name": "search", "result": {"isError": true}});
    n.invoke(Hook::ToolPostInvoke, failing, &bad).unwrap();
    n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx("u")).unwrap();
    assert!(n.flush(WAIT));
    let fresh: Vec<_> = rx.received()[2..]
        .iter()
        .map(|r| (r.header("traceparent").unwrap().to_owned(), r.json()))
        .collect();
    assert_eq!(fresh.len(), 2);
    for (parent, body) in &fresh {
        assert!(
            parent.starts_with("00-") && parent.ends_with("-01") && parent.len() == 55,
            "{parent}"
        );
        assert_eq!(
            body["trace"],
            parent[3..35],
            "the body's trace id is the header's"
        );
        assert_ne!(body["trace"], host_trace);
    }
    assert_ne!(
        fresh[0].1["trace"], fresh[1].1["trace"],
        "each event its own trace"
    );
    assert!(rx.received()[2..]
        .iter()
        .all(|r| r.header("tracestate").is_none()));
}
