//! Batch framing for log and SIEM sinks (DESIGN "Batches"). Each event's rendered body
//! becomes one *element* when the event is rendered (so a stored delivery keeps it whole):
//! `ndjson` the compact body, `json_array` the body, `splunk_hec` a HEC event object,
//! `otlp_logs` an OTLP log record. A batch's request body frames its elements.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::Format;
use crate::template::trim_spare_room;

/// The library's name as sinks see it (Splunk `source`, the OTLP scope).
const SOURCE: &str = "webhook-notification";

/// The element of one event in `format`'s batches: `body` is the event's rendered JSON
/// (`one_line` when its source never breaks a line), `vars` gives its template variables
/// (asked only by the formats that read them).
pub fn element<'v>(
    format: Format,
    body: Bytes,
    one_line: bool,
    vars: impl FnOnce() -> &'v Map<String, Value>,
) -> Result<Bytes, String> {
    let parsed = || serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string());
    match format {
        // A body that may break a line (a template laid out on several) is written again on
        // one; most templates are known not to, and are not searched for every event.
        Format::Ndjson if !one_line && (body.contains(&b'\n') || body.contains(&b'\r')) => {
            Ok(Bytes::from(parsed()?.to_string()))
        }
        Format::SplunkHec => {
            let vars = vars();
            let (secs, nanos) = raised(vars);
            let time = secs as f64 + f64::from(nanos / 1_000_000) / 1000.0;
            let event = json!({"time": time, "host": text(vars, "plugin_name"), "source": SOURCE,
                "sourcetype": "_json", "event": parsed()?});
            Ok(Bytes::from(event.to_string()))
        }
        Format::OtlpLogs => Ok(Bytes::from(log_record(&body, vars()).to_string())),
        _ => Ok(body),
    }
}

/// The request body of a batch of `elements` in `format`; `plugin_name` names the service.
pub fn frame<'a>(
    format: Format,
    plugin_name: &str,
    elements: impl Iterator<Item = &'a [u8]> + Clone,
) -> Bytes {
    Framing::new(format, plugin_name).frame_all(elements)
}

/// How one format's batches frame their elements: what opens the body, separates two
/// elements and closes it. Built once per webhook when elements are joined as they come.
#[derive(Debug)]
pub struct Framing {
    open: Vec<u8>,
    separator: &'static [u8],
    close: &'static [u8],
}

impl Framing {
    /// The framing of `format`'s batches; `plugin_name` names the service (OTLP).
    pub fn new(format: Format, plugin_name: &str) -> Self {
        let (open, separator, close): (String, &[u8], &[u8]) = match format {
            Format::Ndjson | Format::SplunkHec => (String::new(), b"\n", b"\n"),
            Format::OtlpLogs => {
                let resource = json!({"attributes": [attribute("service.name", plugin_name)]});
                let scope = json!({"name": SOURCE, "version": env!("CARGO_PKG_VERSION")});
                let open = format!(
                    r#"{{"resourceLogs":[{{"resource":{resource},"scopeLogs":[{{"scope":{scope},"logRecords":["#
                );
                (open, b",", b"]}]}]}")
            }
            _ => ("[".into(), b",", b"]"),
        };
        Framing {
            open: open.into_bytes(),
            separator,
            close,
        }
    }

    /// A batch's body before its first element: the opening text, with `room` reserved for
    /// the rest.
    pub fn open(&self, room: usize) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.open.len() + room);
        body.extend_from_slice(&self.open);
        body
    }

    /// Appends `element` to `body`, opened by [`Framing::open`].
    pub fn join(&self, body: &mut Vec<u8>, element: &[u8]) {
        if body.len() > self.open.len() {
            body.extend_from_slice(self.separator);
        }
        body.extend_from_slice(element);
    }

    /// The bytes [`Framing::join`] adds besides an element, at most.
    pub fn separator_len(&self) -> usize {
        self.separator.len()
    }

    /// The bytes [`Framing::close`] adds.
    pub fn close_len(&self) -> usize {
        self.close.len()
    }

    /// The request body: `body` closed, in place, with little spare room (see
    /// [`trim_spare_room`]).
    pub fn close(&self, mut body: Vec<u8>) -> Bytes {
        body.extend_from_slice(self.close);
        trim_spare_room(&mut body);
        Bytes::from(body)
    }

    /// The request body of `elements`.
    pub fn frame_all<'a>(&self, elements: impl Iterator<Item = &'a [u8]> + Clone) -> Bytes {
        let room = elements
            .clone()
            .map(|e| e.len() + self.separator.len())
            .sum::<usize>();
        let mut body = self.open(room + self.close.len());
        elements.for_each(|element| self.join(&mut body, element));
        self.close(body)
    }
}

/// The `Content-Type` of `format`'s batches.
pub fn content_type(format: Format) -> &'static str {
    match format {
        Format::Ndjson => "application/x-ndjson",
        _ => "application/json",
    }
}

/// An OTLP log record of one event (OTLP/HTTP JSON encoding: 64-bit integers as strings,
/// trace and span ids as hex).
fn log_record(body: &[u8], vars: &Map<String, Value>) -> Value {
    let (secs, nanos) = raised(vars);
    let severity = text(vars, "severity");
    let number = match severity {
        "critical" => 21,
        "error" => 17,
        "warning" => 13,
        _ => 9,
    };
    let attributes: Vec<Value> = [
        ("event", "event"),
        ("request_id", "request_id"),
        ("user", "user"),
        ("tenant_id", "tenant_id"),
    ]
    .into_iter()
    .filter(|(_, var)| !text(vars, var).is_empty())
    .map(|(key, var)| attribute(key, text(vars, var)))
    .collect();
    let mut record = json!({
        "timeUnixNano": (u128::from(secs) * 1_000_000_000 + u128::from(nanos)).to_string(),
        "severityNumber": number,
        "severityText": severity,
        "body": {"stringValue": String::from_utf8_lossy(body)},
        "attributes": attributes,
    });
    for (key, var) in [("traceId", "trace_id"), ("spanId", "span_id")] {
        if !text(vars, var).is_empty() {
            record[key] = text(vars, var).into();
        }
    }
    record
}

/// An OTLP string attribute.
fn attribute(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// The string variable `name` ("" when absent or not a string).
fn text<'a>(vars: &'a Map<String, Value>, name: &str) -> &'a str {
    vars.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// When the event was raised (its `timestamp`, else now): seconds and nanoseconds since the
/// Unix epoch.
fn raised(vars: &Map<String, Value>) -> (u64, u32) {
    let time = humantime::parse_rfc3339(text(vars, "timestamp")).unwrap_or_else(|_| SystemTime::now());
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_secs(), since.subsec_nanos())
}
