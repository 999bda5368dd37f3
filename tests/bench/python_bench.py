"""Python side of the benchmarks (tests/bench/run.sh): hook cost through the real cpex
PluginManager for our plugin, the pure-Python peer and an empty plugin, and delivery
throughput of our plugin and the peer. Prints one JSON object per measurement.

usage: python_bench.py RECEIVERS_JSON FAST_URL
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from cpex.framework import GlobalContext, PluginManager, ToolPostInvokePayload

sys.path.insert(0, str(Path(__file__).parent))

KINDS = {
    "python-plugin": "cpex_webhook_notification.WebhookNotificationPlugin",
    "python-peer": "peer_plugin.PythonPeerPlugin",
    "empty-plugin": "peer_plugin.EmptyPlugin",
}
PAYLOAD = ToolPostInvokePayload(name="search", result={"content": [{"type": "text", "text": "ok"}]})
CONTEXT = GlobalContext(request_id="req-1", user="alice", tenant_id="t", server_id="s")


async def manager_for(kind: str, url: str, **webhook) -> PluginManager:
    hook = {"url": url, "events": ["tool_success", "tool_error"], "retry_attempts": 2, "retry_delay": 100,
            "timeout": 5, **webhook}
    config = {"plugins": [{"name": "bench", "kind": KINDS[kind], "hooks": ["tool_post_invoke"],
                           "mode": "sequential", "config": {"webhooks": [hook], "queue_capacity": 1000000}}]}
    path = Path(tempfile.mkdtemp()) / "plugins.yaml"
    path.write_text(yaml.safe_dump(config))
    PluginManager.reset()
    manager = PluginManager(str(path))
    await manager.initialize()
    return manager


def plugin_of(manager: PluginManager):
    return manager._registry.get_plugin("bench").plugin  # bench-only peek at the instance


async def hook_cost(receiver: str, url: str) -> None:
    """Measures the implementations in order A B C, then C B A, and pools the samples, so a
    noisy neighbour or a drifting machine hits all of them alike."""
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for order in (list(KINDS), list(reversed(KINDS))):
        for kind in order:
            calls = 1000 if kind != "python-peer" or receiver == "200" else 5
            manager = await manager_for(kind, url)
            for _ in range(min(calls, 50)):  # warm-up: connections, caches
                await manager.invoke_hook("tool_post_invoke", PAYLOAD, CONTEXT)
            for _ in range(calls):
                start = time.perf_counter()
                await manager.invoke_hook("tool_post_invoke", PAYLOAD, CONTEXT)
                times[kind].append((time.perf_counter() - start) * 1e6)
            await manager.shutdown()
    for kind, samples in times.items():
        samples.sort()
        n = len(samples)
        stats = {"n": n, "median_us": statistics.median(samples), "p99_us": samples[int((n - 1) * 0.99)]}
        print(json.dumps({"bench": "hook", "impl": kind, "receiver": receiver, "stats": stats}), flush=True)


async def throughput(kind: str, url: str, n: int, concurrency: int) -> None:
    manager = await manager_for(kind, url, max_concurrency=64) if kind == "python-plugin" else await manager_for(kind, url)
    remaining = iter(range(n))

    async def worker() -> None:
        for _ in remaining:
            await manager.invoke_hook("tool_post_invoke", PAYLOAD, CONTEXT)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    plugin = plugin_of(manager)
    if kind == "python-plugin":
        assert await plugin.flush(600)
        delivered = plugin.stats()["delivered"]
    else:
        delivered = plugin.delivered  # the peer awaited each delivery inside the hook
    seconds = time.perf_counter() - start
    print(json.dumps({"bench": "throughput", "impl": kind, "events": n, "delivered": delivered,
                      "concurrency": concurrency, "seconds": seconds, "per_second": delivered / seconds}), flush=True)
    await manager.shutdown()


async def main() -> None:
    receivers = json.loads(sys.argv[1])
    fast_url = sys.argv[2]
    for receiver, url in receivers.items():
        await hook_cost(receiver, url)
    await throughput("python-plugin", fast_url, 50000, 1)
    await throughput("python-peer", fast_url, 20000, 64)


if __name__ == "__main__":
    asyncio.run(main())
