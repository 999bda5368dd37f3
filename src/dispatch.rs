//! A webhook's dispatcher: takes its next due delivery from the outbox when an in-flight
//! slot is free, the breaker allows a request and the rate limit has room, and runs the
//! attempt as a task; then settles the outcome — delivered, scheduled for a retry, or a
//! dead letter — and tells the breaker. Waiting behind an open circuit spends no attempt.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::sleep_until;

use crate::breaker::{Permit, Transition};
use crate::delivery::{self, jitter, Outcome};
use crate::engine::{Engine, Halt};
use crate::events::Event;
use crate::ledger::Ticket;
use crate::outbox::Next;

/// Runs webhook `index`'s dispatcher until the engine stops.
pub(crate) async fn run(engine: Arc<Engine>, index: usize) {
    let webhook = &engine.config.webhooks[index];
    let slots = Arc::new(Semaphore::new(webhook.max_concurrency));
    let interval = webhook.max_rate.map(|rate| Duration::from_secs_f64(1.0 / rate));
    let mut next_send = Instant::now();
    let mut halt = engine.halt.subscribe();
    let waker = &engine.wakers[index];
    loop {
        let state = *halt.borrow_and_update();
        match state {
            Halt::Running => {}
            Halt::Abandon => drop(engine.outbox.drain(index)),
            Halt::Suspend => {
                let _ = halt.changed().await;
                continue;
            }
            Halt::Stopped => return drop(engine.outbox.drain(index)),
        }
        let slot = tokio::select! {
            _ = halt.changed() => continue,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("slots are never closed"),
        };
        let ticket = match engine.outbox.next_due(index, Instant::now()) {
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
                engine.outbox.push_front(ticket);
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
                        engine.outbox.push_front(ticket);
                        continue;
                    }
                    _ = sleep_until(next_send.into()) => {}
                }
            }
            next_send = next_send.max(Instant::now()) + interval;
        }
        tokio::spawn(attempt(Arc::clone(&engine), ticket, slot, probe));
    }
}

/// Waits until something may have changed for a dispatcher: the engine's halt state, a
/// wake-up (a delivery queued, a retry scheduled, a breaker change), or `until`.
async fn pause(halt: &mut watch::Receiver<Halt>, waker: &Notify, until: Option<Instant>) {
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

/// One attempt of `ticket`, holding one of its webhook's in-flight slots; abandoned (and so
/// counted as dropped) if `close` gives up first.
async fn attempt(engine: Arc<Engine>, ticket: Ticket, slot: OwnedSemaphorePermit, probe: bool) {
    engine.in_flight.fetch_add(1, SeqCst);
    run_attempt(&engine, ticket, slot, probe).await;
    engine.in_flight.fetch_sub(1, SeqCst);
}

async fn run_attempt(engine: &Arc<Engine>, mut ticket: Ticket, slot: OwnedSemaphorePermit, probe: bool) {
    let webhook = &engine.config.webhooks[ticket.webhook];
    ticket.first_attempt.get_or_insert_with(Instant::now);
    let mut halt = engine.halt.subscribe();
    #[cfg(test)]
    engine.injected_panic(2);
    let outcome = tokio::select! {
        biased;
        _ = halt.wait_for(|h| matches!(h, Halt::Abandon | Halt::Stopped)) => return,
        outcome = delivery::attempt(&engine.clients[ticket.webhook], webhook, &engine.config.network, &ticket) => outcome,
    };
    drop(slot);
    ticket.attempts += 1;
    settle(engine, ticket, outcome, probe);
}

/// Records what an attempt came to and decides what happens to the delivery next.
fn settle(engine: &Engine, ticket: Ticket, outcome: Outcome, probe: bool) {
    let index = ticket.webhook;
    let webhook = &engine.config.webhooks[index];
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
        Outcome::Delivered(_) => breaker.success(),
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
        Outcome::Delivered(status) => {
            debug!("{}", describe(&format!("HTTP {status}")));
            engine.outbox.ack(&ticket);
            ticket.delivered(status);
            false
        }
        Outcome::Retry { status, error, after } => match webhook.retry.delay(ticket.attempts - 1) {
            Some(delay) => {
                let wait = match after {
                    Some(after) => after.min(webhook.retry.retry_after_cap()),
                    None => jitter(delay),
                };
                debug!("{}", describe(&format!("{error}; retrying in {wait:?}")));
                ticket.counters().retried(status, error);
                engine.outbox.schedule(ticket, now + wait);
                true
            }
            None => {
                engine.dead_letter(ticket, status, error);
                false
            }
        },
        Outcome::Fail { status, error } => {
            engine.dead_letter(ticket, status, error);
            false
        }
    };
    // The dispatcher needs waking only when its next step may have changed: a retry was
    // scheduled, or the breaker moved (a freed slot wakes it through the semaphore).
    if rescheduled || probe || transition != Transition::None {
        engine.wakers[index].notify_one();
    }
}
