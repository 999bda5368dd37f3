//! Email webhooks' config mistakes fail at load naming the field, and a preview shows the
//! message as it would be mailed (the SMTP round trips are in tests/python/test_email.py,
//! against a real aiosmtpd server).

mod common;

use serde_json::json;
use webhook_notification::{preview, Config, Event};

#[test]
fn email_mistakes_fail_at_load_naming_the_field() {
    let email = "email: {from: gw@example.com, to: [ops@example.com]}";
    for (webhook, named) in [
        ("url: 'smtp://mail.example.com'".to_owned(), "webhooks[0].email"),
        (
            format!("url: 'https://h.example/x', {email}"),
            "webhooks[0].email",
        ),
        (
            "url: 'https://h.example/x', format: email".to_owned(),
            "webhooks[0].format",
        ),
        (
            format!("url: 'smtp://mail.example.com', format: slack, {email}"),
            "webhooks[0].format",
        ),
        (
            "url: 'smtp://m.example', email: {from: 'not an address', to: [a@example.com]}".to_owned(),
            "webhooks[0].email.from",
        ),
        (
            "url: 'smtp://m.example', email: {from: a@example.com, to: [b@example.com, 'x@']}".to_owned(),
            "webhooks[0].email.to[1]",
        ),
        (
            "url: 'smtp://m.example', email: {from: a@example.com, to: []}".to_owned(),
            "webhooks[0].email.to",
        ),
        (
            "url: 'smtp://m.example', email: {from: a@example.com, to: [b@example.com], username: u}"
                .to_owned(),
            "webhooks[0].email.password",
        ),
        (
            "url: 'smtp://m.example', email: {from: a@example.com, to: [b@example.com], subject: '{{'}"
                .to_owned(),
            "webhooks[0].email.subject",
        ),
        (
            format!("url: 'smtp://m.example', batch: {{}}, {email}"),
            "webhooks[0].format",
        ),
    ] {
        common::assert_config_error(&format!("webhooks: [{{{webhook}}}]"), named);
    }
}

#[test]
fn a_preview_is_the_message_with_its_recipients_and_no_password() {
    let config = Config::load(
        "webhooks: [{url: 'smtps://mail.example.com', events: [violation], email: {from: 'Gateway <gw@example.com>',
          to: [ops@example.com], cc: [audit@example.com], username: ops, password: hunter22,
          subject: 'Violation by {{user}}'}}]",
    )
    .unwrap();
    let context = json!({"user": "eve \"the\" <attacker>", "request_id": "r-1"});
    let shown = preview(
        &config,
        "gw",
        Event::Violation,
        &context,
        Some(json!({"reason": "denied"})),
        None,
        1,
    )
    .unwrap();
    assert_eq!(
        shown[0].headers,
        [(
            "rcpt-to".to_owned(),
            "ops@example.com, audit@example.com".to_owned()
        )]
    );
    let body = &shown[0].body;
    assert!(body.contains("From: Gateway <gw@example.com>"), "{body}");
    assert!(
        body.contains("Subject: Violation by eve \"the\" <attacker>") || body.contains("Subject: =?utf-8?"),
        "{body}"
    );
    assert!(
        body.contains("Message-ID: <") && body.contains("denied"),
        "{body}"
    );
    assert!(!body.contains("hunter22"));
}
