"""Device choice, synchronisation and timing shared by the benchmarks."""

from __future__ import annotations

import time
from typing import Callable

import torch


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # where the benchmarks run


def sync() -> None:
    """Wait for queued GPU work (a no-op on the CPU), so a timed step includes it."""
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str, reps: int) -> float:
    """Mean seconds per call of ``fn`` after one warm-up call; CUDA events on a GPU."""
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
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps
