"""The installed wheel inside the real cpex PluginManager, against a real local receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import logging
import textwrap
import time
from pathlib import Path

import pytest
import standardwebhooks
import yaml
from cpex.framework import (
    GlobalContext,
    PluginConfig,
    PluginContext,
    PluginViolation,
    PromptPosthookPayload,
    PromptPrehookPayload,
    ResourcePostFetchPayload,
    ResourcePreFetchPayload,
    ToolPostInvokePayload,
    ToolPreInvokePayload,
    ToolPreInvokeResult,
)

import cpex_webhook_notification
from cpex_webhook_notification import ConfigError, WebhookNotificationPlugin

ROOT = Path(__file__).resolve().parents[2]
KIND = "cpex_webhook_notification.WebhookNotificationPlugin"
HOOKS = ["prompt_pre_fetch", "prompt_post_fetch", "tool_pre_invoke", "tool_post_invoke",
         "resource_pre_fetch", "resource_post_fetch"]
ALL_EVENTS = ["violation", "rate_limit_exceeded", "pii_detected", "harmful_content", "tool_success",
              "tool_error", "prompt_success", "resource_success", "plugin_error"]


def gateway_yaml(config: str, mode: str = "sequential", raw: bool = False) -> str:
    """A plugins/config.yaml with our plugin; `config` is the plugin's config mapping."""
    body = textwrap.indent(textwrap.dedent(config).strip(), " " * 6)
    if raw:  # keep cpex's Jinja pass away from {{ }} in templates
        body = "      {% raw %}\n" + body + "\n      {% endraw %}"
    return textwrap.dedent(f"""\
        plugins:
          - name: "WebhookNotification"
            kind: "{KIND}"
            hooks: {json.dumps(HOOKS)}
            mode: "{mode}"
            priority: 100
            config:
        """) + body + "\n"


def direct(config: dict) -> WebhookNotificationPlugin:
    return WebhookNotificationPlugin(PluginConfig(name="WebhookNotification", kind=KIND, hooks=HOOKS, config=config))


def ctx(user: str = "alice", **state) -> GlobalContext:
    return GlobalContext(request_id="req-1", user=user, tenant_id="t-1", server_id="s-1", state=state)


def violation(code: str, reason: str, **details) -> PluginViolation:
    return PluginViolation(reason=reason, description=f"{reason} (test)", code=code, details=details)


def test_the_wheel_is_what_runs():
    assert "site-packages" in cpex_webhook_notification.__file__
    assert cpex_webhook_notification.__version__ == "0.1.0"


async def test_each_hook_raises_its_event_through_the_plugin_manager(receiver, gateway):
    manager = await gateway(gateway_yaml(f"""
        webhooks:
          - url: "{receiver.url('/all')}"
            events: {json.dumps(ALL_EVENTS)}
    """))
    calls = [
        ("tool_post_invoke", ToolPostInvokePayload(name="search", result={"content": [{"type": "text", "text": "hi"}]}), ctx(), "tool_success"),
        ("tool_post_invoke", ToolPostInvokePayload(name="search", result={"isError": True, "content": [{"type": "text", "text": "down"}]}), ctx(), "tool_error"),
        ("prompt_post_fetch", PromptPosthookPayload(prompt_id="greet", result={"messages": []}), ctx(), "prompt_success"),
        ("resource_post_fetch", ResourcePostFetchPayload(uri="file:///a", content={"text": "x"}), ctx(), "resource_success"),
        ("tool_pre_invoke", ToolPreInvokePayload(name="search"), ctx(violation=violation("RATE_LIMIT", "Rate limit exceeded", reset_in=45)), "rate_limit_exceeded"),
        ("prompt_pre_fetch", PromptPrehookPayload(prompt_id="p"), ctx(violation=violation("PII", "PII detected")), "pii_detected"),
        ("resource_pre_fetch", ResourcePreFetchPayload(uri="u"), ctx(violation=violation("CONTENT_MODERATION", "flagged")), "harmful_content"),
        ("tool_pre_invoke", ToolPreInvokePayload(name="t"), ctx(violation={"code": "DENY", "reason": "Harmful content"}), "violation"),
        ("tool_pre_invoke", ToolPreInvokePayload(name="t"), ctx(violation={"reason": "Harmful content"}), "harmful_content"),
    ]
    for i, (hook, payload, context, event) in enumerate(calls):
        result, _ = await manager.invoke_hook(hook, payload, context)
        assert result.continue_processing
        got = (await receiver.arrived(i + 1))[-1]
        assert got.headers["x-webhook-event"] == event
        body = got.json()
        assert (body["event"], body["request_id"], body["user"], body["plugin"]) == (event, "req-1", "alice", "WebhookNotification")
    bodies = [r.json() for r in receiver.requests]
    assert bodies[1]["metadata"] == {"tool_name": "search", "error": "down"}
    assert bodies[2]["metadata"] == {"prompt_id": "greet"}
    assert bodies[4]["violation"]["details"] == {"reset_in": 45}
    # pre-hooks without a violation raise nothing
    await manager.invoke_hook("tool_pre_invoke", ToolPreInvokePayload(name="t"), ctx())
    await manager.shutdown()
    assert len(receiver.requests) == len(calls)


