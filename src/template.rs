//! Payload templates: the original plugin's `{{ path }}` syntax, rendered with `upon` so
//! that every value comes out as valid JSON wherever it stands.
//!
//! upon's own `{{ }}` syntax cannot compile ordinary JSON (`{"a": {"b": 1}}` reads `}}` as an
//! end tag) and fails on missing keys. So [`Template::compile`] first rewrites each
//! `{{ path }}` into an upon expression between delimiters that cannot occur in JSON text
//! (`\u{1}` … `\u{2}`), prefixing the path with the way it must be encoded: `s.` inside a
//! JSON string literal of the template, `j.` outside one. Rendering resolves each path
//! against the event's variables (missing → null) and encodes it:
//! - inside a string: a string's contents escaped, numbers and booleans as written, objects
//!   and arrays as their escaped compact JSON, null/missing as nothing;
//! - outside a string: the value as JSON, null/missing as `null`.

use once_cell::sync::Lazy;
use serde_json::Value;
use upon::{Engine, Syntax, ValueAccess, ValueMember};

/// Variables a template may name; anything else is a load-time error (a typo'd variable
/// would otherwise silently render as null in production).
pub const VARIABLES: [&str; 16] = [
    "event",
    "plugin_name",
    "timestamp",
    "request_id",
    "user",
    "user_info",
    "tenant_id",
    "server_id",
    "violation",
    "metadata",
    "payload",
    "delivery_id",
    // v3 alerting: every event's level; a digest message's counts (null otherwise).
    "severity",
    "digest",
    // v4: the event's W3C trace id and its first attempt's span id.
    "trace_id",
    "span_id",
];

/// The original plugin's default template.
pub const DEFAULT_TEMPLATE: &str = r#"{"event": "{{event}}", "plugin": "{{plugin_name}}", "timestamp": "{{timestamp}}", "request_id": "{{request_id}}", "user": "{{user}}", "tenant_id": "{{tenant_id}}", "server_id": "{{server_id}}", "violation": {{violation}}, "metadata": {{metadata}}}"#;

const BEGIN: &str = "\u{1}";
const END: &str = "\u{2}";
const IN_STRING: &str = "s";
const AS_VALUE: &str = "j";

static ENGINE: Lazy<Engine<'static>> = Lazy::new(|| {
    // Values reach upon already encoded as strings, which its default formatter writes verbatim.
    let mut engine = Engine::new();
    engine.set_syntax(Syntax::builder().expr(BEGIN, END).build());
    engine
});

/// A compiled payload template.
pub struct Template {
    compiled: upon::Template<'static>,
    per_delivery: bool,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template").finish_non_exhaustive()
    }
}

impl Template {
    /// Compiles `source`; the error says what is wrong and where (1-based line and column).
    pub fn compile(source: &str) -> Result<Self, String> {
        let (rewritten, per_delivery) = rewrite(source)?;
        let compiled = ENGINE
            .compile(rewritten)
            .map_err(|e| format!("template syntax error: {e}"))?;
        Ok(Template {
            compiled,
            per_delivery,
        })
    }

    /// Whether the output differs per delivery (it uses `{{delivery_id}}`); if not, one
    /// rendering serves every webhook that receives the event.
    pub fn varies_per_delivery(&self) -> bool {
        self.per_delivery
    }

    /// Renders with `vars`, which resolves a top-level variable by name. The output is
    /// JSON whenever the template's own text is; callers still parse it before sending.
    pub fn render<'v>(&self, vars: impl Fn(&str) -> Option<&'v Value>) -> Result<String, String> {
        self.compiled
            .render_from_fn(&ENGINE, |path: &[ValueMember<'_>]| Ok(encode(path, &vars)))
            .to_string()
            .map_err(|e| format!("template render error: {e}"))
    }

    /// The original plugin's default template, compiled once.
    pub fn builtin() -> &'static Template {
        static BUILTIN: Lazy<Template> =
            Lazy::new(|| Template::compile(DEFAULT_TEMPLATE).expect("the built-in template compiles"));
        &BUILTIN
    }
}

