//! Alerting end to end through the Rust API to real HTTP receivers on 127.0.0.1: filters,
//! digests (storms, thresholds, a receiver down, close), PagerDuty trigger and resolve.
//! No timing assertions: message bounds are derived from the storm's measured length.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use webhook_notification::{Event, Notifier};

use common::receiver::{healable, Received, Receiver, Reply};
use common::wait_until;

const WAIT: Duration = Duration::from_secs(20);

fn notifier(config: &str) -> Notifier {
    Notifier::from_config_text(config, Some("Alerts")).expect("config loads")
}

fn rate_limited(n: &Notifier, user: &str, tool: &str) {
    let context = json!({"user": user, "tenant_id": "acme", "request_id": "r"});
    let violation = json!({"code": "RATE_LIMIT", "reason": "Rate limit exceeded"});
    let metadata = json!({"tool_name": tool});
    n.notify(
        Event::RateLimitExceeded,
        &context,
        Some(violation),
        Some(metadata),
    )
    .expect("admitted");
}

/// Each distinct delivery (by delivery id) once: retried attempts carry the same message.
fn messages(received: &[Received]) -> Vec<Value> {
    let mut seen = HashSet::new();
    received
        .iter()
        .filter(|r| seen.insert(r.header("x-webhook-delivery").unwrap().to_owned()))
        .map(Received::json)
        .collect()
}

/// Per group value of `field`: (events counted, messages, keys seen).
fn per_group(messages: &[Value], field: &str) -> HashMap<String, (u64, u64, HashSet<String>)> {
    let mut groups: HashMap<String, (u64, u64, HashSet<String>)> = HashMap::new();
    for m in messages {
        let digest = &m["digest"];
        let name = digest["group"][field].as_str().unwrap().to_owned();
        let entry = groups.entry(name).or_default();
        entry.0 += digest["count"].as_u64().unwrap();
        entry.1 += 1;
        entry.2.insert(digest["key"].as_str().unwrap().to_owned());
    }
    groups
}

#[test]
fn a_storm_becomes_a_few_messages_per_group_counting_every_event_once() {
    let rx = Receiver::ok();
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [rate_limit_exceeded], digest: {{group_by: [user], group_interval: 200ms, samples: 2}}}}]",
        rx.url("/alerts")
    ));
    let users = ["alice", "bob", "carol"];
    let started = Instant::now();
    for i in 0..3000 {
        rate_limited(&n, users[i % 3], "search");
        if i % 30 == 0 {
            std::thread::sleep(Duration::from_millis(5)); // the storm spans several intervals
        }
    }
    let storm = started.elapsed();
    n.close(WAIT).expect("close sends what is still uncounted");
    let messages = messages(&rx.received());
    let groups = per_group(&messages, "user");
    // Per group: 1 + ceil(T / interval) while the storm lasts, plus the one close sends.
    let bound = 2 + (storm.as_millis() as u64).div_ceil(200);
    let mut keys = HashSet::new();
    for user in users {
        let (count, sent, group_keys) = &groups[user];
        assert_eq!(*count, 1000, "{user}: every event counted exactly once");
        assert!(
            *sent <= bound,
            "{user}: {sent} messages > {bound} for a {storm:?} storm"
        );
        assert_eq!(group_keys.len(), 1, "{user}: one stable key");
        keys.extend(group_keys.iter().cloned());
    }
    assert_eq!(keys.len(), 3, "distinct keys across groups");
    let first = messages
        .iter()
        .find(|m| m["digest"]["total"] == m["digest"]["count"])
        .unwrap();
    assert_eq!(
        first["event"], "rate_limit_exceeded",
        "the default body plus digest"
    );
    assert_eq!(first["digest"]["status"], "firing");
    assert!(first["digest"]["samples"].as_array().unwrap().len() <= 2);
    let stats = n.stats();
    let w = &stats.webhooks[0];
    assert_eq!(
        (w.digest_messages, w.delivered),
        (messages.len() as u64, messages.len() as u64)
    );
    assert!(
        messages.len() < 3000 / 10,
        "{} messages for 3000 events",
        messages.len()
    );
}

#[test]
fn while_the_receiver_is_down_a_group_holds_one_message_and_nothing_is_lost() {
    let (rx, healed) = healable(503);
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [rate_limit_exceeded], circuit_breaker: false,
           retry_schedule: [200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms],
           digest: {{group_by: [user], group_interval: 100ms}}}}]",
        rx.url("/down")
    ));
    let mut deepest = 0;
    for i in 0..2000 {
        rate_limited(&n, ["alice", "bob"][i % 2], "search");
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(20));
            deepest = deepest.max(n.stats().webhooks[0].queued);
        }
    }
    wait_until("both groups' first messages are retrying", WAIT, || {
        rx.received().len() >= 4
    });
    deepest = deepest.max(n.stats().webhooks[0].queued);
    assert!(
        deepest <= 2,
        "queue depth {deepest}: at most one message per group"
    );
    assert_eq!(n.stats().webhooks[0].groups, 2);
    healed.store(true, std::sync::atomic::Ordering::SeqCst);
    n.close(WAIT).expect("closes once delivered");
    let groups = per_group(&messages(&rx.received()), "user");
    assert_eq!((groups["alice"].0, groups["bob"].0), (1000, 1000));
    assert_eq!(n.stats().webhooks[0].failed, 0);
}

