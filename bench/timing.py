"""Device choice, synchronisation and timing shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import torch


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # where the benchmarks run


def sync(device: str = DEVICE) -> None:
    """Wait for queued GPU work (a no-op on the CPU), so a timed step includes it."""
    if device == "cuda":
        torch.cuda.synchronize()


def run_benchmark(benchmark, fn: Callable[[], object], group: str) -> float | None:  # noqa: ANN001
    """Times ``fn`` (synchronised after each call) with pytest-benchmark's fixture in ``group``;
    returns the mean seconds, or None when timing is off (``--benchmark-disable``)."""
    def step() -> None:
        fn()
        sync()

    benchmark.group = group
    benchmark(step)
    return None if benchmark.stats is None else benchmark.stats["mean"]


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


def timed_alternating(fns: Sequence[Callable[[], object]], device: str, reps: int) -> list[float]:
    """Seconds per call of each of ``fns``, their calls alternated (a, b, c, a, b, c, ...) after
    one warm-up call each, so all see the same machine: on a shared CPU the speed drifts by 30%
    or more over tens of seconds, and timing one after the other would put that drift into their
    ratios. Medians of ``reps`` calls each (GPU: synchronised around every call)."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for fn, out in zip(fns, times):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            out.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]
