//! What one delivery carries: an event's template variables (assembled once per event on the
//! runtime thread), its rendered and checked body, and its request headers. Shared by the
//! engine, the CLI's preview and digests.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use once_cell::sync::OnceCell;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::config::{Config, Webhook};
use crate::events::{Context, Event, Metadata};
use crate::formats::{self, batch, Format};
use crate::matching::{group_key, group_of, Field};
use crate::severity::Severities;
use crate::template::{variable, variable_index, Lookup, Template, DELIVERY_ID, VARIABLES};
use crate::trace::Trace;

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("webhook-notification/", env!("CARGO_PKG_VERSION"));

/// An event on its way to its webhooks, before its variables are assembled.
pub(crate) struct Job {
    pub event: Event,
    /// When the hook raised it (formatted on the runtime thread, not the hook's).
    pub raised: std::time::SystemTime,
    pub context: Context,
    pub metadata: Metadata,
    /// Already limited to `max_payload_size` at admission.
    pub payload: Option<Value>,
    /// The library's own plugin_error: rendered with the built-in default template.
    pub builtin_template: bool,
}

impl Job {
    /// A job stamped with the current time.
    pub fn new(
        event: Event,
        context: Context,
        metadata: impl Into<Metadata>,
        payload: Option<Value>,
    ) -> Self {
        Job {
            event,
            raised: std::time::SystemTime::now(),
            context,
            metadata: metadata.into(),
            payload,
            builtin_template: false,
        }
    }

    /// The template variables (all but `delivery_id`, which differs per delivery, and
    /// `digest`, which only digest messages have), and the event's trace: the host's, else a
    /// fresh one (`{{trace_id}}`, `{{span_id}}`).
    pub fn vars(self, common: &CommonVars) -> (Map<String, Value>, Trace) {
        let vars = self.event_vars(common);
        let trace = vars.trace().clone();
        (vars.into_map(), trace)
    }

    /// The variables as [`EventVars`] (what the runtime routes with).
    pub fn event_vars(self, common: &CommonVars) -> EventVars<'_> {
        let c = self.context;
        let [event, severity] = &common.by_event[self.event as usize];
        let values = [
            Cow::Borrowed(event),
            Cow::Borrowed(severity),
            Cow::Borrowed(&common.plugin_name),
            Cow::Owned(rfc3339_millis(self.raised).into()),
            Cow::Owned(c.request_id),
            Cow::Owned(c.user),
            Cow::Owned(c.user_info),
            Cow::Owned(c.tenant_id),
            Cow::Owned(c.server_id),
            Cow::Owned(c.violation.unwrap_or(Value::Null)),
            Cow::Owned(self.payload.unwrap_or(Value::Null)),
        ];
        EventVars {
            values,
            metadata: self.metadata,
            metadata_value: OnceCell::new(),
            trace: c.trace.map(OnceCell::with_value).unwrap_or_default(),
            trace_values: OnceCell::new(),
            map: OnceCell::new(),
        }
    }
}

/// What every event of an engine shares by kind — `plugin_name`, and each event's `event`
/// and `severity` — made values once, so that an event's variables borrow them instead of
/// allocating their own.
pub(crate) struct CommonVars {
    plugin_name: Value,
    /// `event` and `severity` by event (`Event as usize`).
    by_event: Vec<[Value; 2]>,
}

impl CommonVars {
    /// The common variables of `plugin_name`'s events under `severities`.
    pub fn new(plugin_name: &str, severities: &Severities) -> Self {
        CommonVars {
            plugin_name: plugin_name.into(),
            by_event: Event::ALL
                .iter()
                .enumerate()
                .map(|(index, &event)| {
                    debug_assert_eq!(event as usize, index, "Event::ALL is in declaration order");
                    [event.name().into(), severities.of(event).name().into()]
                })
                .collect(),
        }
    }
}

