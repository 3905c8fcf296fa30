"""Device choice, synchronisation and timing shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # where the benchmarks run


def sync() -> None:
    """Wait for queued GPU work (a no-op on the CPU), so a timed step includes it."""
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str, reps: int) -> float:
    """Seconds per call of ``fn`` after one warm-up call: the mean over ``reps`` calls timed with
    CUDA events on a GPU; on a CPU the median of ``reps`` separately timed calls, so one call
    slowed by a noisy neighbour (shared VMs vary by 30%) does not move the result."""
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3 / reps
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timed_pair(fn_a: Callable[[], object], fn_b: Callable[[], object], device: str, reps: int) -> tuple[float, float]:
    """Seconds per call of ``fn_a`` and of ``fn_b``, their calls alternated (a, b, a, b, ...)
    after one warm-up call each, so both see the same machine: on a shared CPU the speed drifts
    by 30% or more over tens of seconds, and timing one side after the other would put that drift
    into their ratio. Medians of ``reps`` calls each (GPU: synchronised around every call)."""
    fn_a(), fn_b()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(reps):
        for fn, out in ((fn_a, times[0]), (fn_b, times[1])):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            out.append(time.perf_counter() - t0)
    return statistics.median(times[0]), statistics.median(times[1])
