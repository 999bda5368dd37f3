//! The snapshot types hosts read (stats JSON): totals, one entry per webhook, the outbox.
//! Only data: the live counters they are taken from live in the engine's ledger.
//!
//! Every count is in deliveries (one event to one webhook): an event that three webhooks
//! subscribe to and that is dropped because the queue is full counts three drops.

use serde::Serialize;

/// A webhook's circuit breaker as stats and metrics show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Circuit {
    Closed,
    Open,
    HalfOpen,
}

/// What `stats.outbox` shows.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OutboxStatus {
    /// `memory`, `disk` or `redis`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// New deliveries the outbox has settled so far (0 for memory): written durably, or
    /// (redis, which writes only the last state of a batch) delivered before they had to be.
    pub committed: u64,
    /// Changes not yet in the store (events admitted and not yet routed, changes waiting for
    /// the next commit, or in the batch being written): what a crash now would lose.
    pub uncommitted: u64,
    /// Whether the store is reachable (always true for memory).
    pub connected: bool,
    /// Records found in a disk store that could not be read at start: kept aside in its
    /// `unreadable` table for inspection, not resumed.
    pub unreadable: u64,
    /// The latest store error, if any.
    pub last_error: Option<String>,
    /// Deliveries this process holds in a disk outbox (shared by its configs on that
    /// directory); null for the other types.
    pub held: Option<u64>,
    /// Deliveries this process adopted from processes on the directory that were gone (disk).
    pub adopted: u64,
}

impl OutboxStatus {
    /// The status of the memory outbox (nothing to commit, always connected).
    pub fn memory() -> Self {
        OutboxStatus {
            kind: "memory",
            committed: 0,
            uncommitted: 0,
            connected: true,
            unreadable: 0,
            last_error: None,
            held: None,
            adopted: 0,
        }
    }
}

/// What one webhook has done so far.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WebhookStats {
    /// The webhook's id (configured, or derived from a hash of its URL).
    pub id: String,
    /// `scheme://host[:port]/…`
    pub url: String,
    pub delivered: u64,
    pub failed: u64,
    pub retries: u64,
    pub dropped: u64,
    /// Deliveries queued, in flight or waiting to retry now.
    pub queued: u64,
    pub circuit: Circuit,
    /// Dead letters held for this webhook.
    pub dead_letters: u64,
    /// Events of its `events` that `match`, `exclude` or `min_severity` turned away (not
    /// deliveries: they cost the webhook nothing).
    pub filtered: u64,
    /// Digest events that left their threshold's window before their group fired.
    pub below_threshold: u64,
    /// Digest groups open now.
    pub groups: u64,
    /// Digest messages queued so far (each is also one delivery).
    pub digest_messages: u64,
    /// True while this webhook's digest groups are the fleet's (a Redis outbox: counts are
    /// merged in Redis, one replica sends each message); false without a Redis outbox, or
    /// while cut off from it (this process then digests on its own).
    pub digest_shared: bool,
    /// Events of digest messages that were dropped or failed (a digest message is one
    /// delivery in `dropped`/`failed`; this says how many events it held).
    pub digest_events_lost: u64,
    /// Batch requests delivered (a batching webhook; its other counters count events).
    pub batches: u64,
    /// Events its `mute_time_intervals` (or being outside its `active_time_intervals`) held back.
    pub muted: u64,
    /// Events an active silence held back.
    pub silenced: u64,
    /// Status of the latest response, if any came back.
    pub last_status: Option<u16>,
    /// The latest failure, secret-free.
    pub last_error: Option<String>,
    /// Delivery latency percentiles over the recent window, in milliseconds.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

/// Totals plus one entry per webhook in config order.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Stats {
    pub delivered: u64,
    pub failed: u64,
    pub retries: u64,
    pub dropped: u64,
    /// Deliveries queued or in flight now.
    pub pending: u64,
    /// Dead letters held now (those of webhooks no longer configured included).
    pub dead_letters: u64,
    /// Dead letters evicted (oldest first) because `dead_letter_capacity` was reached.
    pub dead_letters_evicted: u64,
    /// Hook calls whose data could not be turned into an event at all (logged, paced).
    pub host_errors: u64,
    /// Bugs caught: a panic on one of the engine's tasks or threads (each logged; the engine
    /// goes on, and what it dropped is counted where it belongs).
    pub internal_errors: u64,
    pub webhooks: Vec<WebhookStats>,
    /// Where deliveries wait, and how much of it is committed.
    pub outbox: OutboxStatus,
}

impl Stats {
    /// Sums the per-webhook snapshots.
    pub fn new(pending: u64, host_errors: u64, webhooks: Vec<WebhookStats>, outbox: OutboxStatus) -> Self {
        let sum = |f: fn(&WebhookStats) -> u64| webhooks.iter().map(f).sum();
        Stats {
            delivered: sum(|w| w.delivered),
            failed: sum(|w| w.failed),
            retries: sum(|w| w.retries),
            dropped: sum(|w| w.dropped),
            pending,
            dead_letters: sum(|w| w.dead_letters),
            dead_letters_evicted: 0,
            host_errors,
            internal_errors: 0,
            webhooks,
            outbox,
        }
    }

    /// The stats as a JSON document (the form the C, Python and Go hosts receive).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("stats serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(delivered: u64, failed: u64, dead_letters: u64) -> WebhookStats {
        WebhookStats {
            id: "h1".into(),
            url: "http://h/…".into(),
            delivered,
            failed,
            retries: 1,
            dropped: 0,
            queued: 0,
            circuit: Circuit::Closed,
            dead_letters,
            filtered: 0,
            below_threshold: 0,
            groups: 0,
            digest_messages: 0,
            digest_shared: false,
            digest_events_lost: 0,
            batches: 0,
            muted: 0,
            silenced: 0,
            last_status: None,
            last_error: None,
            latency_p50_ms: None,
            latency_p99_ms: None,
        }
    }

    #[test]
    fn totals_sum_the_webhooks() {
        let s = Stats::new(
            2,
            0,
            vec![webhook(100, 1, 3), webhook(100, 1, 3)],
            OutboxStatus::memory(),
        );
        assert_eq!(
            (s.delivered, s.failed, s.pending, s.dead_letters, s.retries),
            (200, 2, 2, 6, 2)
        );
    }
}
