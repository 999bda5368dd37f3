//! Email: `{"subject", "text"}`, mailed as a text/plain message (see `engine::smtp`). The
//! text is the summary, the reason, the facts one per line, and for a digest message its
//! first events as samples. Plain text: nothing in it can link or ping anyone.

use serde_json::{json, Value};

use super::{truncate, Alert};

/// A subject line is kept to this many characters (RFC 5322 recommends 78 per header line;
/// longer ones are folded by the mailer, but inboxes show about this much).
const SUBJECT: usize = 200;

pub(super) fn body(alert: &Alert<'_>, subject: Option<String>) -> Value {
    let summary = alert.summary();
    let subject = subject
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| summary.clone());
    let mut text = summary;
    if let Some(reason) = alert.reason() {
        text.push_str(&format!("\n\n{reason}"));
    }
    text.push_str("\n\n");
    for (label, value) in alert.facts() {
        text.push_str(&format!("{label}: {value}\n"));
    }
    let samples = alert.samples();
    if !samples.is_empty() {
        text.push_str(&format!("\nFirst {} events of the group:\n", samples.len()));
        for sample in samples {
            text.push_str(&format!("{sample}\n"));
        }
    }
    text.push_str(&format!("\n-- \n{}\n", alert.footer()));
    // One line: a header cannot hold a line break.
    let subject: String = subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    json!({"subject": truncate(&subject, SUBJECT), "text": text})
}
