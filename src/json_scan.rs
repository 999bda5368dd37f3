//! The members of a JSON object found by one pass over its text, for the documents hooks
//! nearly always get (names, ids, nested results, no escapes): serde_json's visitor
//! machinery cost half of a C or Lua hook call for a 33-byte payload. Anything this scan
//! does not read — an escape, a number with an exponent, deep nesting, and any invalid text —
//! is left to serde_json, which reads it or says what is wrong: whatever the scan accepts,
//! serde_json accepts too, with the same members (a property test holds it to that).

/// Nesting deeper than this is left to serde_json (whose own limit is 128).
const MAX_DEPTH: usize = 64;

/// Numbers with more digits are left to serde_json (very long ones are out of its range).
const MAX_DIGITS: usize = 40;

/// The raw text of the members `names` of the JSON object `json` (of repeated keys, the
/// last), or `None` when the text is not an object this scan reads whole.
pub fn object_members<'a, const N: usize>(json: &'a str, names: [&str; N]) -> Option<[Option<&'a str>; N]> {
    let mut scan = Scan { json, at: 0 };
    let mut found = [None; N];
    scan.space();
    scan.eat(b'{')?;
    scan.space();
    if scan.peek()? == b'}' {
        scan.at += 1;
    } else {
        loop {
            let key = scan.string()?;
            scan.space();
            scan.eat(b':')?;
            scan.space();
            let start = scan.at;
            scan.value(1)?;
            if let Some(index) = names.iter().position(|name| *name == key) {
                found[index] = Some(&json[start..scan.at]);
            }
            scan.space();
            match scan.next()? {
                b',' => scan.space(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    scan.space();
    (scan.at == json.len()).then_some(found)
}

/// A position in a document's text.
struct Scan<'a> {
    json: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.json.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// Skips JSON's whitespace (space, tab, line feed, carriage return: serde_json's too).
    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string without escapes or control characters: its contents.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let length = (self.bytes()[start..].iter()).position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        self.at += length;
        self.eat(b'"')?;
        // Quotes are ASCII: both ends are character boundaries of the text.
        self.json.get(start..start + length)
    }

    /// One value at nesting `depth`.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => self.container(depth, true),
            b'[' => self.container(depth, false),
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            _ => self.number(),
        }
    }

    /// An object (`keyed`) or an array, its opening bracket next.
    fn container(&mut self, depth: usize, keyed: bool) -> Option<()> {
        let close = if keyed { b'}' } else { b']' };
        self.at += 1;
        self.space();
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            if keyed {
                self.string()?;
                self.space();
                self.eat(b':')?;
                self.space();
            }
            self.value(depth + 1)?;
            self.space();
            match self.next()? {
                b',' => self.space(),
                byte if byte == close => return Some(()),
                _ => return None,
            }
        }
    }

    fn word(&mut self, word: &[u8]) -> Option<()> {
        self.bytes()[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    /// `-?(0|[1-9][0-9]*)(.[0-9]+)?` — no exponent — of at most [`MAX_DIGITS`] digits.
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            let fraction = self.at;
            self.digits();
            if self.at == fraction {
                return None;
            }
        }
        (self.at - start <= MAX_DIGITS).then_some(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::value::RawValue;
    use serde_json::Value;
    use std::collections::HashMap;

    const NAMES: [&str; 3] = ["name", "result", "isError"];

    /// serde_json's reading of the same members (what `payload` falls back to).
    fn by_serde(json: &str) -> Option<[Option<String>; 3]> {
        let raw: HashMap<String, Box<RawValue>> = serde_json::from_str(json).ok()?;
        Some(NAMES.map(|name| raw.get(name).map(|r| r.get().to_owned())))
    }

    fn scanned(json: &str) -> Option<[Option<String>; 3]> {
        object_members(json, NAMES).map(|found| found.map(|raw| raw.map(str::to_owned)))
    }

    #[test]
    fn reads_the_payloads_hooks_get() {
        let payload = r#"{"name": "search", "result": {"content": [{"type": "text", "text": "ok"}], "isError": false}}"#;
        let [name, result, flag] = object_members(payload, NAMES).unwrap();
        assert_eq!(name, Some(r#""search""#));
        assert_eq!(
            result,
            Some(r#"{"content": [{"type": "text", "text": "ok"}], "isError": false}"#)
        );
        assert_eq!(flag, None);
        let found = object_members(" {\"name\":\"a\",\n\"name\" : -0.5 } \n", NAMES).unwrap();
        assert_eq!(found[0], Some("-0.5"), "the last of repeated keys");
        assert_eq!(object_members("{}", NAMES), Some([None; 3]));
    }

    #[test]
    fn leaves_what_it_does_not_read_to_serde_json() {
        let deep = format!("{{\"a\": {}{}}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        for text in [
            r#"{"n\u0061me": "x"}"#,
            r#"{"name": "a\"b"}"#,
            r#"{"name": 1e3}"#,
            r#"{"name": 01}"#,
            r#"{"name": 1.}"#,
            r#"{"name": -}"#,
            r#"{"name": [1,]}"#,
            r#"{"name": {"a": null], "result": null}"#,
            r#"{"name": [1}}"#,
            r#"{"name": {"a" 1}}"#,
            r#"{"name": tru}"#,
            "{\"name\": \"tab\there\"}",
            r#"{"name": "x"} x"#,
            r#"{"name": "x""#,
            r#"["name"]"#,
            "",
            &deep,
        ] {
            assert_eq!(scanned(text), None, "{text}");
        }
        let long = format!("{{\"name\": {}}}", "9".repeat(MAX_DIGITS + 1));
        assert_eq!(scanned(&long), None);
    }

    /// Texts shaped like hook payloads, some valid, some with one fault or more where a
    /// scan could go wrong: invalid or unusual leaves, separators, keys, nesting.
    fn text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            8 => prop::sample::select(vec![
                "null", "true", "false", "0", "-12", "3.25", "-0.5", "\"search\"", "\"é ü\"", "\"\"", "{}", "[]",
            ]),
            1 => prop::sample::select(vec![
                "1.", "01", "-", "+1", ".5", "1e5", "2E-3", "tru", "nul", "\"x\ty\"", "\"a\\\"b\"",
                "\"\\u0041\"", "\"open", "'x'", "",
            ]),
        ]
        .prop_map(str::to_owned);
        let value = leaf.prop_recursive(4, 32, 4, |inner| {
            let separator = prop_oneof![
                8 => prop::sample::select(vec![",", ", ", ",\n  "]),
                1 => prop::sample::select(vec![",,", "", " ;"]),
            ];
            let key = prop_oneof![
                8 => prop::sample::select(vec!["\"name\"", "\"result\"", "\"isError\"", "\"k\""]),
                1 => prop::sample::select(vec!["\"n\\u0061me\"", "name", "1", "\"na\tme\""]),
            ];
            let colon = prop_oneof![8 => Just(": "), 1 => prop::sample::select(vec!["", " ", "::"])];
            // What ends a container: mostly its own bracket, else a trailing comma or the other.
            let end = |own: &str| {
                let other = "]}".replace(own, "");
                prop_oneof![8 => Just(own.to_owned()), 1 => Just(format!(",{own}")), 1 => Just(other)]
            };
            prop_oneof![
                (
                    prop::collection::vec(inner.clone(), 0..4),
                    separator.clone(),
                    end("]")
                )
                    .prop_map(|(items, sep, end)| format!("[{}{end}", items.join(sep))),
                (
                    prop::collection::vec((key, colon, inner), 0..4),
                    separator,
                    end("}")
                )
                    .prop_map(|(members, sep, end)| {
                        let members: Vec<String> = members
                            .into_iter()
                            .map(|(k, c, v)| format!("{k}{c}{v}"))
                            .collect();
                        format!("{{{}{end}", members.join(sep))
                    }),
            ]
        });
        let around = prop::sample::select(vec!["", " ", "\n", " x"]);
        (around.clone(), value.clone(), value, around).prop_map(|(before, name, result, after)| {
            format!(r#"{before}{{"name": {name}, "result": {result}}}{after}"#)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn what_it_reads_serde_json_reads_the_same(text in text()) {
            if let Some(found) = scanned(&text) {
                prop_assert_eq!(Some(found), by_serde(&text), "{}", text);
            }
            // Documents of the usual kind are read by the scan, not handed on.
            let exponent = text.contains("1e5") || text.contains("2E-3");
            let usual = serde_json::from_str::<Value>(&text).is_ok_and(|v| v.is_object())
                && !text.contains('\\') && !exponent;
            prop_assert!(!usual || scanned(&text).is_some(), "{}", text);
        }
    }
}
