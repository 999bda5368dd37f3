//! A webhook's alerting fields (DESIGN "Alerting"): `match`, `exclude`, `min_severity`,
//! `digest` and `format` (with PagerDuty's `routing_key`), and the top-level `severity`
//! overrides. All optional: without them a webhook gets one delivery per event, as in v2.

use std::collections::BTreeMap;
use std::time::Duration;

use super::fields::{duration, event_key, in_range};
use super::schema::{OneOrMany, RawAlerting, RawDigest};
use crate::error::{Error, Result};
use crate::formats::Format;
use crate::matching::{Field, Matcher, FIELD_NAMES};
use crate::severity::{Severities, Severity};

/// How a webhook filters, groups and formats what it sends.
#[derive(Default)]
pub struct Alerting {
    /// The channel's built-in body (`Default`: the templates).
    pub format: Format,
    /// PagerDuty's integration key (a secret: in the body only, never shown).
    pub routing_key: Option<String>,
    /// `match`: every field given must match (None: no condition).
    pub matcher: Option<Matcher>,
    /// `exclude`: any field matching excludes.
    pub exclude: Option<Matcher>,
    /// Events less serious than this are filtered.
    pub min_severity: Option<Severity>,
    /// Events grouped into digest messages, if set.
    pub digest: Option<DigestSettings>,
}

impl Alerting {
    /// Whether events are routed through the alerting stage (a filter or a digest), which
    /// runs on the delivery runtime; otherwise a webhook takes its events as in v2.
    pub fn routes(&self) -> bool {
        self.matcher.is_some()
            || self.exclude.is_some()
            || self.min_severity.is_some()
            || self.digest.is_some()
    }
}

/// `digest`: how events of a webhook become digest messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestSettings {
    /// The fields whose values make a group.
    pub group_by: Vec<Field>,
    /// From a group's first event (or its threshold crossing) to its first message.
    pub group_wait: Duration,
    /// Between two messages of a group, at least.
    pub group_interval: Duration,
    /// A group speaks only once it saw this many events within a sliding window.
    pub threshold: Option<Threshold>,
    /// A group with no event for this long closes.
    pub resolve_after: Duration,
    /// Groups open at most; events of further groups count in one overflow group.
    pub max_groups: usize,
    /// Events of each message kept whole, the first ones.
    pub samples: usize,
}

/// `digest.threshold`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threshold {
    pub count: usize,
    pub window: Duration,
}

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Builds a webhook's alerting fields; `at` is the webhook's field path.
pub(super) fn build(at: &str, raw: RawAlerting) -> Result<Alerting> {
    let field = |name: &str| format!("{at}.{name}");
    let routing_key = match (raw.format, raw.routing_key) {
        (Format::PagerDuty, Some(key)) if !key.trim().is_empty() => Some(key),
        (Format::PagerDuty, _) => {
            return Err(Error::config(
                field("routing_key"),
                "is required with format: pagerduty (the integration's key; e.g. ${env.PD_ROUTING_KEY})",
            ))
        }
        (_, Some(_)) => {
            return Err(Error::config(
                field("routing_key"),
                "is only for format: pagerduty",
            ))
        }
        (_, None) => None,
    };
    Ok(Alerting {
        format: raw.format,
        routing_key,
        matcher: matcher(&field("match"), raw.matching)?,
        exclude: matcher(&field("exclude"), raw.exclude)?,
        min_severity: raw.min_severity,
        digest: raw.digest.map(|d| digest(&field("digest"), d)).transpose()?,
    })
}

fn matcher(at: &str, raw: Option<BTreeMap<String, OneOrMany>>) -> Result<Option<Matcher>> {
    let Some(raw) = raw else { return Ok(None) };
    let mut matcher = Matcher::default();
    for (name, globs) in raw {
        let field = format!("{at}.{}", super::redact::shown_key(&name));
        let key = Field::named(&name).ok_or_else(|| {
            Error::config(
                &field,
                format!("is not a field to match (known: {})", FIELD_NAMES.join(", ")),
            )
        })?;
        let globs = match globs {
            OneOrMany::One(glob) => vec![glob],
            OneOrMany::Many(globs) if !globs.is_empty() => globs,
            OneOrMany::Many(_) => return Err(Error::config(field, "lists no glob")),
        };
        matcher.add(key, &globs);
    }
    Ok(Some(matcher))
}

fn digest(at: &str, raw: RawDigest) -> Result<DigestSettings> {
    let field = |name: &str| format!("{at}.{name}");
    let group_by = raw
        .group_by
        .unwrap_or_else(|| vec!["event".into()])
        .iter()
        .enumerate()
        .map(|(i, name)| {
            Field::named_or_path(name).ok_or_else(|| {
                let why = format!(
                    "is not a field ({}) or a dotted path such as metadata.region",
                    FIELD_NAMES.join(", ")
                );
                Error::config(format!("{at}.group_by[{i}]"), why)
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let within =
        |name: &str, value: Option<super::retry::RawDuration>, default: Duration, min, max| match value {
            Some(value) => duration(&field(name), &value, min, max),
            None => Ok(default),
        };
    let threshold = match raw.threshold {
        Some(t) => Some(Threshold {
            count: in_range(&field("threshold.count"), t.count, 1, 1_000_000)? as usize,
            window: duration(&field("threshold.window"), &t.window, 100 * MS, DAY)?,
        }),
        None => None,
    };
    Ok(DigestSettings {
        group_by,
        group_wait: within("group_wait", raw.group_wait, Duration::ZERO, Duration::ZERO, HOUR)?,
        group_interval: within("group_interval", raw.group_interval, 60 * SECOND, 100 * MS, DAY)?,
        threshold,
        resolve_after: within("resolve_after", raw.resolve_after, 300 * SECOND, SECOND, 7 * DAY)?,
        max_groups: in_range(
            &field("max_groups"),
            raw.max_groups.unwrap_or(10_000),
            1,
            1_000_000,
        )? as usize,
        samples: in_range(&field("samples"), raw.samples.unwrap_or(3), 0, 20)? as usize,
    })
}

/// The top-level `severity:` overrides applied to the defaults.
pub(super) fn severities(raw: BTreeMap<String, Severity>) -> Result<Severities> {
    let mut levels = Severities::default();
    for (name, level) in raw {
        let event = event_key(&format!("severity.{}", super::redact::shown_key(&name)), &name)?;
        levels.set(event, level);
    }
    Ok(levels)
}
