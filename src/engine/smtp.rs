//! Mailing a delivery (`smtp://` and `smtps://` webhooks, `format: email`) with lettre over
//! rustls: STARTTLS when the server offers it (required under `network.require_https`),
//! implicit TLS for `smtps://`, the webhook's `tls.ca_file` trusted, SMTP AUTH when
//! configured. The delivery's body is the email format's `{"subject", "text"}`; the message
//! gets a `Message-ID` from the delivery id, so a retry or a replay is the same message. SMTP
//! 4xx answers (and connection failures) are retried, 5xx fail for good.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::attempt::Answer;
use crate::config::{EmailSettings, Webhook};

/// An SMTP client for one webhook.
pub(crate) type Mailer = AsyncSmtpTransport<Tokio1Executor>;

/// What a delivery's body holds.
#[derive(Deserialize)]
struct Mail {
    subject: String,
    text: String,
}

/// The mailer of an email webhook (None for any other); `require_tls` makes STARTTLS
/// mandatory on smtp://. The error is for `tls.ca_file`.
pub(crate) fn mailer(webhook: &Webhook, require_tls: bool) -> Result<Option<Mailer>, String> {
    let Some(email) = webhook.email.as_ref() else {
        return Ok(None);
    };
    let host = webhook
        .url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let implicit = webhook.url.scheme() == "smtps";
    let mut parameters = TlsParameters::builder(host.to_owned());
    if let Some(pem) = webhook.tls.as_ref().and_then(|t| t.ca_pem.as_deref()) {
        let certificate = Certificate::from_pem(pem).map_err(|e| format!("cannot be used for SMTP: {e}"))?;
        parameters = parameters.add_root_certificate(certificate);
    }
    let parameters = parameters
        .build_rustls()
        .map_err(|e| format!("cannot be used for SMTP: {e}"))?;
    let tls = match (implicit, require_tls) {
        (true, _) => Tls::Wrapper(parameters),
        (false, true) => Tls::Required(parameters),
        (false, false) => Tls::Opportunistic(parameters),
    };
    let port = webhook.url.port().unwrap_or(if implicit { 465 } else { 25 });
    let mut builder = Mailer::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .timeout(Some(webhook.timeout));
    if let Some((user, password)) = &email.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(Some(builder.build()))
}

/// The message of a delivery: its id, its body (`{"subject", "text"}`) and the envelope.
pub(crate) fn message(email: &EmailSettings, id: &uuid::Uuid, body: &[u8]) -> Result<Message, String> {
    let mail: Mail = serde_json::from_slice(body).map_err(|e| format!("not an email body: {e}"))?;
    let mut builder = Message::builder()
        .from(email.from.clone())
        .subject(mail.subject)
        .message_id(Some(format!("<{id}@webhook-notification>")))
        .header(ContentType::TEXT_PLAIN);
    for to in &email.to {
        builder = builder.to(to.clone());
    }
    for cc in &email.cc {
        builder = builder.cc(cc.clone());
    }
    builder.body(mail.text).map_err(|e| e.to_string())
}

/// Mails one delivery; what the server answered, as the retry policy reads it.
pub(crate) async fn send(mailer: &Mailer, email: &EmailSettings, id: &uuid::Uuid, body: &[u8]) -> Answer {
    let body = body.to_vec();
    let message = match message(email, id, &body) {
        Ok(message) => message,
        Err(error) => return Answer::Fail { status: None, error },
    };
    match mailer.send(message).await {
        Ok(response) => Answer::Delivered(u16::from(response.code())),
        Err(e) => {
            let status = e.status().map(u16::from);
            let error = e.to_string();
            match e.is_permanent() {
                true => Answer::Fail { status, error },
                false => Answer::Retry {
                    status,
                    error,
                    after: None::<Duration>,
                },
            }
        }
    }
}

/// The recipients of an email webhook, for a preview's headers.
pub(crate) fn recipients(email: &EmailSettings) -> String {
    email
        .to
        .iter()
        .chain(&email.cc)
        .map(Mailbox::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
