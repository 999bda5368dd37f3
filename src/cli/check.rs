//! `check`: a plugin config, or a whole cpex gateway config whose entries of our kind are
//! checked one by one. cpex renders the gateway file with Jinja2 first; this binary cannot,
//! so it strips `{% raw %}` tags and warns where Jinja would empty (or fail on) a template
//! variable. The wheel's console script renders with Jinja2 for real and passes its findings.

use std::path::Path;

use crate::config::yaml::{self, Value as Yaml};
use serde::{Deserialize, Serialize};

use serde_json::{json, Value};

use super::output::Output;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::notifier::DEFAULT_PLUGIN_NAME;
use crate::preview::channel_warnings;
use crate::template::VARIABLES;

/// The cpex `kind` of this plugin.
pub const KIND: &str = "cpex_webhook_notification.WebhookNotificationPlugin";

/// A `{{ }}` that Jinja renders before the plugin sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JinjaFinding {
    /// 1-based line in the gateway config file.
    pub line: usize,
    /// Where it stands: a template's field path, or the YAML key on that line.
    pub template: String,
    /// The expression, e.g. `violation.reason`.
    pub variable: String,
}

/// One problem `check` found.
#[derive(Serialize)]
struct Problem {
    /// `plugins[N]` for a gateway config entry, empty for a plugin config.
    entry: String,
    field: String,
    message: String,
}

/// Checks the config file at `path`; with `rendered`, the text was already rendered by
/// Jinja2 (the wheel's script) and `findings` are its warnings.
pub fn run(path: &Path, out: &Output) -> Result<i32> {
    check(path, None, out)
}

/// `check` for text Jinja2 already rendered, with the renderer's findings.
pub fn run_rendered(rendered: &Path, findings: Vec<JinjaFinding>, out: &Output) -> Result<i32> {
    check(rendered, Some(findings), out)
}

fn check(path: &Path, rendered: Option<Vec<JinjaFinding>>, out: &Output) -> Result<i32> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::InvalidArgument(format!("cannot read {}: {e}", path.display())))?;
    let (text, findings) = match rendered {
        Some(findings) => (text, findings),
        None => strip_jinja(&text),
    };
    let doc: Option<Yaml> = yaml::parse(&text).ok();
    let plugins = doc
        .as_ref()
        .and_then(|d| d.get("plugins"))
        .and_then(Yaml::as_sequence);
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut checked = 0;
    match plugins {
        Some(entries) => {
            for (i, entry) in entries.iter().enumerate() {
                if entry.get("kind").and_then(Yaml::as_str) != Some(KIND) {
                    continue;
                }
                checked += 1;
                let config = entry.get("config").cloned().unwrap_or(Yaml::Null);
                let config = yaml::to_text(&config);
                match Config::load(&config) {
                    Ok(config) => warnings.extend(
                        channel_warnings(&config, DEFAULT_PLUGIN_NAME)
                            .into_iter()
                            .map(|w| format!("plugins[{i}]: {w}")),
                    ),
                    Err(e) => problems.push(problem(format!("plugins[{i}]"), e)),
                }
            }
            if checked == 0 {
                out.warn(&format!("no plugin entry of kind {KIND} in this gateway config"));
            }
        }
        None => {
            checked = 1;
            match Config::load(&text) {
                Ok(config) => warnings.extend(channel_warnings(&config, DEFAULT_PLUGIN_NAME)),
                Err(e) => problems.push(problem(String::new(), e)),
            }
        }
    }
    print_verdict(out, checked, &problems_json(&problems), &findings, &warnings);
    Ok(if problems.is_empty() { 0 } else { 1 })
}

fn problem(entry: String, error: Error) -> Problem {
    match error {
        Error::Config { field, message } => Problem {
            entry,
            field,
            message,
        },
        other => Problem {
            entry,
            field: String::new(),
            message: other.to_string(),
        },
    }
}

