//! Checks shared by the section builders: numbers and durations in range, event names,
//! templates that compile and render JSON. Each error names its field.

use std::time::Duration;

use super::retry::RawDuration;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::template::Template;

/// Compiles a template and proves at load time that it renders JSON whatever the values
/// ([`Template::json_check`]).
pub(super) fn compile(field: &str, source: &str) -> Result<Template> {
    let template = Template::compile(source).map_err(|e| Error::config(field, e))?;
    template.json_check().map_err(|e| Error::config(field, e))?;
    Ok(template)
}

pub(super) fn event_key(field: &str, name: &str) -> Result<Event> {
    Event::from_name(name).map_err(|_| {
        let known: Vec<&str> = Event::ALL.iter().map(|e| e.name()).collect();
        Error::config(
            field,
            format!("unknown event `{name}` (known: {})", known.join(", ")),
        )
    })
}

pub(super) fn in_range(field: &str, value: u64, min: u64, max: u64) -> Result<u64> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Error::config(field, format!("is out of range {min}..={max}")))
    }
}

/// A duration given as milliseconds or text (`500ms`, `60s`, `5m`, `2h`), within `min..=max`.
pub(super) fn duration(field: &str, value: &RawDuration, min: Duration, max: Duration) -> Result<Duration> {
    let value = value.value().map_err(|m| Error::config(field, m))?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        let (min, max) = (humantime::format_duration(min), humantime::format_duration(max));
        Err(Error::config(field, format!("is out of range {min}..={max}")))
    }
}

pub(super) fn seconds(field: &str, value: f64, min: f64, max: f64) -> Result<Duration> {
    if (min..=max).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(Error::config(
            field,
            format!("is out of range {min}..={max} seconds"),
        ))
    }
}
