"""End to end through the real ContextForge gateway (mcp-contextforge-gateway, pinned by
tests/run.sh), with the freshly built wheel installed next to it.

Starts on 127.0.0.1: a recording webhook receiver (a fast path and a slow one), a REST
backend answering 200 or 500, and the gateway itself (SQLite, plugins on, our plugin in its
plugin config). Registers REST tools, a prompt and a resource, calls them through /rpc and
checks what the receiver got: events, headers, body fields ({{user}} is the caller's email),
the HMAC. Then the gateway's 30 s plugin-manager rebuild: tool calls every 1.5 s across it
while the slow webhook answers after 2 s — no call may stall behind the old instance's
shutdown, and every event must still reach the slow webhook. Stops everything it started.

Usage: python e2e.py WORK_DIR   (prints a summary; exit status 0 on success)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.request import Request, urlopen

HMAC_SECRET = "e2e-hmac-secret"
ADMIN = "admin@example.com"
SLOW_SECONDS = 2.0
REBUILD_PERIOD = 36.0  # the gateway rebuilds its plugin managers every 30 s
CALL_INTERVAL = 1.5


class Recorder:
    """Webhook requests by path, and a condition to wait on."""

    def __init__(self) -> None:
        self.requests: dict[str, list[tuple[dict[str, str], bytes]]] = {}
        self.cond = threading.Condition()

    def add(self, path: str, headers: dict[str, str], body: bytes) -> None:
        with self.cond:
            self.requests.setdefault(path, []).append((headers, body))
            self.cond.notify_all()

    def wait(self, path: str, count: int, timeout: float) -> list[tuple[dict[str, str], bytes]]:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.requests.get(path, [])) >= count, timeout)
            got = list(self.requests.get(path, []))
        assert ok, f"{path}: expected {count} requests, got {len(got)}"
        return got


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def receiver(recorder: Recorder) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            recorder.add(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            if self.path == "/slow":
                time.sleep(SLOW_SECONDS)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return serve(Handler)


def backend() -> ThreadingHTTPServer:
    """The REST tools' upstream: /ok answers 200 with JSON, /fail answers 500."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            status, body = (200, b'{"ok": true}') if self.path.startswith("/ok") else (500, b'{"error": "backend down"}')
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return serve(Handler)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PLUGIN_CONFIG = """\
plugin_settings:
  parallel_execution_within_band: false
  plugin_timeout: 30
  fail_on_plugin_error: true
plugin_dirs: []
plugins:
  - name: "WebhookNotification"
    kind: "cpex_webhook_notification.WebhookNotificationPlugin"
    hooks: ["prompt_pre_fetch", "prompt_post_fetch", "tool_pre_invoke", "tool_post_invoke",
            "resource_pre_fetch", "resource_post_fetch"]
    mode: "permissive"
    priority: 900
    config:
      {{% raw %}}
      webhooks:
        - url: "{hooks}/hook"
          events: [tool_success, tool_error, prompt_success, resource_success]
          authentication: {{type: hmac, hmac_secret: "${{env.E2E_HMAC_SECRET}}", hmac_header: X-Hub-Signature-256}}
        - url: "{hooks}/slow"
          events: [tool_success]
          max_concurrency: 1
      payload_templates:
        tool_success: '{{"event": "{{{{event}}}}", "user": "{{{{user}}}}", "name": "{{{{user.full_name}}}}", "tool": "{{{{metadata.tool_name}}}}", "request_id": "{{{{request_id}}}}", "id": "{{{{delivery_id}}}}"}}'
      {{% endraw %}}
"""


