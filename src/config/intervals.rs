//! The top-level `time_intervals` and the webhooks' references to them (see
//! [`crate::intervals`]). Alertmanager's syntax: `weekdays: [monday:friday]`, `times:
//! [{start_time: "09:00", end_time: "17:00"}]`, `days_of_month: ["1:7", -1]`, `months:
//! [january:march]` or numbers, `years: ["2026:2027"]`, `location: Europe/Berlin`. Each
//! mistake is a config error naming its field.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::tz::TimeZone;

use super::schema::{RawBound, RawWindow};
use crate::error::{Error, Result};
use crate::intervals::{TimeInterval, Window};

/// Intervals by name.
pub type Intervals = BTreeMap<String, Arc<TimeInterval>>;

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Builds `time_intervals`.
pub(super) fn build(raw: BTreeMap<String, Vec<RawWindow>>) -> Result<Intervals> {
    let mut intervals = Intervals::new();
    for (name, windows) in raw {
        let at = format!("time_intervals.{}", super::redact::shown_key(&name));
        let windows = windows
            .into_iter()
            .enumerate()
            .map(|(i, w)| window(&format!("{at}[{i}]"), w))
            .collect::<Result<Vec<_>>>()?;
        intervals.insert(name, Arc::new(TimeInterval { windows }));
    }
    Ok(intervals)
}

/// The intervals a webhook's `field` names, each known.
pub(super) fn named(field: &str, names: &[String], intervals: &Intervals) -> Result<Vec<Arc<TimeInterval>>> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            intervals.get(name).cloned().ok_or_else(|| {
                let known: Vec<&str> = intervals.keys().map(String::as_str).collect();
                Error::config(
                    format!("{field}[{i}]"),
                    format!(
                        "names no interval of time_intervals (known: {})",
                        known.join(", ")
                    ),
                )
            })
        })
        .collect()
}

fn window(at: &str, raw: RawWindow) -> Result<Window> {
    let field = |name: &str, i: usize| format!("{at}.{name}[{i}]");
    let times = raw
        .times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let at = field("times", i);
            let start = minutes(&format!("{at}.start_time"), &t.start_time)?;
            let end = minutes(&format!("{at}.end_time"), &t.end_time)?;
            match start < end {
                true => Ok((start, end)),
                false => Err(Error::config(at, "start_time must come before end_time")),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let ranges = |name: &str, bounds: &[RawBound], one: &dyn Fn(&str) -> Option<i64>, min: i64, max: i64| {
        bounds
            .iter()
            .enumerate()
            .map(|(i, bound)| range(&field(name, i), bound, one, min, max))
            .collect::<Result<Vec<_>>>()
    };
    let named = |names: &'static [&'static str], first: i64| {
        move |text: &str| {
            let lower = text.to_ascii_lowercase();
            names
                .iter()
                .position(|n| *n == lower)
                .map(|i| i as i64 + first)
                .or_else(|| text.parse().ok())
        }
    };
    let number = |text: &str| text.parse().ok();
    let weekdays = ranges("weekdays", &raw.weekdays, &named(&WEEKDAYS, 0), 0, 6)?;
    let days = ranges("days_of_month", &raw.days_of_month, &number, -31, 31)?;
    for (i, &(a, b)) in days.iter().enumerate() {
        if a == 0 || b == 0 || (a < 0) != (b < 0) {
            let why = "days are 1..31 or -31..-1 (from the month's end), both ends of one sign";
            return Err(Error::config(field("days_of_month", i), why));
        }
    }
    let months = ranges("months", &raw.months, &named(&MONTHS, 1), 1, 12)?;
    let years = ranges("years", &raw.years, &number, 1, 9999)?;
    let location = match raw.location.as_deref() {
        None | Some("UTC") => TimeZone::UTC,
        Some("Local") => TimeZone::system(),
        Some(name) => TimeZone::get(name).map_err(|_| {
            Error::config(
                format!("{at}.location"),
                format!("`{name}` is not an IANA time zone (e.g. Europe/Berlin)"),
            )
        })?,
    };
    Ok(Window {
        times,
        weekdays: weekdays.into_iter().map(|(a, b)| (a as u8, b as u8)).collect(),
        days_of_month: days.into_iter().map(|(a, b)| (a as i8, b as i8)).collect(),
        months: months.into_iter().map(|(a, b)| (a as u8, b as u8)).collect(),
        years: years.into_iter().map(|(a, b)| (a as i16, b as i16)).collect(),
        location,
    })
}

/// `HH:MM` (`24:00` as an end) in minutes since midnight.
fn minutes(field: &str, text: &str) -> Result<u16> {
    let parsed = text.split_once(':').and_then(|(h, m)| {
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0)) && text.len() == 5).then_some(h * 60 + m)
    });
    parsed.ok_or_else(|| Error::config(field, "is not a time of day HH:MM (00:00 to 24:00)"))
}

/// One bound or an inclusive `a:b` range, each end read by `one` and within `min..=max`.
fn range(
    field: &str,
    bound: &RawBound,
    one: &dyn Fn(&str) -> Option<i64>,
    min: i64,
    max: i64,
) -> Result<(i64, i64)> {
    let bad = || Error::config(field, format!("is not a value or range a:b within {min}..{max}"));
    let (a, b) = match bound {
        RawBound::Number(n) => (*n, *n),
        RawBound::Text(text) => match text.trim().split_once(':') {
            Some((a, b)) => (one(a.trim()).ok_or_else(bad)?, one(b.trim()).ok_or_else(bad)?),
            None => {
                let n = one(text.trim()).ok_or_else(bad)?;
                (n, n)
            }
        },
    };
    match (min..=max).contains(&a) && (min..=max).contains(&b) && a <= b {
        true => Ok((a, b)),
        false => Err(bad()),
    }
}
