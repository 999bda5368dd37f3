//! The Redis outbox, for a gateway fleet: every process with the same `url` and `key` shares
//! it, and a delivery left by a process that died is delivered by another.
//!
//! Layout, per webhook id `W` under `key` `K` (every key of a webhook carries the hash tag
//! `{W}`, so on Redis Cluster each script and transaction touches one slot):
//! - `K:{W}:stream`, a stream with the consumer group `webhook-notification`: a new delivery is
//!   added and read into the adding process's pending list in one script, so it is delivered
//!   where it was admitted (no round trip before the first attempt) and is owned from the
//!   start. Each process is one consumer; an entry idle longer than `claim_after` (its
//!   owner died: a live owner refreshes what it holds) is taken over with XAUTOCLAIM.
//! - `K:{W}:retry`, a sorted set of delivery ids waiting to retry, scored by the time from
//!   which any process may take them (the due time plus `claim_after` while an owner holds
//!   them, renewed while it lives; the close time once handed back at close), with the
//!   records (attempts and due time included) in the hash `K:{W}:records`. A process that
//!   takes one keeps it until its due time.
//! - `K:{W}:dead`, a stream of the webhook's dead letters shared by the fleet.
//! - `K:webhooks`, the set of webhook ids that ever had keys: how a process finds deliveries
//!   of webhooks its config no longer has (no SCAN, which a cluster would need per node).
//!
//! Keys of the v2 layout (`K:W:stream`, …, `K:dead`) are taken over at each connection to a
//! single node (see `upgrade`).
//!
//! Scheduling runs in memory (the journal's memory outbox); the store only writes batches and
//! takes over. The client is synchronous: every call runs on the committer's blocking thread,
//! never on a hook. Redis down: batches wait in the journal (bounded by the webhooks'
//! capacities, since deliveries keep being attempted from memory), reconnection backs off up
//! to 5 s, `connected` is false.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::Value;
use uuid::Uuid;

mod dead;
mod digests;
mod link;
mod replies;
mod scripts;
mod silences;
mod slots;
mod state;
mod upgrade;
mod writes;

use link::{Client, Link};
use replies::{bytes, field, item, items, text};

pub(crate) use silences::RedisSilences;
use slots::Slots;
use state::{Backoff, Held, Place, State};

use crate::config::RedisOutbox;
use crate::store::tenants::{self, Attachment, StoredWebhook};
use crate::store::{lock_until, now_ms, Claimed, Plan, Record, Resumed, Store, Unwritten};

/// The consumer group of every delivery stream.
const GROUP: &str = "webhook-notification";
/// How often this process looks for deliveries to take over: a tenth of `claim_after` (a dead
/// replica's deliveries wait that long anyway), between these bounds.
const CLAIM_INTERVAL: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));
/// How long connecting may take, and each call (less once close has a deadline).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The Redis store of a fleet's outbox.
pub(crate) struct RedisStore {
    client: Client,
    key: String,
    /// This process's consumer name: unique per engine.
    consumer: String,
    /// Webhook ids in config order.
    ids: Vec<String>,
    claim_after: Duration,
    /// How often claim rounds run (see [`CLAIM_INTERVAL`]).
    claim_interval: Duration,
    /// How long a delivery of a webhook no replica has loaded waits before it is dead-lettered.
    orphan_after: Duration,
    /// When this store was created (orphans wait `orphan_after` from here, too).
    opened: Instant,
    dead_capacity: usize,
    connected: AtomicBool,
    /// Set at close: every Redis call returns by then.
    deadline: Mutex<Option<Instant>>,
    /// The latest connection error, until a claim round succeeds (kept apart from `state`,
    /// which a slow Redis may hold, so that stats never wait).
    error: Mutex<Option<String>>,
    state: Mutex<State>,
    /// This engine among the configs of this process on the same Redis outbox, until it
    /// closes (a closed engine's webhooks no longer count).
    tenant: Mutex<Option<Attachment>>,
}

