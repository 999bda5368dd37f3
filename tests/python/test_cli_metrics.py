"""The console script the wheel installs, and the metrics the plugin keeps in
prometheus_client (the gateway's registry, and a multiprocess directory)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from cpex.framework import GlobalContext, PluginConfig
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cpex_webhook_notification import WebhookNotificationPlugin, metrics

KIND = "cpex_webhook_notification.WebhookNotificationPlugin"
SCRIPT = shutil.which("webhook-notification", path=str(Path(sys.executable).parent))


def gateway_config(raw: bool) -> str:
    open_, close = ("      {% raw %}\n", "      {% endraw %}\n") if raw else ("", "")
    return (
        "plugins:\n"
        "  - name: WebhookNotification\n"
        f"    kind: {KIND}\n"
        "    config:\n"
        f"{open_}"
        "      webhooks: [{url: 'https://h.example/x'}]\n"
        "      payload_templates:\n"
        "        violation: '{\"text\": \"{{user}} was limited\"}'\n"
        f"{close}"
    )


def script(*args: str) -> subprocess.CompletedProcess[str]:
    assert SCRIPT, "the wheel installs the webhook-notification console script"
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=60)


def test_check_renders_a_gateway_config_like_cpex_and_names_the_emptied_variable(tmp_path):
    ok = tmp_path / "ok.yaml"
    ok.write_text(gateway_config(raw=True))
    done = script("check", str(ok))
    assert done.returncode == 0 and "warning" not in done.stderr, done.stdout + done.stderr
    bare = tmp_path / "bare.yaml"
    bare.write_text(gateway_config(raw=False))
    done = script("check", str(bare))
    assert "plugins[0].config.payload_templates.violation" in done.stderr, done.stderr
    assert "`{{user}}`" in done.stderr, done.stderr
    undefined = tmp_path / "undefined.yaml"
    undefined.write_text(gateway_config(raw=False).replace("{{user}}", "{{violation.reason}}"))
    done = script("check", str(undefined))
    assert done.returncode == 1 and "would not load" in done.stderr, done.stderr


def test_the_console_script_runs_the_native_cli(tmp_path):
    config = tmp_path / "plugin.yaml"
    config.write_text("webhooks: [{url: 'https://h.example/x', retry_attempts: 99}]\n")
    done = script("check", str(config))
    assert done.returncode == 1 and "webhooks[0].retry_attempts" in done.stdout + done.stderr
    assert script("--help").returncode == 0


def deliver(receiver, name: str, extra: str = "") -> WebhookNotificationPlugin:
    import asyncio

    config = {"webhooks": [{"url": receiver.url("/SECRET-PATH"), "id": "ops", "events": ["violation"],
                            "authentication": {"type": "bearer", "token": "SECRET-TOKEN"}}]}
    plugin = WebhookNotificationPlugin(PluginConfig(name=name, kind=KIND, hooks=[], config=config))
    for _ in range(3):
        asyncio.run(plugin.notify("violation", GlobalContext(request_id="r"), {"reason": "r"}))
    assert asyncio.run(plugin.flush(10))
    return plugin


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"no {name} {labels} in:\n{text}")


def test_metrics_parse_and_match_stats_without_secrets(receiver):
    plugin = deliver(receiver, "MetricsPlugin")
    text = plugin.metrics_text()
    stats = plugin.stats()
    delivered = sample(text, "webhook_notification_deliveries_total", plugin="MetricsPlugin", webhook="ops",
                       event="violation", outcome="delivered")
    assert delivered == stats["delivered"] == 3
    assert sample(text, "webhook_notification_events_total", plugin="MetricsPlugin", event="violation") == 3
    assert sample(text, "webhook_notification_delivery_seconds_count", webhook="ops") == 3
    assert sample(text, "webhook_notification_queue_depth", webhook="ops") == 0
    assert "SECRET" not in text
    metrics.refresh()
    exposed = generate_latest(REGISTRY).decode()
    assert sample(exposed, "webhook_notification_deliveries_total", plugin="MetricsPlugin", outcome="delivered") == 3
    assert sample(exposed, "webhook_notification_delivery_seconds_count", plugin="MetricsPlugin") == 3
    assert "SECRET" not in exposed


def test_two_live_engines_with_the_same_labels_are_mirrored_without_inflating(receiver):
    """Same plugin name and webhook id, two configs (two engines): each engine's counters
    move the mirror by what they grew, however often it refreshes."""
    from cpex_webhook_notification import Notifier

    config = {"webhooks": [{"url": receiver.url(), "id": "twin", "events": ["violation"]}]}
    first = Notifier(config, "TwinEngines")
    second = Notifier({**config, "shutdown_timeout": 4}, "TwinEngines")
    assert first._native.engine_id != second._native.engine_id
    first.notify("violation", {}, "r")
    for _ in range(3):
        second.notify("violation", {}, "r")
    assert first.flush(10) and second.flush(10)
    for _ in range(4):
        metrics.refresh()
    exposed = generate_latest(REGISTRY).decode()
    labels = {"plugin": "TwinEngines", "webhook": "twin", "outcome": "delivered"}
    assert sample(exposed, "webhook_notification_deliveries_total", **labels) == 4
    assert sample(exposed, "webhook_notification_delivery_seconds_count", plugin="TwinEngines") == 4
    first.close()
    second.close()


def test_metrics_survive_in_a_multiprocess_directory(receiver, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent(f"""
        import asyncio, sys
        from cpex.framework import GlobalContext, PluginConfig
        from cpex_webhook_notification import WebhookNotificationPlugin, metrics
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector
        config = {{"webhooks": [{{"url": "{receiver.url('/x')}", "id": "ops", "events": ["violation"]}}]}}
        plugin = WebhookNotificationPlugin(PluginConfig(name="Multi", kind="{KIND}", hooks=[], config=config))
        for _ in range(2):
            asyncio.run(plugin.notify("violation", GlobalContext(request_id="r"), {{"reason": "r"}}))
        assert asyncio.run(plugin.flush(10))
        metrics.refresh()
        registry = CollectorRegistry()  # what a multi-worker gateway serves: only the collector
        MultiProcessCollector(registry)
        sys.stdout.write(generate_latest(registry).decode())
    """))
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sample(done.stdout, "webhook_notification_deliveries_total", plugin="Multi", outcome="delivered") == 2
    assert sample(done.stdout, "webhook_notification_events_total", plugin="Multi", event="violation") == 2
    assert json.dumps(done.stdout).count("webhook_notification_delivery_seconds_bucket") > 0
