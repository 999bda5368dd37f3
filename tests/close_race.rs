//! Closing while hook calls race it, in a process of its own: the hook threads keep both
//! cores busy, which would distort the timing tests of other files.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use webhook_notification::{Error, Hook, Notifier};

use common::receiver::Receiver;

/// Once `close` has begun, a hook call is either refused with `Closed` or waited for by
/// that close: nothing admitted is ever lost uncounted.
#[test]
fn close_racing_hook_calls_loses_nothing_uncounted() {
    let rx = Receiver::ok();
    let big = json!({"request_id": "r", "user": "x".repeat(200_000)});
    for round in 0..30 {
        let config = format!("webhooks: [{{url: '{}', events: [tool_success]}}]", rx.url("/"));
        let n = Arc::new(Notifier::from_config_text(&config, None).unwrap());
        let hooks: Vec<_> = (0..2)
            .map(|_| {
                let (n, big) = (Arc::clone(&n), big.clone());
                std::thread::spawn(move || {
                    let mut admitted = 0u64;
                    loop {
                        match n.invoke(Hook::ToolPostInvoke, json!({"name": "t", "result": {}}), &big) {
                            Ok(s) if s.queued => admitted += 1,
                            Ok(_) => {}
                            Err(Error::Closed) => return admitted,
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(2));
        n.close(Duration::from_secs(20)).unwrap();
        let admitted: u64 = hooks.into_iter().map(|h| h.join().unwrap()).sum();
        let s = n.stats();
        assert_eq!(s.pending, 0, "round {round}: close returned with work pending");
        assert_eq!(
            s.delivered + s.dropped + s.failed,
            admitted,
            "round {round}: {s:?}"
        );
    }
}