/// `at` in RFC 3339 with milliseconds, formatted once per millisecond and thread: events
/// raised together share the text (formatting it cost more than the rest of an event's
/// variables).
fn rfc3339_millis(at: std::time::SystemTime) -> String {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(u128, String)>> = const { std::cell::RefCell::new(None) };
    }
    let format = || humantime::format_rfc3339_millis(at).to_string();
    let Ok(since_epoch) = at.duration_since(std::time::UNIX_EPOCH) else {
        return format();
    };
    let millis = since_epoch.as_millis();
    LAST.with_borrow_mut(|last| match last {
        Some((at_millis, text)) if *at_millis == millis => text.clone(),
        _ => last.insert((millis, format())).1.clone(),
    })
}

/// Where a rendering finds the variables: an event's [`EventVars`], or a map (a digest
/// message's, the CLI's preview).
pub(crate) trait Vars: Lookup {
    /// The variable `name`, if set.
    fn var(&self, name: &str) -> Option<&Value> {
        self.value(variable_index(name)?)
    }
    /// All of them as a map (what filters, digests, silences and channel formats read).
    fn map(&self) -> &Map<String, Value>;
}

impl Lookup for Map<String, Value> {
    fn value(&self, index: usize) -> Option<&Value> {
        self.get(VARIABLES[index])
    }
}

impl Vars for Map<String, Value> {
    fn map(&self) -> &Map<String, Value> {
        self
    }
}

/// The names of an event's variables, in [`VARIABLES`] order: every template variable but
/// the last two (`delivery_id`, `digest`), which are not the event's.
const EVENT_VARS: &[&str] = VARIABLES.split_at(VARIABLES.len() - 2).0;

/// Where [`EventVars`] finds the variables it keeps apart from the rest.
const METADATA: usize = variable("metadata");
const TRACE_ID: usize = variable("trace_id");
const SPAN_ID: usize = variable("span_id");

/// An event's template variables, each a value of its own: a template finds one by index
/// without a map, and the map is built only when something asks for it (a filter, a digest,
/// a silence, a channel or log format) — a webhook that only renders a template, batched or
/// not, never pays for it. `metadata` and the trace's ids are made values only when read
/// (the built-in template writes the metadata straight from the event's, and neither id).
pub(crate) struct EventVars<'c> {
    /// The variables before `trace_id` but `metadata`, in [`VARIABLES`] order; the first
    /// three borrowed from the engine's [`CommonVars`].
    values: [Cow<'c, Value>; TRACE_ID - 1],
    metadata: Metadata,
    metadata_value: OnceCell<Value>,
    /// The event's trace: the host's, else a fresh one made when first read (deliveries
    /// packed into a batch travel under the batch's, and most templates write neither id).
    trace: OnceCell<Trace>,
    trace_values: OnceCell<[Value; 2]>,
    map: OnceCell<Map<String, Value>>,
}

impl EventVars<'_> {
    /// The map of the variables (built from them, or the one built already).
    pub fn into_map(self) -> Map<String, Value> {
        let EventVars {
            values,
            metadata,
            metadata_value,
            trace,
            trace_values: ids,
            map,
        } = self;
        if let Some(map) = map.into_inner() {
            return map;
        }
        let ids = ids
            .into_inner()
            .unwrap_or_else(|| trace_values(trace.get_or_init(Trace::random)));
        let metadata = metadata_value
            .into_inner()
            .unwrap_or_else(|| Value::Object(metadata.into_map()));
        let mut values: Vec<Value> = values.into_iter().map(Cow::into_owned).collect();
        values.insert(METADATA, metadata);
        EVENT_VARS
            .iter()
            .map(|n| (*n).to_owned())
            .zip(values.into_iter().chain(ids))
            .collect()
    }

    /// The event's trace: the host's, else one made when first asked for, then kept.
    pub fn trace(&self) -> &Trace {
        self.trace.get_or_init(Trace::random)
    }

    fn trace_values(&self) -> &[Value; 2] {
        self.trace_values.get_or_init(|| trace_values(self.trace()))
    }
}

/// `trace_id` and `span_id` of a trace.
fn trace_values(trace: &Trace) -> [Value; 2] {
    trace.hex_ids().map(Value::String)
}

