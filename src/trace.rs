//! W3C Trace Context for deliveries: every attempt sends `traceparent` (and the host's
//! `tracestate`), so a receiver can join a notification to the gateway request that raised it.
//! The trace id comes from the host when it gave a valid one, else it is random per event;
//! every attempt is a span of its own.

use std::fmt::Write as _;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest `tracestate` passed on (W3C: at most 32 members; 512 bytes is what propagators
/// must accept). A longer or malformed one is dropped, never an error.
const MAX_TRACESTATE: usize = 512;

/// An event's trace: its id and flags (from the host or random), the span id of its first
/// attempt (`{{span_id}}`), and the host's `tracestate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub trace_id: u128,
    pub span_id: u64,
    pub flags: u8,
    pub state: Option<Box<str>>,
}

impl Trace {
    /// A fresh trace (sampled), for an event the host gave none.
    pub fn random() -> Self {
        Trace {
            trace_id: nonzero(fastrand::u128(..)),
            span_id: span_id(),
            flags: 1,
            state: None,
        }
    }

    /// The host's trace: a `traceparent` header value, else a bare trace id (32 hex digits,
    /// or a UUID, as cpex's `current_trace_id` holds), with its `tracestate`. None when neither
    /// is valid: the event then gets a fresh trace.
    pub fn from_host(
        traceparent: Option<&str>,
        trace_id: Option<&str>,
        tracestate: Option<&str>,
    ) -> Option<Self> {
        let (trace_id, flags) = match traceparent.and_then(parse_traceparent) {
            Some(parsed) => parsed,
            None => (trace_id.and_then(parse_trace_id)?, 1),
        };
        let state = tracestate
            .map(str::trim)
            .filter(|s| {
                !s.is_empty() && s.len() <= MAX_TRACESTATE && s.bytes().all(|b| (0x20..0x7f).contains(&b))
            })
            .map(Box::from);
        Some(Trace {
            trace_id,
            span_id: span_id(),
            flags,
            state,
        })
    }

    /// The `traceparent` of an attempt: the first attempt uses the event's span id, every
    /// later one a fresh one.
    pub fn traceparent(&self, attempt: u32) -> String {
        let span = if attempt == 0 { self.span_id } else { span_id() };
        let mut header = String::with_capacity(55);
        let _ = write!(header, "00-{:032x}-{span:016x}-{:02x}", self.trace_id, self.flags);
        header
    }

    /// `{{trace_id}}` and `{{span_id}}`: its trace id as 32 lowercase hex digits and its
    /// first attempt's span id as 16.
    pub fn hex_ids(&self) -> [String; 2] {
        [lower_hex(self.trace_id, 32), lower_hex(self.span_id.into(), 16)]
    }
}

/// The low `digits` (even) hex digits of `value`, zero-padded: two digits per byte from a
/// table, not the formatting machinery nor a u128 shift per digit.
fn lower_hex(value: u128, digits: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let bytes = value.to_be_bytes();
    let mut text = [0u8; 32];
    for (pair, byte) in text.chunks_exact_mut(2).zip(&bytes[bytes.len() - digits / 2..]) {
        pair.copy_from_slice(&[DIGITS[usize::from(byte >> 4)], DIGITS[usize::from(byte & 0xf)]]);
    }
    std::str::from_utf8(&text[..digits])
        .expect("hex digits")
        .to_owned()
}

/// A fresh span id (never zero, which W3C reserves as invalid).
pub fn span_id() -> u64 {
    fastrand::u64(1..)
}

fn nonzero(id: u128) -> u128 {
    if id == 0 {
        1
    } else {
        id
    }
}

/// `(trace id, flags)` of a valid `traceparent`: version 00 exactly, or a later version
/// (not ff) whose first four fields are read and whose rest, if any, starts with `-`.
fn parse_traceparent(value: &str) -> Option<(u128, u8)> {
    let value = value.trim();
    let head = value.get(..55)?;
    let rest = &value[55..];
    let mut fields = head.split('-');
    let (version, trace, parent, flags) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    let version = hex(version, 2)? as u8;
    if version == 0xff || (version == 0 && !rest.is_empty()) || (!rest.is_empty() && !rest.starts_with('-')) {
        return None;
    }
    let trace_id = hex(trace, 32)?;
    if trace_id == 0 || hex(parent, 16)? == 0 {
        return None;
    }
    Some((trace_id, hex(flags, 2)? as u8))
}

