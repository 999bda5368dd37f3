//! Time intervals (Alertmanager's syntax; DESIGN "Silences, mute time intervals, email"):
//! named lists of recurring windows — times of day, weekdays, days of the month, months,
//! years — each read in its IANA time zone (`jiff` and the tz database, no hand-written
//! rules). A webhook's `mute_time_intervals` hold its events back inside them,
//! `active_time_intervals` outside them.

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// A named interval: the instant is inside when any of its windows contains it.
#[derive(Debug, Default)]
pub struct TimeInterval {
    pub windows: Vec<Window>,
}

impl TimeInterval {
    /// Whether `now` falls inside one of its windows.
    pub fn contains(&self, now: Timestamp) -> bool {
        self.windows.iter().any(|w| w.contains(now))
    }
}

/// One window: every part given must hold (an empty list holds always). Ranges are
/// inclusive, except times of day, whose end is exclusive.
#[derive(Debug)]
pub struct Window {
    /// Minutes since midnight, `[start, end)`.
    pub times: Vec<(u16, u16)>,
    /// 0 = Sunday … 6 = Saturday.
    pub weekdays: Vec<(u8, u8)>,
    /// 1..=31, or -31..=-1 counted from the month's end (-1 is its last day).
    pub days_of_month: Vec<(i8, i8)>,
    /// 1 = January … 12.
    pub months: Vec<(u8, u8)>,
    pub years: Vec<(i16, i16)>,
    /// Where the window's clock is read (default UTC).
    pub location: TimeZone,
}

impl Window {
    /// Whether `now`, read in the window's time zone, is inside.
    pub fn contains(&self, now: Timestamp) -> bool {
        let local = now.to_zoned_datetime(self.location.clone());
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let weekday = local.weekday().to_sunday_zero_offset() as u8;
        let (day, last_day) = (local.day(), local.days_in_month());
        let within = |ranges: &[(i64, i64)], value: i64| {
            ranges.is_empty() || ranges.iter().any(|&(a, b)| (a..=b).contains(&value))
        };
        let widen = |ranges: &[(u8, u8)]| -> Vec<(i64, i64)> {
            ranges.iter().map(|&(a, b)| (a.into(), b.into())).collect()
        };
        // A negative day counts from the month's end: -1 is its last day.
        let absolute = |d: i8| {
            if d < 0 {
                last_day as i64 + 1 + d as i64
            } else {
                d as i64
            }
        };
        let days: Vec<(i64, i64)> = self
            .days_of_month
            .iter()
            .map(|&(a, b)| (absolute(a), absolute(b)))
            .collect();
        let years: Vec<(i64, i64)> = self.years.iter().map(|&(a, b)| (a.into(), b.into())).collect();
        (self.times.is_empty() || self.times.iter().any(|&(a, b)| (a..b).contains(&minute)))
            && within(&widen(&self.weekdays), weekday.into())
            && within(&days, day.into())
            && within(&widen(&self.months), local.month().into())
            && within(&years, local.year().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn window(location: &str) -> Window {
        Window {
            times: vec![(9 * 60, 17 * 60)],
            weekdays: vec![(1, 5)],
            days_of_month: vec![],
            months: vec![],
            years: vec![],
            location: TimeZone::get(location).unwrap(),
        }
    }

    #[test]
    fn office_hours_are_read_in_the_windows_zone() {
        let berlin = window("Europe/Berlin");
        // Monday 2026-12-07 08:30 UTC is 09:30 in Berlin (UTC+1 in winter).
        assert!(berlin.contains(at("2026-12-07T08:30:00Z")));
        assert!(!window("UTC").contains(at("2026-12-07T08:30:00Z")));
        // 17:00 is the exclusive end; Saturday is outside.
        assert!(!berlin.contains(at("2026-12-07T16:00:00Z")));
        assert!(!berlin.contains(at("2026-12-12T10:00:00Z")));
    }

    #[test]
    fn daylight_saving_moves_the_window_in_utc() {
        // New York office hours 09:00–17:00: 14:00 UTC in winter (EST, UTC-5), 13:00 UTC after
        // the 2026-03-08 switch to EDT (UTC-4).
        let new_york = window("America/New_York");
        assert!(!new_york.contains(at("2026-03-06T13:30:00Z"))); // Friday, 08:30 EST
        assert!(new_york.contains(at("2026-03-09T13:30:00Z"))); // Monday, 09:30 EDT
    }

    #[test]
    fn negative_days_count_from_the_months_end() {
        let last_day = Window {
            times: vec![],
            weekdays: vec![],
            days_of_month: vec![(-1, -1)],
            months: vec![],
            years: vec![],
            location: TimeZone::UTC,
        };
        assert!(last_day.contains(at("2027-02-28T12:00:00Z")));
        assert!(!last_day.contains(at("2028-02-28T12:00:00Z"))); // a leap year: the 29th is last
        assert!(last_day.contains(at("2028-02-29T12:00:00Z")));
    }
}
