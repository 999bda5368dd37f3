//! Opening an engine's outbox: the one place that knows which store each `outbox.type` is.

use std::sync::Arc;

use super::disk::DiskOutbox;
use super::fleet::FleetExchange;
use super::redis::RedisStore;
use super::tenants::StoredWebhook;
use super::{Claimed, Store};
use crate::config::{Config, OutboxConfig};
use crate::error::Result;

/// An engine's outbox, opened.
pub(crate) struct Opened {
    /// What the journal writes to (None: the memory outbox, nothing to write).
    pub store: Option<Arc<dyn Store>>,
    /// What a disk outbox held for this engine at open (a Redis outbox hands it over later,
    /// in claim rounds).
    pub found: Claimed,
    /// The fleet's side of digests: a Redis outbox, when some webhook digests.
    pub fleet: Option<Arc<dyn FleetExchange>>,
}

/// Opens `config`'s outbox for an engine. Fails, naming the field, when the store cannot be
/// opened (e.g. another engine holds a disk outbox's file).
pub(crate) fn open(config: &Config) -> Result<Opened> {
    let stored: Vec<StoredWebhook> = config
        .webhooks
        .iter()
        .map(|w| StoredWebhook {
            id: w.id.clone(),
            url: w.url_fingerprint.clone(),
        })
        .collect();
    Ok(match &config.outbox {
        OutboxConfig::Memory => Opened {
            store: None,
            found: Claimed::default(),
            fleet: None,
        },
        OutboxConfig::Disk { path } => {
            let (store, found) = DiskOutbox::attach(path, stored, config.orphan_after)?;
            Opened {
                store: Some(Arc::new(store)),
                found,
                fleet: None,
            }
        }
        OutboxConfig::Redis(outbox) => {
            let store =
                RedisStore::connect(outbox, stored, config.dead_letter_capacity, config.orphan_after)?;
            let store = Arc::new(store);
            let digests = config.webhooks.iter().any(|w| w.alerting.digest.is_some());
            Opened {
                fleet: digests.then(|| Arc::clone(&store) as Arc<dyn FleetExchange>),
                store: Some(store),
                found: Claimed::default(),
            }
        }
    })
}
