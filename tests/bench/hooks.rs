//! Benchmark driver (not a test): `bash tests/bench/run.sh` runs it in several modes and
//! writes BENCHMARKS.md. Each mode prints one JSON object per measurement on stdout.
//!
//! - `hooks`: the cost of one tool_post_invoke through the Rust API and through the C API
//!   (the `extern "C"` functions, JSON text in and out), against receivers that answer 200
//!   at once, sleep 200 ms, answer 500, or do not exist.
//! - `alerting`: hook cost with `match` + `digest` + `format` vs a plain webhook, RSS per
//!   open digest group, and the messages a 100,000-event storm becomes.
//! - `throughput URL N`: deliveries per second of N events to URL (a fast local receiver).
//! - `bare-reqwest URL N`: the same N POSTs through reqwest alone, the HTTP stack's ceiling.
//! - `memory N CAPACITY`: peak RSS while N events flood a dead receiver with a queue of
//!   CAPACITY events, and RSS after they drain (one process per run, so runs do not share a heap).
//! - `disk-commit DIR N [RATE]`: how fast one process commits N admitted events to the disk
//!   outbox DIR (a black-hole receiver keeps them pending), admitting as fast as it can or RATE
//!   events a second; it waits for a line on stdin before it starts, so that several processes
//!   on one directory start together (`tests/bench/workers.sh`).
//! - `shared-hooks DIR`: hook cost of one config on a disk outbox alone, and with a second
//!   config (another team) on the same directory taking events too, interleaved rounds.
//! - `idle REDIS_URL WEBHOOKS SECONDS`: an engine with WEBHOOKS webhooks on a Redis outbox
//!   (default `claim_after`), doing nothing for SECONDS (`tests/bench/workers.sh` counts the
//!   Redis commands it sends meanwhile).
//! - `idle-groups N SECONDS`: opens N digest groups, lets them sit idle for SECONDS, and
//!   reports the process's CPU time meanwhile (the digest timer's cost over idle groups).
//! - `serve`: starts the same receivers, prints their URLs as JSON, serves until stdin closes
//!   (so the Python benchmark measures against receivers in another process).
//!
//! With `BENCH_OUTBOX_DIR` set, every notifier uses a disk outbox in a fresh directory under
//! it; with `BENCH_OUTBOX_REDIS` (a URL), a Redis outbox under a fresh key, and with
//! `BENCH_OUTBOX_REDIS_CLUSTER` (seed URLs, comma-separated) a Redis Cluster outbox (`hooks`,
//! `throughput` and `digest-hooks` then measure that outbox).

#[path = "../common/heap.rs"]
mod heap;
#[path = "../common/receiver.rs"]
mod receiver;

use std::ffi::CString;
use std::io::Read;
use std::ptr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use webhook_notification::ffi;
use webhook_notification::preview;
use webhook_notification::{Event, Hook, Notifier};

use heap::give_back_free_heap;
use receiver::{dead_port, BlackHole, Receiver, Reply};

const PAYLOAD: &str = r#"{"name": "search", "result": {"content": [{"type": "text", "text": "ok"}]}}"#;
const CONTEXT: &str =
    r#"{"global_context": {"request_id": "req-1", "user": "alice", "tenant_id": "t", "server_id": "s"}}"#;

