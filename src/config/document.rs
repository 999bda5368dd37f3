//! Reading the parsed document into the schema's types with errors built from structured data
//! — what kind of value was found, what was expected, which field — never from a library's
//! message text, and never quoting a value (any of them may be a credential).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};

use super::yaml::Value;

/// Why a document does not fit the schema, without any value from it.
#[derive(Debug)]
pub(super) enum Mismatch {
    /// A value of the wrong kind (`found` is a kind such as "string", never the value).
    Type { found: String, expected: String },
    /// A value of the right kind that is not allowed.
    Value { found: String, expected: String },
    /// A name that is not one of `expected`.
    Variant { expected: &'static [&'static str] },
    /// A field the schema does not have (its name, when it looks like a field name).
    Field {
        name: String,
        expected: &'static [&'static str],
    },
    /// A required field is absent.
    Missing(&'static str),
    /// A message of our own schema code (it quotes nothing from the config).
    Other(String),
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one_of = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            match names.as_slice() {
                [] => "there are none".to_owned(),
                [one] => format!("expected {one}"),
                _ => format!("expected one of {}", names.join(", ")),
            }
        };
        match self {
            Mismatch::Type { found, expected } => {
                write!(f, "invalid type: found {found}, expected {expected}")
            }
            Mismatch::Value { found, expected } => {
                write!(f, "invalid value: found {found}, expected {expected}")
            }
            Mismatch::Variant { expected } => write!(f, "unknown value, {}", one_of(expected)),
            Mismatch::Field { name, expected } => match super::redact::shown_key(name) {
                "?" => write!(f, "unknown field (its name is not shown), {}", one_of(expected)),
                name => write!(f, "unknown field `{name}`, {}", one_of(expected)),
            },
            Mismatch::Missing(field) => write!(f, "missing field `{field}`"),
            Mismatch::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Mismatch {}

/// The kind of an unexpected value, e.g. "string" for `Unexpected::Str("s3cret")`.
fn kind(unexpected: de::Unexpected<'_>) -> String {
    use de::Unexpected::*;
    match unexpected {
        Bool(_) => "boolean",
        Unsigned(_) | Signed(_) => "integer",
        Float(_) => "floating point number",
        Char(_) => "character",
        Str(_) => "string",
        Bytes(_) => "bytes",
        Unit => "null",
        Option => "optional value",
        NewtypeStruct => "newtype struct",
        Seq => "sequence",
        Map => "map",
        Enum => "enum",
        UnitVariant | NewtypeVariant | TupleVariant | StructVariant => "enum variant",
        Other(_) => "other value",
    }
    .to_owned()
}

impl de::Error for Mismatch {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Mismatch::Other(message.to_string())
    }

    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Mismatch::Type {
            found: kind(unexpected),
            expected: expected.to_string(),
        }
    }

    fn invalid_value(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Mismatch::Value {
            found: kind(unexpected),
            expected: expected.to_string(),
        }
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Mismatch::Variant { expected }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Mismatch::Field {
            name: field.to_owned(),
            expected,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Mismatch::Missing(field)
    }
}

/// A parsed document as a deserializer whose errors are [`Mismatch`]es.
pub(super) struct Document(pub Value);

impl<'de> IntoDeserializer<'de, Mismatch> for Document {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for Document {
    type Error = Mismatch;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (_, Some(i), _) => visitor.visit_i64(i),
                (_, _, Some(f)) => visitor.visit_f64(f),
                _ => Err(Mismatch::Other("a number out of range".into())),
            },
            Value::String(s) => visitor.visit_string(s),
            Value::Sequence(items) => {
                let mut seq = de::value::SeqDeserializer::new(items.into_iter().map(Document));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Value::Mapping(map) => {
                let mut entries =
                    de::value::MapDeserializer::new(map.into_iter().map(|(k, v)| (Document(k), Document(v))));
                let value = visitor.visit_map(&mut entries)?;
                entries.end()?;
                Ok(value)
            }
            Value::Tagged(tagged) => Document(tagged.value).deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Mismatch> {
        match self.0 {
            Value::String(s) => {
                IntoDeserializer::<Mismatch>::into_deserializer(s).deserialize_enum(name, variants, visitor)
            }
            other => Document(other).deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Mismatch> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// Reads `doc` as a `T`; the error names the field path (keys that might be secrets shown as
/// `?`) and says what did not fit, quoting no value.
pub(super) fn read<T: de::DeserializeOwned>(doc: Value) -> Result<T, (String, Mismatch)> {
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(Document(doc), &mut track);
    std::marker::PhantomData::<T>
        .deserialize(deserializer)
        .map_err(|e| (super::redact::shown_path(&track.path()), e))
}
