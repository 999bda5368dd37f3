"""Violations raised by the gateway's real plugins reach our webhooks: PyPI's cpex-rate-limiter
and cpex-pii-filter (pinned as the gateway pins them) in a real cpex plugin manager, in every
mode, each violation delivered exactly once, classified by code, HMAC-signed."""

from __future__ import annotations

import hashlib
import hmac
import json
import textwrap
from pathlib import Path

import pytest
from cpex.framework import GlobalContext, ToolPostInvokePayload, ToolPreInvokePayload
from cpex.framework.errors import PluginViolationError
from cpex.framework.manager import TenantPluginManager

from cpex_webhook_notification import observer

SECRET = "violation-test-secret"
VIOLATION_EVENTS = ["violation", "rate_limit_exceeded", "pii_detected", "harmful_content"]
BLOCKING = {"enforce", "enforce_ignore_error", "concurrent"}


def plugins_yaml(url: str, mode: str, extra: dict | None = None, ours_mode: str = "audit") -> str:
    """The real rate limiter (2 calls a minute per user) and PII filter (blocking) in `mode`,
    `extra` (a plugin entry), and our plugin as the README recommends: one HMAC webhook on
    every violation event."""
    extra_entry = f"  - {json.dumps(extra)}" if extra else ""
    return textwrap.dedent(f"""\
        plugin_settings: {{plugin_timeout: 30}}
        plugin_dirs: []
        plugins:
          - name: RateLimiter
            kind: cpex_rate_limiter.rate_limiter.RateLimiterPlugin
            hooks: [tool_pre_invoke]
            mode: {mode}
            priority: 10
            config: {{by_user: "2/m"}}
          - name: PIIFilter
            kind: cpex_pii_filter.pii_filter.PIIFilterPlugin
            hooks: [tool_pre_invoke, tool_post_invoke]
            mode: {mode}
            priority: 20
            config: {{block_on_detection: true}}
        {{extra}}
          - name: WebhookNotification
            kind: cpex_webhook_notification.WebhookNotificationPlugin
            hooks: [tool_pre_invoke, tool_post_invoke]
            mode: {ours_mode}
            priority: 900
            config:
              webhooks:
                - url: "{url}"
                  events: {json.dumps(VIOLATION_EVENTS)}
                  authentication: {{type: hmac, hmac_secret: "{SECRET}", hmac_header: X-Hub-Signature-256}}
        """).replace("{extra}", extra_entry)


async def manager_of(tmp_path: Path, name: str, text: str) -> TenantPluginManager:
    """A fresh plugin manager of the kind the gateway builds per team binding."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    manager = TenantPluginManager(str(path))
    await manager.initialize()
    return manager


async def call(manager, hook: str, payload, user: str, request_id: str) -> bool:
    """Runs `hook` as the gateway does (pre-hooks raise violations); True if it was blocked."""
    context = GlobalContext(request_id=request_id, user={"email": user, "full_name": user}, tenant_id="team-a",
                            server_id="srv-1")
    try:
        result, _ = await manager.invoke_hook(hook, payload, context, violations_as_exceptions=hook.endswith("pre_invoke"))
    except PluginViolationError:
        return True
    return not result.continue_processing


def signed(request) -> bool:
    want = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    return request.headers.get("x-hub-signature-256") == want


async def settled(manager, receiver, count: int) -> list:
    """The requests once `count` arrived and our plugin's engine has nothing left to send."""
    got = await receiver.arrived(count)
    plugin = manager.get_plugin("WebhookNotification")
    assert await plugin.flush(10)
    assert len(receiver.requests) == count, [r.json() for r in receiver.requests]
    return got


