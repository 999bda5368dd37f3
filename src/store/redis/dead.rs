//! The fleet's dead letters in Redis: one stream per webhook (`K:{W}:dead`), read at the first
//! connection and followed while running, so that what one replica adds or replays the others
//! list or forget.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redis::Value;
use uuid::Uuid;

use super::link::Link;
use super::replies::{field, item, items, text};
use super::slots::Slots;
use super::state::{DeadEntry, Fingerprint, State};
use super::RedisStore;
use crate::config::valid_id;
use crate::store::DeadRecord;

/// How often this process follows the fleet's dead-letter streams (see `follow_dead`).
const DEAD_SYNC_INTERVAL: Duration = Duration::from_secs(1);

impl RedisStore {
    /// The webhooks whose dead letters this process lists: the configured ones, then orphans.
    fn dead_webhooks(&self, state: &State) -> Vec<String> {
        self.ids.iter().chain(&state.orphans).cloned().collect()
    }

    /// Finds the webhooks of the registry this config no longer has, and reads the fleet's
    /// dead letters (handed over by the next claim).
    pub(super) fn load(&self, connection: &mut Link, state: &mut State) -> redis::RedisResult<()> {
        let registered: Vec<String> = redis::cmd("SMEMBERS").arg(self.registry()).query(connection)?;
        state.orphans = registered
            .into_iter()
            .filter(|id| valid_id(id) && !self.ids.contains(id))
            .collect();
        state.orphans.sort();
        for id in state.orphans.clone() {
            self.create_group(connection, &id)?;
        }
        for (webhook, entry, record) in self.read_dead(connection, state)? {
            // Known already when this is a cluster's later try (see `load_once`).
            if let std::collections::hash_map::Entry::Vacant(slot) = state.dead_handles.entry(record.id) {
                slot.insert(DeadEntry { webhook, entry });
                state.dead.push(record);
            }
        }
        Ok(())
    }

    /// The newest `dead_capacity` dead letters of the fleet, oldest first, with their webhook
    /// and entry id.
    fn read_dead(
        &self,
        connection: &mut Link,
        state: &State,
    ) -> redis::RedisResult<Vec<(String, String, DeadRecord)>> {
        let webhooks = self.dead_webhooks(state);
        let mut pipes: Slots<redis::Pipeline> = self.slots();
        for webhook in &webhooks {
            pipes
                .of(webhook)
                .cmd("XREVRANGE")
                .arg(self.dead_stream(webhook))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(self.dead_capacity.max(1));
        }
        let mut letters = Vec::new();
        let mut replies = Vec::new();
        for pipe in pipes.into_groups() {
            replies.extend(pipe.query::<Vec<Value>>(connection)?);
        }
        for (webhook, reply) in webhooks.iter().zip(&replies) {
            for entry in items(reply) {
                let Some(record) =
                    field(entry, "d").and_then(|d| serde_json::from_slice::<DeadRecord>(d).ok())
                else {
                    continue;
                };
                let Some(entry) = text(item(entry, 0)) else {
                    continue;
                };
                letters.push((webhook.clone(), entry, record));
            }
        }
        letters.sort_by_key(|(_, entry, _)| entry_order(entry));
        let excess = letters.len().saturating_sub(self.dead_capacity.max(1));
        letters.drain(..excess);
        Ok(letters)
    }

    /// Every `DEAD_SYNC_INTERVAL`, follows the fleet's dead-letter streams: letters another
    /// process replayed or evicted are forgotten here, letters others added are listed here.
    /// The streams are read again only when one changed (its length, first or last entry), so
    /// an idle fleet costs three small commands per webhook and interval.
    pub(super) fn follow_dead(&self, connection: &mut Link, state: &mut State) -> redis::RedisResult<()> {
        if Instant::now() < state.next_dead_sync {
            return Ok(());
        }
        let seen = self.dead_fingerprints(connection, state)?;
        state.next_dead_sync = Instant::now() + DEAD_SYNC_INTERVAL;
        if state.dead_seen == seen {
            return Ok(());
        }
        let letters = self.read_dead(connection, state)?;
        let present: HashSet<Uuid> = letters.iter().map(|(_, _, record)| record.id).collect();
        let gone: Vec<Uuid> = state
            .dead_handles
            .keys()
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        for id in &gone {
            state.dead_handles.remove(id);
        }
        state.gone.extend(gone);
        for (webhook, entry, record) in letters {
            if let std::collections::hash_map::Entry::Vacant(slot) = state.dead_handles.entry(record.id) {
                slot.insert(DeadEntry { webhook, entry });
                state.dead.push(record);
            }
        }
        state.dead_seen = seen;
        Ok(())
    }

    /// The length, first and last entry id of each webhook's dead-letter stream.
    fn dead_fingerprints(
        &self,
        connection: &mut Link,
        state: &State,
    ) -> redis::RedisResult<Vec<Fingerprint>> {
        let mut pipes: Slots<redis::Pipeline> = self.slots();
        for webhook in self.dead_webhooks(state) {
            let stream = self.dead_stream(&webhook);
            pipes
                .of(&webhook)
                .cmd("XLEN")
                .arg(&stream)
                .cmd("XRANGE")
                .arg(&stream)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .cmd("XREVRANGE")
                .arg(&stream)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
        }
        let mut replies = Vec::new();
        for pipe in pipes.into_groups() {
            replies.extend(pipe.query::<Vec<Value>>(connection)?);
        }
        let entry_id = |reply: &Value| items(reply).first().and_then(|entry| text(item(entry, 0)));
        Ok(replies
            .chunks(3)
            .map(|three| {
                let length = match three[0] {
                    Value::Int(length) => length as u64,
                    _ => 0,
                };
                (length, entry_id(&three[1]), entry_id(&three[2]))
            })
            .collect())
    }

    /// Removes the dead letters `ids` from their streams for a replay; for each, whether it
    /// was still there (so that two replicas never replay one letter twice).
    pub(super) fn take_dead_letters(&self, state: &mut State, ids: &[Uuid]) -> Vec<bool> {
        let entries: Vec<Option<DeadEntry>> = ids.iter().map(|id| state.dead_handles.remove(id)).collect();
        // A letter not in a stream yet is this process's own, not yet written: still there.
        let mut still_there = vec![true; ids.len()];
        let _ = self.with_connection(state, |store, connection, _| {
            // Each group's pipeline, and the index in `ids` of each of its commands.
            let mut pipes: Slots<(redis::Pipeline, Vec<usize>)> = store.slots();
            for (index, held) in entries.iter().enumerate() {
                let Some(held) = held else { continue };
                let (pipe, indexes) = pipes.of(&held.webhook);
                pipe.cmd("XDEL")
                    .arg(store.dead_stream(&held.webhook))
                    .arg(&held.entry);
                indexes.push(index);
            }
            for (pipe, indexes) in pipes.into_groups() {
                let deleted: Vec<u64> = pipe.query(connection)?;
                for (index, deleted) in indexes.into_iter().zip(deleted) {
                    still_there[index] = deleted == 1;
                }
            }
            Ok(())
        });
        still_there
    }
}

/// A stream entry id (`<ms>-<seq>`) as a sortable pair.
fn entry_order(entry: &str) -> (u64, u64) {
    let (ms, seq) = entry.split_once('-').unwrap_or((entry, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}
