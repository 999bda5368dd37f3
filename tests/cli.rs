//! The `webhook-notification` binary as operators run it: real processes, real receivers.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use webhook_notification::{Event, Notifier};

use common::receiver::{Receiver, Reply};

const BIN: &str = env!("CARGO_BIN_EXE_webhook-notification");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("LOG_LEVEL", "off")
        .output()
        .expect("the CLI runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A file written in a directory of its own, removed when dropped.
struct Written {
    _dir: common::TempDir,
    path: std::path::PathBuf,
}

impl std::ops::Deref for Written {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

fn write(name: &str, content: &str) -> Written {
    let dir = common::TempDir::new("webhook-cli-test");
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    Written { _dir: dir, path }
}

#[test]
fn check_reports_field_paths_and_exit_codes() {
    let good = write(
        "good.yaml",
        "webhooks: [{url: 'https://h.example/x', events: [violation]}]\n",
    );
    let out = run(&["check", good.to_str().unwrap()]);
    assert!(
        out.status.success() && text(&out).contains("ok"),
        "{}",
        text(&out)
    );
    let bad = write(
        "bad.yaml",
        "webhooks: [{url: 'https://h.example/x', retry_attempts: 99}]\n",
    );
    let out = run(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("webhooks[0].retry_attempts"),
        "{}",
        text(&out)
    );
    let out = run(&["--json", "check", bad.to_str().unwrap()]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (doc["ok"].clone(), doc["errors"][0]["field"].clone()),
        (json!(false), json!("webhooks[0].retry_attempts"))
    );
}

#[test]
fn check_of_a_gateway_config_warns_where_jinja_would_empty_a_template_variable() {
    let gateway = |raw: bool| {
        let (open, close) = if raw {
            ("      {% raw %}\n", "      {% endraw %}\n")
        } else {
            ("", "")
        };
        format!(
            "plugins:\n  - name: WebhookNotification\n    kind: cpex_webhook_notification.WebhookNotificationPlugin\n    config:\n{open}      webhooks: [{{url: 'https://h.example/x'}}]\n      payload_templates:\n        violation: '{{\"text\": \"{{{{user}}}} hit {{{{ violation.reason }}}}\"}}'\n{close}  - name: Other\n    kind: other.Plugin\n"
        )
    };
    let protected = write("gateway-raw.yaml", &gateway(true));
    let out = run(&["check", protected.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("warning"), "{}", text(&out));
    let bare = write("gateway-bare.yaml", &gateway(false));
    let out = run(&["check", bare.to_str().unwrap()]);
    let report = text(&out);
    assert!(
        report.contains("(violation)")
            && report.contains("`{{user}}`")
            && report.contains("`{{violation.reason}}`"),
        "{report}"
    );
}

#[test]
fn render_shows_masked_headers_and_the_body_a_real_delivery_sends() {
    let rx = Receiver::ok();
    let config = write(
        "render.yaml",
        &format!("webhooks: [{{url: '{}', id: ops, events: [rate_limit_exceeded], authentication: {{type: bearer, token: SECRET-TOKEN}},\n  headers: {{Cookie: SECRET-COOKIE, X-API-Key: SECRET-KEY, X-Service-Token: SECRET-HEADER, X-Trace: shown}}}}]\n", rx.url("/")),
    );
    let args = [
        "--event",
        "rate_limit_exceeded",
        "--context",
        r#"{"request_id": "r1", "user": {"email": "a@x.io"}}"#,
        "--violation",
        r#"{"code": "RATE_LIMIT", "reason": "too many"}"#,
    ];
    let out = run(&[&["--json", "render", config.to_str().unwrap()][..], &args[..]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("SECRET"), "{}", text(&out));
    let rendered: Value = serde_json::from_slice(&out.stdout).unwrap();
    let headers = rendered[0]["headers"].as_array().unwrap();
    for name in ["authorization", "cookie", "x-api-key", "x-service-token"] {
        assert!(headers.contains(&json!([name, "***"])), "{name}: {headers:?}");
    }
    assert!(headers.contains(&json!(["x-trace", "shown"])), "{headers:?}");
    let out = run(&[&["send", config.to_str().unwrap()][..], &args[..]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let mut sent = rx.received()[0].json();
    let mut shown = rendered[0]["body"].clone();
    for body in [&mut sent, &mut shown] {
        body.as_object_mut().unwrap().remove("timestamp");
    }
    assert_eq!(sent, shown);
    assert_eq!(sent["user"], "a@x.io");
}

#[test]
fn send_exits_1_when_a_webhook_fails() {
    let rx = Receiver::start(|_| Reply::status(500));
    let config = write(
        "fail.yaml",
        &format!(
            "webhooks: [{{url: '{}', events: [tool_error], retry_attempts: 0}}]\n",
            rx.url("/")
        ),
    );
    let out = run(&["send", config.to_str().unwrap(), "--event", "tool_error"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("FAILED") && text(&out).contains("HTTP 500"),
        "{}",
        text(&out)
    );
}

/// Starts `listen` with `args` on a free port: the process, its further output, its port.
fn listen(
    args: &[&str],
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
    u16,
) {
    let mut child = Command::new(BIN)
        .args([&["listen", "--port", "0"][..], args].concat())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let port = first
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (child, lines, port)
}

/// `listen` prints each request and whether its signature verifies.
fn listen_to(secret_args: &[&str], config: impl Fn(u16) -> String) -> String {
    let (mut child, lines, port) = listen(&[&["--exit-after", "2"][..], secret_args].concat());
    let n = Notifier::from_config_text(&config(port), None).unwrap();
    n.notify(Event::Violation, &json!({}), Some(json!({"reason": "r"})), None)
        .unwrap();
    assert!(n.flush(Duration::from_secs(10)));
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(child.wait().unwrap().success());
    rest.join("\n")
}

#[test]
fn listen_verifies_hmac_and_standard_webhooks_signatures() {
    let config = |port: u16| {
        format!(
            "webhooks:\n  - {{url: 'http://127.0.0.1:{port}/hmac', authentication: {{type: hmac, hmac_secret: s3cret, hmac_header: X-Hub-Signature-256}}}}\n  - {{url: 'http://127.0.0.1:{port}/std', authentication: {{type: standard_webhooks, secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]}}}}\n"
        )
    };
    let right = [
        "--hmac-secret",
        "s3cret",
        "--hmac-header",
        "X-Hub-Signature-256",
        "--standard-webhooks-secret",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ];
    let out = listen_to(&right, config);
    assert_eq!(out.matches(": verified").count(), 2, "{out}");
    assert!(!out.contains("NOT verified"), "{out}");
    let wrong = [
        "--hmac-secret",
        "other",
        "--hmac-header",
        "X-Hub-Signature-256",
        "--standard-webhooks-secret",
        "whsec_c2Vjb25k",
    ];
    let out = listen_to(&wrong, config);
    assert_eq!(out.matches("NOT verified").count(), 2, "{out}");
}

#[test]
fn dead_letters_of_a_disk_outbox_are_listed_and_replayed() {
    let dir = common::TempDir::new("webhook-cli-dead");
    dead_letters_are_listed_and_replayed("disk", &format!("{{type: disk, path: '{}'}}", dir.display()));
}

#[test]
fn dead_letters_of_a_redis_outbox_are_listed_and_replayed() {
    let (url, _own) = common::redis::server();
    let key = format!("cli-{}", std::process::id());
    dead_letters_are_listed_and_replayed("redis", &format!("{{type: redis, url: '{url}', key: {key}}}"));
}

/// A 410 dead-letters an event through an engine that then closes; the CLI lists it from the
/// outbox, and `--replay` sends it again with its delivery id.
fn dead_letters_are_listed_and_replayed(name: &str, outbox: &str) {
    let rx = Receiver::start(|n| Reply::status(if n == 0 { 410 } else { 200 }));
    let text_config = format!(
        "outbox: {outbox}\nwebhooks: [{{url: '{}', id: ops, events: [tool_error]}}]\n",
        rx.url("/")
    );
    let n = Notifier::from_config_text(&text_config, None).unwrap();
    n.notify(Event::ToolError, &json!({"request_id": "lost"}), None, None)
        .unwrap();
    assert!(n.flush(Duration::from_secs(10)));
    drop(n);
    let config = write(&format!("dead-{name}.yaml"), &text_config);
    let out = run(&["dead-letters", config.to_str().unwrap()]);
    assert!(
        out.status.success() && text(&out).contains("ops tool_error") && text(&out).contains("HTTP 410"),
        "{}",
        text(&out)
    );
    let out = run(&[
        "dead-letters",
        config.to_str().unwrap(),
        "--webhook",
        "ops",
        "--replay",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[1].header("x-webhook-delivery"),
        got[0].header("x-webhook-delivery")
    );
    let out = run(&["dead-letters", config.to_str().unwrap()]);
    assert!(
        text(&out).contains("no dead letters"),
        "replayed ones are gone: {}",
        text(&out)
    );
}

#[test]
fn dead_letters_of_a_memory_outbox_live_in_the_gateway() {
    let memory = write("memory.yaml", "webhooks: [{url: 'https://h.example/x'}]\n");
    let out = run(&["dead-letters", memory.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("in memory"), "{}", text(&out));
}

#[test]
fn listen_answers_413_to_a_body_over_1_mib_instead_of_buffering_it() {
    use std::io::{Read, Write};
    let (mut child, _lines, port) = listen(&["--exit-after", "1"]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = vec![b'x'; 2 << 20];
    let head = format!(
        "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(&body); // the server may stop reading once over the limit
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn render_and_send_count_show_and_deliver_one_digest_message_with_the_routing_key_masked() {
    let rx = Receiver::start(|_| Reply::status(202));
    let config = write(
        "digest.yaml",
        &format!(
            "webhooks: [{{url: '{}', id: pd, format: pagerduty, routing_key: SECRET-ROUTING, events: [tool_error], digest: {{group_by: [tool]}}}}]\n",
            rx.url("/v2/enqueue")
        ),
    );
    let args = [
        "--event",
        "tool_error",
        "--metadata",
        r#"{"tool_name": "search", "error": "boom"}"#,
        "--count",
        "250",
    ];
    let out = run(&[&["--json", "render", config.to_str().unwrap()][..], &args[..]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("SECRET"), "{}", text(&out));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let body = &shown[0]["body"];
    assert_eq!(
        (body["routing_key"].as_str(), body["event_action"].as_str()),
        (Some("***"), Some("trigger"))
    );
    assert_eq!(body["payload"]["custom_details"]["count"], "250");
    assert!(body["payload"]["summary"]
        .as_str()
        .unwrap()
        .starts_with("error tool_error ×250 — search"));
    let out = run(&[&["send", config.to_str().unwrap()][..], &args[..]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let sent = rx.received();
    assert_eq!(sent.len(), 1, "one message for the group of 250");
    let sent = sent[0].json();
    assert_eq!(sent["routing_key"], "SECRET-ROUTING");
    assert_eq!(sent["dedup_key"], body["dedup_key"], "the group key is stable");
    assert_eq!(sent["payload"]["custom_details"]["count"], "250");
}

#[test]
fn check_warns_when_a_template_gives_a_format_webhook_a_body_its_channel_refuses() {
    let config = write(
        "teams.yaml",
        "payload_templates: {tool_error: '{\"text\": {{metadata.error}}}'}\nwebhooks: [{url: 'https://flow.example/x', format: teams, events: [tool_error, tool_success]}]\n",
    );
    let out = run(&["--json", "check", config.to_str().unwrap()]);
    assert!(out.status.success(), "a warning, not an error: {}", text(&out));
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = verdict["format_warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "tool_success uses the card: {warnings:?}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.contains("webhooks[0] (format: teams)") && warning.contains("tool_error"),
        "{warning}"
    );
    assert!(warning.contains("Adaptive Card 1.4"), "{warning}");
}

#[test]
fn silence_add_list_expire_reach_a_running_replica_through_redis() {
    let (url, _server) = common::redis::server();
    let rx = Receiver::ok();
    let key = format!("cli-silences-{}", uuid::Uuid::new_v4().simple());
    let config_text = format!(
        "outbox: {{type: redis, url: '{url}', key: '{key}'}}\nwebhooks: [{{url: '{}', id: ops, events: [tool_success]}}]",
        rx.url("/")
    );
    let config = write("silence-redis.yaml", &config_text);
    let config = config.to_str().unwrap();
    let running = Notifier::from_config_text(&config_text, Some("replica")).unwrap();
    let added = run(&[
        "silence",
        "add",
        "--config",
        config,
        "-m",
        "tool=search",
        "--duration",
        "1h",
        "--comment",
        "migration",
        "--json",
    ]);
    assert!(added.status.success(), "{}", text(&added));
    let id = serde_json::from_slice::<Value>(&added.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    common::wait_until(
        "the running replica holds search events back",
        Duration::from_secs(20),
        || {
            running
                .notify(
                    Event::ToolSuccess,
                    &json!({}),
                    None,
                    Some(json!({"tool_name": "search"})),
                )
                .unwrap();
            running.stats().webhooks[0].silenced > 0
        },
    );
    let listed = run(&["silence", "list", "--config", config, "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        (listed[0]["id"].as_str(), listed[0]["comment"].as_str()),
        (Some(id.as_str()), Some("migration"))
    );
    let human = text(&run(&["silence", "list", "--config", config]));
    assert!(
        human.contains(&id) && human.contains("tool=search") && human.contains("active"),
        "{human}"
    );
    assert!(run(&["silence", "expire", "--config", config, &id])
        .status
        .success());
    let again = run(&["silence", "expire", "--config", config, &id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("no silence"), "{}", text(&again));
    assert_eq!(running.silences().unwrap(), Vec::<Value>::new());
    running.close(Duration::from_secs(10)).unwrap();
}

#[test]
fn silence_needs_an_outbox_the_cli_can_reach() {
    let config = write("silence-memory.yaml", "webhooks: [{url: 'http://127.0.0.1:9/'}]");
    let out = run(&["silence", "list", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("outbox") && text(&out).contains("redis"),
        "{}",
        text(&out)
    );
    let bad = run(&[
        "silence",
        "add",
        "--config",
        config.to_str().unwrap(),
        "-m",
        "tool",
        "--duration",
        "1h",
    ]);
    assert_eq!(bad.status.code(), Some(1));
}
