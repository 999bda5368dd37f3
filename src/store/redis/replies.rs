//! Reading the untyped replies of scripts and stream commands (`[id, [field, value, …]]`).

use redis::Value;

/// The elements of an array reply (none for anything else).
pub(super) fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

/// The element at `index` of an array reply (Nil when there is none).
pub(super) fn item(value: &Value, index: usize) -> &Value {
    items(value).get(index).unwrap_or(&Value::Nil)
}

/// The bytes of a string reply.
pub(super) fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

/// A string reply as text (lossy UTF-8).
pub(super) fn text(value: &Value) -> Option<String> {
    bytes(value).map(|b| String::from_utf8_lossy(b).into_owned())
}

/// The value of `name` in a stream entry `[id, [field, value, …]]`.
pub(super) fn field<'a>(entry: &'a Value, name: &str) -> Option<&'a [u8]> {
    items(item(entry, 1))
        .chunks(2)
        .find(|pair| bytes(&pair[0]) == Some(name.as_bytes()))
        .and_then(|pair| bytes(pair.get(1)?))
}
