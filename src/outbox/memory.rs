//! The memory outbox (the default): everything lives in this process and is lost with it.
//! Each webhook has a FIFO of new deliveries and a heap of retries by due time; a queued
//! delivery costs its ticket (~100 bytes) plus its share of the event's body.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::{DeadLetter, Next, Outbox, OutboxStatus};
use crate::ledger::Ticket;

/// A retry waiting for its time; ordered by due time, then arrival.
struct Delayed {
    due: Instant,
    seq: u64,
    ticket: Ticket,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Default)]
struct Lane {
    ready: VecDeque<Ticket>,
    delayed: BinaryHeap<Reverse<Delayed>>,
    seq: u64,
}

/// Queues and dead letters in memory.
pub struct MemoryOutbox {
    lanes: Vec<Mutex<Lane>>,
    dead: Mutex<VecDeque<DeadLetter>>,
    dead_capacity: usize,
    dead_per_webhook: Vec<AtomicU64>,
    evicted: AtomicU64,
}

impl MemoryOutbox {
    /// An empty outbox for `webhooks` webhooks keeping at most `dead_capacity` dead letters.
    pub fn new(webhooks: usize, dead_capacity: usize) -> Self {
        MemoryOutbox {
            lanes: (0..webhooks).map(|_| Mutex::default()).collect(),
            dead: Mutex::default(),
            dead_capacity,
            // One more counter for orphans (webhooks no longer configured).
            dead_per_webhook: (0..=webhooks).map(|_| AtomicU64::new(0)).collect(),
            evicted: AtomicU64::new(0),
        }
    }

    fn lane(&self, index: usize) -> MutexGuard<'_, Lane> {
        self.lanes[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dead(&self) -> MutexGuard<'_, VecDeque<DeadLetter>> {
        self.dead.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The dead-letter counter of a webhook index ([`super::ORPHAN`]: the last one).
    fn dead_count(&self, webhook: usize) -> &AtomicU64 {
        &self.dead_per_webhook[webhook.min(self.dead_per_webhook.len() - 1)]
    }
}

fn matches(letter: &DeadLetter, webhook: Option<&str>) -> bool {
    webhook.is_none_or(|id| letter.webhook_id == id)
}

impl Outbox for MemoryOutbox {
    fn push(&self, ticket: Ticket) {
        self.lane(ticket.webhook).ready.push_back(ticket);
    }

    fn push_front(&self, ticket: Ticket) {
        self.lane(ticket.webhook).ready.push_front(ticket);
    }

    fn schedule(&self, ticket: Ticket, due: Instant) {
        let mut lane = self.lane(ticket.webhook);
        lane.seq += 1;
        let seq = lane.seq;
        lane.delayed.push(Reverse(Delayed { due, seq, ticket }));
    }

    fn next_due(&self, webhook: usize, now: Instant) -> Next {
        let mut lane = self.lane(webhook);
        let retry_due = lane.delayed.peek().map(|d| d.0.due);
        match retry_due {
            Some(due) if due <= now => Next::Ready(lane.delayed.pop().expect("peeked").0.ticket),
            _ => match lane.ready.pop_front() {
                Some(ticket) => Next::Ready(ticket),
                None => retry_due.map_or(Next::Empty, Next::At),
            },
        }
    }

    fn drain(&self, webhook: usize) -> Vec<Ticket> {
        let mut lane = self.lane(webhook);
        let mut tickets: Vec<Ticket> = lane.ready.drain(..).collect();
        tickets.extend(lane.delayed.drain().map(|d| d.0.ticket));
        tickets
    }

    fn dead_letter(&self, letter: DeadLetter) {
        self.keep_dead_letter(letter);
    }

    fn dead_letters(&self, webhook: Option<&str>) -> Vec<DeadLetter> {
        self.dead()
            .iter()
            .filter(|l| matches(l, webhook))
            .cloned()
            .collect()
    }

    fn take_dead_letters(&self, webhook: Option<&str>) -> Vec<DeadLetter> {
        let mut dead = self.dead();
        let (taken, kept): (Vec<DeadLetter>, Vec<DeadLetter>) =
            dead.drain(..).partition(|l| matches(l, webhook));
        dead.extend(kept);
        for letter in &taken {
            self.dead_count(letter.webhook).fetch_sub(1, Relaxed);
        }
        taken
    }

    fn dead_letter_count(&self, index: usize) -> u64 {
        self.dead_count(index).load(Relaxed)
    }

    fn dead_letters_evicted(&self) -> u64 {
        self.evicted.load(Relaxed)
    }

    fn ack(&self, _ticket: &Ticket) {}

    fn restore(&self, ticket: Ticket, due: Instant) {
        self.schedule(ticket, due);
    }

    fn durable(&self) -> bool {
        false
    }

    fn commit(&self) -> Result<(), String> {
        Ok(())
    }

    fn release(&self) -> Result<(), super::Released> {
        Ok(())
    }

    fn status(&self) -> OutboxStatus {
        OutboxStatus {
            kind: "memory",
            committed: 0,
            uncommitted: 0,
            connected: true,
            last_error: None,
        }
    }
}

impl MemoryOutbox {
    /// Keeps a dead letter, evicting (and returning) the oldest when full.
    pub fn keep_dead_letter(&self, letter: DeadLetter) -> Option<DeadLetter> {
        if self.dead_capacity == 0 {
            self.evicted.fetch_add(1, Relaxed);
            return Some(letter);
        }
        let mut dead = self.dead();
        let evicted = match dead.len() == self.dead_capacity {
            true => dead.pop_front(),
            false => None,
        };
        if let Some(old) = &evicted {
            self.dead_count(old.webhook).fetch_sub(1, Relaxed);
            self.evicted.fetch_add(1, Relaxed);
        }
        self.dead_count(letter.webhook).fetch_add(1, Relaxed);
        dead.push_back(letter);
        evicted
    }
}
