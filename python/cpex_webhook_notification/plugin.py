"""The cpex plugin class: a thin shell over the native notifier.

Each hook is one native call that reads only what classification needs (the subject, a tool
result's error fields, the request identity and any violation) from the cpex objects; the
shell extracts it in Python only when that call cannot (``include_payload_data``, data that is
not plain). The hook returns its cpex result at once: the event is queued, never sent here.
Unexpected errors are logged and the default result returned (fail-open): a notification
problem must never fail a gateway request.

Instances with the same name and config share one native engine (the gateway replaces its
plugin instances every 30 s): ``shutdown()`` only detaches, the engine keeps delivering,
and an ``atexit`` hook drains every engine for at most its ``shutdown_timeout``.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import math
import os
import time
from typing import Any, TypeVar

from pydantic import BaseModel

from cpex.framework import (
    GlobalContext,
    Plugin,
    PluginConfig,
    PluginContext,
    PluginResult,
    PluginViolation,
    PromptPosthookPayload,
    PromptPosthookResult,
    PromptPrehookPayload,
    PromptPrehookResult,
    ResourcePostFetchPayload,
    ResourcePostFetchResult,
    ResourcePreFetchPayload,
    ResourcePreFetchResult,
    ToolPostInvokePayload,
    ToolPostInvokeResult,
    ToolPreInvokePayload,
    ToolPreInvokeResult,
)

from cpex_webhook_notification import metrics
from cpex_webhook_notification._native import ClosedError, NativeNotifier, ParseError, drain_at_exit

logger = logging.getLogger("cpex_webhook_notification")

atexit.register(drain_at_exit)

# How deep host data is followed before the rest is sent as text.
_MAX_DEPTH = 64
# Seconds between two log lines about host data that could not be sent at all.
_HOST_ERROR_LOG_INTERVAL = 60.0

R = TypeVar("R", bound=PluginResult)

_ERROR_FIELDS = ("isError", "is_error", "error")


def _jsonable(value: Any) -> Any:
    """json.dumps fallback: pydantic models by their JSON dump, anything else as text."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def _dumps(value: Any) -> str:
    """Strict JSON of host data; raises on what strict JSON cannot hold (see ``_degraded``)."""
    return json.dumps(value, default=_jsonable, allow_nan=False)


