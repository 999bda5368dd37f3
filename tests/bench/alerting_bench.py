"""Python rows of the alerting benchmark: the cost of one hook call through the installed
wheel's ``Notifier`` with ``match`` + ``digest`` + ``format`` configured vs a plain webhook,
in interleaved rounds against the same fast receiver. Prints one JSON object per row.

Usage: python alerting_bench.py RECEIVER_URL"""

from __future__ import annotations

import json
import statistics
import sys
import time

from cpex_webhook_notification import Notifier

URL = sys.argv[1]
PLAIN = {"queue_capacity": 100000, "webhooks": [{"url": URL, "events": ["tool_success", "tool_error"],
                                                 "max_concurrency": 64}]}
ALERTING = {"queue_capacity": 100000, "webhooks": [{
    "url": URL, "events": ["tool_success", "tool_error"], "format": "slack", "max_rate": 100000,
    "match": {"tool": "search*", "tenant": "t*"}, "digest": {"group_by": ["tool", "user"], "group_interval": "1s"}}]}
PAYLOAD = {"name": "search", "result": {"content": [{"type": "text", "text": "ok"}]}}
CONTEXT = {"global_context": {"request_id": "req-1", "user": "alice", "tenant_id": "t", "server_id": "s"}}


def costs(config: dict, n: int = 20000) -> list[float]:
    notifier = Notifier(config, f"bench-{time.monotonic_ns()}")
    micros = []
    for _ in range(n):
        start = time.perf_counter_ns()
        notifier.invoke("tool_post_invoke", PAYLOAD, CONTEXT)
        micros.append((time.perf_counter_ns() - start) / 1000)
    notifier.flush(30)
    notifier.close(5)
    return micros


for round_ in (1, 2, 3):
    for label, config in (("plain", PLAIN), ("alerting", ALERTING)):
        micros = sorted(costs(config))
        stats = {"n": len(micros), "median_us": statistics.median(micros), "p99_us": micros[int(len(micros) * 0.99)]}
        print(json.dumps({"bench": "alerting-hook", "impl": "python", "config": label, "round": round_, "stats": stats}))