impl Lookup for EventVars<'_> {
    fn value(&self, index: usize) -> Option<&Value> {
        match index {
            METADATA => Some(
                self.metadata_value
                    .get_or_init(|| Value::Object(self.metadata.to_map())),
            ),
            TRACE_ID | SPAN_ID => Some(&self.trace_values()[index - TRACE_ID]),
            _ if index < METADATA => Some(&self.values[index]),
            _ if index < TRACE_ID => Some(&self.values[index - 1]),
            _ => None,
        }
    }

    fn write_whole(&self, index: usize, out: &mut Vec<u8>) -> bool {
        index == METADATA && self.metadata_value.get().is_none() && self.metadata.write_json(out)
    }
}

impl Vars for EventVars<'_> {
    fn map(&self) -> &Map<String, Value> {
        self.map.get_or_init(|| {
            (EVENT_VARS.iter().enumerate())
                .map(|(index, name)| {
                    let value = self.value(index).expect("every event variable is set");
                    ((*name).to_owned(), value.clone())
                })
                .collect()
        })
    }
}

/// A rendering's variables: an event's, and the id of the delivery it renders for.
struct Delivery<'a, V> {
    vars: &'a V,
    id: Option<Value>,
}

impl<V: Vars> Lookup for Delivery<'_, V> {
    fn value(&self, index: usize) -> Option<&Value> {
        match index {
            DELIVERY_ID => self.id.as_ref(),
            _ => self.vars.value(index),
        }
    }

    fn write_whole(&self, index: usize, out: &mut Vec<u8>) -> bool {
        self.vars.write_whole(index, out)
    }
}

/// Renders `template` with the event's variables (and `delivery_id`, if it uses it). A
/// template proven at compile time to render JSON needs no check; any other body is parsed
/// before it may be sent.
pub(crate) fn render_json(
    template: &Template,
    vars: &impl Vars,
    event: Event,
    delivery_id: Option<&Uuid>,
) -> Result<Bytes, String> {
    let id = delivery_id.map(|id| Value::String(id.to_string()));
    let body = template.render_bytes(&Delivery { vars, id });
    if !template.renders_json() {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body)
            .map_err(|e| format!("the {} template rendered invalid JSON: {e}", event.name()))?;
    }
    Ok(Bytes::from(body))
}

/// An event's built-in body as a value (a digest's samples); null if it cannot render.
pub(crate) fn default_body(vars: &Map<String, Value>, event: Event) -> Value {
    render_json(Template::builtin(), vars, event, None)
        .ok()
        .and_then(|body| serde_json::from_slice(&body).ok())
        .unwrap_or(Value::Null)
}

/// What a webhook's body for an event is made from: an email webhook's is always the email
/// format's; otherwise the event's configured template wins (its own, else
/// `default_template`), else the webhook's channel format, else the built-in template. The
/// library's own plugin_error always uses the built-in template.
pub(crate) enum Source<'a> {
    Template(&'a Template),
    Format(Format),
}

impl<'a> Source<'a> {
    /// The source of `webhook`'s body for `event` under `config`.
    pub fn of(config: &'a Config, webhook: &Webhook, event: Event, builtin: bool) -> Self {
        match (
            builtin,
            config.configured_template(event),
            webhook.alerting.format,
        ) {
            // A mail is always the email format's (a template renders JSON, not a message).
            (_, _, Format::Email) => Source::Format(Format::Email),
            (true, _, _) => Source::Template(Template::builtin()),
            (false, Some(template), _) => Source::Template(template),
            (false, None, format) if format.is_channel() => Source::Format(format),
            (false, None, _) => Source::Template(Template::builtin()),
        }
    }

    /// Whether every body it renders is one line (a template whose text is; never a format).
    pub fn renders_one_line(&self) -> bool {
        matches!(self, Source::Template(template) if template.renders_one_line())
    }

