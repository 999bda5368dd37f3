//! How the CLI prints: text for people (green/red only on a terminal), or one JSON document
//! per command (one per request for `listen`) with `--json`.

use std::io::IsTerminal;

use serde_json::{json, Value};

use crate::preview::Preview;
use crate::store::DeadLetterView;

/// The chosen output style.
pub struct Output {
    json: bool,
    color: bool,
}

impl Output {
    /// JSON when `json`; colour when stdout is a terminal.
    pub fn new(json: bool) -> Self {
        Output {
            json,
            color: !json && std::io::stdout().is_terminal(),
        }
    }

    /// Whether output is JSON documents.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// `text` in green (`ok`) or red, on a terminal; as it is otherwise.
    pub fn paint(&self, text: &str, ok: bool) -> String {
        match (self.color, ok) {
            (false, _) => text.to_owned(),
            (true, true) => format!("\x1b[32m{text}\x1b[0m"),
            (true, false) => format!("\x1b[31m{text}\x1b[0m"),
        }
    }

    /// A plain line (text mode) or `{"message": …}`.
    pub fn line(&self, text: &str) {
        match self.json {
            true => println!("{}", json!({ "message": text })),
            false => println!("{text}"),
        }
    }

    /// A JSON document as it is (`--json` output of a command that returns data).
    pub fn document(&self, value: &Value) {
        println!("{value}");
    }

    /// A warning, on stderr.
    pub fn warn(&self, text: &str) {
        eprintln!("{}: {text}", self.paint("warning", false));
    }

    /// An error, on stderr.
    pub fn error(&self, text: &str) {
        eprintln!("{}: {text}", self.paint("error", false));
    }

    /// `render`'s requests.
    pub fn previews(&self, previews: &[Preview]) {
        if self.json {
            let docs: Vec<Value> = previews
                .iter()
                .map(|p| {
                    let body: Value = serde_json::from_str(&p.body).unwrap_or(Value::Null);
                    json!({"webhook": p.webhook_id, "url": p.url, "headers": p.headers, "body": body})
                })
                .collect();
            println!("{}", Value::Array(docs));
            return;
        }
        for p in previews {
            println!("== {} {}", p.webhook_id, p.url);
            for (name, value) in &p.headers {
                println!("{name}: {value}");
            }
            println!();
            println!("{}", p.body);
        }
    }

    /// `send`'s results.
    pub fn sent(&self, results: &[Value], finished: bool) {
        if self.json {
            println!("{}", json!({"finished": finished, "webhooks": results}));
            return;
        }
        for r in results {
            let ok = r["ok"] == true;
            let verdict = self.paint(if ok { "ok" } else { "FAILED" }, ok);
            let status = r["status"]
                .as_u64()
                .map_or("no response".into(), |s| format!("HTTP {s}"));
            let latency = r["latency_ms"]
                .as_f64()
                .map(|ms| format!(", {ms:.1} ms"))
                .unwrap_or_default();
            println!(
                "{verdict} {} {}: {status}{latency}, {} attempt(s){}",
                r["webhook"].as_str().unwrap_or_default(),
                r["url"].as_str().unwrap_or_default(),
                r["attempts"],
                r["error"].as_str().map(|e| format!(", {e}")).unwrap_or_default()
            );
        }
        if !finished {
            println!("{}", self.paint("timed out with deliveries still pending", false));
        }
    }

    /// `dead-letters`' list.
    pub fn dead_letters(&self, letters: &[DeadLetterView]) {
        if self.json {
            println!("{}", serde_json::to_string(letters).unwrap_or_default());
            return;
        }
        if letters.is_empty() {
            println!("no dead letters");
        }
        for l in letters {
            println!(
                "{} {} {} delivery {} after {} attempts: {} ({})",
                l.time,
                l.webhook_id,
                l.event,
                l.delivery_id,
                l.attempts,
                l.last_error,
                l.last_status.map_or("no status".into(), |s| format!("HTTP {s}"))
            );
        }
    }

    /// One request `listen` received.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
        verdicts: &[(String, Option<bool>)],
    ) {
        if self.json {
            let body: Value = serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into()));
            let verdicts: Vec<Value> = verdicts
                .iter()
                .map(|(scheme, ok)| json!({"scheme": scheme, "verified": ok}))
                .collect();
            println!(
                "{}",
                json!({"method": method, "path": path, "headers": headers, "body": body, "signatures": verdicts})
            );
            return;
        }
        println!("== {method} {path}");
        for (name, value) in headers {
            println!("{name}: {value}");
        }
        for (scheme, verdict) in verdicts {
            let text = match verdict {
                Some(true) => self.paint("verified", true),
                Some(false) => self.paint("NOT verified", false),
                None => "none sent".to_owned(),
            };
            println!("signature ({scheme}): {text}");
        }
        println!();
        println!("{}", pretty(&String::from_utf8_lossy(body)));
    }
}

/// Pretty JSON when the text is JSON, else the text.
fn pretty(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}
