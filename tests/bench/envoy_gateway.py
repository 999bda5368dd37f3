"""Envoy's requests/s with and without our hook: three Envoy processes (--concurrency 1, a
direct_response route): no Lua filter (`plain`), a Lua filter whose `envoy_on_response` is
empty (`lua`: the filter's own cost), and the same filter calling bindings/lua (`hooked`:
`wn.attach`, one tool_post_invoke per request, delivered to RECEIVER), and that hook into a
batching webhook (`batched`: 500 events a request); `wrk -t1 -c32 -d5s`, three interleaved
runs. Prints one JSON row per run.

Usage: python envoy_gateway.py ENVOY LIBRARY RECEIVER_URL"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENVOY, LIB, RECEIVER = sys.argv[1:4]
HOOK = """
package.path = "%s/bindings/lua/?.lua;" .. package.path
local notifier = assert(require("webhook_notification").attach(
  '{"queue_capacity": 100000, "webhooks": [{"url": "%s", "events": ["tool_success"], "max_concurrency": 64%s}]}', "envoy-bench"))
function envoy_on_response(handle)
  notifier:invoke("tool_post_invoke", '{"name": "search", "result": {}}', nil)
end
"""
BATCH = ', "batch": {"max_events": 500, "max_wait": "100ms"}'
HOOKED, BATCHED = (HOOK % (ROOT, RECEIVER, extra) for extra in ("", BATCH))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


EMPTY = "function envoy_on_response(handle) end"


def config(port: int, lua: str | None) -> dict:
    filters = [{"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
    if lua:
        filters.insert(0, {"name": "envoy.filters.http.lua", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": lua}}})
    manager = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
               "stat_prefix": "bench", "http_filters": filters,
               "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                   {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]}}
    return {"static_resources": {"listeners": [{"name": "bench", "address": {"socket_address": {
        "address": "127.0.0.1", "port_value": port}}, "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}]}]}}


def start(label: str, lua: str | None, workdir: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    path = Path(workdir) / f"envoy-{label}.json"
    path.write_text(json.dumps(config(port, lua)))
    process = subprocess.Popen([ENVOY, "-c", str(path), "--concurrency", "1", "--disable-hot-restart",
                                "--base-id", str(port), "-l", "error"],
                               env={**os.environ, "WEBHOOK_NOTIFICATION_LIB": LIB, "LOG_LEVEL": "off"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            assert process.poll() is None, "envoy exited"
            time.sleep(0.05)


with tempfile.TemporaryDirectory() as workdir:
    variants = (("plain", None), ("lua", EMPTY), ("hooked", HOOKED), ("batched", BATCHED))
    envoys = {label: start(label, lua, workdir) for label, lua in variants}
    try:
        for run in (1, 2, 3):
            for label, (_, port) in envoys.items():
                out = subprocess.run(["wrk", "-t1", "-c32", "-d5s", f"http://127.0.0.1:{port}/"],
                                     capture_output=True, text=True, check=True).stdout
                rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
                print(json.dumps({"bench": "envoy-gateway", "location": label, "run": run, "per_second": rate}))
    finally:
        for process, _ in envoys.values():
            process.terminate()
            process.wait(timeout=60)