#[test]
fn match_exclude_and_min_severity_filter_and_count() {
    let rx = Receiver::ok();
    let n = notifier(&format!(
        "payload_templates: {{harmful_content: '{{\"event\": {{{{event}}}}, \"severity\": {{{{severity}}}}}}'}}\n\
         webhooks:\n\
         - {{url: '{}', id: matched, events: [rate_limit_exceeded, tool_success],\
             match: {{tool: ['search*', fetch], tenant: acme}}, exclude: {{user: '*@test.example.com'}}}}\n\
         - {{url: '{}', id: serious, events: [rate_limit_exceeded, harmful_content], min_severity: error}}",
        rx.url("/matched"),
        rx.url("/serious")
    ));
    rate_limited(&n, "alice", "search_web"); // matched
    rate_limited(&n, "alice", "fetch"); // matched
    rate_limited(&n, "alice", "delete"); // tool does not match
    rate_limited(&n, "bot@test.example.com", "search"); // excluded
    let harmful = json!({"code": "HARMFUL", "reason": "harmful content"});
    n.notify(Event::HarmfulContent, &json!({}), Some(harmful), None)
        .unwrap();
    n.notify(Event::PiiDetected, &json!({}), Some(json!({"code": "PII"})), None)
        .unwrap(); // nobody's
    assert!(n.flush(WAIT));
    let received = rx.received();
    let at = |path: &str| {
        received
            .iter()
            .filter(|r| r.path == path)
            .map(Received::json)
            .collect::<Vec<_>>()
    };
    let matched = at("/matched");
    let tools: Vec<&str> = matched
        .iter()
        .map(|m| m["metadata"]["tool_name"].as_str().unwrap())
        .collect();
    assert_eq!(tools.len(), 2);
    assert!(tools.contains(&"search_web") && tools.contains(&"fetch"));
    let serious = at("/serious");
    assert_eq!(serious.len(), 1);
    assert_eq!(
        (serious[0]["event"].as_str(), serious[0]["severity"].as_str()),
        (Some("harmful_content"), Some("critical"))
    );
    let stats = n.stats();
    assert_eq!((stats.webhooks[0].filtered, stats.webhooks[0].delivered), (2, 2));
    assert_eq!(
        (stats.webhooks[1].filtered, stats.webhooks[1].delivered),
        (4, 1),
        "warning < error; pii was never its business"
    );
    let metrics = n.metrics();
    assert!(
        metrics.contains(r#"webhook_notification_filtered_total{plugin="Alerts",webhook="serious"} 4"#),
        "{metrics}"
    );
}

#[test]
fn a_threshold_speaks_only_once_crossed_and_counts_its_window() {
    let rx = Receiver::ok();
    let n = notifier(&format!(
        "webhooks:
           - {{url: '{}', id: slow, events: [rate_limit_exceeded], digest: {{threshold: {{count: 5, window: 1h}}, group_interval: 1h}}}}
           - {{url: '{}', id: fleeting, events: [rate_limit_exceeded], digest: {{threshold: {{count: 100, window: 100ms}}, group_by: [user]}}}}",
        rx.url("/slow"),
        rx.url("/fleeting")
    ));
    for _ in 0..4 {
        rate_limited(&n, "alice", "search");
    }
    assert!(n.flush(WAIT));
    assert!(rx.received().is_empty(), "below the threshold: nothing");
    assert_eq!(n.stats().webhooks[0].groups, 1);
    rate_limited(&n, "alice", "search"); // the fifth
    assert!(n.flush(WAIT));
    let sent = rx.wait_for(1, WAIT);
    let slow: Vec<Value> = sent
        .iter()
        .filter(|r| r.path == "/slow")
        .map(Received::json)
        .collect();
    assert_eq!(slow.len(), 1);
    assert_eq!(
        slow[0]["digest"]["count"], 5,
        "the first message counts every event in the window"
    );
    // The fleeting webhook's 5 events leave their 100 ms window unfired.
    wait_until("the events age out of the window", WAIT, || {
        n.stats().webhooks[1].below_threshold == 5
    });
    n.close(WAIT).unwrap();
    assert!(
        rx.received().iter().all(|r| r.path == "/slow"),
        "a group that never fired sends nothing, at close included"
    );
}

#[test]
fn pagerduty_triggers_once_per_group_then_resolves_on_the_same_key() {
    let rx = Receiver::start(|_| Reply::status(202));
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', format: pagerduty, routing_key: R0UTING, events: [tool_error],
                     digest: {{group_by: [tool], group_interval: 100ms, resolve_after: 1s}}}}]",
        rx.url("/v2/enqueue")
    ));
    for _ in 0..5 {
        let metadata = json!({"tool_name": "search", "error": "upstream timed out"});
        n.notify(
            Event::ToolError,
            &json!({"server_id": "gw-1"}),
            None,
            Some(metadata),
        )
        .unwrap();
    }
    let sent = rx.wait_for(2, WAIT);
    let bodies: Vec<Value> = sent.iter().map(Received::json).collect();
    let (first, last) = (&bodies[0], bodies.last().unwrap());
    assert_eq!(first["event_action"], "trigger");
    assert_eq!(first["routing_key"], "R0UTING");
    assert_eq!(first["payload"]["source"], "gw-1");
    assert_eq!(first["payload"]["severity"], "error");
    assert_eq!(first["payload"]["component"], "search");
    assert_eq!(first["dedup_key"].as_str().unwrap().len(), 16);
    // Two triggers (1, then 4) may come before the resolve, all on one key.
    wait_until("the group resolves", WAIT, || {
        rx.received()
            .last()
            .is_some_and(|r| r.json()["event_action"] == "resolve")
    });
    let all: Vec<Value> = rx.received().iter().map(Received::json).collect();
    assert!(all.iter().all(|b| b["dedup_key"] == first["dedup_key"]));
    let counted: u64 = all
        .iter()
        .filter(|b| b["event_action"] == "trigger")
        .map(|b| {
            b["payload"]["custom_details"]["count"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(counted, 5);
    assert_eq!(n.stats().webhooks[0].groups, 0, "the resolved group is closed");
    assert_eq!(last["dedup_key"], first["dedup_key"]);
}

#[test]
fn close_sends_the_uncounted_events_of_every_firing_group() {
    let rx = Receiver::ok();
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [rate_limit_exceeded], format: slack, max_rate: 1000,
                     digest: {{group_by: [tool], group_interval: 1h}}}}]",
        rx.url("/slack")
    ));
    let long_user = "ü".repeat(10_000);
    for _ in 0..10 {
        rate_limited(&n, &long_user, "search");
    }
    assert!(n.flush(WAIT));
    assert_eq!(
        rx.received().len(),
        1,
        "the first message; the rest waits for the interval"
    );
    n.close(WAIT).unwrap();
    let bodies: Vec<Value> = rx.received().iter().map(Received::json).collect();
    assert_eq!(bodies.len(), 2);
    let text = bodies[1]["text"].as_str().unwrap();
    assert!(
        text.starts_with("warning rate_limit_exceeded ×9 — search "),
        "{text}"
    );
    let header = bodies[1]["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(header.chars().count() <= 150);
    for field in bodies[1]["blocks"][1]["fields"].as_array().unwrap() {
        assert!(
            field["text"].as_str().unwrap().chars().count() <= 2000,
            "fields are cut to Slack's limit"
        );
    }
}

