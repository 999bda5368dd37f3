//! What a Redis store holds in this process: its connection, the deliveries it owns and where
//! each is stored, and the bookkeeping of its claim rounds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::link::Link;

use crate::store::{DeadRecord, Resumed};

/// Where a delivery this process holds is stored.
pub(super) enum Place {
    /// An entry of the webhook's stream, in this consumer's pending list.
    Stream(String),
    /// A member of the webhook's retry set, leased until its due time plus `claim_after`.
    Retry { due_ms: u64 },
}

/// A delivery this process holds, by webhook id (which may no longer be configured).
pub(super) struct Held {
    pub(super) webhook: String,
    pub(super) place: Place,
}

/// A dead letter in a webhook's dead-letter stream.
pub(super) struct DeadEntry {
    pub(super) webhook: String,
    pub(super) entry: String,
}

/// A dead-letter stream as last read: its length, first and last entry ids.
pub(super) type Fingerprint = (u64, Option<String>, Option<String>);

/// Failures in a row, and no attempt before `retry_at` (100 ms doubling to 5 s).
pub(super) struct Backoff {
    pub(super) failures: u32,
    pub(super) retry_at: Instant,
}

impl Backoff {
    /// One more failure, now.
    pub(super) fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let wait = Duration::from_millis(100 << self.failures.min(6)).min(Duration::from_secs(5));
        self.retry_at = Instant::now() + wait;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            failures: 0,
            retry_at: Instant::now(),
        }
    }
}

/// The connection and what this process holds; one lock, taken by the committer only.
pub(super) struct State {
    pub(super) connection: Option<Link>,
    /// Webhooks whose slot failed (a cluster's primary down): their commands wait out a
    /// backoff while the other webhooks go on.
    pub(super) down: HashMap<String, Backoff>,
    /// No connection attempt before its `retry_at`.
    pub(super) backoff: Backoff,
    pub(super) handles: HashMap<Uuid, Held>,
    pub(super) dead_handles: HashMap<Uuid, DeadEntry>,
    /// Whether the dead letters and orphaned streams were read (once, at the first connection).
    pub(super) loaded: bool,
    /// Dead letters read (at the first connection, or added by other processes since):
    /// handed over by the next claim.
    pub(super) dead: Vec<DeadRecord>,
    /// Dead letters other processes replayed or evicted: handed over by the next claim.
    pub(super) gone: Vec<Uuid>,
    /// The dead-letter streams of the configured webhooks and orphans, in that order, as
    /// last read.
    pub(super) dead_seen: Vec<Fingerprint>,
    pub(super) next_dead_sync: Instant,
    /// Webhook ids in this fleet's registry that this config does not have.
    pub(super) orphans: Vec<String>,
    /// Those of them no replica has loaded for `orphan_after` (see `RedisStore::heartbeat`).
    pub(super) expired: Vec<String>,
    /// Entries an ADD took that were not its own: handed over by the next claim.
    pub(super) adopted: Vec<Resumed>,
    pub(super) next_claim: Instant,
    pub(super) next_renewal: Instant,
    /// Set at close: this process takes nothing more.
    pub(super) released: bool,
}
