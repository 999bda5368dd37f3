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
import subprocess
import sys
import threading
import time
from pathlib import Path

from e2e import ADMIN, Gateway, Recorder, backend, check, disk_outbox_plugins, receiver

WORKERS = 5
CALLS = 40

WEBHOOKS = """\
        - url: "{hooks}/hook"
          events: [tool_success]
          max_concurrency: 1
          circuit_breaker: false
"""
TEMPLATE = '{{"request_id": "{{{{request_id}}}}", "user": "{{{{user}}}}"}}'


def holders(gateway: Gateway, outbox: Path) -> dict[int, str]:
    """The gunicorn workers that have our plugin's disk outbox open: worker pid → the process
    file it holds (read from /proc: the gateway's JSON log names the master's pid only)."""
    found = {}
    children = Path(f"/proc/{gateway.process.pid}/task/{gateway.process.pid}/children").read_text().split()
    for pid in map(int, children):
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith(str(outbox)) and target.endswith(".lock"):
                    found[pid] = Path(target).stem
        except OSError:
            continue
    return found


def sender(port: int) -> int:
    """The pid of the process whose connection comes from 127.0.0.1:`port` (ss -tnp)."""
    out = subprocess.run(["ss", "-tnpH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(out.split("pid=")[1].split(",")[0])


def main(work: Path) -> None:
    recorder = Recorder()
    released = threading.Event()
    released.set()
    # While `released` is clear, every delivery is held in flight (answered once it is set).
    hooks, rest = receiver(recorder, lambda path: (released.wait(120), 200)[1]), backend()
    plugins = disk_outbox_plugins(work / "outbox", WEBHOOKS, TEMPLATE)
    gateway = Gateway(work, f"http://127.0.0.1:{hooks.server_address[1]}", plugins=plugins, workers=WORKERS)
    try:
        upstream = f"http://127.0.0.1:{rest.server_address[1]}"
        tool = gateway.post("/tools", {"tool": {"name": "workers_ok", "url": upstream + "/ok", "integration_type": "REST",
                                                "request_type": "GET", "input_schema": {"type": "object", "properties": {}}}})["name"]
        # Plugins load in each worker on its first request that needs them: call until all have.
        outbox = work / "outbox"
        deadline = time.monotonic() + 120
        while len(holders(gateway, outbox)) < WORKERS and time.monotonic() < deadline:
            gateway.call_tool(tool, {})
        log = gateway.log.read_text(errors="replace")
        check("Failed to load plugin" not in log, f"a worker failed to load our plugin; see {gateway.log}")
        loaded = holders(gateway, outbox)
        check(len(loaded) == WORKERS and len(set(loaded.values())) == WORKERS,
              f"{len(loaded)} of {WORKERS} workers have the outbox open, each its own file: {loaded}")
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

        # Hold deliveries in flight, queue more in every worker, then SIGKILL one that has some:
        # the sender of a held delivery (max_concurrency 1: its later events wait in its queue).
        released.clear()
        before = len(recorder.requests["/hook"])
        for _ in range(CALLS):
            check(gateway.call_tool(tool, {}), "a tool call failed")
        held = recorder.wait("/hook", before + 1, 30)[before]
        victim = sender(int(held[0]["client-port"]))
        victim_file = holders(gateway, outbox)[victim]
        # The hooks ran inside the calls, which returned: what the victim admitted is journaled,
        # and committed within its 5 ms group commit; the delivery it holds was sent after that.
        time.sleep(0.1)
        os.kill(victim, signal.SIGKILL)
        released.set()
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
        deadline = time.monotonic() + 30
        while any(p.stem == victim_file for p in outbox.iterdir()):
            check(time.monotonic() < deadline, "the killed worker's file was never adopted")
            time.sleep(0.1)
        print(f"gateway workers: a worker SIGKILLed with deliveries held in flight: gunicorn replaced it, its file was "
              f"adopted, all {expected} events arrived, {twice} twice")
    finally:
        released.set()
        gateway.stop()
        hooks.shutdown()
        rest.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
