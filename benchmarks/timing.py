"""Timing shared by the benchmark scripts."""

from __future__ import annotations

import time


def timed_runs(action, repeats: int, before=None, warmup: int = 1) -> list[float]:
    """Wall seconds of each of `repeats` calls of `action()`, after `warmup` untimed calls (first calls
    build graphs, kernels and caches that later calls reuse); with `before`, an untimed `before()` precedes
    every timed call (the state the action meets, e.g. a prediction before a cleanup, or emptied caches)."""
    for _ in range(warmup):
        action()
    timings = []
    for _ in range(repeats):
        if before is not None:
            before()
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return timings
