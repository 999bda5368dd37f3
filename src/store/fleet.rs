//! The fleet's side of digests, as the engine sees it: a shared store where every replica adds
//! what it counted of a digest group and the one replica that wins a group's window takes the
//! merged counts for one message (DESIGN "Fleet on Redis"). The Redis outbox is the store that
//! does this (`redis/digests.rs`); the engine knows only this trait and these types.

use std::collections::HashMap;

use super::Store;
use crate::config::DigestSettings;

/// A shared store that exchanges digest counts with the rest of the fleet.
pub(crate) trait FleetExchange: Store {
    /// Adds `shares` to the fleet's digest groups of `webhook`, keeps the leases of `holding`
    /// (groups whose message this replica sent is undelivered) for another interval, and
    /// takes the groups whose message is due and whose lease it wins (see [`Rules`]).
    fn exchange_digests(
        &self,
        webhook: &str,
        settings: &DigestSettings,
        shares: &[Share],
        holding: &[String],
        schedule: &mut Schedule,
        rules: Rules,
    ) -> Result<Exchange, String>;
}

/// What this replica counted for one digest group since its last exchange.
pub(crate) struct Share {
    pub key: String,
    /// The group's values as compact JSON, and whether it is the overflow group.
    pub values: String,
    pub overflow: bool,
    /// The latest event's variables as compact JSON, and its event name.
    pub latest: String,
    pub event: &'static str,
    pub count: u64,
    pub first_ms: u64,
    pub last_ms: u64,
    /// Sample bodies as JSON.
    pub samples: Vec<String>,
    /// With a threshold: the events by time bucket (start in ms, count).
    pub buckets: Vec<(u64, u64)>,
}

/// A message's worth of a group's fleet counts, taken with the group's lease.
pub(crate) struct Taken {
    pub key: String,
    /// A resolve message (the group was quiet for `resolve_after`), else a firing one.
    pub resolved: bool,
    pub count: u64,
    pub total: u64,
    pub first_ms: u64,
    pub last_ms: u64,
    pub latest: String,
    pub event: String,
    pub values: String,
    pub overflow: bool,
    pub samples: Vec<String>,
}

/// What one exchange brought back.
#[derive(Default)]
pub(crate) struct Exchange {
    pub taken: Vec<Taken>,
    /// Events that left a threshold's window before their group fired.
    pub below_threshold: u64,
}

/// How one exchange treats due groups.
#[derive(Clone, Copy)]
pub(crate) struct Rules {
    /// Close: every group with counts is tried once, whatever its interval.
    pub closing: bool,
    /// The webhook's format sends resolve messages (else a quiet group closes silently).
    pub resolves: bool,
}

/// A webhook's exchange state that lives across calls: when to try each group's lease
/// next (ms since the epoch).
pub(crate) type Schedule = HashMap<String, u64>;
