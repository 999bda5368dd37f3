//! Isolation and resilience against real receivers on 127.0.0.1: per-webhook queues, the
//! circuit breaker and its events, rate limits, retry schedules with jitter, and closing
//! while hook calls race it.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use webhook_notification::{Circuit, Error, Hook, Notifier};

use common::receiver::{dead_port, healable, BlackHole, Receiver, Reply};
use common::wait_until;

const WAIT: Duration = Duration::from_secs(20);

fn notifier(config: &str) -> Notifier {
    Notifier::from_config_text(config, Some("IsolationTest")).expect("config loads")
}

fn tool_ok() -> Value {
    json!({"name": "search", "result": {"content": []}})
}

fn ctx() -> Value {
    json!({"request_id": "r", "user": "u"})
}

#[test]
fn a_black_hole_webhook_never_costs_a_healthy_one_a_notification() {
    let hole = BlackHole::start();
    let rx = Receiver::ok();
    let n = notifier(&format!(
        "queue_capacity: 50\nwebhooks:\n  - {{url: '{}', id: dead, events: [tool_success], timeout: 30, max_concurrency: 4}}\n  - {{url: '{}', id: pager, events: [tool_success], queue_capacity: 10000}}\n",
        hole.url("/"),
        rx.url("/")
    ));
    let events = 2000;
    for _ in 0..events {
        assert!(n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx()).unwrap().queued);
    }
    wait_until("the pager's deliveries", WAIT, || {
        n.stats().webhooks[1].delivered == events as u64
    });
    let s = n.stats();
    let (dead, pager) = (&s.webhooks[0], &s.webhooks[1]);
    assert_eq!(
        (pager.id.as_str(), pager.delivered, pager.dropped),
        ("pager", events as u64, 0)
    );
    assert_eq!(dead.id, "dead");
    assert_eq!(dead.dropped, events as u64 - 50, "{dead:?}");
    assert_eq!((dead.queued, dead.delivered), (50, 0));
    assert_eq!(hole.accepted(), 4, "max_concurrency bounds the connections");
    assert!(matches!(
        n.close(Duration::from_millis(300)),
        Err(Error::Timeout { pending: 50 })
    ));
    assert_eq!(
        n.stats().webhooks[0].dropped,
        events as u64,
        "abandoned at close: counted"
    );
}

#[test]
fn the_breaker_opens_pauses_probes_and_recovers_with_events_to_other_webhooks() {
    let (flaky, healed) = healable(503);
    let pager = Receiver::ok();
    let n = notifier(&format!(
        "webhooks:\n  - {{url: '{}', id: flaky, events: [tool_success], retry_attempts: 0, max_concurrency: 1, circuit_breaker: {{failures: 5, cooldown: 1}}}}\n  - {{url: '{}', id: pager, events: [webhook_failing, webhook_recovered]}}\n",
        flaky.url("/"),
        pager.url("/")
    ));
    for _ in 0..8 {
        n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx()).unwrap();
    }
    let failing = pager.wait_for(1, WAIT)[0].json();
    let opened = Instant::now();
    assert_eq!(failing["event"], "webhook_failing");
    assert_eq!(failing["metadata"]["webhook_id"], "flaky");
    assert_eq!(failing["metadata"]["consecutive_failures"], 5);
    assert_eq!(failing["metadata"]["last_status"], 503);
    assert!(failing["metadata"]["webhook"].as_str().unwrap().ends_with("/…"));
    assert_eq!(flaky.received().len(), 5, "nothing sent once the circuit opened");
    let s = n.stats();
    assert_eq!((s.webhooks[0].circuit, s.webhooks[0].queued), (Circuit::Open, 3));
    healed.store(true, std::sync::atomic::Ordering::SeqCst);
    let probe = flaky.wait_for(6, WAIT)[5].at;
    assert!(
        probe.duration_since(opened) >= Duration::from_millis(900),
        "probe after {:?}",
        probe.duration_since(opened)
    );
    assert!(n.flush(WAIT));
    let got = pager.received();
    let events: Vec<Value> = got.iter().map(|r| r.json()["event"].clone()).collect();
    assert_eq!(events, [json!("webhook_failing"), json!("webhook_recovered")]);
    let s = n.stats();
    let flaky_stats = &s.webhooks[0];
    assert_eq!(
        (flaky_stats.failed, flaky_stats.delivered, flaky_stats.circuit),
        (5, 3, Circuit::Closed)
    );
    assert_eq!((flaky_stats.dead_letters, s.dead_letters), (5, 5));
    // The events about a webhook are never sent to that webhook.
    assert!(flaky
        .received()
        .iter()
        .all(|r| r.json()["event"] == "tool_success"));
}

