//! Payload templates: the original plugin's `{{ path }}` syntax, compiled once into literal
//! text and *holes*, so that every value comes out as valid JSON wherever it stands.
//!
//! [`Template::compile`] reads the template as JSON text and tags each `{{ path }}` with the
//! way its value must be encoded: inside a JSON string literal of the template, or outside
//! one. Rendering resolves each path against the event's variables (missing → null) and
//! writes it:
//! - inside a string: a string's contents escaped, numbers and booleans as written, objects
//!   and arrays as their escaped compact JSON, null/missing as nothing;
//! - outside a string: the value as JSON, null/missing as `null`.
//!
//! A general template engine is not used: `upon` (DESIGN's first choice) cannot compile
//! ordinary JSON with its `{{ }}` syntax (see DESIGN "Known pitfalls") and, behind a
//! rewriting pre-pass, cost about a third of the delivery thread's time per event; the
//! language is paths only, so the parts below are all a template needs.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use once_cell::sync::Lazy;
use serde_json::Value;

use crate::json_text::{write_string_contents, write_value};

/// Variables a template may name; anything else is a load-time error (a typo'd variable
/// would otherwise silently render as null in production).
/// The event's own come first (the runtime keeps them in this order, see
/// `render::EventVars`); `delivery_id` and `digest`, set per delivery and per digest
/// message, come last.
pub const VARIABLES: [&str; 16] = [
    "event",
    // v3 alerting: every event's level.
    "severity",
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
    // v4: the event's W3C trace id and its first attempt's span id.
    "trace_id",
    "span_id",
    "delivery_id",
    // v3 alerting: a digest message's counts (null otherwise).
    "digest",
];

/// The original plugin's default template.
pub const DEFAULT_TEMPLATE: &str = r#"{"event": "{{event}}", "plugin": "{{plugin_name}}", "timestamp": "{{timestamp}}", "request_id": "{{request_id}}", "user": "{{user}}", "tenant_id": "{{tenant_id}}", "server_id": "{{server_id}}", "violation": {{violation}}, "metadata": {{metadata}}}"#;

/// A compiled payload template.
pub struct Template {
    parts: Vec<Part>,
    /// The length of its last rendering (at first its literal text's): the capacity the next
    /// one starts with, so that renderings of similar events neither grow nor shrink their
    /// buffer.
    last_len: AtomicUsize,
    per_delivery: bool,
    /// Whether no literal text breaks a line (see [`Template::renders_one_line`]).
    one_line: bool,
    /// Whether its text is JSON with any values in its holes, decided once at compile time
    /// (see [`Template::json_check`]).
    json: Result<(), String>,
}

/// A piece of a compiled template.
enum Part {
    Text(String),
    Hole(Hole),
}

/// A `{{ path }}`: where it stands, and the path, its root resolved to its index in
/// [`VARIABLES`].
struct Hole {
    in_string: bool,
    root: usize,
    path: Vec<String>,
}

/// The index of variable `name` in [`VARIABLES`], if it is one.
pub(crate) const fn variable_index(name: &str) -> Option<usize> {
    let mut index = 0;
    while index < VARIABLES.len() {
        if str_eq(VARIABLES[index], name) {
            return Some(index);
        }
        index += 1;
    }
    None
}

/// The index of a variable the code names (for constants: a name that is not one fails the
/// build).
pub(crate) const fn variable(name: &str) -> usize {
    match variable_index(name) {
        Some(index) => index,
        None => panic!("not a template variable"),
    }
}

/// `a == b`, in a constant.
const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The index of `delivery_id`, which a rendering is given apart from an event's variables.
pub(crate) const DELIVERY_ID: usize = variable("delivery_id");

/// Where a rendering finds its variables: by their index in [`VARIABLES`] (a template's
/// holes know theirs from compile time, so no name is looked up per event).
pub(crate) trait Lookup {
    /// The variable at `index` of [`VARIABLES`], if set.
    fn value(&self, index: usize) -> Option<&Value>;

    /// Writes the whole variable at `index` as compact JSON without making it a value, and
    /// says whether it did (an event's classified `metadata` does; the rest are values).
    fn write_whole(&self, _index: usize, _out: &mut Vec<u8>) -> bool {
        false
    }
}

/// A [`Lookup`] by name (the public [`Template::render`]'s); the values live for `'v`.
struct ByName<'v, F>(F, std::marker::PhantomData<&'v Value>);