class Gateway:
    def __init__(self, work: Path, hooks_url: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        (work / "plugins.yaml").write_text(PLUGIN_CONFIG.format(hooks=hooks_url))
        secret = "e2e-jwt-secret-key-0123456789abcdefghij"
        self.env = dict(
            os.environ,
            HOST="127.0.0.1",
            PORT=str(self.port),
            DATABASE_URL=f"sqlite:///{work}/gateway.db",
            PLUGINS_ENABLED="true",
            PLUGINS_CONFIG_FILE=str(work / "plugins.yaml"),
            PLUGINS_FAIL_ON_PLUGIN_ERROR="true",
            JWT_SECRET_KEY=secret,
            AUTH_ENCRYPTION_SECRET="e2e-auth-encryption-secret-0123456789ab",
            PLATFORM_ADMIN_EMAIL=ADMIN,
            PLATFORM_ADMIN_PASSWORD="E2e-Admin-Passw0rd!",
            DEFAULT_USER_PASSWORD="E2e-Default-Passw0rd!",
            BASIC_AUTH_PASSWORD="E2e-Basic-Passw0rd!",
            SSRF_ALLOW_LOCALHOST="true",
            MCPGATEWAY_UI_ENABLED="false",
            CACHE_TYPE="memory",
            REDIS_URL="",
            LOG_LEVEL="INFO",
            E2E_HMAC_SECRET=HMAC_SECRET,
        )
        self.log = work / "gateway.log"
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "mcpgateway"), "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, cwd=work,
        )
        deadline = time.monotonic() + 120
        while True:
            assert self.process.poll() is None, f"the gateway exited; see {self.log}"
            try:
                with urlopen(f"{self.base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the gateway did not start; see {self.log}"
            time.sleep(0.5)
        token = subprocess.run(
            [sys.executable, "-m", "mcpgateway.utils.create_jwt_token", "--username", ADMIN, "--exp", "60",
             "--secret", secret],
            env=self.env, capture_output=True, text=True, check=True,
        )
        self.token = token.stdout.strip().splitlines()[-1]

    def post(self, path: str, doc: dict) -> dict:
        request = Request(f"{self.base}{path}", data=json.dumps(doc).encode(), method="POST",
                          headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urlopen(request, timeout=60) as r:
            return json.loads(r.read())

    def rpc(self, method: str, params: dict) -> dict:
        return self.post("/rpc", {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})

    def loaded_instances(self) -> int:
        return self.log.read_text(errors="replace").count("Loaded plugin: WebhookNotification")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def calls_across_a_rebuild(gateway: Gateway, tool: str) -> tuple[list[float], int]:
    """Calls `tool` every 1.5 s for 36 s, across the gateway's 30 s plugin-manager rebuild;
    returns each call's latency (seconds) and how many plugin instances were built meanwhile."""
    before = gateway.loaded_instances()
    latencies = []
    start = time.monotonic()
    while time.monotonic() - start < REBUILD_PERIOD:
        t = time.monotonic()
        gateway.rpc("tools/call", {"name": tool, "arguments": {}})
        latencies.append(time.monotonic() - t)
        time.sleep(max(0.0, CALL_INTERVAL - (time.monotonic() - t)))
    return latencies, gateway.loaded_instances() - before


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def main(work: Path) -> None:
    recorder = Recorder()
    hooks, rest = receiver(recorder), backend()
    gateway = Gateway(work, f"http://127.0.0.1:{hooks.server_address[1]}")
    try:
        upstream = f"http://127.0.0.1:{rest.server_address[1]}"
        # The gateway slugs names (e2e_ok → e2e-ok): call what it answers.
        tool = {}
        for name, path in (("e2e_ok", "/ok"), ("e2e_fail", "/fail")):
            tool[name] = gateway.post("/tools", {"tool": {"name": name, "url": upstream + path, "integration_type": "REST",
                                                          "request_type": "GET", "input_schema": {"type": "object", "properties": {}}}})["name"]
        prompt = gateway.post("/prompts", {"prompt": {"name": "e2e_greet", "template": "Hello {{ who }}",
                                                      "arguments": [{"name": "who", "required": True}]}})["name"]
        gateway.post("/resources", {"resource": {"uri": "e2e://doc", "name": "e2e_doc", "content": "hello",
                                                 "mime_type": "text/plain"}})

        gateway.rpc("tools/call", {"name": tool["e2e_ok"], "arguments": {}})
        gateway.rpc("tools/call", {"name": tool["e2e_fail"], "arguments": {}})
        gateway.rpc("prompts/get", {"name": prompt, "arguments": {"who": "Ann"}})
        gateway.rpc("resources/read", {"uri": "e2e://doc"})
        got = recorder.wait("/hook", 4, 30)
        by_event = {h["x-webhook-event"]: (h, json.loads(b)) for h, b in got}
        check(set(by_event) == {"tool_success", "tool_error", "prompt_success", "resource_success"}, f"events: {sorted(by_event)}")
        for headers, body in got:
            want = "sha256=" + hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).hexdigest()
            check(headers.get("x-hub-signature-256") == want, f"HMAC of {headers['x-webhook-event']} does not verify")
        _, ok = by_event["tool_success"]
        check(ok["user"] == ADMIN, f"{{{{user}}}} is {ok['user']!r}, not the caller's email")
        check(ok["tool"] == tool["e2e_ok"] and ok["id"] == by_event["tool_success"][0]["x-webhook-delivery"], f"tool_success body: {ok}")
        _, failed = by_event["tool_error"]
        check(failed["metadata"]["tool_name"] == tool["e2e_fail"] and failed["metadata"].get("error"), f"tool_error body: {failed}")
        check(by_event["prompt_success"][1]["metadata"]["prompt_id"] is not None, "prompt_success names the prompt")
        check(by_event["resource_success"][1]["metadata"]["resource_uri"] == "e2e://doc", "resource_success names the URI")
        print(f"gateway e2e: 4 events delivered, HMAC verified, {{{{user}}}} = {ok['user']}")

        latencies, rebuilt = calls_across_a_rebuild(gateway, tool["e2e_ok"])
        median, worst = statistics.median(latencies), max(latencies)
        print(f"gateway e2e: {len(latencies)} tool calls across {rebuilt} plugin rebuild(s): "
              f"median {median * 1000:.0f} ms, slowest {worst * 1000:.0f} ms")
        check(rebuilt >= 1, "no plugin rebuild happened during the run")
        check(worst - median < 1.0, f"a call stalled: slowest {worst:.2f}s vs median {median:.2f}s")
        # Every tool_success (the first call, and each of the loop's) reaches the slow webhook,
        # although the instances that queued most of them were shut down meanwhile.
        expected = 1 + len(latencies)
        slow = recorder.wait("/slow", expected, expected * SLOW_SECONDS + 30)
        ids = {h["x-webhook-delivery"] for h, _ in slow}
        check(len(ids) == expected, f"slow webhook: {len(ids)} distinct deliveries of {expected}")
        print(f"gateway e2e: all {expected} events reached the slow webhook after the rebuild")
    finally:
        gateway.stop()
        hooks.shutdown()
        rest.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
