"""Sees every violation any plugin of a cpex plugin manager returns or raises, and raises its
event on the webhooks of our plugin instances loaded in that same manager.

Why: cpex (0.1.x) runs plugins grouped by mode before priority; a blocking denial returns
before the audit phase, audit and permissive violations are logged and replaced by
``violation=None``, and the gateway raises ``PluginViolationError`` from the pre-hook so no
post-hook runs. A plugin's own hooks therefore never see another plugin's violation. Like
OpenTelemetry's instrumentations, this module wraps two framework methods once per process:

- ``PluginManager.invoke_hook`` / ``invoke_hook_for_plugin``: a context variable names the
  manager running the hook (its registry holds the plugin instances that may hear of it);
- ``PluginExecutor._execute_with_timeout``: each plugin's raw result (or raised
  ``PluginViolationError``), before the manager drops or raises it.

It observes only: it never changes a result, never raises into cpex and never awaits. With no
violation its cost is one ``await`` and one attribute test per plugin call. It is installed
only for the cpex versions and method signatures it was written against; elsewhere it logs
one warning and ``stats()["violations_observed"]`` is False (violations put into the
context's state are still reported by the hooks).
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import json
import logging
import time
import weakref
from collections import OrderedDict
from contextvars import ContextVar
from typing import Any

from cpex_webhook_notification._native import violation_event
from cpex_webhook_notification.notifier import Notifier

logger = logging.getLogger("cpex_webhook_notification")

# cpex versions whose executor this was written against: [low, high).
_SUPPORTED = ((0, 1, 4), (0, 2, 0))
# The wrapped executor method's parameters, as cpex 0.1.x declares them.
_EXECUTE_PARAMS = ["self", "hook_ref", "payload", "context", "extensions"]
# Violations remembered for de-duplication against the same violation in a hook's context.
_REMEMBERED = 4096
# Seconds between two log lines about a violation that could not be reported.
_ERROR_LOG_INTERVAL = 60.0

_running_manager: ContextVar[Any] = ContextVar("cpex_webhook_notification_manager", default=None)
_subscribers: weakref.WeakKeyDictionary[Any, Notifier] = weakref.WeakKeyDictionary()
_reported: OrderedDict[tuple[str, str, str], None] = OrderedDict()
_installed: bool | None = None
_error_logged = -float("inf")


def observing() -> bool:
    """Whether violations are observed in this process (False until the first install, and
    for a cpex outside the supported range)."""
    return bool(_installed)


def subscribe(plugin: Any, notifier: Notifier) -> bool:
    """Installs the observer (once per process) and sends the violations of the manager that
    holds ``plugin`` to ``notifier`` from now on; returns whether violations are observed."""
    _subscribers[plugin] = notifier
    return install()


def install() -> bool:
    """Wraps cpex's methods once (idempotent); returns whether it could."""
    global _installed
    if _installed is None:
        reason = _unsupported()
        if reason is None:
            _wrap()
        else:
            logger.warning("violations raised by other plugins will not be observed: %s", reason)
        _installed = reason is None
    return _installed


def _unsupported() -> str | None:
    """Why this cpex cannot be observed, or None when it can."""
    try:
        from cpex.framework.manager import PluginExecutor, PluginManager

        version = importlib.metadata.version("cpex")
    except (ImportError, importlib.metadata.PackageNotFoundError) as error:
        return f"cpex is not importable ({error})"
    numbers = tuple(int(part) for part in version.split(".")[:3] if part.isdigit())
    if not _SUPPORTED[0] <= numbers < _SUPPORTED[1]:
        return f"cpex {version} is outside the supported range 0.1.4 to 0.2"
    execute = getattr(PluginExecutor, "_execute_with_timeout", None)
    if not inspect.iscoroutinefunction(execute) or list(inspect.signature(execute).parameters) != _EXECUTE_PARAMS:
        return "cpex's PluginExecutor._execute_with_timeout has an unexpected signature"
    for name in ("invoke_hook", "invoke_hook_for_plugin"):
        if not inspect.iscoroutinefunction(getattr(PluginManager, name, None)):
            return f"cpex's PluginManager.{name} is missing"
    return None


