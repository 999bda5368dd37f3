"""Per-team configs on one disk outbox in the real gateway: two teams' plugin bindings give our
plugin each its own webhook (merged over the base config, which names the outbox), so one
gateway process runs three configs on one directory. Each team's tool calls reach only its own
receiver; with deliveries pending (the receivers refuse at first) the gateway is restarted,
and each team's deliveries arrive at its own receiver — once its binding is built again, on the
team's first call — with the same delivery ids, none dead-lettered.

Usage: python teams.py WORK_DIR   (prints a summary; exit status 0 on success)
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from e2e import Gateway, Recorder, backend, check, disk_outbox_plugins, receiver

WEBHOOKS = """\
        - url: "{hooks}/base"
          events: [tool_success]
"""
TEMPLATE = '{{"request_id": "{{{{request_id}}}}", "tool": "{{{{metadata.tool_name}}}}"}}'
CALLS = 3


def start(work: Path, hooks_url: str, teams: list[str]) -> Gateway:
    gateway = Gateway(work, hooks_url, plugins=disk_outbox_plugins(work / "outbox", WEBHOOKS, TEMPLATE))
    if teams:
        gateway.token = gateway.mint_token("--admin", "--teams", ",".join(teams))
    return gateway


def delivery_ids(recorder: Recorder, path: str) -> dict[str, set[str]]:
    """request_id → the delivery ids it arrived with at `path`."""
    found: dict[str, set[str]] = {}
    for headers, body in recorder.requests.get(path, []):
        found.setdefault(json.loads(body)["request_id"], set()).add(headers["x-webhook-delivery"])
    return found


def main(work: Path) -> None:
    recorder = Recorder()
    accepting = threading.Event()  # the receivers refuse (503) until it is set
    hooks, rest = receiver(recorder, lambda path: 200 if accepting.is_set() else 503), backend()
    hooks_url = f"http://127.0.0.1:{hooks.server_address[1]}"
    upstream = f"http://127.0.0.1:{rest.server_address[1]}"
    gateway = start(work, hooks_url, [])
    try:
        teams = [gateway.post("/teams/", {"name": f"e2e-{name}"})["id"] for name in ("a", "b")]
        gateway.token = gateway.mint_token("--admin", "--teams", ",".join(teams))
        tools = {}
        for name, team in zip(("a", "b"), teams):
            tool = {"name": f"team-{name}-tool", "url": upstream + "/ok", "integration_type": "REST", "request_type": "GET",
                    "input_schema": {"type": "object", "properties": {}}, "visibility": "team"}
            tools[name] = gateway.post("/tools", {"tool": tool, "team_id": team})["name"]
            ours = {"webhooks": [{"url": f"{hooks_url}/team-{name}", "events": ["tool_success"],
                                  "retry_schedule": ["2s", "1h"], "circuit_breaker": False}]}
            policy = {"tool_names": [tools[name]], "plugin_id": "WebhookNotification", "mode": "permissive",
                      "priority": 900, "config": ours}
            gateway.post("/v1/tools/plugin_bindings/", {"teams": {team: {"policies": [policy]}}})
        for name in ("a", "b"):
            for _ in range(CALLS):
                check(gateway.call_tool(tools[name], {}), f"team {name}'s call failed")
        for name in ("a", "b"):
            recorder.wait(f"/team-{name}", CALLS, 30)  # each refused once: pending, retried in 2 s
        before = {name: delivery_ids(recorder, f"/team-{name}") for name in ("a", "b")}
        for name in ("a", "b"):
            check(all(json.loads(b)["tool"] == tools[name] for _, b in recorder.requests[f"/team-{name}"]),
                  f"team {name}'s receiver got another team's event")
        check("/base" not in recorder.requests, "the base webhook got a team's event")
    finally:
        gateway.stop()
    print(f"gateway teams: two teams' bindings, one disk outbox: each team's {CALLS} events at its own receiver only; "
          "gateway stopped with them pending")

    accepting.set()
    gateway = start(work, hooks_url, teams)
    try:
        # A binding is built again on its team's first call after the restart.
        for name in ("a", "b"):
            check(gateway.call_tool(tools[name], {}), f"team {name}'s call failed after the restart")
        for name in ("a", "b"):
            recorder.wait(f"/team-{name}", 2 * CALLS + 1, 60)
            after = delivery_ids(recorder, f"/team-{name}")
            for request_id, ids in before[name].items():
                check(after[request_id] == ids, f"team {name}: {request_id} arrived with another delivery id")
            check(len(after) == CALLS + 1, f"team {name}: {len(after)} events at its receiver")
            check(all(json.loads(b)["tool"] == tools[name] for _, b in recorder.requests[f"/team-{name}"]),
                  f"team {name}'s receiver got another team's event")
        dead = list((work / "outbox" / "dead-letters").iterdir())
        check(not dead, f"dead letters: {dead}")
    finally:
        gateway.stop()
        hooks.shutdown()
        rest.shutdown()
    print(f"gateway teams: after the restart each team's {CALLS} pending deliveries arrived at its own receiver "
          "with their delivery ids, none dead-lettered")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
