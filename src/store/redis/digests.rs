//! Fleet-wide digests: every replica adds its counts of a digest group to the group's record
//! in Redis (`K:{W}:digest:<group key>`, with `…:samples` and a threshold's `…:window`), and
//! the one replica that wins the group's lease for the interval (`…:lease`, `SET NX PX`)
//! takes the merged counts for one message. The set `K:{W}:digests` lists the groups with a
//! record, so every replica tries the leases of groups only others saw. All keys of a
//! webhook share its hash tag: each exchange is one pipeline per step on one node.

use redis::Value;

use super::link::Link;
use super::replies::{item, items, text};
use super::scripts;
use super::state::State;
use super::RedisStore;
use crate::config::DigestSettings;
use crate::store::fleet::{Exchange, FleetExchange, Rules, Schedule, Share, Taken};
use crate::store::{lock_until, now_ms};

/// Longest wait before a group's lease is tried again (a threshold's window may fill, or
/// another replica's counts arrive, at any time).
const MAX_WAIT_MS: u64 = 1000;

impl FleetExchange for RedisStore {
    fn exchange_digests(
        &self,
        webhook: &str,
        settings: &DigestSettings,
        shares: &[Share],
        holding: &[String],
        schedule: &mut Schedule,
        rules: Rules,
    ) -> Result<Exchange, String> {
        let Rules { closing, resolves } = rules;
        let Some(mut state) = lock_until(&self.state, self.deadline()) else {
            return Err("Redis: busy past the close deadline".into());
        };
        // On a cluster a primary down fails only the exchanges of the webhooks it serves.
        let exchange = |store: &Self, connection: &mut Link, _: &mut State| {
            let members = store.merge_digests(connection, webhook, settings, shares, holding)?;
            let now = now_ms();
            schedule.retain(|key, _| members.contains(key));
            for share in shares {
                schedule.insert(share.key.clone(), now);
            }
            let due: Vec<&String> = members
                .iter()
                // A group whose message this replica sent and is still sending waits for it.
                .filter(|key| !holding.contains(key))
                .filter(|key| closing || schedule.get(*key).is_none_or(|at| *at <= now))
                .collect();
            if due.is_empty() {
                return Ok(Exchange::default());
            }
            let interval = settings.group_interval.as_millis() as u64;
            let (threshold, window) = settings
                .threshold
                .map_or((0, 0), |t| (t.count, t.window.as_millis() as u64));
            let mut pipe = redis::pipe();
            for key in &due {
                let keys = store.digest_keys(webhook, key);
                pipe.cmd("EVALSHA")
                    .arg(scripts::TAKE_DIGEST.sha())
                    .arg(5)
                    .arg(&keys)
                    .arg(format!("{}:lease", keys[0]))
                    .arg(key.as_str())
                    .arg(now)
                    .arg(interval)
                    .arg(settings.resolve_after.as_millis() as u64)
                    .arg(threshold)
                    .arg(window)
                    .arg(settings.group_wait.as_millis() as u64)
                    .arg(if closing { "1" } else { "0" })
                    .arg(&store.consumer)
                    .arg(if resolves { "1" } else { "0" });
            }
            let replies: Vec<Value> = pipe.query(connection)?;
            let mut exchange = Exchange::default();
            for (key, reply) in due.into_iter().zip(replies) {
                exchange.below_threshold += number(item(&reply, 1));
                match text(item(&reply, 0)).as_deref() {
                    Some(kind @ ("firing" | "resolved")) => {
                        schedule.insert(key.clone(), now + interval);
                        exchange.taken.push(taken(key, kind == "resolved", &reply));
                    }
                    Some("gone") => {
                        schedule.remove(key);
                    }
                    _ => {
                        let wait = number(item(&reply, 2)).min(MAX_WAIT_MS);
                        schedule.insert(key.clone(), now + wait);
                    }
                }
            }
            Ok(exchange)
        };
        self.with_connection(&mut state, |store, connection, state| {
            store.per_slot(connection, state, webhook, exchange)
        })?
        .ok_or_else(|| format!("Redis: webhook {webhook}: its slot is unreachable"))
    }
}

impl RedisStore {
    /// Adds `shares` and renews the leases of `holding` in one pipeline; returns the keys of
    /// the webhook's groups with a record.
    fn merge_digests(
        &self,
        connection: &mut Link,
        webhook: &str,
        settings: &DigestSettings,
        shares: &[Share],
        holding: &[String],
    ) -> redis::RedisResult<Vec<String>> {
        let interval = settings.group_interval.as_millis() as u64;
        let window = settings.threshold.map_or(0, |t| t.window.as_millis() as u64);
        let ttl = (settings.resolve_after + settings.group_wait).as_millis() as u64 + 2 * interval + window;
        let mut pipe = redis::pipe();
        for share in shares {
            let command = pipe
                .cmd("EVALSHA")
                .arg(scripts::MERGE_DIGEST.sha())
                .arg(4)
                .arg(&self.digest_keys(webhook, &share.key))
                .arg(&share.key)
                .arg(share.count)
                .arg(share.first_ms)
                .arg(share.last_ms)
                .arg(&share.latest)
                .arg(share.event)
                .arg(&share.values)
                .arg(if share.overflow { "1" } else { "0" })
                .arg(now_ms())
                .arg(settings.group_wait.as_millis() as u64)
                .arg(settings.samples)
                .arg(if settings.threshold.is_some() { "1" } else { "0" })
                .arg(ttl)
                .arg(share.samples.len())
                .arg(&share.samples);
            for (bucket, count) in &share.buckets {
                command.arg(*bucket).arg(*count);
            }
            command.ignore();
        }
        for key in holding {
            pipe.cmd("PEXPIRE")
                .arg(format!("{}:lease", self.digest_keys(webhook, key)[0]))
                .arg(interval)
                .ignore();
        }
        pipe.cmd("SMEMBERS").arg(self.digest_set(webhook));
        let (members,): (Vec<String>,) = pipe.query(connection)?;
        Ok(members)
    }

    /// The keys both digest scripts take first: the record of the group `key` of `webhook`,
    /// its samples, its threshold window, and the set of the webhook's groups with a record.
    fn digest_keys(&self, webhook: &str, key: &str) -> [String; 4] {
        let group = self.key_of(webhook, &format!("digest:{key}"));
        let (samples, window) = (format!("{group}:samples"), format!("{group}:window"));
        [group, samples, window, self.digest_set(webhook)]
    }

    /// The set of `webhook`'s digest groups with a record.
    fn digest_set(&self, webhook: &str) -> String {
        self.key_of(webhook, "digests")
    }
}

/// A `firing` or `resolved` reply of the take script as a [`Taken`].
fn taken(key: &str, resolved: bool, reply: &Value) -> Taken {
    let string = |index: usize| text(item(reply, index)).unwrap_or_default();
    Taken {
        key: key.to_owned(),
        resolved,
        count: number(item(reply, 3)),
        total: number(item(reply, 4)),
        first_ms: number(item(reply, 5)),
        last_ms: number(item(reply, 6)),
        latest: string(7),
        event: string(8),
        values: string(9),
        overflow: string(10) == "1",
        samples: items(reply).iter().skip(11).filter_map(text).collect(),
    }
}

/// An integer reply (or a string holding one); 0 for anything else.
fn number(value: &Value) -> u64 {
    match value {
        Value::Int(n) => (*n).max(0) as u64,
        other => text(other).and_then(|t| t.parse().ok()).unwrap_or(0),
    }
}
