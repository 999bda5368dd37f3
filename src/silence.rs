//! Silences (DESIGN "Silences, mute time intervals, email"): set at run time by an operator —
//! "we are migrating the search tool for two hours" — as matchers over an event's `match` keys
//! with `=`, `!=`, `=~` and `!~` (anchored regular expressions), all of which must hold, and a
//! window from `starts_at` to `ends_at`. An event matching an active silence is sent to no
//! webhook. Stores keep them as [`SilenceRecord`]s (see `store::silences`).

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::matching::{text, Field, FIELD_NAMES};

/// Silences not yet ended, at most (each store refuses more).
pub const MAX_SILENCES: usize = 1000;
/// Matchers of one silence, at most.
pub const MAX_MATCHERS: usize = 64;
/// Bytes of a comment, at most.
pub const MAX_COMMENT: usize = 1024;
/// Bytes of `created_by` or of one matcher, at most.
const MAX_TEXT: usize = 1024;

/// One silence.
#[derive(Clone, Debug)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub created_by: Option<String>,
    pub comment: Option<String>,
}

/// A silence as stored and as hosts give and see it (times in RFC 3339).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceRecord {
    pub id: String,
    pub matchers: Vec<String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
}

/// `key op value`.
#[derive(Clone, Debug)]
pub struct Matcher {
    text: String,
    field: Field,
    negated: bool,
    test: Test,
}

#[derive(Clone, Debug)]
enum Test {
    Equal(String),
    Regex(Regex),
}

/// What a silence is at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SilenceState {
    Pending,
    Active,
    Ended,
}

