//! The demo: a receiver on 127.0.0.1, the original plugin's advanced config pointed at it,
//! every hook fired plus violations, then what the receiver got and the stats.
//!
//! Run with `cargo run --release --example demo`.

#[path = "../tests/common/receiver.rs"]
mod receiver;

use std::time::Duration;

use hmac::{Mac, SimpleHmac};
use serde_json::json;
use webhook_notification::{Hook, Notifier};

const HMAC_SECRET: &str = "demo-hmac-secret";

fn main() {
    let rx = receiver::Receiver::ok();
    std::env::set_var("DEMO_RECEIVER", rx.url(""));
    std::env::set_var("SLACK_WEBHOOK_TOKEN", "demo-slack-token");
    std::env::set_var("WEBHOOK_HMAC_SECRET", HMAC_SECRET);
    std::env::set_var("MONITORING_API_KEY", "demo-api-key");
    webhook_notification::init_stderr();

    let config = include_str!("advanced.yaml");
    let notifier =
        Notifier::from_config_text(config, Some("WebhookNotificationPlugin")).expect("config loads");
    let context = |violation: Option<serde_json::Value>| {
        json!({"global_context": {"request_id": "req-12345", "user": "user@example.com",
               "tenant_id": "tenant-abc", "server_id": "server-xyz"}, "violation": violation})
    };
    let calls = [
        (
            Hook::ToolPreInvoke,
            json!({"name": "search", "args": {"q": "x"}}),
            context(None),
        ),
        (
            Hook::ToolPostInvoke,
            json!({"name": "search", "result": {"content": [{"type": "text", "text": "ok"}]}}),
            context(None),
        ),
        (
            Hook::ToolPostInvoke,
            json!({"name": "search", "result": {"isError": true, "content": [{"type": "text", "text": "backend down"}]}}),
            context(None),
        ),
        (
            Hook::PromptPreFetch,
            json!({"prompt_id": "greeting", "args": {}}),
            context(None),
        ),
        (
            Hook::PromptPostFetch,
            json!({"prompt_id": "greeting", "result": {"messages": []}}),
            context(None),
        ),
        (
            Hook::ResourcePreFetch,
            json!({"uri": "file:///etc/motd"}),
            context(None),
        ),
        (
            Hook::ResourcePostFetch,
            json!({"uri": "file:///etc/motd", "content": {"text": "hi"}}),
            context(None),
        ),
        (
            Hook::ToolPreInvoke,
            json!({"name": "search"}),
            context(Some(
                json!({"reason": "Rate limit exceeded", "description": "User user@example.com rate limit exceeded", "code": "RATE_LIMIT", "details": {"remaining": 0, "reset_in": 45}}),
            )),
        ),
        (
            Hook::PromptPreFetch,
            json!({"prompt_id": "p"}),
            context(Some(
                json!({"reason": "PII detected", "description": "SSN in prompt", "code": "PII", "details": {}}),
            )),
        ),
        (
            Hook::ToolPreInvoke,
            json!({"name": "search"}),
            context(Some(
                json!({"reason": "Denied tool", "description": "search is on the deny list \"prod\"", "code": "DENY", "details": {}}),
            )),
        ),
    ];
    for (hook, payload, ctx) in calls {
        let result = notifier.invoke(hook, payload, &ctx).expect("invoke");
        match (result.event, result.queued) {
            (None, _) => println!("{hook:?} -> no event"),
            (Some(e), true) => println!("{hook:?} -> {} queued", e.name()),
            (Some(e), false) => println!(
                "{hook:?} -> {} (no webhook of this config subscribes to it)",
                e.name()
            ),
        }
    }
    assert!(notifier.flush(Duration::from_secs(30)), "deliveries finish");

    println!("\nThe receiver got {} requests:", rx.received().len());
    for r in rx.received() {
        println!("\nPOST {}", r.path);
        for name in [
            "x-webhook-event",
            "x-webhook-delivery",
            "authorization",
            "x-api-key",
            "x-hub-signature-256",
            "user-agent",
        ] {
            if let Some(v) = r.header(name) {
                println!("  {name}: {v}");
            }
        }
        if let Some(sig) = r.header("x-hub-signature-256") {
            let mut mac = <SimpleHmac<sha2::Sha256> as Mac>::new_from_slice(HMAC_SECRET.as_bytes()).unwrap();
            mac.update(&r.body);
            let hex: String = mac
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            println!(
                "  signature verified: {}",
                if sig == format!("sha256={hex}") {
                    "yes"
                } else {
                    "NO"
                }
            );
        }
        println!("  body: {}", String::from_utf8_lossy(&r.body));
    }
    println!(
        "\nstats: {}",
        serde_json::to_string_pretty(&notifier.stats()).unwrap()
    );
}
