"""Type stubs of the native module built from src/python/ (checked by mypy.stubtest)."""

from typing import final

__all__ = ["ClosedError", "ConfigError", "NativeNotifier", "ParseError", "WebhookError", "__version__", "cli_main", "drain_at_exit", "violation_event"]

__version__: str

class WebhookError(Exception):
    """Base class of this library's errors."""

class ConfigError(ValueError):
    """The plugin config is invalid; the message names the field."""

class ParseError(WebhookError):
    """A payload, context, violation or metadata is not valid JSON of the right shape."""

class ClosedError(WebhookError):
    """The notifier was shut down and accepts no events."""

def cli_main(argv: list[str]) -> int:
    """Runs the webhook-notification CLI with argv (program name first); returns the exit status."""

def violation_event(violation: str) -> str:
    """The event a violation (JSON text) raises: its code decides first, then its reason."""

def drain_at_exit() -> bool:
    """Drains every shared engine within the longest shutdown_timeout (registered with atexit)."""

@final
class NativeNotifier:
    """The native notifier behind one WebhookNotificationPlugin, attached to its config's engine."""

    def __new__(cls, config: str, plugin_name: str | None = None) -> NativeNotifier: ...
    def invoke(self, hook: str, payload: str, context: str | None = None) -> tuple[str | None, bool]: ...
    def hook(
        self, hook: str, payload: object, context: object, whole_payload: bool = True
    ) -> tuple[str | None, bool] | None: ...
    def notify(
        self,
        event: str,
        context: str | None = None,
        violation: str | None = None,
        metadata: str | None = None,
    ) -> bool: ...
    def flush(self, timeout: float) -> bool: ...
    def detach(self) -> None: ...
    def count_host_error(self) -> int: ...
    def stats_json(self) -> str: ...
    def metrics_text(self) -> str: ...
    def dead_letters_json(self, webhook_id: str | None = None) -> str: ...
    def replay_dead_letters(self, webhook_id: str | None = None) -> int: ...
    def silence(self, spec: str) -> str: ...
    def silences_json(self) -> str: ...
    def expire_silence(self, id: str) -> None: ...
    @property
    def engine_id(self) -> int: ...
    @property
    def forked(self) -> bool: ...
    @property
    def include_payload_data(self) -> bool: ...
    @property
    def max_payload_size(self) -> int: ...
