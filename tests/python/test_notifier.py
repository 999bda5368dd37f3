"""``Notifier``, the engine for any Python host: plain dicts in, no cpex needed. tests/run.sh
runs this file a second time in a venv without cpex (``WEBHOOK_TEST_WITHOUT_CPEX=1``)."""

from __future__ import annotations

import json
import os

import pytest

from cpex_webhook_notification import ClosedError, ConfigError, Notifier

WITHOUT_CPEX = os.environ.get("WEBHOOK_TEST_WITHOUT_CPEX") == "1"


def config(receiver, events, **extra):
    return {"webhooks": [{"url": receiver.url("/hook"), "events": events}], **extra}


def test_the_plugin_class_is_imported_on_first_use_and_needs_cpex_only_then():
    import cpex_webhook_notification

    if WITHOUT_CPEX:
        with pytest.raises(ImportError):
            import cpex  # noqa: F401
        with pytest.raises(ImportError, match="cpex"):
            cpex_webhook_notification.WebhookNotificationPlugin  # noqa: B018
    else:
        from cpex.framework import Plugin

        assert issubclass(cpex_webhook_notification.WebhookNotificationPlugin, Plugin)


def test_hooks_from_plain_dicts_raise_their_events(receiver):
    n = Notifier(config(receiver, ["tool_error", "tool_success", "rate_limit_exceeded", "prompt_success"]), "plain")
    context = {"request_id": "r-1", "user": {"email": "ada@example.com"}, "tenant_id": "acme"}
    assert n.invoke("tool_post_invoke", {"name": "search", "result": {"isError": True,
                    "content": [{"type": "text", "text": "backend down"}]}}, context) == "tool_error"
    assert n.invoke("tool_post_invoke", {"name": "search", "result": {}}, context) == "tool_success"
    limited = {**context, "violation": {"code": "RATE_LIMIT", "reason": "too many"}}
    assert n.invoke("tool_pre_invoke", {"name": "search"}, limited) == "rate_limit_exceeded"
    assert n.invoke("prompt_pre_fetch", {"prompt_id": "p"}, context) is None, "a quiet pre-hook"
    assert n.invoke("prompt_post_fetch", {"prompt_id": "p"}, None) == "prompt_success"
    assert n.flush(10)
    bodies = {r.headers["x-webhook-event"]: r.json() for r in receiver.requests}
    assert bodies["tool_error"]["metadata"] == {"tool_name": "search", "error": "backend down"}
    assert bodies["tool_error"]["user"] == "ada@example.com"
    assert bodies["rate_limit_exceeded"]["violation"]["reason"] == "too many"
    assert bodies["prompt_success"]["plugin"] == "plain"
    assert n.stats()["delivered"] == 4
    n.close()


def test_yaml_text_config_and_config_errors_that_name_the_field(receiver):
    n = Notifier(f"webhooks:\n  - url: {receiver.url()}\n    events: [violation]\n")
    assert n.notify("violation", {"request_id": "r"}, "a reason")
    assert n.flush(10)
    assert receiver.requests[0].json()["violation"] == {"reason": "a reason"}
    n.close()
    with pytest.raises(ConfigError, match=r"webhooks\[0\]\.retry_attempts"):
        Notifier({"webhooks": [{"url": "https://h.example/x", "retry_attempts": 99}]})


def test_data_strict_json_cannot_hold_still_raises_its_tool_error(receiver):
    """A lone surrogate, NaN, bytes and 1,000-deep nesting degrade; the event is never lost."""
    n = Notifier(config(receiver, ["tool_error"]))
    deep: dict = {"x": 1}
    for _ in range(1000):
        deep = {"nested": deep}
    errors = ["lone \ud800 surrogate", "with nan", "deep"]
    n.invoke("tool_post_invoke", {"name": "t", "result": {"error": errors[0]}}, {"user": "u\udfff"})
    n.invoke("tool_post_invoke", {"name": "t", "result": {"error": errors[1], "score": float("nan"), "raw": b"\xff"}})
    n.invoke("tool_post_invoke", {"name": "t", "result": {"error": errors[2], "detail": deep}})
    assert n.flush(10)
    got = sorted(r.json()["metadata"]["error"] for r in receiver.requests)
    assert got == sorted(["lone ? surrogate", "with nan", "deep"])
    assert n.stats()["host_errors"] == 0
    n.close()


def test_close_detaches_waiting_at_most_its_timeout_and_later_calls_are_refused(receiver):
    receiver.reply = lambda n: (200, {}, 0.3)
    n = Notifier(config(receiver, ["tool_success"]))
    other = Notifier(config(receiver, ["tool_success"]))
    n.invoke("tool_post_invoke", {"name": "t", "result": {}})
    assert n.close(10), "drained within the timeout"
    with pytest.raises(ClosedError):
        n.invoke("tool_post_invoke", {"name": "t", "result": {}})
    assert other.stats()["delivered"] == 1, "the same engine, still attached through the other"
    other.invoke("tool_post_invoke", {"name": "t", "result": {}})
    assert other.close() is True
    receiver.wait_completed(2)
    assert json.loads(json.dumps(other.dead_letters())) == []


def test_silences_hold_matching_events_back_and_expire(receiver):
    n = Notifier(config(receiver, ["tool_success", "tool_error"]), "plain")
    silence_id = n.silence({"matchers": ["event=tool_error", "tenant!=t1"], "duration": "30m", "created_by": "ops"})
    failed = {"name": "search", "result": {"isError": True, "content": [{"type": "text", "text": "down"}]}}
    assert n.invoke("tool_post_invoke", failed, {"tenant_id": "acme"}) == "tool_error"
    assert n.invoke("tool_post_invoke", {"name": "search", "result": {}}, {"tenant_id": "acme"}) == "tool_success"
    assert n.flush(10)
    assert [r.headers["x-webhook-event"] for r in receiver.requests] == ["tool_success"]
    assert n.stats()["webhooks"][0]["silenced"] == 1
    [listed] = n.silences()
    assert (listed["id"], listed["matchers"], listed["created_by"]) == (silence_id, ["event=tool_error", "tenant!=t1"], "ops")
    n.expire_silence(silence_id)
    assert n.silences() == []
    n.close()
