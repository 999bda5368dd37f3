//! Slack incoming webhooks: `{"text", "blocks"}` with a header, a section of fields and a
//! context line (Block Kit). Limits: header plain_text ≤ 150 characters, section text
//! ≤ 3000, ≤ 10 fields of ≤ 2000, context ≤ 10 elements, ≤ 50 blocks, `text` ≤ 40,000.

use serde_json::{json, Value};

use super::{array_at, check_len, truncate, Alert};

const HEADER: usize = 150;
const SECTION: usize = 3000;
const FIELDS: usize = 10;
const FIELD: usize = 2000;
const CONTEXT_ELEMENTS: usize = 10;
const CONTEXT: usize = 2000;
const BLOCKS: usize = 50;
const TEXT: usize = 40_000;

/// `&`, `<` and `>` are control characters in Slack's mrkdwn.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escaped, then cut to `max` characters (the escapes count), never inside an escape: a cut
/// `&am…` would show as text, or worse, leave a bare `&`.
fn escaped(text: &str, max: usize) -> String {
    let escaped = escape(text);
    let cut = truncate(&escaped, max);
    if cut.len() == escaped.len() {
        return cut;
    }
    let kept = cut.trim_end_matches('…');
    match kept.rfind('&') {
        Some(at) if !kept[at..].contains(';') => format!("{}…", &kept[..at]),
        _ => cut,
    }
}

/// Escaped and cut (see [`escaped`]), as a mrkdwn text object.
fn mrkdwn(text: &str, max: usize) -> Value {
    json!({"type": "mrkdwn", "text": escaped(text, max)})
}

pub(super) fn body(alert: &Alert<'_>) -> Value {
    let summary = alert.summary();
    let mut section = format!("*{summary}*");
    if let Some(reason) = alert.reason() {
        section.push('\n');
        section.push_str(&reason);
    }
    let section = escaped(&section, SECTION);
    let fields: Vec<Value> = alert
        .facts()
        .into_iter()
        .take(FIELDS)
        .map(|(label, value)| mrkdwn(&format!("*{label}*\n{value}"), FIELD))
        .collect();
    let header = format!("{} {}", alert.severity, alert.event);
    json!({
        // The notification text is mrkdwn too: `<!channel>` there would ping the channel.
        "text": escaped(&summary, TEXT),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": truncate(&header, HEADER)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": section},
             "fields": fields},
            {"type": "context", "elements": [mrkdwn(&alert.footer(), CONTEXT)]},
        ],
    })
}

pub(super) fn violations(body: &Value) -> Vec<String> {
    let mut found = Vec::new();
    check_len(&mut found, body, "/text", TEXT);
    let blocks = array_at(body, "/blocks");
    if blocks.len() > BLOCKS {
        found.push(format!("/blocks has {} blocks; at most {BLOCKS}", blocks.len()));
    }
    for (i, block) in blocks.iter().enumerate() {
        let at = format!("/blocks/{i}");
        match block.get("type").and_then(Value::as_str) {
            Some("header") => check_len(&mut found, body, &format!("{at}/text/text"), HEADER),
            Some("section") => {
                check_len(&mut found, body, &format!("{at}/text/text"), SECTION);
                let fields = array_at(block, "/fields");
                if fields.len() > FIELDS {
                    found.push(format!("{at}/fields has {}; at most {FIELDS}", fields.len()));
                }
                for f in 0..fields.len() {
                    check_len(&mut found, body, &format!("{at}/fields/{f}/text"), FIELD);
                }
            }
            Some("context") => {
                let elements = array_at(block, "/elements");
                if elements.len() > CONTEXT_ELEMENTS {
                    found.push(format!(
                        "{at}/elements has {}; at most {CONTEXT_ELEMENTS}",
                        elements.len()
                    ));
                }
            }
            _ => {}
        }
    }
    found
}
