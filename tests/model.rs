//! Model test: one generated sequence of operations — events whose receiver answer is 2xx,
//! 503 once then 2xx, or 400, raised by one of two configs sharing the outbox (two teams of one
//! gateway process, each webhook its own id and URL); flushes; clean restarts (close both, then
//! new notifiers on the same configs) — runs against the memory, disk and redis outboxes, and
//! every store must show the receiver the same thing: each event answered 2xx arrives exactly
//! once, at its own config's URL, a 503'd one gets its 503 and then exactly one success under
//! the same delivery id, a 400'd one is attempted exactly once, no two events share a delivery
//! id, and nothing is left pending. Real
//! receiver, real redb files, a real redis-server; proptest generates and shrinks the
//! sequences. (Crashes are tested with real processes and SIGKILL in `outbox_disk` and
//! `outbox_redis`.)

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use webhook_notification::{Event, Notifier};

use common::receiver::{Receiver, Reply};
use common::TempDir;

/// How the receiver answers an event's deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Ok,
    /// 503 on the first attempt, 200 on the retry.
    RetryThenOk,
    /// 400: fails for good on the first attempt.
    Refuse,
}

/// One step of a sequence.
#[derive(Clone, Debug)]
enum Op {
    /// Raise one event per answer, through config 0 or 1.
    Send(usize, Vec<Answer>),
    /// Wait until nothing is pending.
    Flush,
    /// Close cleanly (within `shutdown_timeout`), then start again on the same config.
    Restart,
}

/// Requests the receiver sees for an event answered so.
fn attempts(answer: Answer) -> usize {
    match answer {
        Answer::Ok | Answer::Refuse => 1,
        Answer::RetryThenOk => 2,
    }
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![Just(Answer::Ok), Just(Answer::RetryThenOk), Just(Answer::Refuse)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, prop::collection::vec(answer(), 1..6)).prop_map(|(c, a)| Op::Send(c, a)),
        1 => Just(Op::Flush),
        1 => Just(Op::Restart),
    ]
}

/// Which outbox the sequence runs against.
#[derive(Clone, Copy, Debug)]
enum Store {
    Memory,
    Disk,
    Redis,
}

/// The receiver: answers by the event's `metadata.n` and its planned answer, counting attempts
/// per delivery id.
struct World {
    rx: Receiver,
    plans: Arc<std::sync::Mutex<HashMap<u64, Answer>>>,
}

impl World {
    fn new() -> Self {
        let plans: Arc<std::sync::Mutex<HashMap<u64, Answer>>> = Arc::default();
        let seen: Arc<std::sync::Mutex<HashMap<u64, usize>>> = Arc::default();
        let (by_n, attempts) = (Arc::clone(&plans), Arc::clone(&seen));
        let rx = Receiver::start_with(move |request| {
            let n = request.json()["metadata"]["n"].as_u64().expect("metadata.n");
            let answer = by_n.lock().unwrap()[&n];
            let mut attempts = attempts.lock().unwrap();
            let attempt = attempts.entry(n).or_default();
            *attempt += 1;
            match (answer, *attempt) {
                (Answer::Refuse, _) => Reply::status(400),
                (Answer::RetryThenOk, 1) => Reply::status(503),
                _ => Reply::status(200),
            }
        });
        World { rx, plans }
    }
}

/// Config `index` (0 or 1): its own webhook id and URL path on the shared outbox.
fn config(store: Store, index: usize, url: &str, place: &str) -> String {
    let outbox = match store {
        Store::Memory => "{type: memory}".to_owned(),
        Store::Disk => format!("{{type: disk, path: '{place}'}}"),
        Store::Redis => format!(
            "{{type: redis, url: '{}', key: '{place}', claim_after: 1}}",
            redis_url()
        ),
    };
    format!(
        "shutdown_timeout: 10\noutbox: {outbox}\nwebhooks:\n  - {{url: '{url}/{index}', id: model-{index}, events: [tool_error], retry_schedule: ['100ms', '100ms'], circuit_breaker: false}}\n"
    )
}