impl Silence {
    /// A new silence from a host's JSON `{matchers, starts_at?, ends_at? | duration?,
    /// created_by?, comment?}`, with a fresh id; every mistake is INVALID_ARGUMENT naming the
    /// field.
    pub fn new(spec: &Value, now: Timestamp) -> Result<Silence> {
        let object = spec
            .as_object()
            .ok_or_else(|| invalid("the silence must be a JSON object"))?;
        const KNOWN: [&str; 6] = [
            "matchers",
            "starts_at",
            "ends_at",
            "duration",
            "created_by",
            "comment",
        ];
        if let Some(unknown) = object.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(invalid(format!(
                "unknown field `{}` (known: {})",
                shown(unknown),
                KNOWN.join(", ")
            )));
        }
        let strings = |name: &str| -> Result<Option<&str>> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(invalid(format!("{name} must be a string"))),
            }
        };
        let matchers = match object.get("matchers") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, m)| match m {
                    Value::String(s) => Matcher::parse(&format!("matchers[{i}]"), s),
                    _ => Err(invalid(format!(
                        "matchers[{i}] must be a string such as \"tool=search\""
                    ))),
                })
                .collect::<Result<Vec<_>>>()?,
            _ => {
                return Err(invalid(
                    "matchers must list at least one matcher, e.g. [\"tool=search\"]",
                ))
            }
        };
        let starts_at = match strings("starts_at")? {
            Some(text) => timestamp("starts_at", text)?,
            None => now,
        };
        let ends_at = match (strings("ends_at")?, strings("duration")?) {
            (Some(_), Some(_)) => return Err(invalid("give ends_at or duration, not both")),
            (Some(text), None) => timestamp("ends_at", text)?,
            (None, Some(text)) => {
                let duration = humantime::parse_duration(text.trim())
                    .map_err(|_| invalid("duration is not a duration such as \"2h\" or \"30m\""))?;
                let duration =
                    SignedDuration::try_from(duration).map_err(|_| invalid("duration is too long"))?;
                starts_at
                    .checked_add(duration)
                    .map_err(|_| invalid("duration is too long"))?
            }
            (None, None) => return Err(invalid("ends_at or duration is required")),
        };
        if ends_at <= starts_at || ends_at <= now {
            return Err(invalid("ends_at must be after starts_at and in the future"));
        }
        let silence = Silence {
            id: Uuid::new_v4().to_string(),
            matchers,
            starts_at,
            ends_at,
            created_by: strings("created_by")?.map(str::to_owned),
            comment: strings("comment")?.map(str::to_owned),
        };
        silence.check_limits()?;
        Ok(silence)
    }

    /// Refuses what exceeds the limits, naming the field.
    fn check_limits(&self) -> Result<()> {
        if self.matchers.len() > MAX_MATCHERS {
            return Err(invalid(format!(
                "matchers has {} entries; at most {MAX_MATCHERS}",
                self.matchers.len()
            )));
        }
        if self.comment.as_ref().is_some_and(|c| c.len() > MAX_COMMENT) {
            return Err(invalid(format!("comment is longer than {MAX_COMMENT} bytes")));
        }
        if self.created_by.as_ref().is_some_and(|c| c.len() > MAX_TEXT) {
            return Err(invalid(format!("created_by is longer than {MAX_TEXT} bytes")));
        }
        Ok(())
    }

    /// A stored silence read back (records that no longer parse are skipped by the caller).
    pub fn from_record(record: &SilenceRecord) -> Result<Silence> {
        let mut matchers = Vec::with_capacity(record.matchers.len());
        for (i, m) in record.matchers.iter().enumerate() {
            matchers.push(Matcher::parse(&format!("matchers[{i}]"), m)?);
        }
        Ok(Silence {
            id: record.id.clone(),
            matchers,
            starts_at: timestamp("starts_at", &record.starts_at)?,
            ends_at: timestamp("ends_at", &record.ends_at)?,
            created_by: record.created_by.clone(),
            comment: record.comment.clone(),
        })
    }

    /// Its stored form.
    pub fn record(&self) -> SilenceRecord {
        SilenceRecord {
            id: self.id.clone(),
            matchers: self.matchers.iter().map(|m| m.text.clone()).collect(),
            starts_at: self.starts_at.to_string(),
            ends_at: self.ends_at.to_string(),
            created_by: self.created_by.clone(),
            comment: self.comment.clone(),
        }
    }

    /// What it is at `now`.
    pub fn state(&self, now: Timestamp) -> SilenceState {
        if now >= self.ends_at {
            SilenceState::Ended
        } else if now < self.starts_at {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    /// Whether it silences an event with `vars` at `now`.
    pub fn silences(&self, vars: &Map<String, Value>, now: Timestamp) -> bool {
        self.state(now) == SilenceState::Active && self.matchers.iter().all(|m| m.holds(vars))
    }

    /// How hosts see it: the record, and `state` (`active` or `pending`).
    pub fn view(&self, now: Timestamp) -> Value {
        let state = match self.state(now) {
            SilenceState::Active => "active",
            SilenceState::Pending => "pending",
            SilenceState::Ended => "expired",
        };
        let mut view = serde_json::to_value(self.record()).expect("a record serialises");
        view["state"] = json!(state);
        view
    }
}

impl SilenceRecord {
    /// Whether it has ended at `now` (one that does not parse counts as ended).
    pub fn ended(&self, now: Timestamp) -> bool {
        self.ends_at
            .trim()
            .parse::<Timestamp>()
            .is_ok_and(|end| end <= now)
            || Silence::from_record(self).is_err()
    }
}

impl Matcher {
    /// `key=value`, `key!=value`, `key=~regex`, `key!~regex` over the `match` keys (`code`
    /// is `violation.code`); a value may be quoted.
    fn parse(at: &str, spec: &str) -> Result<Matcher> {
        if spec.len() > MAX_TEXT {
            return Err(invalid(format!("{at} is longer than {MAX_TEXT} bytes")));
        }
        let key_end = spec
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .ok_or_else(|| invalid(format!("{at} has no operator (=, !=, =~, !~)")))?;
        let (key, rest) = spec.split_at(key_end);
        let key = key.trim();
        let (op, value) = ["=~", "!~", "!=", "="]
            .into_iter()
            .find_map(|op| rest.trim_start().strip_prefix(op).map(|v| (op, v.trim())))
            .ok_or_else(|| invalid(format!("{at} has no operator (=, !=, =~, !~)")))?;
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        let name = if key == "code" { "violation.code" } else { key };
        let field = Field::named(name).ok_or_else(|| {
            invalid(format!(
                "{at}: `{}` is not a key (known: {}, code)",
                shown(key),
                FIELD_NAMES.join(", ")
            ))
        })?;
        let test = match op {
            "=~" | "!~" => Test::Regex(
                RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|_| invalid(format!("{at} is not a valid regular expression")))?,
            ),
            _ => Test::Equal(value.to_owned()),
        };
        Ok(Matcher {
            text: format!("{key}{op}{value}"),
            field,
            negated: op.starts_with('!'),
            test,
        })
    }

    /// Whether it holds for `vars` (an absent value is the empty string).
    fn holds(&self, vars: &Map<String, Value>) -> bool {
        let value = self.field.value(vars).map(text).unwrap_or_default();
        let equal = match &self.test {
            Test::Equal(expected) => *value == **expected,
            Test::Regex(regex) => regex.is_match(&value),
        };
        equal != self.negated
    }
}

