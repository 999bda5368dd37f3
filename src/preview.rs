//! What a delivery of an event would look like, without sending it: for each subscribed,
//! enabled webhook, the request headers (credentials masked) and the exact body — a digest
//! webhook's as the message of a group of `count` such events, a batching webhook's as a
//! batch of `count` of them. The CLI's `render` prints it;
//! its `send` then delivers for real; `check` measures format bodies against their channel.

use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::config::Config;
use crate::engine::{mail_message, mail_recipients, Digest};
use crate::error::{Error, Result};
use crate::events::{notification, Event};
use crate::formats::violations;
use crate::render::{
    batch_body, batch_element, default_body, request_headers, CommonVars, Job, Source, USER_AGENT,
};

/// One webhook's request, as it would be sent.
#[derive(Debug, Serialize)]
pub struct Preview {
    pub webhook_id: String,
    /// The redacted URL.
    pub url: String,
    /// Header names and values; credentials show as `***`.
    pub headers: Vec<(String, String)>,
    /// The body exactly as it would be sent (PagerDuty's `routing_key` shows as `***`).
    pub body: String,
}

/// Renders `event` for every webhook of `config` subscribed to it, as the engine would
/// (`plugin_name` fills `{{plugin_name}}`; `violation` and `metadata` as for `notify`); a
/// digest webhook shows the message of a group of `count` such events.
pub fn preview(
    config: &Config,
    plugin_name: &str,
    event: Event,
    context: &Value,
    violation: Option<Value>,
    metadata: Option<Value>,
    count: u64,
) -> Result<Vec<Preview>> {
    let (context, metadata) = notification(context, violation, metadata)?;
    let (vars, trace) =
        Job::new(event, context, metadata, None).vars(&CommonVars::new(plugin_name, &config.severities));
    let mut previews = Vec::new();
    for webhook in config.webhooks.iter().filter(|w| w.wants(event)) {
        let id = Uuid::new_v4();
        let message = webhook.alerting.digest.as_ref().map(|settings| {
            let sample = default_body(&vars, event);
            Digest::preview(settings, &webhook.id, event, &vars, sample, count.max(1)).vars
        });
        let source = Source::of(config, webhook, event, false);
        let mut body = source
            .render(webhook, message.as_ref().unwrap_or(&vars), event, &id)
            .map_err(Error::Parse)?;
        // A batching webhook's request: a batch of `count` such events.
        let framed = webhook.batch.map(|_| count.clamp(1, 10_000) as u32);
        if let Some(events) = framed {
            let element = batch_element(webhook, &source, body, &vars).map_err(Error::Parse)?;
            let elements = std::iter::repeat_n(&element[..], events as usize);
            body = batch_body(webhook, plugin_name, elements);
        }
        if let Some(email) = &webhook.email {
            // The message as it would be mailed (RFC 5322), with its recipients.
            let message = mail_message(email, &id, &body).map_err(Error::Parse)?;
            previews.push(Preview {
                webhook_id: webhook.id.clone(),
                url: webhook.redacted_url.clone(),
                headers: vec![("rcpt-to".to_owned(), mail_recipients(email))],
                body: String::from_utf8_lossy(&message.formatted()).into_owned(),
            });
            continue;
        }
        let mut headers = vec![("user-agent".to_owned(), USER_AGENT.to_owned())];
        for (name, value) in &request_headers(webhook, (event, framed), &id, &body, &trace, 0) {
            let shown = match value.is_sensitive() {
                true => "***".to_owned(),
                false => String::from_utf8_lossy(value.as_bytes()).into_owned(),
            };
            headers.push((name.as_str().to_owned(), shown));
        }
        let mut body = String::from_utf8_lossy(&body).into_owned();
        if let Some(key) = webhook.alerting.routing_key.as_deref() {
            body = body.replace(&json!(key).to_string(), "\"***\"");
        }
        previews.push(Preview {
            webhook_id: webhook.id.clone(),
            url: webhook.redacted_url.clone(),
            headers,
            body,
        });
    }
    Ok(previews)
}

/// Where a webhook with a channel `format` gets a body from a template of the config that
/// does not fit the channel: one line per webhook and event, for `check` to warn about.
pub fn channel_warnings(config: &Config, plugin_name: &str) -> Vec<String> {
    let context = json!({"request_id": "req-1", "user": "alice@example.com", "tenant_id": "acme", "server_id": "srv-1"});
    let violation =
        json!({"code": "RATE_LIMIT", "reason": "Rate limit exceeded", "description": "too many calls"});
    let metadata = json!({"tool_name": "search", "error": "upstream timed out"});
    let mut warnings = Vec::new();
    for (index, webhook) in config.webhooks.iter().enumerate() {
        let format = webhook.alerting.format;
        if !format.is_channel() {
            continue;
        }
        for &event in &webhook.events {
            if config.configured_template(event).is_none() {
                continue; // the format's own body, which fits by construction
            }
            let Ok(previews) = preview(
                config,
                plugin_name,
                event,
                &context,
                Some(violation.clone()),
                Some(metadata.clone()),
                2,
            ) else {
                continue;
            };
            let Some(shown) = previews.iter().find(|p| p.webhook_id == webhook.id) else {
                continue;
            };
            let body = serde_json::from_str(&shown.body).unwrap_or(Value::Null);
            let found = violations(format, &body);
            if !found.is_empty() {
                warnings.push(format!(
                    "webhooks[{index}] (format: {}): the template for {} gives a body the channel refuses: {}",
                    format.name(),
                    event.name(),
                    found.join("; ")
                ));
            }
        }
    }
    warnings
}
