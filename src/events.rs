//! Events, hooks and the rules that decide which event a hook call raises.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::json_text::{write_str, write_value};
use crate::payload::PayloadFacts;
use crate::trace::Trace;

/// A notification type a webhook can subscribe to (the original plugin's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Violation,
    RateLimitExceeded,
    PiiDetected,
    HarmfulContent,
    ToolSuccess,
    ToolError,
    PromptSuccess,
    ResourceSuccess,
    PluginError,
    /// Raised by the library: a webhook's circuit opened.
    WebhookFailing,
    /// Raised by the library: a webhook's circuit closed again.
    WebhookRecovered,
}

impl Event {
    /// Every event, in the order the original documents them.
    pub const ALL: [Event; 11] = [
        Event::Violation,
        Event::RateLimitExceeded,
        Event::PiiDetected,
        Event::HarmfulContent,
        Event::ToolSuccess,
        Event::ToolError,
        Event::PromptSuccess,
        Event::ResourceSuccess,
        Event::PluginError,
        Event::WebhookFailing,
        Event::WebhookRecovered,
    ];

    /// The wire name, e.g. `rate_limit_exceeded`.
    pub fn name(self) -> &'static str {
        match self {
            Event::Violation => "violation",
            Event::RateLimitExceeded => "rate_limit_exceeded",
            Event::PiiDetected => "pii_detected",
            Event::HarmfulContent => "harmful_content",
            Event::ToolSuccess => "tool_success",
            Event::ToolError => "tool_error",
            Event::PromptSuccess => "prompt_success",
            Event::ResourceSuccess => "resource_success",
            Event::PluginError => "plugin_error",
            Event::WebhookFailing => "webhook_failing",
            Event::WebhookRecovered => "webhook_recovered",
        }
    }

    /// Parses a wire name; unknown names are an [`Error::InvalidArgument`].
    pub fn from_name(name: &str) -> Result<Self> {
        Event::ALL
            .into_iter()
            .find(|e| e.name() == name)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown event `{name}`")))
    }
}

/// The gateway hook points the plugin is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    PromptPreFetch,
    PromptPostFetch,
    ToolPreInvoke,
    ToolPostInvoke,
    ResourcePreFetch,
    ResourcePostFetch,
}

impl Hook {
    /// Every hook, by its cpex name.
    pub const ALL: [(Hook, &'static str); 6] = [
        (Hook::PromptPreFetch, "prompt_pre_fetch"),
        (Hook::PromptPostFetch, "prompt_post_fetch"),
        (Hook::ToolPreInvoke, "tool_pre_invoke"),
        (Hook::ToolPostInvoke, "tool_post_invoke"),
        (Hook::ResourcePreFetch, "resource_pre_fetch"),
        (Hook::ResourcePostFetch, "resource_post_fetch"),
    ];

    /// Parses a cpex hook name; unknown names are an [`Error::InvalidArgument`].
    pub fn from_name(name: &str) -> Result<Self> {
        Hook::ALL
            .into_iter()
            .find(|(_, n)| *n == name)
            .map(|(h, _)| h)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown hook `{name}`")))
    }

    /// The metadata key of the hook's subject: `tool_name`, `prompt_id` or `resource_uri`.
    fn subject_key(self) -> &'static str {
        match self {
            Hook::ToolPreInvoke | Hook::ToolPostInvoke => "tool_name",
            Hook::PromptPreFetch | Hook::PromptPostFetch => "prompt_id",
            Hook::ResourcePreFetch | Hook::ResourcePostFetch => "resource_uri",
        }
    }

    /// Whether the payload's `result` decides the event (a tool's outcome).
    pub fn reads_result(self) -> bool {
        self == Hook::ToolPostInvoke
    }

    /// The events a call of this hook can raise: a violation's, and its own outcome.
    pub fn events(self) -> impl Iterator<Item = Event> {
        const VIOLATIONS: [Event; 4] = [
            Event::Violation,
            Event::RateLimitExceeded,
            Event::PiiDetected,
            Event::HarmfulContent,
        ];
        let outcome: &[Event] = match self {
            Hook::ToolPostInvoke => &[Event::ToolSuccess, Event::ToolError],
            Hook::PromptPostFetch => &[Event::PromptSuccess],
            Hook::ResourcePostFetch => &[Event::ResourceSuccess],
            Hook::ToolPreInvoke | Hook::PromptPreFetch | Hook::ResourcePreFetch => &[],
        };
        VIOLATIONS.into_iter().chain(outcome.iter().copied())
    }

