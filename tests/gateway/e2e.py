"""End to end through the real ContextForge gateway (mcp-contextforge-gateway, pinned by
tests/run.sh), with the freshly built wheel installed next to it.

Starts on 127.0.0.1: a recording webhook receiver (a fast path and a slow one), a REST
backend answering 200 or 500, and the gateway itself (SQLite, plugins on, our plugin in its
plugin config). Registers REST tools, a prompt and a resource, calls them through /rpc and
checks what the receiver got: events, headers, body fields ({{user}} is the caller's email),
the HMAC. Then the gateway's 30 s plugin-manager rebuild: tool calls every 1.5 s across it
while the slow webhook answers after 2 s — no call may stall behind the old instance's
shutdown, and every event must still reach the slow webhook. Last, violations: the gateway's
own rate limiter and PII filter (PyPI, as its [plugins] extra pins them) block or flag calls in
enforce, audit and permissive modes (permissive through a team binding), and each violation
reaches our violation webhook once — a team binding's at that team's webhook only. Stops
everything it started.

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
from urllib.error import HTTPError
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


def receiver(recorder: Recorder, answer=None) -> ThreadingHTTPServer:
    """A webhook receiver recording every request (with the sender's port as `client-port`);
    `answer(path)` gives the status, and may block to hold the request (default: /slow
    answers after SLOW_SECONDS, everything 200)."""

    def default(path: str) -> int:
        if path == "/slow":
            time.sleep(SLOW_SECONDS)
        return 200

    answer = answer or default

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers["client-port"] = str(self.client_address[1])
            recorder.add(self.path, headers, body)
            self.send_response(answer(self.path))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return serve(Handler)


def disk_outbox_plugins(outbox: Path, webhooks: str, template: str) -> str:
    """A gateway plugin config file (a Gateway `plugins` text: `{hooks}` is the receiver's URL)
    with our plugin alone on `tool_post_invoke`, on the disk outbox `outbox`, with `webhooks`
    (YAML lines) and `template` as tool_success's payload template."""
    return (
        "plugin_settings:\n  plugin_timeout: 30\n  fail_on_plugin_error: true\nplugin_dirs: []\nplugins:\n"
        '  - name: "WebhookNotification"\n    kind: "cpex_webhook_notification.WebhookNotificationPlugin"\n'
        '    hooks: ["tool_post_invoke"]\n    mode: "permissive"\n    priority: 900\n    config:\n'
        "      {{% raw %}}\n"
        f'      outbox: {{{{type: disk, path: "{outbox}"}}}}\n      shutdown_timeout: 2\n'
        f"      webhooks:\n{webhooks}"
        f"      payload_templates:\n        tool_success: '{template}'\n"
        "      {{% endraw %}}\n"
    )


def backend() -> ThreadingHTTPServer:
    """The REST tools' upstream: /ok answers 200 with JSON, /pii answers 200 with a card
    number in it, /fail answers 500."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            status, body = (200, b'{"ok": true}') if self.path.startswith("/ok") else (500, b'{"error": "backend down"}')
            if self.path.startswith("/pii"):
                status, body = 200, b'{"card": "4111 1111 1111 1111"}'
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
  - name: "RateLimiter"
    kind: "cpex_rate_limiter.rate_limiter.RateLimiterPlugin"
    hooks: ["tool_pre_invoke"]
    mode: "enforce"
    priority: 10
    config:
      by_user: "1000/m"
      by_tool: {{"e2e-enforce": "2/m", "e2e-permissive": "2/m", "e2e-team": "2/m"}}
  # A binding's mode may only be enforce, enforce_ignore_error, permissive or disabled in
  # gateway 1.1.0 (it ignores the others): audit mode is a base-config entry of its own.
  - name: "AuditRateLimiter"
    kind: "cpex_rate_limiter.rate_limiter.RateLimiterPlugin"
    hooks: ["tool_pre_invoke"]
    mode: "audit"
    priority: 11
    config:
      by_user: "1000/m"
      by_tool: {{"e2e-audit": "2/m"}}
  - name: "PIIFilter"
    kind: "cpex_pii_filter.pii_filter.PIIFilterPlugin"
    hooks: ["tool_pre_invoke", "tool_post_invoke"]
    mode: "enforce"
    priority: 20
    config: {{block_on_detection: true}}
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
        - url: "{hooks}/violations"
          events: [violation, rate_limit_exceeded, pii_detected, harmful_content]
          authentication: {{type: hmac, hmac_secret: "${{env.E2E_HMAC_SECRET}}", hmac_header: X-Hub-Signature-256}}
      payload_templates:
        tool_success: '{{"event": "{{{{event}}}}", "user": "{{{{user}}}}", "name": "{{{{user.full_name}}}}", "tool": "{{{{metadata.tool_name}}}}", "request_id": "{{{{request_id}}}}", "id": "{{{{delivery_id}}}}"}}'
      {{% endraw %}}
"""


class Gateway:
    """The gateway on a free port of 127.0.0.1 with `plugins` (default: PLUGIN_CONFIG) as its
    plugin config, run by its own `mcpgateway` command or, with `workers`, by gunicorn as the
    gateway's production launcher runs it (UvicornWorker, `--preload`)."""

    def __init__(self, work: Path, hooks_url: str, plugins: str = PLUGIN_CONFIG, workers: int = 0) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        (work / "plugins.yaml").write_text(plugins.format(hooks=hooks_url))
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
        command = [str(Path(sys.executable).parent / "mcpgateway"), "--host", "127.0.0.1", "--port", str(self.port)]
        if workers:
            command = [str(Path(sys.executable).parent / "gunicorn"), "mcpgateway.main:app", "--preload",
                       "--worker-class", "uvicorn.workers.UvicornWorker", "--workers", str(workers),
                       "--bind", f"127.0.0.1:{self.port}", "--timeout", "120"]
        # A session of its own: stop() signals the whole group (gunicorn's workers included).
        self.process = subprocess.Popen(command, env=self.env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                        cwd=work, start_new_session=True)
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
        self.secret = secret
        self.token = self.mint_token()

    def mint_token(self, *extra: str) -> str:
        """A JWT for the admin (`extra`: more create_jwt_token options)."""
        token = subprocess.run(
            [sys.executable, "-m", "mcpgateway.utils.create_jwt_token", "--username", ADMIN, "--exp", "60",
             "--secret", self.secret, *extra],
            env=self.env, capture_output=True, text=True, check=True,
        )
        return token.stdout.strip().splitlines()[-1]

    def post(self, path: str, doc: dict) -> dict:
        request = Request(f"{self.base}{path}", data=json.dumps(doc).encode(), method="POST",
                          headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urlopen(request, timeout=60) as r:
            return json.loads(r.read())

    def rpc(self, method: str, params: dict) -> dict:
        return self.post("/rpc", {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})

    def call_tool(self, name: str, arguments: dict) -> bool:
        """Calls a tool through /rpc; True if the call succeeded (a plugin may refuse it, with
        an HTTP error or a JSON-RPC error)."""
        try:
            answer = self.rpc("tools/call", {"name": name, "arguments": arguments})
        except HTTPError:
            return False
        return "error" not in answer and not answer.get("result", {}).get("isError")

    def loaded_instances(self) -> int:
        return self.log.read_text(errors="replace").count("Loaded plugin: WebhookNotification")

    def stop(self) -> None:
        """TERM to the gateway's process group, then KILL to whatever of it is left (a worker
        that outlived its master would keep running after the test)."""
        group = self.process.pid  # its own session: the group id is its pid
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
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


VIOLATION_EVENTS = ["violation", "rate_limit_exceeded", "pii_detected", "harmful_content"]


def violations(gateway: Gateway, recorder: Recorder, hooks_url: str, upstream: str) -> None:
    """The real rate limiter and PII filter trip in enforce mode (base config), in audit and
    permissive modes (a second limiter in audit mode; a team binding of the first in permissive
    mode), and under a team binding of our plugin
    with its own webhook: each violation reaches exactly one webhook, once, signed."""
    team = gateway.post("/teams/", {"name": "e2e-team-a"})["id"]
    # Team resources and bindings need a token scoped to the team.
    gateway.token = gateway.mint_token("--admin", "--teams", team)
    properties = {"q": {"type": "string"}}
    for name, path in (("e2e-enforce", "/ok"), ("e2e-audit", "/ok"), ("e2e-permissive", "/ok"), ("e2e-team", "/ok"),
                       ("e2e-echo", "/ok"), ("e2e-pii-result", "/pii")):
        tool = {"name": name, "url": upstream + path, "integration_type": "REST", "request_type": "GET",
                "input_schema": {"type": "object", "properties": properties}, "visibility": "team"}
        check(gateway.post("/tools", {"tool": tool, "team_id": team})["name"] == name, f"tool {name} keeps its name")
    ours = {"webhooks": [{"url": f"{hooks_url}/team-violations", "events": VIOLATION_EVENTS,
                          "authentication": {"type": "hmac", "hmac_secret": HMAC_SECRET,
                                             "hmac_header": "X-Hub-Signature-256"}}]}
    policies = [
        {"tool_names": ["e2e-permissive"], "plugin_id": "RateLimiter", "mode": "permissive", "priority": 10, "config": {}},
        {"tool_names": ["e2e-team"], "plugin_id": "WebhookNotification", "mode": "permissive", "priority": 900,
         "config": ours},
    ]
    gateway.post("/v1/tools/plugin_bindings/", {"teams": {team: {"policies": policies}}})

    # Two calls a minute per limited tool: the third trips the limiter.
    outcomes = {name: [gateway.call_tool(name, {"q": "weather"}) for _ in range(3)]
                for name in ("e2e-enforce", "e2e-audit", "e2e-permissive", "e2e-team")}
    check(outcomes["e2e-enforce"] == [True, True, False] and outcomes["e2e-team"] == [True, True, False],
          f"the limiter blocks the third call in enforce mode: {outcomes}")
    check(outcomes["e2e-audit"] == [True] * 3 and outcomes["e2e-permissive"] == [True] * 3,
          f"audit and permissive never block: {outcomes}")
    check(not gateway.call_tool("e2e-echo", {"q": "my ssn is 123-45-6789"}), "the PII filter blocks an SSN argument")
    check(not gateway.call_tool("e2e-pii-result", {}), "the PII filter blocks a card number in a result")

    expected = {  # tool -> (event, code, mode the limiter or filter ran in, blocked)
        "e2e-enforce": ("rate_limit_exceeded", "RATE_LIMIT", "sequential", True),
        "e2e-audit": ("rate_limit_exceeded", "RATE_LIMIT", "audit", False),
        "e2e-permissive": ("rate_limit_exceeded", "RATE_LIMIT", "transform", False),
        "e2e-echo": ("pii_detected", "PII_DETECTED_IN_TOOL_ARGS", "sequential", True),
        "e2e-pii-result": ("pii_detected", "PII_DETECTED_IN_TOOL_RESULT", "sequential", True),
    }
    got = recorder.wait("/violations", len(expected), 30)
    team_got = recorder.wait("/team-violations", 1, 30)
    # Nothing more comes: a duplicate would arrive within the same second as its original.
    time.sleep(2)
    got, team_got = recorder.requests["/violations"], recorder.requests["/team-violations"]
    check(len(got) == len(expected) and len(team_got) == 1,
          f"one webhook per violation: {[json.loads(b) for _, b in got + team_got]}")
    for headers, body in got + team_got:
        want = "sha256=" + hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).hexdigest()
        check(headers.get("x-hub-signature-256") == want, "a violation webhook's HMAC does not verify")
    by_tool = {json.loads(b)["metadata"]["tool_name"]: json.loads(b) for _, b in got}
    check(set(by_tool) == set(expected), f"violations by tool: {sorted(by_tool)}")
    for tool, (event, code, mode, blocked) in expected.items():
        body = by_tool[tool]
        seen = (body["event"], body["violation"]["code"], body["metadata"]["mode"], body["metadata"]["blocked"])
        check(seen == (event, code, mode, blocked), f"{tool}: {seen}, wanted {(event, code, mode, blocked)}")
        check(body["user"] == ADMIN and body["request_id"], f"{tool}: user {body['user']!r}")
    team_body = json.loads(team_got[0][1])
    check((team_body["event"], team_body["metadata"]["tool_name"]) == ("rate_limit_exceeded", "e2e-team"),
          f"the team's webhook: {team_body}")
    print(f"gateway e2e: {len(got)} violations of the real rate limiter and PII filter (enforce, audit, permissive) "
          f"delivered once each, HMAC verified; the team binding's went to its own webhook")


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

        violations(gateway, recorder, f"http://127.0.0.1:{hooks.server_address[1]}", upstream)
    finally:
        gateway.stop()
        hooks.shutdown()
        rest.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
