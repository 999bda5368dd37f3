"""Webhook notifications for the ContextForge gateway, delivered by a native Rust core.

A drop-in replacement for the original Python webhook notification plugin: same config,
events and template variables, but hooks only queue (they never wait on the network) and
deliveries are pooled, concurrent, retried and signed in the background.
"""

from cpex_webhook_notification._native import (
    ClosedError,
    ConfigError,
    ParseError,
    WebhookError,
    __version__,
)
from cpex_webhook_notification.plugin import WebhookNotificationPlugin

__all__ = [
    "ClosedError",
    "ConfigError",
    "ParseError",
    "WebhookError",
    "WebhookNotificationPlugin",
    "__version__",
]