def _wrap() -> None:
    from cpex.framework.errors import PluginViolationError
    from cpex.framework.manager import PluginExecutor, PluginManager

    def naming_the_manager(original: Any) -> Any:
        @functools.wraps(original)
        async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            token = _running_manager.set(self)
            try:
                return await original(self, *args, **kwargs)
            finally:
                _running_manager.reset(token)

        return call

    original = PluginExecutor._execute_with_timeout

    @functools.wraps(original)
    async def execute(self: Any, hook_ref: Any, payload: Any, context: Any, extensions: Any = None) -> Any:
        try:
            result = await original(self, hook_ref, payload, context, extensions=extensions)
        except PluginViolationError as error:
            if error.violation is not None:
                _report(hook_ref, payload, context, error.violation, halted=True)
            raise
        violation = getattr(result, "violation", None)
        if violation is not None:
            _report(hook_ref, payload, context, violation, halted=not getattr(result, "continue_processing", True))
        return result

    for name in ("invoke_hook", "invoke_hook_for_plugin"):
        setattr(PluginManager, name, naming_the_manager(getattr(PluginManager, name)))
    PluginExecutor._execute_with_timeout = execute  # type: ignore[method-assign]


def _report(hook_ref: Any, payload: Any, context: Any, violation: Any, halted: bool) -> None:
    """Raises the violation's event on every subscribed instance of the running manager;
    never raises (a failure is logged at most once a minute)."""
    global _error_logged
    try:
        notifiers = _notifiers_of(_running_manager.get())
        if not notifiers:
            return
        plugin_ref = hook_ref.plugin_ref
        mode = str(getattr(plugin_ref.mode, "value", plugin_ref.mode))
        hook = str(hook_ref.name)
        doc = _violation_doc(violation, plugin_ref.name)
        identity = _identity(getattr(context, "global_context", None))
        _remember(identity.get("request_id"), doc)
        metadata = {
            **_subject(hook, payload),
            "hook": hook,
            "mode": mode,
            "blocked": halted and mode in ("sequential", "concurrent"),
        }
        event = violation_event(json.dumps(doc, default=str))
        for notifier in notifiers:
            notifier.notify(event, identity, doc, metadata)
    except Exception:  # observing must never fail the plugin chain
        now = time.monotonic()
        if now - _error_logged >= _ERROR_LOG_INTERVAL:
            _error_logged = now
            logger.exception("a violation could not be reported")


def _notifiers_of(manager: Any) -> list[Notifier]:
    """The notifiers of our plugin instances registered in ``manager``."""
    registry = getattr(manager, "_registry", None)
    if registry is None or not _subscribers:
        return []
    found = (_subscribers.get(ref.plugin) for ref in registry.get_all_plugins())
    return [notifier for notifier in found if notifier is not None]


def _violation_doc(violation: Any, plugin_name: str) -> dict[str, Any]:
    """The violation as a dict (code, reason, description, details, plugin_name)."""
    if callable(getattr(violation, "model_dump", None)):
        doc = violation.model_dump(mode="json")
        doc.setdefault("plugin_name", getattr(violation, "plugin_name", None))
    elif isinstance(violation, dict):
        doc = dict(violation)
    else:
        doc = {"reason": str(violation)}
    if not doc.get("plugin_name"):
        doc["plugin_name"] = plugin_name
    return doc


def _identity(global_context: Any) -> dict[str, Any]:
    """The fields of the violating call's global context that events carry, and cpex's
    current trace id (the gateway's request trace)."""
    fields = {
        name: getattr(global_context, name, None) for name in ("request_id", "user", "tenant_id", "server_id")
    }
    try:
        from cpex.framework.observability import current_trace_id

        fields["trace_id"] = current_trace_id.get()
    except ImportError:
        pass
    return fields


def _subject(hook: str, payload: Any) -> dict[str, Any]:
    """The metadata entry naming the hook's subject (tool_name, prompt_id, resource_uri)."""
    for prefix, key, field in (
        ("tool_", "tool_name", "name"),
        ("prompt_", "prompt_id", "prompt_id"),
        ("resource_", "resource_uri", "uri"),
    ):
        if hook.startswith(prefix):
            value = payload.get(field) if isinstance(payload, dict) else getattr(payload, field, None)
            return {key: value if isinstance(value, (str, int, float, bool)) or value is None else str(value)}
    return {}


def _fingerprint(request_id: Any, violation: Any) -> tuple[str, str, str]:
    get = violation.get if isinstance(violation, dict) else lambda name: getattr(violation, name, None)
    return (str(request_id), str(get("code")), str(get("reason")))


def _remember(request_id: Any, violation: dict[str, Any]) -> None:
    _reported[_fingerprint(request_id, violation)] = None
    while len(_reported) > _REMEMBERED:
        _reported.popitem(last=False)


def already_reported(context: Any) -> bool:
    """Whether the violation a hook's context carries in its state (the v3 way) is one this
    observer already reported for the same request: the hook then raises nothing for it."""
    if not _reported:
        return False
    global_context = getattr(context, "global_context", None)
    for holder in (context, global_context):
        state = getattr(holder, "state", None)
        violation = state.get("violation") if isinstance(state, dict) else None
        if violation is not None:
            request_id = getattr(global_context, "request_id", None)
            return _fingerprint(request_id, violation) in _reported
    return False
