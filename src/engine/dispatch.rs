//! A webhook's dispatcher: takes its next due delivery from the queue when an in-flight
//! slot is free, the breaker allows a request and the rate limit has room, and runs the
//! attempt as a task; then settles the outcome — delivered, scheduled for a retry, or a
//! dead letter — tells the breaker, and raises `webhook_failing`/`webhook_recovered` when
//! its circuit moves. Waiting behind an open circuit spends no attempt.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, warn};
use reqwest::Client;
use serde_json::json;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::sleep_until;

use super::attempt::{self, jitter, Answer};
use super::breaker::{Breaker, Permit, Transition};
use super::intake::Intake;
use super::ledger::Ticket;
use super::queue::Next;
use super::shared::{Lifecycle, Shared};
use super::smtp::{self, Mailer};
use crate::events::{Context, Event};
use crate::metrics::Outcome;
use crate::render::{object, Job};
use crate::store::DeadLetter;

/// What the dispatchers of one engine share: the engine's shared state, the intake (for the
/// circuit events and flushes), each webhook's HTTP client and breaker, and the count of
/// attempts in flight.
pub(crate) struct Dispatch {
    shared: Arc<Shared>,
    intake: Arc<Intake>,
    /// One per webhook: the shared client, or the webhook's own (TLS material, proxy).
    clients: Vec<Client>,
    /// One per webhook: an email webhook's SMTP client.
    mailers: Vec<Option<Mailer>>,
    pub breakers: Vec<Breaker>,
    in_flight: AtomicUsize,
}