async def test_auth_headers_hmac_and_standard_webhooks_verify(receiver, gateway, monkeypatch):
    monkeypatch.setenv("TEST_BEARER_TOKEN", "tok&en")  # & would be HTML-escaped by cpex's Jinja
    keys = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2Vjb25kIGtleSBmb3Igcm90YXRpb24="]
    manager = await gateway(gateway_yaml(f"""
        webhooks:
          - {{url: "{receiver.url('/bearer')}", events: [tool_success], authentication: {{type: bearer, token: "${{env.TEST_BEARER_TOKEN}}"}}}}
          - {{url: "{receiver.url('/key')}", events: [tool_success], authentication: {{type: api_key, api_key: k-1}}}}
          - {{url: "{receiver.url('/hmac')}", events: [tool_success], authentication: {{type: hmac, hmac_secret: "It's a Secret", hmac_algorithm: sha512, hmac_header: X-Hub-Signature}}}}
          - {{url: "{receiver.url('/std')}", events: [tool_success], authentication: {{type: standard_webhooks, secrets: {json.dumps(keys)}}}}}
    """))
    await manager.invoke_hook("tool_post_invoke", ToolPostInvokePayload(name="search", result={}), ctx())
    got = {r.path: r for r in await receiver.arrived(4)}
    assert got["/bearer"].headers["authorization"] == "Bearer tok&en"
    assert got["/key"].headers["x-api-key"] == "k-1"
    mac = hmac.new(b"It's a Secret", got["/hmac"].body, hashlib.sha512).hexdigest()
    assert got["/hmac"].headers["x-hub-signature"] == f"sha512={mac}"
    std = got["/std"]
    for key in keys:  # each key of the rotation verifies on its own
        assert standardwebhooks.Webhook(key).verify(std.body, std.headers) == std.json()
    assert std.headers["webhook-id"] == std.headers["x-webhook-delivery"]
    await manager.shutdown()


async def test_templates_with_dotted_paths_and_quotes_in_values(receiver, gateway):
    manager = await gateway(gateway_yaml(f"""
        webhooks:
          - {{url: "{receiver.url('/')}", events: [rate_limit_exceeded, tool_error]}}
        payload_templates:
          rate_limit_exceeded: |
            {{"text": "Rate limit exceeded for {{{{user}}}}, reset in {{{{violation.details.reset_in}}}}s",
             "reset_in": {{{{violation.details.reset_in}}}}, "details": {{{{violation.details}}}}}}
          tool_error: '{{"tool": "{{{{metadata.tool_name}}}}", "error": "{{{{metadata.error}}}}"}}'
    """, raw=True))
    evil = 'bob "the \\ admin"\n}, "injected": true'
    await manager.invoke_hook("tool_pre_invoke", ToolPreInvokePayload(name="t"),
                              ctx(user=evil, violation=violation("RATE_LIMIT", "Rate limit", reset_in=45)))
    await manager.invoke_hook("tool_post_invoke", ToolPostInvokePayload(name="sql", result={"error": 'syntax "near" \\x'}), ctx(user=evil))
    bodies = {r.headers["x-webhook-event"]: r.json() for r in await receiver.arrived(2)}
    limit = bodies["rate_limit_exceeded"]
    assert limit["text"] == f"Rate limit exceeded for {evil}, reset in 45s"
    assert (limit["reset_in"], limit["details"]) == (45, {"reset_in": 45})
    assert "injected" not in limit
    assert bodies["tool_error"] == {"tool": "sql", "error": 'syntax "near" \\x'}
    await manager.shutdown()


