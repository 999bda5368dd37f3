//! Microsoft Teams through a Workflows webhook: a message with one Adaptive Card 1.4 (a bold
//! summary, the reason, a FactSet, a footer), no `msteams` extension or 1.5+ property. The
//! whole request body stays ≤ 28,672 bytes: strings are cut to a budget that halves until
//! the body fits.

use serde_json::{json, Value};

use super::{truncate, Alert};

const MAX_BYTES: usize = 28_672;
const CARD: &str = "application/vnd.microsoft.card.adaptive";

/// The summary's colour (Adaptive Cards' named colours, in the schema's own casing).
fn color(severity: &str) -> &'static str {
    match severity {
        "critical" | "error" => "Attention",
        "warning" => "Warning",
        _ => "Accent",
    }
}

fn card(alert: &Alert<'_>, budget: usize) -> Value {
    let text = |s: &str| truncate(s, budget);
    let facts: Vec<Value> = alert
        .facts()
        .into_iter()
        .map(|(title, value)| json!({"title": title, "value": text(&value)}))
        .collect();
    let mut body = vec![
        json!({"type": "TextBlock", "text": text(&alert.summary()), "weight": "Bolder",
        "size": "Medium", "color": color(alert.severity), "wrap": true}),
    ];
    if let Some(reason) = alert.reason() {
        body.push(json!({"type": "TextBlock", "text": text(&reason), "wrap": true}));
    }
    body.push(json!({"type": "FactSet", "facts": facts}));
    body.push(
        json!({"type": "TextBlock", "text": text(&alert.footer()), "size": "Small",
        "isSubtle": true, "wrap": true}),
    );
    json!({"type": "message", "attachments": [{"contentType": CARD, "content": {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard", "version": "1.4", "body": body}}]})
}

pub(super) fn body(alert: &Alert<'_>) -> Value {
    let mut budget = 4000;
    loop {
        let message = card(alert, budget);
        if budget <= 16 || message.to_string().len() <= MAX_BYTES {
            return message;
        }
        budget /= 2;
    }
}

pub(super) fn violations(body: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = body.to_string().len();
    if bytes > MAX_BYTES {
        found.push(format!("the body has {bytes} bytes; at most {MAX_BYTES}"));
    }
    let card = body.pointer("/attachments/0/content");
    if card.and_then(|c| c.get("version")).and_then(Value::as_str) != Some("1.4") {
        found.push("/attachments/0/content is not an Adaptive Card 1.4".into());
    }
    found
}
