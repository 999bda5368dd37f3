"""Benchmark (not a test): the latency of tool calls through the real gateway across its
30 s plugin-manager rebuild, with a webhook that answers after 2 s (max_concurrency 1), and
how many of the events reached that webhook. Run it with the gateway venv's Python after
installing the wheel to measure (tests/run.sh builds both):

    target/gateway-venv/bin/python tests/bench/gateway_rebuild.py WORK_DIR LABEL

It prints the latency of every call, the call that coincided with the rebuild (the slowest)
and the median, and the events delivered to the slow webhook within 60 s of the last call,
then one JSON line (`"bench": "gateway-rebuild"`, `"impl": LABEL`) for the report.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))
import e2e  # noqa: E402  (the end-to-end test's gateway, receiver and backend)


def main(work: Path, label: str) -> None:
    recorder = e2e.Recorder()
    hooks, rest = e2e.receiver(recorder), e2e.backend()
    gateway = e2e.Gateway(work, f"http://127.0.0.1:{hooks.server_address[1]}")
    try:
        upstream = f"http://127.0.0.1:{rest.server_address[1]}/ok"
        tool = gateway.post("/tools", {"tool": {"name": "bench_ok", "url": upstream, "integration_type": "REST",
                                                "request_type": "GET", "input_schema": {"type": "object", "properties": {}}}})["name"]
        latencies, rebuilt = e2e.calls_across_a_rebuild(gateway, tool)
        ms = [round(x * 1000) for x in latencies]
        print(f"calls (ms): {ms}")
        print(f"plugin rebuilds during the run: {rebuilt}")
        print(f"median {statistics.median(latencies) * 1000:.0f} ms, slowest {max(latencies) * 1000:.0f} ms")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(recorder.requests.get("/slow", [])) < len(latencies):
            time.sleep(0.5)
        got = len({h["x-webhook-delivery"] for h, _ in recorder.requests.get("/slow", [])})
        print(f"slow webhook: {got} of {len(latencies)} events delivered")
        print(json.dumps({"bench": "gateway-rebuild", "impl": label, "rebuilds": rebuilt,
                          "median_ms": statistics.median(latencies) * 1000, "slowest_ms": max(latencies) * 1000,
                          "events": len(latencies), "delivered": got}))
    finally:
        gateway.stop()
        hooks.shutdown()
        rest.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), sys.argv[2])