#[test]
fn without_a_breaker_every_attempt_is_sent_and_no_event_raised() {
    let failing = Receiver::start(|_| Reply::status(503));
    let pager = Receiver::ok();
    let n = notifier(&format!(
        "webhooks:\n  - {{url: '{}', events: [tool_success], retry_attempts: 0, circuit_breaker: false}}\n  - {{url: '{}', events: [webhook_failing, webhook_recovered]}}\n",
        failing.url("/"),
        pager.url("/")
    ));
    for _ in 0..12 {
        n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx()).unwrap();
    }
    assert!(n.flush(WAIT));
    assert_eq!((failing.received().len(), pager.received().len()), (12, 0));
    assert_eq!(n.stats().webhooks[0].circuit, Circuit::Closed);
}

#[test]
fn max_rate_spaces_requests_and_drops_nothing() {
    let rx = Receiver::ok();
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [tool_success], max_rate: 5}}]",
        rx.url("/")
    ));
    for _ in 0..6 {
        assert!(n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx()).unwrap().queued);
    }
    let got = rx.wait_for(6, WAIT);
    // Sends are spaced 200 ms apart; arrivals are timed by the receiver, which may note one
    // late and the next on time: a small tolerance per gap, none on the whole span.
    for pair in got.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(170), "{gap:?}");
    }
    let span = got[5].at - got[0].at;
    assert!(span >= Duration::from_millis(5 * 200 - 20), "{span:?}");
    assert!(n.flush(WAIT));
    assert_eq!((n.stats().delivered, n.stats().dropped), (6, 0));
}

#[test]
fn retry_schedules_are_followed_with_jitter_and_then_dead_lettered() {
    let rx = Receiver::start(|_| Reply::status(500));
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', id: s, events: [tool_success], retry_schedule: [300ms, 600, 0.9s], circuit_breaker: false}}]",
        rx.url("/")
    ));
    n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx()).unwrap();
    assert!(n.flush(WAIT));
    let got = rx.received();
    assert_eq!(got.len(), 4, "attempts = schedule length + 1");
    // No upper bound: a loaded machine may run late, never early.
    for (i, base) in [300.0, 600.0, 900.0].into_iter().enumerate() {
        let ms = (got[i + 1].at - got[i].at).as_secs_f64() * 1000.0;
        assert!(ms >= 0.8 * base, "retry {i}: {ms} ms");
    }
    let letters = n.dead_letters(Some("s")).unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        (letter.attempts, letter.last_status, letter.last_error.as_str()),
        (4, Some(500), "HTTP 500")
    );
    assert_eq!(
        letter.delivery_id.to_string(),
        got[0].header("x-webhook-delivery").unwrap()
    );
    assert!(matches!(
        n.dead_letters(Some("nope")),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn retry_after_is_honoured_as_given_over_the_schedule() {
    let rx = Receiver::start(|n| match n {
        0 => Reply::status(429).header("retry-after", "2"),
        _ => Reply::status(200),
    });
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [tool_success], retry_schedule: [100ms]}}]",
        rx.url("/")
    ));
    n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx()).unwrap();
    let got = rx.wait_for(2, WAIT);
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(1950), "{gap:?}");
}

