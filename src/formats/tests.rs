use serde_json::{json, Map, Value};

use super::*;

fn vars(user: &str, tool: &str, reason: &str) -> Map<String, Value> {
    let v = json!({"event": "rate_limit_exceeded", "severity": "warning", "plugin_name": "p",
        "timestamp": "2026-11-30T10:00:00.000Z", "user": user, "tenant_id": "acme",
        "server_id": "unknown", "request_id": "r1",
        "violation": {"code": "RATE_LIMIT", "reason": reason},
        "metadata": {"tool_name": tool},
        "digest": {"count": 9999, "total": 12000, "window": "60 s", "key": "0123456789abcdef",
            "status": "firing", "first_seen": "2026-11-30T09:59:00.000Z",
            "last_seen": "2026-11-30T10:00:00.000Z"}});
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

const CHANNELS: [Format; 4] = [Format::Slack, Format::Teams, Format::Discord, Format::PagerDuty];

#[test]
fn the_summary_line_is_the_documented_one() {
    let v = vars("alice@example.com", "search", "too many");
    assert_eq!(
        Alert::of(&v).summary(),
        "warning rate_limit_exceeded ×9,999 — search alice@example.com (60 s)"
    );
    assert_eq!(
        (thousands(0), thousands(999), thousands(1_234_567)),
        ("0".into(), "999".into(), "1,234,567".into())
    );
    assert_eq!(truncate("abcdef", 4), "abc…");
}

#[test]
fn every_format_fits_its_channel_with_10_kb_strings() {
    let huge = "é<&>".repeat(2600);
    for format in CHANNELS {
        for v in [vars("alice", "search", "r"), vars(&huge, &huge, &huge)] {
            let body = body(format, &v, "R0UT1NG", "0123456789abcdef").unwrap();
            assert_eq!(violations(format, &body), Vec::<String>::new(), "{format:?}");
        }
    }
}

#[test]
fn the_validators_catch_what_a_channel_refuses() {
    let long = "x".repeat(50_000);
    let slack = json!({"text": long, "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x".repeat(151)}}]});
    assert_eq!(violations(Format::Slack, &slack).len(), 2);
    let teams = json!({"type": "message", "attachments": [{"content": {"version": "1.5", "body": [long]}}]});
    assert_eq!(violations(Format::Teams, &teams).len(), 2);
    let fields: Vec<Value> = (0..6)
        .map(|_| json!({"name": "n", "value": "v".repeat(1000)}))
        .collect();
    let discord = json!({"content": "c", "embeds": [{"title": "t", "fields": fields}]});
    assert_eq!(
        violations(Format::Discord, &discord).len(),
        1,
        "6,000 characters per embed"
    );
    assert_eq!(
        violations(Format::PagerDuty, &json!({"event_action": "trigger"})).len(),
        3
    );
}

#[test]
fn pagerduty_triggers_and_resolves_on_one_key() {
    let mut v = vars("alice", "search", "r");
    let trigger = body(Format::PagerDuty, &v, "KEY", "0123456789abcdef").unwrap();
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(
        trigger["payload"]["source"], "p",
        "server_id `unknown` gives way to the plugin"
    );
    assert_eq!(trigger["payload"]["component"], "search");
    assert_eq!(trigger["payload"]["group"], "acme");
    assert_eq!(trigger["payload"]["custom_details"]["count"], "9,999");
    v["digest"]["status"] = "resolved".into();
    let resolve = body(Format::PagerDuty, &v, "KEY", "0123456789abcdef").unwrap();
    assert_eq!(
        resolve,
        json!({"routing_key": "KEY", "event_action": "resolve", "dedup_key": "0123456789abcdef"})
    );
}

#[test]
fn slack_escapes_mrkdwn_and_teams_is_a_workflows_card() {
    let v = vars("<!channel> & co", "search", "r");
    let slack = body(Format::Slack, &v, "", "k").unwrap();
    assert!(slack.to_string().contains("&lt;!channel&gt; &amp; co"));
    assert!(!slack["blocks"][1]["text"]["text"]
        .as_str()
        .unwrap()
        .contains("<!channel>"));
    let teams = body(Format::Teams, &v, "", "k").unwrap();
    assert_eq!(
        teams["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(teams["attachments"][0]["content"]["type"], "AdaptiveCard");
    assert_eq!(body(Format::Default, &v, "", "k"), None);
}

#[test]
fn no_host_string_can_ping_or_link_in_slack_or_discord() {
    let v = vars(
        "<!channel> <@U123> <https://evil.example|click> @everyone & co",
        "search",
        "<!here>",
    );
    let slack = body(Format::Slack, &v, "", "k").unwrap().to_string();
    for raw in ["<!channel>", "<@U123>", "<https://evil", "<!here>"] {
        assert!(!slack.contains(raw), "{raw} reached Slack: {slack}");
    }
    let text = body(Format::Slack, &v, "", "k").unwrap()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.contains("&lt;!channel&gt;"),
        "the notification text is escaped too: {text}"
    );
    let discord = body(Format::Discord, &v, "", "k").unwrap();
    assert_eq!(discord["allowed_mentions"], json!({"parse": []}));
}

#[test]
fn slack_truncation_never_cuts_an_escape_in_half() {
    for pad in 0..8 {
        let reason = format!("{}{}", "x".repeat(2990 + pad), "&".repeat(20));
        let v = vars("u", "search", &reason);
        let section = body(Format::Slack, &v, "", "k").unwrap()["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(section.chars().count() <= 3000);
        let kept = section.trim_end_matches('…');
        if let Some(at) = kept.rfind('&') {
            assert!(kept[at..].starts_with("&amp;"), "a cut escape: {:?}", &kept[at..]);
        }
    }
}

#[test]
fn empty_host_strings_are_left_out_of_channel_bodies() {
    let mut v = vars("u", "search", "r");
    v.insert("tenant_id".into(), "".into());
    v.insert("server_id".into(), "".into());
    let discord = body(Format::Discord, &v, "", "k").unwrap();
    for field in discord["embeds"][0]["fields"].as_array().unwrap() {
        assert!(!field["value"].as_str().unwrap().trim().is_empty(), "{field}");
    }
    let pd = body(Format::PagerDuty, &v, "R", "k").unwrap();
    assert_eq!(
        pd["payload"]["source"], "p",
        "the plugin name when server_id is blank"
    );
    assert!(pd["payload"].get("group").is_none());
}
