"""One way for system tests to wait on real services: poll a condition until a deadline, then fail
naming what never happened (and, for a child process, what it printed if it died first)."""

from __future__ import annotations

import subprocess
import time
from typing import Callable

import pytest


def wait_for(condition: Callable[[], object], timeout: float, what: str, *, interval: float = 0.2,
             tolerate: tuple[type[BaseException], ...] = (), proc: subprocess.Popen | None = None) -> None:
    """Return once ``condition()`` is true. Exceptions of the ``tolerate`` types count as "not yet"
    (a server still starting); if ``proc`` exits first, fail with its output."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except tolerate:
            pass
        if proc is not None and proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the process exited ({proc.returncode}) before {what}:\n{output}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
