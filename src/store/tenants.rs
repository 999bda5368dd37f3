//! The configs of one process that share one outbox (the gateway's per-team plugin managers):
//! each attached engine's webhooks, so that one webhook id names one URL only.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use crate::error::{Error, Result};

/// A webhook as stored records name it: its id and the fingerprint of its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredWebhook {
    pub id: String,
    pub url: String,
}

impl StoredWebhook {
    /// Whether a record of webhook `id` with URL fingerprint `url` belongs to this webhook
    /// (records stored before v4 carry no fingerprint and go by id alone).
    pub fn owns(&self, id: &str, url: Option<&str>) -> bool {
        self.id == id && url.is_none_or(|url| url == self.url)
    }
}

/// The engines attached to one outbox in this process, by key.
#[derive(Default)]
pub(crate) struct Tenants {
    engines: HashMap<u64, Vec<StoredWebhook>>,
    next: u64,
}

impl Tenants {
    /// Attaches an engine of `webhooks`; refused, naming `webhooks[i].id`, when an attached
    /// engine gives one of their ids to another URL.
    pub fn register(&mut self, webhooks: Vec<StoredWebhook>) -> Result<u64> {
        for (index, webhook) in webhooks.iter().enumerate() {
            if self
                .webhooks()
                .any(|w| w.id == webhook.id && w.url != webhook.url)
            {
                return Err(Error::config(
                    format!("webhooks[{index}].id"),
                    format!(
                        "`{}` names another URL in a config of this process on the same outbox (give each webhook its own id)",
                        webhook.id
                    ),
                ));
            }
        }
        let key = self.next;
        self.next += 1;
        self.engines.insert(key, webhooks);
        Ok(key)
    }

    /// Detaches engine `key`.
    pub fn remove(&mut self, key: u64) {
        self.engines.remove(&key);
    }

    /// Every attached engine's webhooks.
    pub fn webhooks(&self) -> impl Iterator<Item = &StoredWebhook> {
        self.engines.values().flatten()
    }
}

/// The tenants of each outbox this process has attached by name (a Redis outbox: its URLs and
/// key), for outboxes without a process-wide object of their own.
static NAMED: LazyLock<Mutex<HashMap<String, Tenants>>> = LazyLock::new(Mutex::default);

/// An engine attached to the outbox `name` (see [`attach`]); detached when dropped.
pub(crate) struct Attachment {
    name: String,
    key: u64,
}

/// Attaches an engine of `webhooks` to the outbox `name` of this process (see
/// [`Tenants::register`]).
pub(crate) fn attach(name: &str, webhooks: Vec<StoredWebhook>) -> Result<Attachment> {
    let mut named = NAMED.lock().unwrap_or_else(|e| e.into_inner());
    let key = named.entry(name.to_owned()).or_default().register(webhooks)?;
    Ok(Attachment {
        name: name.to_owned(),
        key,
    })
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let mut named = NAMED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tenants) = named.get_mut(&self.name) {
            tenants.remove(self.key);
            if tenants.engines.is_empty() {
                named.remove(&self.name);
            }
        }
    }
}
