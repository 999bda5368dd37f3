//! PagerDuty Events API v2 (`POST https://events.pagerduty.com/v2/enqueue`): a `trigger`
//! with the group's key as `dedup_key` (so PagerDuty folds a storm into one incident), and a
//! `resolve` with the same key when the group closes. Limits: `summary` ≤ 1024 characters;
//! the details are a bounded set of short fields, far under the 512 KB event limit.

use serde_json::{json, Map, Value};

use super::{check_len, truncate, Alert};

const SUMMARY: usize = 1024;
const DETAIL: usize = 1024;

pub(super) fn body(alert: &Alert<'_>, routing_key: &str, dedup_key: &str) -> Value {
    if alert.resolved {
        return json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key});
    }
    let source = alert
        .text(&["server_id"])
        .filter(|s| s != "unknown")
        .or_else(|| alert.text(&["plugin_name"]))
        .unwrap_or_else(|| "webhook-notification".into());
    let mut payload = json!({
        "summary": truncate(&alert.summary(), SUMMARY),
        "source": truncate(&source, DETAIL),
        "severity": alert.severity,
        "class": alert.event,
        "custom_details": details(alert),
    });
    let time = alert
        .text(&["digest", "last_seen"])
        .or(alert.text(&["timestamp"]));
    let optional = [
        ("timestamp", time),
        ("component", alert.subject()),
        ("group", alert.text(&["tenant_id"])),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            payload[key] = truncate(&value, DETAIL).into();
        }
    }
    json!({"routing_key": routing_key, "event_action": "trigger", "dedup_key": dedup_key,
        "payload": payload})
}

/// The facts and the reason, each cut to 1024 characters, and the digest's counts.
fn details(alert: &Alert<'_>) -> Value {
    let mut details = Map::new();
    for (label, value) in alert.facts() {
        let key = label.to_lowercase().replace(' ', "_");
        details.insert(key, truncate(&value, DETAIL).into());
    }
    if let Some(reason) = alert.reason() {
        details.insert("reason".into(), truncate(&reason, DETAIL).into());
    }
    if let Some(total) = alert.value(&["digest", "total"]) {
        details.insert("total".into(), total.clone());
    }
    Value::Object(details)
}

pub(super) fn violations(body: &Value) -> Vec<String> {
    let mut found = Vec::new();
    check_len(&mut found, body, "/payload/summary", SUMMARY);
    let action = body.get("event_action").and_then(Value::as_str);
    if !matches!(action, Some("trigger" | "resolve" | "acknowledge")) {
        found.push("/event_action must be trigger, resolve or acknowledge".into());
    }
    if action == Some("trigger") {
        let severity = body.pointer("/payload/severity").and_then(Value::as_str);
        if !matches!(severity, Some("critical" | "error" | "warning" | "info")) {
            found.push("/payload/severity must be critical, error, warning or info".into());
        }
        if body.pointer("/payload/source").and_then(Value::as_str).is_none() {
            found.push("/payload/source is required".into());
        }
    }
    if body.get("routing_key").and_then(Value::as_str).is_none() {
        found.push("/routing_key is required".into());
    }
    found
}
