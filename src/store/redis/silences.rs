//! Silences in Redis: the hash `KEY:silences` (id → record), shared by the fleet; every
//! replica reads it again each second. The limit on silences is checked against what the hash
//! holds when one is added (two replicas adding at the same instant may pass it by one each).

use std::sync::Mutex;

use jiff::Timestamp;

use super::link::{Client, Link};
use super::CONNECT_TIMEOUT;
use crate::config::RedisOutbox;
use crate::silence::SilenceRecord;
use crate::store::silences::SilenceStore;

/// The fleet's silences.
pub(crate) struct RedisSilences {
    client: Client,
    key: String,
    link: Mutex<Option<Link>>,
}

impl RedisSilences {
    /// The silences of `outbox` (nothing is contacted yet).
    pub(crate) fn new(outbox: &RedisOutbox) -> Result<Self, String> {
        Ok(RedisSilences {
            client: Client::new(outbox)?,
            key: format!("{}:silences", outbox.key),
            link: Mutex::new(None),
        })
    }

    /// Runs `call` on a connection, connecting (once more after a failure) as needed.
    fn with_link<T>(&self, call: impl Fn(&mut Link) -> redis::RedisResult<T>) -> Result<T, String> {
        let mut held = self.link.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = String::new();
        for _ in 0..2 {
            let link = match held.as_mut() {
                Some(link) => link,
                None => match self.client.connect(CONNECT_TIMEOUT) {
                    Ok(link) => held.insert(link),
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                },
            };
            match call(link) {
                Ok(value) => return Ok(value),
                Err(e) => {
                    last = e.to_string();
                    *held = None;
                }
            }
        }
        Err(format!("silences in redis: {last}"))
    }
}

impl SilenceStore for RedisSilences {
    fn load(&self) -> Result<Vec<SilenceRecord>, String> {
        let values: Vec<String> = self.with_link(|link| redis::cmd("HVALS").arg(&self.key).query(link))?;
        Ok(values
            .iter()
            .filter_map(|v| serde_json::from_str(v).ok())
            .collect())
    }

    fn add(&self, silence: &SilenceRecord, limit: usize) -> Result<bool, String> {
        let now = Timestamp::now();
        let (ended, live): (Vec<SilenceRecord>, Vec<SilenceRecord>) =
            self.load()?.into_iter().partition(|s| s.ended(now));
        if live.len() >= limit {
            return Ok(false);
        }
        let value = serde_json::to_string(silence).expect("a record serialises");
        self.with_link(|link| {
            let mut pipe = redis::pipe();
            pipe.cmd("HSET")
                .arg(&self.key)
                .arg(&silence.id)
                .arg(&value)
                .ignore();
            for old in &ended {
                pipe.cmd("HDEL").arg(&self.key).arg(&old.id).ignore();
            }
            pipe.query::<()>(link)
        })?;
        Ok(true)
    }

    fn remove(&self, id: &str) -> Result<bool, String> {
        let removed: u64 = self.with_link(|link| redis::cmd("HDEL").arg(&self.key).arg(id).query(link))?;
        Ok(removed > 0)
    }
}
