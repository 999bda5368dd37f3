//! Where hook threads leave admitted events for the intake task. A vector behind a mutex
//! that the task empties with one swap: a hook's push touches no line the runtime writes for
//! every event (a channel's counters and waker are written by both sides per message), and
//! it wakes the task — a syscall — only when the task sleeps.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use super::padded::Padded;

/// Items on their way from any thread to one consumer task.
pub struct Inbox<T> {
    /// Written by hooks for every item: on lines of its own (see [`Padded`]).
    items: Padded<Mutex<Vec<T>>>,
    /// Set by the consumer before it sleeps, cleared when it wakes.
    sleeping: AtomicBool,
    wake: Notify,
}

impl<T> Inbox<T> {
    /// An empty inbox.
    pub fn new() -> Self {
        Inbox {
            items: Padded(Mutex::new(Vec::new())),
            sleeping: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn items(&self) -> MutexGuard<'_, Vec<T>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves `item` for the consumer, waking it if it sleeps.
    pub fn push(&self, item: T) {
        self.items().push(item);
        // After the push's unlock: a consumer that checked for items before it saw ours has
        // set `sleeping` before that check, so we see it (and a missed wake is impossible).
        if self.sleeping.load(SeqCst) {
            self.wake.notify_one();
        }
    }

    /// Swaps everything left so far into `into` (which must be empty), so that both vectors
    /// keep their capacity from one turn to the next.
    pub fn take(&self, into: &mut Vec<T>) {
        debug_assert!(into.is_empty());
        std::mem::swap(&mut *self.items(), into);
    }

    /// Returns once something is left (at once if something is).
    pub async fn wait(&self) {
        loop {
            let woken = self.wake.notified();
            self.sleeping.store(true, SeqCst);
            if !self.items().is_empty() {
                break;
            }
            woken.await;
        }
        self.sleeping.store(false, SeqCst);
    }

    /// Everything left, for a consumer that stops.
    pub fn drain(&self) -> Vec<T> {
        std::mem::take(&mut *self.items())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_push_wakes_a_sleeping_consumer_and_nothing_is_lost() {
        let inbox = Arc::new(Inbox::new());
        let producer = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || {
                for i in 0..100_000u32 {
                    inbox.push(i);
                    if i % 1000 == 0 {
                        std::thread::yield_now(); // lets the consumer fall asleep now and then
                    }
                }
            })
        };
        let (mut got, mut turn) = (Vec::new(), Vec::new());
        while got.len() < 100_000 {
            inbox.wait().await;
            inbox.take(&mut turn);
            got.append(&mut turn);
        }
        producer.join().unwrap();
        assert_eq!(got, (0..100_000).collect::<Vec<_>>());
        assert!(inbox.drain().is_empty());
    }
}