    /// The payload field naming the hook's subject: `name`, `prompt_id` or `uri`.
    pub fn subject_field(self) -> &'static str {
        match self {
            Hook::ToolPreInvoke | Hook::ToolPostInvoke => "name",
            Hook::PromptPreFetch | Hook::PromptPostFetch => "prompt_id",
            Hook::ResourcePreFetch | Hook::ResourcePostFetch => "uri",
        }
    }
}

/// Who and what a hook call concerns: the gateway's request context and, if a policy
/// fired, its violation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    pub request_id: Value,
    /// The identity string (`{{user}}`): the user object's `email` (else `username`, else
    /// `id`, else its compact JSON), or the string the host gave.
    pub user: Value,
    /// The user object as the host gave it (`{{user_info}}`, `{{user.<field>}}`), or null
    /// when the host gave a string.
    pub user_info: Value,
    pub tenant_id: Value,
    pub server_id: Value,
    pub violation: Option<Value>,
    /// The host's W3C trace (`traceparent`/`tracestate`, or a bare `trace_id`), if valid.
    pub trace: Option<Trace>,
}

impl Context {
    /// Reads a cpex `PluginContext` (`{"global_context": {...}, "state": {...}}`) or a bare
    /// global context. A violation may sit at the top level, in `state`, or in
    /// `global_context.state`, under the key `violation` (see [`violation_of`]).
    pub fn from_json(doc: &Value) -> Result<Self> {
        let top = match doc {
            Value::Null => return Ok(Context::default()),
            Value::Object(map) => map,
            _ => return Err(Error::Parse("context must be a JSON object".into())),
        };
        let global = match top.get("global_context") {
            Some(Value::Object(g)) => g,
            None | Some(Value::Null) => top,
            Some(_) => return Err(Error::Parse("global_context must be an object".into())),
        };
        let field = |name: &str| global.get(name).cloned().unwrap_or(Value::Null);
        let violation = [
            top.get("violation"),
            top.get("state").and_then(|s| s.get("violation")),
            global.get("state").and_then(|s| s.get("violation")),
        ]
        .into_iter()
        .flatten()
        .find(|v| !v.is_null());
        let text = |name: &str| global.get(name).or_else(|| top.get(name)).and_then(Value::as_str);
        let trace = Trace::from_host(text("traceparent"), text("trace_id"), text("tracestate"));
        Ok(Context {
            trace,
            ..Context::new(
                field("request_id"),
                field("user"),
                field("tenant_id"),
                field("server_id"),
                violation.cloned(),
            )
        })
    }

    /// A context from the global context's fields, for hosts that read them without JSON:
    /// `user` may be a string or a user object (see [`Context::user`]), `violation` any value
    /// (see [`violation_of`]).
    pub fn new(
        request_id: Value,
        user: Value,
        tenant_id: Value,
        server_id: Value,
        violation: Option<Value>,
    ) -> Self {
        let (user, user_info) = identity(capped(user));
        Context {
            request_id: capped(request_id),
            user,
            user_info,
            tenant_id: capped(tenant_id),
            server_id: capped(server_id),
            violation: violation.and_then(violation_of).map(capped),
            trace: None,
        }
    }
}

/// What a host's `notify` call describes: its context, with `violation` (when given and not
/// null) replacing any the context carries, and `metadata`, which must be an object.
pub fn notification(
    context: &Value,
    violation: Option<Value>,
    metadata: Option<Value>,
) -> Result<(Context, Map<String, Value>)> {
    let mut context = Context::from_json(context)?;
    if let Some(v) = violation.and_then(violation_of) {
        context.violation = Some(capped(v));
    }
    let metadata = match metadata.map(capped) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(Error::Parse("metadata must be a JSON object".into())),
    };
    Ok((context, metadata))
}

/// Bytes of one host string copied into an event at most (an error text, a user, a tool
/// name, …): a 5 MB tool error must not become a 5 MB body on every webhook.
pub const MAX_HOST_STRING: usize = 16 * 1024;

/// `value` with every string longer than [`MAX_HOST_STRING`] bytes cut (on a character
/// boundary) and marked with a trailing "…"; the rest as it is.
pub fn capped(value: Value) -> Value {
    capped_at(value, MAX_HOST_STRING)
}

