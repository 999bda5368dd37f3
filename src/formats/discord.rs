//! Discord webhooks: `{"content", "embeds": [{title, description, fields, color, timestamp}]}`.
//! Limits: content ≤ 2000 characters; an embed's title ≤ 256, description ≤ 4096, ≤ 25 fields
//! with names ≤ 256 and values ≤ 1024, and all its text together ≤ 6000. The budgets below
//! keep the sum under 6000 whatever the lengths of the event's strings.

use serde_json::{json, Value};

use super::{array_at, chars_at, check_len, truncate, Alert};

const CONTENT: usize = 2000;
const TITLE: usize = 256;
const DESCRIPTION: usize = 4096;
const FIELDS: usize = 25;
const FIELD_NAME: usize = 256;
const FIELD_VALUE: usize = 1024;
const EMBED_TOTAL: usize = 6000;
/// What this format spends at most: 256 + 2000 + 11 × (16 + 300) + 200 = 5932 ≤ 6000.
const OWN_DESCRIPTION: usize = 2000;
const OWN_VALUE: usize = 300;
const OWN_FOOTER: usize = 200;

/// The embed's colour: red shades for critical and error, yellow, blue.
fn color(severity: &str) -> u32 {
    match severity {
        "critical" => 0x99_2D_22,
        "error" => 0xE7_4C_3C,
        "warning" => 0xF1_C4_0F,
        _ => 0x34_98_DB,
    }
}

pub(super) fn body(alert: &Alert<'_>) -> Value {
    let summary = alert.summary();
    let fields: Vec<Value> = alert
        .facts()
        .into_iter()
        .map(|(name, value)| json!({"name": name, "value": truncate(&value, OWN_VALUE), "inline": true}))
        .collect();
    let mut embed = json!({
        "title": truncate(&format!("{} {}", alert.severity, alert.event), TITLE),
        "description": truncate(&alert.reason().unwrap_or_else(|| summary.clone()), OWN_DESCRIPTION),
        "color": color(alert.severity),
        "fields": fields,
        "footer": {"text": truncate(&alert.footer(), OWN_FOOTER)},
    });
    if let Some(time) = alert
        .text(&["digest", "last_seen"])
        .or(alert.text(&["timestamp"]))
    {
        embed["timestamp"] = time.into();
    }
    // No host string may ping: `@everyone`, `@here`, `<@id>` are shown, never parsed.
    json!({"content": truncate(&summary, CONTENT), "embeds": [embed], "allowed_mentions": {"parse": []}})
}

pub(super) fn violations(body: &Value) -> Vec<String> {
    let mut found = Vec::new();
    check_len(&mut found, body, "/content", CONTENT);
    for (e, _) in array_at(body, "/embeds").iter().enumerate() {
        let at = format!("/embeds/{e}");
        check_len(&mut found, body, &format!("{at}/title"), TITLE);
        check_len(&mut found, body, &format!("{at}/description"), DESCRIPTION);
        let mut total = ["title", "description", "footer/text"]
            .iter()
            .map(|p| chars_at(body, &format!("{at}/{p}")))
            .sum::<usize>();
        let fields = array_at(body, &format!("{at}/fields"));
        if fields.len() > FIELDS {
            found.push(format!("{at}/fields has {}; at most {FIELDS}", fields.len()));
        }
        for f in 0..fields.len() {
            let name = format!("{at}/fields/{f}/name");
            let value = format!("{at}/fields/{f}/value");
            check_len(&mut found, body, &name, FIELD_NAME);
            check_len(&mut found, body, &value, FIELD_VALUE);
            total += chars_at(body, &name) + chars_at(body, &value);
        }
        if total > EMBED_TOTAL {
            found.push(format!(
                "{at} has {total} characters of text; at most {EMBED_TOTAL}"
            ));
        }
    }
    found
}
