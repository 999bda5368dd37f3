//! `authentication` and `headers`: credentials become sensitive headers or a signer; header
//! names and values are checked (no CR/LF), and values are never quoted in errors.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

use super::schema::{AuthType, RawAuth};
use crate::error::{Error, Result};
use crate::signing::{decode_standard_secret, HmacAlgorithm, Secret, Signer};

impl RawAuth {
    /// Adds static credential headers and returns the signer for the auth type.
    pub(super) fn apply(self, at: &str, headers: &mut HeaderMap) -> Result<Signer> {
        let field = |name: &str| format!("{at}.{name}");
        let required = |value: Option<String>, name: &str| {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Error::config(field(name), "is required for this authentication type"))
        };
        match self.kind {
            AuthType::None => Ok(Signer::None),
            AuthType::Bearer => {
                let token = required(self.token, "token")?;
                let value = header_value(&field("token"), &format!("Bearer {token}"), true)?;
                headers.insert(AUTHORIZATION, value);
                Ok(Signer::None)
            }
            AuthType::ApiKey => {
                let key = required(self.api_key, "api_key")?;
                let name = self.api_key_header.unwrap_or_else(|| "X-API-Key".into());
                let name = header_name(&field("api_key_header"), &name)?;
                headers.insert(name, header_value(&field("api_key"), &key, true)?);
                Ok(Signer::None)
            }
            AuthType::Hmac => {
                let key = required(self.hmac_secret, "hmac_secret")?;
                let algorithm = self.hmac_algorithm.unwrap_or_else(|| "sha256".into());
                let algorithm = HmacAlgorithm::from_name(&algorithm).ok_or_else(|| {
                    Error::config(
                        field("hmac_algorithm"),
                        "unknown algorithm (sha1, sha224, sha256, sha384, sha512)",
                    )
                })?;
                let header = self.hmac_header.unwrap_or_else(|| "X-Signature".into());
                Ok(Signer::Hmac {
                    algorithm,
                    key: Secret(key.into_bytes()),
                    header: header_name(&field("hmac_header"), &header)?,
                })
            }
            AuthType::StandardWebhooks => {
                let (name, secrets) = match (self.secrets, self.hmac_secret) {
                    (Some(list), _) if !list.is_empty() => ("secrets", list),
                    (_, Some(one)) => ("hmac_secret", vec![one]),
                    _ => {
                        return Err(Error::config(
                            field("secrets"),
                            "is required for standard_webhooks",
                        ))
                    }
                };
                let keys = secrets
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        decode_standard_secret(s).ok_or_else(|| {
                            let at = if name == "secrets" {
                                format!("secrets[{i}]")
                            } else {
                                name.into()
                            };
                            Error::config(field(&at), "must be `whsec_` followed by a base64 key")
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Signer::StandardWebhooks { keys })
            }
        }
    }
}

/// A header name; the name is a config key, not a value, so the error may quote it.
pub(super) fn header_name(field: &str, name: &str) -> Result<HeaderName> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| Error::config(field, "is not a valid header name"))
}

/// A header value; CR/LF (header injection) and other control bytes are refused. The value
/// itself is never quoted in the error, since it may be a credential.
/// Whether a `headers` entry holds a credential, to be masked wherever it is shown:
/// Authorization, Proxy-Authorization, Cookie, X-API-Key, the webhook's `api_key_header`, and
/// any name containing `token`, `secret`, `key` or `auth` (case-insensitive).
pub(super) fn sensitive_header(name: &str, api_key_header: Option<&str>) -> bool {
    let name = name.to_ascii_lowercase();
    let named = ["authorization", "proxy-authorization", "cookie", "x-api-key"].contains(&name.as_str())
        || api_key_header.is_some_and(|h| h.eq_ignore_ascii_case(&name));
    named
        || ["token", "secret", "key", "auth"]
            .iter()
            .any(|word| name.contains(word))
}

pub(super) fn header_value(field: &str, value: &str, sensitive: bool) -> Result<HeaderValue> {
    if value.contains(['\r', '\n']) {
        return Err(Error::config(field, "contains CR/LF, which would inject headers"));
    }
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| Error::config(field, "contains bytes not allowed in an HTTP header"))?;
    value.set_sensitive(sensitive);
    Ok(value)
}
