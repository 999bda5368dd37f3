//! The engine's queues: per webhook a FIFO of new deliveries and a heap of retries by due
//! time, and the dead letters (bounded, oldest evicted). With a durable outbox every change is
//! also recorded in its [`Journal`], which the committer writes to the store in batches; the
//! queue marks a ticket durable once its record is journaled. A queued delivery costs its
//! ticket (~100 bytes) plus its share of the event's body.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::ledger::Ticket;
use super::packing::OpenBatch;
use crate::config::BatchSettings;
use crate::formats::batch::Framing;
use crate::stats::OutboxStatus;
use crate::store::journal::{Journal, Pending, Released};
use crate::store::{Claimed, DeadLetter, Resumed};

/// What a webhook's dispatcher should do next.
pub(crate) enum Next<T = Ticket> {
    /// Attempt this delivery (or send this batch) now.
    Ready(T),
    /// Nothing is due before this instant.
    At(Instant),
    /// Nothing is queued.
    Empty,
}

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
    /// Bytes of the bodies in `ready` (a batch leaves once it holds `max_bytes`).
    ready_bytes: usize,
    /// Since when `ready` has not been empty (a batch leaves `max_wait` after).
    ready_since: Option<Instant>,
    /// The next batch of a webhook that packs its events (see [`Queue::pack`]).
    open: Option<OpenBatch>,
}

impl Lane {
    fn push_back(&mut self, ticket: Ticket) {
        self.opened();
        self.ready_bytes += ticket.body.len();
        self.ready.push_back(ticket);
    }

    fn push_front(&mut self, ticket: Ticket) {
        self.opened();
        self.ready_bytes += ticket.body.len();
        self.ready.push_front(ticket);
    }

    /// Moves the open batch, if any, to the deliveries ready to go.
    fn seal(&mut self, framing: &Framing) {
        if let Some(open) = self.open.take() {
            self.push_back(open.seal(framing));
        }
    }

    fn opened(&mut self) {
        if self.ready.is_empty() {
            self.ready_since = Some(Instant::now());
        }
    }

    fn pop_front(&mut self) -> Option<Ticket> {
        let ticket = self.ready.pop_front()?;
        self.ready_bytes -= ticket.body.len();
        if self.ready.is_empty() {
            self.ready_since = None;
        }
        Some(ticket)
    }

    /// The retry due first, if it is due at `now`.
    fn due_retry(&self, now: Instant) -> Option<&Ticket> {
        self.delayed
            .peek()
            .filter(|d| d.0.due <= now)
            .map(|d| &d.0.ticket)
    }

    fn pop_retry(&mut self) -> Ticket {
        self.delayed.pop().expect("peeked").0.ticket
    }
}

/// The queues and dead letters of one engine, and its journal when the outbox is durable.
pub(crate) struct Queue {
    lanes: Vec<Mutex<Lane>>,
    dead: Mutex<VecDeque<DeadLetter>>,
    dead_capacity: usize,
    /// Dead letters per webhook, plus one for webhooks no longer configured.
    dead_per_webhook: Vec<AtomicU64>,
    evicted: AtomicU64,
    journal: Option<Journal>,
}

impl Queue {
    /// Empty queues for `webhooks` webhooks keeping at most `dead_capacity` dead letters,
    /// recording every change in `journal` when given (a durable outbox).
    pub fn new(webhooks: usize, dead_capacity: usize, journal: Option<Journal>) -> Self {
        Queue {
            lanes: (0..webhooks).map(|_| Mutex::default()).collect(),
            dead: Mutex::default(),
            dead_capacity,
            dead_per_webhook: (0..=webhooks).map(|_| AtomicU64::new(0)).collect(),
            evicted: AtomicU64::new(0),
            journal,
        }
    }

