//! Delivery counters, kept per webhook with atomics so hook calls never contend on a lock,
//! and the JSON-serialisable snapshot that hosts read.
//!
//! Every count is in deliveries (one event to one webhook): an event that three webhooks
//! subscribe to and that is dropped because the queue is full counts three drops.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::breaker::Circuit;
use crate::metrics::DeliveryMetrics;
use crate::outbox::OutboxStatus;

/// Latencies kept for the percentiles: the most recent deliveries only.
const LATENCY_WINDOW: usize = 1024;

/// Live counters of one webhook.
#[derive(Default)]
pub struct WebhookCounters {
    delivered: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
    /// Deliveries queued, in flight or waiting to retry (bounded by the webhook's capacity).
    queued: AtomicU64,
    /// Failures since the last success (reset by a delivery); paces failure logging.
    failing_streak: AtomicU64,
    last: Mutex<LastOutcome>,
    /// Deliveries by event and outcome, and delivery times (for Prometheus).
    pub metrics: DeliveryMetrics,
}

#[derive(Default)]
struct LastOutcome {
    status: Option<u16>,
    error: Option<String>,
    latencies_ms: VecDeque<f64>,
}

impl WebhookCounters {
    /// A delivery succeeded with `status` after `latency` (first attempt to success).
    pub fn delivered(&self, status: u16, latency: Duration) {
        self.delivered.fetch_add(1, Relaxed);
        self.failing_streak.store(0, Relaxed);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.status = Some(status);
        if last.latencies_ms.len() == LATENCY_WINDOW {
            last.latencies_ms.pop_front();
        }
        last.latencies_ms.push_back(latency.as_secs_f64() * 1000.0);
    }

    /// A delivery failed for good; `error` must already be free of secrets. Returns how
    /// many deliveries in a row have now failed.
    pub fn failed(&self, status: Option<u16>, error: String) -> u64 {
        self.failed.fetch_add(1, Relaxed);
        self.record_error(status, error);
        self.failing_streak.fetch_add(1, Relaxed) + 1
    }

    /// An attempt failed and will be retried.
    pub fn retried(&self, status: Option<u16>, error: String) {
        self.retries.fetch_add(1, Relaxed);
        self.record_error(status, error);
    }

    /// Deliveries were never attempted (queue full) or abandoned at close; returns the
    /// webhook's drops so far.
    pub fn dropped(&self, count: u64) -> u64 {
        self.dropped.fetch_add(count, Relaxed) + count
    }

    /// The latest status and error seen.
    pub fn last_outcome(&self) -> (Option<u16>, Option<String>) {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        (last.status, last.error.clone())
    }

    /// Takes a queue slot if fewer than `capacity` are taken.
    pub fn try_reserve(&self, capacity: usize) -> bool {
        let capacity = capacity as u64;
        self.queued
            .fetch_update(Relaxed, Relaxed, |n| (n < capacity).then_some(n + 1))
            .is_ok()
    }

    /// Gives a queue slot back.
    pub fn release(&self) {
        self.queued.fetch_sub(1, Relaxed);
    }

    /// Deliveries queued, in flight or waiting to retry.
    pub fn queued(&self) -> u64 {
        self.queued.load(Relaxed)
    }

    fn record_error(&self, status: Option<u16>, error: String) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if status.is_some() {
            last.status = status;
        }
        last.error = Some(error);
    }

    /// Attempts retried so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Relaxed)
    }

    /// A snapshot, with what the engine knows of the webhook besides its counters.
    pub fn snapshot(&self, labels: WebhookLabels<'_>) -> WebhookStats {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut sorted: Vec<f64> = last.latencies_ms.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        WebhookStats {
            id: labels.id.to_owned(),
            url: labels.url.to_owned(),
            delivered: self.delivered.load(Relaxed),
            failed: self.failed.load(Relaxed),
            retries: self.retries.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            queued: self.queued(),
            circuit: labels.circuit,
            dead_letters: labels.dead_letters,
            last_status: last.status,
            last_error: last.error.clone(),
            latency_p50_ms: percentile(&sorted, 0.50),
            latency_p99_ms: percentile(&sorted, 0.99),
        }
    }
}

/// What a snapshot shows besides the counters.
pub struct WebhookLabels<'a> {
    pub id: &'a str,
    /// The redacted URL.
    pub url: &'a str,
    pub circuit: Circuit,
    pub dead_letters: u64,
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = (q * last as f64).round() as usize;
    Some((sorted[rank] * 1000.0).round() / 1000.0)
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
    /// Dead letters held now.
    pub dead_letters: u64,
    /// Dead letters evicted (oldest first) because `dead_letter_capacity` was reached.
    pub dead_letters_evicted: u64,
    /// Hook calls whose data could not be turned into an event at all (logged, paced).
    pub host_errors: u64,
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

    #[test]
    fn percentiles_and_totals() {
        let c = WebhookCounters::default();
        for ms in 1..=100 {
            c.delivered(200, Duration::from_millis(ms));
        }
        c.retried(Some(503), "HTTP 503".into());
        c.failed(None, "connection refused".into());
        let w = c.snapshot(WebhookLabels {
            id: "h1",
            url: "http://h/…",
            circuit: Circuit::Closed,
            dead_letters: 3,
        });
        assert_eq!((w.delivered, w.failed, w.retries), (100, 1, 1));
        assert_eq!((w.latency_p50_ms, w.latency_p99_ms), (Some(51.0), Some(99.0)));
        assert_eq!(
            (w.last_status, w.last_error.as_deref()),
            (Some(503), Some("connection refused"))
        );
        let memory = OutboxStatus {
            kind: "memory",
            committed: 0,
            uncommitted: 0,
            connected: true,
            last_error: None,
        };
        let s = Stats::new(2, 0, vec![w.clone(), w], memory);
        assert_eq!((s.delivered, s.failed, s.pending, s.dead_letters), (200, 2, 2, 6));
    }
}
