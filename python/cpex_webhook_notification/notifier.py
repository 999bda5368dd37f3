"""``Notifier``: the native engine for any Python host — an MCP server, a FastMCP middleware, a
LiteLLM callback — with or without cpex installed.

A hook call reads what classification needs straight from the payload and context (cpex
objects, or plain dicts of their JSON shape) in one native call, and returns at once: the
event is queued, never sent on the caller's thread. When that call cannot (data that is not
plain, or ``include_payload_data``), the whole payload and context go as JSON instead,
degraded where strict JSON cannot hold them (NaN, bytes, cycles, lone surrogates, deep
nesting), so a sloppy tool result never hides its own ``tool_error``. Which event a hook
raises is decided in the native core alone.

Notifiers with the same plugin name and config share one process-wide engine (queues,
breakers, counters); ``close()`` only detaches, and an ``atexit`` hook drains every engine
for at most its ``shutdown_timeout``, so a script that forgets ``flush`` still delivers.
"""

from __future__ import annotations

import atexit
import json
import math
from typing import Any

from cpex_webhook_notification import metrics
from cpex_webhook_notification._native import NativeNotifier, ParseError, drain_at_exit

__all__ = ["Notifier"]

atexit.register(drain_at_exit)

# How deep host data is followed before the rest is sent as text.
_MAX_DEPTH = 64


def _model_doc(model: Any, mode: str = "json") -> Any:
    """A pydantic model's dump (``mode="python"`` leaves values as they are, for
    ``_degraded``); a ``plugin_name`` it carries outside its fields (cpex's PluginViolation)
    is kept."""
    doc = model.model_dump(mode=mode)
    name = getattr(model, "plugin_name", None)
    if isinstance(doc, dict) and name is not None:
        doc.setdefault("plugin_name", name)
    return doc


def _jsonable(value: Any) -> Any:
    """json.dumps fallback: models by their JSON dump, anything else as text."""
    if callable(getattr(value, "model_dump", None)):
        return _model_doc(value)
    return str(value)


