//! When a failed delivery is tried again: `retry_attempts` × `retry_delay` doubling (the
//! original's), or an explicit `retry_schedule` of durations. Jitter is applied by the
//! caller at the moment a retry is scheduled.

use std::time::Duration;

use serde::Deserialize;

/// Longest single delay a `retry_schedule` entry may ask for.
pub const MAX_SCHEDULED_DELAY: Duration = Duration::from_secs(24 * 3600);
/// Most entries a `retry_schedule` may list.
pub const MAX_SCHEDULE_LEN: usize = 20;
/// `Retry-After` is honoured up to the longer of this and the longest scheduled delay.
const RETRY_AFTER_FLOOR: Duration = Duration::from_secs(60);

/// The delays before each retry of one webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryPolicy {
    /// `attempts` retries, retry n waiting `base * 2^n`.
    Exponential { attempts: u32, base: Duration },
    /// One retry per entry, waiting that long.
    Schedule(Vec<Duration>),
}

impl RetryPolicy {
    /// The delay before retry `n` (0-based), or `None` when the budget is spent.
    pub fn delay(&self, n: u32) -> Option<Duration> {
        match self {
            RetryPolicy::Exponential { attempts, base } => {
                (n < *attempts).then(|| base.saturating_mul(1u32 << n.min(16)))
            }
            RetryPolicy::Schedule(delays) => delays.get(n as usize).copied(),
        }
    }

    /// How many retries follow the first attempt.
    pub fn retries(&self) -> u32 {
        match self {
            RetryPolicy::Exponential { attempts, .. } => *attempts,
            RetryPolicy::Schedule(delays) => delays.len() as u32,
        }
    }

    /// The longest `Retry-After` honoured: max(60 s, the longest scheduled delay).
    pub fn retry_after_cap(&self) -> Duration {
        let longest = (0..self.retries()).filter_map(|n| self.delay(n)).max();
        longest.unwrap_or_default().max(RETRY_AFTER_FLOOR)
    }
}

/// A duration in config: milliseconds as a number, or text such as `500ms`, `5s`, `5m`, `2h`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawDuration {
    Millis(u64),
    Text(String),
}

impl RawDuration {
    /// The duration, or an error message that quotes nothing from the config.
    pub(super) fn parse(&self) -> Result<Duration, String> {
        let delay = self.value()?;
        if delay > MAX_SCHEDULED_DELAY {
            return Err("is longer than 24h".into());
        }
        Ok(delay)
    }
}

impl RawDuration {
    /// The duration, unbounded; the error quotes nothing from the config.
    pub(super) fn value(&self) -> Result<Duration, String> {
        Ok(match self {
            RawDuration::Millis(ms) => Duration::from_millis(*ms),
            RawDuration::Text(text) => parse_text(text.trim()).ok_or(
                "is not a duration (a number of milliseconds, or e.g. `500ms`, `5s`, `5m`, `2h`, `7d`)",
            )?,
        })
    }
}

fn parse_text(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86_400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_and_stops_at_the_budget() {
        let p = RetryPolicy::Exponential {
            attempts: 3,
            base: Duration::from_millis(100),
        };
        let delays: Vec<_> = (0..4).map(|n| p.delay(n).map(|d| d.as_millis())).collect();
        assert_eq!(delays, [Some(100), Some(200), Some(400), None]);
        assert_eq!(p.retry_after_cap(), Duration::from_secs(60));
    }

    #[test]
    fn schedules_parse_units_and_cap_retry_after_at_their_longest() {
        let parse = |t: &str| RawDuration::Text(t.into()).parse();
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse("5 parsecs").is_err() && parse("").is_err() && parse("25h").is_err());
        assert_eq!(RawDuration::Millis(250).parse(), Ok(Duration::from_millis(250)));
        let p = RetryPolicy::Schedule(vec![Duration::from_secs(1), Duration::from_secs(300)]);
        assert_eq!(
            (p.retries(), p.delay(1), p.delay(2)),
            (2, Some(Duration::from_secs(300)), None)
        );
        assert_eq!(p.retry_after_cap(), Duration::from_secs(300));
    }
}