/// A bare trace id: 32 hex digits, or a UUID (its hyphens removed); never all zeros.
fn parse_trace_id(value: &str) -> Option<u128> {
    let digits: String = value.trim().chars().filter(|c| *c != '-').collect();
    hex(&digits, 32).filter(|id| *id != 0)
}

/// `text` as a number when it is exactly `len` lowercase hex digits (W3C forbids upper case
/// in `traceparent`; a bare id is lowered first by its caller's rules: UUIDs are lowercase).
fn hex(text: &str, len: usize) -> Option<u128> {
    if text.len() != len
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u128::from_str_radix(text, 16).ok()
}

/// Stored with a pending delivery as `{"traceparent", "tracestate"}`, so that a delivery
/// resumed after a restart keeps its trace.
#[derive(Serialize, Deserialize)]
struct Stored {
    traceparent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tracestate: Option<String>,
}

impl Serialize for Trace {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Stored {
            traceparent: self.traceparent(0),
            tracestate: self.state.as_deref().map(str::to_owned),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Trace {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = Stored::deserialize(deserializer)?;
        let (trace_id, flags) = parse_traceparent(&stored.traceparent)
            .ok_or_else(|| serde::de::Error::custom("invalid traceparent"))?;
        let span = stored
            .traceparent
            .get(36..52)
            .and_then(|s| hex(s, 16))
            .unwrap_or(1) as u64;
        Ok(Trace {
            trace_id,
            span_id: span,
            flags,
            state: stored.tracestate.map(Box::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_valid_traceparent_keeps_its_trace_id_and_flags_with_a_new_span() {
        let t = Trace::from_host(Some(PARENT), None, Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(t.hex_ids()[0], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(t.flags, 1);
        assert_eq!(t.state.as_deref(), Some("congo=t61rcWkgMzE"));
        let first = t.traceparent(0);
        assert!(
            first.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{first}"
        );
        assert!(first.ends_with("-01"));
        assert_eq!(first[36..52], t.hex_ids()[1]);
        assert_ne!(
            &first[36..52],
            "b7ad6b7169203331",
            "the host's span is the parent, not ours"
        );
        assert_ne!(
            t.traceparent(1)[36..52],
            first[36..52],
            "a retry is a span of its own"
        );
        let unsampled = PARENT.replace("-01", "-00");
        assert_eq!(Trace::from_host(Some(&unsampled), None, None).unwrap().flags, 0);
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
        ] {
            assert_eq!(Trace::from_host(Some(bad), None, Some("a=b")), None, "{bad:?}");
        }
        // A later version may carry more fields after a hyphen.
        let future = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-comes";
        assert!(Trace::from_host(Some(future), None, None).is_some());
    }

    #[test]
    fn a_bare_trace_id_or_uuid_is_taken_when_no_traceparent_is() {
        let t = Trace::from_host(Some("junk"), Some("4bf92f35-77b3-4da6-a3ce-929d0e0e4736"), None).unwrap();
        assert_eq!(t.hex_ids()[0], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.flags, 1);
        assert_eq!(Trace::from_host(None, Some("not hex"), None), None);
    }

    #[test]
    fn a_malformed_tracestate_is_dropped() {
        let long = "a=".to_owned() + &"b".repeat(600);
        for bad in ["x=1\r\ny=2", long.as_str(), "  "] {
            assert_eq!(
                Trace::from_host(Some(PARENT), None, Some(bad)).unwrap().state,
                None
            );
        }
    }

    #[test]
    fn hex_digits_are_formatted_as_lowercase_zero_padded_hex() {
        for value in [
            0,
            1,
            0xabc,
            u128::from(u64::MAX),
            u128::MAX,
            0x0af7651916cd43dd8448eb211c80319c,
        ] {
            assert_eq!(lower_hex(value, 32), format!("{value:032x}"));
            assert_eq!(lower_hex(value, 16), format!("{:016x}", value as u64));
        }
    }

    #[test]
    fn random_traces_are_valid_and_distinct() {
        let (a, b) = (Trace::random(), Trace::random());
        assert_ne!(a.trace_id, b.trace_id);
        let parsed = Trace::from_host(Some(&a.traceparent(0)), None, None).unwrap();
        assert_eq!(parsed.trace_id, a.trace_id);
    }

    #[test]
    fn a_stored_trace_reads_back_with_its_first_span() {
        let t = Trace::from_host(Some(PARENT), None, Some("k=v")).unwrap();
        let back: Trace = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}
