//! Writing a [`Plan`]: one transaction per slot (per webhook on a cluster, one for all on a
//! single node), and what the replies say about where each delivery now is. A cluster write
//! that fails part way keeps what the transactions before the failure wrote: the plan is
//! tried again whole, and each delivery written already is forgotten before it is written
//! again, so nothing is added twice.

use redis::Value;
use serde::Deserialize;
use uuid::Uuid;

use super::link::Link;
use super::replies::{bytes, item, items, text};
use super::scripts;
use super::slots::Slots;
use super::state::{DeadEntry, Held, Place, State};
use super::{RedisStore, GROUP};
use crate::store::{LastChange, Left, Plan, Record};

/// New deliveries per script call (a script blocks the server while it runs).
const ADD_CHUNK: usize = 500;

/// New deliveries of one webhook: their ids and records.
type NewRecords<'a> = Vec<(Uuid, &'a [u8])>;

/// A reply of a write's transaction that changes what this process holds.
enum AwaitedReply {
    /// An ADD script's reply, for the webhook.
    Added(String),
    /// The dead-letter XADD of a delivery id, to the webhook's stream.
    Dead(Uuid, String),
}

/// The transaction of one slot: its commands, what their replies mean, and which changes of
/// the plan it carries (indexes in `plan.deliveries` and `plan.dead`).
#[derive(Default)]
struct Transaction {
    pipe: redis::Pipeline,
    awaited: Vec<AwaitedReply>,
    deliveries: Vec<usize>,
    dead: Vec<usize>,
}

/// The webhook a dead letter's JSON names (the rest of it is not needed to store it).
#[derive(Deserialize)]
struct WebhookOf {
    webhook: String,
}

impl RedisStore {
    /// Writes `plan`, one transaction per slot, and records where what it wrote now is. On a
    /// cluster a slot that cannot be reached leaves its part unwritten (returned) and the
    /// others are written all the same.
    pub(super) fn write_plan(
        &self,
        plan: &Plan,
        connection: &mut Link,
        state: &mut State,
    ) -> redis::RedisResult<Option<Left>> {
        let mut left: Option<Left> = None;
        for (webhook, mut transaction) in self.transactions(plan, state).into_tagged() {
            transaction.pipe.atomic();
            let pipe = &transaction.pipe;
            let send = |store: &Self, connection: &mut Link, _: &mut State| match pipe.len() {
                0 => Ok(Vec::new()),
                commands => {
                    // MULTI and EXEC are read too.
                    store.time_calls(connection, commands + 2)?;
                    pipe.query::<Vec<Value>>(connection)
                }
            };
            match self.per_slot(connection, state, &webhook, send)? {
                Some(replies) => self.written(plan, transaction, replies, state),
                None => {
                    let left = left.get_or_insert_with(Left::default);
                    left.deliveries
                        .extend(transaction.deliveries.iter().map(|&i| plan.deliveries[i].0));
                    left.dead.extend(transaction.dead.iter().map(|&i| plan.dead[i].0));
                }
            }
        }
        Ok(left)
    }

