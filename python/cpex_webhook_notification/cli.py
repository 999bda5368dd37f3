"""The ``webhook-notification`` console script: the Rust CLI (see ``--help``), plus, for
``check`` of a whole gateway config, the Jinja2 pass cpex makes before any plugin sees the
file — rendered here exactly as cpex 0.1.x does, so the check sees what the gateway will.
Each ``{{ }}`` Jinja evaluates whose variable is one of ours is reported with the template
it stands in: Jinja empties it (or fails the whole load on a dotted path), which is the
missing ``{% raw %}``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from cpex_webhook_notification._native import cli_main

# The template variables of the plugin (DESIGN's list).
VARIABLES = {"event", "plugin_name", "timestamp", "request_id", "user", "user_info", "tenant_id",
             "server_id", "violation", "metadata", "payload", "delivery_id"}


def _dotted(node: Any) -> str | None:
    """`violation.reason` for a Getattr chain on a Name, the name for a Name, else None."""
    from jinja2 import nodes

    parts = []
    while isinstance(node, nodes.Getattr):
        parts.append(node.attr)
        node = node.node
    if isinstance(node, nodes.Name):
        return ".".join([node.name, *reversed(parts)])
    return None


def _template_paths(rendered: str) -> list[tuple[int, int, str]]:
    """(first line, last line, field path) of every scalar in the YAML text (1-based lines)."""
    import yaml

    spans: list[tuple[int, int, str]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, f"{path}.{key.value}" if path else str(key.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}[{i}]")
        else:
            spans.append((node.start_mark.line + 1, node.end_mark.line + 1, path))

    try:
        walk(yaml.compose(rendered), "")
    except yaml.YAMLError:
        pass
    return spans


def _render_like_cpex(text: str) -> tuple[str, list[dict[str, Any]], str | None]:
    """The text as cpex renders it, our variables Jinja evaluates (with their templates),
    and the error that would fail the gateway's load, if any."""
    import jinja2
    from jinja2 import nodes
    from jinja2.sandbox import SandboxedEnvironment

    strict = SandboxedEnvironment(loader=jinja2.BaseLoader(), autoescape=True)
    failure = None
    try:
        rendered = strict.from_string(text).render(env=os.environ)
    except jinja2.TemplateError as e:
        failure = f"{type(e).__name__}: {e}"
        lenient = SandboxedEnvironment(loader=jinja2.BaseLoader(), autoescape=True,
                                       undefined=jinja2.ChainableUndefined)
        rendered = lenient.from_string(text).render(env=os.environ)
    tree = strict.parse(text)
    spans = _template_paths(rendered)
    findings = []
    for output in tree.find_all(nodes.Output):
        for child in output.nodes:
            if isinstance(child, nodes.TemplateData):
                continue
            name = _dotted(child)
            if name is None or name.split(".")[0] not in VARIABLES:
                continue
            line = child.lineno
            where = next((p for first, last, p in spans if first <= line <= last), f"line {line}")
            findings.append({"line": line, "template": where, "variable": name})
    return rendered, findings, failure


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) >= 2 and args[0] == "check" and not args[1].startswith("-"):
        text = Path(args[1]).read_text()
        if any(line.startswith("plugins:") for line in text.splitlines()):
            rendered, findings, failure = _render_like_cpex(text)
            if failure:
                print(f"error: cpex cannot render this file ({failure}): a template variable stands outside "
                      "{% raw %}…{% endraw %}; the gateway would not load", file=sys.stderr)
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
                f.write(rendered)
            try:
                status = cli_main(["webhook-notification", "check", f.name, "--jinja-findings",
                                   json.dumps(findings), *args[2:]])
            finally:
                os.unlink(f.name)
            return 1 if failure else status
    return cli_main(["webhook-notification", *args])


if __name__ == "__main__":
    sys.exit(main())