#[test]
fn the_last_detach_from_a_shared_engine_sends_its_digest_counts_before_it_closes() {
    let rx = Receiver::ok();
    let text = format!(
        "webhooks: [{{url: '{}', events: [rate_limit_exceeded], digest: {{group_interval: 1h}}}}]",
        rx.url("/shared")
    );
    let config = webhook_notification::Config::load(&text).unwrap();
    let n = Notifier::shared(config, Some("SharedAlerts")).unwrap();
    for _ in 0..7 {
        rate_limited(&n, "alice", "search");
    }
    assert!(n.flush(WAIT));
    n.close(WAIT).unwrap(); // detaches; the engine closes once idle
    let counts: Vec<u64> = rx
        .wait_for(2, WAIT)
        .iter()
        .map(|r| r.json()["digest"]["count"].as_u64().unwrap())
        .collect();
    assert_eq!(
        counts,
        [1, 6],
        "the idle engine's uncounted events were sent, not dropped"
    );
}

#[test]
fn every_digested_event_ends_in_a_counter_at_close() {
    // A threshold group that never fired: its events are below_threshold once the engine closes.
    let rx = Receiver::ok();
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [rate_limit_exceeded], digest: {{group_by: [user], threshold: {{count: 10, window: 1h}}}}}}]",
        rx.url("/")
    ));
    (0..3).for_each(|_| rate_limited(&n, "alice", "search"));
    assert!(n.flush(WAIT));
    assert_eq!(
        n.stats().webhooks[0].below_threshold,
        0,
        "still within the window"
    );
    n.close(WAIT).unwrap();
    assert_eq!(n.stats().webhooks[0].below_threshold, 3);
    assert!(rx.received().is_empty());

    // Digest messages refused for good: each is one failed delivery, and their events are
    // counted in digest_events_lost (1 in the group's first message, 4 in the one at close).
    let rx = Receiver::start(|_| Reply::status(400));
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', events: [rate_limit_exceeded], digest: {{group_by: [user], group_interval: 1h}}}}]",
        rx.url("/")
    ));
    (0..5).for_each(|_| rate_limited(&n, "alice", "search"));
    n.close(WAIT).unwrap();
    let webhook = &n.stats().webhooks[0];
    assert_eq!(
        (webhook.failed, webhook.digest_events_lost),
        (2, 5),
        "{webhook:?}"
    );
}