    /// The commands of `plan` by slot (what a delivery replaces is forgotten first).
    fn transactions(&self, plan: &Plan, state: &State) -> Slots<Transaction> {
        let mut slots: Slots<Transaction> = self.slots();
        let mut adds: Vec<(usize, NewRecords)> = Vec::new();
        for (index, (id, last)) in plan.deliveries.iter().enumerate() {
            let held = state.handles.get(id);
            let webhook = match (held, last) {
                (Some(held), _) => held.webhook.as_str(),
                (None, LastChange::Put { webhook, .. }) => self.ids[*webhook].as_str(),
                (None, LastChange::Delete) => continue,
            };
            let transaction = slots.of(webhook);
            transaction.deliveries.push(index);
            if let Some(held) = held {
                self.forget(&mut transaction.pipe, *id, held);
            }
            match last {
                LastChange::Put {
                    webhook,
                    new: true,
                    value,
                    ..
                } => match adds.iter_mut().find(|(w, _)| w == webhook) {
                    Some((_, records)) => records.push((*id, value)),
                    None => adds.push((*webhook, vec![(*id, value)])),
                },
                LastChange::Put {
                    webhook,
                    due_ms,
                    value,
                    ..
                } => {
                    let webhook = &self.ids[*webhook];
                    transaction
                        .pipe
                        .cmd("HSET")
                        .arg(self.records(webhook))
                        .arg(id.to_string())
                        .arg(*value)
                        .ignore()
                        .cmd("ZADD")
                        .arg(self.retry_set(webhook))
                        .arg(due_ms + self.lease_ms())
                        .arg(id.to_string())
                        .ignore();
                }
                LastChange::Delete => {}
            }
        }
        for (webhook, records) in &adds {
            let webhook = &self.ids[*webhook];
            let transaction = slots.of(webhook);
            for chunk in records.chunks(ADD_CHUNK) {
                let command = transaction
                    .pipe
                    .cmd("EVALSHA")
                    .arg(scripts::ADD.sha())
                    .arg(1)
                    .arg(self.stream(webhook));
                command.arg(GROUP).arg(&self.consumer).arg(chunk.len());
                for (id, _) in chunk {
                    command.arg(id.to_string());
                }
                for (_, value) in chunk {
                    command.arg(*value);
                }
                transaction.awaited.push(AwaitedReply::Added(webhook.clone()));
            }
        }
        for (index, (id, value)) in plan.dead.iter().enumerate() {
            match (value, state.dead_handles.get(id)) {
                (Some(value), _) => {
                    let Ok(WebhookOf { webhook }) = serde_json::from_slice(value) else {
                        continue; // not written by this library: nothing to store it under
                    };
                    let transaction = slots.of(&webhook);
                    transaction.dead.push(index);
                    // Trimmed to about one replica's capacity: every replica adds to the
                    // fleet's streams, which would otherwise hold replicas × the capacity.
                    transaction
                        .pipe
                        .cmd("XADD")
                        .arg(self.dead_stream(&webhook))
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(self.dead_capacity.max(1))
                        .arg("*")
                        .arg("d")
                        .arg(*value);
                    transaction.awaited.push(AwaitedReply::Dead(*id, webhook));
                }
                (None, Some(held)) => {
                    let transaction = slots.of(&held.webhook);
                    transaction.dead.push(index);
                    transaction
                        .pipe
                        .cmd("XDEL")
                        .arg(self.dead_stream(&held.webhook))
                        .arg(&held.entry)
                        .ignore();
                }
                (None, None) => {}
            }
        }
        slots
    }

    /// Queues the commands that forget where `handle` is stored.
    fn forget(&self, pipe: &mut redis::Pipeline, id: Uuid, handle: &Held) {
        match &handle.place {
            Place::Stream(entry) => {
                let stream = self.stream(&handle.webhook);
                pipe.cmd("XACK").arg(&stream).arg(GROUP).arg(entry).ignore();
                pipe.cmd("XDEL").arg(&stream).arg(entry).ignore();
            }
            Place::Retry { .. } => {
                let id = id.to_string();
                pipe.cmd("ZREM")
                    .arg(self.retry_set(&handle.webhook))
                    .arg(&id)
                    .ignore();
                pipe.cmd("HDEL")
                    .arg(self.records(&handle.webhook))
                    .arg(&id)
                    .ignore();
            }
        }
    }

    /// Records where what `transaction` wrote now is, from its `replies`.
    fn written(&self, plan: &Plan, transaction: Transaction, replies: Vec<Value>, state: &mut State) {
        for index in transaction.deliveries {
            let (id, last) = &plan.deliveries[index];
            state.handles.remove(id);
            if let LastChange::Put {
                webhook,
                new: false,
                due_ms,
                ..
            } = last
            {
                let held = Held {
                    webhook: self.ids[*webhook].clone(),
                    place: Place::Retry { due_ms: *due_ms },
                };
                state.handles.insert(*id, held);
            }
        }
        for index in transaction.dead {
            let (id, value) = &plan.dead[index];
            if value.is_none() {
                state.dead_handles.remove(id);
            }
        }
        for (expected, reply) in transaction.awaited.into_iter().zip(replies) {
            match expected {
                AwaitedReply::Added(webhook) => self.added(&webhook, &reply, state),
                AwaitedReply::Dead(id, webhook) => {
                    if let Some(entry) = text(&reply) {
                        state.dead_handles.insert(id, DeadEntry { webhook, entry });
                    }
                }
            }
        }
    }

    /// Holds what an ADD script read: this process's new deliveries, and older unread entries
    /// it took with them (handed over by the next claim).
    fn added(&self, webhook: &str, reply: &Value, state: &mut State) {
        let mut adopted = std::mem::take(&mut state.adopted);
        for entry in items(reply) {
            let (Some(entry_id), Some(id)) = (text(item(entry, 0)), text(item(entry, 1))) else {
                continue;
            };
            let Ok(id) = id.parse::<Uuid>() else { continue };
            let place = Place::Stream(entry_id);
            match bytes(item(entry, 2)) {
                None => {
                    let held = Held {
                        webhook: webhook.to_owned(),
                        place,
                    };
                    state.handles.insert(id, held);
                }
                Some(record) => {
                    let record = serde_json::from_slice::<Record>(record).ok();
                    self.adopt(state, webhook, place, record, &mut adopted);
                }
            }
        }
        state.adopted = adopted;
    }
}
