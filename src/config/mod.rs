//! The plugin configuration: the original plugin's schema, defaults and bounds, plus the
//! new optional fields of DESIGN.md. [`Config::load`] does every check up front, so a
//! notifier never starts half-configured, and every error names the field path. No error
//! quotes a value from the config: any of them may be a credential. One file per section:
//! `schema` (the document's serde types), `webhook`, `auth`, `alerting`, `network`, `outbox`; `redact`
//! (secret-free errors), `expand` (`${env.…}`, `${file:…}`), `retry`, `fields` (shared checks).

mod alerting;
mod auth;
mod batch;
mod document;
mod email;
mod expand;
mod fields;
mod intervals;
mod network;
mod outbox;
mod redact;
mod retry;
mod schema;
mod webhook;
pub(crate) mod yaml;

use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::events::{Event, Hook};
use crate::network::NetworkPolicy;
use crate::severity::Severities;
use crate::template::Template;
#[cfg(test)]
pub use alerting::Threshold;
pub use alerting::{Alerting, DigestSettings};
pub use batch::BatchSettings;
pub use email::EmailSettings;
use fields::{compile, event_key, in_range, seconds};
pub use outbox::{OutboxConfig, RedisOutbox};
use schema::RawConfig;
use webhook::check_unique_ids;
pub(crate) use webhook::valid_id;
pub use webhook::{BreakerSettings, ProxySetting, Webhook};

/// A loaded, validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Webhooks in config order (disabled ones included, so stats keep config order).
    pub webhooks: Vec<Webhook>,
    templates: HashMap<Event, Template>,
    default_template: Option<Template>,
    /// Whether `{{payload}}` carries the hook's payload.
    pub include_payload_data: bool,
    /// Largest payload JSON (bytes) that `{{payload}}` carries; larger payloads are dropped
    /// when the event is admitted, not kept until render.
    pub max_payload_size: usize,
    /// How long closing waits for pending deliveries.
    pub shutdown_timeout: Duration,
    /// Dead letters kept at most (oldest evicted and counted).
    pub dead_letter_capacity: usize,
    /// How long a durable outbox keeps a delivery whose webhook (id and URL) no loaded config
    /// has, counted from when the store was opened, before it becomes a dead letter.
    pub orphan_after: Duration,
    /// Where deliveries wait.
    pub outbox: OutboxConfig,
    /// Which destinations deliveries may reach.
    pub network: std::sync::Arc<NetworkPolicy>,
    /// The level of every event (defaults with the top-level `severity:` overrides).
    pub severities: Severities,
    /// SHA-256 of the expanded document and template files: instances whose configs have
    /// the same identity (and the same plugin name) share one engine.
    pub identity: [u8; 32],
    /// Per hook (in [`Hook::ALL`] order), whether some enabled webhook takes an event a call
    /// of it can raise: a call of a hook nobody takes is answered before anything is parsed.
    hooks_wanted: [bool; Hook::ALL.len()],
}

impl Config {
    /// Loads a YAML or JSON config (the `config:` mapping of a plugin entry), expanding
    /// `${env.NAME}` from the environment. JSON is tried first when the text starts with
    /// `{`; YAML (of which JSON is a subset) otherwise, and when JSON fails, so YAML flow
    /// mappings like `{webhooks: [...]}` load too.
    pub fn load(text: &str) -> Result<Self> {
        let mut doc = parse_document(text)?;
        if doc.is_null() {
            doc = yaml::Value::Mapping(Default::default());
        }
        expand::expand_env(&mut doc, &mut String::new())?;
        Self::from_value(doc)
    }

