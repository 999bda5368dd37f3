"""nginx with lua-nginx-module (Debian's nginx + libnginx-mod-http-lua + lua-cjson), 2 workers,
loading our library through bindings/lua: MCP tools/call → signed tool_success/tool_error,
nginx's own limit_req 429 → rate_limit_exceeded, the Lua API's stats, metrics and errors,
and `reload` and `quit` losing nothing. tests/run.sh installs the packages and sets
WEBHOOK_NOTIFICATION_LIB to the built library."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, wait_listening

ROOT = Path(__file__).resolve().parents[2]
SECRET = "nginx-test-secret"
LIB = os.environ.get("WEBHOOK_NOTIFICATION_LIB")
pytestmark = pytest.mark.skipif(not LIB, reason="tests/run.sh sets WEBHOOK_NOTIFICATION_LIB")

CONF = """
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
user root;
worker_processes 2;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
env WEBHOOK_NOTIFICATION_LIB;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
  uwsgi_temp_path {dir}; scgi_temp_path {dir};
  lua_package_path "{root}/bindings/lua/?.lua;{root}/tests/hosts/nginx/?.lua;;";
  limit_req_zone $binary_remote_addr zone=mcp:1m rate=1r/m;
  init_worker_by_lua_block {{ require("mcp_webhooks").init_worker([==[{config}]==]) }}
  exit_worker_by_lua_block {{ require("mcp_webhooks").exit_worker() }}
  server {{
    listen 127.0.0.1:{port};
    location = /mcp {{
      access_by_lua_block {{ require("mcp_webhooks").access() }}
      proxy_pass http://127.0.0.1:{port}/backend;
      body_filter_by_lua_block {{ require("mcp_webhooks").body_filter() }}
      log_by_lua_block {{ require("mcp_webhooks").log() }}
    }}
    location = /limited {{
      limit_req zone=mcp burst=1 nodelay;
      limit_req_status 429;
      content_by_lua_block {{ ngx.say("{{}}") }}  # `return` would answer before limit_req runs
      log_by_lua_block {{ require("mcp_webhooks").log() }}
    }}
    location = /backend {{
      content_by_lua_block {{
        ngx.req.read_body()
        local rpc = require("cjson").decode(ngx.req.get_body_data())
        local broken = rpc.params.name == "broken"
        ngx.say(require("cjson").encode({{jsonrpc = "2.0", id = rpc.id, result = {{isError = broken,
          content = {{{{type = "text", text = broken and "backend down" or "found"}}}}}}}}))
      }}
    }}
    location = /event {{ content_by_lua_block {{ require("mcp_webhooks").event() }} }}
    location = /stats {{ content_by_lua_block {{ require("mcp_webhooks").stats() }} }}
    location = /metrics {{ content_by_lua_block {{ require("mcp_webhooks").metrics() }} }}
    location = /probe {{ content_by_lua_block {{ require("mcp_webhooks").probe() }} }}
  }}
}}
"""


def call(port: int, path: str, body: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers={"Content-Type": "application/json", "X-User": "alice@example.com"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def tool_call(port: int, name: str, n: int = 1) -> int:
    return call(port, "/mcp", {"jsonrpc": "2.0", "id": n, "method": "tools/call",
                               "params": {"name": name, "arguments": {}}})[0]


def events(receiver, event: str) -> list:
    return [r for r in receiver.requests if r.headers.get("x-webhook-event") == event]


def wait_events(receiver, event: str, n: int, timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    with receiver.cond:
        while len(events(receiver, event)) < n:
            left = deadline - time.monotonic()
            assert left > 0, f"{len(events(receiver, event))} of {n} {event} arrived"
            receiver.cond.wait(left)
        return events(receiver, event)


@pytest.fixture
def nginx(receiver, tmp_path):
    yield from run_nginx(receiver, tmp_path)


def run_nginx(receiver, tmp_path, **extra):
    """nginx with our config (plus `extra` top-level fields, e.g. an outbox) until the test ends."""
    tmp_path.chmod(0o755)
    config = json.dumps({"webhooks": [{
        "url": receiver.url("/hook"), "events": ["tool_success", "tool_error", "rate_limit_exceeded"],
        "authentication": {"type": "hmac", "hmac_secret": SECRET}, "max_concurrency": 1}],
        "shutdown_timeout": 30, **extra})
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONF.format(dir=tmp_path, root=ROOT, config=config, port=port))
    process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path)],
                               env={**os.environ, "WEBHOOK_NOTIFICATION_LIB": LIB, "LOG_LEVEL": "warn"})
    wait_listening(process, port, tmp_path / "error.log", within=30)
    yield process, port, tmp_path
    if process.poll() is None:
        # TERM: the master stops its workers (a SIGKILLed master would leave them running).
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log = (tmp_path / "error.log").read_text()
    assert "webhook-notification" not in log, log


def test_tool_calls_and_limit_req_429s_arrive_signed_and_the_lua_api_reports(nginx, receiver):
    process, port, _ = nginx
    assert tool_call(port, "search") == 200
    assert tool_call(port, "broken") == 200
    success = wait_events(receiver, "tool_success", 1)[0]
    error = wait_events(receiver, "tool_error", 1)[0]
    for request in (success, error):
        expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["x-signature"] == expected
    assert success.json()["metadata"] == {"tool_name": "search"}
    assert success.json()["user"] == "alice@example.com"
    assert error.json()["metadata"] == {"tool_name": "broken", "error": "backend down"}

    statuses = [call(port, "/limited", {})[0] for _ in range(6)]
    limited = statuses.count(429)
    assert limited >= 4 and set(statuses) == {200, 429}, statuses
    arrived = wait_events(receiver, "rate_limit_exceeded", limited)
    assert arrived[0].json()["violation"] == {"code": "RATE_LIMIT", "reason": "nginx limit_req"}

    status, body = call(port, "/stats")
    stats = json.loads(body)
    assert status == 200 and stats["webhooks"][0]["url"].startswith("http://127.0.0.1")
    status, body = call(port, "/metrics")
    assert b'webhook_notification_events_total{plugin="nginx"' in body
    probe = json.loads(call(port, "/probe")[1])
    assert (probe["raised"], probe["quiet"]) == ("prompt_success", False), "invoke returns the event raised"
    assert "unknown hook" in probe["unknown_hook"]["err"]
    assert "payload" in probe["bad_json"]["err"]
    assert "must be a table or a JSON string" in probe["bad_type"]["err"]
    assert probe["unwanted"] == {"ok": False}, "a hook nobody takes: false, its payload unread"
    assert "payload" in probe["wanted_bad_json"]["err"]
    silence = probe["silence"]
    assert len(silence["id"]) == 36 and silence["listed"] == 1 and silence["comment"] == "from lua", silence
    assert silence["expired"] is True and "no silence" in silence["again"] and "flavour" in silence["bad"]
    assert "closed" in probe["after_close"]["err"]
    assert "webhooks[0].url" in probe["bad_config"]["err"]
    assert probe["reloaded"], "the module loads again in one Lua state (lua_code_cache off)"
    for name, outcome in probe["misuse"].items():
        assert not outcome["raised"], f"{name} raised into the gateway: {outcome}"
        assert not outcome["value"] and outcome["err"], f"{name}: {outcome}"
    assert "NUL" in probe["misuse"]["config_nul"]["err"] and "NUL" in probe["misuse"]["payload_nul"]["err"]


def test_reload_and_quit_lose_nothing(nginx, receiver):
    process, port, _ = nginx
    receiver.reply = lambda n: (200, {}, 0.2)  # deliveries are still pending at the signal
    for i in range(20):
        assert tool_call(port, "search", i) == 200
    process.send_signal(signal.SIGHUP)  # nginx -s reload: new workers, old ones exit gracefully
    wait_events(receiver, "tool_success", 20)
    deadline = time.monotonic() + 30
    while tool_call(port, "search", 100) != 200:  # the new workers serve
        assert time.monotonic() < deadline
    for i in range(20):
        assert tool_call(port, "fetch", i) == 200
    process.send_signal(signal.SIGQUIT)  # nginx -s quit: workers finish, exit_worker flushes
    assert process.wait(timeout=60) == 0
    fetched = [r for r in events(receiver, "tool_success") if r.json()["metadata"]["tool_name"] == "fetch"]
    assert len(fetched) == 20


def test_two_workers_share_a_disk_outbox_and_a_killed_ones_deliveries_arrive(receiver, tmp_path):
    """Both workers load on one disk outbox; one is SIGKILLed while its deliveries wait (the
    receiver holds the one in flight) and all it admitted is committed: nginx starts a new
    worker, and every event the dead one had pending arrives once, adopted by a live worker, at
    most its one in-flight twice."""
    release = threading.Event()
    receiver.reply = lambda n: (release.wait(120), (200, {}, 0.0))[1]
    (tmp_path / "outbox").mkdir()
    run = run_nginx(receiver, tmp_path, outbox={"type": "disk", "path": str(tmp_path / "outbox")})
    process, port, _ = next(run)
    try:
        calls = 30
        for _ in range(calls):  # each event admitted before its call is answered
            assert call(port, "/event", {})[0] == 200
        first = receiver.wait_for(1)[0]  # a worker's delivery in flight, held
        victim = int(first.json()["server_id"].removeprefix("nginx-worker-"))
        # Wait until the victim itself reports everything it admitted committed.
        deadline = time.monotonic() + 30
        while True:
            stats = json.loads(call(port, "/stats")[1])
            if stats["worker"] == victim and stats["outbox"]["uncommitted"] == 0:
                victim_stats = stats
                break
            assert time.monotonic() < deadline, "the victim never reported its journal committed"
        os.kill(victim, signal.SIGKILL)
        release.set()
        deadline = time.monotonic() + 30
        while len({r.json()["request_id"] for r in events(receiver, "tool_success")}) < calls:
            arrived_ids = {r.json()["request_id"] for r in events(receiver, "tool_success")}
            assert time.monotonic() < deadline, (
                f"the killed worker's deliveries never arrived: {len(arrived_ids)} of {calls}; "
                f"outbox: {sorted(os.listdir(tmp_path / 'outbox'))}; the victim said {victim_stats['pending']} pending, "
                f"{victim_stats['outbox']}; arrived by admitter: "
                f"{sorted((r.json()['server_id'], r.json()['request_id'][:6]) for r in events(receiver, 'tool_success'))}")
            time.sleep(0.05)
        arrived = events(receiver, "tool_success")
        by_request: dict[str, set[str]] = {}
        for r in arrived:
            by_request.setdefault(r.json()["request_id"], set()).add(r.headers["x-webhook-delivery"])
        assert all(len(ids) == 1 for ids in by_request.values()), "a delivery id changed"
        assert len(arrived) - len(by_request) <= 1, "only the killed worker's one in flight may come twice"
        adopted = [r for r in arrived if r.json()["server_id"] == f"nginx-worker-{victim}"]
        print(f"nginx: the killed worker had admitted {len(adopted)} of {calls} events; all arrived")
    finally:
        release.set()
        next(run, None)
