//! Many configs, one outbox (the gateway's per-team plugin managers in one process): configs
//! naming one disk directory all load and share its store; each delivery belongs to its
//! webhook's id and URL, waits for a config that has it, and becomes a dead letter only after
//! `outbox.orphan_after`; one id may name one URL only; a config closed and loaded again at
//! once always loads.

mod common;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use webhook_notification::{Config, Error, Event, Notifier};

use common::receiver::{dead_port, Receiver, Reply};
use common::redis::RedisServer;
use common::{disk, wait_until, TempDir};

const WAIT: Duration = Duration::from_secs(20);

/// A config on the disk outbox `dir` with one webhook `id` at `url` (see [`on`]).
fn config(dir: &Path, id: &str, url: &str) -> String {
    on(&format!("{{type: disk, path: '{}'}}", dir.display()), id, url)
}

/// A config on `outbox` with one webhook `id` at `url`, retried 2 s later (so a delivery
/// stored at close is due soon after the next start), then an hour later.
fn on(outbox: &str, id: &str, url: &str) -> String {
    format!(
        "shutdown_timeout: 1\noutbox: {outbox}\nwebhooks: [{{url: '{url}', id: {id}, events: [tool_success], retry_schedule: [2s, 1h], circuit_breaker: false}}]"
    )
}

fn notify(n: &Notifier, count: usize, prefix: &str) {
    for i in 0..count {
        assert!(n
            .notify(
                Event::ToolSuccess,
                &json!({"request_id": format!("{prefix}{i}")}),
                None,
                None
            )
            .unwrap());
    }
}

/// Closes `n` once its first attempts failed (so its deliveries wait an hour, stored).
fn close_pending(n: Notifier, attempts: u64) {
    wait_until("first attempts", WAIT, || n.stats().retries >= attempts);
    n.close(Duration::from_secs(5)).unwrap();
    drop(n);
}

#[test]
fn configs_of_one_process_share_a_directory_and_each_resumes_only_its_own_webhooks() {
    let dir = TempDir::new("shared-configs");
    let outbox = format!("{{type: disk, path: '{}'}}", dir.0.display());
    two_teams_restart(&outbox, || disk::wait_let_go(&dir.0));
}

#[test]
fn configs_of_one_process_share_a_redis_outbox_and_each_resumes_only_its_own_webhooks() {
    let redis = RedisServer::start();
    let outbox = format!(
        "{{type: redis, url: 'redis://127.0.0.1:{}/', key: teams}}",
        redis.port
    );
    two_teams_restart(&outbox, || {});
}