/// The receivers of the hook-cost table: fast, slow, failing, and absent.
fn receivers() -> (Vec<Receiver>, Vec<(&'static str, String)>) {
    let fast = Receiver::start(|_| Reply::status(200));
    let slow = Receiver::start(|_| Reply::status(200).after(Duration::from_millis(200)));
    let failing = Receiver::start(|_| Reply::status(500));
    let urls = vec![
        ("200", fast.url("/")),
        ("sleep200", slow.url("/")),
        ("500", failing.url("/")),
        ("dead", format!("http://127.0.0.1:{}/", dead_port())),
    ];
    (vec![fast, slow, failing], urls)
}

/// `"outbox": {…},` for a disk outbox in a fresh directory when `BENCH_OUTBOX_DIR` is set, or
/// a Redis outbox under a fresh key when `BENCH_OUTBOX_REDIS` is (a cluster's when
/// `BENCH_OUTBOX_REDIS_CLUSTER`, comma-separated seed URLs, is).
fn outbox() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let fresh = format!("{}-{n}", std::process::id());
    if let Ok(dir) = std::env::var("BENCH_OUTBOX_DIR") {
        return format!(r#""outbox": {{"type": "disk", "path": "{dir}/{fresh}"}},"#);
    }
    if let Ok(seeds) = std::env::var("BENCH_OUTBOX_REDIS_CLUSTER") {
        let seeds: Vec<String> = seeds.split(',').map(|s| format!("\"{s}\"")).collect();
        let seeds = seeds.join(", ");
        return format!(
            r#""outbox": {{"type": "redis", "cluster": true, "url": [{seeds}], "key": "bench-{fresh}"}},"#
        );
    }
    if let Ok(url) = std::env::var("BENCH_OUTBOX_REDIS") {
        return format!(r#""outbox": {{"type": "redis", "url": "{url}", "key": "bench-{fresh}"}},"#);
    }
    String::new()
}

/// The config every implementation is measured with (retries kept short so the pure-Python
/// peer, which awaits them inside the hook, finishes in reasonable time).
fn config(url: &str) -> String {
    format!(
        r#"{{{} "queue_capacity": 100000, "webhooks": [{{"url": "{url}", "events": ["tool_success", "tool_error"],
            "retry_attempts": 2, "retry_delay": 100, "timeout": 5, "max_concurrency": 64}}]}}"#,
        outbox()
    )
}

fn summary(mut micros: Vec<f64>) -> Value {
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    json!({"n": micros.len(), "median_us": at(0.5), "p99_us": at(0.99)})
}

fn time_calls(n: usize, mut call: impl FnMut()) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let start = Instant::now();
            call();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

/// The cost of `n` tool_post_invoke calls through the Rust API of a notifier for `text`.
fn rust_hook_costs(text: &str, n: usize) -> Vec<f64> {
    let notifier = Notifier::from_config_text(text, None).unwrap();
    let payload: Value = serde_json::from_str(PAYLOAD).unwrap();
    let context: Value = serde_json::from_str(CONTEXT).unwrap();
    let micros = time_calls(n, || {
        notifier
            .invoke(Hook::ToolPostInvoke, payload.clone(), &context)
            .unwrap();
    });
    let _ = notifier.close(Duration::ZERO);
    micros
}

/// The cost of `n` `webhook_plugin_invoke` calls (JSON text in and out) for `text`.
fn c_hook_costs(text: &str, n: usize) -> Vec<f64> {
    let (config, hook) = (
        CString::new(text).unwrap(),
        CString::new("tool_post_invoke").unwrap(),
    );
    let (payload, context) = (CString::new(PAYLOAD).unwrap(), CString::new(CONTEXT).unwrap());
    let mut plugin = ptr::null_mut();
    unsafe { ffi::webhook_plugin_new(config.as_ptr(), ptr::null(), &mut plugin, ptr::null_mut()) };
    let micros = time_calls(n, || unsafe {
        let mut result = ptr::null_mut();
        let status = ffi::webhook_plugin_invoke(
            plugin,
            hook.as_ptr(),
            payload.as_ptr(),
            context.as_ptr(),
            &mut result,
            ptr::null_mut(),
        );
        assert_eq!(status, ffi::WEBHOOK_OK);
        ffi::webhook_string_free(result);
    });
    unsafe {
        ffi::webhook_plugin_close(plugin, 0, ptr::null_mut());
        ffi::webhook_plugin_free(plugin);
    }
    micros
}

fn hooks() {
    let (_keep, urls) = receivers();
    let n = 20_000;
    for (mode, url) in &urls {
        let micros = rust_hook_costs(&config(url), n);
        println!(
            "{}",
            json!({"bench": "hook", "impl": "rust", "receiver": mode, "stats": summary(micros)})
        );
        let micros = c_hook_costs(&config(url), n);
        println!(
            "{}",
            json!({"bench": "hook", "impl": "c", "receiver": mode, "stats": summary(micros)})
        );
    }
}

