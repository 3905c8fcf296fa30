"""SwiGLU: our kernel vs PyTorch eager (``F.silu(gate) * up``), forward and forward+backward.

    pytest bench/bench_swiglu.py --benchmark-only --benchmark-group-by=param:case

Shapes are the MoE expert activations of the report's fine-grained layer: T*k permuted rows of
2*I columns (T=2048 tokens, k=6, I=256) and a coarse expert (T*k=4096 rows, I=1408).
The op is memory-bound: compare GB/s (bytes moved / time) against the machine's copy bandwidth.
"""

import pytest
import torch
import torch.nn.functional as F
from timing import DEVICE, run_benchmark

from yilightning.ops import swiglu

CASES = {"fine-12288x2x256": (12288, 256), "coarse-4096x2x1408": (4096, 1408)}


def eager(x: torch.Tensor) -> torch.Tensor:
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up



@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("impl", ["yilightning", "torch-eager"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_swiglu(benchmark, impl, case, dtype, mode):
    rows, inter = CASES[case]
    fn = swiglu if impl == "yilightning" else eager
    x = torch.randn(rows, 2 * inter, device=DEVICE, dtype=dtype, requires_grad=mode == "fwd+bwd")
    grad = torch.randn(rows, inter, device=DEVICE, dtype=dtype)

    def step():
        y = fn(x)
        if mode == "fwd+bwd":
            y.backward(grad)
            x.grad = None

    mean = run_benchmark(benchmark, step, f"swiglu {mode} {case} {dtype}")
    if mean is None:  # --benchmark-disable: ran once as a smoke test
        return
    # bytes that must move: read x, write y (+ read grad, read x, write dx in backward)
    elem = x.element_size()
    moved = 3 * rows * inter * elem + (5 * rows * inter * elem if mode == "fwd+bwd" else 0)
    benchmark.extra_info["GB/s"] = round(moved / mean / 1e9, 2)