def _degraded(value: Any, depth: int = 0, seen: frozenset[int] = frozenset()) -> Any:
    """Host data made representable, losing as little as possible: NaN and infinities become
    None, text with lone surrogates is repaired, bytes become their text, non-string keys and
    unknown objects their ``str()``, cycles and values nested deeper than ``_MAX_DEPTH`` their
    (truncated) ``str()``."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if depth >= _MAX_DEPTH or id(value) in seen:
        return _degraded(str(value)[:200])
    inner = seen | {id(value)}
    if callable(getattr(value, "model_dump", None)):
        value = _model_doc(value, mode="python")
    if isinstance(value, dict):
        return {_degraded(str(k)): _degraded(v, depth + 1, inner) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_degraded(v, depth + 1, inner) for v in value]
    return _degraded(str(value))


def _document(value: Any) -> str:
    """JSON of host data: strict when possible, degraded (see ``_degraded``) when not."""
    try:
        return json.dumps(value, default=_jsonable, allow_nan=False)
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
        elif hasattr(type(item), "model_fields"):
            stack.extend(getattr(item, name, None) for name in type(item).model_fields)
    return budget < 0


class Notifier:
    """Sends webhook notifications for one plugin name and config.

    ``config`` is the YAML or JSON text of the config mapping, or a dict. Config errors raise
    ``ConfigError`` (a ``ValueError``) naming the field. Every method returns at once unless
    its name says it waits (``flush``, and ``close`` with a timeout).
    """

    def __init__(self, config: str | dict[str, Any], plugin_name: str = "WebhookNotification") -> None:
        self._config_text = config if isinstance(config, str) else json.dumps(config)
        self._plugin_name = plugin_name
        self._start()

    def _start(self) -> None:
        self._native = NativeNotifier(self._config_text, self._plugin_name)
        metrics.watch(self._native)
        self._include_payload = self._native.include_payload_data
        self._max_payload = self._native.max_payload_size

    def _attached(self) -> NativeNotifier:
        """The native notifier, attached anew in a child of ``fork()`` (gunicorn --preload):
        the one created before the fork refuses events here."""
        if self._native.forked:
            self._start()
        return self._native

    def invoke(self, hook: str, payload: Any, context: Any = None) -> str | None:
        """Handles one gateway hook call (``tool_post_invoke``, ``prompt_post_fetch``, …):
        ``payload`` is that hook's payload and ``context`` the request's context (cpex objects,
        or dicts of their JSON shape, optionally with a ``violation``). Returns the event raised,
        or None. Raises ``ParseError`` only for data that cannot be sent even degraded."""
        native = self._attached()
        whole = self._include_payload and not _larger_than(payload, self._max_payload)
        raised = native.hook(hook, payload, context, whole)
        if raised is None:
            try:
                raised = native.invoke(hook, _document(payload), _document(context))
            except ParseError:
                raised = native.invoke(hook, json.dumps(_degraded(payload)), json.dumps(_degraded(context)))
        return raised[0]

    def notify(
        self,
        event: str,
        context: Any = None,
        violation: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> bool:
        """Raises ``event`` directly (e.g. a host's own policy decision); ``violation`` replaces
        any in ``context``. Returns whether it was queued for some webhook."""
        return self._attached().notify(
            event,
            _document(context),
            None if violation is None else _document(violation),
            None if metadata is None else _document(metadata),
        )

    def flush(self, timeout: float = 5.0) -> bool:
        """Blocks until nothing is queued or in flight in this config's engine; False if
        ``timeout`` (seconds; ``math.inf`` for none) passed first."""
        return self._native.flush(timeout)

    def stats(self) -> dict[str, Any]:
        """Delivery counters of this config's engine: totals and one entry per webhook."""
        return json.loads(self._native.stats_json())

    def dead_letters(self, webhook_id: str | None = None) -> list[dict[str, Any]]:
        """Deliveries that failed for good, of one webhook (by id) or all."""
        return json.loads(self._native.dead_letters_json(webhook_id))

    def replay_dead_letters(self, webhook_id: str | None = None) -> int:
        """Sends dead letters again with their delivery ids; returns how many were queued."""
        return self._native.replay_dead_letters(webhook_id)

    def silence(self, spec: dict[str, Any] | str) -> str:
        """Adds a silence to the outbox's store and returns its id: events matching it are sent
        to no webhook while it is active. ``spec``: ``{"matchers": ["tool=search", "tenant!=t1"],
        "duration": "2h"}`` (or ``starts_at``/``ends_at`` in RFC 3339; ``created_by``,
        ``comment``). A Redis outbox shares it with the fleet, a disk outbox with the
        directory's processes (and keeps it across restarts). Raises ``WebhookError``
        for a mistake or a limit."""
        return self._attached().silence(spec if isinstance(spec, str) else json.dumps(spec))

    def silences(self) -> list[dict[str, Any]]:
        """The silences not yet ended: id, matchers, starts_at, ends_at, created_by, comment,
        state (``active`` or ``pending``)."""
        return json.loads(self._attached().silences_json())

    def expire_silence(self, silence_id: str) -> None:
        """Ends the silence ``silence_id`` now."""
        self._attached().expire_silence(silence_id)

    def metrics_text(self) -> str:
        """This config's engine's metrics in the Prometheus text exposition format 0.0.4."""
        return self._native.metrics_text()

    def count_host_error(self) -> int:
        """Counts (in ``stats()["host_errors"]``) a hook call whose data could not be sent at
        all; returns the count so far."""
        return self._native.count_host_error()

    def close(self, timeout: float | None = None) -> bool:
        """Detaches from the engine, which keeps delivering what is pending; with a
        ``timeout`` (seconds), first waits at most that long for it to drain. Returns whether
        nothing was pending when it detached (always True without a timeout)."""
        drained = True if timeout is None else self.flush(timeout)
        self._native.detach()
        return drained

