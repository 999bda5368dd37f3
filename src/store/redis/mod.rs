//! The Redis outbox, for a gateway fleet: every process with the same `url` and `key` shares
//! it, and a delivery left by a process that died is delivered by another.
//!
//! Layout, per webhook id `W` under `key` `K`:
//! - `K:W:stream`, a stream with the consumer group `webhook-notification`: a new delivery is
//!   added and read into the adding process's pending list in one script, so it is delivered
//!   where it was admitted (no round trip before the first attempt) and is owned from the
//!   start. Each process is one consumer; an entry idle longer than `claim_after` (its
//!   owner died: a live owner refreshes what it holds) is taken over with XAUTOCLAIM.
//! - `K:W:retry`, a sorted set of delivery ids waiting to retry, scored by the time from
//!   which any process may take them (the due time plus `claim_after` while an owner holds
//!   them, renewed while it lives; the close time once handed back at close), with the
//!   records (attempts and due time included) in the hash `K:W:records`. A process that
//!   takes one keeps it until its due time.
//! - `K:dead`, a stream of dead letters shared by the fleet.
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

use redis::{Connection, Value};
use uuid::Uuid;

mod replies;
mod scripts;
mod state;

use replies::{bytes, field, item, items, text};
use scripts::{ADD, HAND_BACK, TAKE_DUE};
use state::{Held, Place, State};

use crate::config::{valid_id, RedisTls};
use crate::store::{lock_until, now_ms, Claimed, DeadRecord, LastChange, Plan, Record, Resumed, Store};

/// The consumer group of every delivery stream.
const GROUP: &str = "webhook-notification";
/// How often this process looks for deliveries to take over.
const CLAIM_INTERVAL: Duration = Duration::from_millis(100);
/// How often this process follows the fleet's dead-letter stream (see `sync_dead`).
const DEAD_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// How long connecting may take, and each call (less once close has a deadline).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// New deliveries per script call (a script blocks the server while it runs).
const ADD_CHUNK: usize = 500;

/// The Redis store of a fleet's outbox.
pub(crate) struct RedisStore {
    client: redis::Client,
    key: String,
    /// This process's consumer name: unique per engine.
    consumer: String,
    /// Webhook ids in config order.
    ids: Vec<String>,
    claim_after: Duration,
    dead_capacity: usize,
    connected: AtomicBool,
    /// Set at close: every Redis call returns by then.
    deadline: Mutex<Option<Instant>>,
    /// The latest connection error, until a claim round succeeds (kept apart from `state`,
    /// which a slow Redis may hold, so that stats never wait).
    error: Mutex<Option<String>>,
    state: Mutex<State>,
}