#[test]
fn dead_letters_replay_with_their_delivery_ids() {
    let (rx, healed) = healable(404);
    let n = notifier(&format!(
        "outbox: {{dead_letter_capacity: 3}}\nwebhooks: [{{url: '{}', id: w, events: [tool_success], circuit_breaker: false}}]",
        rx.url("/")
    ));
    for _ in 0..5 {
        n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx()).unwrap();
    }
    assert!(n.flush(WAIT));
    assert_eq!(rx.received().len(), 5, "a 404 is not retried");
    let letters = n.dead_letters(None).unwrap();
    assert_eq!(letters.len(), 3, "capacity keeps the newest");
    assert_eq!(n.stats().dead_letters_evicted, 2, "evictions are counted");
    let ids: Vec<String> = letters.iter().map(|l| l.delivery_id.to_string()).collect();
    assert_eq!(letters[0].last_status, Some(404));
    healed.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(n.replay_dead_letters(Some("w")).unwrap(), 3);
    assert!(n.flush(WAIT));
    let mut replayed: Vec<String> = rx.received()[5..]
        .iter()
        .map(|r| r.header("x-webhook-delivery").unwrap().to_owned())
        .collect();
    let mut ids = ids;
    replayed.sort();
    ids.sort();
    assert_eq!(replayed, ids);
    let s = n.stats();
    assert_eq!((s.delivered, s.failed, s.dead_letters), (3, 5, 0));
}

#[test]
fn huge_timeouts_mean_no_deadline() {
    let rx = Receiver::ok();
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [tool_success]}}]",
        rx.url("/")
    ));
    n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx()).unwrap();
    assert!(n.flush(Duration::MAX));
    n.close(Duration::MAX).unwrap();
}

#[test]
fn close_returns_within_its_timeout_with_a_dead_receiver() {
    let n = notifier(&format!(
        "webhooks: [{{url: 'http://127.0.0.1:{}/', events: [tool_success], retry_schedule: [1s, 1s]}}]",
        dead_port()
    ));
    for _ in 0..20 {
        n.invoke(Hook::ToolPostInvoke, tool_ok(), &ctx()).unwrap();
    }
    assert!(matches!(
        n.close(Duration::from_millis(300)),
        Err(Error::Timeout { .. })
    ));
    let s = n.stats();
    assert_eq!(s.dropped + s.failed, 20, "{s:?}");
}

#[test]
fn identity_objects_render_as_their_email_and_reach_in_by_path() {
    let rx = Receiver::ok();
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [tool_success, prompt_success]}}]\npayload_templates:\n  tool_success: '{{\"user\": \"{{{{user}}}}\", \"name\": \"{{{{user.full_name}}}}\", \"info\": {{{{user_info}}}}}}'\n",
        rx.url("/")
    ));
    let user = json!({"email": "a@x.io", "full_name": "Ann \"A\" Lee", "is_admin": false});
    n.invoke(
        Hook::ToolPostInvoke,
        tool_ok(),
        &json!({"user": user, "tenant_id": "", "server_id": "unknown"}),
    )
    .unwrap();
    n.invoke(
        Hook::PromptPostFetch,
        json!({"prompt_id": "p"}),
        &json!({"user": "bob@x.io"}),
    )
    .unwrap();
    assert!(n.flush(WAIT));
    let got = rx.received();
    let tool = got
        .iter()
        .find(|r| r.header("x-webhook-event") == Some("tool_success"))
        .unwrap()
        .json();
    assert_eq!(
        tool,
        json!({"user": "a@x.io", "name": "Ann \"A\" Lee", "info": user})
    );
    let prompt = got
        .iter()
        .find(|r| r.header("x-webhook-event") == Some("prompt_success"))
        .unwrap()
        .json();
    assert_eq!(
        (prompt["user"].clone(), prompt["tenant_id"].clone()),
        (json!("bob@x.io"), json!(""))
    );
}