    /// The body for `vars` (with `digest` for a digest message) and delivery `id`. Without
    /// a template of its own a digest message is the built-in body plus `"digest": {...}`.
    pub fn render(
        &self,
        webhook: &Webhook,
        vars: &impl Vars,
        event: Event,
        id: &Uuid,
    ) -> Result<Bytes, String> {
        match self {
            Source::Template(template) => {
                let body = render_json(template, vars, event, Some(id))?;
                match vars.var("digest") {
                    Some(digest) if std::ptr::eq(*template, Template::builtin()) => {
                        let mut object: Map<String, Value> =
                            serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                        object.insert("digest".into(), digest.clone());
                        Ok(Bytes::from(Value::Object(object).to_string()))
                    }
                    _ => Ok(body),
                }
            }
            Source::Format(Format::Email) => {
                let subject = match webhook.email.as_ref().and_then(|e| e.subject.as_ref()) {
                    Some(template) => {
                        let rendered = render_json(template, vars, event, Some(id))?;
                        Some(serde_json::from_slice::<String>(&rendered).map_err(|e| e.to_string())?)
                    }
                    None => None,
                };
                Ok(Bytes::from(formats::email_body(vars.map(), subject).to_string()))
            }
            Source::Format(format) => {
                let routing_key = webhook.alerting.routing_key.as_deref().unwrap_or_default();
                let vars = vars.map();
                let body = formats::body(*format, vars, routing_key, &dedup_key(webhook, vars))
                    .expect("a channel format has a body");
                Ok(Bytes::from(body.to_string()))
            }
        }
    }
}

/// An alert's stable key: its digest group's, else one of the event and its subject (so
/// PagerDuty folds repeats of one event on one tool into one incident).
fn dedup_key(webhook: &Webhook, vars: &Map<String, Value>) -> String {
    if let Some(key) = vars
        .get("digest")
        .and_then(|d| d.get("key"))
        .and_then(Value::as_str)
    {
        return key.to_owned();
    }
    let fields = [Field::named("event"), Field::named("subject")].map(Option::unwrap);
    group_key(&webhook.id, &group_of(&fields, vars))
}

/// The element of one event in `webhook`'s batches, from its `body` rendered by `source`
/// (`body` unchanged for a webhook that does not batch).
pub(crate) fn batch_element(
    webhook: &Webhook,
    source: &Source,
    body: Bytes,
    vars: &impl Vars,
) -> Result<Bytes, String> {
    match webhook.batch {
        Some(_) => batch::element(webhook.alerting.format, body, source.renders_one_line(), || {
            vars.map()
        }),
        None => Ok(body),
    }
}

/// The request body of one of `webhook`'s batches of `elements`.
pub(crate) fn batch_body<'a>(
    webhook: &Webhook,
    plugin_name: &str,
    elements: impl Iterator<Item = &'a [u8]> + Clone,
) -> Bytes {
    batch::frame(webhook.alerting.format, plugin_name, elements)
}

/// The headers of one attempt (all but `User-Agent`, which the client adds): content type,
/// event (a batch of `framed` events: its size instead), delivery id, the W3C trace context of
/// attempt number `attempt` (0-based), the webhook's static and credential headers, and its
/// signature over `body` at the current time.
pub(crate) fn request_headers(
    webhook: &Webhook,
    (event, framed): (Event, Option<u32>),
    id: &Uuid,
    body: &[u8],
    trace: &Trace,
    attempt: u32,
) -> HeaderMap {
    let id = id.to_string();
    let mut headers = webhook.headers.clone();
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    match framed {
        Some(events) => {
            let content_type = batch::content_type(webhook.alerting.format);
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(
                HeaderName::from_static("x-webhook-batch-size"),
                HeaderValue::from(events),
            );
        }
        None => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(
                HeaderName::from_static("x-webhook-event"),
                HeaderValue::from_static(event.name()),
            );
        }
    }
    headers.insert(
        HeaderName::from_static("x-webhook-delivery"),
        HeaderValue::from_str(&id).expect("a UUID is a header value"),
    );
    let traceparent =
        HeaderValue::from_str(&trace.traceparent(attempt)).expect("hex digits are a header value");
    headers.insert(HeaderName::from_static("traceparent"), traceparent);
    // Checked printable ASCII when the host gave it.
    if let Some(state) = trace.state.as_deref().and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert(HeaderName::from_static("tracestate"), state);
    }
    headers.extend(webhook.signer.headers(&id, unix_now, body));
    headers
}

