"""Mirrors the native engines' Prometheus metrics into ``prometheus_client`` (when it is
importable), so the gateway's own ``/metrics/prometheus`` shows them — in single-process
mode and with ``PROMETHEUS_MULTIPROC_DIR`` (where a custom Collector would vanish, but these
metric objects write to the multiprocess files). Values are refreshed every
``REFRESH_SECONDS`` by a daemon thread, or at once by :func:`refresh`.

The native side renders its metrics as Prometheus text; this module parses that text with
``prometheus_client``'s own parser and moves each counter, gauge and histogram bucket by what
changed since the last refresh. Labels: ``plugin`` (the plugin name), ``webhook`` (its id,
never its URL), ``event``, ``outcome``.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

REFRESH_SECONDS = 2.0

_lock = threading.Lock()
_natives: weakref.WeakSet[Any] = weakref.WeakSet()
_metrics: dict[str, Any] = {}
_last: dict[tuple[int, str, tuple[tuple[str, str], ...]], float] = {}
_thread: threading.Thread | None = None


def available() -> bool:
    """Whether prometheus_client can be imported."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


def watch(native: Any) -> None:
    """Mirrors ``native``'s engine from now on (no-op without prometheus_client)."""
    global _thread
    if not available():
        return
    with _lock:
        _natives.add(native)
        if _thread is None:
            _thread = threading.Thread(target=_loop, name="webhook-metrics", daemon=True)
            _thread.start()


def _loop() -> None:
    import time

    while True:
        time.sleep(REFRESH_SECONDS)
        try:
            refresh()
        except Exception:  # never let a metrics problem end the thread
            import logging

            logging.getLogger("cpex_webhook_notification").exception("metrics refresh failed")


def refresh() -> None:
    """Brings the prometheus_client metrics up to date with every watched engine now. Two live
    engines may show the same labels (one plugin name and webhook id, two configs): counters
    move by what each engine's own count grew, gauges show their sum."""
    from prometheus_client.parser import text_string_to_metric_families

    with _lock:
        engines = {native.engine_id: native for native in list(_natives)}
        gauges: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[Any, float]] = {}
        for engine, native in engines.items():
            for family in text_string_to_metric_families(native.metrics_text()):
                _mirror(engine, family, gauges)
        for (_, labels), (family, value) in gauges.items():
            _metric(family, [k for k, _ in labels]).labels(**dict(labels)).set(value)


def _metric(family: Any, labelnames: list[str]) -> Any:
    from prometheus_client import Counter, Gauge, Histogram

    metric = _metrics.get(family.name)
    if metric is None:
        if family.type == "counter":
            metric = Counter(family.name, family.documentation, labelnames)
        elif family.type == "gauge":
            metric = Gauge(family.name, family.documentation, labelnames, multiprocess_mode="livesum")
        else:
            bounds = sorted({float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")} - {float("inf")})
            metric = Histogram(family.name, family.documentation, labelnames, buckets=bounds)
        _metrics[family.name] = metric
    return metric


def _delta(engine: int, name: str, labels: dict[str, str], value: float) -> float:
    """What a counter-like sample of one engine grew by since the last refresh (all of it
    after a reset)."""
    key = (engine, name, tuple(sorted(labels.items())))
    last = _last.get(key, 0.0)
    _last[key] = value
    return value - last if value >= last else value


def _mirror(engine: int, family: Any, gauges: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[Any, float]]) -> None:
    """Moves one engine's counters and histograms; adds its gauges to ``gauges``."""
    if family.type == "histogram":
        _mirror_histogram(engine, family)
        return
    for sample in family.samples:
        labels = dict(sample.labels)
        if family.type == "counter":
            grown = _delta(engine, sample.name, labels, sample.value)
            if grown:
                _metric(family, list(labels)).labels(**labels).inc(grown)
        else:
            key = (sample.name, tuple(labels.items()))
            gauges[key] = (family, gauges.get(key, (family, 0.0))[1] + sample.value)


def _mirror_histogram(engine: int, family: Any) -> None:
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for sample in family.samples:
        labels = {k: v for k, v in sample.labels.items() if k != "le"}
        entry = series.setdefault(tuple(sorted(labels.items())), {"labels": labels, "buckets": [], "sum": 0.0})
        if sample.name.endswith("_bucket"):
            entry["buckets"].append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_sum"):
            entry["sum"] = sample.value
    for entry in series.values():
        labels = entry["labels"]
        child = _metric(family, list(labels)).labels(**labels)
        cumulative = [value for _, value in sorted(entry["buckets"])]
        counts = [b - a for a, b in zip([0.0, *cumulative], cumulative)]
        for i, count in enumerate(counts):
            grown = _delta(engine, f"{family.name}_bucket_{i}", labels, count)
            if grown:
                child._buckets[i].inc(grown)  # prometheus_client keeps per-bucket (not cumulative) values
        grown_sum = _delta(engine, f"{family.name}_sum", labels, entry["sum"])
        if grown_sum:
            child._sum.inc(grown_sum)


def _after_fork_in_child() -> None:
    """The refresh thread (and a lock it may have held) stayed in the parent."""
    global _thread, _lock
    _thread = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
