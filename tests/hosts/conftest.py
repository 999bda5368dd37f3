"""Fixtures of the host tests: the Python suite's real receiver (tests/python/conftest.py),
and free ports on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from pathlib import Path

_spec = importlib.util.spec_from_file_location("python_suite_fixtures", Path(__file__).parent.parent / "python" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _fixtures  # dataclasses look their module up there
_spec.loader.exec_module(_fixtures)
receiver = _fixtures.receiver


def wait_listening(process: subprocess.Popen, port: int, log: Path, within: float = 60.0) -> None:
    """Waits until `process` accepts connections on `port`; fails with its `log` if it exits."""
    deadline = time.monotonic() + within
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"nothing listened on {port}"
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
