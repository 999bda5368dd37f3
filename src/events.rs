//! Events, hooks and the rules that decide which event a hook call raises.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

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
}

impl Event {
    /// Every event, in the order the original documents them.
    pub const ALL: [Event; 9] = [
        Event::Violation,
        Event::RateLimitExceeded,
        Event::PiiDetected,
        Event::HarmfulContent,
        Event::ToolSuccess,
        Event::ToolError,
        Event::PromptSuccess,
        Event::ResourceSuccess,
        Event::PluginError,
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

    /// The metadata entry naming the hook's subject (`tool_name`, `prompt_id`,
    /// `resource_uri`) taken from its payload.
    fn subject(self, payload: &Value) -> (&'static str, Value) {
        let (key, field) = match self {
            Hook::ToolPreInvoke | Hook::ToolPostInvoke => ("tool_name", "name"),
            Hook::PromptPreFetch | Hook::PromptPostFetch => ("prompt_id", "prompt_id"),
            Hook::ResourcePreFetch | Hook::ResourcePostFetch => ("resource_uri", "uri"),
        };
        (key, payload.get(field).cloned().unwrap_or(Value::Null))
    }
}

/// Who and what a hook call concerns: the gateway's request context and, if a policy
/// fired, its violation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    pub request_id: Value,
    pub user: Value,
    pub tenant_id: Value,
    pub server_id: Value,
    pub violation: Option<Value>,
}

impl Context {
    /// Reads a cpex `PluginContext` (`{"global_context": {...}, "state": {...}}`) or a bare
    /// global context. A violation may sit at the top level, in `state`, or in
    /// `global_context.state`, under the key `violation`.
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
        .find(|v| !v.is_null())
        .cloned();
        if let Some(v) = &violation {
            if !v.is_object() {
                return Err(Error::Parse("violation must be an object".into()));
            }
        }
        Ok(Context {
            request_id: field("request_id"),
            user: field("user"),
            tenant_id: field("tenant_id"),
            server_id: field("server_id"),
            violation,
        })
    }
}

/// Parses a JSON document a host passed as text (payload, context, violation, metadata);
/// absent is `null`. The error names the argument.
pub fn parse_document(text: Option<&str>, name: &str) -> Result<Value> {
    match text {
        None => Ok(Value::Null),
        Some(t) => serde_json::from_str(t).map_err(|e| Error::Parse(format!("{name}: {e}"))),
    }
}

/// The event a violation raises, by the original plugin's rules.
pub fn classify_violation(violation: &Value) -> Event {
    if violation.get("code").and_then(Value::as_str) == Some("RATE_LIMIT") {
        return Event::RateLimitExceeded;
    }
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

/// The event a hook call raises, with its metadata, or `None` for a quiet hook
/// (a pre-hook without a violation).
pub fn classify(hook: Hook, payload: &Value, context: &Context) -> Option<(Event, Map<String, Value>)> {
    let mut metadata = Map::new();
    let (key, subject) = hook.subject(payload);
    metadata.insert(key.into(), subject);
    let tool_error = match hook {
        Hook::ToolPostInvoke => tool_error(payload.get("result").unwrap_or(&Value::Null)),
        _ => None,
    };
    if let Some(error) = &tool_error {
        metadata.insert("error".into(), Value::String(error.clone()));
    }
    let event = match (&context.violation, hook) {
        (Some(v), _) => classify_violation(v),
        (None, Hook::ToolPostInvoke) if tool_error.is_some() => Event::ToolError,
        (None, Hook::ToolPostInvoke) => Event::ToolSuccess,
        (None, Hook::PromptPostFetch) => Event::PromptSuccess,
        (None, Hook::ResourcePostFetch) => Event::ResourceSuccess,
        (None, _) => return None,
    };
    Some((event, metadata))
}

/// The error text of a tool result that failed: `isError: true` (MCP) or a non-empty
/// `error` member. `None` for a successful result.
fn tool_error(result: &Value) -> Option<String> {
    let error = result.get("error").filter(|e| !is_empty(e));
    let is_error = result.get("isError").and_then(Value::as_bool) == Some(true)
        || result.get("is_error").and_then(Value::as_bool) == Some(true);
    if let Some(e) = error {
        return Some(e.as_str().map_or_else(|| e.to_string(), str::to_owned));
    }
    if !is_error {
        return None;
    }
    let text: Vec<&str> = result
        .get("content")
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

/// The cpex `PluginResult` a hook returns: processing always continues; `metadata` names the
/// event raised (`webhook_event`) and whether it was queued (`webhook_queued`).
pub fn plugin_result(event: Option<Event>, queued: bool) -> Value {
    let metadata = match event {
        Some(e) => json!({"webhook_event": e.name(), "webhook_queued": queued}),
        None => json!({}),
    };
    json!({"continue_processing": true, "modified_payload": null, "violation": null, "metadata": metadata})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(violation: Value) -> Context {
        Context::from_json(&json!({"global_context": {"request_id": "r"}, "violation": violation})).unwrap()
    }

    #[test]
    fn violations_classify_as_the_original() {
        let cases = [
            (
                json!({"code": "RATE_LIMIT", "reason": "pii"}),
                Event::RateLimitExceeded,
            ),
            (json!({"reason": "PII found"}), Event::PiiDetected),
            (json!({"reason": "Harmful request"}), Event::HarmfulContent),
            (json!({"reason": "bad Content"}), Event::HarmfulContent),
            (json!({"reason": "deny list"}), Event::Violation),
            (json!({}), Event::Violation),
        ];
        for (v, want) in cases {
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
        assert!(Context::from_json(&json!({"violation": "str"})).is_err());
        assert_eq!(Context::from_json(&Value::Null).unwrap(), Context::default());
    }
}