@pytest.mark.parametrize("mode", ["enforce", "enforce_ignore_error", "permissive", "audit", "concurrent"])
async def test_every_violation_of_the_real_limiter_and_pii_filter_arrives_once(receiver, tmp_path, mode):
    manager = await manager_of(tmp_path, "base", plugins_yaml(receiver.url("/v"), mode))
    user = f"alice-{mode}@example.com"
    search = ToolPreInvokePayload(name="search", args={"q": "weather"})
    blocked = [await call(manager, "tool_pre_invoke", search, user, f"{mode}-{i}") for i in range(4)]
    assert blocked == [False, False, mode in BLOCKING, mode in BLOCKING], "the limiter's own verdicts"
    ssn = ToolPreInvokePayload(name="lookup", args={"q": "my ssn is 123-45-6789"})
    assert await call(manager, "tool_pre_invoke", ssn, f"bob-{mode}@example.com", f"{mode}-ssn") == (mode in BLOCKING)
    card = ToolPostInvokePayload(name="fetch", result={"content": [{"type": "text", "text": "card 4111 1111 1111 1111"}]})
    await call(manager, "tool_post_invoke", card, f"carol-{mode}@example.com", f"{mode}-card")

    got = await settled(manager, receiver, 4)
    assert all(signed(r) for r in got), "every violation webhook is HMAC-signed"
    by_request = {r.json()["request_id"]: r for r in got}
    assert sorted(by_request) == sorted([f"{mode}-2", f"{mode}-3", f"{mode}-ssn", f"{mode}-card"])
    expected = {
        f"{mode}-2": ("rate_limit_exceeded", user, "search", "RATE_LIMIT", "RateLimiter", "tool_pre_invoke"),
        f"{mode}-3": ("rate_limit_exceeded", user, "search", "RATE_LIMIT", "RateLimiter", "tool_pre_invoke"),
        f"{mode}-ssn": ("pii_detected", f"bob-{mode}@example.com", "lookup", "PII_DETECTED_IN_TOOL_ARGS", "PIIFilter",
                        "tool_pre_invoke"),
        f"{mode}-card": ("pii_detected", f"carol-{mode}@example.com", "fetch", "PII_DETECTED_IN_TOOL_RESULT", "PIIFilter",
                         "tool_post_invoke"),
    }
    for request_id, (event, who, tool, code, plugin, hook) in expected.items():
        request = by_request[request_id]
        body = request.json()
        assert request.headers["x-webhook-event"] == event == body["event"]
        assert (body["user"], body["tenant_id"], body["server_id"]) == (who, "team-a", "srv-1")
        assert body["violation"]["code"] == code and body["violation"]["plugin_name"] == plugin, body
        assert body["violation"]["reason"], body
        assert body["metadata"] == {"tool_name": tool, "hook": hook, "mode": body["metadata"]["mode"],
                                    "blocked": mode in BLOCKING}, body
    stats = manager.get_plugin("WebhookNotification").stats()
    assert stats["violations_observed"] is True
    await manager.shutdown()


async def test_a_team_bindings_violations_reach_that_teams_webhook_only(receiver, tmp_path):
    team_a = await manager_of(tmp_path, "team-a", plugins_yaml(receiver.url("/team-a"), "enforce"))
    team_b = await manager_of(tmp_path, "team-b", plugins_yaml(receiver.url("/team-b"), "enforce"))
    search = ToolPreInvokePayload(name="search", args={})
    for i in range(3):
        await call(team_a, "tool_pre_invoke", search, "ann@example.com", f"a-{i}")
    await call(team_b, "tool_pre_invoke", ToolPreInvokePayload(name="s", args={"q": "4111 1111 1111 1111"}),
               "ben@example.com", "b-card")
    got = await receiver.arrived(2)
    for manager in (team_a, team_b):
        assert await manager.get_plugin("WebhookNotification").flush(10)
    assert len(receiver.requests) == 2
    paths = {r.json()["request_id"]: (r.path, r.headers["x-webhook-event"]) for r in got}
    assert paths == {"a-2": ("/team-a", "rate_limit_exceeded"), "b-card": ("/team-b", "pii_detected")}
    await team_a.shutdown()
    await team_b.shutdown()


async def test_a_violation_also_in_the_context_state_is_sent_once(receiver, tmp_path):
    extra = {"name": "StatefulDenier", "kind": "violating_plugins.StatefulDenier", "hooks": ["tool_pre_invoke"],
             "mode": "permissive", "priority": 30}
    # Ours runs after the denier in the same (transform) phase, so its own hook reads the
    # violation the denier left in the global state: the observer already sent it.
    text = plugins_yaml(receiver.url("/"), "permissive", extra, ours_mode="permissive")
    manager = await manager_of(tmp_path, "stateful", text.replace("priority: 900", "priority: 35"))
    assert not await call(manager, "tool_pre_invoke", ToolPreInvokePayload(name="t", args={}), "dee@example.com", "d-1")
    (got,) = await settled(manager, receiver, 1)
    body = got.json()
    assert (body["event"], body["violation"]["code"], body["metadata"]["blocked"]) == ("harmful_content", "CONTENT_MODERATION", False)
    await manager.shutdown()


async def test_a_violation_raised_by_a_plugin_is_sent(receiver, tmp_path):
    extra = {"name": "RaisingDenier", "kind": "violating_plugins.RaisingDenier", "hooks": ["tool_pre_invoke"],
             "mode": "enforce", "priority": 40}
    manager = await manager_of(tmp_path, "raising", plugins_yaml(receiver.url("/"), "enforce", extra))
    assert await call(manager, "tool_pre_invoke", ToolPreInvokePayload(name="t", args={}), "eve@example.com", "e-1")
    (got,) = await settled(manager, receiver, 1)
    body = got.json()
    assert (body["event"], body["violation"]["code"], body["metadata"]["blocked"]) == ("violation", "ENCODED_EXFIL_DETECTED", True)
    assert body["violation"]["details"] == {"test": True} and body["violation"]["plugin_name"] == "RaisingDenier"
    await manager.shutdown()


def test_an_unsupported_cpex_is_refused_with_a_reason(monkeypatch):
    from cpex.framework.manager import PluginExecutor

    assert observer._unsupported() is None, "this cpex is the one the observer was written for"
    assert observer.observing()

    async def changed(self, hook_ref, payload, context, extensions=None, deadline=None):
        return None

    monkeypatch.setattr(PluginExecutor, "_execute_with_timeout", changed)
    assert "unexpected signature" in observer._unsupported()
