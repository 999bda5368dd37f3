//! What classification reads of a hook's payload — its subject, and whether a tool's result
//! failed and why — from a parsed document or straight from JSON text. A host passing text
//! (C, Go, Lua) has only those members built: a tool's result may be many kilobytes, and
//! unless a config includes payloads (`include_payload_data`) nothing else of it is used.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::json_scan;

/// What a payload says that decides its event and metadata.
#[derive(Debug, PartialEq)]
pub struct PayloadFacts {
    /// The subject member (`name`, `prompt_id`, `uri`), null when missing.
    pub subject: Value,
    /// A tool result's error text (see [`tool_error`]), when the result was read.
    pub tool_error: Option<String>,
}

impl PayloadFacts {
    /// From a parsed payload: its member `subject`, and its `result`'s error when
    /// `read_result` (a tool's post-invoke hook).
    pub fn of(payload: &Value, subject: &str, read_result: bool) -> Self {
        PayloadFacts {
            subject: payload.get(subject).cloned().unwrap_or(Value::Null),
            tool_error: read_result
                .then(|| tool_error(payload.get("result").unwrap_or(&Value::Null)))
                .flatten(),
        }
    }

    /// As [`PayloadFacts::of`] on the parsed `json`, building only the members read (the last
    /// of repeated keys counts, as in a parsed value); the whole text must still be one JSON
    /// document.
    pub fn from_text(json: &str, subject: &str, read_result: bool) -> serde_json::Result<Self> {
        let [subject, result] = members(json, [subject, "result"])?;
        let tool_error = match result.filter(|_| read_result) {
            Some(result) => result_error(result)?,
            None => None,
        };
        Ok(PayloadFacts {
            subject: parsed(subject)?.unwrap_or(Value::Null),
            tool_error,
        })
    }
}

/// [`tool_error`] of a tool result given as JSON text, building only the members it reads
/// (`content`, possibly large, only when the result says it failed without an `error` text).
fn result_error(json: &str) -> serde_json::Result<Option<String>> {
    let [error, is_error, is_error_snake, content] =
        members(json, ["error", "isError", "is_error", "content"])?;
    let error = parsed(error)?;
    // A raw value is the member's exact text: `true` is the only text that is true.
    let failed = [is_error, is_error_snake]
        .into_iter()
        .any(|flag| flag == Some("true"));
    let content = match failed && error.as_ref().is_none_or(is_empty) {
        true => parsed(content)?,
        false => None,
    };
    Ok(error_text(error.as_ref(), failed, content.as_ref()))
}

/// The value of a member's raw text. A string without escapes is taken as it stands: the
/// document was checked, so its text between the quotes is the string (a subject, a
/// tool's name, is nearly always one).
fn parsed(raw: Option<&str>) -> serde_json::Result<Option<Value>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let plain = raw
        .strip_prefix('"')
        .and_then(|text| text.strip_suffix('"'))
        .filter(|text| !text.contains('\\'));
    match plain {
        Some(text) => Ok(Some(Value::String(text.to_owned()))),
        None => serde_json::from_str(raw).map(Some),
    }
}

/// The members `names` of the JSON document `json` as raw text (none of them unless it is
/// an object); the document is checked whole. A scan of the text reads the usual documents;
/// serde_json the rest (see [`json_scan`]).
fn members<'a, const N: usize>(json: &'a str, names: [&str; N]) -> serde_json::Result<[Option<&'a str>; N]> {
    if let Some(found) = json_scan::object_members(json, names) {
        return Ok(found);
    }
    if !json.trim_start().starts_with('{') {
        serde_json::from_str::<IgnoredAny>(json)?;
        return Ok([None; N]);
    }
    let mut document = serde_json::Deserializer::from_str(json);
    let found = document.deserialize_map(Members(names))?;
    document.end()?;
    Ok(found.map(|raw| raw.map(RawValue::get)))
}

/// Visits an object, keeping the raw text of the members it names.
struct Members<'n, const N: usize>([&'n str; N]);