/// The silences of one store at one moment, indexed so that an event is checked against the
/// few that can match it: a silence with an `=` matcher is found by that key's value in the
/// event (one lookup per key in use); only silences without one are checked one by one.
#[derive(Default, Debug)]
pub struct SilenceSet {
    silences: Vec<Silence>,
    /// (key's index in [`FIELD_NAMES`], value) of one `=` matcher → the silences holding it.
    by_value: HashMap<(usize, String), Vec<usize>>,
    /// The keys `by_value` uses.
    keys: Vec<Field>,
    /// Silences with no `=` matcher.
    scanned: Vec<usize>,
}

impl SilenceSet {
    /// The set of `records` (those that do not parse, and ended ones, are left out).
    pub fn of(records: &[SilenceRecord], now: Timestamp) -> Self {
        let mut set = SilenceSet {
            silences: records
                .iter()
                .filter_map(|r| Silence::from_record(r).ok())
                .filter(|s| s.state(now) != SilenceState::Ended)
                .collect(),
            ..SilenceSet::default()
        };
        for (i, silence) in set.silences.iter().enumerate() {
            let equal = silence
                .matchers
                .iter()
                .find_map(|m| match (&m.field, &m.test, m.negated) {
                    (Field::Named(key), Test::Equal(value), false) => Some((*key, value.clone())),
                    _ => None,
                });
            match equal {
                Some((key, value)) => {
                    if !set.keys.contains(&Field::Named(key)) {
                        set.keys.push(Field::Named(key));
                    }
                    set.by_value.entry((key, value)).or_default().push(i);
                }
                None => set.scanned.push(i),
            }
        }
        set
    }

    /// Whether an active silence matches an event with `vars`.
    pub fn silences(&self, vars: &Map<String, Value>, now: Timestamp) -> bool {
        let candidates = self.keys.iter().flat_map(|key| {
            let value = key.value(vars).map(text).unwrap_or_default().into_owned();
            let Field::Named(index) = key else {
                unreachable!("silences index named keys only")
            };
            self.by_value.get(&(*index, value)).into_iter().flatten()
        });
        candidates
            .chain(&self.scanned)
            .any(|&i| self.silences[i].silences(vars, now))
    }

    /// Whether it holds any silence (active or pending).
    pub fn is_empty(&self) -> bool {
        self.silences.is_empty()
    }
}

