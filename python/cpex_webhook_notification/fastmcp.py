"""``WebhookMiddleware``: webhook notifications for a FastMCP server or proxy.

    from fastmcp import FastMCP
    from cpex_webhook_notification.fastmcp import WebhookMiddleware

    mcp = FastMCP("tools")
    mcp.add_middleware(WebhookMiddleware(open("webhooks.yaml").read()))  # first, see below

Tool calls raise ``tool_success``, or ``tool_error`` (``metadata.error``: the exception's text)
when the tool raised; FastMCP's ``RateLimitError`` raised further in (its
``RateLimitingMiddleware``) raises ``rate_limit_exceeded`` with violation
``{"code": "RATE_LIMIT", "reason": <its text>}``; prompts raise ``prompt_success`` and resource
reads ``resource_success``. ``{{user}}`` is the caller's access-token ``email`` claim, else its
``sub``, when the server authenticates. Add it before other middleware so that it sees what
they raise; it re-raises everything, and a notification problem never fails a request (it is
counted in ``stats()["host_errors"]``). Needs ``fastmcp`` (``pip install
cpex-webhook-notification[fastmcp]``).
"""

from __future__ import annotations

import logging
from typing import Any

from fastmcp.server.dependencies import get_access_token
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.server.middleware.rate_limiting import RateLimitError

from cpex_webhook_notification.notifier import Notifier

__all__ = ["WebhookMiddleware"]

logger = logging.getLogger("cpex_webhook_notification")


def _user() -> str | None:
    """The caller's identity from FastMCP's access token: its email claim, else its subject."""
    try:
        token = get_access_token()
    except Exception:  # no request context (in-memory transport without auth)
        return None
    if token is None:
        return None
    claims = getattr(token, "claims", None) or {}
    return claims.get("email") or claims.get("sub") or getattr(token, "client_id", None)


def _request_id(context: MiddlewareContext[Any]) -> str | None:
    try:
        return None if context.fastmcp_context is None else str(context.fastmcp_context.request_id)
    except RuntimeError:  # no MCP session yet
        return None


class WebhookMiddleware(Middleware):
    """A FastMCP middleware that raises webhook events for tool calls, prompts, resources and
    FastMCP's rate-limit rejections. ``config`` is YAML/JSON text or a dict (the webhook
    notification config); ``plugin_name`` fills ``{{plugin_name}}``."""

    def __init__(self, config: str | dict[str, Any], plugin_name: str = "FastMCP") -> None:
        self.notifier = Notifier(config, plugin_name)

    def _raise(self, hook: str, payload: dict[str, Any], context: MiddlewareContext[Any], violation: Any = None) -> None:
        """Hands one hook call to the notifier; never raises into the request."""
        ctx = {"request_id": _request_id(context), "user": _user(), "violation": violation}
        try:
            self.notifier.invoke(hook, payload, ctx)
        except Exception:
            count = self.notifier.count_host_error()
            logger.debug("webhook notification for %s failed (%d so far)", hook, count, exc_info=True)

    async def _around(
        self,
        context: MiddlewareContext[Any],
        call_next: CallNext[Any, Any],
        hooks: tuple[str, str],
        subject: dict[str, Any],
    ) -> Any:
        """Runs the rest of the chain, then raises the success, error or rate-limit event."""
        pre, post = hooks
        try:
            result = await call_next(context)
        except RateLimitError as e:
            self._raise(pre, subject, context, {"code": "RATE_LIMIT", "reason": str(e)})
            raise
        except Exception as e:
            if post == "tool_post_invoke":
                self._raise(post, {**subject, "result": {"error": str(e) or type(e).__name__}}, context)
            raise
        self._raise(post, {**subject, "result": {}}, context)
        return result

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]) -> Any:
        """tool_success, tool_error or rate_limit_exceeded for a tool call."""
        subject = {"name": context.message.name}
        return await self._around(context, call_next, ("tool_pre_invoke", "tool_post_invoke"), subject)

    async def on_get_prompt(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]) -> Any:
        """prompt_success or rate_limit_exceeded for a prompt."""
        subject = {"prompt_id": context.message.name}
        return await self._around(context, call_next, ("prompt_pre_fetch", "prompt_post_fetch"), subject)

    async def on_read_resource(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]) -> Any:
        """resource_success or rate_limit_exceeded for a resource read."""
        subject = {"uri": str(context.message.uri)}
        return await self._around(context, call_next, ("resource_pre_fetch", "resource_post_fetch"), subject)
