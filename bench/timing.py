"""Timing shared by the side-by-side benchmark scripts."""

from __future__ import annotations

import time
from typing import Callable

import torch


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