fn timestamp(field: &str, text: &str) -> Result<Timestamp> {
    text.trim().parse().map_err(|_| {
        invalid(format!(
            "{field} is not an RFC 3339 time such as 2026-12-07T08:00:00Z"
        ))
    })
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

/// A key written by the host, cut for an error message.
fn shown(key: &str) -> String {
    key.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn silence(matchers: Value) -> Silence {
        Silence::new(&json!({"matchers": matchers, "duration": "2h"}), Timestamp::now()).unwrap()
    }

    #[test]
    fn matchers_follow_alertmanagers_operators() {
        let event = vars(
            json!({"event": "tool_error", "severity": "error", "tenant_id": "t2",
            "metadata": {"tool_name": "search"}, "violation": {"code": "RATE_LIMIT"}}),
        );
        for (matchers, silenced) in [
            (json!(["tool=search"]), true),
            (json!(["tool=fetch"]), false),
            (json!(["severity=~warning|error", "tenant!=t1"]), true),
            (json!(["severity=~warn"]), false), // anchored
            (json!(["tenant!~t.*"]), false),
            (json!(["code=RATE_LIMIT", "user="]), true), // absent user is ""
            (json!(["tool = \"search\""]), true),
        ] {
            let s = silence(matchers.clone());
            assert_eq!(s.silences(&event, s.starts_at), silenced, "{matchers}");
        }
    }

    #[test]
    fn mistakes_are_invalid_arguments_naming_the_field() {
        let now = Timestamp::now();
        let many: Vec<String> = (0..65).map(|i| format!("tool=t{i}")).collect();
        for (spec, named) in [
            (json!({"duration": "1h"}), "matchers"),
            (json!({"matchers": ["tool"], "duration": "1h"}), "matchers[0]"),
            (
                json!({"matchers": ["flavour=x"], "duration": "1h"}),
                "matchers[0]",
            ),
            (json!({"matchers": ["tool=~("], "duration": "1h"}), "matchers[0]"),
            (json!({"matchers": ["tool=a"]}), "ends_at"),
            (json!({"matchers": ["tool=a"], "duration": "soon"}), "duration"),
            (
                json!({"matchers": ["tool=a"], "ends_at": "2001-01-01T00:00:00Z"}),
                "ends_at",
            ),
            (json!({"matchers": many, "duration": "1h"}), "matchers"),
            (
                json!({"matchers": ["tool=a"], "duration": "1h", "comment": "x".repeat(1025)}),
                "comment",
            ),
            (
                json!({"matchers": ["tool=a"], "duration": "1h", "author": "me"}),
                "author",
            ),
        ] {
            match Silence::new(&spec, now) {
                Err(Error::InvalidArgument(message)) => assert!(message.contains(named), "{spec}: {message}"),
                other => panic!("{spec}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_set_finds_the_silences_an_event_can_match_among_a_thousand() {
        let mut records: Vec<SilenceRecord> = (0..1000)
            .map(|i| silence(json!([format!("tool=t{i}"), "severity!=info"])).record())
            .collect();
        records.push(silence(json!(["user=~.*@example\\.com"])).record());
        let now = Timestamp::now(); // every silence has started
        let set = SilenceSet::of(&records, now);
        let event = |tool: &str, severity: &str, user: &str| {
            vars(
                json!({"event": "tool_error", "severity": severity, "user": user, "metadata": {"tool_name": tool}}),
            )
        };
        assert!(set.silences(&event("t500", "error", "a@b.org"), now));
        assert!(!set.silences(&event("t500", "info", "a@b.org"), now));
        assert!(!set.silences(&event("t1000", "error", "a@b.org"), now));
        assert!(set.silences(&event("t1000", "error", "bob@example.com"), now));
    }

    #[test]
    fn a_silence_is_pending_then_active_then_ended() {
        let now = Timestamp::now();
        let starts = now.checked_add(SignedDuration::from_secs(60)).unwrap();
        let spec = json!({"matchers": ["tool=a"], "starts_at": starts.to_string(), "duration": "1m"});
        let s = Silence::new(&spec, now).unwrap();
        assert_eq!(s.state(now), SilenceState::Pending);
        assert_eq!(s.state(starts), SilenceState::Active);
        assert_eq!(s.state(s.ends_at), SilenceState::Ended);
        let back = Silence::from_record(&s.record()).unwrap();
        assert_eq!(
            (back.id, back.starts_at, back.ends_at),
            (s.id, s.starts_at, s.ends_at)
        );
    }
}
