//! Compact JSON text written straight into a byte buffer: what every event's body is made
//! of. The bytes are those of `serde_json::to_vec` (a property test holds them to it); the
//! writer only skips serde's serializer layers, whose per-value cost was a fifth of the
//! delivery thread's instructions for an event's `metadata` and `violation`.

use serde_json::Value;

/// The bytes a JSON string cannot hold as they are: control characters, `"` and `\` (a
/// table: one load a byte, for every string value of every event).
const ESCAPED: [bool; 256] = {
    let mut escaped = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        escaped[byte] = true;
        byte += 1;
    }
    escaped[b'"' as usize] = true;
    escaped[b'\\' as usize] = true;
    escaped
};

/// Writes `value` as compact JSON.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => serde_json::to_writer(&mut *out, number).expect("a number writes to memory"),
        Value::String(text) => write_str(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            out.push(b'{');
            for (index, (key, member)) in members.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_value(out, member);
            }
            out.push(b'}');
        }
    }
}

/// Writes `text` as a JSON string, quotes included.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    write_string_contents(out, text);
    out.push(b'"');
}

/// Writes `text` escaped as the contents of a JSON string (without its quotes). Most values
/// (names, ids, timestamps) need no escape: they are copied as they are.
pub fn write_string_contents(out: &mut Vec<u8>, text: &str) {
    if !needs_escape(text.as_bytes()) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let start = out.len();
    serde_json::to_writer(&mut *out, text).expect("a string writes to memory");
    let end = out.len() - 1; // the closing quote
    out.copy_within(start + 1..end, start);
    out.truncate(end - 1);
}

/// Whether any of `bytes` is [`ESCAPED`]: eight bytes at a time, the last few by the table.
fn needs_escape(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let escaped_in = |word: &[u8]| {
        let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        any_byte_below(word, 0x20)
            || any_byte_below(word ^ repeated(b'"'), 1)
            || any_byte_below(word ^ repeated(b'\\'), 1)
    };
    words.any(escaped_in) || words.remainder().iter().any(|&b| ESCAPED[usize::from(b)])
}

/// `byte` in each of a word's eight bytes.
const fn repeated(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// Whether any byte of `word` is below `limit` (at most 128): Bit Twiddling Hacks'
/// "hasless", whose answer is exact for the word as a whole.
const fn any_byte_below(word: u64, limit: u8) -> bool {
    word.wrapping_sub(repeated(limit)) & !word & repeated(0x80) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any JSON value a host could send: every kind, nested, with strings that need escapes.
    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
            "[\"\\\\\\n\\t\u{0}-\u{1f}\u{7f}é😀a]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn a_string_needs_escapes_where_the_table_says(
            plain in "[a-z #!\u{7f}\u{80}-\u{ff}é]{8,40}",
            at in any::<prop::sample::Index>(),
        ) {
            // Every ASCII byte, alone among bytes that need no escape, at some place in a word.
            let boundaries: Vec<usize> = (0..=plain.len()).filter(|&i| plain.is_char_boundary(i)).collect();
            let at = *at.get(&boundaries);
            for odd in '\u{0}'..='\u{7f}' {
                let mut text = plain.clone();
                text.insert(at, odd);
                let by_table = text.bytes().any(|b| ESCAPED[usize::from(b)]);
                prop_assert_eq!(needs_escape(text.as_bytes()), by_table, "{:?}", text);
            }
            prop_assert!(!needs_escape(plain.as_bytes()));
        }

        #[test]
        fn writes_what_serde_json_writes(value in any_value()) {
            let mut out = b"x".to_vec();
            write_value(&mut out, &value);
            let expected = serde_json::to_vec(&value).unwrap();
            prop_assert_eq!(&out[1..], expected.as_slice());
        }
    }
}
