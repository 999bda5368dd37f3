//! Prometheus metrics: the per-webhook counters that stats do not keep (deliveries by event
//! and outcome, the delivery-time histogram) and the text exposition format 0.0.4 of all of
//! them. The encoder is written here rather than taken from a crate: the format is a few
//! lines per family, our metrics are few and fixed, and the tests parse the output with
//! `prometheus_client`'s own parser. No label carries a URL or a secret: webhooks are named
//! by id.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::events::Event;

/// How a delivery ended, as the `outcome` label says it. `dead_lettered` deliveries are
/// also `failed` (a dead letter is a failed delivery that was kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Failed,
    Dropped,
    DeadLettered,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Delivered,
        Outcome::Failed,
        Outcome::Dropped,
        Outcome::DeadLettered,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::Dropped => "dropped",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// Upper bounds (seconds) of the delivery-time histogram's buckets.
pub const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// One webhook's deliveries by event and outcome, and its delivery times.
#[derive(Default)]
pub struct DeliveryMetrics {
    outcomes: [[AtomicU64; 4]; Event::ALL.len()],
    /// Per bucket (not cumulative), the last one for +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl DeliveryMetrics {
    /// A delivery of `event` ended with `outcome`, `took` after its first attempt (if it had one).
    pub fn ended(&self, event: Event, outcome: Outcome, took: Option<Duration>) {
        self.ended_events(event, outcome, took, 1);
    }

    /// [`ended`](Self::ended) for `count` deliveries of `event` that ended together (a batch).
    pub fn ended_events(&self, event: Event, outcome: Outcome, took: Option<Duration>, count: u64) {
        self.outcomes[event as usize][outcome as usize].fetch_add(count, Relaxed);
        if let Some(took) = took {
            let seconds = took.as_secs_f64();
            let bucket = BUCKETS
                .iter()
                .position(|b| seconds <= *b)
                .unwrap_or(BUCKETS.len());
            self.buckets[bucket].fetch_add(count, Relaxed);
            self.sum_micros
                .fetch_add(took.as_micros() as u64 * count, Relaxed);
        }
    }
}

/// What the exposition needs to know of one webhook.
pub struct WebhookMetrics<'a> {
    pub id: &'a str,
    pub metrics: &'a DeliveryMetrics,
    pub retries: u64,
    pub queued: u64,
    pub circuit_open: bool,
    pub dead_letters: u64,
    /// Events `match`, `exclude` or `min_severity` turned away.
    pub filtered: u64,
    /// Digest groups open.
    pub groups: u64,
}

