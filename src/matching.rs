//! What alerting reads from an event: the named fields of `match`, `exclude` and
//! `group_by` (event, tool, prompt, resource, subject, user, tenant, server, plugin,
//! severity, violation.code), dotted paths into the template variables (`metadata.x`,
//! `violation.details.y`), and the globs (`*`, `?`, case-sensitive) they are matched with.
//! Everything here reads an event's assembled variables, so it runs on the delivery
//! runtime, never on the hook's thread.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use wildmatch::WildMatch;

/// The names `match`, `exclude` and `group_by` accept.
pub const FIELD_NAMES: [&str; 11] = [
    "event",
    "tool",
    "prompt",
    "resource",
    "subject",
    "user",
    "tenant",
    "server",
    "plugin",
    "severity",
    "violation.code",
];

/// One thing read from an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// One of [`FIELD_NAMES`], by index.
    Named(usize),
    /// A dotted path into the template variables (group_by only), e.g. `metadata.region`.
    Path(Vec<String>),
}

impl Field {
    /// A named field; None when `name` is not one of [`FIELD_NAMES`].
    pub fn named(name: &str) -> Option<Field> {
        FIELD_NAMES.iter().position(|n| *n == name).map(Field::Named)
    }

    /// A named field, or a dotted path of at least two segments (`metadata.region`).
    pub fn named_or_path(name: &str) -> Option<Field> {
        Field::named(name).or_else(|| {
            let segments: Vec<String> = name.split('.').map(str::to_owned).collect();
            let valid = segments.len() >= 2 && segments.iter().all(|s| !s.is_empty());
            valid.then_some(Field::Path(segments))
        })
    }

    /// How config and `{{digest.group}}` name it.
    pub fn name(&self) -> String {
        match self {
            Field::Named(i) => FIELD_NAMES[*i].to_owned(),
            Field::Path(segments) => segments.join("."),
        }
    }

    /// Its value in an event's variables; None when absent or null.
    pub fn value<'a>(&self, vars: &'a Map<String, Value>) -> Option<&'a Value> {
        let at = |path: &[&str]| {
            let (first, rest) = path.split_first()?;
            rest.iter()
                .try_fold(vars.get(*first)?, |v, key| v.get(key))
                .filter(|v| !v.is_null())
        };
        match self {
            Field::Named(i) => match FIELD_NAMES[*i] {
                "tool" => at(&["metadata", "tool_name"]),
                "prompt" => at(&["metadata", "prompt_id"]),
                "resource" => at(&["metadata", "resource_uri"]),
                "subject" => subject(vars),
                "tenant" => at(&["tenant_id"]),
                "server" => at(&["server_id"]),
                "plugin" => at(&["plugin_name"]),
                "violation.code" => at(&["violation", "code"]),
                name => at(&[name]),
            },
            Field::Path(segments) => {
                let path: Vec<&str> = segments.iter().map(String::as_str).collect();
                at(&path)
            }
        }
    }
}

/// An event's subject: its tool, else its prompt, else its resource.
pub fn subject(vars: &Map<String, Value>) -> Option<&Value> {
    let metadata = vars.get("metadata")?;
    ["tool_name", "prompt_id", "resource_uri"]
        .iter()
        .filter_map(|key| metadata.get(*key))
        .find(|v| !v.is_null())
}

/// A value as text for globs and summaries: a string as it is, anything else as compact JSON.
pub fn text(value: &Value) -> std::borrow::Cow<'_, str> {
    match value {
        Value::String(s) => s.into(),
        other => other.to_string().into(),
    }
}

