//! What every task of an engine shares: its config, ledger and queues, the wakers of its
//! dispatchers and its lifecycle. The intake, the dispatchers and the engine's loops each
//! hold it; none reaches into another's state for it.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{watch, Notify};

use super::ledger::{Ledger, Ticket, WebhookCounters};
use super::queue::Queue;
use super::silences::Silences;
use crate::config::{BatchSettings, Config, Webhook};
use crate::formats::batch::Framing;
use crate::render::CommonVars;

/// Where the engine is in its life; every task watches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Running,
    /// `close` ran out of time: every queued or running delivery ends as dropped.
    Abandoning,
    /// Closing with a durable outbox: no new attempts; what is queued stays stored.
    Suspended,
    /// Closed: tasks exit.
    Stopped,
}

/// An engine's shared state.
pub(crate) struct Shared {
    pub config: Config,
    pub plugin_name: String,
    /// The variables its events share by kind, made once.
    pub common_vars: CommonVars,
    pub ledger: Arc<Ledger>,
    pub queue: Queue,
    /// The outbox's silences.
    pub silences: Silences,
    /// Wakes a webhook's dispatcher: a new delivery, a retry scheduled, a breaker change.
    wakers: Vec<Notify>,
    /// How each batching webhook frames its batches (None for the others).
    framings: Vec<Option<Framing>>,
    lifecycle: watch::Sender<Lifecycle>,
}

impl Shared {
    /// The shared state of an engine for `config` under `plugin_name`, with its queues and
    /// silences.
    pub fn new(config: Config, plugin_name: &str, queue: Queue, silences: Silences) -> Self {
        let webhooks = config.webhooks.len();
        Shared {
            plugin_name: plugin_name.to_owned(),
            common_vars: CommonVars::new(plugin_name, &config.severities),
            ledger: Arc::new(Ledger::new(webhooks)),
            queue,
            silences,
            wakers: (0..webhooks).map(|_| Notify::new()).collect(),
            framings: (config.webhooks.iter())
                .map(|w| {
                    w.batch
                        .as_ref()
                        .map(|_| Framing::new(w.alerting.format, plugin_name))
                })
                .collect(),
            lifecycle: watch::Sender::new(Lifecycle::Running),
            config,
        }
    }

    /// Webhook `index` of the config.
    pub fn webhook(&self, index: usize) -> &Webhook {
        &self.config.webhooks[index]
    }

    /// Webhook `index`'s live counters.
    pub fn counters(&self, index: usize) -> &WebhookCounters {
        &self.ledger.counters[index]
    }

    /// Whether the engine's tasks are in `state`.
    pub fn is(&self, state: Lifecycle) -> bool {
        *self.lifecycle.borrow() == state
    }

    /// Moves every task to `state` and wakes every dispatcher.
    pub fn set(&self, state: Lifecycle) {
        self.lifecycle.send_replace(state);
        self.wake_all();
    }

    /// A watch of the lifecycle, for a task that waits on it.
    pub fn subscribe(&self) -> watch::Receiver<Lifecycle> {
        self.lifecycle.subscribe()
    }

    /// Wakes every dispatcher.
    pub fn wake_all(&self) {
        self.wakers.iter().for_each(Notify::notify_one);
    }

    /// What wakes webhook `index`'s dispatcher.
    pub fn waker(&self, index: usize) -> &Notify {
        &self.wakers[index]
    }

    /// Queues `ticket` (due at `due`, else now) and wakes its dispatcher.
    pub fn requeue(&self, ticket: Ticket, due: Option<Instant>) {
        let index = ticket.webhook;
        match (due, self.batching(index)) {
            (Some(due), _) => self.queue.restore(ticket, due),
            // A replayed batch is already whole.
            (None, Some((limits, framing))) if self.packs(index) && !ticket.is_whole() => {
                self.queue.pack(ticket, limits, framing)
            }
            (None, _) => self.queue.push(ticket),
        }
        self.wakers[index].notify_one();
    }

    /// Whether webhook `index` packs its events' deliveries into batches as they are queued:
    /// a batching webhook on a memory outbox (a durable one journals each event). A packed
    /// delivery's id and trace are its batch's.
    pub fn packs(&self, index: usize) -> bool {
        !self.queue.durable() && self.batching(index).is_some()
    }

    /// The batch limits and framing of webhook `index`, if it batches.
    pub fn batching(&self, index: usize) -> Option<(&BatchSettings, &Framing)> {
        let limits = self.webhook(index).batch.as_ref()?;
        Some((limits, self.framings[index].as_ref()?))
    }
}
