"""What the violation observer costs when nothing is violated: one `tool_post_invoke` through a
real cpex PluginManager whose chain is five empty plugins, with cpex's methods as shipped and
with the observer's wrappers, interleaved pass by pass in one process (the wrappers are
swapped in and out between passes, so both sides see the same noise).

usage: python observer_bench.py   (prints one JSON object; `bash tests/bench/run.sh` runs it)
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cpex.framework import GlobalContext, PluginManager, ToolPostInvokePayload
from cpex.framework.manager import PluginExecutor

sys.path.insert(0, str(Path(__file__).parent))

PLUGINS = 5
PASSES = 20
CALLS = 500
NAMES = ("_execute_with_timeout", "invoke_hook", "invoke_hook_for_plugin")


def methods() -> dict[str, object]:
    return {name: getattr(PluginExecutor if name.startswith("_") else PluginManager, name) for name in NAMES}


def use(chosen: dict[str, object]) -> None:
    for name, method in chosen.items():
        setattr(PluginExecutor if name.startswith("_") else PluginManager, name, method)


async def main() -> None:
    shipped = methods()
    from cpex_webhook_notification import observer

    assert observer.install(), "the observer supports this cpex"
    wrapped = methods()
    plugins = [{"name": f"empty{i}", "kind": "peer_plugin.EmptyPlugin", "hooks": ["tool_post_invoke"],
                "mode": "sequential", "priority": i} for i in range(PLUGINS)]
    path = Path(tempfile.mkdtemp()) / "plugins.yaml"
    path.write_text(json.dumps({"plugins": plugins}))
    PluginManager.reset()
    manager = PluginManager(str(path))
    await manager.initialize()
    payload = ToolPostInvokePayload(name="search", result={"content": []})
    context = GlobalContext(request_id="r", user="alice", tenant_id="t", server_id="s")
    times: dict[str, list[float]] = {"shipped": [], "observed": []}
    for n in range(PASSES):
        order = [("shipped", shipped), ("observed", wrapped)]
        for label, chosen in order if n % 2 == 0 else reversed(order):
            use(chosen)
            for _ in range(CALLS):
                start = time.perf_counter()
                await manager.invoke_hook("tool_post_invoke", payload, context)
                times[label].append(time.perf_counter() - start)
    shipped_median = statistics.median(times["shipped"])
    observed_median = statistics.median(times["observed"])
    print(json.dumps({
        "bench": "observer", "plugins": PLUGINS, "calls": PASSES * CALLS,
        "shipped_median_us": shipped_median * 1e6, "observed_median_us": observed_median * 1e6,
        "per_plugin_call_us": (observed_median - shipped_median) * 1e6 / PLUGINS,
        "ratio": observed_median / shipped_median,
    }))
    await manager.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
