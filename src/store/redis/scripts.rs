//! The Lua scripts of the Redis store: each runs atomically on the server, so what it does to
//! a webhook's stream, retry set and records is never seen half done by another replica.
//! Each is called by its SHA1 (EVALSHA), computed here by `redis::Script`; a node that lacks
//! it (it was down when this process connected, or restarted empty) answers NOSCRIPT, and the
//! slot's next attempt loads the scripts on that node (see `RedisStore::on_slot`).

use std::sync::OnceLock;

/// A Lua script and its SHA1.
pub(super) struct Lua {
    source: &'static str,
    sha: OnceLock<String>,
}

impl Lua {
    const fn new(source: &'static str) -> Self {
        Lua {
            source,
            sha: OnceLock::new(),
        }
    }

    /// The SHA1 that EVALSHA names it by.
    pub(super) fn sha(&self) -> &str {
        self.sha
            .get_or_init(|| redis::Script::new(self.source).get_hash().to_owned())
    }

    /// `SCRIPT LOAD` of it.
    pub(super) fn load(&self) -> redis::Cmd {
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(self.source);
        load
    }
}

/// The scripts a store calls by SHA1, loaded on every primary it uses (a function: a
/// constant may not refer to statics that cache their SHA1).
pub(super) fn all() -> [&'static Lua; 5] {
    [&ADD, &TAKE_DUE, &HAND_BACK, &MERGE_DIGEST, &TAKE_DIGEST]
}