fn redis_url() -> String {
    common::redis::shared_url()
}

/// Runs `ops` against `store` and checks what the receiver saw.
fn run(store: Store, ops: &[Op]) -> Result<(), TestCaseError> {
    let world = World::new();
    let dir = TempDir::new("wn-model");
    let place = match store {
        Store::Disk => dir.0.to_string_lossy().into_owned(),
        _ => format!("model-{}", unique()),
    };
    let configs = [0, 1].map(|i| config(store, i, &world.rx.url("/hook"), &place));
    let start = || {
        configs
            .clone()
            .map(|c| Notifier::from_config_text(&c, Some("model")).expect("the notifier starts"))
    };
    let mut notifiers = start();
    let mut next = 0u64;
    let mut sent_by: HashMap<u64, usize> = HashMap::new();
    for op in ops {
        match op {
            Op::Send(index, answers) => {
                for answer in answers {
                    world.plans.lock().unwrap().insert(next, *answer);
                    sent_by.insert(next, *index);
                    let metadata = json!({"n": next});
                    let queued = notifiers[*index].notify(Event::ToolError, &json!({}), None, Some(metadata));
                    prop_assert_eq!(queued.ok(), Some(true));
                    next += 1;
                }
            }
            Op::Flush => {
                for notifier in &notifiers {
                    prop_assert!(notifier.flush(Duration::from_secs(20)), "flush drains");
                }
            }
            Op::Restart => {
                for notifier in &notifiers {
                    prop_assert!(
                        notifier.close(Duration::from_secs(10)).is_ok(),
                        "close within its timeout"
                    );
                }
                drop(notifiers);
                notifiers = start();
            }
        }
    }
    let plans = world.plans.lock().unwrap().clone();
    // A Redis replica learns of deliveries handed back at a restart only when it next claims
    // (every 100 ms), so its first flush may come before it holds them: wait for the receiver.
    let expected: usize = plans.values().map(|a| attempts(*a)).sum();
    let arrived = || world.rx.received().len() >= expected;
    common::wait_until("every planned attempt arrived", Duration::from_secs(30), arrived);
    for notifier in &notifiers {
        prop_assert!(notifier.flush(Duration::from_secs(20)), "the final flush drains");
    }
    let requests = world.rx.received();
    let mut by_n: HashMap<u64, Vec<String>> = HashMap::new();
    for r in &requests {
        let n = r.json()["metadata"]["n"].as_u64().unwrap();
        prop_assert_eq!(
            &r.path,
            &format!("/hook/{}", sent_by[&n]),
            "event {} at its own config's URL",
            n
        );
        by_n.entry(n)
            .or_default()
            .push(r.header("x-webhook-delivery").unwrap().to_owned());
    }
    for (n, answer) in &plans {
        let ids = by_n.get(n).cloned().unwrap_or_default();
        prop_assert_eq!(
            ids.len(),
            attempts(*answer),
            "event {} ({:?}) on {:?}: attempts",
            n,
            answer,
            store
        );
        prop_assert!(ids.iter().all(|id| *id == ids[0]), "one delivery id per event");
    }
    let mut ids: Vec<&String> = by_n.values().map(|ids| &ids[0]).collect();
    ids.sort();
    ids.dedup();
    prop_assert_eq!(ids.len(), plans.len(), "no two events share a delivery id");
    for notifier in &notifiers {
        prop_assert_eq!(notifier.stats().pending, 0);
    }
    Ok(())
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Cases per store: small, so three stores stay within seconds (PROPTEST_CASES overrides).
fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(32),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn memory_outbox_matches_the_model(ops in prop::collection::vec(op(), 1..8)) {
        run(Store::Memory, &ops)?;
    }

    #[test]
    fn disk_outbox_matches_the_model(ops in prop::collection::vec(op(), 1..8)) {
        run(Store::Disk, &ops)?;
    }

    #[test]
    fn redis_outbox_matches_the_model(ops in prop::collection::vec(op(), 1..8)) {
        run(Store::Redis, &ops)?;
    }
}