impl RedisStore {
    /// A store on the Redis (node or cluster) of `outbox` (nothing is contacted yet: the
    /// committer connects, and reconnects, in the background). The error is for `outbox.url`.
    pub fn connect(
        outbox: &RedisOutbox,
        webhooks: Vec<StoredWebhook>,
        dead_capacity: usize,
        orphan_after: Duration,
    ) -> crate::error::Result<Self> {
        let now = Instant::now();
        let client = Client::new(outbox).map_err(|m| crate::error::Error::config("outbox.url", m))?;
        let name: Vec<&str> = outbox
            .urls
            .iter()
            .map(|u| u.0.as_str())
            .chain([outbox.key.as_str()])
            .collect();
        let ids = webhooks.iter().map(|w| w.id.clone()).collect();
        let tenant = tenants::attach(&name.join("\n"), webhooks)?;
        Ok(RedisStore {
            tenant: Mutex::new(Some(tenant)),
            client,
            key: outbox.key.clone(),
            consumer: format!("{}-{:08x}", std::process::id(), fastrand::u32(..)),
            ids,
            claim_after: outbox.claim_after,
            claim_interval: (outbox.claim_after / 10).clamp(CLAIM_INTERVAL.0, CLAIM_INTERVAL.1),
            orphan_after,
            opened: now,
            dead_capacity,
            connected: AtomicBool::new(false),
            deadline: Mutex::default(),
            error: Mutex::default(),
            state: Mutex::new(State {
                connection: None,
                backoff: Backoff::default(),
                down: HashMap::new(),
                handles: HashMap::new(),
                dead_handles: HashMap::new(),
                loaded: false,
                dead: Vec::new(),
                gone: Vec::new(),
                dead_seen: Vec::new(),
                next_dead_sync: now,
                orphans: Vec::new(),
                expired: Vec::new(),
                adopted: Vec::new(),
                next_claim: now,
                next_renewal: now,
                released: false,
            }),
        })
    }
}

impl RedisStore {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The close deadline, once close has begun.
    fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the socket timeouts for a call that reads `replies` replies: 5 s each while
    /// running; once close has a deadline, an equal share of what is left before it — the
    /// client waits for every reply of a pipeline in turn, timed out or not, so a frozen server
    /// would otherwise hold a pipeline of n commands for n timeouts. (Not a share while
    /// running: a big transaction's replies all come after EXEC has run every command, and a
    /// timeout then would write the batch twice.)
    fn time_calls(&self, connection: &mut Link, replies: usize) -> redis::RedisResult<()> {
        let timeout = match self.deadline() {
            None => IO_TIMEOUT,
            Some(_) => self.call_timeout(IO_TIMEOUT)? / (replies.max(1) as u32),
        };
        connection.set_timeouts(timeout.max(Duration::from_millis(1)))
    }