impl<'v, F: Fn(&str) -> Option<&'v Value>> Lookup for ByName<'v, F> {
    fn value(&self, index: usize) -> Option<&Value> {
        (self.0)(VARIABLES[index])
    }
}

/// No variable at all: a rendering with every hole empty.
struct Nothing;

impl Lookup for Nothing {
    fn value(&self, _index: usize) -> Option<&Value> {
        None
    }
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template").finish_non_exhaustive()
    }
}

impl Template {
    /// Compiles `source`; the error says what is wrong and where (1-based line and column).
    pub fn compile(source: &str) -> Result<Self, String> {
        let (parts, per_delivery) = parse(source)?;
        let texts = || {
            parts.iter().filter_map(|part| match part {
                Part::Text(text) => Some(text),
                Part::Hole(_) => None,
            })
        };
        let literal_len = texts().map(String::len).sum();
        let one_line = !texts().any(|text| text.contains(['\n', '\r']));
        let mut template = Template {
            parts,
            last_len: AtomicUsize::new(literal_len),
            per_delivery,
            one_line,
            json: Ok(()),
        };
        template.json = template.prove_json();
        Ok(template)
    }

    /// Whether the output differs per delivery (it uses `{{delivery_id}}`); if not, one
    /// rendering serves every webhook that receives the event.
    pub fn varies_per_delivery(&self) -> bool {
        self.per_delivery
    }

    /// Whether every rendering is JSON, or why none is (proved at compile time).
    pub fn json_check(&self) -> Result<(), String> {
        self.json.clone()
    }

    /// Whether [`Template::json_check`] passed: its bodies need no parse.
    pub fn renders_json(&self) -> bool {
        self.json.is_ok()
    }

    /// Proves that every rendering is JSON, or says why none is. A value renders as a whole
    /// JSON value outside strings and as escaped text inside them, and `compile` refuses a
    /// `{{ }}` anywhere else, so whether the output is JSON does not depend on the values:
    /// one rendering with every hole empty decides for all of them.
    fn prove_json(&self) -> Result<(), String> {
        serde_json::from_slice::<serde::de::IgnoredAny>(&self.render_bytes(&Nothing))
            .map(drop)
            .map_err(|e| format!("template does not render valid JSON: {e}"))
    }

    /// Renders with `vars`, which resolves a top-level variable by name. The output is
    /// JSON whenever the template's own text is ([`Template::renders_json`]).
    pub fn render<'v>(&self, vars: impl Fn(&str) -> Option<&'v Value>) -> String {
        String::from_utf8(self.render_bytes(&ByName(vars, std::marker::PhantomData)))
            .expect("literal text and JSON encodings are UTF-8")
    }

    /// [`Template::render`] as bytes, which are UTF-8 by construction: the engine does not
    /// check them again for every event.
    pub(crate) fn render_bytes(&self, vars: &impl Lookup) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.last_len.load(Relaxed) + 16);
        for part in &self.parts {
            match part {
                Part::Text(text) => out.extend_from_slice(text.as_bytes()),
                Part::Hole(hole) => hole.write(&mut out, vars),
            }
        }
        trim_spare_room(&mut out);
        self.last_len.store(out.len(), Relaxed);
        out
    }

    /// Whether every rendering is one line: values are written compactly with their line
    /// breaks escaped, so only the template's own text can break one.
    pub fn renders_one_line(&self) -> bool {
        self.one_line
    }

    /// The original plugin's default template, compiled once.
    pub fn builtin() -> &'static Template {
        static BUILTIN: Lazy<Template> =
            Lazy::new(|| Template::compile(DEFAULT_TEMPLATE).expect("the built-in template compiles"));
        &BUILTIN
    }
}

impl Hole {
    /// The hole of a checked `path`; `user.<field>` reaches into the user object
    /// (`user_info`), since `user` itself is the identity string.
    fn new(path: &str, in_string: bool) -> Self {
        let mut segments = path.split('.');
        let root = segments.next().unwrap_or_default();
        let path: Vec<String> = segments.map(str::to_owned).collect();
        let root = match (root, path.is_empty()) {
            ("user", false) => "user_info",
            _ => root,
        };
        let root = variable_index(root).expect("check_path accepted a known root");
        Hole {
            in_string,
            root,
            path,
        }
    }