/// The map of a JSON object (empty for anything else).
pub(crate) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `var` finds each variable where `map` (and `Job::vars`) put it, so a template renders
    /// the same from either.
    #[test]
    fn timestamps_of_one_millisecond_share_their_text_and_the_next_gets_its_own() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(1_765_000_000_123_456_789);
        let same = at + std::time::Duration::from_micros(300);
        let next = at + std::time::Duration::from_millis(1);
        assert_eq!(rfc3339_millis(at), "2025-12-06T05:46:40.123Z");
        assert_eq!(rfc3339_millis(same), "2025-12-06T05:46:40.123Z");
        assert_eq!(rfc3339_millis(next), "2025-12-06T05:46:40.124Z");
        assert_eq!(rfc3339_millis(at), "2025-12-06T05:46:40.123Z");
    }

    /// Any template renders the same from an event's variables as from their map, whatever
    /// its classified metadata (written without a map: `Metadata::write_json`), and the
    /// built-in template writes that metadata as the map it would have made.
    #[test]
    fn every_variable_renders_from_event_vars_as_from_their_map() {
        let holes = VARIABLES.map(|n| format!(r#""{n}": {{{{{n}}}}}, "{n}_text": "{{{{{n}}}}}""#));
        let all = format!(r#"{{{}, "tool": {{{{metadata.tool_name}}}}}}"#, holes.join(", "));
        let templates = [Template::builtin(), &Template::compile(&all).unwrap()];
        let common = CommonVars::new("p", &Severities::default());
        let long = "é".repeat(crate::events::MAX_HOST_STRING);
        let subjects = [
            json!("search"),
            json!("a\"b\\c\nd"),
            json!(7),
            json!({"x": [1, null]}),
            json!(long),
        ];
        let errors = [None, Some("boom \"quoted\"".to_owned()), Some(long.clone())];
        for subject_key in ["tool_name", "prompt_id", "resource_uri"] {
            for (subject, error) in subjects.iter().flat_map(|s| errors.iter().map(move |e| (s, e))) {
                let metadata = || Metadata::Classified {
                    subject_key,
                    subject: subject.clone(),
                    error: error.clone(),
                };
                let expected_metadata = Value::Object(metadata().into_map());
                for template in templates {
                    let job = Job::new(Event::ToolError, Context::default(), metadata(), None);
                    let vars = job.event_vars(&common);
                    let id = Uuid::new_v4();
                    let from_vars = render_json(template, &vars, Event::ToolError, Some(&id)).unwrap();
                    let from_map = render_json(template, vars.map(), Event::ToolError, Some(&id)).unwrap();
                    assert_eq!(from_vars, from_map, "{subject_key} {subject} {error:?}");
                    let body: Value = serde_json::from_slice(&from_vars).unwrap();
                    assert_eq!(body["metadata"], expected_metadata);
                }
            }
        }
    }

    #[test]
    fn event_vars_find_each_variable_as_their_map_has_it() {
        let context = Context::from_json(&json!({"request_id": "r-1", "user": {"email": "a@x.io"},
            "tenant_id": "t", "server_id": "s", "violation": {"code": "RATE_LIMIT"}}))
        .unwrap();
        let job = || {
            Job::new(
                Event::RateLimitExceeded,
                context.clone(),
                crate::render::object(json!({"k": 1})),
                Some(json!([2])),
            )
        };
        let common = CommonVars::new("p", &Severities::default());
        let vars = job().event_vars(&common);
        let map = vars.map().clone();
        assert_eq!(map.len(), EVENT_VARS.len());
        for (name, value) in &map {
            assert_eq!(vars.var(name), Some(value), "{name}");
        }
        assert_eq!(vars.var("digest"), None);
        assert_eq!(map["event"], "rate_limit_exceeded");
        assert_eq!(map["plugin_name"], "p");
        let severity = crate::severity::Severity::default_for(Event::RateLimitExceeded);
        assert_eq!(map["severity"], severity.name());
        for event in Event::ALL {
            let vars = Job::new(event, Context::default(), Map::new(), None).event_vars(&common);
            assert_eq!(vars.var("event"), Some(&Value::from(event.name())));
        }
        assert_eq!(vars.into_map(), map);
        let fresh = job().event_vars(&common);
        let mut expected = fresh.into_map();
        // Built separately: only the timestamp and the trace may differ.
        for name in ["timestamp", "trace_id", "span_id"] {
            expected.insert(name.into(), map[name].clone());
        }
        assert_eq!(expected, map);
    }
}
