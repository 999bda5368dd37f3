//! `${env.NAME}` and `${file:/path}` expansion over a parsed config document, so each error
//! can name the field it happened in. Runs before validation: the expanded document is what
//! the engine's identity is computed from. `${file:…}` reads the file's content (Kubernetes
//! and Docker secrets) with one trailing newline removed.

use super::yaml::Value as Y;

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
                path.push_str(super::redact::shown_key(key.as_str().unwrap_or("?")));
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
            "env" if !is_variable_name(name) => {
                return Err(Error::config(
                    field,
                    "`${env.` must be followed by a variable name and `}`",
                ))
            }
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

/// `[A-Za-z_][A-Za-z0-9_]*`: only such a name is quoted in an error.
fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Largest file a config may read (a secret, a template, a certificate).
const MAX_FILE: u64 = 1 << 20;

/// A file a config names, read at load: a regular file (so `/dev/zero` or a FIFO cannot
/// hang the load) of at most 1 MiB. The error says why, never what the file holds.
pub(crate) fn read_config_file(path: &str) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking, so that opening a FIFO (which would wait for a writer) returns at once
    // and is refused below; reads of a regular file are unaffected.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    if metadata.len() > MAX_FILE {
        return Err(Error::new(ErrorKind::InvalidInput, "larger than 1 MiB"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A secret file's content without its one trailing newline.
fn read_secret_file(path: &str) -> std::io::Result<String> {
    let bytes = read_config_file(path)?;
    let mut text = String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}
