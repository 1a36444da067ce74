"""Shared by the benchmark scripts (run as ``python benchmarks/<name>.py``, so this folder is on the path)."""

from __future__ import annotations

import math
import time


def best_of(call, repeats: int):
    """``(best seconds, last result)`` of ``repeats`` calls: the least disturbed run on a shared machine."""
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    return best, result
