//! A batching webhook's open batch when its outbox is memory. Each event's element is joined
//! into the batch's body as the event is routed, and its ticket's queue slot moves into the
//! batch, which leaves as one delivery: nothing per event is queued, framed or ended apart.
//! (A durable outbox keeps one ticket per event: each is journaled until its batch is
//! acknowledged.)

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::ledger::{Packed, Ticket};
use crate::config::BatchSettings;
use crate::formats::batch::Framing;

/// The events packed so far into a webhook's next batch.
pub struct OpenBatch {
    /// The first event's ticket, which becomes the batch's delivery (None once it has).
    first: Option<Ticket>,
    packed: Packed,
    /// The request body so far: opened, elements joined, not yet closed.
    body: Vec<u8>,
    /// Bytes of the elements (what `max_bytes` bounds: the frame adds a few).
    bytes: usize,
    /// When the first event was packed (the batch leaves `max_wait` after).
    pub since: Instant,
}

impl OpenBatch {
    /// A batch opened by `first`, whose body is its element.
    pub fn new(first: Ticket, framing: &Framing) -> Self {
        let mut packed = Packed::default();
        packed.add(first.event);
        // Room for a few dozen elements like it, at most 64 KiB: a large first event must not
        // reserve dozens of times its size (see `add` for what comes next).
        let room = first.body.len().saturating_mul(64).min(64 * 1024);
        let mut batch = OpenBatch {
            body: framing.open(room.max(first.body.len())),
            bytes: first.body.len(),
            packed,
            since: Instant::now(),
            first: None,
        };
        framing.join(&mut batch.body, &first.body);
        batch.first = Some(first);
        batch
    }

    /// Packs `ticket`'s element (its body) into the batch. When the body must grow, it
    /// grows to what the rest of the batch is likely to take — as many more elements as
    /// `max_events` allows, of the average size so far, within `max_bytes` — so that a
    /// batch of like events is copied neither as it grows nor when it is closed.
    pub fn add(&mut self, ticket: Ticket, framing: &Framing, limits: &BatchSettings) {
        let needed = ticket.body.len() + framing.separator_len();
        if self.body.capacity() - self.body.len() < needed {
            let events = self.packed.events as usize;
            let average = self.bytes / events.max(1) + framing.separator_len();
            let rest = (average * limits.max_events.saturating_sub(events))
                .min(limits.max_bytes.saturating_sub(self.bytes) + framing.separator_len());
            self.body.reserve(rest.max(needed) + framing.close_len());
        }
        framing.join(&mut self.body, &ticket.body);
        self.bytes += ticket.body.len();
        ticket.pack_into(&mut self.packed);
    }

    /// Whether an element of `size` bytes must open the next batch instead of this one.
    pub fn has_no_room_for(&self, size: usize, limits: &BatchSettings) -> bool {
        self.bytes + size > limits.max_bytes
    }

    /// Whether the batch must leave now: it holds `max_events` or `max_bytes`, or has
    /// waited `max_wait` at `now` (`hurry`: a flush or close waits for it).
    pub fn is_due(&self, limits: &BatchSettings, now: Instant, hurry: bool) -> bool {
        hurry || self.is_full(limits) || self.leaves_at(limits.max_wait) <= now
    }

    /// Whether it holds `max_events` or `max_bytes`.
    pub fn is_full(&self, limits: &BatchSettings) -> bool {
        self.packed.events as usize >= limits.max_events || self.bytes >= limits.max_bytes
    }

    /// When it leaves if nothing fills it.
    pub fn leaves_at(&self, max_wait: Duration) -> Instant {
        self.since + max_wait
    }

    /// The batch's delivery: its events framed into one body.
    pub fn seal(mut self, framing: &Framing) -> Ticket {
        let body = framing.close(std::mem::take(&mut self.body));
        self.take_delivery(body)
    }

    fn take_delivery(&mut self, body: Bytes) -> Ticket {
        let first = self.first.take().expect("an open batch has its first event");
        Ticket::packed(first, std::mem::take(&mut self.packed), body)
    }
}

