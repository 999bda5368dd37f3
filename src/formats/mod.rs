//! Channel formats: built-in request bodies for Slack, Microsoft Teams (Workflows), Discord
//! and PagerDuty Events v2, built as JSON values from an event's variables (and its digest,
//! if any), so no user string can break them. Every body keeps its channel's documented
//! limits: long text is cut with "…", never sent for the channel to refuse. [`violations`]
//! checks a body against those limits (used by `check` for templates and by the tests).

pub(crate) mod batch;
mod discord;
mod email;
mod pagerduty;
mod slack;
mod teams;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::matching::{subject, text};

/// A webhook's `format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The templates' body (one JSON document per event, or per digest message).
    #[default]
    Default,
    Slack,
    Teams,
    Discord,
    #[serde(rename = "pagerduty")]
    PagerDuty,
    /// Batches: one compact body per line (the default with `batch`).
    Ndjson,
    /// Batches: a JSON array of bodies.
    JsonArray,
    /// Batches: Splunk HTTP Event Collector events, concatenated.
    SplunkHec,
    /// Batches: an OTLP/HTTP JSON `LogsData`, one log record per event.
    OtlpLogs,
    /// Mail (smtp:// and smtps:// webhooks): a plain-text message.
    Email,
}

impl Format {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Default => "default",
            Format::Slack => "slack",
            Format::Teams => "teams",
            Format::Discord => "discord",
            Format::PagerDuty => "pagerduty",
            Format::Ndjson => "ndjson",
            Format::JsonArray => "json_array",
            Format::SplunkHec => "splunk_hec",
            Format::OtlpLogs => "otlp_logs",
            Format::Email => "email",
        }
    }

    /// Whether it frames batches of template bodies (log and SIEM sinks).
    pub fn batches(self) -> bool {
        matches!(
            self,
            Format::Ndjson | Format::JsonArray | Format::SplunkHec | Format::OtlpLogs
        )
    }

    /// Whether it is a channel's own body (Slack, Teams, Discord, PagerDuty), built
    /// without templates.
    pub fn is_channel(self) -> bool {
        self != Format::Default && !self.batches()
    }

    /// Whether a group that closes after `resolve_after` sends a resolve message.
    pub fn resolves(self) -> bool {
        self == Format::PagerDuty
    }
}

/// The body of one message in `format` (None unless a channel format: the templates render
/// the others):
/// `vars` are the event's template variables, with `digest` when it is a digest message;
/// `routing_key` is PagerDuty's and `dedup_key` the alert's stable key.
pub fn body(format: Format, vars: &Map<String, Value>, routing_key: &str, dedup_key: &str) -> Option<Value> {
    let alert = Alert::of(vars);
    if !format.is_channel() {
        return None;
    }
    Some(match format {
        Format::Slack => slack::body(&alert),
        Format::Teams => teams::body(&alert),
        Format::Discord => discord::body(&alert),
        Format::PagerDuty => pagerduty::body(&alert, routing_key, dedup_key),
        Format::Email => email::body(&alert, None),
        _ => unreachable!("checked to be a channel format"),
    })
}

/// An email's `{"subject", "text"}` for `vars` (with `digest` for a digest message): the
/// subject given (a rendered `email.subject`), else the summary line.
pub fn email_body(vars: &Map<String, Value>, subject: Option<String>) -> Value {
    email::body(&Alert::of(vars), subject)
}

/// Where `body` exceeds `format`'s limits (empty when it fits).
pub fn violations(format: Format, body: &Value) -> Vec<String> {
    match format {
        Format::Slack => slack::violations(body),
        Format::Teams => teams::violations(body),
        Format::Discord => discord::violations(body),
        Format::PagerDuty => pagerduty::violations(body),
        _ => Vec::new(),
    }
}

/// What every format shows, read once from the variables.
pub(crate) struct Alert<'a> {
    vars: &'a Map<String, Value>,
    pub severity: &'a str,
    pub event: &'a str,
    /// Events this message counts (1 without a digest).
    pub count: u64,
    pub resolved: bool,
}

impl<'a> Alert<'a> {
    fn of(vars: &'a Map<String, Value>) -> Self {
        let digest = vars.get("digest");
        let str_of = |key: &str| vars.get(key).and_then(Value::as_str).unwrap_or("");
        Alert {
            vars,
            severity: str_of("severity"),
            event: str_of("event"),
            count: digest
                .and_then(|d| d.get("count"))
                .and_then(Value::as_u64)
                .unwrap_or(1),
            resolved: digest.and_then(|d| d.get("status")).and_then(Value::as_str) == Some("resolved"),
        }
    }