/// A webhook with `match`, `digest` and `format: slack` (limits raised so the 200 receiver
/// is never the bottleneck), for the alerting rows.
fn alerting_config(url: &str, digest: &str) -> String {
    format!(
        r#"{{{} "queue_capacity": 100000, "webhooks": [{{"url": "{url}", "events": ["tool_success", "tool_error"],
            "format": "slack", "max_rate": 100000, "match": {{"tool": "search*", "tenant": "t*"}},
            "digest": {digest}}}]}}"#,
        outbox()
    )
}

/// `digest-hooks REDIS_URL`: the hook cost into a digesting webhook (Rust API, 20,000 calls)
/// without an outbox (a process digest) and with a Redis outbox (a fleet digest), five
/// interleaved rounds in one process.
fn digest_hooks(redis: &str) {
    let fast = Receiver::start(|_| Reply::status(200));
    let digest = r#"{"group_by": ["tool", "user"], "group_interval": "1s"}"#;
    let process = alerting_config(&fast.url("/"), digest);
    for round in 1..=5 {
        let fleet = process.replacen(
            '{',
            &format!(r#"{{"outbox": {{"type": "redis", "url": "{redis}", "key": "bench-fleet-{round}"}},"#),
            1,
        );
        for (label, text) in [("process", &process), ("fleet", &fleet)] {
            let stats = summary(rust_hook_costs(text, 20_000));
            println!(
                "{}",
                json!({"bench": "digest-hook", "impl": label, "round": round, "stats": stats})
            );
        }
    }
}

/// `alerting`: hook cost with match + digest + format vs a plain webhook (Rust and C APIs,
/// 200 receiver, interleaved rounds); RSS per open digest group; a 100,000-event storm.
fn alerting() {
    let fast = Receiver::start(|_| Reply::status(200));
    let url = fast.url("/");
    let digest = r#"{"group_by": ["tool", "user"], "group_interval": "1s"}"#;
    for round in 1..=3 {
        for (label, text) in [
            ("plain", config(&url)),
            ("alerting", alerting_config(&url, digest)),
        ] {
            let rust = summary(rust_hook_costs(&text, 20_000));
            let c = summary(c_hook_costs(&text, 20_000));
            println!(
                "{}",
                json!({"bench": "alerting-hook", "impl": "rust", "config": label, "round": round, "stats": rust})
            );
            println!(
                "{}",
                json!({"bench": "alerting-hook", "impl": "c", "config": label, "round": round, "stats": c})
            );
        }
    }
    for groups in [1_000, 10_000] {
        // group_wait 1h: no message is made, so the RSS is the groups' state alone.
        let digest = r#"{"group_by": ["user"], "group_wait": "1h", "samples": 0, "max_groups": 1000000}"#;
        let notifier = Notifier::from_config_text(&alerting_config(&url, digest), None).unwrap();
        let raise = |user: String| {
            let context = json!({"user": user, "tenant_id": "t"});
            let metadata = json!({"tool_name": "search"});
            notifier
                .notify(Event::ToolSuccess, &context, None, Some(metadata))
                .unwrap();
        };
        raise("warm-up".into());
        assert!(notifier.flush(Duration::from_secs(60)));
        give_back_free_heap();
        let before = heap::status_kib("VmRSS:");
        (0..groups).for_each(|i| raise(format!("user-{i}@example.com")));
        assert!(notifier.flush(Duration::from_secs(600)));
        give_back_free_heap();
        let after = heap::status_kib("VmRSS:");
        assert_eq!(notifier.stats().webhooks[0].groups, groups + 1);
        println!(
            "{}",
            json!({"bench": "digest-memory", "groups": groups, "before_kib": before, "after_kib": after,
                   "bytes_per_group": (after.saturating_sub(before) * 1024) as f64 / groups as f64})
        );
        let _ = notifier.close(Duration::ZERO);
    }
    let digest = r#"{"group_by": ["user"], "group_interval": "100ms"}"#;
    let notifier = Notifier::from_config_text(&alerting_config(&url, digest), None).unwrap();
    let start = Instant::now();
    for i in 0..100_000 {
        let context = json!({"user": format!("user-{}", i % 4), "tenant_id": "t"});
        notifier
            .notify(
                Event::ToolSuccess,
                &context,
                None,
                Some(json!({"tool_name": "search"})),
            )
            .unwrap();
    }
    let storm = start.elapsed();
    notifier.close(Duration::from_secs(60)).unwrap();
    let webhook = &notifier.stats().webhooks[0];
    let bound = 4 * (2 + storm.as_millis().div_ceil(100) as u64);
    println!(
        "{}",
        json!({"bench": "digest-storm", "events": 100_000, "groups": 4, "storm_seconds": storm.as_secs_f64(),
               "group_interval_ms": 100, "messages": webhook.digest_messages, "delivered": webhook.delivered, "bound": bound})
    );
}

fn throughput(url: &str, n: usize) {
    let text = format!(
        r#"{{{} "queue_capacity": {n}, "webhooks": [{{"url": "{url}", "events": ["tool_success"], "max_concurrency": 64}}]}}"#,
        outbox()
    );
    let notifier = Notifier::from_config_text(&text, None).unwrap();
    let payload: Value = serde_json::from_str(PAYLOAD).unwrap();
    let context: Value = serde_json::from_str(CONTEXT).unwrap();
    let start = Instant::now();
    for _ in 0..n {
        assert!(
            notifier
                .invoke(Hook::ToolPostInvoke, payload.clone(), &context)
                .unwrap()
                .queued
        );
    }
    assert!(notifier.flush(Duration::from_secs(600)));
    let secs = start.elapsed().as_secs_f64();
    let stats = notifier.stats();
    assert_eq!(stats.delivered, n as u64, "{stats:?}");
    println!(
        "{}",
        json!({"bench": "throughput", "impl": "rust", "events": n, "seconds": secs, "per_second": n as f64 / secs})
    );
}

/// Events per second and bytes of bodies per second to `url` through a batching webhook
/// (ndjson, 500 events a batch) from the Rust API, with the CPU the delivery runtime spent
/// per event: the process's CPU time less the submitting thread's.
fn batched(url: &str, n: usize) {
    let text = format!(
        r#"{{{} "queue_capacity": {n}, "webhooks": [{{"url": "{url}", "events": ["tool_success"], "max_concurrency": 4, "batch": {{"max_events": 500, "max_wait": "50ms"}}}}]}}"#,
        outbox()
    );
    let config = webhook_notification::Config::load(&text).unwrap();
    let context: Value = serde_json::from_str(CONTEXT).unwrap();
    let shown = preview(&config, "bench", Event::ToolSuccess, &context, None, None, 1).unwrap();
    let event_bytes = shown[0].body.len(); // one event's line
    let notifier = Notifier::new(config, Some("bench")).unwrap();
    let payload: Value = serde_json::from_str(PAYLOAD).unwrap();
    let (cpu_before, start) = (cpu_seconds(), Instant::now());
    let own_before = thread_cpu();
    for _ in 0..n {
        let submission = notifier
            .invoke(Hook::ToolPostInvoke, payload.clone(), &context)
            .unwrap();
        assert!(submission.queued);
    }
    let own = thread_cpu() - own_before;
    assert!(notifier.flush(Duration::from_secs(600)));
    let secs = start.elapsed().as_secs_f64();
    let delivery_cpu = cpu_seconds() - cpu_before - own;
    let stats = notifier.stats();
    assert_eq!(stats.delivered, n as u64, "{stats:?}");
    let batches = stats.webhooks[0].batches;
    println!(
        "{}",
        json!({"bench": "batched", "events": n, "batches": batches, "seconds": secs,
            "per_second": n as f64 / secs, "mib_per_second": (n * event_bytes) as f64 / secs / (1 << 20) as f64,
            "event_bytes": event_bytes, "delivery_cpu_us_per_event": delivery_cpu * 1e6 / n as f64,
            "hook_cpu_us_per_event": own * 1e6 / n as f64})
    );
}

/// CPU seconds the calling thread has used.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The hook's cost, and the runtime's CPU per event, with `n` active silences none of which
/// matches, against the same config without silences (interleaved rounds of 20,000 calls).
/// The webhook's `match` filters every event, so the runtime's work per event is routing,
/// the silence check and the filter.
fn silences_bench(n: usize) {
    let text = r#"{"webhooks": [{"url": "http://127.0.0.1:9/", "events": ["tool_success"], "match": {"tool": "never"}}]}"#;
    let plain = Notifier::from_config_text(text, Some("plain")).unwrap();
    let silenced = Notifier::from_config_text(text, Some("silenced")).unwrap();
    for i in 0..n - 10 {
        let matchers = json!([format!("tool=other{i}"), "severity!=info"]);
        silenced
            .silence(&json!({"matchers": matchers, "duration": "1h"}))
            .unwrap();
    }
    for i in 0..10 {
        let matchers = json!([format!("user=~.*@other{i}\\.example")]);
        silenced
            .silence(&json!({"matchers": matchers, "duration": "1h"}))
            .unwrap();
    }
    let payload: Value = serde_json::from_str(PAYLOAD).unwrap();
    let context: Value = serde_json::from_str(CONTEXT).unwrap();
    const CALLS: usize = 20_000;
    let mut rounds: [Vec<Value>; 2] = Default::default();
    for _ in 0..5 {
        for (i, notifier) in [&plain, &silenced].into_iter().enumerate() {
            let (cpu, own) = (cpu_seconds(), thread_cpu());
            let micros = time_calls(CALLS, || {
                notifier
                    .invoke(Hook::ToolPostInvoke, payload.clone(), &context)
                    .unwrap();
            });
            assert!(notifier.flush(Duration::from_secs(60)));
            let runtime = (cpu_seconds() - cpu) - (thread_cpu() - own);
            let mut row = summary(micros);
            row["runtime_us_per_event"] = json!(runtime * 1e6 / CALLS as f64);
            rounds[i].push(row);
        }
    }
    assert_eq!(silenced.stats().webhooks[0].silenced, 0, "no silence matches");
    for (label, stats) in ["none", "silences"].iter().zip(rounds) {
        println!(
            "{}",
            json!({"bench": "silences", "impl": label, "silences": n, "rounds": stats})
        );
    }
}

/// The HTTP stack alone, as a peer for `throughput`: one reqwest client (same settings as
/// ours) on a one-worker tokio runtime, 64 POSTs of the same size in flight, no queue,
/// templates or signatures.
fn bare_reqwest(url: &str, n: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder().tcp_nodelay(true).build().unwrap();
    let body = bytes::Bytes::from(vec![b'x'; 298]);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let start = Instant::now();
    runtime.block_on(async {
        for _ in 0..n {
            let slot = slots.clone().acquire_owned().await.unwrap();
            let request = client
                .post(url)
                .header("content-type", "application/json")
                .body(body.clone());
            tokio::spawn(async move {
                let response = request.send().await.expect("the receiver answers");
                assert!(response.status().is_success());
                let _ = response.bytes().await;
                drop(slot);
            });
        }
        let _all = slots.acquire_many(64).await.unwrap();
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"bench": "throughput", "impl": "bare-reqwest", "events": n, "seconds": secs, "per_second": n as f64 / secs})
    );
}