/// Turns every `{{ path }}` into an upon expression tagged with its JSON context; also says
/// whether `delivery_id` is used. Refuses a `{{ }}` that no encoding can make safe: right
/// after a backslash inside a string (it would escape the value's first character), or
/// outside a string where no JSON value may stand (an object key, after another value).
fn rewrite(source: &str) -> Result<(String, bool), String> {
    if source.contains(BEGIN) || source.contains(END) {
        return Err("template contains control characters U+0001/U+0002".into());
    }
    let mut out = String::with_capacity(source.len() + 16);
    let mut per_delivery = false;
    let mut in_string = false;
    let mut escaped = false;
    // Outside strings: the open containers, and the last significant character.
    let mut containers: Vec<char> = Vec::new();
    let mut previous: Option<char> = None;
    let mut rest = source;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("{{") {
            let close = rest
                .find("}}")
                .ok_or_else(|| at(source, rest, "`{{` without a closing `}}`"))?;
            let path = rest[2..close].trim();
            check_path(path).map_err(|m| at(source, rest, &m))?;
            if in_string && escaped {
                return Err(at(
                    source,
                    rest,
                    "`{{ }}` right after a backslash would be escaped by it",
                ));
            }
            if !in_string && !value_position(previous, containers.last()) {
                return Err(at(
                    source,
                    rest,
                    "`{{ }}` outside a string must stand where a JSON value goes (after `:`, in an array, or as the whole body); put it in quotes to use it as text or a key",
                ));
            }
            per_delivery |= path.split('.').next() == Some("delivery_id");
            let mode = if in_string { IN_STRING } else { AS_VALUE };
            out.push_str(&format!("{BEGIN} {mode}.{path} {END}"));
            rest = &rest[close + 2..];
            escaped = false;
            if !in_string {
                previous = Some('v');
            }
            continue;
        }
        match c {
            _ if in_string && escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => {
                in_string = !in_string;
                previous = Some('"');
            }
            _ if in_string => {}
            '{' | '[' => {
                containers.push(c);
                previous = Some(c);
            }
            '}' | ']' => {
                containers.pop();
                previous = Some(c);
            }
            _ if c.is_whitespace() => {}
            _ => previous = Some(c),
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Ok((out, per_delivery))
}

/// Whether a JSON value may start after `previous` (the last significant character outside
/// strings) inside the innermost container `container`.
fn value_position(previous: Option<char>, container: Option<&char>) -> bool {
    match previous {
        None => true,
        Some(':') => true,
        Some('[') => true,
        Some(',') => container == Some(&'['),
        _ => false,
    }
}

/// A path is `root(.segment)*` with a known root and segments of word characters. The path
/// is quoted in the error only when it is made of such characters (a template may hold a
/// static secret, which an error must not echo).
fn check_path(path: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let shown = match path.len() <= 64 && path.chars().all(|c| word(c) || c == '.') {
        true => format!("`{path}`"),
        false => "(not shown: not a dotted name)".to_owned(),
    };
    let mut segments = path.split('.');
    let root = segments.next().unwrap_or_default();
    if !VARIABLES.contains(&root) {
        return Err(format!(
            "unknown template variable {shown} (known: {})",
            VARIABLES.join(", ")
        ));
    }
    if segments.any(|segment| segment.is_empty() || !segment.chars().all(word)) {
        return Err(format!("bad path {shown}: segments are letters, digits or _"));
    }
    Ok(())
}

/// "line L, column C: message" for the position of `rest` inside `source`.
fn at(source: &str, rest: &str, message: &str) -> String {
    let before = &source[..source.len() - rest.len()];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("line {line}, column {column}: {message}")
}

/// Resolves a tagged path and encodes the value for its place in the JSON text.
fn encode<'v>(path: &[ValueMember<'_>], vars: &impl Fn(&str) -> Option<&'v Value>) -> upon::Value {
    let in_string = matches!(path.first().map(|m| &m.access), Some(ValueAccess::Key(IN_STRING)));
    let value = lookup(&path[1..], vars);
    upon::Value::String(if in_string {
        as_string_contents(value)
    } else {
        value.map_or_else(|| "null".into(), Value::to_string)
    })
}

/// The value at `path`; `user.<field>` reaches into the user object (`user_info`), since
/// `user` itself is the identity string.
fn lookup<'v>(path: &[ValueMember<'_>], vars: &impl Fn(&str) -> Option<&'v Value>) -> Option<&'v Value> {
    let (root, rest) = path.split_first()?;
    let ValueAccess::Key(root) = root.access else {
        return None;
    };
    let root = match (root, rest.is_empty()) {
        ("user", false) => "user_info",
        _ => root,
    };
    rest.iter()
        .try_fold(vars(root)?, |value, member| match member.access {
            ValueAccess::Key(key) => match value {
                Value::Object(map) => map.get(key),
                // upon parses `items.0` as a key on some versions; accept both forms.
                Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            },
            ValueAccess::Index(i) => value.as_array().and_then(|items| items.get(i)),
        })
}

