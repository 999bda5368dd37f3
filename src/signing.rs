//! Request signatures: `hmac` (`<algorithm>=<hex>` of the exact body, GitHub's scheme with
//! sha256) and Standard Webhooks (`webhook-id`/`webhook-timestamp`/`webhook-signature`).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Mac, SimpleHmac};
use reqwest::header::{HeaderName, HeaderValue};

/// A secret byte string: never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(crate) Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The digest behind an `hmac` signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HmacAlgorithm {
    /// Parses the config name (`sha1`, `sha224`, `sha256`, `sha384`, `sha512`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "sha1" => Self::Sha1,
            "sha224" => Self::Sha224,
            "sha256" => Self::Sha256,
            "sha384" => Self::Sha384,
            "sha512" => Self::Sha512,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha224 => "sha224",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    fn mac(self, key: &[u8], body: &[u8]) -> Vec<u8> {
        fn run<D: Mac + hmac::digest::KeyInit>(key: &[u8], body: &[u8]) -> Vec<u8> {
            let mut mac =
                <D as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
            mac.update(body);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Self::Sha1 => run::<SimpleHmac<sha1::Sha1>>(key, body),
            Self::Sha224 => run::<SimpleHmac<sha2::Sha224>>(key, body),
            Self::Sha256 => run::<SimpleHmac<sha2::Sha256>>(key, body),
            Self::Sha384 => run::<SimpleHmac<sha2::Sha384>>(key, body),
            Self::Sha512 => run::<SimpleHmac<sha2::Sha512>>(key, body),
        }
    }
}

/// `<algorithm>=<lowercase hex HMAC of body>`.
pub fn hmac_signature(algorithm: HmacAlgorithm, key: &[u8], body: &[u8]) -> String {
    let hex: String = algorithm
        .mac(key, body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}={hex}", algorithm.name())
}

/// Decodes a Standard Webhooks secret `whsec_<base64 key>` (the prefix is optional).
pub fn decode_standard_secret(secret: &str) -> Option<Secret> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    BASE64.decode(encoded).ok().filter(|k| !k.is_empty()).map(Secret)
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` for one key.
pub fn standard_signature(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let signed = [id.as_bytes(), b".", timestamp.to_string().as_bytes(), b".", body].concat();
    format!("v1,{}", BASE64.encode(HmacAlgorithm::Sha256.mac(key, &signed)))
}

/// How a webhook's requests are signed; computed per attempt over the exact body sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signer {
    /// No signature header.
    None,
    /// `header: <algorithm>=<hex>`.
    Hmac {
        algorithm: HmacAlgorithm,
        key: Secret,
        header: HeaderName,
    },
    /// Standard Webhooks with one signature per key (several keys for rotation).
    StandardWebhooks { keys: Vec<Secret> },
}

impl Signer {
    /// The signature headers for `body`, sent as delivery `id` at unix time `timestamp`.
    pub fn headers(&self, id: &str, timestamp: u64, body: &[u8]) -> Vec<(HeaderName, HeaderValue)> {
        let value = |s: String| HeaderValue::try_from(s).expect("signatures are ASCII");
        match self {
            Signer::None => Vec::new(),
            Signer::Hmac {
                algorithm,
                key,
                header,
            } => vec![(header.clone(), value(hmac_signature(*algorithm, &key.0, body)))],
            Signer::StandardWebhooks { keys } => {
                let signatures: Vec<String> = keys
                    .iter()
                    .map(|k| standard_signature(&k.0, id, timestamp, body))
                    .collect();
                vec![
                    (HeaderName::from_static("webhook-id"), value(id.to_owned())),
                    (
                        HeaderName::from_static("webhook-timestamp"),
                        value(timestamp.to_string()),
                    ),
                    (
                        HeaderName::from_static("webhook-signature"),
                        value(signatures.join(" ")),
                    ),
                ]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_published_example() {
        assert_eq!(
            hmac_signature(
                HmacAlgorithm::Sha256,
                b"It's a Secret to Everybody",
                b"Hello, World!"
            ),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn standard_webhooks_published_example() {
        let key = decode_standard_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            standard_signature(
                &key.0,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn every_algorithm_names_itself_and_has_its_digest_length() {
        for (name, hex_len) in [
            ("sha1", 40),
            ("sha224", 56),
            ("sha256", 64),
            ("sha384", 96),
            ("sha512", 128),
        ] {
            let sig = hmac_signature(HmacAlgorithm::from_name(name).unwrap(), b"k", b"body");
            let (prefix, hex) = sig.split_once('=').unwrap();
            assert_eq!((prefix, hex.len()), (name, hex_len));
        }
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret(b"hunter2".to_vec())), "Secret(***)");
    }
}