/// `value` with every string longer than `limit` bytes cut (on a character boundary) to at
/// most `limit` bytes, marked with a trailing "…"; the rest as it is.
pub fn capped_at(value: Value, limit: usize) -> Value {
    if !too_long(&value, limit) {
        return value;
    }
    match value {
        Value::String(text) if text.len() > limit => {
            let mut end = limit.saturating_sub('…'.len_utf8());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            Value::String(format!("{}…", &text[..end]))
        }
        Value::Array(items) => Value::Array(items.into_iter().map(|v| capped_at(v, limit)).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, capped_at(v, limit)))
                .collect(),
        ),
        other => other,
    }
}

/// Whether `value` holds a string longer than `limit` bytes (a walk without copying, so the
/// usual short values cost no allocation).
pub fn too_long(value: &Value, limit: usize) -> bool {
    match value {
        Value::String(text) => text.len() > limit,
        Value::Array(items) => items.iter().any(|v| too_long(v, limit)),
        Value::Object(fields) => fields.values().any(|v| too_long(v, limit)),
        _ => false,
    }
}

/// The one rule for what counts as a violation, wherever a host puts it: any non-null value
/// (`{}` included). An object is taken as is; anything else becomes `{"reason": text}`,
/// where text is a string's contents or another value's compact JSON.
pub fn violation_of(value: Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(_) => Some(value),
        Value::String(reason) => Some(json!({ "reason": reason })),
        other => Some(json!({ "reason": other.to_string() })),
    }
}

/// `(user, user_info)` from the host's `user` field: the gateway sends an object
/// (`{"email", "full_name", "is_admin"}`) for tool hooks and a string for the others.
fn identity(user: Value) -> (Value, Value) {
    let Value::Object(ref fields) = user else {
        return (user, Value::Null);
    };
    let named = ["email", "username", "id"]
        .iter()
        .filter_map(|key| fields.get(*key))
        .find(|v| !v.is_null());
    let name = match named {
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(other) => Value::String(other.to_string()),
        None => Value::String(user.to_string()),
    };
    (name, user)
}

/// Parses a JSON document a host passed as text (payload, context, violation, metadata);
/// absent is `null`. The error names the argument.
pub fn parse_document(text: Option<&str>, name: &str) -> Result<Value> {
    match text {
        None => Ok(Value::Null),
        Some(t) => serde_json::from_str(t).map_err(|e| Error::Parse(format!("{name}: {e}"))),
    }
}

/// The event a violation raises (DESIGN "Classification by code"): its `code` decides first,
/// case-insensitively; only a violation without a code falls back to the original plugin's
/// reason-text rule (kept for parity with configs written for it).
pub fn classify_violation(violation: &Value) -> Event {
    match violation.get("code").and_then(Value::as_str).map(str::trim) {
        Some(code) if !code.is_empty() => classify_code(code),
        _ => classify_reason(violation),
    }
}

/// The event of a non-empty violation code: the gateway's own plugins report `RATE_LIMIT`,
/// `PII_DETECTED_IN_TOOL_ARGS`, `CONTENT_MODERATION`, …; any other code is a plain violation.
fn classify_code(code: &str) -> Event {
    const HARMFUL: [&str; 4] = [
        "CONTENT_MODERATION",
        "PROHIBITED_CONTENT",
        "SENSITIVE_CONTENT",
        "BLOCKED_CONTENT",
    ];
    let code = code.to_ascii_uppercase();
    if code.starts_with("RATE_LIMIT") {
        Event::RateLimitExceeded
    } else if code.starts_with("PII") {
        Event::PiiDetected
    } else if code.starts_with("HARMFUL") || HARMFUL.contains(&code.as_str()) {
        Event::HarmfulContent
    } else {
        Event::Violation
    }
}

/// The original plugin's rule, for a violation without a code: "pii" in the reason (any
/// case) → pii_detected; "harmful" or "content" → harmful_content; else violation.
fn classify_reason(violation: &Value) -> Event {
    let reason = violation
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_lowercase();
    if reason.contains("pii") {
        Event::PiiDetected
    } else if reason.contains("harmful") || reason.contains("content") {
        Event::HarmfulContent
    } else {
        Event::Violation
    }
}

