#!/usr/bin/env python3
"""Runs `cargo test` (or any libtest command) with a time limit per test.

Rust's test harness has no per-test timeout on stable; it only prints "test NAME has been
running for over 60 seconds". This wrapper passes the output through, and when a test so
named has not finished `LIMIT` seconds after it started, it kills the whole run (its process
group: test binaries and the servers they started) and fails naming the test, instead of
letting one hung test hold CI until the job's own timeout. (cargo-nextest's `slow-timeout`
does this too, but building it costs CI ~9 minutes on 2 cores.)

Usage: python3 tests/per_test_timeout.py LIMIT_SECONDS COMMAND...
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time

SLOW = re.compile(r"^test (\S+) has been running for over (\d+) seconds")
DONE = re.compile(r"^test (\S+) \.\.\. ")


def main() -> int:
    limit, command = float(sys.argv[1]), sys.argv[2:]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True, bufsize=1)
    deadlines: dict[str, float] = {}  # slow tests still running -> when they run out of time
    expired: list[str] = []
    lock = threading.Lock()

    def watch() -> None:
        while child.poll() is None:
            with lock:
                overdue = [name for name, at in deadlines.items() if time.monotonic() > at]
            if overdue:
                expired.extend(overdue)
                os.killpg(child.pid, signal.SIGKILL)
                return
            time.sleep(1)

    threading.Thread(target=watch, daemon=True).start()
    assert child.stdout is not None
    for line in child.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        with lock:
            if slow := SLOW.match(line):
                deadlines[slow[1]] = time.monotonic() + limit - int(slow[2])
            elif done := DONE.match(line):
                deadlines.pop(done[1], None)
    code = child.wait()
    if expired:
        print(f"per-test timeout: {', '.join(expired)} still running after {limit:.0f} s; the run was killed",
              file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
