"""The cpex plugin class: a thin shell over the native notifier.

Each hook serialises only what classification needs (the subject, and a tool result's error
fields) unless ``include_payload_data`` asks for the whole payload, hands it to the native
core, and returns the hook's cpex result at once: the event is queued, never sent here.
Unexpected errors are logged and the default result returned (fail-open): a notification
problem must never fail a gateway request.
"""

from __future__ import annotations

import asyncio
import json
import logging
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

from cpex_webhook_notification._native import ClosedError, NativeNotifier

logger = logging.getLogger("cpex_webhook_notification")

R = TypeVar("R", bound=PluginResult)

_ERROR_FIELDS = ("isError", "is_error", "error")


def _jsonable(value: Any) -> Any:
    """json.dumps fallback: pydantic models by their JSON dump, anything else as text."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_jsonable)


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


def _context_json(context: PluginContext | GlobalContext | dict[str, Any] | None) -> str | None:
    """The request identity and any violation (from state or global state) as JSON."""
    if context is None:
        return None
    if isinstance(context, dict):
        return _dumps(context)
    state: dict[str, Any] = {}
    if isinstance(context, PluginContext):
        state = context.state
        context = context.global_context
    violation = state.get("violation") or context.state.get("violation")
    return _dumps(
        {
            "request_id": context.request_id,
            "user": context.user,
            "tenant_id": context.tenant_id,
            "server_id": context.server_id,
            "violation": _violation(violation),
        }
    )


class WebhookNotificationPlugin(Plugin):
    """Sends webhook notifications for tool, prompt and resource hooks and violations.

    Config errors raise ``ConfigError`` (a ``ValueError``) at construction, naming the field.
    """

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self._native = NativeNotifier(_dumps(config.config or {}), config.name)
        self._include_payload = self._native.include_payload_data

    def _payload_json(self, hook: str, payload: BaseModel) -> str:
        if self._include_payload:
            return _dumps(payload.model_dump(mode="json"))
        if hook.startswith("tool"):
            slim = {"name": payload.name}
            if hook == "tool_post_invoke":
                slim["result"] = _error_fields(payload.result)
        elif hook.startswith("prompt"):
            slim = {"prompt_id": payload.prompt_id}
        else:
            slim = {"uri": payload.uri}
        return _dumps(slim)

    def _hook(self, hook: str, payload: BaseModel, context: PluginContext, result_type: type[R]) -> R:
        try:
            event, queued = self._native.invoke(hook, self._payload_json(hook, payload), _context_json(context))
        except ClosedError:
            return result_type()
        except Exception:  # fail-open: never fail the request because of a notification
            logger.exception("webhook notification for %s failed", hook)
            return result_type()
        if event is None:
            return result_type()
        return result_type(metadata={"webhook_event": event, "webhook_queued": queued})

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
            _context_json(context),
            None if violation is None else _dumps(_violation(violation)),
            None if metadata is None else _dumps(metadata),
        )

    async def flush(self, timeout: float = 5.0) -> bool:
        """Waits until nothing is queued or in flight; False if ``timeout`` passed first."""
        return await asyncio.to_thread(self._native.flush, timeout)

    def stats(self) -> dict[str, Any]:
        """Delivery counters: totals and one entry per webhook (URLs redacted)."""
        return json.loads(self._native.stats_json())

    async def shutdown(self) -> None:
        """Delivers what is pending for at most ``shutdown_timeout``, then stops."""
        await asyncio.to_thread(self._native.close, self._native.shutdown_timeout)