/// RSS for `n` events flooding a dead receiver with room for `capacity`: after the flood,
/// once every admitted event is routed (freed heap given back), at the peak and drained; and
/// the rendered body's size, so the report can say what a queued delivery costs beyond it.
fn memory(n: usize, capacity: usize) {
    let url = format!("http://127.0.0.1:{}/", dead_port());
    let marker = Receiver::start(|_| Reply::status(200));
    let baseline = heap::status_kib("VmRSS:");
    {
        let text = format!(
            r#"{{"queue_capacity": {capacity}, "webhooks": [{{"url": "{url}", "events": ["tool_success"], "retry_attempts": 3, "retry_delay": 100, "circuit_breaker": false}}, {{"url": "{}", "events": ["plugin_error"]}}]}}"#,
            marker.url("/")
        );
        let notifier = Notifier::from_config_text(&text, None).unwrap();
        let payload: Value = serde_json::from_str(PAYLOAD).unwrap();
        let context: Value = serde_json::from_str(CONTEXT).unwrap();
        for _ in 0..n {
            notifier
                .invoke(Hook::ToolPostInvoke, payload.clone(), &context)
                .unwrap();
        }
        let flooded = heap::status_kib("VmRSS:");
        let dropped_at_once = notifier.stats().dropped;
        // The intake is FIFO: a marker event reaching its receiver proves the flood routed.
        notifier
            .notify(Event::PluginError, &json!({}), None, None)
            .unwrap();
        marker.wait_for(1, Duration::from_secs(600));
        give_back_free_heap();
        let routed = heap::status_kib("VmRSS:");
        let config = webhook_notification::Config::load(&text).unwrap();
        let metadata = json!({"tool_name": "search"});
        let body = preview(
            &config,
            "bench",
            Event::ToolSuccess,
            &context,
            None,
            Some(metadata),
            1,
        )
        .unwrap()[0]
            .body
            .len();
        assert!(notifier.flush(Duration::from_secs(600)));
        let drained = heap::status_kib("VmRSS:");
        println!(
            "{}",
            json!({"bench": "memory", "impl": "rust", "events": n, "queue_capacity": capacity,
                   "baseline_kib": baseline, "flooded_kib": flooded, "routed_kib": routed, "body_bytes": body,
                   "peak_kib": heap::status_kib("VmHWM:"), "drained_kib": drained, "dropped": dropped_at_once})
        );
    }
}

