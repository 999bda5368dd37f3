//! The environment's proxy (`HTTP_PROXY`) applies to webhooks without a `proxy` setting, and
//! `proxy: none` bypasses it. A file of its own: the variable is process-wide.

mod common;

use std::time::Duration;

use serde_json::json;
use webhook_notification::{Event, Notifier};

use common::receiver::{Receiver, Reply};

#[test]
fn the_environment_proxy_applies_unless_proxy_is_none() {
    let target = Receiver::ok();
    let proxy = Receiver::start(|_| Reply::status(200));
    std::env::set_var("HTTP_PROXY", proxy.url(""));
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");
    let config = format!(
        "webhooks:\n  - {{url: '{0}', events: [violation]}}\n  - {{url: '{1}', events: [violation], proxy: none}}\n",
        target.url("/via-env"),
        target.url("/direct")
    );
    let n = Notifier::from_config_text(&config, None).unwrap();
    n.notify(Event::Violation, &json!({}), None, None).unwrap();
    assert!(n.flush(Duration::from_secs(20)));
    let proxied: Vec<String> = proxy.received().into_iter().map(|r| r.uri).collect();
    let direct: Vec<String> = target.received().into_iter().map(|r| r.path).collect();
    assert_eq!(
        (proxied, direct),
        (vec![target.url("/via-env")], vec!["/direct".to_owned()])
    );
}