def advanced_config(tmp_path: Path, as_files: bool) -> str:
    """The seed's advanced config (examples/advanced.yaml), templates inline or as files."""
    text = (ROOT / "examples" / "advanced.yaml").read_text()
    if not as_files:
        return gateway_yaml(text, raw=True)
    doc = yaml.safe_load(text)
    files = {}
    for event, template in doc.pop("payload_templates").items():
        path = tmp_path / f"{event}.json"
        path.write_text(template)
        files[event] = str(path)
    doc["payload_template_files"] = files
    return gateway_yaml(yaml.safe_dump(doc))


@pytest.mark.parametrize("as_files", [False, True], ids=["raw-block", "template-files"])
async def test_the_seed_advanced_config_loads_through_cpex_both_ways(receiver, gateway, monkeypatch, tmp_path, as_files):
    monkeypatch.setenv("DEMO_RECEIVER", receiver.url("").rstrip("/"))
    monkeypatch.setenv("SLACK_WEBHOOK_TOKEN", "slack-token")
    monkeypatch.setenv("WEBHOOK_HMAC_SECRET", "hmac-secret")
    monkeypatch.setenv("MONITORING_API_KEY", "monitor-key")
    manager = await gateway(advanced_config(tmp_path, as_files))
    deny = violation("DENY", "Denied tool", rule="no-prod")
    await manager.invoke_hook("tool_pre_invoke", ToolPreInvokePayload(name="search"), ctx(violation=deny))
    await manager.invoke_hook("tool_post_invoke", ToolPostInvokePayload(name="search", result={}), ctx())
    got = await receiver.arrived(3)  # slack + monitoring get the violation, the API gets tool_success
    slack = next(r for r in got if r.path == "/services/YOUR/SLACK/WEBHOOK")
    assert slack.headers["authorization"] == "Bearer slack-token"
    alert = slack.json()
    assert alert["alert"] == "MCP Gateway Violation"
    assert alert["message"] == "Denied tool: Denied tool (test)"
    assert alert["details"]["details"] == {"rule": "no-prod"}
    api = next(r for r in got if r.path == "/webhooks/mcp-gateway")
    mac = hmac.new(b"hmac-secret", api.body, hashlib.sha256).hexdigest()
    assert api.headers["x-hub-signature-256"] == f"sha256={mac}"
    assert next(r for r in got if r.path == "/events").headers["x-api-key"] == "monitor-key"
    await manager.shutdown()


async def test_without_raw_cpex_jinja_breaks_the_original_templates(receiver, gateway, monkeypatch):
    """The gotcha the README warns about: cpex renders the config with Jinja first."""
    text = (ROOT / "examples" / "advanced.yaml").read_text()
    with pytest.raises(Exception, match="undefined"):
        await gateway(gateway_yaml(text))


async def test_retries_share_one_delivery_id(receiver, gateway):
    receiver.reply = lambda n: (503, {}, 0.0) if n < 2 else (200, {}, 0.0)
    plugin = direct({"webhooks": [{"url": receiver.url(), "events": ["tool_success"], "retry_delay": 100}]})
    await plugin.tool_post_invoke(ToolPostInvokePayload(name="s", result={}), PluginContext(global_context=ctx()))
    assert await plugin.flush(10)
    got = await receiver.arrived(3)
    assert len({r.headers["x-webhook-delivery"] for r in got}) == 1
    assert got[2].at - got[1].at >= 0.155  # 100 ms then 200 ms, each times a jitter in [0.8, 1.2]
    stats = plugin.stats()
    assert (stats["delivered"], stats["retries"], stats["webhooks"][0]["last_status"]) == (1, 2, 200)
    await plugin.shutdown()


async def test_a_violation_in_context_state_or_global_state(receiver):
    plugin = direct({"webhooks": [{"url": receiver.url(), "events": ["pii_detected", "violation"]}]})
    pii = violation("PII", "PII found")
    by_state = PluginContext(global_context=ctx(), state={"violation": pii})
    result = await plugin.tool_pre_invoke(ToolPreInvokePayload(name="t"), by_state)
    assert result == ToolPreInvokeResult(), "the default result: nothing for the gateway's plugin metrics"
    by_global = PluginContext(global_context=ctx(violation={"reason": "other", "code": "X"}))
    result = await plugin.resource_pre_fetch(ResourcePreFetchPayload(uri="u"), by_global)
    assert result.metadata == {}
    events = [r.headers["x-webhook-event"] for r in await receiver.arrived(2)]
    assert sorted(events) == ["pii_detected", "violation"]
    assert await plugin.notify("pii_detected", ctx(), {"reason": "by host"}, {"source": "host"})
    host = (await receiver.arrived(3))[-1].json()
    assert (host["violation"]["reason"], host["metadata"]) == ("by host", {"source": "host"})
    await plugin.shutdown()


