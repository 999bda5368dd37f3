//! Secret-free error text. Any value of a config may be a credential (a token typed where a
//! key goes, a URL whose path is the secret), so errors name fields and never quote values;
//! URLs are shown as `scheme://host[:port]/…`.

use reqwest::Url;

/// A YAML syntax error as text. libyaml's own messages quote nothing; messages raised while
/// building the document carry a path of keys and may quote one (a duplicate key), and any
/// of those may be a secret: they are reduced to what went wrong and where.
pub(super) fn yaml_error(error: &serde_yaml::Error) -> String {
    let text = error.to_string();
    let at = error
        .location()
        .map(|l| format!(" at line {} column {}", l.line(), l.column()))
        .unwrap_or_default();
    if text.contains("duplicate entry") {
        format!("duplicate key{at}")
    } else if text.contains(": ") {
        format!("invalid document structure{at}")
    } else {
        text
    }
}

/// Whether a map key is shown in errors: one that looks like a field, event or header name.
/// Anything else (a URL or a token typed where a key goes) might be a secret.
pub(super) fn shown_key(key: &str) -> &str {
    let name_like = (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if name_like {
        key
    } else {
        "?"
    }
}

/// A deserializer's path as a field path, keys that might be secrets shown as `?`.
pub(super) fn shown_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(shown_key(key));
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(shown_key(variant));
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// A deserializer message with any quoted config value taken out: serde writes
/// ``invalid type: string "Bearer s3cret", expected …`` and ``unknown variant `x`, …``.
/// What remains says what was found (its type) and what was expected.
pub(super) fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let found = rest.split(['"', '`']).next().unwrap_or_default().trim();
            let found = found.trim_end_matches(',').trim();
            let expected = rest.rfind(", expected ").map_or("", |i| &rest[i + 2..]);
            return format!("{prefix}found {found}, {expected}")
                .trim_end_matches(", ")
                .into();
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let expected = rest.rfind(", expected ").map_or("", |i| &rest[i + 2..]);
        return format!("unknown value, {expected}");
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // The name may itself hold a backtick: the message's own part follows the last "`, ".
        let end = rest
            .rfind("`, expected ")
            .or_else(|| rest.rfind("`, there are no fields"));
        let (name, expected) = match end {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest.trim_end_matches('`'), ""),
        };
        return match shown_key(name) {
            "?" => format!("unknown field (its name is not shown){expected}"),
            name => format!("unknown field `{name}`{expected}"),
        };
    }
    if message.starts_with("duplicate ") {
        return "duplicate key".into();
    }
    without_duplicate_keys(message)
}

/// serde_yaml's `duplicate entry with key "<key>" at line …` without the key.
pub(super) fn without_duplicate_keys(message: &str) -> String {
    const MARK: &str = "duplicate entry with key ";
    let Some(start) = message.find(MARK) else {
        return message.to_owned();
    };
    let rest = &message[start + MARK.len()..];
    let end = rest.find(" at line ").unwrap_or(rest.len());
    format!("{}duplicate key{}", &message[..start], &rest[end..])
}

/// `scheme://host[:port]/…`: URL paths and queries are credentials for Slack and others.
pub fn redact(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}/…", url.scheme()),
        None => format!("{}://{host}/…", url.scheme()),
    }
}
