"""BENCH-ONLY PEER, NOT SHIPPED: a pure-Python (asyncio + httpx) webhook plugin written from
the original plugin's documentation, used only as the comparison point of tests/bench.

It behaves as the original does: classify the hook, render the template by string
replacement, then await every delivery (retries included) inside the hook, concurrently
across webhooks, over one pooled httpx client. Also here: an empty plugin, the floor of what
any cpex plugin costs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import datetime, timezone
from typing import Any

import httpx
from cpex.framework import Plugin, PluginConfig, PluginContext, ToolPostInvokePayload, ToolPostInvokeResult

DEFAULT_TEMPLATE = (
    '{"event": "{{event}}", "plugin": "{{plugin_name}}", "timestamp": "{{timestamp}}", '
    '"request_id": "{{request_id}}", "user": "{{user}}", "tenant_id": "{{tenant_id}}", '
    '"server_id": "{{server_id}}", "violation": {{violation}}, "metadata": {{metadata}}}'
)


class EmptyPlugin(Plugin):
    """Does nothing: the cost of the cpex machinery alone."""

    async def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> ToolPostInvokeResult:
        return ToolPostInvokeResult()


class PythonPeerPlugin(Plugin):
    """The original's behaviour in pure Python: deliveries are awaited inside the hook."""

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self._cfg = config.config or {}
        self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        self.delivered = 0

    async def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> ToolPostInvokeResult:
        result = payload.result if isinstance(payload.result, dict) else {}
        failed = result.get("isError") or result.get("error")
        event = "tool_error" if failed else "tool_success"
        metadata = {"tool_name": payload.name}
        gc = context.global_context
        body = DEFAULT_TEMPLATE
        for key, value in {
            "event": event, "plugin_name": self.name,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "request_id": gc.request_id, "user": gc.user or "", "tenant_id": gc.tenant_id or "",
            "server_id": gc.server_id or "", "violation": "null", "metadata": json.dumps(metadata),
        }.items():
            body = body.replace("{{" + key + "}}", str(value))
        hooks = [w for w in self._cfg.get("webhooks", []) if event in w.get("events", ["violation"])]
        await asyncio.gather(*(self._send(w, event, body.encode()) for w in hooks))
        return ToolPostInvokeResult()

    async def _send(self, webhook: dict[str, Any], event: str, body: bytes) -> bool:
        headers = {"Content-Type": "application/json", "X-Webhook-Event": event}
        auth = webhook.get("authentication", {})
        if auth.get("type") == "bearer":
            headers["Authorization"] = f"Bearer {auth['token']}"
        elif auth.get("type") == "hmac":
            mac = hmac.new(auth["hmac_secret"].encode(), body, hashlib.sha256).hexdigest()
            headers[auth.get("hmac_header", "X-Signature")] = f"sha256={mac}"
        delay = webhook.get("retry_delay", 1000) / 1000
        for attempt in range(webhook.get("retry_attempts", 3) + 1):
            try:
                response = await self._client.post(webhook["url"], content=body, headers=headers,
                                                    timeout=webhook.get("timeout", 10))
                if response.status_code < 300:
                    self.delivered += 1
                    return True
            except httpx.HTTPError:
                pass
            if attempt < webhook.get("retry_attempts", 3):
                await asyncio.sleep(delay * 2**attempt)
        return False

    async def shutdown(self) -> None:
        await self._client.aclose()
