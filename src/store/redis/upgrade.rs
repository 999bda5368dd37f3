//! Taking over keys of the v2 layout (`K:W:stream`, `K:W:retry`, `K:W:records`, `K:dead`,
//! without hash tags) into the v3 keys, at each connection to a single node: an upgrade loses
//! no delivery and no dead letter. Each webhook moves in one script, so replicas upgrading at
//! once never copy a delivery twice. Deliveries a v2 replica still held are free to take at
//! once: if that replica is still running it may deliver them too (the same delivery id).

use super::link::Link;
use super::scripts::{UPGRADE, UPGRADE_DEAD};
use super::RedisStore;
use crate::config::valid_id;
use crate::store::now_ms;

impl RedisStore {
    /// Moves every v2-layout webhook's deliveries and the v2 dead letters to the v3 keys.
    pub(super) fn upgrade(&self, connection: &mut Link) -> redis::RedisResult<()> {
        let streams: Vec<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(format!("{}:*:stream", self.key))
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter(connection)?
            .collect::<redis::RedisResult<_>>()?;
        let prefix = format!("{}:", self.key);
        let webhooks: Vec<&str> = streams
            .iter()
            .filter_map(|s| s.strip_prefix(&prefix)?.strip_suffix(":stream"))
            // Only this fleet's exact v2 layout: `K:{w1}:stream` is v3, `K:staging:w1:stream`
            // is fleet `K:staging`'s (no webhook id holds a brace or a `:`).
            .filter(|id| valid_id(id))
            .collect();
        let mut moved = 0;
        for webhook in webhooks {
            let v2 = |part: &str| format!("{}:{webhook}:{part}", self.key);
            redis::cmd("SADD")
                .arg(self.registry())
                .arg(webhook)
                .exec(connection)?;
            self.create_group(connection, webhook)?;
            let count: u64 = redis::cmd("EVAL")
                .arg(UPGRADE)
                .arg(5)
                .arg(v2("stream"))
                .arg(v2("retry"))
                .arg(v2("records"))
                .arg(self.retry_set(webhook))
                .arg(self.records(webhook))
                .arg(now_ms())
                .query(connection)?;
            moved += count;
        }
        let letters: u64 = redis::cmd("EVAL")
            .arg(UPGRADE_DEAD)
            .arg(1)
            .arg(format!("{}:dead", self.key))
            .arg(&self.key)
            .query(connection)?;
        if moved + letters > 0 {
            log::info!(
                "outbox: took over {moved} deliveries and {letters} dead letters from the v2 key layout under `{}`",
                self.key
            );
        }
        Ok(())
    }
}
