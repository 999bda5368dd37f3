//! Logging through the `log` facade. The level comes from `LOG_LEVEL` (DEBUG shows every
//! attempt). C and Go hosts get a small stderr logger; Python hosts route records to Python's
//! `logging` instead (see `src/python/`); Rust hosts may install any `log` logger of their own.

use log::{LevelFilter, Log, Metadata, Record};

/// The level named by `LOG_LEVEL` (`ERROR`, `WARNING`/`WARN`, `INFO`, `DEBUG`, `TRACE`,
/// `OFF`, any case); WARN when unset or unknown.
pub fn level_from_env() -> LevelFilter {
    level(std::env::var("LOG_LEVEL").ok().as_deref())
}

fn level(value: Option<&str>) -> LevelFilter {
    match value.map(|v| v.trim().to_ascii_uppercase()).as_deref() {
        Some("OFF") | Some("NONE") => LevelFilter::Off,
        Some("ERROR") | Some("CRITICAL") => LevelFilter::Error,
        Some("INFO") => LevelFilter::Info,
        Some("DEBUG") => LevelFilter::Debug,
        Some("TRACE") => LevelFilter::Trace,
        _ => LevelFilter::Warn,
    }
}

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("[webhook_notification {}] {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the stderr logger at `LOG_LEVEL`, unless the process already has a logger.
pub fn init_stderr() {
    if log::set_logger(&Stderr).is_ok() {
        log::set_max_level(level_from_env());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn levels_from_names() {
        use log::LevelFilter::*;
        for (name, want) in [
            ("debug", Debug),
            ("WARNING", Warn),
            ("Error", Error),
            ("off", Off),
            ("bogus", Warn),
        ] {
            assert_eq!(super::level(Some(name)), want, "{name}");
        }
        assert_eq!(super::level(None), Warn);
    }
}
