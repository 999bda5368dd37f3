//! An open digest group's memory, whatever the length of its events' strings (DESIGN: at most
//! 4 KB beyond its samples): group_by values and the latest event's strings are cut at 256
//! bytes. A binary of its own, so that no other test's allocations move the process's RSS.

mod common;

use std::time::Duration;

use serde_json::json;
use webhook_notification::{Event, Notifier};

use common::heap::{give_back_free_heap, status_kib};
use common::receiver::dead_port;

#[test]
fn open_groups_with_16_kib_values_cost_at_most_4_kb_each() {
    let config = format!(
        "queue_capacity: 100000\nwebhooks: [{{url: 'http://127.0.0.1:{}/', events: [tool_error], digest: {{group_by: [user, tool], group_wait: 1h, samples: 0, max_groups: 100000}}}}]",
        dead_port()
    );
    let n = Notifier::from_config_text(&config, None).unwrap();
    let long = "x".repeat(16 * 1024);
    let event = |i: usize| {
        let context = json!({"request_id": format!("r{i}"), "user": format!("{i}-{long}")});
        let metadata = json!({"tool_name": format!("{i}-{long}"), "error": long});
        n.notify(Event::ToolError, &context, None, Some(metadata))
            .unwrap();
    };
    event(0);
    assert!(n.flush(Duration::from_secs(30)));
    give_back_free_heap();
    let before = status_kib("VmRSS:");
    let groups = 10_000;
    // In chunks, each routed before the next: what is measured is what groups keep, not the
    // 48 KB events waiting to be routed (the allocator keeps a peak's pages).
    for chunk in 0..groups / 100 {
        for i in 1..=100 {
            event(chunk * 100 + i);
        }
        assert!(
            n.flush(Duration::from_secs(60)),
            "every event routed into its group"
        );
    }
    assert_eq!(n.stats().webhooks[0].groups, groups as u64 + 1);
    give_back_free_heap();
    let grown = status_kib("VmRSS:").saturating_sub(before);
    let each = grown * 1024 / groups as u64;
    println!("{groups} open digest groups with 16 KiB values: RSS +{grown} KiB ({each} bytes each)");
    assert!(each <= 4096, "{each} bytes per open group");
}
