"""Grouped GEMM: ours vs ``torch._grouped_mm`` vs a per-expert ``torch.mm`` loop on the same
operands. Shapes: the fine MoE gate_up (12288 rows over 64 experts, K=1024, N=512) and, on a
GPU, a balanced one at the GPU target (2048 rows per expert, 8 experts, K=N=4096).
TFLOP/s is stored per benchmark in the JSON report:

    pytest bench/bench_grouped_gemm.py --benchmark-only --benchmark-json=gg.json
"""

import pytest
import torch
from timing import DEVICE, sync

from yilightning.ops import grouped_gemm

# (rows per expert, experts, K, N); the large case only on a GPU
CASES = {"fine-gate_up": (192, 64, 1024, 512)}
if DEVICE == "cuda":
    CASES["2048x8-4096"] = (2048, 8, 4096, 4096)
DTYPES = [torch.bfloat16] if DEVICE == "cuda" else [torch.float32, torch.bfloat16]



@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("impl", ["yilightning", "torch._grouped_mm", "mm-loop"])
def test_grouped_gemm(benchmark, impl, case, dtype):
    rows, E, K, N = CASES[case]
    a = torch.randn(rows * E, K, device=DEVICE, dtype=dtype)
    b = torch.randn(E, N, K, device=DEVICE, dtype=dtype)  # the nn.Linear layout (trans_b)
    sizes = torch.full((E,), rows, device=DEVICE, dtype=torch.int64)
    offs = sizes.cumsum(0).to(torch.int32)
    sizes_host = sizes.tolist()

    def loop():
        out, start = [], 0
        for g, m in enumerate(sizes_host):
            out.append(a[start:start + m] @ b[g].t())
            start += m
        return torch.cat(out)

    fn = {
        "yilightning": lambda: grouped_gemm(a, b, sizes, trans_b=True),
        "torch._grouped_mm": lambda: torch._grouped_mm(a, b.transpose(1, 2), offs=offs),
        "mm-loop": loop,
    }[impl]

    def step():
        fn()
        sync()

    benchmark.group = f"grouped_gemm {case} {dtype}"
    benchmark(step)
    if benchmark.stats is not None:
        benchmark.extra_info["TFLOP/s"] = round(2 * rows * E * K * N / benchmark.stats["mean"] / 1e12, 3)