fn serve() {
    let (_keep, urls) = receivers();
    let urls: serde_json::Map<String, Value> =
        urls.into_iter().map(|(k, v)| (k.to_string(), v.into())).collect();
    println!("{}", Value::Object(urls));
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// A disk outbox config in `dir` with one webhook `id` to `url`, holding deliveries pending.
fn disk_config(dir: &str, id: &str, url: &str) -> String {
    format!(
        r#"{{"queue_capacity": 1000000, "outbox": {{"type": "disk", "path": "{dir}"}}, "webhooks": [{{"url": "{url}", "id": "{id}",
            "events": ["tool_success"], "max_concurrency": 1, "timeout": 120, "circuit_breaker": false}}]}}"#
    )
}

/// Commits per second of one process on the disk outbox `dir` (see the module doc).
fn disk_commit(dir: &str, n: u64, rate: Option<f64>) {
    let hole = BlackHole::start();
    let url = format!("http://{}/", hole.addr);
    let notifier = Notifier::from_config_text(&disk_config(dir, "bench", &url), None).unwrap();
    let payload: Value = serde_json::from_str(PAYLOAD).unwrap();
    let context: Value = serde_json::from_str(CONTEXT).unwrap();
    let mut go = String::new();
    let _ = std::io::stdin().read_line(&mut go);
    let start = Instant::now();
    for i in 0..n {
        if let Some(rate) = rate {
            // Sleeps (a gateway worker between requests), in steps of at least a millisecond.
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            let ahead = due.saturating_duration_since(Instant::now());
            if ahead >= Duration::from_millis(1) {
                std::thread::sleep(ahead);
            }
        }
        notifier
            .invoke(Hook::ToolPostInvoke, payload.clone(), &context)
            .unwrap();
    }
    while notifier.stats().outbox.committed < n {
        std::thread::sleep(Duration::from_millis(1));
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"bench": "disk-commit", "events": n, "rate": rate, "seconds": seconds, "per_second": n as f64 / seconds})
    );
    let _ = notifier.close(Duration::ZERO);
}

