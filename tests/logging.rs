//! Log lines show each attempt at DEBUG and never a secret: no token, key, HMAC secret,
//! URL path or query.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use webhook_notification::{Hook, Notifier};

use common::receiver::{dead_port, Receiver, Reply};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        LINES
            .lock()
            .unwrap()
            .push(format!("{} {}", record.level(), record.args()));
    }
    fn flush(&self) {}
}

#[test]
fn debug_logs_show_attempts_and_no_secrets() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let rx = Receiver::start(|n| Reply::status(if n == 0 { 500 } else { 200 }));
    let config = format!(
        "queue_capacity: 1\nwebhooks:\n  - {{url: '{}', events: [tool_error], retry_delay: 100, authentication: {{type: bearer, token: SECRET-TOKEN}}}}\n  - {{url: 'http://127.0.0.1:{}/SECRET-PATH?k=SECRET-QUERY', events: [tool_error], retry_attempts: 1, retry_delay: 100, authentication: {{type: hmac, hmac_secret: SECRET-HMAC}}}}\n",
        rx.url("/services/SECRET-SLACK"),
        dead_port()
    );
    let n = Notifier::from_config_text(&config, None).unwrap();
    let failing = json!({"name": "t", "result": {"isError": true}});
    n.invoke(Hook::ToolPostInvoke, failing.clone(), &json!({}))
        .unwrap();
    n.invoke(Hook::ToolPostInvoke, failing, &json!({})).unwrap(); // queue full: logged as a drop
    assert!(n.flush(Duration::from_secs(10)));
    // A delivery's last line may be written just after flush saw it end (CI once ran the
    // assertions in between): wait for it.
    common::wait_until("the failed delivery's line", Duration::from_secs(10), || {
        LINES
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("failed after 2 attempts"))
    });
    let lines = LINES.lock().unwrap().clone();
    let text = lines.join("\n");
    assert!(text.contains("attempt 1: HTTP 500; retrying"), "{text}");
    assert!(text.contains("attempt 2: HTTP 200"), "{text}");
    assert!(text.contains("failed after 2 attempts: connect error"), "{text}");
    assert!(text.contains("queue full"), "{text}");
    assert!(!text.contains("SECRET"), "{text}");
    let stats = n.stats().to_json();
    assert!(!stats.contains("SECRET"), "{stats}");
}