fn problems_json(problems: &[Problem]) -> Vec<serde_json::Value> {
    problems
        .iter()
        .map(|p| serde_json::to_value(p).unwrap_or_default())
        .collect()
}

/// Removes `{% raw %}` / `{% endraw %}` tags and lists each `{{ }}` outside them whose
/// variable is one of ours (Jinja would render it empty, or fail on a dotted path).
fn strip_jinja(text: &str) -> (String, Vec<JinjaFinding>) {
    let mut out = String::with_capacity(text.len());
    let mut findings = Vec::new();
    let mut raw = false;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        let mut kept = String::new();
        while !rest.is_empty() {
            let tag = if raw {
                rest.find("{% endraw %}")
            } else {
                rest.find("{% raw %}")
            };
            let (before, after) = match tag {
                Some(at) => (&rest[..at], Some(&rest[at..])),
                None => (rest, None),
            };
            if !raw {
                findings.extend(
                    expressions(before)
                        .filter(|v| is_ours(v))
                        .map(|variable| JinjaFinding {
                            line: number + 1,
                            template: key_of(line),
                            variable,
                        }),
                );
            }
            kept.push_str(before);
            match after {
                Some(after) => {
                    let len = if raw {
                        "{% endraw %}".len()
                    } else {
                        "{% raw %}".len()
                    };
                    rest = &after[len..];
                    raw = !raw;
                }
                None => rest = "",
            }
        }
        out.push_str(&kept);
    }
    (out, findings)
}

/// The expressions between `{{` and `}}` in `text`.
fn expressions(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}"))
        .map(|(e, _)| e.trim().to_owned())
}

fn is_ours(expression: &str) -> bool {
    let root = expression.split(['.', ' ', '|', '[']).next().unwrap_or_default();
    VARIABLES.contains(&root)
}

/// The YAML key a line sets, if it sets one.
fn key_of(line: &str) -> String {
    line.trim_start()
        .trim_start_matches("- ")
        .split_once(':')
        .map(|(k, _)| k.trim().to_owned())
        .unwrap_or_default()
}

/// Prints `check`'s verdict.
fn print_verdict(
    out: &Output,
    entries: usize,
    problems: &[Value],
    findings: &[JinjaFinding],
    warnings: &[String],
) {
    if out.is_json() {
        println!(
            "{}",
            json!({"ok": problems.is_empty(), "checked": entries, "errors": problems,
                   "jinja_warnings": findings, "format_warnings": warnings})
        );
        return;
    }
    for warning in warnings {
        out.warn(warning);
    }
    for f in findings {
        out.warn(&format!(
            "line {} ({}): Jinja renders `{{{{{}}}}}` before the plugin sees it (empty, or a failed load for a dotted path); put the templates inside {{% raw %}}…{{% endraw %}} or in payload_template_files",
            f.line, f.template, f.variable
        ));
    }
    for p in problems {
        let entry = p["entry"].as_str().unwrap_or_default();
        let field = p["field"].as_str().unwrap_or_default();
        let at = [entry, field]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(".config.");
        println!(
            "{} {at}: {}",
            out.paint("error", false),
            p["message"].as_str().unwrap_or_default()
        );
    }
    if problems.is_empty() {
        println!(
            "{} ({entries} config{} checked)",
            out.paint("ok", true),
            if entries == 1 { "" } else { "s" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jinja_tags_are_stripped_and_unprotected_variables_found() {
        let text = "plugins:\n  - config:\n      {% raw %}\n      payload_templates:\n        violation: '{\"u\": \"{{user}}\"}'\n      {% endraw %}\n      default_template: '{\"r\": \"{{ violation.reason }}\", \"e\": \"{{ env.HOME }}\"}'\n";
        let (stripped, findings) = strip_jinja(text);
        assert!(!stripped.contains("{%"));
        assert!(stripped.contains("{{user}}"));
        assert_eq!(
            findings,
            [JinjaFinding {
                line: 7,
                template: "default_template".into(),
                variable: "violation.reason".into()
            }]
        );
    }
}
