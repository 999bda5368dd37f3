//! How serious an event is: every event has a level (`{{severity}}`), used by
//! `min_severity`, `match: {severity: …}`, the channel formats' colours and PagerDuty's
//! `severity`. The defaults follow what an operator would page for; the config's top-level
//! `severity:` map overrides them per event.

use serde::Deserialize;

use crate::events::Event;

/// A level, least serious first (so `>=` compares seriousness).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    /// The wire name (also PagerDuty's).
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// The level an event has unless the config says otherwise.
    pub fn default_for(event: Event) -> Self {
        match event {
            Event::HarmfulContent => Severity::Critical,
            Event::PiiDetected | Event::ToolError | Event::PluginError | Event::WebhookFailing => {
                Severity::Error
            }
            Event::RateLimitExceeded | Event::Violation => Severity::Warning,
            _ => Severity::Info,
        }
    }
}

/// The level of every event: the defaults with the config's overrides applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Severities([Severity; Event::ALL.len()]);

impl Default for Severities {
    fn default() -> Self {
        Severities(Event::ALL.map(Severity::default_for))
    }
}

impl Severities {
    /// Gives `event` the level `severity`.
    pub fn set(&mut self, event: Event, severity: Severity) {
        self.0[event as usize] = severity;
    }

    /// The level of `event`.
    pub fn of(&self, event: Event) -> Severity {
        self.0[event as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_rank_and_overrides_apply() {
        let mut levels = Severities::default();
        assert_eq!(levels.of(Event::HarmfulContent), Severity::Critical);
        assert_eq!(levels.of(Event::ToolError), Severity::Error);
        assert_eq!(levels.of(Event::RateLimitExceeded), Severity::Warning);
        assert_eq!(levels.of(Event::ToolSuccess), Severity::Info);
        assert!(Severity::Critical > Severity::Error && Severity::Warning > Severity::Info);
        levels.set(Event::RateLimitExceeded, Severity::Critical);
        assert_eq!(levels.of(Event::RateLimitExceeded).name(), "critical");
    }
}
