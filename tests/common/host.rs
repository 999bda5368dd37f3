//! Host processes for the crash tests: the test binary started again in its `outbox_host`
//! mode, printing its progress, so a test can kill it with SIGKILL at a chosen moment.

#![allow(dead_code)] // each test binary uses a different part of it

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use webhook_notification::{Event, Notifier};

use super::receiver::Receiver;

/// How long a crash test waits for an outcome before failing.
pub const WAIT: Duration = Duration::from_secs(60);

/// The host's lines of output.
pub type Lines = std::io::Lines<BufReader<ChildStdout>>;

/// The host mode (the body of each crash-test binary's ignored `outbox_host` test):
/// `OUTBOX_HOST_CONFIG` loaded, `OUTBOX_HOST_EVENTS` events with request ids
/// `{OUTBOX_HOST_PREFIX}{i}` submitted (`OUTBOX_HOST_PACE_US` apart), progress printed as
/// `ADMITTED n` lines, then `COMMITTED` once the outbox holds them all, then `DRAINED` once
/// they are delivered; with `OUTBOX_HOST_STAY`, it then keeps running until stdin closes.
/// With `OUTBOX_HOST_DIGEST` the events are digested, not delivered one by one: it does not
/// wait for them to be committed. With `OUTBOX_HOST_SETTLED=k` it also prints `SETTLED` once
/// `k` deliveries succeeded and every change (admissions, acknowledgements) is committed.
pub fn run_host() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let n = Notifier::from_config_text(&var("OUTBOX_HOST_CONFIG"), None).expect("config loads");
    let events: usize = var("OUTBOX_HOST_EVENTS").parse().unwrap_or(0);
    let pace = Duration::from_micros(var("OUTBOX_HOST_PACE_US").parse().unwrap_or(0));
    let prefix = match var("OUTBOX_HOST_PREFIX") {
        p if p.is_empty() => "evt-".to_owned(),
        p => p,
    };
    let n = std::sync::Arc::new(n);
    if let Ok(settled) = var("OUTBOX_HOST_SETTLED").parse::<u64>() {
        let n = std::sync::Arc::clone(&n);
        std::thread::spawn(move || loop {
            let stats = n.stats();
            if stats.delivered >= settled && stats.outbox.uncommitted == 0 {
                println!("SETTLED");
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        });
    }
    for i in 0..events {
        let context = json!({"request_id": format!("{prefix}{i}")});
        assert!(n.notify(Event::ToolSuccess, &context, None, None).unwrap());
        if (i + 1) % 100 == 0 {
            println!("ADMITTED {}", i + 1);
        }
        if !pace.is_zero() {
            std::thread::sleep(pace);
        }
    }
    let digested = !var("OUTBOX_HOST_DIGEST").is_empty();
    while !digested && n.stats().outbox.committed < events as u64 {
        std::thread::sleep(Duration::from_millis(2));
    }
    println!("COMMITTED");
    assert!(n.flush(Duration::MAX));
    println!("DRAINED");
    if !var("OUTBOX_HOST_STAY").is_empty() {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    }
}

/// Raises `count` tool_success events with request ids `evt-0`, `evt-1`, ….
pub fn submit(n: &Notifier, count: usize) {
    submit_range(n, 0..count);
}

/// Raises a tool_success event with request id `evt-{i}` for each `i` of `ids`.
pub fn submit_range(n: &Notifier, ids: std::ops::Range<usize>) {
    for i in ids {
        let context = json!({"request_id": format!("evt-{i}")});
        n.notify(Event::ToolSuccess, &context, None, None).unwrap();
    }
}

/// Starts a host process with `config` submitting `events` events; `env` adds variables.
pub fn host(config: &str, events: usize, pace_us: u64, env: &[(&str, &str)]) -> (Child, Lines) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "outbox_host",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("OUTBOX_HOST_CONFIG", config)
        .env("OUTBOX_HOST_EVENTS", events.to_string())
        .env("OUTBOX_HOST_PACE_US", pace_us.to_string())
        .envs(env.iter().copied())
        .env("LOG_LEVEL", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the host process starts");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// Reads lines until one starts with `prefix`; returns the last `ADMITTED n` seen too.
pub fn read_until(lines: &mut Lines, prefix: &str) -> u64 {
    let mut admitted = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ADMITTED ") {
            admitted = n.parse().unwrap();
        }
        if line.starts_with(prefix) {
            return admitted;
        }
    }
    panic!("the host ended before printing {prefix}");
}

/// Reads lines until each of `prefixes` has started one, in whatever order they come.
pub fn read_until_all(lines: &mut Lines, prefixes: &[&str]) {
    let mut waiting = prefixes.to_vec();
    for line in lines.by_ref() {
        let line = line.unwrap();
        waiting.retain(|prefix| !line.starts_with(prefix));
        if waiting.is_empty() {
            return;
        }
    }
    panic!("the host ended before printing {waiting:?}");
}

/// Kills the host with SIGKILL.
pub fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// How many times each request id arrived, and the delivery ids each arrived with.
pub fn arrivals(rx: &Receiver) -> HashMap<String, Vec<String>> {
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for r in rx.received() {
        let request = r.json()["request_id"].as_str().unwrap().to_owned();
        let delivery = r.header("x-webhook-delivery").unwrap().to_owned();
        seen.entry(request).or_default().push(delivery);
    }
    seen
}

/// Waits until `count` distinct request ids have arrived.
pub fn wait_distinct(rx: &Receiver, count: usize) -> HashMap<String, Vec<String>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = arrivals(rx);
        if seen.len() >= count {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} distinct events arrived",
            seen.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that every request arrived with one delivery id, however often it arrived;
/// returns how many arrived more than once.
pub fn duplicates_with_stable_ids(seen: &HashMap<String, Vec<String>>) -> usize {
    for ids in seen.values() {
        assert!(
            ids.iter().all(|id| *id == ids[0]),
            "a delivery id changed: {ids:?}"
        );
    }
    seen.values().filter(|ids| ids.len() > 1).count()
}