impl<'de, const N: usize> Visitor<'de> for Members<'_, N> {
    type Value = [Option<&'de RawValue>; N];

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = [None; N];
        while let Some(key) = map.next_key_seed(Key(&self.0))? {
            match key {
                Some(index) => found[index] = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// A member's key, as the index of the name it matches (escaped keys are compared unescaped,
/// nothing is allocated).
struct Key<'n>(&'n [&'n str]);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|name| *name == key))
    }
}

/// The error text of a tool result that failed: `isError: true` (MCP) or a non-empty
/// `error` member. `None` for a successful result.
pub fn tool_error(result: &Value) -> Option<String> {
    let flag = |name| result.get(name).and_then(Value::as_bool) == Some(true);
    error_text(
        result.get("error"),
        flag("isError") || flag("is_error"),
        result.get("content"),
    )
}

/// A result's error text from its `error` member, whether it says it failed, and its
/// `content` (whose texts explain a failure without an `error`).
fn error_text(error: Option<&Value>, failed: bool, content: Option<&Value>) -> Option<String> {
    if let Some(e) = error.filter(|e| !is_empty(e)) {
        return Some(e.as_str().map_or_else(|| e.to_string(), str::to_owned));
    }
    if !failed {
        return None;
    }
    let text: Vec<&str> = content
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("text").and_then(Value::as_str))
        .collect();
    Some(if text.is_empty() {
        "tool reported isError".into()
    } else {
        text.join("\n")
    })
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn both(payload: &str) -> (PayloadFacts, PayloadFacts) {
        let value: Value = serde_json::from_str(payload).unwrap();
        (
            PayloadFacts::of(&value, "name", true),
            PayloadFacts::from_text(payload, "name", true).unwrap(),
        )
    }

    #[test]
    fn text_and_value_give_the_same_facts() {
        for payload in [
            r#"{"name": "search", "result": {}}"#,
            r#"{"name": "a", "name": "b", "result": {"isError": true, "content": [{"text": "x"}]}}"#,
            r#"{"n\u0061me": {"deep": [1]}, "result": {"error": "boom", "isError": true}}"#,
            r#"{"result": {"is_error": true}}"#,
            "{\"result\": { \"isError\" :\n true , \"content\": [{\"text\": \"x\"}] }}",
            r#"{"name": "a\"b", "result": {"isError": "true"}}"#,
            r#"{"result": {"error": {"code": 3}}}"#,
            r#"{"result": {"error": "", "isError": false, "content": "ignored"}}"#,
            r#"{"result": [1, 2]}"#,
            r#"[{"name": "x"}]"#,
            r#""text""#,
            "null",
        ] {
            let (from_value, from_text) = both(payload);
            assert_eq!(from_text, from_value, "{payload}");
        }
        assert_eq!(both(r#"{"name": "a", "name": "b"}"#).1.subject, json!("b"));
    }

    #[test]
    fn text_is_checked_whole() {
        for bad in [
            r#"{"name": "a""#,
            r#"{"name": "a"} x"#,
            r#"{"other": [1,}"#,
            "{bad",
            "",
        ] {
            assert!(PayloadFacts::from_text(bad, "name", true).is_err(), "{bad}");
        }
        // The result's members are read only for a tool's post-invoke hook.
        let facts = PayloadFacts::from_text(r#"{"result": {"error": "x"}}"#, "name", false).unwrap();
        assert_eq!(facts.tool_error, None);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-z\"\\\\]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("name".to_owned()),
                        Just("result".to_owned()),
                        Just("error".to_owned()),
                        Just("isError".to_owned()),
                        Just("is_error".to_owned()),
                        Just("content".to_owned()),
                        Just("text".to_owned()),
                        "[a-z]{1,3}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_document_gives_the_same_facts_from_text(doc in json_value()) {
            let text = serde_json::to_string(&doc).unwrap();
            prop_assert_eq!(PayloadFacts::from_text(&text, "name", true).unwrap(), PayloadFacts::of(&doc, "name", true));
        }
    }
}
