"""Fixtures for the Python suite: a real HTTP receiver on 127.0.0.1 and a helper that
loads a gateway plugin config through the real cpex PluginManager.

The suite runs against the installed wheel (tests/run.sh installs it into a fresh venv).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import pytest

# Read by the native module when it is first imported: DEBUG shows every attempt.
os.environ.setdefault("LOG_LEVEL", "DEBUG")


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST; `reply(n)` gives (status, headers, delay seconds) for request n."""

    reply: Callable[[int], tuple[int, dict[str, str], float]] = lambda n: (200, {}, 0.0)
    requests: list[Request] = field(default_factory=list)
    completed: int = 0  # responses fully written
    cond: threading.Condition = field(default_factory=threading.Condition)
    port: int = 0

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Request]:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.requests) >= n, timeout)
            assert ok, f"expected {n} requests, got {len(self.requests)}"
            return list(self.requests)

    def wait_completed(self, n: int, timeout: float = 10.0) -> None:
        """Waits until n responses were fully written."""
        with self.cond:
            assert self.cond.wait_for(lambda: self.completed >= n, timeout), f"{self.completed} of {n} completed"

    async def arrived(self, n: int, timeout: float = 10.0) -> list[Request]:
        """`wait_for` without blocking the event loop (cpex may run the hook as a task)."""
        return await asyncio.to_thread(self.wait_for, n, timeout)


def _handler(rx: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with rx.cond:
                n = len(rx.requests)
                rx.requests.append(Request(self.path, headers, body, time.monotonic()))
                rx.cond.notify_all()
            status, extra, delay = rx.reply(n)
            if delay:
                time.sleep(delay)
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            self.wfile.flush()
            with rx.cond:
                rx.completed += 1
                rx.cond.notify_all()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def receiver():
    rx = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rx))
    server.daemon_threads = True
    rx.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rx
    server.shutdown()
    server.server_close()


@pytest.fixture
def gateway(tmp_path: Path):
    """Returns `load(plugins_yaml) -> PluginManager`: writes the gateway's plugin config file
    and initialises a fresh cpex PluginManager from it (cpex renders it with Jinja first)."""
    from cpex.framework import PluginManager

    managers = []

    async def load(text: str):
        path = tmp_path / "plugins.yaml"
        path.write_text(text)
        PluginManager.reset()
        manager = PluginManager(str(path))
        await manager.initialize()
        managers.append(manager)
        return manager

    yield load
    PluginManager.reset()
