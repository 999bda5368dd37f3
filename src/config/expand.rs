//! `${env.NAME}` and `${file:/path}` expansion over a parsed config document, so each error
//! can name the field it happened in. Runs before validation: the expanded document is what
//! the engine's identity is computed from. `${file:…}` reads the file's content (Kubernetes
//! and Docker secrets) with one trailing newline removed.

use serde_yaml::Value as Y;

use crate::error::{Error, Result};

/// Replaces `${env.NAME}` and `${file:/path}` in every string of the document; `path`
/// tracks the field.
pub(super) fn expand_env(value: &mut Y, path: &mut String) -> Result<()> {
    match value {
        Y::String(s) if s.contains("${env.") || s.contains("${file:") => *s = expand_string(s, path)?,
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
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let (kind, reference) = match (after.strip_prefix("env."), after.strip_prefix("file:")) {
            (Some(r), _) => ("env", r),
            (_, Some(r)) => ("file", r),
            _ => {
                out.push_str("${");
                rest = after;
                continue;
            }
        };
        let end = reference
            .find('}')
            .ok_or_else(|| Error::config(field, format!("`${{{kind}` without a closing `}}`")))?;
        let name = &reference[..end];
        let value = match kind {
            "env" => std::env::var(name)
                .map_err(|_| Error::config(field, format!("environment variable `{name}` is not set")))?,
            _ => read_secret_file(name)
                .map_err(|e| Error::config(field, format!("cannot read file `{name}`: {e}")))?,
        };
        out.push_str(&value);
        rest = &reference[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A secret file's content without its one trailing newline.
fn read_secret_file(path: &str) -> std::io::Result<String> {
    let mut text = std::fs::read_to_string(path)?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}