def test_config_errors_raise_at_construction_naming_the_field(monkeypatch):
    cases = [
        ({"webhooks": [{"url": "https://a/", "retry_attempts": 11}]}, "webhooks[0].retry_attempts"),
        ({"webhooks": [{"url": "https://a/", "authentication": {"type": "hmac"}}]}, "webhooks[0].authentication.hmac_secret"),
        ({"webhooks": [{"url": "https://a/", "events": ["nope"]}]}, "webhooks[0].events[0]"),
        ({"webhooks": [{"url": "https://a/${env.SURELY_UNSET_VAR_X}"}]}, "SURELY_UNSET_VAR_X"),
        ({"payload_templates": {"violation": '{"a": {{usr}}}'}}, "payload_templates.violation"),
        ({"webhooks": [{"url": "https://a/", "unknown": 1}]}, "webhooks[0].unknown"),
    ]
    for config, field in cases:
        with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
            direct(config)


async def test_a_config_error_through_the_manager_names_the_field(gateway, caplog):
    with caplog.at_level(logging.ERROR):
        manager = await gateway(gateway_yaml("webhooks: [{url: 'https://a/', retry_delay: 5}]"))
    assert "webhooks[0].retry_delay" in caplog.text
    assert manager.plugin_count == 0


async def test_hooks_return_at_once_while_the_receiver_sleeps(receiver, gateway):
    receiver.reply = lambda n: (200, {}, 3.0)
    manager = await gateway(gateway_yaml(f"""
        webhooks: [{{url: "{receiver.url()}", events: [tool_success], max_concurrency: 64}}]
    """))
    payload = ToolPostInvokePayload(name="search", result={"content": []})
    times = []
    start = time.perf_counter()
    for _ in range(200):
        t = time.perf_counter()
        await manager.invoke_hook("tool_post_invoke", payload, ctx())
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    times.sort()
    print(f"hook via PluginManager, receiver sleeping 3 s: 200 calls in {total:.3f}s, median {times[100] * 1e6:.0f} us")
    # Every call returned before the receiver answered even once (the cost of a call is
    # measured in tests/bench, not asserted here).
    assert receiver.completed == 0, "a hook call waited for the receiver"
    await manager.shutdown()


@pytest.mark.parametrize("mode", ["sequential", "transform", "audit", "concurrent", "fire_and_forget"])
async def test_every_cpex_mode_delivers(receiver, gateway, mode):
    manager = await gateway(gateway_yaml(f"""
        webhooks: [{{url: "{receiver.url()}", events: [tool_success, rate_limit_exceeded]}}]
    """, mode=mode))
    result, _ = await manager.invoke_hook("tool_post_invoke", ToolPostInvokePayload(name="s", result={}), ctx())
    assert result.continue_processing
    await manager.invoke_hook("tool_pre_invoke", ToolPreInvokePayload(name="s"),
                              ctx(violation=violation("RATE_LIMIT", "limit")))
    events = sorted(r.headers["x-webhook-event"] for r in await receiver.arrived(2))
    assert events == ["rate_limit_exceeded", "tool_success"]
    await manager.shutdown()


async def test_shutdown_detaches_at_once_and_the_engine_delivers_what_is_pending(receiver):
    receiver.reply = lambda n: (200, {}, 0.3)
    config = {"webhooks": [{"url": receiver.url(), "events": ["tool_success"], "max_concurrency": 1}]}
    plugin = direct(config)
    for _ in range(5):
        await plugin.tool_post_invoke(ToolPostInvokePayload(name="s", result={}), PluginContext(global_context=ctx()))
    assert plugin.stats()["pending"] == 5
    await plugin.shutdown()
    # Detached without waiting: the 0.3 s answers are still to come.
    assert receiver.completed < 5
    # after shutdown hooks still return (fail-open), but nothing is queued by this instance
    result = await plugin.tool_post_invoke(ToolPostInvokePayload(name="s", result={}), PluginContext(global_context=ctx()))
    assert result.metadata == {}
    # The gateway's next instance of the same config attaches to the same engine: the
    # counters continue, and what the old instance queued is delivered.
    successor = direct(config)
    assert successor.stats()["pending"] >= 4
    assert await successor.flush(10)
    stats = successor.stats()
    assert (stats["delivered"], stats["pending"], stats["dropped"]) == (5, 0, 0)
    receiver.wait_completed(5)
    await successor.shutdown()


