//! An engine's digests: the state of each digesting webhook (`digest`), and with a Redis
//! outbox the fleet's side of it (`fleet`). Routing adds events here; the digest ticks and
//! the fleet exchange turn what is due into messages, which the intake renders and queues.
//! Counters of what a digest absorbed (below threshold, open groups, shared or not) are kept
//! here, in the webhooks' ledger counters.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::digest::{Digest, Message};
use super::fleet::FleetDigests;
use super::ledger::WebhookCounters;
use crate::config::Webhook;

/// The digest state of an engine's webhooks.
pub(crate) struct Digests {
    /// Per webhook in config order: its digest if it has `digest`.
    per_webhook: Vec<Option<Mutex<Digest>>>,
    /// With a Redis outbox and some webhook digesting: the fleet's side of the digests.
    fleet: Option<FleetDigests>,
}

impl Digests {
    /// The digests of `webhooks`, shared with the fleet through `fleet` when given.
    pub fn new(webhooks: &[Webhook], fleet: Option<FleetDigests>) -> Self {
        let per_webhook = webhooks
            .iter()
            .map(|w| {
                w.alerting.digest.clone().map(|settings| {
                    let mut digest = Digest::new(settings, &w.id);
                    digest.set_shared(fleet.is_some());
                    Mutex::new(digest)
                })
            })
            .collect();
        Digests { per_webhook, fleet }
    }

    /// Whether some webhook digests.
    pub fn any(&self) -> bool {
        self.per_webhook.iter().any(Option::is_some)
    }

    /// Whether the fleet shares them (a Redis outbox).
    pub fn fleet(&self) -> bool {
        self.fleet.is_some()
    }

    /// Webhook `index`'s digest, locked, if it digests.
    pub fn of(&self, index: usize) -> Option<MutexGuard<'_, Digest>> {
        self.per_webhook[index]
            .as_ref()
            .map(|digest| digest.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The messages due now (every group with counts when `closing`), groups quiet for
    /// `resolve_after` closed, counted in `counters`.
    pub fn due(
        &self,
        webhooks: &[Webhook],
        counters: &[WebhookCounters],
        closing: bool,
    ) -> Vec<(usize, Message)> {
        let now = Instant::now();
        let mut due = Vec::new();
        for index in 0..self.per_webhook.len() {
            let Some(mut digest) = self.of(index) else {
                continue;
            };
            let resolves = webhooks[index].alerting.format.resolves();
            let (messages, aged) = digest.due(now, closing, resolves);
            counters[index].below_threshold(aged.below_threshold);
            counters[index].set_groups(digest.groups());
            due.extend(messages.into_iter().map(|message| (index, message)));
        }
        due
    }

    /// One exchange of counts with the fleet (nothing without one): the messages of the
    /// groups whose lease this process won, the exchange's news counted in `counters`.
    pub fn exchange(
        &self,
        webhooks: &[Webhook],
        counters: &[WebhookCounters],
        closing: bool,
    ) -> Vec<(usize, Message)> {
        let Some(fleet) = &self.fleet else {
            return Vec::new();
        };
        let round = fleet.exchange(webhooks, &self.per_webhook, closing);
        for webhook in round.webhooks {
            counters[webhook.index].below_threshold(webhook.below_threshold);
            counters[webhook.index].set_digest_shared(webhook.shared);
        }
        round.messages
    }

    /// From now on every call to the fleet returns by `deadline` (close is under way).
    pub fn close_by(&self, deadline: Instant) {
        if let Some(fleet) = &self.fleet {
            fleet.close_by(deadline);
        }
    }

    /// At the engine's final close: counts the events of threshold groups that never fired
    /// as `below_threshold` (they never reached their threshold), so every event a digest
    /// took ends in one counter.
    pub fn count_unfired(&self, counters: &[WebhookCounters]) {
        for (index, counters) in counters.iter().enumerate() {
            if let Some(mut digest) = self.of(index) {
                counters.below_threshold(digest.unfired());
            }
        }
    }
}