impl RedisStore {
    /// A store on the Redis at `url` under `key` (nothing is contacted yet: the committer
    /// connects, and reconnects, in the background). The error is for `outbox.url`.
    pub fn connect(
        url: &str,
        tls: Option<&RedisTls>,
        key: &str,
        claim_after: Duration,
        ids: Vec<String>,
        dead_capacity: usize,
    ) -> Result<Self, String> {
        let client = match tls {
            None => redis::Client::open(url),
            Some(tls) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: tls.client.as_ref().map(|(cert, key)| redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
                    root_cert: tls.ca.clone(),
                },
            ),
        }
        .map_err(|_| "is not a valid Redis URL (redis://, rediss:// or redis+unix://)".to_owned())?;
        let now = Instant::now();
        Ok(RedisStore {
            client,
            key: key.to_owned(),
            consumer: format!("{}-{:08x}", std::process::id(), fastrand::u32(..)),
            ids,
            claim_after,
            dead_capacity,
            connected: AtomicBool::new(false),
            deadline: Mutex::default(),
            error: Mutex::default(),
            state: Mutex::new(State {
                connection: None,
                scripts: Default::default(),
                retry_at: now,
                failures: 0,
                handles: HashMap::new(),
                dead_handles: HashMap::new(),
                loaded: false,
                dead: Vec::new(),
                gone: Vec::new(),
                dead_seen: None,
                next_dead_sync: now,
                orphans: Vec::new(),
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

    /// Sets the socket timeouts for a call that reads `replies` replies: 5 s each, or an equal
    /// share of what is left before the close deadline — the client waits for every reply of a
    /// pipeline in turn, timed out or not, so a frozen server would otherwise hold a pipeline of
    /// n commands for n timeouts.
    fn time_calls(&self, connection: &mut Connection, replies: usize) -> redis::RedisResult<()> {
        let share = self.call_timeout(IO_TIMEOUT)? / (replies.max(1) as u32);
        let share = share.max(Duration::from_millis(1));
        connection.set_read_timeout(Some(share))?;
        connection.set_write_timeout(Some(share))
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

    fn stream(&self, webhook: &str) -> String {
        format!("{}:{webhook}:stream", self.key)
    }

    fn retry_set(&self, webhook: &str) -> String {
        format!("{}:{webhook}:retry", self.key)
    }

    fn records(&self, webhook: &str) -> String {
        format!("{}:{webhook}:records", self.key)
    }

    fn dead_stream(&self) -> String {
        format!("{}:dead", self.key)
    }

    fn lease_ms(&self) -> u64 {
        self.claim_after.as_millis() as u64
    }

    /// Runs `work` on the connection (connecting first, unless backing off); a failure drops
    /// the connection, so the next call reconnects.
    fn with_connection<T>(
        &self,
        state: &mut State,
        work: impl FnOnce(&Self, &mut Connection, &mut State) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let mut connection = match state.connection.take() {
            _ if state.released => return Err("the outbox is closed".into()),
            Some(connection) => connection,
            // At close (a deadline is set) one more try is worth it whatever the backoff.
            None if Instant::now() < state.retry_at && self.deadline().is_none() => {
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
                state.failures = 0;
                Ok(value)
            }
            Err(e) => Err(self.went_down(state, e)),
        }
    }

    /// Notes a failure: not connected, next attempt after a backoff (100 ms doubling to 5 s).
    fn went_down(&self, state: &mut State, error: redis::RedisError) -> String {
        state.failures = state.failures.saturating_add(1);
        let backoff = Duration::from_millis(100 << state.failures.min(6)).min(Duration::from_secs(5));
        state.retry_at = Instant::now() + backoff;
        let reason = format!("Redis: {error}");
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
        self.connected.store(false, Relaxed);
        reason
    }

    /// Connects, creates the consumer groups and loads the scripts.
    fn open(&self, state: &mut State) -> redis::RedisResult<Connection> {
        let timeout = self.call_timeout(CONNECT_TIMEOUT)?;
        let mut connection = self.client.get_connection_with_timeout(timeout)?;
        self.time_calls(&mut connection, 1)?;
        for id in &self.ids {
            self.create_group(&mut connection, id)?;
        }
        for (slot, source) in state.scripts.iter_mut().zip([ADD, TAKE_DUE, HAND_BACK]) {
            *slot = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(source)
                .query(&mut connection)?;
        }
        if !state.loaded {
            // Before this process writes anything, so what it reads is not its own.
            state.dead = self.load(&mut connection, state)?;
            state.loaded = true;
        }
        Ok(connection)
    }

    fn create_group(&self, connection: &mut Connection, webhook: &str) -> redis::RedisResult<()> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.stream(webhook))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query(connection);
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
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

    /// Reads the fleet's dead letters (the newest `dead_capacity`, oldest first) and finds
    /// the streams of webhook ids this config no longer has.
    fn load(&self, connection: &mut Connection, state: &mut State) -> redis::RedisResult<Vec<DeadRecord>> {
        let mut dead = Vec::new();
        for (entry_id, record) in self.read_dead(connection)? {
            state.dead_handles.insert(record.id, entry_id);
            dead.push(record);
        }
        let pattern = format!("{}:*:stream", self.key);
        let streams: Vec<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter(connection)?
            .collect::<redis::RedisResult<_>>()?;
        let prefix = format!("{}:", self.key);
        state.orphans = streams
            .iter()
            .filter_map(|s| s.strip_prefix(&prefix)?.strip_suffix(":stream"))
            // Only this fleet's exact layout: `K:staging:w1:stream` is fleet `K:staging`'s, and
            // no webhook id holds a `:`.
            .filter(|id| valid_id(id) && !self.ids.iter().any(|known| known == id))
            .map(str::to_owned)
            .collect();
        for id in state.orphans.clone() {
            self.create_group(connection, &id)?;
        }
        Ok(dead)
    }

    /// The newest `dead_capacity` entries of the dead-letter stream, oldest first, with their
    /// entry ids.
    fn read_dead(&self, connection: &mut Connection) -> redis::RedisResult<Vec<(String, DeadRecord)>> {
        let newest: Value = redis::cmd("XREVRANGE")
            .arg(self.dead_stream())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(self.dead_capacity.max(1))
            .query(connection)?;
        Ok(items(&newest)
            .iter()
            .rev()
            .filter_map(|entry| {
                let record = serde_json::from_slice::<DeadRecord>(field(entry, "d")?).ok()?;
                Some((text(item(entry, 0))?, record))
            })
            .collect())
    }

    /// Follows the fleet's dead-letter stream: letters another process replayed or evicted
    /// are forgotten here, letters others added are listed here. The stream is read again only
    /// when it changed (its length, first or last entry), so an idle fleet costs one small
    /// pipeline per `DEAD_SYNC_INTERVAL`.
    fn sync_dead(&self, connection: &mut Connection, state: &mut State) -> redis::RedisResult<()> {
        let (length, first, last): (u64, Value, Value) = redis::pipe()
            .cmd("XLEN")
            .arg(self.dead_stream())
            .cmd("XRANGE")
            .arg(self.dead_stream())
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .cmd("XREVRANGE")
            .arg(self.dead_stream())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(connection)?;
        let entry_id = |reply: &Value| items(reply).first().and_then(|entry| text(item(entry, 0)));
        let seen = Some((length, entry_id(&first), entry_id(&last)));
        if state.dead_seen == seen {
            return Ok(());
        }
        let stream = self.read_dead(connection)?;
        let present: std::collections::HashSet<Uuid> = stream.iter().map(|(_, r)| r.id).collect();
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
        for (entry_id, record) in stream {
            if let std::collections::hash_map::Entry::Vacant(slot) = state.dead_handles.entry(record.id) {
                slot.insert(entry_id);
                state.dead.push(record);
            }
        }
        state.dead_seen = seen;
        Ok(())
    }

    /// Refreshes what this process holds, so no other process takes it over while it lives.
    fn renew(&self, connection: &mut Connection, state: &State) -> redis::RedisResult<()> {
        let now = now_ms();
        let mut pipe = redis::pipe();
        let mut entries: HashMap<&str, Vec<&str>> = HashMap::new();
        for (id, handle) in &state.handles {
            match &handle.place {
                Place::Stream(entry) => entries.entry(&handle.webhook).or_default().push(entry),
                Place::Retry { due_ms } => {
                    pipe.cmd("ZADD")
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
                pipe.cmd("XCLAIM")
                    .arg(self.stream(webhook))
                    .arg(GROUP)
                    .arg(&self.consumer)
                    .arg(0)
                    .arg(chunk)
                    .arg("JUSTID")
                    .ignore();
            }
        }
        run(pipe, connection)
    }

    /// Takes over, for `webhook`, up to `room` deliveries: stream entries idle longer than
    /// `claim_after`, then retries free to take.
    fn take_over(
        &self,
        connection: &mut Connection,
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
                .arg(&state.scripts[1])
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

/// A reply of the pipeline that changes what this process holds.
enum AwaitedReply {
    /// An ADD script's reply, for the webhook.
    Added(String),
    /// The dead-letter XADD of a delivery id.
    Dead(Uuid),
}

impl RedisStore {
    /// Queues the commands of `plan` on `pipe` (what a delivery replaces is forgotten first);
    /// returns what the replies that are not ignored mean.
    fn commands(&self, plan: &Plan, state: &State, pipe: &mut redis::Pipeline) -> Vec<AwaitedReply> {
        let mut expect = Vec::new();
        let mut adds: HashMap<usize, Vec<(Uuid, &[u8])>> = HashMap::new();
        for (id, last) in &plan.deliveries {
            if let Some(handle) = state.handles.get(id) {
                self.forget(pipe, *id, handle);
            }
            match last {
                LastChange::Put {
                    webhook,
                    new: true,
                    value,
                    ..
                } => adds.entry(*webhook).or_default().push((*id, value)),
                LastChange::Put {
                    webhook,
                    due_ms,
                    value,
                    ..
                } => {
                    let webhook = &self.ids[*webhook];
                    pipe.cmd("HSET")
                        .arg(self.records(webhook))
                        .arg(id.to_string())
                        .arg(*value)
                        .ignore();
                    let free_at = due_ms + self.lease_ms();
                    pipe.cmd("ZADD")
                        .arg(self.retry_set(webhook))
                        .arg(free_at)
                        .arg(id.to_string())
                        .ignore();
                }
                LastChange::Delete => {}
            }
        }
        for (webhook, records) in &adds {
            let webhook = &self.ids[*webhook];
            for chunk in records.chunks(ADD_CHUNK) {
                let command = pipe
                    .cmd("EVALSHA")
                    .arg(&state.scripts[0])
                    .arg(1)
                    .arg(self.stream(webhook));
                command.arg(GROUP).arg(&self.consumer).arg(chunk.len());
                for (id, _) in chunk {
                    command.arg(id.to_string());
                }
                for (_, value) in chunk {
                    command.arg(*value);
                }
                expect.push(AwaitedReply::Added(webhook.clone()));
            }
        }
        for (id, value) in &plan.dead {
            match (value, state.dead_handles.get(id)) {
                (Some(value), _) => {
                    // Trimmed to about one replica's capacity: every replica adds to the fleet's
                    // stream, which would otherwise hold replicas × dead_letter_capacity.
                    pipe.cmd("XADD")
                        .arg(self.dead_stream())
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(self.dead_capacity.max(1))
                        .arg("*")
                        .arg("d")
                        .arg(*value);
                    expect.push(AwaitedReply::Dead(*id));
                }
                (None, Some(entry)) => {
                    pipe.cmd("XDEL").arg(self.dead_stream()).arg(entry).ignore();
                }
                (None, None) => {}
            }
        }
        expect
    }

    /// Records where what `plan` wrote now is, from the pipeline's `replies`.
    fn written(&self, plan: &Plan, expect: Vec<AwaitedReply>, replies: Vec<Value>, state: &mut State) {
        for (id, last) in &plan.deliveries {
            state.handles.remove(id);
            if let LastChange::Put {
                webhook,
                new: false,
                due_ms,
                ..
            } = last
            {
                let place = Place::Retry { due_ms: *due_ms };
                state.handles.insert(
                    *id,
                    Held {
                        webhook: self.ids[*webhook].clone(),
                        place,
                    },
                );
            }
        }
        for (id, value) in &plan.dead {
            if value.is_none() {
                state.dead_handles.remove(id);
            }
        }
        for (expected, reply) in expect.into_iter().zip(replies) {
            match expected {
                AwaitedReply::Added(webhook) => {
                    for entry in items(&reply) {
                        let (Some(entry_id), Some(id)) = (text(item(entry, 0)), text(item(entry, 1))) else {
                            continue;
                        };
                        let Ok(id) = id.parse::<Uuid>() else { continue };
                        let place = Place::Stream(entry_id);
                        match bytes(item(entry, 2)) {
                            // Its own new delivery.
                            None => {
                                let handle = Held {
                                    webhook: webhook.clone(),
                                    place,
                                };
                                state.handles.insert(id, handle);
                            }
                            // An older unread entry the script read with them: taken over.
                            Some(record) => {
                                let record = serde_json::from_slice::<Record>(record).ok();
                                let mut adopted = std::mem::take(&mut state.adopted);
                                self.adopt(state, &webhook, place, record, &mut adopted);
                                state.adopted = adopted;
                            }
                        }
                    }
                }
                AwaitedReply::Dead(id) => {
                    if let Some(entry) = text(&reply) {
                        state.dead_handles.insert(id, entry);
                    }
                }
            }
        }
    }
}

impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn write(&self, plan: &Plan) -> Result<(), String> {
        let Some(mut state) = lock_until(&self.state, self.deadline()) else {
            return Err("Redis: busy past the close deadline".into());
        };
        let state = &mut *state;
        self.with_connection(state, |store, connection, state| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            let expect = store.commands(plan, state, &mut pipe);
            let replies: Vec<Value> = match pipe.is_empty() {
                true => Vec::new(),
                false => {
                    // MULTI and EXEC are read too.
                    store.time_calls(connection, pipe.len() + 2)?;
                    pipe.query(connection)?
                }
            };
            store.written(plan, expect, replies, state);
            Ok(())
        })
    }

    fn release(&self) {
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
            let mut pipe = redis::pipe();
            for (id, handle) in state.handles.drain() {
                let webhook = &handle.webhook;
                match handle.place {
                    Place::Stream(entry) => {
                        pipe.cmd("EVALSHA")
                            .arg(&state.scripts[2])
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
                pipe.cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(store.stream(id))
                    .arg(GROUP)
                    .arg(&store.consumer)
                    .ignore();
            }
            store.time_calls(connection, pipe.len())?;
            run(pipe, connection)
        });
        if let Err(e) = handed_back {
            log::warn!("could not hand pending deliveries back at close ({e}); another process takes them over after claim_after");
        }
        state.connection = None;
        state.released = true;
        self.connected.store(false, Relaxed);
    }

    fn close_by(&self, deadline: Instant) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
    }

    fn ready(&self) -> bool {
        // A slow Redis may hold the state: then a write is under way, and one more may queue.
        self.state.try_lock().map_or(true, |state| {
            state.connection.is_some() || Instant::now() >= state.retry_at
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
        let state = &mut *state;
        let entries: Vec<Option<String>> = ids.iter().map(|id| state.dead_handles.get(id).cloned()).collect();
        let taken = self.with_connection(state, |store, connection, _| {
            let mut pipe = redis::pipe();
            for entry in entries.iter().flatten() {
                pipe.cmd("XDEL").arg(store.dead_stream()).arg(entry);
            }
            let deleted: Vec<u64> = match pipe.is_empty() {
                true => Vec::new(),
                false => pipe.query(connection)?,
            };
            Ok(deleted)
        });
        let Ok(deleted) = taken else {
            return vec![true; ids.len()];
        };
        let mut deleted = deleted.into_iter();
        let mut still_there = Vec::with_capacity(ids.len());
        for (id, entry) in ids.iter().zip(&entries) {
            // A letter not in the stream yet is this process's own, not yet written.
            still_there.push(entry.is_none() || deleted.next() == Some(1));
            state.dead_handles.remove(id);
        }
        still_there
    }

    fn claim(&self, room: &[usize]) -> Claimed {
        let mut state = self.state();
        let state = &mut *state;
        let now = Instant::now();
        if now < state.next_claim {
            return Claimed::default();
        }
        state.next_claim = now + CLAIM_INTERVAL;
        let mut resumed = std::mem::take(&mut state.adopted);
        let result = self.with_connection(state, |store, connection, state| {
            if Instant::now() >= state.next_renewal {
                store.renew(connection, state)?;
                state.next_renewal = Instant::now() + store.claim_after / 3;
            }
            for (index, webhook) in store.ids.iter().enumerate() {
                if room[index] > 0 {
                    resumed.extend(store.take_over(connection, state, webhook, room[index])?);
                }
            }
            // Deliveries of webhooks no longer configured go to dead letters (by the engine).
            for webhook in state.orphans.clone() {
                resumed.extend(store.take_over(connection, state, &webhook, 1000)?);
            }
            if Instant::now() >= state.next_dead_sync {
                store.sync_dead(connection, state)?;
                state.next_dead_sync = Instant::now() + DEAD_SYNC_INTERVAL;
            }
            Ok(())
        });
        let dead = std::mem::take(&mut state.dead);
        let gone = std::mem::take(&mut state.gone);
        // Connected once a claim round succeeds: the dead letters are read by then.
        self.connected.store(result.is_ok(), Relaxed);
        if result.is_ok() {
            *self.error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        if result.is_err() {
            // What was taken before the failure is held; it is handed over all the same.
            state.next_claim = state.retry_at.max(state.next_claim);
        }
        Claimed { resumed, dead, gone }
    }
}

/// Runs `pipe` unless it is empty.
fn run(pipe: redis::Pipeline, connection: &mut Connection) -> redis::RedisResult<()> {
    match pipe.is_empty() {
        true => Ok(()),
        false => pipe.query(connection),
    }
}