impl Dispatch {
    /// The dispatch of the webhooks of `shared`, with one HTTP client per webhook.
    pub fn new(
        shared: Arc<Shared>,
        intake: Arc<Intake>,
        clients: Vec<Client>,
        mailers: Vec<Option<Mailer>>,
    ) -> Self {
        let breakers = shared
            .config
            .webhooks
            .iter()
            .map(|w| Breaker::new(w.breaker))
            .collect();
        Dispatch {
            shared,
            intake,
            clients,
            mailers,
            breakers,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// One attempt of `ticket`: mailed for an email webhook, else an HTTP request.
    async fn send(&self, ticket: &Ticket) -> Answer {
        let webhook = self.shared.webhook(ticket.webhook);
        let policy = &self.shared.config.network;
        match (&self.mailers[ticket.webhook], &webhook.email) {
            (Some(mailer), Some(email)) => match attempt::refused_address(webhook, policy) {
                Some(answer) => answer,
                None => smtp::send(mailer, email, &ticket.id, &ticket.body).await,
            },
            _ => attempt::attempt(&self.clients[ticket.webhook], webhook, policy, ticket).await,
        }
    }

    /// Waits until no attempt is in flight, or `deadline` passes; false then.
    pub fn wait_answered(&self, deadline: Option<Instant>) -> bool {
        let ledger = &self.shared.ledger;
        ledger.wait_for(deadline, || self.in_flight.load(SeqCst) == 0)
    }

    /// Raises `webhook_failing` or `webhook_recovered` about webhook `index`, for the other
    /// webhooks subscribed to it.
    fn raise_circuit_event(&self, index: usize, event: Event) {
        let webhook = self.shared.webhook(index);
        let (last_status, last_error) = self.shared.counters(index).last_outcome();
        let failures = self.breakers[index].consecutive_failures();
        match event {
            Event::WebhookFailing => warn!(
                "webhook {} circuit opened after {failures} failed attempts in a row; pausing it",
                webhook.id
            ),
            _ => warn!("webhook {} recovered; circuit closed", webhook.id),
        }
        let metadata = json!({"webhook_id": webhook.id, "webhook": webhook.redacted_url,
            "consecutive_failures": failures, "last_status": last_status, "last_error": last_error});
        let _ = self.intake.admit(
            Job::new(event, Context::default(), object(metadata), None),
            Some(index),
        );
    }

    /// One delivery of a batching webhook's `tickets` (from [`Queue::next_batch`]): a
    /// whole one as it is, else a batch framing their elements.
    ///
    /// [`Queue::next_batch`]: super::queue::Queue::next_batch
    fn batch(&self, mut tickets: Vec<Ticket>) -> Ticket {
        if tickets.len() == 1 && tickets[0].is_whole() {
            return tickets.pop().expect("one ticket");
        }
        let (_, framing) = (self.shared.batching(tickets[0].webhook))
            .expect("only a batching webhook's dispatcher takes batches");
        let body = framing.frame_all(tickets.iter().map(|t| &t.body[..]));
        Ticket::batch(tickets, body)
    }

    /// Ends `ticket` as failed for good and keeps it as a dead letter (a batch: one letter
    /// holding its events, which the store forgets).
    fn dead_letter(&self, ticket: Ticket, status: Option<u16>, error: String) {
        let webhook = self.shared.webhook(ticket.webhook);
        if ticket.is_batch() {
            self.shared.queue.ack(&ticket);
        }
        let letter = DeadLetter {
            webhook: Some(ticket.webhook),
            webhook_id: webhook.id.clone(),
            event: ticket.event,
            delivery_id: ticket.id,
            attempts: ticket.attempts,
            last_status: status,
            last_error: error.clone(),
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            body: ticket.body.clone(),
            batch: ticket.framed(),
        };
        let message = format!(
            "webhook {} ({}) {} delivery {} failed after {} attempts: {error}",
            webhook.id,
            webhook.redacted_url,
            ticket.event.name(),
            ticket.id,
            ticket.attempts
        );
        // Kept before the ticket ends, so whoever waits for idle sees the letter.
        self.shared.queue.dead_letter(letter);
        ticket
            .counters()
            .metrics
            .ended(ticket.event, Outcome::DeadLettered, None);
        // A dead receiver must not flood the gateway's log: warn on the 1st, 2nd, 4th, 8th…
        // failure in a row, the rest at DEBUG.
        let streak = ticket.failed(status, error);
        if streak.is_power_of_two() {
            warn!("{message} ({streak} failed in a row)");
        } else {
            log::debug!("{message}");
        }
    }
}

/// Runs webhook `index`'s dispatcher until the engine stops.
pub(crate) async fn run(engine: Arc<Dispatch>, index: usize) {
    let shared = &engine.shared;
    let webhook = shared.webhook(index);
    let slots = Arc::new(Semaphore::new(webhook.max_concurrency));
    let interval = webhook.max_rate.map(|rate| Duration::from_secs_f64(1.0 / rate));
    let mut next_send = Instant::now();
    let mut halt = shared.subscribe();
    let waker = shared.waker(index);
    loop {
        let state = *halt.borrow_and_update();
        match state {
            Lifecycle::Running => {}
            Lifecycle::Abandoning => drop(shared.queue.drain(index)),
            Lifecycle::Suspended => {
                let _ = halt.changed().await;
                continue;
            }
            Lifecycle::Stopped => return drop(shared.queue.drain(index)),
        }
        let slot = tokio::select! {
            _ = halt.changed() => continue,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("slots are never closed"),
        };
        // Behind an open circuit (or a probe in flight) nothing can be sent: each wake-up (one
        // per delivery queued) re-checks the breaker alone, without taking a delivery out and
        // putting it back or counting an attempt.
        if let Some(until) = engine.breakers[index].blocked(Instant::now()) {
            drop(slot);
            pause(&mut halt, waker, until).await;
            continue;
        }
        // Counted before the delivery is taken, then the state checked again: a close that
        // saw nothing in flight has already moved the state on, and this dispatcher leaves
        // the delivery queued (a durable store keeps it; an attempt after the store's release
        // would be acknowledged nowhere and sent again at the next start).
        let counted = InFlight::new(&engine);
        if !shared.is(Lifecycle::Running) {
            continue;
        }
        let next = match shared.batching(index) {
            Some(batching) => {
                match shared
                    .queue
                    .next_batch(index, Instant::now(), batching, engine.intake.hurrying())
                {
                    Next::Ready(tickets) => Next::Ready(engine.batch(tickets)),
                    Next::At(at) => Next::At(at),
                    Next::Empty => Next::Empty,
                }
            }
            None => shared.queue.next_due(index, Instant::now()),
        };
        let ticket = match next {
            Next::Ready(ticket) => ticket,
            Next::At(due) => {
                pause(&mut halt, waker, Some(due)).await;
                continue;
            }
            Next::Empty => {
                pause(&mut halt, waker, None).await;
                continue;
            }
        };
        let probe = match engine.breakers[index].permit(Instant::now()) {
            Permit::Go { probe } => probe,
            wait => {
                shared.queue.push_front(ticket);
                let until = match wait {
                    Permit::Until(until) => Some(until),
                    _ => None,
                };
                pause(&mut halt, waker, until).await;
                continue;
            }
        };
        if let Some(interval) = interval {
            if next_send > Instant::now() {
                tokio::select! {
                    _ = halt.changed() => {
                        shared.queue.push_front(ticket);
                        continue;
                    }
                    _ = sleep_until(next_send.into()) => {}
                }
            }
            next_send = next_send.max(Instant::now()) + interval;
        }
        tokio::spawn(attempt(counted, ticket, slot, probe));
    }
}

/// Waits until something may have changed for a dispatcher: the engine's halt state, a
/// wake-up (a delivery queued, a retry scheduled, a breaker change), or `until`.
async fn pause(halt: &mut watch::Receiver<Lifecycle>, waker: &Notify, until: Option<Instant>) {
    let deadline = async {
        match until {
            Some(until) => sleep_until(until.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = halt.changed() => {}
        _ = deadline => {}
        _ = waker.notified() => {}
    }
}

/// An attempt in flight, counted from the moment its dispatcher takes the delivery until the
/// attempt has settled it; `close` waits for none to be left.
struct InFlight(Arc<Dispatch>);

impl InFlight {
    fn new(engine: &Arc<Dispatch>) -> Self {
        engine.in_flight.fetch_add(1, SeqCst);
        InFlight(Arc::clone(engine))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, SeqCst) == 1 {
            self.0.shared.ledger.wake_waiters();
        }
    }
}

/// One attempt of `ticket`, holding one of its webhook's in-flight slots; abandoned (and so
/// counted as dropped) if `close` gives up first.
async fn attempt(counted: InFlight, ticket: Ticket, slot: OwnedSemaphorePermit, probe: bool) {
    run_attempt(&counted.0, ticket, slot, probe).await;
}

async fn run_attempt(engine: &Dispatch, mut ticket: Ticket, slot: OwnedSemaphorePermit, probe: bool) {
    let shared = &engine.shared;
    ticket.first_attempt.get_or_insert_with(Instant::now);
    let mut halt = shared.subscribe();
    #[cfg(test)]
    engine.intake.injected_panic(2);
    let outcome = tokio::select! {
        biased;
        _ = halt.wait_for(|h| matches!(h, Lifecycle::Abandoning | Lifecycle::Stopped)) => return,
        outcome = engine.send(&ticket) => outcome,
    };
    drop(slot);
    ticket.attempts += 1;
    settle(engine, ticket, outcome, probe);
}

/// Records what an attempt came to and decides what happens to the delivery next.
fn settle(engine: &Dispatch, ticket: Ticket, outcome: Answer, probe: bool) {
    let shared = &engine.shared;
    let index = ticket.webhook;
    let webhook = shared.webhook(index);
    let breaker = &engine.breakers[index];
    let now = Instant::now();
    let describe = |what: &str| {
        format!(
            "webhook {} {} delivery {} attempt {}: {what}",
            webhook.id,
            ticket.event.name(),
            ticket.id,
            ticket.attempts
        )
    };
    let transition = match outcome {
        Answer::Delivered(_) => breaker.success(),
        _ => breaker.failure(now, probe),
    };
    // Raised before this delivery ends, so that nothing is ever seen idle (by flush or close)
    // in between.
    match transition {
        Transition::Opened => engine.raise_circuit_event(index, Event::WebhookFailing),
        Transition::Recovered => engine.raise_circuit_event(index, Event::WebhookRecovered),
        Transition::None => {}
    }
    let rescheduled = match outcome {
        Answer::Delivered(status) => {
            debug!("{}", describe(&format!("HTTP {status}")));
            shared.queue.ack(&ticket);
            ticket.delivered(status);
            false
        }
        Answer::Retry { status, error, after } => match webhook.retry.delay(ticket.attempts - 1) {
            Some(delay) => {
                let wait = match after {
                    Some(after) => after.min(webhook.retry.retry_after_cap()),
                    None => jitter(delay),
                };
                debug!("{}", describe(&format!("{error}; retrying in {wait:?}")));
                ticket.counters().retried(status, error);
                shared.queue.schedule(ticket, now + wait);
                true
            }
            None => {
                engine.dead_letter(ticket, status, error);
                false
            }
        },
        Answer::Fail { status, error } => {
            engine.dead_letter(ticket, status, error);
            false
        }
    };
    // The dispatcher needs waking only when its next step may have changed: a retry was
    // scheduled, or the breaker moved (a freed slot wakes it through the semaphore).
    if rescheduled || probe || transition != Transition::None {
        shared.waker(index).notify_one();
    }
}