    /// How long one Redis call may take: `normal`, or what is left before the close deadline.
    fn call_timeout(&self, normal: Duration) -> redis::RedisResult<Duration> {
        match self.deadline() {
            None => Ok(normal),
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Ok(left.min(normal)),
                _ => Err((redis::ErrorKind::Io, "the close deadline passed").into()),
            },
        }
    }

    /// The key `part` of `webhook`, hash-tagged so that all of a webhook's keys share a slot.
    fn key_of(&self, webhook: &str, part: &str) -> String {
        format!("{}:{{{webhook}}}:{part}", self.key)
    }

    fn stream(&self, webhook: &str) -> String {
        self.key_of(webhook, "stream")
    }

    fn retry_set(&self, webhook: &str) -> String {
        self.key_of(webhook, "retry")
    }

    fn records(&self, webhook: &str) -> String {
        self.key_of(webhook, "records")
    }

    fn dead_stream(&self, webhook: &str) -> String {
        self.key_of(webhook, "dead")
    }

    /// When each webhook id was last loaded by some replica (a hash of id → ms since the
    /// epoch, refreshed at every renewal): a webhook nobody loaded for `orphan_after` is an
    /// orphan, whose deliveries become dead letters.
    fn seen(&self) -> String {
        format!("{}:seen", self.key)
    }

    /// Says the fleet that this replica has its webhooks loaded, and finds the registered
    /// webhooks no replica has had loaded for `orphan_after` (none before this store itself
    /// has been up that long): only their deliveries may be dead-lettered.
    fn heartbeat(&self, connection: &mut Link, state: &mut State) -> redis::RedisResult<()> {
        let now = now_ms();
        let mut beat = redis::cmd("HSET");
        beat.arg(self.seen());
        for id in &self.ids {
            beat.arg(id).arg(now);
        }
        beat.query::<()>(connection)?;
        state.expired = Vec::new();
        if self.opened.elapsed() < self.orphan_after || state.orphans.is_empty() {
            return Ok(());
        }
        let seen: HashMap<String, u64> = redis::cmd("HGETALL").arg(self.seen()).query(connection)?;
        let limit = now.saturating_sub(self.orphan_after.as_millis() as u64);
        state.expired = state
            .orphans
            .iter()
            .filter(|id| seen.get(*id).is_none_or(|at| *at < limit))
            .cloned()
            .collect();
        Ok(())
    }

    /// The set of every webhook id that ever had keys under this fleet's `key`.
    fn registry(&self) -> String {
        format!("{}:webhooks", self.key)
    }

    /// Groups for commands on webhooks' keys: per webhook on a cluster, one on a single node.
    fn slots<T: Default>(&self) -> Slots<T> {
        Slots::new(self.client.is_cluster())
    }

    fn lease_ms(&self) -> u64 {
        self.claim_after.as_millis() as u64
    }

    /// Runs `work` on the connection (connecting first, unless backing off); a failure drops
    /// the connection, so the next call reconnects.
    fn with_connection<T>(
        &self,
        state: &mut State,
        work: impl FnOnce(&Self, &mut Link, &mut State) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let mut connection = match state.connection.take() {
            _ if state.released => return Err("the outbox is closed".into()),
            Some(connection) => connection,
            // At close (a deadline is set) one more try is worth it whatever the backoff.
            None if Instant::now() < state.backoff.retry_at && self.deadline().is_none() => {
                return Err(self.last_error().unwrap_or_else(|| "Redis: not connected".into()))
            }
            None => match self.open(state) {
                Ok(connection) => connection,
                Err(e) => return Err(self.went_down(state, e)),
            },
        };
        match self
            .time_calls(&mut connection, 1)
            .and_then(|()| work(self, &mut connection, state))
        {
            Ok(value) => {
                state.connection = Some(connection);
                state.backoff.failures = 0;
                Ok(value)
            }
            Err(e) => Err(self.went_down(state, e)),
        }
    }

    /// Notes a failure: not connected, next attempt after a backoff (100 ms doubling to 5 s).
    fn went_down(&self, state: &mut State, error: redis::RedisError) -> String {
        state.backoff.failed();
        self.connected.store(false, Relaxed);
        self.note_error(error)
    }

    /// Connects, registers the webhooks and creates their consumer groups, loads the scripts
    /// (on every primary of a cluster); at the first connection, takes over keys of the v2
    /// layout and reads the fleet's dead letters.
    fn open(&self, state: &mut State) -> redis::RedisResult<Link> {
        let timeout = self.call_timeout(CONNECT_TIMEOUT)?;
        let mut connection = self.client.connect(timeout)?;
        self.time_calls(&mut connection, 1)?;
        if !self.client.is_cluster() {
            self.register(&mut connection)?;
            for id in &self.ids {
                self.create_group(&mut connection, id)?;
            }
            self.load_scripts(&mut connection, &self.registry())?;
            if !state.loaded {
                self.upgrade(&mut connection)?;
                // Before this process writes anything, so what it reads is not its own.
                self.load(&mut connection, state)?;
                state.loaded = true;
            }
            return Ok(connection);
        }
        // A cluster: each webhook's slot is prepared on its own, so that a primary down holds
        // back only the webhooks it serves (each waits out a backoff, then is prepared again).
        for id in &self.ids {
            state.down.insert(id.clone(), Backoff::default());
            self.on_slot(&mut connection, state, id, |_, _, _| Ok(()));
        }
        self.load_once(&mut connection, state);
        Ok(connection)
    }

    /// Adds the webhooks to the fleet's registry.
    fn register(&self, connection: &mut Link) -> redis::RedisResult<()> {
        redis::cmd("SADD")
            .arg(self.registry())
            .arg(&self.ids)
            .exec(connection)
    }

    /// Creates `webhook`'s consumer group and loads the scripts on the primary serving it.
    fn prepare(&self, connection: &mut Link, webhook: &str) -> redis::RedisResult<()> {
        self.create_group(connection, webhook)?;
        self.load_scripts(connection, &self.stream(webhook))
    }

    /// Loads the scripts on the primary serving `key`'s slot.
    fn load_scripts(&self, connection: &mut Link, key: &str) -> redis::RedisResult<()> {
        for script in scripts::all() {
            connection.on_node_of(key, &script.load())?;
        }
        Ok(())
    }

    /// On a cluster: registers the webhooks and reads the registry and the fleet's dead
    /// letters, at the first connection or, while a node holding some of them is down, at a
    /// later claim round (dead letters this process wrote meanwhile are not listed twice).
    fn load_once(&self, connection: &mut Link, state: &mut State) {
        if state.loaded {
            return;
        }
        match self
            .register(connection)
            .and_then(|()| self.load(connection, state))
        {
            Ok(()) => state.loaded = true,
            Err(e) => {
                self.note_error(format!("the fleet's registry and dead letters: {e}"));
            }
        }
    }

    /// Runs `work` for `webhook` on a cluster, where a failure is the webhook's slot's alone
    /// (its primary down and not replaced): noted, the webhook's calls wait out a backoff
    /// (100 ms doubling to 5 s) while every other webhook goes on, and its first call after
    /// that prepares the slot again (a primary back after a restart has neither the consumer
    /// group nor the scripts). None: not run, or failed.
    fn on_slot<T>(
        &self,
        connection: &mut Link,
        state: &mut State,
        webhook: &str,
        work: impl FnOnce(&Self, &mut Link, &mut State) -> redis::RedisResult<T>,
    ) -> Option<T> {
        let result = match state.down.get(webhook) {
            Some(down) if Instant::now() < down.retry_at => return None,
            Some(_) => self
                .prepare(connection, webhook)
                .and_then(|()| work(self, connection, state)),
            None => work(self, connection, state),
        };
        match result {
            Ok(value) => {
                state.down.remove(webhook);
                Some(value)
            }
            Err(e) => {
                state.down.entry(webhook.to_owned()).or_default().failed();
                self.note_error(format!("webhook {webhook}: {e}"));
                None
            }
        }
    }

    /// Runs `work` for `webhook`: on a single node a failure is the store's, on a cluster the
    /// slot's (see [`RedisStore::on_slot`]; None then).
    fn per_slot<T>(
        &self,
        connection: &mut Link,
        state: &mut State,
        webhook: &str,
        work: impl FnOnce(&Self, &mut Link, &mut State) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<Option<T>> {
        match self.client.is_cluster() {
            true => Ok(self.on_slot(connection, state, webhook, work)),
            false => work(self, connection, state).map(Some),
        }
    }

    /// Notes `what` failed as `stats.outbox.last_error` (`Redis: …`), and returns that text:
    /// the store's connection failing, or one slot of a cluster (which leaves the connection
    /// and the other slots up).
    fn note_error(&self, what: impl std::fmt::Display) -> String {
        let reason = format!("Redis: {what}");
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
        reason
    }

    fn create_group(&self, connection: &mut Link, webhook: &str) -> redis::RedisResult<()> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.stream(webhook))
            .arg(GROUP)
            // Only entries added from now on are new: any entry of a stream that had no group
            // was left by a write that failed, and is written again with its batch.
            .arg("$")
            .arg("MKSTREAM")
            .query(connection);
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Refreshes what this process holds, so no other process takes it over while it lives.
    fn renew(&self, connection: &mut Link, state: &mut State) -> redis::RedisResult<()> {
        let now = now_ms();
        let mut pipes: Slots<redis::Pipeline> = self.slots();
        let mut entries: HashMap<&str, Vec<&str>> = HashMap::new();
        for (id, handle) in &state.handles {
            match &handle.place {
                Place::Stream(entry) => entries.entry(&handle.webhook).or_default().push(entry),
                Place::Retry { due_ms } => {
                    pipes
                        .of(&handle.webhook)
                        .cmd("ZADD")
                        .arg(self.retry_set(&handle.webhook))
                        .arg("XX")
                        .arg((*due_ms).max(now) + self.lease_ms())
                        .arg(id.to_string())
                        .ignore();
                }
            }
        }
        for (webhook, entries) in entries {
            for chunk in entries.chunks(1000) {
                pipes
                    .of(webhook)
                    .cmd("XCLAIM")
                    .arg(self.stream(webhook))
                    .arg(GROUP)
                    .arg(&self.consumer)
                    .arg(0)
                    .arg(chunk)
                    .arg("JUSTID")
                    .ignore();
            }
        }
        for (webhook, pipe) in pipes.into_tagged() {
            self.per_slot(connection, state, &webhook, |_, connection, _| {
                run(pipe, connection)
            })?;
        }
        Ok(())
    }

    /// On a cluster a failure of a call on fleet-wide keys (the heartbeat, the dead-letter
    /// streams) is noted and the round goes on: the node holding them may be down while the
    /// webhooks' own slots are up. On a single node it is the store's.
    fn fleet_call(&self, result: redis::RedisResult<()>) -> redis::RedisResult<()> {
        match (result, self.client.is_cluster()) {
            (Err(e), true) => {
                self.note_error(e);
                Ok(())
            }
            (result, _) => result,
        }
    }

    /// Takes over, for `webhook`, up to `room` deliveries: stream entries idle longer than
    /// `claim_after`, then retries free to take.
    fn take_over(
        &self,
        connection: &mut Link,
        state: &mut State,
        webhook: &str,
        room: usize,
    ) -> redis::RedisResult<Vec<Resumed>> {
        let mut taken = Vec::new();
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(self.stream(webhook))
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(self.lease_ms())
            .arg("0-0")
            .arg("COUNT")
            .arg(room.min(1000))
            .query(connection)?;
        for entry in items(item(&reply, 1)) {
            let Some(entry_id) = text(item(entry, 0)) else {
                continue;
            };
            let record = field(entry, "d").and_then(|r| serde_json::from_slice::<Record>(r).ok());
            self.adopt(state, webhook, Place::Stream(entry_id), record, &mut taken);
        }
        let room = room.saturating_sub(taken.len());
        if room > 0 {
            let reply: Value = redis::cmd("EVALSHA")
                .arg(scripts::TAKE_DUE.sha())
                .arg(2)
                .arg(self.retry_set(webhook))
                .arg(self.records(webhook))
                .arg(now_ms())
                .arg(self.lease_ms())
                .arg(room)
                .query(connection)?;
            for pair in items(&reply).chunks(2) {
                let record = bytes(&pair[1]).and_then(|r| serde_json::from_slice::<Record>(r).ok());
                let due_ms = record.as_ref().map_or(0, |r| r.due_ms);
                self.adopt(state, webhook, Place::Retry { due_ms }, record, &mut taken);
            }
        }
        Ok(taken)
    }

    /// Holds a delivery taken over (unless this process holds it already).
    fn adopt(
        &self,
        state: &mut State,
        webhook: &str,
        place: Place,
        record: Option<Record>,
        out: &mut Vec<Resumed>,
    ) {
        let Some(mut record) = record else { return };
        if state.handles.contains_key(&record.id) {
            return;
        }
        record.webhook = webhook.to_owned();
        let handle = Held {
            webhook: webhook.to_owned(),
            place,
        };
        state.handles.insert(record.id, handle);
        out.push(record.resumed());
    }
}

impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn write(&self, plan: &Plan) -> Result<(), Unwritten> {
        let Some(mut state) = lock_until(&self.state, self.deadline()) else {
            return Err(String::from("Redis: busy past the close deadline").into());
        };
        let left = self.with_connection(&mut state, |store, connection, state| {
            store.write_plan(plan, connection, state)
        })?;
        match left {
            None => Ok(()),
            Some(left) => Err(Unwritten {
                message: self.last_error().unwrap_or_default(),
                only: Some(left),
            }),
        }
    }

    fn release(&self) {
        drop(self.tenant.lock().unwrap_or_else(|e| e.into_inner()).take());
        let Some(mut state) = lock_until(&self.state, self.deadline()) else {
            log::warn!("Redis was busy past the close deadline: what this process holds is taken over by another after claim_after");
            return;
        };
        if state.released {
            return; // released already (an engine closed twice: at exit, then by its last user)
        }
        let state = &mut *state;
        let now = now_ms();
        let handed_back = self.with_connection(state, |store, connection, state| {
            let mut pipes: Slots<redis::Pipeline> = store.slots();
            for (id, handle) in state.handles.drain() {
                let webhook = &handle.webhook;
                let pipe = pipes.of(webhook);
                match handle.place {
                    Place::Stream(entry) => {
                        pipe.cmd("EVALSHA")
                            .arg(scripts::HAND_BACK.sha())
                            .arg(3)
                            .arg(store.stream(webhook))
                            .arg(store.retry_set(webhook))
                            .arg(store.records(webhook))
                            .arg(GROUP)
                            .arg(entry)
                            .arg(id.to_string())
                            .arg(now)
                            .ignore();
                    }
                    Place::Retry { .. } => {
                        pipe.cmd("ZADD")
                            .arg(store.retry_set(webhook))
                            .arg("XX")
                            .arg(now)
                            .arg(id.to_string())
                            .ignore();
                    }
                }
            }
            for id in store.ids.iter().chain(&state.orphans) {
                pipes
                    .of(id)
                    .cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(store.stream(id))
                    .arg(GROUP)
                    .arg(&store.consumer)
                    .ignore();
            }
            let mut unreached = Vec::new();
            for (webhook, pipe) in pipes.into_tagged() {
                let hand_back = |store: &Self, connection: &mut Link, _: &mut State| {
                    store.time_calls(connection, pipe.len())?;
                    run(pipe, connection)
                };
                if store.per_slot(connection, state, &webhook, hand_back)?.is_none() {
                    unreached.push(webhook);
                }
            }
            match unreached.is_empty() {
                true => Ok(()),
                false => Err((
                    redis::ErrorKind::Io,
                    "slots unreachable",
                    format!("webhooks {}", unreached.join(", ")),
                )
                    .into()),
            }
        });
        // What the close says of Redis is whether it took the hand-back, whatever an earlier
        // call met (a claim round that timed out left it false: a clean close is no outage).
        self.connected.store(handed_back.is_ok(), Relaxed);
        if let Err(e) = handed_back {
            log::warn!("could not hand pending deliveries back at close ({e}); another process takes them over after claim_after");
        }
        state.connection = None;
        state.released = true;
    }

    fn close_by(&self, deadline: Instant) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
    }

    fn ready(&self) -> bool {
        // A slow Redis may hold the state: then a write is under way, and one more may queue.
        self.state.try_lock().map_or(true, |state| {
            state.connection.is_some() || Instant::now() >= state.backoff.retry_at
        })
    }

    fn connected(&self) -> bool {
        self.connected.load(Relaxed)
    }

    fn last_error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn take_dead(&self, ids: &[Uuid]) -> Vec<bool> {
        let mut state = self.state();
        self.take_dead_letters(&mut state, ids)
    }

    fn claim_due(&self) -> bool {
        // A busy state (a call in flight) means a round runs or will: nothing to add now.
        self.state
            .try_lock()
            .is_ok_and(|state| !state.released && Instant::now() >= state.next_claim)
    }

    fn claim(&self, room: &[usize]) -> Claimed {
        let mut state = self.state();
        let state = &mut *state;
        let now = Instant::now();
        if now < state.next_claim {
            return Claimed::default();
        }
        state.next_claim = now + self.claim_interval;
        let mut resumed = std::mem::take(&mut state.adopted);
        let result = self.with_connection(state, |store, connection, state| {
            if Instant::now() >= state.next_renewal {
                store.renew(connection, state)?;
                store.fleet_call(store.heartbeat(connection, state))?;
                state.next_renewal = Instant::now() + store.claim_after / 3;
            }
            let rooms = store.ids.iter().zip(room.iter().copied());
            // Deliveries of webhooks no replica has loaded for `orphan_after` go to dead
            // letters (by the engine); until then they wait for a config that has them.
            let expired = state.expired.clone();
            for (webhook, room) in rooms.chain(expired.iter().map(|w| (w, 1000))) {
                if room > 0 {
                    let take = |store: &Self, connection: &mut Link, state: &mut State| {
                        store.take_over(connection, state, webhook, room)
                    };
                    resumed.extend(
                        store
                            .per_slot(connection, state, webhook, take)?
                            .unwrap_or_default(),
                    );
                }
            }
            store.load_once(connection, state);
            store.fleet_call(store.follow_dead(connection, state))
        });
        let dead = std::mem::take(&mut state.dead);
        let gone = std::mem::take(&mut state.gone);
        // Connected once a claim round succeeds: the dead letters are read by then (a cluster's
        // slots down are told in last_error, until each is back).
        self.connected.store(result.is_ok(), Relaxed);
        if result.is_ok() && state.down.is_empty() && state.loaded {
            *self.error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        if result.is_err() {
            // What was taken before the failure is held; it is handed over all the same.
            state.next_claim = state.backoff.retry_at.max(state.next_claim);
        }
        Claimed { resumed, dead, gone }
    }
}

/// Runs `pipe` unless it is empty.
fn run(pipe: redis::Pipeline, connection: &mut Link) -> redis::RedisResult<()> {
    match pipe.is_empty() {
        true => Ok(()),
        false => pipe.query(connection),
    }
}
