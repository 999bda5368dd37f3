//! Fleet-wide digests: with a Redis outbox, a digest group is the fleet's. Every
//! `EXCHANGE_INTERVAL` (and at flush and close) each replica hands what its digesting
//! webhooks counted to the groups' records in Redis and takes the messages of the groups
//! whose lease it wins; a group's message is sent by one replica per interval, counting every
//! replica's events once. A replica cut off from Redis digests on its own until an exchange
//! succeeds again, then hands over what it counted meanwhile.
//!
//! Exchanges are blocking Redis calls: they run on their own thread (and on the caller's at
//! flush and close), never on a hook or the delivery runtime's worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::digest::{Digest, Message};
use super::registry::lock;
use crate::config::Webhook;
use crate::store::fleet::{FleetExchange, Rules, Schedule};

/// How often a replica exchanges digest counts with the fleet.
pub(crate) const EXCHANGE_INTERVAL: Duration = Duration::from_millis(100);

/// The fleet's side of a process's digests.
pub(crate) struct FleetDigests {
    store: Arc<dyn FleetExchange>,
    /// Per webhook in config order: its exchange state, for those that digest.
    sides: Vec<Option<Mutex<Side>>>,
}

/// A digesting webhook's exchange state.
#[derive(Default)]
struct Side {
    schedule: Schedule,
    /// Groups whose lease this process won, with their message's undelivered flag: the
    /// lease is kept while the message is undelivered, so that the fleet never has two
    /// messages of a group undelivered.
    held: HashMap<String, Arc<AtomicBool>>,
}

/// What an exchange brought: messages to queue (by webhook index) and, per digesting
/// webhook, its counters' news.
#[derive(Default)]
pub(crate) struct Round {
    pub messages: Vec<(usize, Message)>,
    pub webhooks: Vec<WebhookRound>,
}

/// One digesting webhook's outcome of an exchange.
pub(crate) struct WebhookRound {
    pub index: usize,
    /// Events that left a threshold's window before their group fired.
    pub below_threshold: u64,
    /// Whether the fleet digests its groups now (false: cut off from Redis).
    pub shared: bool,
}

impl FleetDigests {
    /// The fleet side of the digesting webhooks of `webhooks`, through `store`.
    pub fn new(store: Arc<dyn FleetExchange>, webhooks: &[Webhook]) -> Self {
        let sides = webhooks
            .iter()
            .map(|w| w.alerting.digest.as_ref().map(|_| Mutex::default()))
            .collect();
        FleetDigests { store, sides }
    }

    /// From now on every Redis call returns by `deadline` (close is under way).
    pub fn close_by(&self, deadline: Instant) {
        self.store.close_by(deadline);
    }

    /// Exchanges each digesting webhook's counts (`digests`, in config order) with the
    /// fleet; `closing` tries every group's lease once whatever its interval.
    pub fn exchange(&self, webhooks: &[Webhook], digests: &[Option<Mutex<Digest>>], closing: bool) -> Round {
        let mut round = Round::default();
        for (index, (side, digest)) in self.sides.iter().zip(digests).enumerate() {
            let (Some(side), Some(digest), Some(settings)) = (side, digest, &webhooks[index].alerting.digest)
            else {
                continue;
            };
            let webhook = &webhooks[index].id;
            let mut side = lock(side);
            side.held.retain(|_, undelivered| undelivered.load(SeqCst));
            let holding: Vec<String> = side.held.keys().cloned().collect();
            let shares = lock(digest).shares();
            let side = &mut *side;
            let exchanged = self.store.exchange_digests(
                webhook,
                settings,
                &shares,
                &holding,
                &mut side.schedule,
                Rules {
                    closing,
                    resolves: webhooks[index].alerting.format.resolves(),
                },
            );
            let now = Instant::now();
            let mut digest = lock(digest);
            let mut below_threshold = 0;
            match exchanged {
                Ok(exchange) => {
                    if !digest.shared() {
                        log::info!("webhook {webhook}: digests are merged across the fleet again");
                    }
                    digest.set_shared(true);
                    below_threshold = exchange.below_threshold;
                    for taken in exchange.taken {
                        let key = taken.key.clone();
                        if let Some(message) = digest.message_of(taken, now) {
                            side.held.insert(key, Arc::clone(&message.undelivered));
                            round.messages.push((index, message));
                        }
                    }
                }
                Err(e) => {
                    if digest.shared() {
                        log::warn!("webhook {webhook}: digests are per process until Redis is back ({e})");
                    }
                    digest.restore(shares, now);
                    digest.set_shared(false);
                }
            }
            round.webhooks.push(WebhookRound {
                index,
                below_threshold,
                shared: digest.shared(),
            });
        }
        round
    }
}
