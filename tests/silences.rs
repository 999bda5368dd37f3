//! Silences and time intervals through the Rust API to real receivers on 127.0.0.1: a silence
//! holds matching events back from every webhook (counted `silenced`), expires, survives a
//! restart on a disk outbox, reaches another engine on the same directory and another
//! replica through a real Redis within a second; mute and active time intervals around the
//! current time in two zones; limits and mistakes refused naming the field.

mod common;

use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;
use webhook_notification::{Error, Event, Notifier};

use common::receiver::Receiver;
use common::wait_until;

const WAIT: Duration = Duration::from_secs(20);

fn raise(n: &Notifier, tool: &str) {
    let metadata = json!({"tool_name": tool});
    n.notify(
        Event::ToolSuccess,
        &json!({"tenant_id": "t2"}),
        None,
        Some(metadata),
    )
    .unwrap();
}

fn config(url: &str, outbox: &str) -> String {
    format!("{outbox}\nwebhooks: [{{url: '{url}', id: hook, events: [tool_success]}}]")
}

fn tools(rx: &Receiver) -> Vec<String> {
    rx.received()
        .iter()
        .map(|r| r.json()["metadata"]["tool_name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_silence_holds_matching_events_back_until_it_is_expired() {
    let rx = Receiver::ok();
    let n = Notifier::from_config_text(&config(&rx.url("/"), ""), None).unwrap();
    let spec = json!({"matchers": ["tool=search", "tenant!=t1"], "duration": "2h",
        "created_by": "ops@example.com", "comment": "migrating search"});
    let id = n.silence(&spec).unwrap();
    raise(&n, "search");
    raise(&n, "fetch");
    assert!(n.flush(WAIT));
    assert_eq!(tools(&rx), ["fetch"]);
    let webhook = &n.stats().webhooks[0];
    assert_eq!((webhook.silenced, webhook.delivered), (1, 1));

    let listed = n.silences().unwrap();
    assert_eq!(listed.len(), 1);
    let silence = &listed[0];
    assert_eq!(
        (silence["id"].as_str(), silence["state"].as_str()),
        (Some(id.as_str()), Some("active"))
    );
    assert_eq!(silence["matchers"], json!(["tool=search", "tenant!=t1"]));
    assert_eq!(silence["created_by"], "ops@example.com");
    let starts: Timestamp = silence["starts_at"].as_str().unwrap().parse().unwrap();
    let ends: Timestamp = silence["ends_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(ends.duration_since(starts).as_secs(), 7200);

    n.expire_silence(&id).unwrap();
    assert!(n.silences().unwrap().is_empty());
    raise(&n, "search");
    assert!(n.flush(WAIT));
    assert_eq!(tools(&rx), ["fetch", "search"]);
    match n.expire_silence(&id) {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("no silence")),
        other => panic!("{other:?}"),
    }
    n.close(WAIT).unwrap();
}

#[test]
fn a_pending_silence_is_listed_and_does_not_silence_yet() {
    let rx = Receiver::ok();
    let n = Notifier::from_config_text(&config(&rx.url("/"), ""), None).unwrap();
    let later = Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(1))
        .unwrap();
    let spec = json!({"matchers": ["tool=~.*"], "starts_at": later.to_string(), "duration": "1h"});
    n.silence(&spec).unwrap();
    assert_eq!(n.silences().unwrap()[0]["state"], "pending");
    raise(&n, "search");
    assert!(n.flush(WAIT));
    assert_eq!(tools(&rx), ["search"]);
    n.close(WAIT).unwrap();
}

#[test]
fn the_limits_are_invalid_arguments_naming_them() {
    let n = Notifier::from_config_text("webhooks: []", None).unwrap();
    for _ in 0..1000 {
        n.silence(&json!({"matchers": ["tool=a"], "duration": "1h"}))
            .unwrap();
    }
    match n.silence(&json!({"matchers": ["tool=a"], "duration": "1h"})) {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("1000"), "{message}"),
        other => panic!("{other:?}"),
    }
    let many: Vec<String> = (0..65).map(|i| format!("tool=t{i}")).collect();
    match n.silence(&json!({"matchers": many, "duration": "1h"})) {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("matchers"), "{message}"),
        other => panic!("{other:?}"),
    }
    n.close(WAIT).unwrap();
}

