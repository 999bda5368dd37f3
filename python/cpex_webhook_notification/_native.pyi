"""Type stubs of the native module built from src/python.rs (checked by mypy.stubtest)."""

from typing import final

__all__ = ["ClosedError", "ConfigError", "NativeNotifier", "ParseError", "WebhookError", "__version__"]

__version__: str

class WebhookError(Exception):
    """Base class of this library's errors."""

class ConfigError(ValueError):
    """The plugin config is invalid; the message names the field."""

class ParseError(WebhookError):
    """A payload, context, violation or metadata is not valid JSON of the right shape."""

class ClosedError(WebhookError):
    """The notifier was shut down and accepts no events."""

@final
class NativeNotifier:
    """The native notifier behind one WebhookNotificationPlugin."""

    def __new__(cls, config: str, plugin_name: str | None = None) -> NativeNotifier: ...
    def invoke(self, hook: str, payload: str, context: str | None = None) -> tuple[str | None, bool]: ...
    def notify(
        self,
        event: str,
        context: str | None = None,
        violation: str | None = None,
        metadata: str | None = None,
    ) -> bool: ...
    def flush(self, timeout: float) -> bool: ...
    def close(self, timeout: float) -> bool: ...
    def stats_json(self) -> str: ...
    @property
    def shutdown_timeout(self) -> float: ...
    @property
    def include_payload_data(self) -> bool: ...
