"""Webhook notifications for AI gateways, delivered by a native Rust core.

``Notifier`` serves any Python host (an MCP server, a FastMCP middleware, a LiteLLM callback)
and needs nothing but this package. ``WebhookNotificationPlugin`` is the ContextForge (cpex)
plugin, a drop-in replacement for the original Python webhook notification plugin: same
config, events and template variables, but hooks only queue (they never wait on the network)
and deliveries are pooled, concurrent, retried and signed in the background. It needs cpex
(``pip install cpex-webhook-notification[cpex]``) and is imported on first use.
"""

from typing import Any

from cpex_webhook_notification._native import (
    ClosedError,
    ConfigError,
    ParseError,
    WebhookError,
    __version__,
)
from cpex_webhook_notification.notifier import Notifier

__all__ = [
    "ClosedError",
    "ConfigError",
    "Notifier",
    "ParseError",
    "WebhookError",
    "WebhookNotificationPlugin",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Imports the cpex plugin class on first use, so that the package works without cpex."""
    if name == "WebhookNotificationPlugin":
        from cpex_webhook_notification.plugin import WebhookNotificationPlugin

        return WebhookNotificationPlugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
