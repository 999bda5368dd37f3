//! Secret-free error text. Any value of a config may be a credential (a token typed where a
//! key goes, a URL whose path is the secret), so errors name fields and never quote values;
//! URLs are shown as `scheme://host[:port]/…`.

use reqwest::Url;

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

/// `scheme://host[:port]/…`: URL paths and queries are credentials for Slack and others.
pub fn redact(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}/…", url.scheme()),
        None => format!("{}://{host}/…", url.scheme()),
    }
}
