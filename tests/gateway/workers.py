"""The real gateway pre-forked as in production: gunicorn with 5 UvicornWorker workers and
`--preload` (what the gateway's run-gunicorn.sh launcher does), every worker on one disk outbox.

Checks: every worker loads our plugin (none logs a failure); every tool call's event is
delivered once; then, with deliveries held in flight by the receiver, one worker is SIGKILLed:
gunicorn replaces it, and every event it had pending arrives once, from another process (its
file adopted), with the same delivery id — at most its one in-flight delivery twice.

Usage: python workers.py WORK_DIR   (prints a summary; exit status 0 on success)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from e2e import ADMIN, Gateway, Recorder, backend, check, serve

WORKERS = 5
CALLS = 40

PLUGINS = """\
plugin_settings:
  plugin_timeout: 30
  fail_on_plugin_error: true
plugin_dirs: []
plugins:
  - name: "WebhookNotification"
    kind: "cpex_webhook_notification.WebhookNotificationPlugin"
    hooks: ["tool_post_invoke"]
    mode: "permissive"
    priority: 900
    config:
      {{% raw %}}
      outbox: {{type: disk, path: "{outbox}"}}
      webhooks:
        - url: "{{hooks}}/hook"
          events: [tool_success]
          max_concurrency: 1
          circuit_breaker: false
      payload_templates:
        tool_success: '{{"request_id": "{{{{request_id}}}}", "user": "{{{{user}}}}"}}'
      {{% endraw %}}
"""


class HoldingRecorder(Recorder):
    """Records every request; while `holding` is set, answers none of them (they stay in flight)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()
        self.released.set()


def receiver(recorder: HoldingRecorder):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            recorder.add(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            recorder.released.wait(120)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return serve(Handler)


def loaded_pids(gateway: Gateway) -> set[int]:
    """The processes that logged loading our plugin (the gateway logs JSON with process_id)."""
    pids = set()
    for line in gateway.log.read_text(errors="replace").splitlines():
        if "Loaded plugin: WebhookNotification" in line and line.startswith("{"):
            pids.add(json.loads(line).get("process_id"))
    return pids


def served_by(gateway: Gateway) -> dict[str, int]:
    """request_id → the worker process that served it, from the gateway's JSON log."""
    found = {}
    for line in gateway.log.read_text(errors="replace").splitlines():
        if line.startswith("{") and "tools/call" in line:
            doc = json.loads(line)
            if doc.get("request_id") and doc.get("process_id"):
                found.setdefault(doc["request_id"], doc["process_id"])
    return found


def main(work: Path) -> None:
    recorder = HoldingRecorder()
    hooks, rest = receiver(recorder), backend()
    plugins = PLUGINS.format(outbox=work / "outbox")
    gateway = Gateway(work, f"http://127.0.0.1:{hooks.server_address[1]}", plugins=plugins, workers=WORKERS)
    try:
        upstream = f"http://127.0.0.1:{rest.server_address[1]}"
        tool = gateway.post("/tools", {"tool": {"name": "workers_ok", "url": upstream + "/ok", "integration_type": "REST",
                                                "request_type": "GET", "input_schema": {"type": "object", "properties": {}}}})["name"]
        # Plugins load in each worker on its first request that needs them: call until all have.
        deadline = time.monotonic() + 120
        while len(loaded_pids(gateway)) < WORKERS and time.monotonic() < deadline:
            gateway.call_tool(tool, {})
        log = gateway.log.read_text(errors="replace")
        check("Failed to load plugin" not in log, f"a worker failed to load our plugin; see {gateway.log}")
        check(len(loaded_pids(gateway)) == WORKERS, f"{len(loaded_pids(gateway))} of {WORKERS} workers loaded our plugin")
        warm = len(recorder.requests.get("/hook", []))
        recorder.wait("/hook", warm, 30)

        # Every call delivers once, whichever worker serves it.
        for _ in range(CALLS):
            check(gateway.call_tool(tool, {}), "a tool call failed")
        got = recorder.wait("/hook", warm + CALLS, 60)
        ids = [json.loads(b)["request_id"] for _, b in got]
        check(len(set(ids)) == len(ids) == warm + CALLS, f"{len(set(ids))} distinct of {len(ids)} deliveries")
        check(all(json.loads(b)["user"] == ADMIN for _, b in got), "{{user}} is the caller")
        print(f"gateway workers: {WORKERS} of {WORKERS} gunicorn workers loaded the plugin on one disk outbox; "
              f"{CALLS} calls, {CALLS} webhooks, each once")

        # Hold deliveries in flight, queue more in every worker, then SIGKILL one that has some.
        recorder.released.clear()
        before = len(recorder.requests["/hook"])
        for _ in range(CALLS):
            check(gateway.call_tool(tool, {}), "a tool call failed")
        held = [json.loads(b)["request_id"] for _, b in recorder.requests["/hook"][before:]]
        served = served_by(gateway)
        recent = [rid for rid, pid in served.items() if rid not in ids]
        by_pid: dict[int, int] = {}
        for rid in recent:
            by_pid[served[rid]] = by_pid.get(served[rid], 0) + 1
        victim = max(by_pid, key=by_pid.get)
        # Its one delivery in flight (max_concurrency 1) shows its engine is delivering: what it
        # admitted before (the calls returned before) is committed by now (5 ms group commit).
        deadline = time.monotonic() + 30
        while not any(served.get(json.loads(b)["request_id"]) == victim for _, b in recorder.requests["/hook"][before:]):
            check(time.monotonic() < deadline, "the victim never started a delivery")
            time.sleep(0.05)
        time.sleep(0.2)  # > the 5 ms group commit of what the victim admitted
        os.kill(victim, signal.SIGKILL)
        recorder.released.set()
        expected = warm + 2 * CALLS
        got = recorder.wait("/hook", expected, 120)
        deadline = time.monotonic() + 60
        while len({json.loads(b)["request_id"] for _, b in recorder.requests["/hook"]}) < expected:
            check(time.monotonic() < deadline, "deliveries of the killed worker never arrived")
            time.sleep(0.1)
        got = recorder.requests["/hook"]
        by_request: dict[str, set[str]] = {}
        for headers, body in got:
            by_request.setdefault(json.loads(body)["request_id"], set()).add(headers["x-webhook-delivery"])
        twice = len(got) - len(by_request)
        check(all(len(ids) == 1 for ids in by_request.values()), "a delivery id changed")
        check(twice <= 1, f"{twice} deliveries arrived twice (only the killed worker's one in flight may)")
        print(f"gateway workers: SIGKILL of a worker holding {by_pid[victim]} of {CALLS} events "
              f"({len(held)} deliveries in flight fleet-wide): all {expected} events arrived, {twice} twice")
    finally:
        recorder.released.set()
        gateway.stop()
        hooks.shutdown()
        rest.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