/// A per-webhook family: name, type, help, and its value for a webhook.
type PerWebhook = (
    &'static str,
    &'static str,
    &'static str,
    fn(&WebhookMetrics<'_>) -> f64,
);

/// The Prometheus text (0.0.4) of one engine: `plugin` labels every sample.
pub fn exposition(plugin: &str, events: &[u64], webhooks: &[WebhookMetrics<'_>]) -> String {
    let mut text = Exposition::default();
    text.family(
        "webhook_notification_events_total",
        "counter",
        "Events raised, by event.",
    );
    for (event, count) in Event::ALL.iter().zip(events) {
        text.sample(
            "webhook_notification_events_total",
            &[("plugin", plugin), ("event", event.name())],
            *count as f64,
        );
    }
    text.family(
        "webhook_notification_deliveries_total",
        "counter",
        "Deliveries (one event to one webhook) that ended, by outcome; dead_lettered ones are failed too.",
    );
    for w in webhooks {
        for (event, row) in Event::ALL.iter().zip(&w.metrics.outcomes) {
            for (outcome, count) in Outcome::ALL.iter().zip(row) {
                let labels = [
                    ("plugin", plugin),
                    ("webhook", w.id),
                    ("event", event.name()),
                    ("outcome", outcome.label()),
                ];
                text.sample(
                    "webhook_notification_deliveries_total",
                    &labels,
                    count.load(Relaxed) as f64,
                );
            }
        }
    }
    let gauges: [PerWebhook; 6] = [
        (
            "webhook_notification_retries_total",
            "counter",
            "Attempts that failed and were retried.",
            |w| w.retries as f64,
        ),
        (
            "webhook_notification_queue_depth",
            "gauge",
            "Deliveries queued, in flight or waiting to retry.",
            |w| w.queued as f64,
        ),
        (
            "webhook_notification_circuit_open",
            "gauge",
            "1 while the webhook's circuit breaker is open or probing.",
            |w| f64::from(u8::from(w.circuit_open)),
        ),
        (
            "webhook_notification_dead_letters",
            "gauge",
            "Dead letters held for the webhook.",
            |w| w.dead_letters as f64,
        ),
        (
            "webhook_notification_filtered_total",
            "counter",
            "Events of the webhook's events that match, exclude or min_severity turned away.",
            |w| w.filtered as f64,
        ),
        (
            "webhook_notification_digest_groups",
            "gauge",
            "Digest groups open.",
            |w| w.groups as f64,
        ),
    ];
    for (name, kind, help, value) in gauges {
        text.family(name, kind, help);
        for w in webhooks {
            text.sample(name, &[("plugin", plugin), ("webhook", w.id)], value(w));
        }
    }
    let name = "webhook_notification_delivery_seconds";
    text.family(
        name,
        "histogram",
        "Time from a delivery's first attempt to its outcome.",
    );
    for w in webhooks {
        let mut cumulative = 0;
        for (i, count) in w.metrics.buckets.iter().enumerate() {
            cumulative += count.load(Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
            let labels = [("plugin", plugin), ("webhook", w.id), ("le", le.as_str())];
            text.sample(&format!("{name}_bucket"), &labels, cumulative as f64);
        }
        let labels = [("plugin", plugin), ("webhook", w.id)];
        text.sample(
            &format!("{name}_sum"),
            &labels,
            w.metrics.sum_micros.load(Relaxed) as f64 / 1e6,
        );
        text.sample(&format!("{name}_count"), &labels, cumulative as f64);
    }
    text.0
}

/// A text exposition being written.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        for (i, (label, text)) in labels.iter().enumerate() {
            self.0.push(if i == 0 { '{' } else { ',' });
            let _ = write!(self.0, "{label}=\"{}\"", escape(text));
        }
        if !labels.is_empty() {
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_labels_and_histograms_are_cumulative() {
        let m = DeliveryMetrics::default();
        m.ended(
            Event::ToolError,
            Outcome::Delivered,
            Some(Duration::from_millis(3)),
        );
        m.ended(
            Event::ToolError,
            Outcome::Delivered,
            Some(Duration::from_millis(700)),
        );
        m.ended(Event::ToolError, Outcome::Failed, Some(Duration::from_secs(900)));
        let webhooks = [WebhookMetrics {
            id: "w1",
            metrics: &m,
            retries: 2,
            queued: 1,
            circuit_open: true,
            dead_letters: 0,
            filtered: 7,
            groups: 3,
        }];
        let text = exposition("P\"x\\y\nz", &[0; 11], &webhooks);
        assert!(text.contains(r#"plugin="P\"x\\y\nz""#), "{text}");
        assert!(text.contains(r#"webhook_notification_deliveries_total{plugin="P\"x\\y\nz",webhook="w1",event="tool_error",outcome="delivered"} 2"#));
        assert!(text.contains(r#"webhook_notification_filtered_total{plugin="P\"x\\y\nz",webhook="w1"} 7"#));
        assert!(text.contains(r#"webhook_notification_digest_groups{plugin="P\"x\\y\nz",webhook="w1"} 3"#));
        assert!(
            text.contains(r#"le="0.005"} 1"#)
                && text.contains(r#"le="1"} 2"#)
                && text.contains(r#"le="+Inf"} 3"#),
            "{text}"
        );
        assert!(
            text.contains("webhook_notification_circuit_open{")
                && text.contains("webhook_notification_delivery_seconds_count{")
        );
    }
}