/// Adds records to a stream and reads them into this consumer's pending list, atomically.
/// A stream that is gone (Redis flushed or restarted empty) fails the call before anything is
/// written, so no entry is left without a consumer group: the committer reconnects, creates
/// the group and writes the batch again.
/// ARGV: group, consumer, n, n delivery ids, n records. Returns `{entry, id}` for its own
/// records and `{entry, id, record}` for any older unread entry it had to take with them.
pub(super) static ADD: Lua = Lua::new(
    r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOGROUP the stream and its consumer group are gone (Redis lost its data)')
end
local n = tonumber(ARGV[3])
local ours = {}
for i = 1, n do
  ours[ARGV[3 + i]] = true
  redis.call('XADD', KEYS[1], '*', 'id', ARGV[3 + i], 'd', ARGV[3 + n + i])
end
local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', n + 10000, 'STREAMS', KEYS[1], '>')
local out = {}
if read then
  for _, entry in ipairs(read[1][2]) do
    local f = entry[2]
    if ours[f[2]] then out[#out + 1] = {entry[1], f[2]} else out[#out + 1] = {entry[1], f[2], f[4]} end
  end
end
return out
",
);

/// Takes up to ARGV[3] retries whose score is at most ARGV[1] (now), leasing each for ARGV[2]
/// ms. Returns `id, record, …`.
pub(super) static TAKE_DUE: Lua = Lua::new(
    r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local record = redis.call('HGET', KEYS[2], id)
  if record then
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
    out[#out + 1] = id
    out[#out + 1] = record
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
",
);

/// Hands a held stream entry back at close: its record waits in the retry set, free to take.
/// KEYS: stream, retry, records; ARGV: group, entry, id, now.
pub(super) static HAND_BACK: Lua = Lua::new(
    r"
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if entry[1] then
  redis.call('HSET', KEYS[3], ARGV[3], entry[1][2][4])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
",
);

/// Takes over one webhook's deliveries left in the v2 layout (keys without a hash tag) into
/// its v3 keys, with their delivery ids, attempts and due times: stream entries become
/// retries free to take now, retries keep their scores. Single node only (v2 never ran on a
/// cluster). KEYS: v2 stream, retry, records; v3 retry, records. ARGV: now. Returns how many.
pub(super) const UPGRADE: &str = r"
local moved = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
    local f = entry[2]
    redis.call('HSET', KEYS[5], f[2], f[4])
    redis.call('ZADD', KEYS[4], 'NX', ARGV[1], f[2])
    moved = moved + 1
  end
end
local retry = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #retry, 2 do
  local record = redis.call('HGET', KEYS[3], retry[i])
  if record then
    redis.call('HSET', KEYS[5], retry[i], record)
    redis.call('ZADD', KEYS[4], retry[i + 1], retry[i])
    moved = moved + 1
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return moved
";

/// Moves the v2 fleet-wide dead-letter stream into each letter's webhook stream
/// (`K:{W}:dead`) and registers the webhook. Single node only. KEYS: the v2 stream. ARGV: `K`.
/// Returns how many letters moved.
pub(super) const UPGRADE_DEAD: &str = r"
local moved = 0
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  local ok, record = pcall(cjson.decode, entry[2][2])
  local webhook = ok and type(record) == 'table' and record.webhook
  if type(webhook) == 'string' then
    redis.call('XADD', ARGV[1] .. ':{' .. webhook .. '}:dead', '*', 'd', entry[2][2])
    redis.call('SADD', ARGV[1] .. ':webhooks', webhook)
    moved = moved + 1
  end
end
redis.call('DEL', KEYS[1])
return moved
";

/// Adds one replica's counts of a digest group to the fleet's record (created with its
/// group values when new: firing at once without a threshold, its first message due after
/// `group_wait`). Before the group fires (a threshold), counts go to the window's time
/// buckets instead; samples are kept while fewer than `samples` are. The group's keys expire
/// once it has been quiet long enough that no replica still needs them.
/// KEYS: group, samples, window, groups set. ARGV: key, count, first_ms, last_ms, latest,
/// event, values, overflow, now, group_wait, samples, thresholded, ttl, n, n samples, then
/// (bucket, count) pairs.
pub(super) static MERGE_DIGEST: Lua = Lua::new(
    r"
local g = KEYS[1]
local now = tonumber(ARGV[9])
if redis.call('EXISTS', g) == 0 then
  local firing = '1'
  if ARGV[12] == '1' then firing = '0' end
  redis.call('HSET', g, 'values', ARGV[7], 'overflow', ARGV[8], 'count', 0, 'total', 0,
    'firing', firing, 'next_ms', now + tonumber(ARGV[10]))
  redis.call('SADD', KEYS[4], ARGV[1])
end
redis.call('HSET', g, 'latest', ARGV[5], 'event', ARGV[6])
local last = tonumber(redis.call('HGET', g, 'last_ms') or '0')
if tonumber(ARGV[4]) > last then redis.call('HSET', g, 'last_ms', ARGV[4]) end
local n = tonumber(ARGV[14])
if redis.call('HGET', g, 'firing') == '1' then
  redis.call('HINCRBY', g, 'count', ARGV[2])
  local first = redis.call('HGET', g, 'first_ms')
  if not first or tonumber(ARGV[3]) < tonumber(first) then redis.call('HSET', g, 'first_ms', ARGV[3]) end
else
  for i = 15 + n, #ARGV, 2 do redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1]) end
end
local room = tonumber(ARGV[11]) - redis.call('LLEN', KEYS[2])
for i = 1, math.min(n, room) do redis.call('RPUSH', KEYS[2], ARGV[14 + i]) end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[13]) end
return 1
",
);

/// Takes a digest group's merged counts for one message, if this replica wins the group's
/// lease for the interval (`SET lease NX PX interval`); fires a thresholded group whose
/// window holds enough events; closes (and, for formats that resolve, resolves) a group
/// quiet for `resolve_after` unless another replica holds its lease. KEYS: group, samples, window, groups set, lease. ARGV: key,
/// now, interval, resolve_after, threshold count (0: none), window, group_wait, closing,
/// consumer, resolves (1: the format has resolve messages). Returns `{kind, aged, wait_ms}` with kind `wait`, `held` or `gone`, or
/// `{kind, aged, 0, count, total, first_ms, last_ms, latest, event, values, overflow,
/// samples…}` with kind `firing` or `resolved`.
pub(super) static TAKE_DIGEST: Lua = Lua::new(
    r"
local g = KEYS[1]
local now = tonumber(ARGV[2])
if redis.call('EXISTS', g) == 0 then
  redis.call('SREM', KEYS[4], ARGV[1])
  return {'gone', 0, 0}
end
local f = redis.call('HMGET', g, 'firing', 'count', 'next_ms', 'last_ms')
local firing, count = f[1] == '1', tonumber(f[2] or '0')
local next_ms, last = tonumber(f[3] or '0'), tonumber(f[4] or '0')
local aged = 0
if not firing and tonumber(ARGV[5]) > 0 then
  local window = redis.call('HGETALL', KEYS[3])
  local sum, first = 0, nil
  for i = 1, #window, 2 do
    local at, n = tonumber(window[i]), tonumber(window[i + 1])
    if at < now - tonumber(ARGV[6]) then
      aged = aged + n
      redis.call('HDEL', KEYS[3], window[i])
    else
      sum = sum + n
      if not first or at < first then first = at end
    end
  end
  if sum >= tonumber(ARGV[5]) then
    firing, count, next_ms = true, sum, now + tonumber(ARGV[7])
    redis.call('HSET', g, 'firing', '1', 'count', sum, 'first_ms', first, 'next_ms', next_ms)
    redis.call('DEL', KEYS[3])
  end
end
local function message(kind, count, total, first)
  local out = {kind, aged, 0, count, total, first or last, last}
  for _, name in ipairs({'latest', 'event', 'values', 'overflow'}) do
    out[#out + 1] = redis.call('HGET', g, name) or ''
  end
  for _, sample in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do out[#out + 1] = sample end
  return out
end
if firing and count > 0 and (now >= next_ms or ARGV[8] == '1') then
  if not redis.call('SET', KEYS[5], ARGV[9], 'NX', 'PX', ARGV[3]) then
    return {'held', aged, redis.call('PTTL', KEYS[5])}
  end
  local total = redis.call('HINCRBY', g, 'total', count)
  local first = redis.call('HGET', g, 'first_ms')
  local out = message('firing', count, total, first)
  redis.call('HSET', g, 'count', 0, 'next_ms', now + tonumber(ARGV[3]))
  redis.call('HDEL', g, 'first_ms')
  redis.call('DEL', KEYS[2])
  return out
end
if count == 0 and ARGV[8] ~= '1' and now - last >= tonumber(ARGV[4]) then
  -- Quiet: closed by whoever comes first, unless another replica holds the lease (its
  -- message may be undelivered); the holder itself calls only once its message ended.
  local holder = redis.call('GET', KEYS[5])
  if holder and holder ~= ARGV[9] then
    return {'held', aged, redis.call('PTTL', KEYS[5])}
  end
  local out = {'gone', aged, 0}
  if firing and ARGV[10] == '1' then
    out = message('resolved', 0, tonumber(redis.call('HGET', g, 'total') or '0'), nil)
  elseif not firing then
    for _, n in ipairs(redis.call('HVALS', KEYS[3])) do out[2] = out[2] + tonumber(n) end
  end
  redis.call('DEL', g, KEYS[2], KEYS[3], KEYS[5])
  redis.call('SREM', KEYS[4], ARGV[1])
  return out
end
local wait = math.max(next_ms - now, 0)
if count == 0 then wait = math.max(tonumber(ARGV[4]) - (now - last), 0) end
return {'wait', aged, wait}
",
);