/// Hook cost of a config alone on a disk outbox, and beside a second config on the same
/// directory that takes as many events, in five interleaved rounds.
fn shared_hooks(dir: &str) {
    let hole = BlackHole::start();
    let url = format!("http://{}/", hole.addr);
    let payload: Value = serde_json::from_str(PAYLOAD).unwrap();
    let context: Value = serde_json::from_str(CONTEXT).unwrap();
    let team =
        Notifier::from_config_text(&disk_config(dir, "team-a", &format!("{url}a")), Some("TeamA")).unwrap();
    let mut rounds: [Vec<Value>; 2] = Default::default();
    for round in 0..10 {
        let shared = round % 2 == 1;
        let other = shared.then(|| {
            Notifier::from_config_text(&disk_config(dir, "team-b", &format!("{url}b")), Some("TeamB"))
                .unwrap()
        });
        // Only team A's call is timed; team B's, between them, keeps the shared store busy.
        let mut micros = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            micros.extend(time_calls(1, || {
                team.invoke(Hook::ToolPostInvoke, payload.clone(), &context)
                    .unwrap();
            }));
            if let Some(other) = &other {
                other
                    .invoke(Hook::ToolPostInvoke, payload.clone(), &context)
                    .unwrap();
            }
        }
        rounds[shared as usize].push(summary(micros));
        if let Some(other) = other {
            let _ = other.close(Duration::ZERO);
        }
    }
    for (label, stats) in ["alone", "shared"].iter().zip(rounds) {
        println!(
            "{}",
            json!({"bench": "shared-hooks", "impl": label, "rounds": stats})
        );
    }
    let _ = team.close(Duration::ZERO);
}