#[test]
fn on_a_disk_outbox_silences_survive_a_restart_and_reach_the_other_engines_of_the_directory() {
    let dir = common::TempDir::new("silences-disk");
    let rx = Receiver::ok();
    let outbox = format!("outbox: {{type: disk, path: '{}'}}", dir.0.display());
    let n = Notifier::from_config_text(&config(&rx.url("/a"), &outbox), Some("team-a")).unwrap();
    // Another team's config on the same directory: another engine, same silences.
    let other = format!(
        "{outbox}\nwebhooks: [{{url: '{}', id: other, events: [tool_success]}}]",
        rx.url("/b")
    );
    let b = Notifier::from_config_text(&other, Some("team-b")).unwrap();
    let id = n
        .silence(&json!({"matchers": ["tool=search"], "duration": "1h"}))
        .unwrap();
    wait_until("team b's engine has the silence", WAIT, || {
        raise(&b, "search");
        b.stats().webhooks[0].silenced > 0
    });
    n.close(WAIT).unwrap();
    drop(n);
    let n = Notifier::from_config_text(&config(&rx.url("/a"), &outbox), Some("team-a")).unwrap();
    assert_eq!(n.silences().unwrap()[0]["id"], id.as_str());
    raise(&n, "search");
    assert!(n.flush(WAIT));
    assert_eq!(n.stats().webhooks[0].silenced, 1);
    n.expire_silence(&id).unwrap();
    wait_until("team b's engine sees the silence expired", WAIT, || {
        raise(&b, "search");
        b.flush(WAIT);
        b.stats().webhooks[0].delivered > 0
    });
    n.close(WAIT).unwrap();
    b.close(WAIT).unwrap();
}

#[test]
fn on_a_redis_outbox_a_silence_added_by_one_replica_stops_the_others_deliveries() {
    let (url, _server) = common::redis::server();
    let rx = Receiver::ok();
    let key = format!("silences-{}", uuid::Uuid::new_v4().simple());
    let outbox = format!("outbox: {{type: redis, url: '{url}', key: '{key}'}}");
    let config = config(&rx.url("/"), &outbox);
    // Two replicas: two engines (the plugin names differ), one fleet.
    let a = Notifier::from_config_text(&config, Some("replica-a")).unwrap();
    let b = Notifier::from_config_text(&config, Some("replica-b")).unwrap();
    let id = a
        .silence(&json!({"matchers": ["tool=search"], "duration": "1h"}))
        .unwrap();
    wait_until("replica b holds search events back", WAIT, || {
        raise(&b, "search");
        b.stats().webhooks[0].silenced > 0
    });
    assert_eq!(b.silences().unwrap()[0]["id"], id.as_str());
    b.expire_silence(&id).unwrap();
    wait_until("replica a sends search events again", WAIT, || {
        raise(&a, "search");
        a.flush(WAIT);
        a.stats().webhooks[0].delivered > 0
    });
    a.close(WAIT).unwrap();
    b.close(WAIT).unwrap();
}

/// `HH:MM` of `now` plus `minutes` in `zone`, kept within the day (00:00..24:00).
fn clock(zone: &str, minutes: i64) -> String {
    let local = Timestamp::now().in_tz(zone).unwrap();
    let at = (local.hour() as i64 * 60 + local.minute() as i64 + minutes).clamp(0, 24 * 60);
    format!("{:02}:{:02}", at / 60, at % 60)
}

