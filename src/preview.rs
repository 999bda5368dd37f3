//! What a delivery of an event would look like, without sending it: for each subscribed,
//! enabled webhook, the request headers (credentials masked) and the exact body. The CLI's
//! `render` prints it; its `send` then delivers for real.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::{notification, Event};
use crate::render::{render_json, request_headers, Job, USER_AGENT};

/// One webhook's request, as it would be sent.
#[derive(Debug, Serialize)]
pub struct Preview {
    pub webhook_id: String,
    /// The redacted URL.
    pub url: String,
    /// Header names and values; credentials show as `***`.
    pub headers: Vec<(String, String)>,
    /// The body exactly as it would be sent.
    pub body: String,
}

/// Renders `event` for every webhook of `config` subscribed to it, as the engine would
/// (`plugin_name` fills `{{plugin_name}}`; `violation` and `metadata` as for `notify`).
pub fn preview(
    config: &Config,
    plugin_name: &str,
    event: Event,
    context: &Value,
    violation: Option<Value>,
    metadata: Option<Value>,
) -> Result<Vec<Preview>> {
    let (context, metadata) = notification(context, violation, metadata)?;
    let vars = Job::new(event, context, metadata, None).vars(plugin_name);
    let template = config.template(event);
    let mut previews = Vec::new();
    for webhook in config.webhooks.iter().filter(|w| w.wants(event)) {
        let id = Uuid::new_v4();
        let body = render_json(template, &vars, event, Some(&id)).map_err(Error::Parse)?;
        let mut headers = vec![("user-agent".to_owned(), USER_AGENT.to_owned())];
        for (name, value) in &request_headers(webhook, event, &id, &body) {
            let shown = match value.is_sensitive() {
                true => "***".to_owned(),
                false => String::from_utf8_lossy(value.as_bytes()).into_owned(),
            };
            headers.push((name.as_str().to_owned(), shown));
        }
        previews.push(Preview {
            webhook_id: webhook.id.clone(),
            url: webhook.redacted_url.clone(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(previews)
}