/// A group's key: 16 hex digits of SHA-256 over the webhook's id and the group's values
/// (stable across processes and versions, so a fleet agrees on it; PagerDuty's `dedup_key`).
pub fn group_key(webhook_id: &str, group: &Map<String, Value>) -> String {
    let mut hash = Sha256::new();
    hash.update(webhook_id.as_bytes());
    hash.update([0]);
    hash.update(Value::Object(group.clone()).to_string().as_bytes());
    hash.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The values of `fields` in an event's variables, by field name (absent ones as null).
pub fn group_of(fields: &[Field], vars: &Map<String, Value>) -> Map<String, Value> {
    fields
        .iter()
        .map(|f| (f.name(), f.value(vars).cloned().unwrap_or(Value::Null)))
        .collect()
}

/// `match` or `exclude`: fields, each with globs.
#[derive(Debug, Default)]
pub struct Matcher {
    rules: Vec<(Field, Vec<WildMatch>)>,
}

impl Matcher {
    /// Adds a field and its globs (any of which may match).
    pub fn add(&mut self, field: Field, globs: &[String]) {
        let globs = globs.iter().map(|g| WildMatch::new(g)).collect();
        self.rules.push((field, globs));
    }

    /// Whether every field matches one of its globs (an absent field matches none).
    pub fn all(&self, vars: &Map<String, Value>) -> bool {
        self.rules.iter().all(|rule| rule_matches(rule, vars))
    }

    /// Whether some field matches one of its globs.
    pub fn any(&self, vars: &Map<String, Value>) -> bool {
        self.rules.iter().any(|rule| rule_matches(rule, vars))
    }
}

fn rule_matches((field, globs): &(Field, Vec<WildMatch>), vars: &Map<String, Value>) -> bool {
    field
        .value(vars)
        .is_some_and(|v| globs.iter().any(|g| g.matches(&text(v))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn fields_read_the_documented_places() {
        let v = vars(json!({"event": "tool_error", "user": "a@x", "tenant_id": "acme",
            "server_id": null, "plugin_name": "p", "severity": "error",
            "violation": {"code": "RATE", "details": {"n": 3}},
            "metadata": {"prompt_id": "greet", "region": "eu"}}));
        let get = |name: &str| Field::named_or_path(name).unwrap().value(&v).cloned();
        assert_eq!(get("subject"), Some(json!("greet")));
        assert_eq!(get("tool"), None);
        assert_eq!(get("server"), None, "null is absent");
        assert_eq!(get("violation.code"), Some(json!("RATE")));
        assert_eq!(get("violation.details.n"), Some(json!(3)));
        assert_eq!(get("metadata.region"), Some(json!("eu")));
        assert!(Field::named_or_path("region").is_none() && Field::named_or_path("a..b").is_none());
    }

    #[test]
    fn match_needs_every_field_exclude_any() {
        let v = vars(json!({"user": "bot@test.example.com", "tenant_id": "acme",
            "metadata": {"tool_name": "search_web"}}));
        let mut m = Matcher::default();
        m.add(Field::named("tool").unwrap(), &["search*".into(), "fetch".into()]);
        m.add(Field::named("tenant").unwrap(), &["acme".into()]);
        assert!(m.all(&v));
        m.add(Field::named("server").unwrap(), &["*".into()]);
        assert!(!m.all(&v), "an absent field matches no glob, not even *");
        let mut x = Matcher::default();
        x.add(Field::named("user").unwrap(), &["*@test.example.com".into()]);
        x.add(Field::named("tenant").unwrap(), &["other".into()]);
        assert!(x.any(&v));
        let mut case = Matcher::default();
        case.add(Field::named("tenant").unwrap(), &["ACME".into()]);
        assert!(!case.any(&v), "globs are case-sensitive");
    }

    #[test]
    fn group_keys_are_stable_and_distinct() {
        let v = vars(json!({"event": "violation", "user": "a", "metadata": {"tool_name": "t"}}));
        let fields = [Field::named("event").unwrap(), Field::named("tenant").unwrap()];
        let group = group_of(&fields, &v);
        assert_eq!(
            Value::Object(group.clone()),
            json!({"event": "violation", "tenant": null})
        );
        let key = group_key("hook", &group);
        assert_eq!(key.len(), 16);
        assert_eq!(key, group_key("hook", &group_of(&fields, &v)));
        assert_ne!(key, group_key("other", &group));
        let tool = group_of(&[Field::named("tool").unwrap()], &v);
        assert_ne!(key, group_key("hook", &tool));
    }
}
