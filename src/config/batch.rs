//! A webhook's `batch` (DESIGN "Batches"): many events in one request for log and SIEM sinks.
//! A batch leaves when it holds `max_events` events or `max_bytes` of bodies, or when its
//! first event has waited `max_wait`; an event larger than `max_bytes` goes alone.

use std::time::Duration;

use super::fields::{duration, in_range};
use super::schema::{RawBatch, RawSize};
use crate::error::{Error, Result};
use crate::formats::Format;

/// When a batch is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSettings {
    /// Events per request at most.
    pub max_events: usize,
    /// Bytes of event bodies per request at most (the frame adds a few).
    pub max_bytes: usize,
    /// How long the first event of a batch waits for others at most.
    pub max_wait: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            max_events: 500,
            max_bytes: MIB,
            max_wait: Duration::from_secs(1),
        }
    }
}

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Builds `batch` for a webhook at `at`, whose `format` and digest are known: a batch format
/// without `batch` batches with the defaults; `batch` with another format (or a digest) is
/// refused.
pub(super) fn build(
    at: &str,
    raw: Option<RawBatch>,
    format: Format,
    digest: bool,
) -> Result<Option<BatchSettings>> {
    let field = |name: &str| format!("{at}.{name}");
    let raw = match (raw, format.batches()) {
        (None, false) => return Ok(None),
        (None, true) => RawBatch::default(),
        (Some(_), false) if format != Format::Default => {
            return Err(Error::config(
                field("format"),
                format!(
                    "`{}` is a channel format and cannot be batched (with batch: ndjson, json_array, splunk_hec or otlp_logs)",
                    format.name()
                ),
            ))
        }
        (Some(raw), _) => raw,
    };
    if digest {
        return Err(Error::config(
            field("batch"),
            "cannot be combined with digest (a digest already folds events into one message)",
        ));
    }
    let defaults = BatchSettings::default();
    let max_events = match raw.max_events {
        Some(n) => in_range(&field("batch.max_events"), n, 1, 10_000)? as usize,
        None => defaults.max_events,
    };
    let max_bytes = match raw.max_bytes {
        Some(size) => {
            let at = field("batch.max_bytes");
            let bytes = size.bytes().map_err(|m| Error::config(&at, m))?;
            in_range(&at, bytes, KIB as u64, 16 * MIB as u64)? as usize
        }
        None => defaults.max_bytes,
    };
    let max_wait = match raw.max_wait {
        Some(wait) => duration(
            &field("batch.max_wait"),
            &wait,
            Duration::from_millis(10),
            Duration::from_secs(60),
        )?,
        None => defaults.max_wait,
    };
    Ok(Some(BatchSettings {
        max_events,
        max_bytes,
        max_wait,
    }))
}

impl RawSize {
    /// The size in bytes: a number, or text such as `512KiB`, `1MiB`, `64KB`.
    fn bytes(&self) -> std::result::Result<u64, String> {
        let text = match self {
            RawSize::Bytes(n) => return Ok(*n),
            RawSize::Text(text) => text.trim(),
        };
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "KB" | "K" => KIB as u64,
            "MiB" | "MB" | "M" => MIB as u64,
            _ => return Err("is not a size (a number of bytes, or e.g. `512KiB`, `1MiB`)".into()),
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .ok_or_else(|| "is not a size (a number of bytes, or e.g. `512KiB`, `1MiB`)".into())
    }
}