/// The event a hook call raises, with its metadata, from what its payload says (read from a
/// value or from JSON text), or `None` for a quiet hook (a pre-hook without a violation).
pub fn classify_facts(hook: Hook, facts: PayloadFacts, context: &Context) -> Option<(Event, Metadata)> {
    let event = match (&context.violation, hook) {
        (Some(v), _) => classify_violation(v),
        (None, Hook::ToolPostInvoke) if facts.tool_error.is_some() => Event::ToolError,
        (None, Hook::ToolPostInvoke) => Event::ToolSuccess,
        (None, Hook::PromptPostFetch) => Event::PromptSuccess,
        (None, Hook::ResourcePostFetch) => Event::ResourceSuccess,
        (None, _) => return None,
    };
    let metadata = Metadata::Classified {
        subject_key: hook.subject_key(),
        subject: facts.subject,
        error: facts.tool_error,
    };
    Some((event, metadata))
}

/// An event's `metadata` variable: what a host gave, or what classification read of a hook's
/// payload — made into its map on the delivery runtime, which also frees it (an allocation
/// made on a hook's thread and freed on another costs both threads a cache miss).
#[derive(Debug)]
pub enum Metadata {
    /// A host's own (`notify`), or the library's (circuit events, plugin errors).
    Given(Map<String, Value>),
    /// The hook's subject under its key (`tool_name`, …) and a tool's error text.
    Classified {
        subject_key: &'static str,
        subject: Value,
        error: Option<String>,
    },
}

impl Metadata {
    /// The map the templates see; host strings capped (see [`capped`]).
    pub fn into_map(self) -> Map<String, Value> {
        match self {
            Metadata::Given(map) => map,
            classified => classified.to_map(),
        }
    }

    /// [`Metadata::into_map`] of a copy.
    pub fn to_map(&self) -> Map<String, Value> {
        match self {
            Metadata::Given(map) => map.clone(),
            Metadata::Classified {
                subject_key,
                subject,
                error,
            } => {
                let mut map = Map::new();
                map.insert((*subject_key).into(), capped(subject.clone()));
                if let Some(error) = error {
                    map.insert("error".into(), capped(Value::String(error.clone())));
                }
                map
            }
        }
    }

    /// Writes the map [`Metadata::into_map`] makes, as compact JSON, without making it; says
    /// whether it did. Classified metadata with no string to cap does (what nearly every
    /// hook raises: making, writing and freeing the map cost a fifth of an event's routing);
    /// the rest is written from its map.
    pub fn write_json(&self, out: &mut Vec<u8>) -> bool {
        let Metadata::Classified {
            subject_key,
            subject,
            error,
        } = self
        else {
            return false;
        };
        let error_too_long = error.as_ref().is_some_and(|e| e.len() > MAX_HOST_STRING);
        if error_too_long || too_long(subject, MAX_HOST_STRING) {
            return false;
        }
        out.push(b'{');
        // The map's order: "error" sorts before every subject key.
        if let Some(error) = error {
            write_str(out, "error");
            out.push(b':');
            write_str(out, error);
            out.push(b',');
        }
        write_str(out, subject_key);
        out.push(b':');
        write_value(out, subject);
        out.push(b'}');
        true
    }
}

impl From<Map<String, Value>> for Metadata {
    fn from(map: Map<String, Value>) -> Self {
        Metadata::Given(map)
    }
}

