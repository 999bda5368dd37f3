//! Queue memory, measured as the process's RSS (a file of its own: nothing else allocates
//! in this process meanwhile). Targets from DESIGN: a queued delivery costs at most ~400
//! bytes beyond its event's shared body, and a payload over `max_payload_size` is never
//! kept in the queue.

mod common;

use serde_json::json;
use webhook_notification::{Event, Hook, Notifier};

use common::heap::{give_back_free_heap, status_kib};
use common::receiver::{dead_port, Receiver};

/// Waits until every event submitted so far has been routed into the queues: the intake is
/// FIFO, so a marker event sent last reaching a live receiver proves it.
fn routed(n: &Notifier, marker: &Receiver, count: usize) {
    n.notify(Event::PluginError, &json!({}), None, None).unwrap();
    marker.wait_for(count, std::time::Duration::from_secs(60));
}

#[test]
fn queued_deliveries_and_oversized_payloads_stay_small() {
    let marker = Receiver::ok();
    let config = format!(
        "queue_capacity: 100000\nwebhooks:\n  - {{url: 'http://127.0.0.1:{}/', id: dead, events: [tool_success], retry_schedule: [1h], circuit_breaker: {{failures: 1, cooldown: 3600}}}}\n  - {{url: '{}', events: [plugin_error]}}\n",
        dead_port(),
        marker.url("/")
    );
    let n = Notifier::from_config_text(&config, None).unwrap();
    let context = json!({"global_context": {"request_id": "req-1234567890", "user": "someone@example.com", "tenant_id": "tenant-1", "server_id": "server-1"}});
    routed(&n, &marker, 1);
    let before = status_kib("VmRSS:");
    let deliveries = 100_000;
    for i in 0..deliveries {
        let payload = json!({"name": format!("tool-{i}"), "result": {"content": []}});
        assert!(n.invoke(Hook::ToolPostInvoke, payload, &context).unwrap().queued);
    }
    routed(&n, &marker, 2);
    let peak = status_kib("VmRSS:").saturating_sub(before);
    // What stays once the hook-side backlog has been routed: freed memory given back first.
    give_back_free_heap();
    let queued = status_kib("VmRSS:").saturating_sub(before);
    let each = |kib: u64| kib * 1024 / deliveries;
    println!(
        "100k queued deliveries: RSS +{peak} KiB at the peak ({} bytes each), +{queued} KiB queued ({} bytes each, body included)",
        each(peak),
        each(queued)
    );
    assert_eq!(n.stats().webhooks[0].queued, deliveries);
    // Measured: ~690 bytes each on glibc's allocator (`--no-default-features`), ~800 on
    // mimalloc (the default; it rounds to size classes and keeps pages per thread, but its
    // peak is half glibc's); v4 adds each event's W3C trace (one 64-byte allocation per event,
    // shared by its webhooks' deliveries, and a pointer per delivery): ~875 bytes; batches add
    // one more pointer (a box only for batch deliveries): ~890 bytes. Since templates render
    // into a buffer of their own that keeps no more than a quarter of spare room: ~575 bytes.
    assert!(
        queued <= 88 * 1024,
        "RSS grew {queued} KiB for {deliveries} queued deliveries"
    );
    assert!(
        peak <= 300 * 1024,
        "RSS peaked {peak} KiB for {deliveries} deliveries"
    );

    let config = format!(
        "include_payload_data: true\nmax_payload_size: 1000\nwebhooks:\n  - {{url: 'http://127.0.0.1:{}/', events: [tool_success], retry_schedule: [1h], circuit_breaker: {{failures: 1, cooldown: 3600}}}}\n  - {{url: '{}', events: [plugin_error]}}\n",
        dead_port(),
        marker.url("/")
    );
    let n = Notifier::from_config_text(&config, None).unwrap();
    let big = "x".repeat(1 << 20);
    let before = status_kib("VmRSS:");
    for i in 0..150 {
        let payload =
            json!({"name": format!("big-{i}"), "result": {"content": [{"type": "text", "text": big}]}});
        n.invoke(Hook::ToolPostInvoke, payload, &context).unwrap();
    }
    routed(&n, &marker, 3);
    give_back_free_heap();
    let grown = status_kib("VmRSS:").saturating_sub(before);
    println!("150 queued events with 1 MiB payloads over max_payload_size: RSS +{grown} KiB");
    assert!(
        grown < 16 * 1024,
        "oversized payloads were kept: RSS grew {grown} KiB"
    );
}