    /// A variable as text (None when absent or null).
    fn text(&self, path: &[&str]) -> Option<String> {
        let (first, rest) = path.split_first()?;
        let value = rest.iter().try_fold(self.vars.get(*first)?, |v, k| v.get(k))?;
        // Empty host strings (the gateway sends `tenant_id: ""`) are left out: channels refuse
        // empty fields (Discord) and blank required ones (PagerDuty's `source`).
        let text = text(value);
        (!value.is_null() && !text.trim().is_empty()).then(|| text.into_owned())
    }

    /// `<severity> <event> ×<count> — <subject> <user> (<window>)`.
    pub fn summary(&self) -> String {
        let mut line = format!("{} {} ×{}", self.severity, self.event, thousands(self.count));
        if self.resolved {
            line = format!("resolved: {line}");
        }
        let who: Vec<String> = [self.subject(), self.text(&["user"])]
            .into_iter()
            .flatten()
            .collect();
        if !who.is_empty() {
            line.push_str(" — ");
            line.push_str(&who.join(" "));
        }
        if let Some(window) = self.text(&["digest", "window"]) {
            line.push_str(&format!(" ({window})"));
        }
        line
    }

    /// The tool, prompt or resource the event is about.
    pub fn subject(&self) -> Option<String> {
        subject(self.vars).map(|v| text(v).into_owned())
    }

    /// Why: the violation's reason (and description), else the error of a failure.
    pub fn reason(&self) -> Option<String> {
        let reason = self.text(&["violation", "reason"]);
        let description = self.text(&["violation", "description"]);
        match (reason, description) {
            (Some(r), Some(d)) => Some(format!("{r}: {d}")),
            (Some(r), None) => Some(r),
            (None, Some(d)) => Some(d),
            (None, None) => self.text(&["metadata", "error"]),
        }
    }

    /// Labelled facts, those present only, most useful first.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let count = thousands(self.count);
        let rows: [(&'static str, Option<String>); 11] = [
            ("Severity", Some(self.severity.to_owned())),
            ("Event", Some(self.event.to_owned())),
            ("Count", Some(count)),
            ("Subject", self.subject()),
            ("User", self.text(&["user"])),
            ("Tenant", self.text(&["tenant_id"])),
            ("Server", self.text(&["server_id"])),
            ("Violation code", self.text(&["violation", "code"])),
            ("First seen", self.text(&["digest", "first_seen"])),
            (
                "Last seen",
                self.text(&["digest", "last_seen"]).or(self.text(&["timestamp"])),
            ),
            ("Request", self.text(&["request_id"])),
        ];
        rows.into_iter()
            .filter_map(|(label, value)| Some((label, value?)))
            .collect()
    }

    /// A digest message's samples, compact JSON each (empty without a digest).
    pub fn samples(&self) -> Vec<String> {
        self.vars
            .get("digest")
            .and_then(|d| d.get("samples"))
            .and_then(Value::as_array)
            .map_or_else(Vec::new, |samples| samples.iter().map(Value::to_string).collect())
    }

    /// The plugin that raised it and the group key, for footers.
    pub fn footer(&self) -> String {
        let mut parts = vec![format!(
            "plugin {}",
            self.text(&["plugin_name"]).unwrap_or_default()
        )];
        if let Some(key) = self.text(&["digest", "key"]) {
            parts.push(format!("group {key}"));
        }
        if let Some(total) = self
            .vars
            .get("digest")
            .and_then(|d| d.get("total"))
            .and_then(Value::as_u64)
        {
            parts.push(format!("{} since the group opened", thousands(total)));
        }
        parts.join(" · ")
    }

    /// A variable as it is (for PagerDuty's details).
    fn value(&self, path: &[&str]) -> Option<&'a Value> {
        let (first, rest) = path.split_first()?;
        let value = rest.iter().try_fold(self.vars.get(*first)?, |v, k| v.get(k))?;
        (!value.is_null()).then_some(value)
    }
}

/// `text` cut to at most `max` characters, the cut marked with "…".
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// `9999` → `9,999`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The length in characters of the string at `pointer` (0 when absent).
fn chars_at(body: &Value, pointer: &str) -> usize {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .map_or(0, |s| s.chars().count())
}

/// The array at `pointer` (empty when absent).
fn array_at<'a>(body: &'a Value, pointer: &str) -> &'a [Value] {
    body.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Appends a violation when the string at `pointer` is longer than `max` characters.
fn check_len(found: &mut Vec<String>, body: &Value, pointer: &str, max: usize) {
    let len = chars_at(body, pointer);
    if len > max {
        found.push(format!("{pointer} has {len} characters; at most {max}"));
    }
}

#[cfg(test)]
mod tests;