/// CPU seconds this process has used so far (user + system).
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let time = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The digest timer's CPU over `n` idle groups (see the module doc).
fn idle_groups(n: usize, seconds: u64) {
    let config = format!(
        r#"{{"queue_capacity": 1000000, "webhooks": [{{"url": "http://127.0.0.1:{}/", "events": ["tool_error"],
            "digest": {{"group_by": ["user"], "group_wait": "1h", "resolve_after": "1h", "max_groups": 1000000, "samples": 0}}}}]}}"#,
        dead_port()
    );
    let notifier = Notifier::from_config_text(&config, None).unwrap();
    for i in 0..n {
        let context = json!({"request_id": format!("r{i}"), "user": format!("user-{i}")});
        notifier.notify(Event::ToolError, &context, None, None).unwrap();
    }
    assert!(notifier.flush(Duration::from_secs(120)));
    std::thread::sleep(Duration::from_secs(1)); // the tick after the last event has looked
    let (cpu, start) = (cpu_seconds(), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let share = (cpu_seconds() - cpu) / start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"bench": "idle-groups", "groups": notifier.stats().webhooks[0].groups, "seconds": seconds, "cpu_share": share})
    );
    let _ = notifier.close(Duration::ZERO);
}

/// An idle engine on a Redis outbox (see the module doc).
fn idle(redis: &str, webhooks: usize, seconds: u64) {
    let hooks: Vec<String> = (0..webhooks)
        .map(|i| format!(r#"{{"url": "http://127.0.0.1:9/{i}", "id": "idle-{i}"}}"#))
        .collect();
    let key = format!("bench-idle-{}", std::process::id());
    let config = format!(
        r#"{{"outbox": {{"type": "redis", "url": "{redis}", "key": "{key}"}}, "webhooks": [{}]}}"#,
        hooks.join(", ")
    );
    let notifier = Notifier::from_config_text(&config, None).unwrap();
    std::thread::sleep(Duration::from_secs(seconds));
    let _ = notifier.close(Duration::from_secs(5));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["hooks"] => hooks(),
        ["alerting"] => alerting(),
        ["digest-hooks", redis] => digest_hooks(redis),
        ["throughput", url, n] => throughput(url, n.parse().unwrap()),
        ["batched", url, n] => batched(url, n.parse().unwrap()),
        ["silences", n] => silences_bench(n.parse().unwrap()),
        ["bare-reqwest", url, n] => bare_reqwest(url, n.parse().unwrap()),
        ["memory", n, capacity] => memory(n.parse().unwrap(), capacity.parse().unwrap()),
        ["disk-commit", dir, n] => disk_commit(dir, n.parse().unwrap(), None),
        ["disk-commit", dir, n, rate] => disk_commit(dir, n.parse().unwrap(), Some(rate.parse().unwrap())),
        ["shared-hooks", dir] => shared_hooks(dir),
        ["idle", redis, webhooks, seconds] => idle(redis, webhooks.parse().unwrap(), seconds.parse().unwrap()),
        ["idle-groups", n, seconds] => idle_groups(n.parse().unwrap(), seconds.parse().unwrap()),
        ["serve"] => serve(),
        _ => eprintln!("usage: hooks | alerting | digest-hooks REDIS_URL | throughput URL N | batched URL N | silences N | bare-reqwest URL N | memory N CAPACITY | disk-commit DIR N | shared-hooks DIR | idle REDIS_URL WEBHOOKS SECONDS | idle-groups N SECONDS | serve"),
    }
}