/// Two teams' configs on one `outbox` in one process, each with deliveries pending at close;
/// `let_go` waits until the process let go of the store. Team B loads again first and takes
/// only its own (team A's wait: not dead-lettered, not sent to B); then team A's, with their
/// delivery ids.
fn two_teams_restart(outbox: &str, let_go: impl Fn()) {
    let (port_a, port_b) = (dead_port(), dead_port());
    let (url_a, url_b) = (
        format!("http://127.0.0.1:{port_a}/a"),
        format!("http://127.0.0.1:{port_b}/b"),
    );
    let team_a = Notifier::from_config_text(&on(outbox, "alerts", &url_a), Some("TeamA")).unwrap();
    let team_b = Notifier::from_config_text(&on(outbox, "audit", &url_b), Some("TeamB")).unwrap();
    notify(&team_a, 3, "a-");
    notify(&team_b, 2, "b-");
    wait_until("both committed", WAIT, || {
        team_a.stats().outbox.uncommitted == 0 && team_b.stats().outbox.uncommitted == 0
    });
    assert_eq!(
        team_a.stats().outbox.held,
        team_b.stats().outbox.held,
        "one store, described alike by both"
    );
    let ids = |rx: &Receiver| {
        let mut ids: Vec<String> = rx
            .received()
            .iter()
            .map(|r| r.header("x-webhook-delivery").unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    close_pending(team_a, 3);
    close_pending(team_b, 2);
    let_go();

    // Team B comes back first: it takes its own two, never team A's three.
    let rx_b = Receiver::start_on(port_b, |_| Reply::status(200));
    let team_b = Notifier::from_config_text(&on(outbox, "audit", &url_b), Some("TeamB")).unwrap();
    wait_until("team B's resumed", WAIT, || rx_b.received().len() == 2);
    assert!(team_b.flush(WAIT));
    assert!(rx_b
        .received()
        .iter()
        .all(|r| r.json()["request_id"].as_str().unwrap().starts_with("b-")));
    wait_until("team B's acknowledgements committed", WAIT, || {
        team_b.stats().outbox.uncommitted == 0
    });
    let s = team_b.stats();
    assert_eq!(
        s.dead_letters, 0,
        "team A's deliveries wait, not dead-lettered: {s:?}"
    );
    assert_ne!(s.outbox.held, Some(0), "{s:?}");

    // Team A's first request builds its config again: it resumes its three.
    let rx_a = Receiver::start_on(port_a, |_| Reply::status(200));
    let team_a = Notifier::from_config_text(&on(outbox, "alerts", &url_a), Some("TeamA")).unwrap();
    wait_until("team A's resumed", WAIT, || rx_a.received().len() == 3);
    assert!(team_a.flush(WAIT));
    assert!(rx_a
        .received()
        .iter()
        .all(|r| r.json()["request_id"].as_str().unwrap().starts_with("a-")));
    assert_eq!(
        (ids(&rx_a).len(), ids(&rx_b).len()),
        (3, 2),
        "each once, with its delivery id"
    );
    assert_eq!((team_a.stats().dead_letters, team_b.stats().dead_letters), (0, 0));
}

#[test]
fn a_webhook_id_may_name_one_url_in_the_redis_configs_of_one_process() {
    let redis = RedisServer::start();
    let outbox = format!(
        "{{type: redis, url: 'redis://127.0.0.1:{}/', key: ids}}",
        redis.port
    );
    let first = Notifier::from_config_text(&on(&outbox, "ops", "http://127.0.0.1:9/one"), None).unwrap();
    let clash = Notifier::from_config_text(&on(&outbox, "ops", "http://127.0.0.1:9/two"), Some("Other"));
    assert!(matches!(clash, Err(Error::Config { field, .. }) if field == "webhooks[0].id"));
    drop(first);
}

#[test]
fn a_webhook_id_may_name_one_url_in_the_configs_of_one_outbox() {
    let dir = TempDir::new("shared-ids");
    let first = Notifier::from_config_text(&config(&dir.0, "ops", "http://127.0.0.1:9/one"), None).unwrap();
    // The same id for the same URL in another config is fine (two teams, one channel).
    let same =
        Notifier::from_config_text(&config(&dir.0, "ops", "http://127.0.0.1:9/one"), Some("Other")).unwrap();
    match Notifier::from_config_text(&config(&dir.0, "ops", "http://127.0.0.1:9/two"), Some("Third")) {
        Err(Error::Config { field, message }) => {
            assert_eq!(field, "webhooks[0].id");
            assert!(
                message.contains("`ops`") && !message.contains("/two"),
                "{message}"
            );
        }
        other => panic!("one id, two URLs on one outbox: {:?}", other.err()),
    }
    drop((first, same));
}

#[test]
fn a_config_closed_and_loaded_again_at_once_always_loads() {
    // The gateway's 30 s rebuild awaits the old instance's shutdown, then loads at once.
    let dir = TempDir::new("shared-rebuild");
    let rx = Receiver::ok();
    let text = config(&dir.0, "w", &rx.url("/"));
    for round in 0..20 {
        let n = Notifier::from_config_text(&text, None).unwrap_or_else(|e| panic!("load {round}: {e}"));
        notify(&n, 5, &format!("r{round}-"));
        n.close(Duration::ZERO).ok();
        drop(n);
    }
    let last = Notifier::from_config_text(&text, None).unwrap();
    wait_until("every round's events", WAIT, || {
        assert!(last.flush(WAIT));
        let s = last.stats();
        s.outbox.held == Some(0)
    });
}

#[test]
fn a_delivery_no_loaded_config_claims_becomes_a_dead_letter_after_orphan_after() {
    let dir = TempDir::new("shared-orphans");
    let gone_url = format!("http://127.0.0.1:{}/", dead_port());
    let gone = Notifier::from_config_text(&config(&dir.0, "gone", &gone_url), None).unwrap();
    notify(&gone, 2, "orphan-");
    close_pending(gone, 2);
    disk::wait_let_go(&dir.0);
    // orphan_after's smallest configurable value is a minute; the test shortens it.
    let mut other = Config::load(&config(&dir.0, "other", "http://127.0.0.1:9/")).unwrap();
    other.orphan_after = Duration::ZERO;
    let n = Notifier::new(other, None).unwrap();
    let letters = || std::fs::read_dir(dir.0.join("dead-letters")).unwrap().count();
    wait_until("the orphans are dead letters", WAIT, || letters() == 2);
    assert_eq!(n.stats().outbox.held, Some(0));
    drop(n);
    // A config with that id for another URL does not list them; one with their webhook does.
    let moved = Notifier::from_config_text(&config(&dir.0, "gone", "http://127.0.0.1:9/"), None).unwrap();
    assert_eq!(moved.dead_letters(Some("gone")).unwrap().len(), 0);
    drop(moved);
    let back = Notifier::from_config_text(&config(&dir.0, "gone", &gone_url), Some("Back")).unwrap();
    let listed = back.dead_letters(Some("gone")).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|l| l.last_error.contains("orphan_after")),
        "{listed:?}"
    );
}

#[test]
fn orphan_after_is_checked_at_load() {
    for (value, ok) in [("1m", true), ("30d", true), ("59s", false), ("31d", false)] {
        let text = format!("outbox: {{type: disk, path: /tmp/x, orphan_after: {value}}}\nwebhooks: [{{url: 'http://127.0.0.1:9/'}}]");
        match Config::load(&text) {
            Ok(config) => assert!(ok, "{value} loaded: {:?}", config.orphan_after),
            Err(Error::Config { field, .. }) => {
                assert!(!ok, "{value} refused");
                assert_eq!(field, "outbox.orphan_after");
            }
            Err(e) => panic!("{e}"),
        }
    }
    let memory = "outbox: {orphan_after: 1h}\nwebhooks: [{url: 'http://127.0.0.1:9/'}]";
    assert!(
        matches!(Config::load(memory), Err(Error::Config { field, .. }) if field == "outbox.orphan_after")
    );
}
