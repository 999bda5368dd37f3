"""Plugins that violate in the two ways real ones do not, loaded by kind from the tests: one
returns its violation and also writes it into the context's state (the v3 way our hooks read),
one raises ``PluginViolationError`` from its hook instead of returning a result."""

from __future__ import annotations

from typing import Any

from cpex.framework import Plugin, PluginViolation, ToolPreInvokeResult
from cpex.framework.errors import PluginViolationError


def _violation(code: str) -> PluginViolation:
    return PluginViolation(reason=f"{code} by test", description="test plugin", code=code, details={"test": True})


class StatefulDenier(Plugin):
    """Returns a CONTENT_MODERATION violation and records it in ``context.state`` too."""

    async def tool_pre_invoke(self, payload: Any, context: Any) -> ToolPreInvokeResult:
        found = _violation("CONTENT_MODERATION")
        context.global_context.state["violation"] = found
        context.state["violation"] = found
        return ToolPreInvokeResult(continue_processing=False, violation=found)


class RaisingDenier(Plugin):
    """Raises an ENCODED_EXFIL_DETECTED violation."""

    async def tool_pre_invoke(self, payload: Any, context: Any) -> ToolPreInvokeResult:
        raise PluginViolationError("exfiltration", violation=_violation("ENCODED_EXFIL_DETECTED"))