async def test_instances_of_one_config_share_queues_breakers_and_counters(receiver):
    config = {"webhooks": [{"url": receiver.url(), "id": "shared", "events": ["tool_success"]}]}
    first, second = direct(config), direct(config)
    other = WebhookNotificationPlugin(PluginConfig(name="Other", kind=KIND, hooks=HOOKS, config=config))
    for plugin in (first, second, other):
        await plugin.tool_post_invoke(ToolPostInvokePayload(name="s", result={}), PluginContext(global_context=ctx()))
    assert await first.flush(10) and await other.flush(10)
    assert first.stats()["delivered"] == second.stats()["delivered"] == 2
    assert other.stats()["delivered"] == 1, "another plugin name is another engine"
    assert first.stats()["webhooks"][0]["id"] == "shared"
    for plugin in (first, second, other):
        await plugin.shutdown()


async def test_unrepresentable_host_data_still_raises_its_event(receiver):
    plugin = direct({"webhooks": [{"url": receiver.url(), "events": ["tool_error", "tool_success"]}]})
    circular: list = []
    circular.append(circular)
    deep: dict = {"error": "deep failure"}
    for _ in range(300):
        deep = {"nested": deep}

    class Opaque:
        def __str__(self) -> str:
            return "opaque-object"

    results = [
        {"isError": True, "content": [{"type": "text", "text": "nan result"}], "score": float("nan")},
        {"error": "bytes failure", "raw": b"\xff\xfe not utf-8"},
        {"error": "tuple keys", "table": {(1, 2): "x"}},
        {"error": "circular", "loop": circular},
        {"error": Opaque()},
        {"error": "deep", "detail": deep},
    ]
    for result in results:
        out = await plugin.tool_post_invoke(ToolPostInvokePayload(name="t", result=result), PluginContext(global_context=ctx()))
        assert out.metadata == {}, (result, out.metadata)
    assert await plugin.flush(10)
    errors = sorted(r.json()["metadata"]["error"] for r in receiver.requests)
    assert errors == sorted(["nan result", "bytes failure", "tuple keys", "circular", "opaque-object", "deep"])
    assert plugin.stats()["host_errors"] == 0
    await plugin.shutdown()


@pytest.mark.parametrize("case", ["failed", "failed_model", "error_text", "success", "not_a_result", "dict_violation",
                                  "model_violation", "user_object", "prompt", "resource", "global_context"])
async def test_the_native_hook_reads_what_the_whole_documents_say(receiver, case):
    """The two paths of a hook call — the native read of what classification needs, and the
    whole payload and context as JSON — raise the same event with the same body."""
    from pydantic import BaseModel

    from cpex_webhook_notification.notifier import _document

    class ToolResult(BaseModel):  # a result given as a model, as MCP SDK results are
        content: list = []
        is_error: bool = False

    plugin = direct({"webhooks": [{"url": receiver.url(), "events": ALL_EVENTS}]})
    hook, payload, context = "tool_post_invoke", None, PluginContext(global_context=ctx())
    result = {"content": [{"type": "text", "text": "ok"}]}
    if case == "failed":
        result = {"isError": True, "content": [{"type": "text", "text": "boom"}], "other": 1}
    elif case == "failed_model":
        result = ToolResult(content=[], is_error=True)
    elif case == "error_text":
        result = {"error": "down", "content": "not sent"}
    elif case == "not_a_result":
        result = ["a", "list"]
    elif case == "dict_violation":
        context = PluginContext(global_context=ctx(), state={"violation": {"code": "RATE_LIMIT", "reason": "r"}})
    elif case == "model_violation":
        context = PluginContext(global_context=ctx(violation=violation("PII_DETECTED", "pii", field="email")))
    elif case == "user_object":
        context = PluginContext(global_context=GlobalContext(request_id="r", user={"email": "e@example.com", "is_admin": True}))
    elif case == "prompt":
        hook, payload = "prompt_post_fetch", PromptPosthookPayload(prompt_id="p-1", result={"messages": []})
    elif case == "resource":
        hook, payload = "resource_post_fetch", ResourcePostFetchPayload(uri="file:///x", content={"text": "x"})
    elif case == "global_context":
        context = ctx(violation={"code": "HARMFUL_CONTENT"})
    payload = payload or ToolPostInvokePayload(name="t", result=result)
    native = plugin._native
    by_attributes = native.hook(hook, payload, context)
    by_json = native.invoke(hook, _document(payload), _document(context))
    if case == "model_violation":
        assert by_attributes is None, "a PluginViolation model is left to the JSON path"
    else:
        assert by_attributes == by_json and by_json[1], (by_attributes, by_json)
        assert await plugin.flush(10)
        first, second = (r.json() for r in receiver.requests)
        for body in (first, second):
            body.pop("timestamp")
        assert first == second
    await plugin.shutdown()


