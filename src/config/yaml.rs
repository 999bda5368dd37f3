//! The YAML crate behind one door: every use of `serde_yaml` (archived upstream) goes through
//! here, so a maintained fork such as `serde_norway` replaces it in one commit.

pub(crate) use serde_yaml::Value;

/// Parses YAML text into a document; the error is secret-free (see [`syntax_error`]).
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    serde_yaml::from_str(text).map_err(|e| syntax_error(&e))
}

/// A document as YAML text (for identities and for handing a config entry on).
pub(crate) fn to_text(doc: &Value) -> String {
    serde_yaml::to_string(doc).unwrap_or_default()
}

/// A YAML syntax error as text: what went wrong and where, from the error's location. The
/// parser's own messages quote nothing, but those raised while building the document may
/// quote a key (a duplicate one), and a key may be a secret typed in the wrong place: such a
/// message is reduced to its kind.
fn syntax_error(error: &serde_yaml::Error) -> String {
    let at = error
        .location()
        .map(|l| format!(" at line {} column {}", l.line(), l.column()))
        .unwrap_or_default();
    let text = error.to_string();
    if text.contains("duplicate entry") {
        format!("duplicate key{at}")
    } else if text.contains(": ") {
        format!("invalid document structure{at}")
    } else {
        text
    }
}
