//! The Lua scripts of the Redis store: each runs atomically on the server, so what it does to
//! a webhook's stream, retry set and records is never seen half done by another replica.

/// Adds records to a stream and reads them into this consumer's pending list, atomically.
/// ARGV: group, consumer, n, n delivery ids, n records. Returns `{entry, id}` for its own
/// records and `{entry, id, record}` for any older unread entry it had to take with them.
pub(super) const ADD: &str = r"
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
";

/// Takes up to ARGV[3] retries whose score is at most ARGV[1] (now), leasing each for ARGV[2]
/// ms. Returns `id, record, …`.
pub(super) const TAKE_DUE: &str = r"
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
";

/// Hands a held stream entry back at close: its record waits in the retry set, free to take.
/// KEYS: stream, retry, records; ARGV: group, entry, id, now.
pub(super) const HAND_BACK: &str = r"
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if entry[1] then
  redis.call('HSET', KEYS[3], ARGV[3], entry[1][2][4])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
";

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
