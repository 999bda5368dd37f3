//! `${env.NAME}` expansion over a parsed config document, so each error can name the field
//! it happened in. Runs before validation: the expanded document is what the engine's
//! identity is computed from.

use serde_yaml::Value as Y;

use crate::error::{Error, Result};

/// Replaces `${env.NAME}` in every string of the document; `path` tracks the field.
pub(super) fn expand_env(value: &mut Y, path: &mut String) -> Result<()> {
    match value {
        Y::String(s) if s.contains("${env.") => *s = expand_string(s, path)?,
        Y::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand_env(item, path)?;
                path.truncate(len);
            }
        }
        Y::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key.as_str().unwrap_or("?"));
                expand_env(item, path)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_string(s: &str, field: &str) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${env.") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 6..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::config(field, "`${env.` without a closing `}`"))?;
        let name = &after[..end];
        let value = std::env::var(name)
            .map_err(|_| Error::config(field, format!("environment variable `{name}` is not set")))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