#[test]
fn mute_and_active_time_intervals_around_now_in_two_zones() {
    let rx = Receiver::ok();
    // "now" in Tokyo and New York: a window from an hour before to an hour after (kept within
    // the day, which still contains now unless the minute is exactly midnight's edge).
    let around = |zone: &str| {
        format!(
            "[{{times: [{{start_time: '{}', end_time: '{}'}}], location: {zone}}}]",
            clock(zone, -60),
            clock(zone, 61)
        )
    };
    let (tokyo, new_york) = (
        Timestamp::now().in_tz("Asia/Tokyo").unwrap(),
        Timestamp::now().in_tz("America/New_York").unwrap(),
    );
    if tokyo.hour() == 23 && tokyo.minute() == 59 || new_york.hour() == 23 && new_york.minute() == 59 {
        return; // one minute a day the window cannot hold "now" and stay within the day
    }
    let weekday = tokyo.weekday().to_sunday_zero_offset() as usize;
    let names = [
        "sunday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
    ];
    let other_day = names[(weekday + 3) % 7];
    let config = format!(
        "time_intervals:
  tokyo-now: {}
  new-york-now: {}
  tokyo-other-day: [{{weekdays: ['{other_day}'], location: Asia/Tokyo}}]
webhooks:
  - {{url: '{}', id: muted, events: [tool_success], mute_time_intervals: [tokyo-now]}}
  - {{url: '{}', id: active, events: [tool_success], active_time_intervals: [new-york-now]}}
  - {{url: '{}', id: inactive, events: [tool_success], active_time_intervals: [tokyo-other-day]}}",
        around("Asia/Tokyo"),
        around("America/New_York"),
        rx.url("/muted"),
        rx.url("/active"),
        rx.url("/inactive"),
    );
    let n = Notifier::from_config_text(&config, None).unwrap();
    raise(&n, "search");
    assert!(n.flush(WAIT));
    let paths: Vec<String> = rx.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/active"]);
    let counts: Vec<(u64, u64)> = n
        .stats()
        .webhooks
        .iter()
        .map(|w| (w.muted, w.delivered))
        .collect();
    assert_eq!(counts, [(1, 0), (0, 1), (1, 0)]);
    n.close(WAIT).unwrap();
}

#[test]
fn time_interval_mistakes_fail_at_load_naming_the_field() {
    let hook = "webhooks: [{url: 'http://127.0.0.1:9/', mute_time_intervals: [night]}]";
    for (intervals, named) in [
        ("", "webhooks[0].mute_time_intervals[0]"),
        (
            "night: [{location: Mars/Olympus}]",
            "time_intervals.night[0].location",
        ),
        (
            "night: [{weekdays: ['friday:monday']}]",
            "time_intervals.night[0].weekdays[0]",
        ),
        (
            "night: [{weekdays: [funday]}]",
            "time_intervals.night[0].weekdays[0]",
        ),
        (
            "night: [{times: [{start_time: '18:00', end_time: '08:00'}]}]",
            "time_intervals.night[0].times[0]",
        ),
        (
            "night: [{times: [{start_time: '25:00', end_time: '26:00'}]}]",
            "time_intervals.night[0].times[0].start_time",
        ),
        (
            "night: [{days_of_month: ['-3:5']}]",
            "time_intervals.night[0].days_of_month[0]",
        ),
        ("night: [{months: [13]}]", "time_intervals.night[0].months[0]"),
        ("night: [{hours: [1]}]", "hours"),
    ] {
        common::assert_config_error(&format!("time_intervals: {{{intervals}}}\n{hook}"), named);
    }
    let good = "time_intervals: {office: [{weekdays: ['monday:friday'], times: [{start_time: '09:00', end_time: '17:00'}], days_of_month: ['1:7', -1], months: ['january:march', 12], years: ['2026:2030'], location: Europe/Berlin}]}\nwebhooks: [{url: 'http://127.0.0.1:9/', active_time_intervals: [office]}]";
    let loaded = Notifier::from_config_text(good, None);
    assert!(loaded.is_ok(), "{:?}", loaded.err());
}