async def test_include_payload_data_sends_the_whole_payload_through_the_shell(receiver):
    plugin = direct({"include_payload_data": True, "payload_templates": {"tool_success": '{"p": {{payload}}}'},
                     "webhooks": [{"url": receiver.url(), "events": ["tool_success"]}]})
    payload = ToolPostInvokePayload(name="t", result={"content": [], "extra": [1, 2]})
    context = PluginContext(global_context=ctx())
    assert plugin._native.hook("tool_post_invoke", payload, context) is None, "the native hook leaves it to the shell"
    result = await plugin.tool_post_invoke(payload, context)
    assert result.metadata == {}
    assert await plugin.flush(10)
    assert [r.json() for r in receiver.requests] == [{"p": payload.model_dump(mode="json")}]
    await plugin.shutdown()


async def test_flush_timeouts_inf_means_no_deadline_nan_and_negative_are_errors(receiver):
    plugin = direct({"webhooks": [{"url": receiver.url(), "events": ["violation"]}]})
    await plugin.notify("violation", ctx(), {"reason": "r"})
    assert await plugin.flush(float("inf"))
    # The flush waited for a real delivery (it would pass as well with nothing queued).
    assert [r.headers["x-webhook-event"] for r in receiver.requests] == ["violation"]
    assert await plugin.flush(1e20)
    for bad in (float("nan"), -1.0):
        with pytest.raises(ValueError):
            await plugin.flush(bad)
    await plugin.shutdown()


@pytest.mark.parametrize("value", ["too many calls", 429, ["a", "b"], {}])
async def test_any_violation_value_counts_the_same_in_both_state_places(receiver, value):
    plugin = direct({"webhooks": [{"url": receiver.url(), "events": ["violation"]}]})
    in_state = PluginContext(global_context=ctx(), state={"violation": value})
    in_global = PluginContext(global_context=ctx(violation=value))
    for context in (in_state, in_global):
        await plugin.tool_pre_invoke(ToolPreInvokePayload(name="t"), context)
    got = await receiver.arrived(2)
    assert [r.headers["x-webhook-event"] for r in got] == ["violation", "violation"]
    bodies = [r.json() for r in got]
    assert bodies[0]["violation"] == bodies[1]["violation"]
    assert isinstance(bodies[0]["violation"], dict)
    await plugin.shutdown()