def _degraded(value: Any, depth: int = 0, seen: frozenset[int] = frozenset()) -> Any:
    """Host data made representable, losing as little as possible: NaN and infinities become
    None, non-string keys and unknown objects their ``str()``, bytes their text, cycles and
    values nested deeper than ``_MAX_DEPTH`` their (truncated) ``str()``. So a hostile or
    sloppy tool result can never hide its own ``tool_error``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if depth >= _MAX_DEPTH or id(value) in seen:
        return str(value)[:200]
    inner = seen | {id(value)}
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="python")
    if isinstance(value, dict):
        return {str(k): _degraded(v, depth + 1, inner) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_degraded(v, depth + 1, inner) for v in value]
    return str(value)


def _json(value: Any) -> str:
    """JSON of host data: strict when possible, degraded (see ``_degraded``) when not."""
    try:
        return _dumps(value)
    except (ValueError, TypeError, RecursionError):
        return json.dumps(_degraded(value))


def _larger_than(value: Any, budget: int) -> bool:
    """Cheaply tells that a value's JSON is surely over ``budget`` bytes (counting only its
    strings), stopping as soon as it is: a huge payload is never serialised for nothing."""
    stack = [value]
    while stack and budget >= 0:
        item = stack.pop()
        if isinstance(item, (str, bytes)):
            budget -= len(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, BaseModel):
            stack.extend(getattr(item, name, None) for name in type(item).model_fields)
    return budget < 0


def _error_fields(result: Any) -> dict[str, Any] | None:
    """The parts of a tool result that say whether it failed (and its error text)."""
    if isinstance(result, dict):
        get = result.get
    elif isinstance(result, BaseModel):
        def get(key: str) -> Any:
            return getattr(result, key, None)
    else:
        return None
    fields = {key: get(key) for key in _ERROR_FIELDS if get(key) is not None}
    if fields.get("isError") or fields.get("is_error"):
        fields["content"] = get("content")
    return fields


def _violation(value: Any) -> Any:
    if isinstance(value, PluginViolation):
        doc = value.model_dump(mode="json")
        doc.setdefault("plugin_name", getattr(value, "plugin_name", ""))
        return doc
    return value


def _context(context: PluginContext | GlobalContext | dict[str, Any] | None) -> Any:
    """The request identity and any violation (from state, else global state). Any value
    but None counts as a violation, ``{}`` included; the native side turns a non-dict
    into ``{"reason": ...}``, the same rule as for C and Go hosts."""
    if context is None or isinstance(context, dict):
        return context
    state: dict[str, Any] = {}
    if isinstance(context, PluginContext):
        state = context.state
        context = context.global_context
    violation = state.get("violation")
    if violation is None:
        violation = context.state.get("violation")
    return {
        "request_id": context.request_id,
        "user": context.user,
        "tenant_id": context.tenant_id,
        "server_id": context.server_id,
        "violation": _violation(violation),
    }


class WebhookNotificationPlugin(Plugin):
    """Sends webhook notifications for tool, prompt and resource hooks and violations.

    Config errors raise ``ConfigError`` (a ``ValueError``) at construction, naming the field.
    """

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self._config_json = _dumps(config.config or {})
        self._native = NativeNotifier(self._config_json, config.name)
        metrics.watch(self._native)
        self._include_payload = self._native.include_payload_data
        self._max_payload = self._native.max_payload_size
        self._host_error_logged = -math.inf

    def _payload(self, hook: str, payload: BaseModel) -> Any:
        if self._include_payload and not _larger_than(payload, self._max_payload):
            return payload
        slim: dict[str, Any]
        if hook.startswith("tool"):
            slim = {"name": payload.name}
            if hook == "tool_post_invoke":
                slim["result"] = _error_fields(payload.result)
        elif hook.startswith("prompt"):
            slim = {"prompt_id": payload.prompt_id}
        else:
            slim = {"uri": payload.uri}
        return slim

    def _restart(self) -> None:
        """Starts an engine in this process: the one we hold was created before ``fork()``
        (gunicorn --preload) and refuses events here."""
        self._native = NativeNotifier(self._config_json, self.name)
        metrics.watch(self._native)

    def _convert(self, hook: str, payload: BaseModel, context: PluginContext) -> None:
        """The hook call for what the native ``hook`` does not read itself (the whole payload
        for ``include_payload_data``, anything not plain data): the fields extracted here as
        plain data, else as JSON; data that strict JSON cannot hold, or that nests deeper than
        the native parser follows, is sent degraded rather than lost."""
        doc, ctx = self._payload(hook, payload), _context(context)
        if self._native.invoke_data(hook, doc, ctx) is not None:
            return
        try:
            self._native.invoke(hook, _json(doc), _json(ctx))
        except ParseError:
            self._native.invoke(hook, json.dumps(_degraded(doc)), json.dumps(_degraded(ctx)))

    def _host_error(self, hook: str) -> None:
        """Counts (in ``stats()["host_errors"]``) and logs, at most once a minute, a hook
        whose data could not be sent at all."""
        count = self._native.count_host_error()
        now = time.monotonic()
        if now - self._host_error_logged >= _HOST_ERROR_LOG_INTERVAL:
            self._host_error_logged = now
            logger.exception("webhook notification for %s failed (%d so far)", hook, count)

    def _hook(self, hook: str, payload: BaseModel, context: PluginContext, result_type: type[R]) -> R:
        """Queues the hook's event, if any, and returns the default result: no metadata (see
        the README's "Use from Python" for why)."""
        try:
            # One native call reads what classification needs from the cpex objects.
            if self._native.hook(hook, payload, context) is None:
                self._convert(hook, payload, context)
        except ClosedError:
            if self._native.forked:
                self._restart()
                return self._hook(hook, payload, context, result_type)
        except Exception:  # fail-open: never fail the request because of a notification
            self._host_error(hook)
        return result_type()

    async def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> PromptPrehookResult:
        """Raises the violation event, if the context carries a violation."""
        return self._hook("prompt_pre_fetch", payload, context, PromptPrehookResult)

    async def prompt_post_fetch(self, payload: PromptPosthookPayload, context: PluginContext) -> PromptPosthookResult:
        """Raises prompt_success (or the violation event)."""
        return self._hook("prompt_post_fetch", payload, context, PromptPosthookResult)

    async def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> ToolPreInvokeResult:
        """Raises the violation event, if the context carries a violation."""
        return self._hook("tool_pre_invoke", payload, context, ToolPreInvokeResult)

    async def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> ToolPostInvokeResult:
        """Raises tool_success or tool_error (or the violation event)."""
        return self._hook("tool_post_invoke", payload, context, ToolPostInvokeResult)

    async def resource_pre_fetch(
        self, payload: ResourcePreFetchPayload, context: PluginContext
    ) -> ResourcePreFetchResult:
        """Raises the violation event, if the context carries a violation."""
        return self._hook("resource_pre_fetch", payload, context, ResourcePreFetchResult)

    async def resource_post_fetch(
        self, payload: ResourcePostFetchPayload, context: PluginContext
    ) -> ResourcePostFetchResult:
        """Raises resource_success (or the violation event)."""
        return self._hook("resource_post_fetch", payload, context, ResourcePostFetchResult)

    async def notify(
        self,
        event: str,
        context: PluginContext | GlobalContext | dict[str, Any] | None,
        violation: PluginViolation | dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> bool:
        """Raises ``event`` directly; returns whether it was queued for some webhook."""
        return self._native.notify(
            event,
            _json(_context(context)),
            None if violation is None else _json(_violation(violation)),
            None if metadata is None else _json(metadata),
        )

    async def flush(self, timeout: float = 5.0) -> bool:
        """Waits until nothing is queued or in flight in this config's engine; False if
        ``timeout`` (seconds; ``math.inf`` for none) passed first. NaN or negative raise
        ``ValueError``."""
        return await asyncio.to_thread(self._native.flush, timeout)

    def metrics_text(self) -> str:
        """This config's engine's metrics in the Prometheus text exposition format 0.0.4."""
        return self._native.metrics_text()

    def stats(self) -> dict[str, Any]:
        """Delivery counters of this config's engine (they continue across instances):
        totals and one entry per webhook (URLs redacted)."""
        return json.loads(self._native.stats_json())

    def dead_letters(self, webhook_id: str | None = None) -> list[dict[str, Any]]:
        """Deliveries that failed for good, of one webhook (by id) or all."""
        return json.loads(self._native.dead_letters_json(webhook_id))

    def replay_dead_letters(self, webhook_id: str | None = None) -> int:
        """Sends dead letters again with their delivery ids; returns how many were queued."""
        return self._native.replay_dead_letters(webhook_id)

    async def shutdown(self) -> None:
        """Detaches this instance at once; its engine keeps delivering what is pending (the
        gateway awaits this inside a request, under a lock)."""
        self._native.detach()