    /// Writes the value at this hole's path in `vars`, encoded for its place in the JSON
    /// text.
    fn write(&self, out: &mut Vec<u8>, vars: &impl Lookup) {
        if !self.in_string && self.path.is_empty() && vars.write_whole(self.root, out) {
            return;
        }
        let value = vars.value(self.root).and_then(|root| {
            self.path.iter().try_fold(root, |value, key| match value {
                Value::Object(map) => map.get(key.as_str()),
                Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            })
        });
        match (self.in_string, value) {
            (true, None | Some(Value::Null)) => {}
            (true, Some(Value::String(text))) => write_string_contents(out, text),
            (true, Some(other)) => write_string_contents(out, &other.to_string()),
            (false, None) => out.extend_from_slice(b"null"),
            (false, Some(value)) => write_value(out, value),
        }
    }
}

/// Gives back a body's spare room beyond a quarter of its length: a body may stay queued for
/// long (retries, a durable outbox), and what it keeps is measured by tests/memory.rs.
pub(crate) fn trim_spare_room(body: &mut Vec<u8>) {
    if body.capacity() - body.len() > body.len() / 4 {
        body.shrink_to_fit();
    }
}

/// Splits `source` into literal text and holes, each hole tagged with its JSON context;
/// also says whether `delivery_id` is used. Refuses a `{{ }}` that no encoding can make
/// safe: right after a backslash inside a string (it would escape the value's first
/// character), or outside a string where no JSON value may stand (an object key, after
/// another value).
fn parse(source: &str) -> Result<(Vec<Part>, bool), String> {
    let mut parts = Vec::new();
    let mut text = String::with_capacity(source.len());
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
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Hole(Hole::new(path, in_string)));
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
        text.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok((parts, per_delivery))
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
        let out = Template::compile(source).unwrap().render(|name| vars.get(name));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"))
    }

    #[test]
    fn nested_json_objects_and_values_outside_strings_compile() {
        assert_eq!(render(r#"{"a": {"b": 1}}"#), json!({"a": {"b": 1}}));
        let v = render(r#"{"details": {{violation}}}"#);
        assert_eq!(v["details"]["details"]["reset_in"], 45);
    }

    #[test]
    fn only_a_template_whose_own_text_breaks_a_line_renders_several() {
        assert!(Template::builtin().renders_one_line());
        let one =
            Template::compile(r#"{"user": "{{user}}", "v": {{violation}}, "o": "{{violation}}"}"#).unwrap();
        assert!(one.renders_one_line());
        let vars = vars();
        assert!(vars["user"].as_str().unwrap().contains('\n'));
        let out = one.render(|name| vars.get(name));
        assert!(!out.contains(['\n', '\r']), "{out}");
        for laid_out in ["{\n\"a\": 1}", "{\"a\": 1}\r"] {
            assert!(
                !Template::compile(laid_out).unwrap().renders_one_line(),
                "{laid_out:?}"
            );
        }
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
        let out: Value = serde_json::from_str(&t.render(|n| vars.get(n))).unwrap();
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
    #[test]
    fn a_template_proves_once_whether_every_rendering_is_json() {
        assert!(Template::builtin().renders_json());
        for not_json in [
            r#"{"user": "{{user}}"} trailing"#,
            r#"{"a": {{user}}"#,
            "{{user}} x",
        ] {
            let t = Template::compile(not_json).unwrap();
            assert!(!t.renders_json(), "{not_json}");
            assert!(t.json_check().unwrap_err().contains("does not render valid JSON"));
        }
    }

    /// Any JSON value, strings with quotes, backslashes, control and non-ASCII characters.
    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The proof holds: a template that renders JSON with empty holes renders JSON with
        /// any values, and a value inside a string comes back as the text it encodes.
        #[test]
        fn every_rendering_of_a_proven_template_is_json(user in any_value(), violation in any_value()) {
            let vars = serde_json::Map::from_iter([("user".to_owned(), user.clone()), ("violation".to_owned(), violation)]);
            for source in [DEFAULT_TEMPLATE, r#"{"u": "<{{user}}>", "v": [{{violation}}, {{user}}], "d": "{{violation.details.x}}"}"#] {
                let t = Template::compile(source).unwrap();
                proptest::prop_assert!(t.renders_json());
                let out = t.render(|name| vars.get(name));
                let parsed: Value = serde_json::from_str(&out).map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{out}: {e}")))?;
                let text = match &user {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let (key, expected) = match source == DEFAULT_TEMPLATE {
                    true => ("user", text),
                    false => ("u", format!("<{text}>")),
                };
                proptest::prop_assert_eq!(parsed[key].as_str(), Some(expected.as_str()));
            }
        }
    }
}