def test_a_plugin_created_before_fork_works_in_the_child(receiver):
    import os

    plugin = direct({"webhooks": [{"url": receiver.url("/from-child"), "events": ["violation"]}]})
    asyncio.run(plugin.notify("violation", ctx(), {"reason": "parent"}))
    assert asyncio.run(plugin.flush(10))
    pid = os.fork()
    if pid == 0:  # the child: the parent's delivery thread is gone
        try:
            asyncio.run(plugin.tool_pre_invoke(ToolPreInvokePayload(name="t"), PluginContext(global_context=ctx(violation={"reason": "child"}))))
            delivered = asyncio.run(plugin.flush(10))
            os._exit(0 if delivered else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    reasons = [r.json()["violation"]["reason"] for r in receiver.wait_for(2)]
    assert reasons == ["parent", "child"]
    asyncio.run(plugin.shutdown())


def test_a_disk_outbox_plugin_created_before_fork_delivers_from_the_child_on_its_own_file(receiver, tmp_path):
    """v4: every process on a disk outbox writes its own file (gunicorn --preload's workers),
    so a child of a fork starts its own engine there and delivers; the parent's file is left
    alone."""
    import os

    outbox = {"type": "disk", "path": str(tmp_path / "outbox")}
    plugin = direct({"outbox": outbox, "webhooks": [{"url": receiver.url(), "events": ["violation"]}]})
    asyncio.run(plugin.notify("violation", ctx(), {"reason": "parent"}))
    assert asyncio.run(plugin.flush(10))
    pid = os.fork()
    if pid == 0:
        try:
            context = PluginContext(global_context=ctx(violation={"reason": "child"}))
            result = asyncio.run(plugin.tool_pre_invoke(ToolPreInvokePayload(name="t"), context))
            delivered = asyncio.run(plugin.flush(10))
            ok = result.continue_processing and delivered and plugin.stats()["host_errors"] == 0
            os._exit(0 if ok else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    reasons = [r.json()["violation"]["reason"] for r in receiver.wait_for(2)]
    assert reasons == ["parent", "child"]
    files = sorted(p.suffix for p in (tmp_path / "outbox").iterdir() if p.is_file())
    assert files.count(".redb") == 2, f"one file per process: {files}"
    asyncio.run(plugin.shutdown())


def test_exit_with_a_redis_outbox_hands_back_without_a_false_warning(receiver, tmp_path):
    """At exit the engine is closed by the atexit drain and then by its last instance: the
    second close must not warn that the first one's hand-back failed."""
    import subprocess
    import sys
    import uuid

    redis_url = os.environ["WEBHOOK_TEST_REDIS_URL"]  # tests/run.sh starts a redis-server
    script = tmp_path / "redis_exit.py"
    script.write_text(textwrap.dedent(f"""
        import logging
        logging.basicConfig(level=logging.WARNING)
        from cpex_webhook_notification import Notifier
        outbox = {{"type": "redis", "url": "{redis_url}", "key": "exit-{uuid.uuid4().hex}"}}
        n = Notifier({{"outbox": outbox, "webhooks": [{{"url": "{receiver.url()}", "events": ["violation"]}}]}})
        n.notify("violation", {{}}, "r")
        assert n.flush(10)
        kept_alive = n  # collected during interpreter finalisation, after the atexit drain
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "could not hand" not in done.stderr, done.stderr
    assert len(receiver.requests) == 1


def test_interpreter_exit_with_pending_deliveries_neither_stalls_nor_crashes(tmp_path):
    import socket
    import subprocess
    import sys

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)  # accepts (in the kernel) and never answers
    script = tmp_path / "exit.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, logging
        logging.basicConfig(level=logging.DEBUG)
        from cpex.framework import GlobalContext, PluginConfig
        from cpex_webhook_notification import WebhookNotificationPlugin
        config = {{"shutdown_timeout": 1, "webhooks": [{{"url": "http://127.0.0.1:{hole.getsockname()[1]}/", "events": ["violation"]}}]}}
        plugin = WebhookNotificationPlugin(PluginConfig(name="Exit", kind="k", hooks=[], config=config))
        for _ in range(20):
            asyncio.run(plugin.notify("violation", GlobalContext(request_id="r"), {{"reason": "r"}}))
        kept_alive = plugin  # collected during interpreter finalisation
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    hole.close()
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "panicked" not in done.stderr, done.stderr


async def test_logs_reach_python_logging_without_secrets(receiver, caplog):
    plugin = direct({"webhooks": [{"url": receiver.url("/hooks/SECRET-PATH"), "events": ["tool_success"],
                                   "authentication": {"type": "bearer", "token": "SECRET-TOKEN"}}]})
    with caplog.at_level(logging.DEBUG, logger="cpex_webhook_notification"):
        await plugin.tool_post_invoke(ToolPostInvokePayload(name="s", result={}), PluginContext(global_context=ctx()))
        assert await plugin.flush(10)
    records = [r for r in caplog.records if r.name == "cpex_webhook_notification"]
    assert any("attempt 1: HTTP 200" in r.getMessage() for r in records), caplog.text
    assert "SECRET" not in caplog.text
    assert "SECRET" not in json.dumps(plugin.stats())
    await plugin.shutdown()


def test_a_plugin_collected_without_shutdown_detaches_and_its_engine_delivers(receiver):
    import gc

    receiver.reply = lambda n: (200, {}, 0.3)
    plugin = direct({"webhooks": [{"url": receiver.url(), "events": ["violation"]}]})
    asyncio.run(plugin.notify("violation", ctx(), {"reason": "r"}))
    del plugin
    gc.collect()
    # Collection only detaches: it does not wait for the delivery (the receiver takes 0.3 s
    # to answer), yet the engine delivers it.
    assert receiver.completed == 0
    receiver.wait_completed(1)


async def test_the_seed_basic_config_loads_through_cpex(receiver, gateway):
    basic = (
        'webhooks:\n'
        f'  - url: "{receiver.url("/services/YOUR/SLACK/WEBHOOK")}"\n'
        '    events: ["violation", "rate_limit_exceeded"]\n'
        '    authentication:\n'
        '      type: "none"\n'
        '    retry_attempts: 3\n'
        '    retry_delay: 1000\n'
        '    timeout: 10\n'
        '    enabled: true\n'
    )
    manager = await gateway(gateway_yaml(basic))
    limit = violation("RATE_LIMIT", "Rate limit exceeded", remaining=0, reset_in=45)
    result, _ = await manager.invoke_hook("tool_pre_invoke", ToolPreInvokePayload(name="search"), ctx(violation=limit))
    assert result.continue_processing
    await manager.invoke_hook("tool_post_invoke", ToolPostInvokePayload(name="search", result={}), ctx())  # not subscribed
    body = (await receiver.arrived(1))[0].json()
    # The original's default template, as documented in its "Violation Event" example.
    assert set(body) == {"event", "plugin", "timestamp", "request_id", "user", "tenant_id", "server_id", "violation", "metadata"}
    assert (body["event"], body["violation"]["code"], body["violation"]["details"]) == (
        "rate_limit_exceeded", "RATE_LIMIT", {"remaining": 0, "reset_in": 45})
    assert body["metadata"] == {"tool_name": "search"}
    await manager.shutdown()
    assert len(receiver.requests) == 1


async def test_the_gateways_trace_id_reaches_traceparent_and_a_fresh_one_otherwise(receiver):
    from cpex.framework.observability import current_trace_id

    plugin = direct({"webhooks": [{"url": receiver.url(), "events": ["tool_success"]}],
                     "payload_templates": {"tool_success": '{"trace": "{{trace_id}}"}'}})
    payload = ToolPostInvokePayload(name="search", result={"content": []})
    token = current_trace_id.set("4bf92f35-77b3-4da6-a3ce-929d0e0e4736")  # the gateway's request trace
    try:
        await plugin.tool_post_invoke(payload, PluginContext(global_context=ctx()))
    finally:
        current_trace_id.reset(token)
    await plugin.tool_post_invoke(payload, PluginContext(global_context=ctx()))
    got = await receiver.arrived(2)  # delivered concurrently: in either order
    traced = [r for r in got if r.json()["trace"] == "4bf92f3577b34da6a3ce929d0e0e4736"]
    fresh = [r for r in got if r not in traced]
    assert len(traced) == len(fresh) == 1, [r.json() for r in got]
    assert traced[0].headers["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert fresh[0].headers["traceparent"].split("-")[1] == fresh[0].json()["trace"]
    await plugin.shutdown()


async def test_a_silence_set_through_the_plugin_holds_matching_events_back(receiver, gateway, tmp_path):
    outbox = tmp_path / "outbox"
    manager = await gateway(gateway_yaml(f"""
        outbox: {{type: disk, path: "{outbox}"}}
        webhooks:
          - url: "{receiver.url('/ops')}"
            id: ops
            events: ["tool_success"]
    """))
    plugin = manager.get_plugin("WebhookNotification")
    silence_id = plugin.silence({"matchers": ["tool=search"], "duration": "1h", "comment": "migration"})
    [listed] = plugin.silences()
    assert (listed["id"], listed["state"], listed["comment"]) == (silence_id, "active", "migration")
    for tool in ("search", "fetch"):
        await manager.invoke_hook("tool_post_invoke", ToolPostInvokePayload(name=tool, result={}), ctx())
    assert await plugin.flush(10)
    assert [r.json()["metadata"]["tool_name"] for r in receiver.requests] == ["fetch"]
    assert plugin.stats()["webhooks"][0]["silenced"] == 1
    plugin.expire_silence(silence_id)
    assert plugin.silences() == []
    with pytest.raises(cpex_webhook_notification.WebhookError, match="matchers"):
        plugin.silence({"matchers": [], "duration": "1h"})