/// The cpex `PluginResult` a hook returns, as JSON text: processing always continues;
/// `metadata` names the event raised (`webhook_event`) and whether it was queued
/// (`webhook_queued`). Written directly (every C and Lua hook call returns one): building a
/// `Value` first cost several allocations per call.
pub fn plugin_result(event: Option<Event>, queued: bool) -> String {
    let metadata = match event {
        Some(e) => format!(r#"{{"webhook_event":"{}","webhook_queued":{queued}}}"#, e.name()),
        None => "{}".to_owned(),
    };
    format!(
        r#"{{"continue_processing":true,"metadata":{metadata},"modified_payload":null,"violation":null}}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(hook: Hook, payload: &Value, context: &Context) -> Option<(Event, Map<String, Value>)> {
        let facts = PayloadFacts::of(payload, hook.subject_field(), hook.reads_result());
        classify_facts(hook, facts, context).map(|(event, metadata)| (event, metadata.into_map()))
    }

    #[test]
    fn the_plugin_result_is_the_cpex_shape() {
        let result: Value = serde_json::from_str(&plugin_result(Some(Event::ToolError), true)).unwrap();
        let expected = json!({"continue_processing": true, "modified_payload": null, "violation": null,
            "metadata": {"webhook_event": "tool_error", "webhook_queued": true}});
        assert_eq!(result, expected);
        let quiet: Value = serde_json::from_str(&plugin_result(None, false)).unwrap();
        assert_eq!(quiet["metadata"], json!({}));
    }

    fn ctx(violation: Value) -> Context {
        Context::from_json(&json!({"global_context": {"request_id": "r"}, "violation": violation})).unwrap()
    }

    #[test]
    fn violations_classify_as_the_original() {
        let cases = [
            (json!({"reason": "PII found"}), Event::PiiDetected),
            (json!({"reason": "Harmful request"}), Event::HarmfulContent),
            (json!({"reason": "bad Content"}), Event::HarmfulContent),
            (json!({"reason": "deny list"}), Event::Violation),
            (json!({"code": "", "reason": "PII found"}), Event::PiiDetected),
            (json!({"code": null, "reason": "harmful"}), Event::HarmfulContent),
            (json!({}), Event::Violation),
        ];
        for (v, want) in cases {
            assert_eq!(classify_violation(&v), want, "{v}");
        }
    }

    #[test]
    fn a_violation_code_decides_before_the_reason() {
        let cases = [
            ("RATE_LIMIT", "pii", Event::RateLimitExceeded),
            ("rate_limit_exceeded", "", Event::RateLimitExceeded),
            ("PII_DETECTED_IN_TOOL_ARGS", "rate limited", Event::PiiDetected),
            ("PII_DETECTED_IN_TOOL_RESULT", "", Event::PiiDetected),
            ("pii_detected", "", Event::PiiDetected),
            ("CONTENT_MODERATION", "", Event::HarmfulContent),
            ("HARMFUL_CONTENT", "", Event::HarmfulContent),
            ("harmful", "", Event::HarmfulContent),
            ("PROHIBITED_CONTENT", "", Event::HarmfulContent),
            ("SENSITIVE_CONTENT", "", Event::HarmfulContent),
            ("BLOCKED_CONTENT", "", Event::HarmfulContent),
            // A code outside the table is a plain violation, whatever its reason says.
            (
                "ENCODED_EXFIL_DETECTED",
                "PII in harmful content",
                Event::Violation,
            ),
            ("URL_REPUTATION_BLOCK", "", Event::Violation),
            ("CONTENT_MODERATION_X", "", Event::Violation),
        ];
        for (code, reason, want) in cases {
            let v = json!({"code": code, "reason": reason});
            assert_eq!(classify_violation(&v), want, "{v}");
        }
    }

    #[test]
    fn hooks_raise_their_events_with_subject_metadata() {
        let none = Context::default();
        let (e, m) = classify(
            Hook::ToolPostInvoke,
            &json!({"name": "search", "result": {"x": 1}}),
            &none,
        )
        .unwrap();
        assert_eq!((e, m["tool_name"].clone()), (Event::ToolSuccess, json!("search")));
        let (e, m) = classify(
            Hook::ToolPostInvoke,
            &json!({"name": "s", "result": {"isError": true, "content": [{"type": "text", "text": "boom"}]}}),
            &none,
        )
        .unwrap();
        assert_eq!((e, m["error"].clone()), (Event::ToolError, json!("boom")));
        let (e, m) = classify(
            Hook::ToolPostInvoke,
            &json!({"name": "s", "result": {"error": "down"}}),
            &none,
        )
        .unwrap();
        assert_eq!((e, m["error"].clone()), (Event::ToolError, json!("down")));
        let (e, m) = classify(Hook::PromptPostFetch, &json!({"prompt_id": "p1"}), &none).unwrap();
        assert_eq!((e, m["prompt_id"].clone()), (Event::PromptSuccess, json!("p1")));
        let (e, m) = classify(Hook::ResourcePostFetch, &json!({"uri": "file:///a"}), &none).unwrap();
        assert_eq!(
            (e, m["resource_uri"].clone()),
            (Event::ResourceSuccess, json!("file:///a"))
        );
        for hook in [Hook::ToolPreInvoke, Hook::PromptPreFetch, Hook::ResourcePreFetch] {
            assert!(classify(hook, &json!({}), &none).is_none());
        }
    }

    #[test]
    fn a_violation_wins_on_any_hook_and_keeps_the_subject() {
        let (e, m) = classify(
            Hook::ToolPreInvoke,
            &json!({"name": "t"}),
            &ctx(json!({"code": "RATE_LIMIT"})),
        )
        .unwrap();
        assert_eq!(
            (e, m["tool_name"].clone()),
            (Event::RateLimitExceeded, json!("t"))
        );
    }

    #[test]
    fn every_non_null_violation_counts_the_same_in_every_place() {
        for value in [json!({}), json!("r"), json!(7), json!(["a"]), json!(true)] {
            let places = [
                json!({"violation": value}),
                json!({"global_context": {}, "state": {"violation": value}}),
                json!({"global_context": {"state": {"violation": value}}}),
            ];
            let seen: Vec<_> = places
                .iter()
                .map(|doc| Context::from_json(doc).unwrap().violation)
                .collect();
            assert!(
                seen.iter().all(|v| v.is_some() && *v == seen[0]),
                "{value}: {seen:?}"
            );
            assert!(seen[0].as_ref().unwrap().is_object());
        }
        assert_eq!(violation_of(json!(429)), Some(json!({"reason": "429"})));
        assert_eq!(violation_of(Value::Null), None);
    }

    #[test]
    fn user_objects_give_an_identity_string_and_keep_the_object() {
        let doc = json!({"user": {"email": "a@x.io", "full_name": "A", "is_admin": false}});
        let c = Context::from_json(&doc).unwrap();
        assert_eq!(
            (c.user, c.user_info["full_name"].clone()),
            (json!("a@x.io"), json!("A"))
        );
        let c = Context::from_json(&json!({"user": {"username": "bob"}})).unwrap();
        assert_eq!(c.user, json!("bob"));
        let c = Context::from_json(&json!({"user": {"id": 42}})).unwrap();
        assert_eq!(c.user, json!("42"));
        let c = Context::from_json(&json!({"user": {"team": "t"}})).unwrap();
        assert_eq!(c.user, json!(r#"{"team":"t"}"#));
        let c = Context::from_json(&json!({"user": "carol", "tenant_id": ""})).unwrap();
        assert_eq!(
            (c.user, c.user_info, c.tenant_id),
            (json!("carol"), Value::Null, json!(""))
        );
    }

    #[test]
    fn context_reads_every_shape() {
        let bare = Context::from_json(&json!({"request_id": "r", "user": "u"})).unwrap();
        assert_eq!((bare.request_id, bare.user), (json!("r"), json!("u")));
        let in_state =
            Context::from_json(&json!({"global_context": {}, "state": {"violation": {"reason": "x"}}}))
                .unwrap();
        assert!(in_state.violation.is_some());
        let in_global_state =
            Context::from_json(&json!({"global_context": {"state": {"violation": {"reason": "x"}}}}))
                .unwrap();
        assert!(in_global_state.violation.is_some());
        assert!(Context::from_json(&json!([1])).is_err());
        let coerced = Context::from_json(&json!({"violation": "too many calls"})).unwrap();
        assert_eq!(coerced.violation, Some(json!({"reason": "too many calls"})));
        assert_eq!(Context::from_json(&Value::Null).unwrap(), Context::default());
    }

    #[test]
    fn host_strings_are_cut_at_16_kib_and_marked() {
        let huge = "é".repeat(3 * 1024 * 1024); // 6 MB of two-byte characters
        let payload = json!({"name": huge, "result": {"error": huge}});
        let context =
            Context::from_json(&json!({"user": {"email": huge}, "violation": {"reason": huge}})).unwrap();
        let (_, metadata) = classify(Hook::ToolPostInvoke, &payload, &context).unwrap();
        let texts = [
            metadata["tool_name"].as_str().unwrap(),
            metadata["error"].as_str().unwrap(),
            context.user.as_str().unwrap(),
            context.violation.as_ref().unwrap()["reason"].as_str().unwrap(),
        ];
        for text in texts {
            assert!(
                text.len() <= MAX_HOST_STRING && text.len() > MAX_HOST_STRING - 8,
                "{}",
                text.len()
            );
            assert!(text.ends_with('…'));
        }
        let short = json!({"a": ["b", {"c": "d"}]});
        assert_eq!(capped(short.clone()), short);
    }
}