    /// Validates an already-parsed document (after `${env.…}` expansion).
    fn from_value(doc: yaml::Value) -> Result<Self> {
        let mut identity = Sha256::new();
        identity.update(yaml::to_text(&doc));
        let raw: RawConfig =
            document::read(doc).map_err(|(field, why)| Error::config(field, why.to_string()))?;
        let default_capacity = in_range("queue_capacity", raw.queue_capacity, 1, 10_000_000)?;
        let network = raw.network.build()?;
        let intervals = intervals::build(raw.time_intervals)?;
        let webhooks = raw
            .webhooks
            .into_iter()
            .enumerate()
            .map(|(i, w)| w.build(&format!("webhooks[{i}]"), default_capacity, &network, &intervals))
            .collect::<Result<Vec<_>>>()?;
        check_unique_ids(&webhooks)?;
        let mut templates = HashMap::new();
        for (name, source) in raw.payload_templates {
            let field = format!("payload_templates.{name}");
            templates.insert(event_key(&field, &name)?, compile(&field, &source)?);
        }
        for (name, path) in raw.payload_template_files {
            let field = format!("payload_template_files.{name}");
            let event = event_key(&field, &name)?;
            if templates.contains_key(&event) {
                return Err(Error::config(
                    field,
                    "event also has an inline payload_templates entry",
                ));
            }
            let source = expand::read_config_file(&path)
                .and_then(|bytes| {
                    String::from_utf8(bytes).map_err(|_| std::io::ErrorKind::InvalidData.into())
                })
                .map_err(|e| Error::config(&field, format!("cannot read `{path}`: {e}")))?;
            identity.update(&source);
            templates.insert(event, compile(&field, &source)?);
        }
        let default_template = match raw.default_template {
            Some(source) => Some(compile("default_template", &source)?),
            None => None,
        };
        let hooks_wanted =
            Hook::ALL.map(|(hook, _)| hook.events().any(|e| webhooks.iter().any(|w| w.wants(e))));
        Ok(Config {
            hooks_wanted,
            webhooks,
            templates,
            default_template,
            include_payload_data: raw.include_payload_data,
            max_payload_size: in_range("max_payload_size", raw.max_payload_size, 0, 16 << 20)? as usize,
            shutdown_timeout: seconds("shutdown_timeout", raw.shutdown_timeout, 0.0, 600.0)?,
            dead_letter_capacity: in_range(
                "outbox.dead_letter_capacity",
                raw.outbox.dead_letter_capacity,
                0,
                10_000_000,
            )? as usize,
            orphan_after: raw.outbox.orphan_after()?,
            outbox: raw.outbox.build()?,
            network: std::sync::Arc::new(network),
            severities: alerting::severities(raw.severity)?,
            identity: identity.finalize().into(),
        })
    }

    /// Replaces `event`'s template without the load-time JSON check, so tests can reach the
    /// render-time fallback that the check otherwise makes unreachable.
    #[cfg(test)]
    pub(crate) fn set_template_unchecked(&mut self, event: Event, template: Template) {
        self.templates.insert(event, template);
    }

    /// Whether some enabled webhook takes an event that a call of `hook` can raise.
    pub fn wants_hook(&self, hook: Hook) -> bool {
        self.hooks_wanted[hook as usize]
    }

    /// The template for `event`: its own, else `default_template`, else the built-in one.
    pub fn template(&self, event: Event) -> &Template {
        self.configured_template(event)
            .unwrap_or_else(|| Template::builtin())
    }

    /// The template the config gives `event`: its own, else `default_template`.
    pub fn configured_template(&self, event: Event) -> Option<&Template> {
        self.templates.get(&event).or(self.default_template.as_ref())
    }

    /// The index of the webhook with `id`.
    pub fn webhook_index(&self, id: &str) -> Option<usize> {
        self.webhooks.iter().position(|w| w.id == id)
    }
}

/// How deep a config document may nest.
const MAX_NESTING: usize = 128;

/// The deepest nesting of `[` and `{` outside quoted strings (JSON, and YAML flow style; block
/// style nests by indentation, which the 1 MiB size limit bounds).
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut quote, mut escaped) = (0usize, 0, None, false);
    for c in text.chars() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' | '{' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    deepest
}

/// JSON when the text looks like JSON and is, else YAML; the error of the format the text
/// was meant to be in.
fn parse_document(text: &str) -> Result<yaml::Value> {
    if flow_depth(text) > MAX_NESTING {
        // Parsers take time quadratic in the depth; no config needs more than a few levels.
        return Err(Error::config(
            "",
            format!("nests deeper than {MAX_NESTING} levels"),
        ));
    }
    let json_error = match text.trim_start().starts_with('{') {
        true => match serde_json::from_str(text) {
            Ok(doc) => return Ok(doc),
            Err(e) => Some(e),
        },
        false => None,
    };
    yaml::parse(text).map_err(|yaml| {
        let message = match json_error {
            Some(json) => format!("neither valid JSON ({json}) nor valid YAML ({yaml})"),
            None => format!("invalid YAML: {yaml}"),
        };
        Error::config("", message)
    })
}

#[cfg(test)]
mod tests;