/// The escaped text a value contributes inside a JSON string literal.
fn as_string_contents(value: Option<&Value>) -> String {
    let mut quoted = match value {
        None | Some(Value::Null) => return String::new(),
        Some(Value::String(s)) => serde_json::to_string(s),
        Some(other) => serde_json::to_string(&other.to_string()),
    }
    .expect("strings serialise");
    quoted.pop();
    quoted.remove(0);
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> serde_json::Map<String, Value> {
        json!({
            "event": "violation",
            "user": "a\"b\\c\nd",
            "request_id": "req-1",
            "violation": {"reason": "Rate limit", "code": "RATE_LIMIT",
                          "details": {"reset_in": 45, "tags": ["x", "y"]}},
            "metadata": {},
            "tenant_id": null,
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn render(source: &str) -> Value {
        let vars = vars();
        let out = Template::compile(source)
            .unwrap()
            .render(|name| vars.get(name))
            .unwrap();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"))
    }

    #[test]
    fn nested_json_objects_and_values_outside_strings_compile() {
        assert_eq!(render(r#"{"a": {"b": 1}}"#), json!({"a": {"b": 1}}));
        let v = render(r#"{"details": {{violation}}}"#);
        assert_eq!(v["details"]["details"]["reset_in"], 45);
    }

    #[test]
    fn values_inside_strings_are_escaped_text() {
        let v = render(
            r#"{"user": "{{user}}", "n": "{{violation.details.reset_in}}", "o": "{{violation.details.tags}}"}"#,
        );
        assert_eq!(v["user"], "a\"b\\c\nd");
        assert_eq!(v["n"], "45");
        assert_eq!(v["o"], r#"["x","y"]"#);
    }

    #[test]
    fn missing_and_null_paths_are_null_or_empty() {
        let v = render(
            r#"{"a": {{violation.nope.deeper}}, "b": "{{tenant_id.key}}", "c": {{payload}}, "d": "x{{server_id}}y"}"#,
        );
        assert_eq!(v, json!({"a": null, "b": "", "c": null, "d": "xy"}));
    }

    #[test]
    fn values_outside_strings_keep_their_type() {
        let v = render(r#"[{{violation.details.reset_in}}, {{user}}, {{violation.details.tags.1}}]"#);
        assert_eq!(v, json!([45, "a\"b\\c\nd", "y"]));
    }

    #[test]
    fn escaped_quotes_in_the_template_keep_string_tracking() {
        let v = render(r#"{"m": "say \"{{user}}\" {{event}}", "e": {{event}}}"#);
        assert_eq!(v["m"], "say \"a\"b\\c\nd\" violation");
        assert_eq!(v["e"], "violation");
    }

    #[test]
    fn templates_know_whether_they_vary_per_delivery() {
        assert!(!Template::builtin().varies_per_delivery());
        assert!(Template::compile(r#"{"id": "{{ delivery_id }}"}"#)
            .unwrap()
            .varies_per_delivery());
    }

    #[test]
    fn default_template_renders_valid_json() {
        let v = render(DEFAULT_TEMPLATE);
        assert_eq!(v["violation"]["code"], "RATE_LIMIT");
        assert_eq!(v["tenant_id"], "");
    }

    #[test]
    fn values_where_no_encoding_is_safe_are_refused_at_compile() {
        for bad in [
            r#"{ {{user}}: 1 }"#,
            r#"{"a": 1, {{user}}: 2}"#,
            r#"{"a": "\{{timestamp}}"}"#,
            r#"{"a": {{user}} {{event}}}"#,
            r#"{"a": "x"{{user}}}"#,
        ] {
            assert!(Template::compile(bad).is_err(), "{bad}");
        }
        let e = Template::compile(r#"{ {{user}}: 1 }"#).unwrap_err();
        assert!(e.contains("line 1, column 3"), "{e}");
        for good in [
            r#"{{violation}}"#,
            r#"[{{user}}, {{event}}]"#,
            r#"{"a": [1, {{user}}], "b": {"c": {{event}}}}"#,
            r#"{"\\": "{{user}}", "k\"{": {{event}}}"#,
            r#"{"a": "\\{{user}}"}"#,
        ] {
            assert!(Template::compile(good).is_ok(), "{good}");
            render(good);
        }
    }

    #[test]
    fn user_paths_reach_into_the_user_object() {
        let mut vars = vars();
        vars.insert("user".into(), json!("a@x.io"));
        vars.insert("user_info".into(), json!({"email": "a@x.io", "full_name": "A B"}));
        let t =
            Template::compile(r#"{"u": "{{user}}", "n": "{{user.full_name}}", "i": {{user_info}}}"#).unwrap();
        let out: Value = serde_json::from_str(&t.render(|n| vars.get(n)).unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"u": "a@x.io", "n": "A B", "i": {"email": "a@x.io", "full_name": "A B"}})
        );
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let e = Template::compile("{\n  \"a\": {{user}\n}").unwrap_err();
        assert!(e.contains("line 2, column 8"), "{e}");
        let e = Template::compile(r#"{"a": {{usr}}}"#).unwrap_err();
        assert!(e.contains("unknown template variable `usr`"), "{e}");
        let e = Template::compile(r#"{"a": {{user..x}}}"#).unwrap_err();
        assert!(e.contains("bad path"), "{e}");
    }
}
