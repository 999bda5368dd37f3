//! A webhook's `email` (DESIGN "Silences, mute time intervals, email"): for `smtp://` and
//! `smtps://` URLs, the envelope — `from`, `to`, `cc` —, a `subject` template (default: the
//! channel summary line) and SMTP AUTH `username`/`password` (masked like any credential).

use lettre::message::Mailbox;

use super::fields::compile;
use super::schema::RawEmail;
use crate::error::{Error, Result};
use crate::template::Template;

/// How a webhook's notifications are mailed.
pub struct EmailSettings {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// Renders the subject (a JSON string template); None: the summary line.
    pub subject: Option<Template>,
    /// SMTP AUTH (a secret: never shown).
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSettings")
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

/// Builds `email` for the webhook at `at`.
pub(super) fn build(at: &str, raw: RawEmail) -> Result<EmailSettings> {
    let field = |name: &str| format!("{at}.email.{name}");
    let mailbox = |name: String, text: &str| {
        text.trim().parse::<Mailbox>().map_err(|_| {
            Error::config(
                name,
                "is not an email address (`ops@example.com` or `Ops <ops@example.com>`)",
            )
        })
    };
    let list = |name: &str, texts: &[String]| {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| mailbox(format!("{}[{i}]", field(name)), t))
            .collect::<Result<Vec<_>>>()
    };
    let to = list("to", &raw.to)?;
    if to.is_empty() {
        return Err(Error::config(field("to"), "lists no recipient"));
    }
    // The subject is a plain-text template: compiled as the JSON string it renders, so every
    // `{{ }}` inside is encoded for a string and the result read back as text.
    let subject = match &raw.subject {
        Some(text) => {
            let source = serde_json::to_string(text).expect("a string serialises");
            Some(compile(&field("subject"), &source)?)
        }
        None => None,
    };
    let credentials = match (raw.username, raw.password) {
        (Some(user), Some(password)) => Some((user, password)),
        (None, None) => None,
        _ => {
            return Err(Error::config(
                field("password"),
                "username and password go together",
            ))
        }
    };
    Ok(EmailSettings {
        from: mailbox(field("from"), &raw.from)?,
        to,
        cc: list("cc", &raw.cc)?,
        subject,
        credentials,
    })
}
