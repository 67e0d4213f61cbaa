"""Warm-up and round counts for benchmarks whose single call takes milliseconds."""

from __future__ import annotations

import time
from typing import Callable

MIN_ROUNDS = 5
MAX_ROUNDS = 2000


def rounds_for(call: Callable[[], object], budget_s: float, warmup_s: float | None = None) -> int:
    """Warm ``call`` up, then return how many rounds fill ``budget_s`` seconds.

    Warm-up runs at least three calls and about a fifth of the budget, so lazy
    initialisation, allocator growth and thread-pool start-up are paid before timing.
    """
    warmup_s = budget_s / 5 if warmup_s is None else warmup_s
    started = time.perf_counter()
    calls = 0
    while calls < 3 or time.perf_counter() - started < warmup_s:
        call()
        calls += 1
    # the last calls estimate the per-call cost best: the first ones were cold
    t0 = time.perf_counter()
    for _ in range(2):
        call()
    per_call = (time.perf_counter() - t0) / 2
    return max(MIN_ROUNDS, min(MAX_ROUNDS, int(budget_s / max(per_call, 1e-9))))