    fn lane(&self, index: usize) -> MutexGuard<'_, Lane> {
        self.lanes[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dead(&self) -> MutexGuard<'_, VecDeque<DeadLetter>> {
        self.dead.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The dead-letter counter of a webhook (None: no longer configured).
    fn dead_count(&self, webhook: Option<usize>) -> &AtomicU64 {
        let last = self.dead_per_webhook.len() - 1;
        &self.dead_per_webhook[webhook.map_or(last, |w| w.min(last))]
    }

    /// Journals `ticket` as pending, due at `due` (a durable outbox), and marks it durable;
    /// a batch's retry journals each of its events with the batch's attempts.
    fn journal_pending(&self, ticket: &mut Ticket, due: Instant, new: bool) {
        let Some(journal) = &self.journal else { return };
        if ticket.is_batch() {
            for member in ticket.members_mut() {
                journal.pending(pending(member, due, false));
            }
        } else if journal.pending(pending(ticket, due, new)) {
            ticket.mark_durable();
        }
    }

    /// Queues a new delivery, due now.
    pub fn push(&self, mut ticket: Ticket) {
        self.journal_pending(&mut ticket, Instant::now(), true);
        self.lane(ticket.webhook).push_back(ticket);
    }

    /// Packs a new delivery of a batching webhook into the batch that will carry it (an
    /// outbox in memory: see [`OpenBatch`]); a batch that reaches `max_events` or `max_bytes`
    /// is ready to go, and an element too large for the open batch opens the next one.
    pub fn pack(&self, ticket: Ticket, limits: &BatchSettings, framing: &Framing) {
        let mut lane = self.lane(ticket.webhook);
        if (lane.open.as_ref()).is_some_and(|open| open.has_no_room_for(ticket.body.len(), limits)) {
            lane.seal(framing);
        }
        match &mut lane.open {
            Some(open) => open.add(ticket, framing, limits),
            None => lane.open = Some(OpenBatch::new(ticket, framing)),
        }
        if (lane.open.as_ref()).is_some_and(|open| open.is_full(limits)) {
            lane.seal(framing);
        }
    }

    /// Returns a delivery the dispatcher took but may not send yet; it goes first.
    pub fn push_front(&self, ticket: Ticket) {
        self.lane(ticket.webhook).push_front(ticket);
    }

    /// Queues a retry, due at `due`.
    pub fn schedule(&self, mut ticket: Ticket, due: Instant) {
        self.journal_pending(&mut ticket, due, false);
        self.delay(ticket, due);
    }

    /// Puts a delivery the store already holds (resumed, or taken over) back in its queue.
    pub fn restore(&self, ticket: Ticket, due: Instant) {
        self.delay(ticket, due);
    }

    fn delay(&self, ticket: Ticket, due: Instant) {
        let mut lane = self.lane(ticket.webhook);
        lane.seq += 1;
        let seq = lane.seq;
        lane.delayed.push(Reverse(Delayed { due, seq, ticket }));
    }

    /// The next delivery of `webhook` due at `now`, or when one will be.
    pub fn next_due(&self, webhook: usize, now: Instant) -> Next {
        let mut lane = self.lane(webhook);
        let retry_due = lane.delayed.peek().map(|d| d.0.due);
        match retry_due {
            Some(due) if due <= now => Next::Ready(lane.pop_retry()),
            _ => match lane.pop_front() {
                Some(ticket) => Next::Ready(ticket),
                None => retry_due.map_or(Next::Empty, Next::At),
            },
        }
    }

    /// The next batch of a batching `webhook` at `now` (a whole delivery — a batch's retry, a
    /// replayed batch — alone), or when one will be due: events wait until `limits` are
    /// reached, a retry of one of them is due, or the first has waited `max_wait`; `hurry`
    /// (a flush or close waits) sends what there is at once. An event larger than
    /// `max_bytes` goes alone.
    pub fn next_batch(
        &self,
        webhook: usize,
        now: Instant,
        (limits, framing): (&BatchSettings, &Framing),
        hurry: bool,
    ) -> Next<Vec<Ticket>> {
        let mut lane = self.lane(webhook);
        if (lane.open.as_ref()).is_some_and(|open| open.is_due(limits, now, hurry)) {
            lane.seal(framing);
        }
        if lane.due_retry(now).is_some_and(Ticket::is_whole) {
            return Next::Ready(vec![lane.pop_retry()]);
        }
        if lane.ready.front().is_some_and(Ticket::is_whole) {
            return Next::Ready(lane.pop_front().into_iter().collect());
        }
        let full = lane.ready.len() >= limits.max_events || lane.ready_bytes >= limits.max_bytes;
        let packed_leaves = lane.open.as_ref().map(|open| open.leaves_at(limits.max_wait));
        let waited = match lane.ready_since.map(|since| since + limits.max_wait) {
            Some(at) => Some(packed_leaves.map_or(at, |packed| packed.min(at))),
            None => packed_leaves,
        };
        let send = full || lane.due_retry(now).is_some() || (hurry && !lane.ready.is_empty());
        if !send && waited.is_none_or(|at| at > now) {
            let retry_due = lane.delayed.peek().map(|d| d.0.due);
            return match (waited, retry_due) {
                (Some(a), Some(b)) => Next::At(a.min(b)),
                (Some(at), None) | (None, Some(at)) => Next::At(at),
                (None, None) => Next::Empty,
            };
        }
        let (mut batch, mut bytes) = (Vec::new(), 0);
        while batch.len() < limits.max_events {
            let retry = lane.due_retry(now).filter(|t| !t.is_whole()).is_some();
            let next = match retry {
                true => lane.due_retry(now),
                false => lane.ready.front().filter(|t| !t.is_whole()),
            };
            let Some(size) = next.map(|t| t.body.len()) else {
                break;
            };
            if !batch.is_empty() && bytes + size > limits.max_bytes {
                break;
            }
            bytes += size;
            batch.extend(match retry {
                true => Some(lane.pop_retry()),
                false => lane.pop_front(),
            });
        }
        if !lane.ready.is_empty() {
            lane.ready_since = Some(now); // what is left starts the next batch
        }
        Next::Ready(batch)
    }

    /// Takes every queued delivery of `webhook` (abandoned at close).
    pub fn drain(&self, webhook: usize) -> Vec<Ticket> {
        let mut lane = self.lane(webhook);
        let mut tickets: Vec<Ticket> = lane.ready.drain(..).collect();
        (lane.ready_bytes, lane.ready_since) = (0, None);
        drop(lane.open.take()); // counts its events dropped
        tickets.extend(lane.delayed.drain().map(|d| d.0.ticket));
        tickets
    }

    /// A delivery (a batch: each of its events) succeeded or ended as a dead letter: the
    /// store forgets it.
    pub fn ack(&self, ticket: &Ticket) {
        if let Some(journal) = &self.journal {
            ticket.records().iter().for_each(|r| journal.ended(r.id));
        }
    }

    /// Keeps a delivery that failed for good.
    pub fn dead_letter(&self, letter: DeadLetter) {
        if let Some(journal) = &self.journal {
            let evicted = self.keep_dead_letter(letter.clone());
            journal.dead_letter(&letter, evicted.map(|e| e.delivery_id));
        } else {
            self.keep_dead_letter(letter);
        }
    }

    /// Keeps a dead letter, evicting (and returning) the oldest when full.
    fn keep_dead_letter(&self, letter: DeadLetter) -> Option<DeadLetter> {
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

    /// Copies of the dead letters of `webhook` (by id), or of all.
    pub fn dead_letters(&self, webhook: Option<&str>) -> Vec<DeadLetter> {
        self.dead()
            .iter()
            .filter(|l| matches(l, webhook))
            .cloned()
            .collect()
    }

    /// Removes and returns the dead letters of `webhook` (by id), or all, for a replay: those
    /// a shared store no longer has (replayed by another process) are removed but not returned.
    pub fn take_dead_letters(&self, webhook: Option<&str>) -> Vec<DeadLetter> {
        let mut dead = self.dead();
        let (taken, kept): (Vec<DeadLetter>, Vec<DeadLetter>) =
            dead.drain(..).partition(|l| matches(l, webhook));
        dead.extend(kept);
        drop(dead);
        for letter in &taken {
            self.dead_count(letter.webhook).fetch_sub(1, Relaxed);
        }
        let Some(journal) = &self.journal else {
            return taken;
        };
        let ids: Vec<_> = taken.iter().map(|l| l.delivery_id).collect();
        let still_there = journal.take_dead(&ids);
        journal.dead_letters_removed(ids);
        taken
            .into_iter()
            .zip(still_there)
            .filter_map(|(letter, there)| there.then_some(letter))
            .collect()
    }

    /// Dead letters held for the webhook at `index`.
    pub fn dead_letter_count(&self, index: usize) -> u64 {
        self.dead_count(Some(index)).load(Relaxed)
    }

    /// Dead letters held, those of webhooks no longer configured included.
    pub fn dead_letters_held(&self) -> u64 {
        self.dead().len() as u64
    }

    /// Dead letters evicted because `dead_letter_capacity` was reached.
    pub fn dead_letters_evicted(&self) -> u64 {
        self.evicted.load(Relaxed)
    }

    /// Whether deliveries survive the process: closing then leaves what is undelivered in
    /// the store for the next start instead of abandoning it.
    pub fn durable(&self) -> bool {
        self.journal.is_some()
    }

    /// Whether the outbox has anything to do now: changes to commit, or a claim round due (an
    /// idle durable engine then costs nothing between its claim rounds).
    pub fn outbox_work(&self) -> bool {
        self.journal.as_ref().is_some_and(Journal::has_work)
    }

    /// Writes what the journal recorded so far (group commit).
    pub fn commit(&self) -> Result<(), String> {
        self.journal.as_ref().map_or(Ok(()), Journal::commit)
    }

    /// Deliveries to take over now (at most `room[webhook]` each) from a shared store; dead
    /// letters it read are kept here.
    pub fn claim(&self, room: &[usize]) -> Vec<Resumed> {
        let Some(journal) = &self.journal else {
            return Vec::new();
        };
        let Claimed { resumed, dead, gone } = journal.claim(room);
        self.forget_dead_letters(&gone);
        self.keep_stored_dead_letters(dead);
        resumed
    }

    /// Forgets dead letters the store no longer holds (another process of the fleet replayed
    /// or evicted them): nothing to journal.
    fn forget_dead_letters(&self, gone: &[uuid::Uuid]) {
        if gone.is_empty() {
            return;
        }
        let gone: std::collections::HashSet<&uuid::Uuid> = gone.iter().collect();
        let mut dead = self.dead();
        dead.retain(|letter| {
            let keep = !gone.contains(&letter.delivery_id);
            if !keep {
                self.dead_count(letter.webhook).fetch_sub(1, Relaxed);
            }
            keep
        });
    }

    /// Keeps dead letters read from the store (oldest first); evictions are journaled.
    pub fn keep_stored_dead_letters(&self, dead: Vec<crate::store::DeadRecord>) {
        let Some(journal) = &self.journal else { return };
        let evicted: Vec<_> = dead
            .into_iter()
            .filter_map(|record| self.keep_dead_letter(record.letter(journal.ids())))
            .map(|e| e.delivery_id)
            .collect();
        journal.dead_letters_removed(evicted);
    }

    /// Journals every queued delivery once more (at close, before the last commit): a store
    /// that lost what it held — a Redis restarted empty, or flushed — gets it back from
    /// memory, which still has it; for one that did not, the record is rewritten as it was.
    pub fn journal_queued_again(&self) {
        let Some(journal) = &self.journal else { return };
        let now = Instant::now();
        for lane in &self.lanes {
            let lane = lane.lock().unwrap_or_else(|e| e.into_inner());
            let ready = lane.ready.iter().map(|ticket| (ticket, now));
            let delayed = lane.delayed.iter().map(|d| (&d.0.ticket, d.0.due));
            for (ticket, due) in ready.chain(delayed) {
                for record in ticket.records() {
                    journal.pending(pending(record, due, false));
                }
            }
        }
    }

    /// Commits what is left and lets go of the store (at close), by `deadline`.
    pub fn release(&self, deadline: Option<Instant>) -> Result<(), Released> {
        self.journal.as_ref().map_or(Ok(()), |j| j.release(deadline))
    }

    /// What `stats.outbox` shows.
    pub fn status(&self) -> OutboxStatus {
        self.journal
            .as_ref()
            .map_or_else(OutboxStatus::memory, Journal::status)
    }
}

/// What the journal records of `ticket`, due at `due`.
fn pending(ticket: &Ticket, due: Instant, new: bool) -> Pending<'_> {
    Pending {
        id: ticket.id,
        webhook: ticket.webhook,
        event: ticket.event,
        attempts: ticket.attempts,
        due,
        body: &ticket.body,
        trace: ticket.trace.as_deref(),
        batch: ticket.framed(),
        new,
    }
}

fn matches(letter: &DeadLetter, webhook: Option<&str>) -> bool {
    webhook.is_none_or(|id| letter.webhook_id == id)
}