/// An open batch let go unsent (a close abandoning the queue) counts its events as dropped
/// and gives their slots back, as their tickets would have.
impl Drop for OpenBatch {
    fn drop(&mut self) {
        if self.first.is_some() {
            drop(self.take_delivery(Bytes::new()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::ledger::{Ledger, WebhookLabels};
    use crate::events::Event;
    use crate::formats::Format;
    use crate::stats::Circuit;

    /// A ticket of webhook 0 for `event` whose element is `body`, its slot taken.
    fn ticket(ledger: &Arc<Ledger>, event: Event, body: Bytes) -> Ticket {
        assert!(ledger.reserve(0, 1000));
        let mut ticket = Ticket::new(Arc::clone(ledger), 0, event, uuid::Uuid::nil(), Bytes::new());
        ticket.body = body;
        ticket
    }

    /// Three events' tickets (two kinds) of webhook 0, their slots taken.
    fn tickets(ledger: &Arc<Ledger>) -> Vec<Ticket> {
        [
            (Event::ToolSuccess, "{\"a\":1}"),
            (Event::ToolError, "{\"b\":2}"),
            (Event::ToolSuccess, "{\"c\":3}"),
        ]
        .into_iter()
        .map(|(event, body)| ticket(ledger, event, Bytes::from_static(body.as_bytes())))
        .collect()
    }

    fn packed(ledger: &Arc<Ledger>, framing: &Framing) -> OpenBatch {
        let mut tickets = tickets(ledger).into_iter();
        let mut batch = OpenBatch::new(tickets.next().unwrap(), framing);
        tickets.for_each(|t| batch.add(t, framing, &BatchSettings::default()));
        batch
    }

    fn counts(ledger: &Ledger) -> (u64, u64, u64, u64) {
        let labels = WebhookLabels {
            id: "w",
            url: "http://h/",
            circuit: Circuit::Closed,
            dead_letters: 0,
        };
        let w = ledger.counters[0].snapshot(labels);
        (w.delivered, w.dropped, w.batches, ledger.pending())
    }

    #[test]
    fn a_sealed_batch_is_one_framed_delivery_that_ends_every_event() {
        let ledger = Arc::new(Ledger::new(1));
        let framing = Framing::new(Format::Ndjson, "p");
        let batch = packed(&ledger, &framing);
        assert_eq!(ledger.pending(), 3, "the batch holds every event's slot");
        let delivery = batch.seal(&framing);
        assert_eq!(
            (delivery.framed(), &delivery.body[..]),
            (Some(3), &b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"[..])
        );
        assert_eq!(delivery.event, Event::ToolSuccess);
        delivery.delivered(200);
        assert_eq!(counts(&ledger), (3, 0, 1, 0));
        assert_eq!(ledger.counters[0].queued(), 0);
    }

    #[test]
    fn an_open_batch_let_go_counts_its_events_dropped_and_gives_their_slots_back() {
        let ledger = Arc::new(Ledger::new(1));
        drop(packed(&ledger, &Framing::new(Format::JsonArray, "p")));
        assert_eq!(counts(&ledger), (0, 3, 0, 0));
        assert_eq!(ledger.counters[0].queued(), 0);
    }

    #[test]
    fn a_batch_of_like_events_grows_at_most_once_and_is_closed_in_place() {
        let ledger = Arc::new(Ledger::new(1));
        let framing = Framing::new(Format::Ndjson, "p");
        let limits = BatchSettings::default();
        let like = || ticket(&ledger, Event::ToolSuccess, Bytes::from(vec![b'1'; 300]));
        let mut batch = OpenBatch::new(like(), &framing);
        let (mut at, mut moves) = (batch.body.as_ptr(), 0);
        for _ in 1..limits.max_events {
            batch.add(like(), &framing, &limits);
            if batch.body.as_ptr() != at {
                (at, moves) = (batch.body.as_ptr(), moves + 1);
            }
        }
        assert!(batch.is_full(&limits));
        assert!(moves <= 1, "the body moved {moves} times");
        let delivery = batch.seal(&framing);
        assert_eq!(delivery.body.len(), limits.max_events * 301);
        assert_eq!(delivery.body.as_ptr(), at, "closed where it was joined");
        drop(delivery);
    }

    #[test]
    fn a_large_first_event_reserves_no_more_than_a_few_dozen_small_ones_would() {
        let ledger = Arc::new(Ledger::new(1));
        let first = ticket(&ledger, Event::ToolSuccess, Bytes::from(vec![b'1'; 1 << 20]));
        let batch = OpenBatch::new(first, &Framing::new(Format::Ndjson, "p"));
        assert!(
            batch.body.capacity() < 2 << 20,
            "{} bytes reserved",
            batch.body.capacity()
        );
    }
}
