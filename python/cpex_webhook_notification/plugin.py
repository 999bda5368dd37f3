"""The cpex plugin class: a thin shell over :class:`~cpex_webhook_notification.Notifier`.

Each hook is one call into the notifier, which reads what classification needs from the cpex
objects natively (or sends the whole documents as JSON when it cannot), and the hook returns
its cpex result at once: the event is queued, never sent here. Unexpected errors are logged
and the default result returned (fail-open): a notification problem must never fail a
gateway request.

Every violation another plugin of the same plugin manager returns or raises, in any mode,
reaches this instance's webhooks through ``observer`` (cpex drops or raises them before any
hook of ours could see them).

Instances with the same name and config share one native engine (the gateway replaces its
plugin instances every 30 s): ``shutdown()`` only detaches, the engine keeps delivering,
and an ``atexit`` hook drains every engine for at most its ``shutdown_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, TypeVar

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

from cpex_webhook_notification import observer
from cpex_webhook_notification.notifier import Notifier

logger = logging.getLogger("cpex_webhook_notification")

# Seconds between two log lines about host data that could not be sent at all.
_HOST_ERROR_LOG_INTERVAL = 60.0

R = TypeVar("R", bound=PluginResult)


class WebhookNotificationPlugin(Plugin):
    """Sends webhook notifications for tool, prompt and resource hooks and violations.

    Config errors raise ``ConfigError`` (a ``ValueError``) at construction, naming the field.
    """

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self._notifier = Notifier(config.config or {}, config.name)
        self._host_error_logged = -math.inf
        # Every violation of the plugin manager this instance is loaded in reaches its webhooks.
        observer.subscribe(self, self._notifier)

    @property
    def _native(self) -> Any:
        """The native notifier (tests reach the native calls through it)."""
        return self._notifier._native

    def _host_error(self, hook: str) -> None:
        """Counts (in ``stats()["host_errors"]``) and logs, at most once a minute, a hook
        whose data could not be sent at all (or whose engine could not start after a fork)."""
        count = self._notifier.count_host_error()
        now = time.monotonic()
        if now - self._host_error_logged >= _HOST_ERROR_LOG_INTERVAL:
            self._host_error_logged = now
            logger.exception("webhook notification for %s failed (%d so far)", hook, count)

    def _hook(self, hook: str, payload: Any, context: PluginContext, result_type: type[R]) -> R:
        """Queues the hook's event, if any, and returns the default result: no metadata (see
        the README's "Use from Python" for why)."""
        try:
            if not observer.already_reported(context):
                self._notifier.invoke(hook, payload, context)
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
        return self._notifier.notify(event, context, violation, metadata)

    async def flush(self, timeout: float = 5.0) -> bool:
        """Waits until nothing is queued or in flight in this config's engine; False if
        ``timeout`` (seconds; ``math.inf`` for none) passed first. NaN or negative raise
        ``ValueError``."""
        return await asyncio.to_thread(self._notifier.flush, timeout)

    def metrics_text(self) -> str:
        """This config's engine's metrics in the Prometheus text exposition format 0.0.4."""
        return self._notifier.metrics_text()

    def stats(self) -> dict[str, Any]:
        """Delivery counters of this config's engine (they continue across instances):
        totals and one entry per webhook (URLs redacted); ``violations_observed`` says whether
        other plugins' violations reach the webhooks (see ``observer``)."""
        return {**self._notifier.stats(), "violations_observed": observer.observing()}

    def dead_letters(self, webhook_id: str | None = None) -> list[dict[str, Any]]:
        """Deliveries that failed for good, of one webhook (by id) or all."""
        return self._notifier.dead_letters(webhook_id)

    def replay_dead_letters(self, webhook_id: str | None = None) -> int:
        """Sends dead letters again with their delivery ids; returns how many were queued."""
        return self._notifier.replay_dead_letters(webhook_id)

    def silence(self, spec: dict[str, Any] | str) -> str:
        """Adds a silence to the outbox's store; returns its id (see ``Notifier.silence``)."""
        return self._notifier.silence(spec)

    def silences(self) -> list[dict[str, Any]]:
        """The silences not yet ended (see ``Notifier.silences``)."""
        return self._notifier.silences()

    def expire_silence(self, silence_id: str) -> None:
        """Ends the silence ``silence_id`` now."""
        self._notifier.expire_silence(silence_id)

    async def shutdown(self) -> None:
        """Detaches this instance at once; its engine keeps delivering what is pending (the
        gateway awaits this inside a request, under a lock)."""
        self._notifier.close()
