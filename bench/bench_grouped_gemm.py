"""Grouped GEMM: ours vs ``torch._grouped_mm`` vs a per-expert ``torch.mm`` loop on the same
operands; in FP8, ours (block scales) vs ``torch._scaled_grouped_mm`` (row scales; a GPU peer). Shapes: the fine MoE gate_up (12288 rows over 64 experts, K=1024, N=512) and, on a
GPU, a balanced one at the GPU target (2048 rows per expert, 8 experts, K=N=4096).
TFLOP/s is stored per benchmark in the JSON report:

    pytest bench/bench_grouped_gemm.py --benchmark-only --benchmark-json=gg.json
"""

import pytest
import torch
from timing import DEVICE, run_benchmark

from yilightning.ops import grouped_gemm, grouped_gemm_fp8, quantize_fp8

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
    _measure(benchmark, fn, f"grouped_gemm {case} {dtype}", rows, E, K, N)


def _measure(benchmark, fn, group, rows, E, K, N):
    """Times ``fn`` in ``group`` and stores its TFLOP/s in the JSON report."""
    mean = run_benchmark(benchmark, fn, group)
    if mean is not None:
        benchmark.extra_info["TFLOP/s"] = round(2 * rows * E * K * N / mean / 1e12, 3)


FP8_IMPLS = ["yilightning", "torch._scaled_grouped_mm"] if DEVICE == "cuda" else ["yilightning"]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("impl", FP8_IMPLS)
def test_grouped_gemm_fp8(benchmark, impl, case):
    """FP8 forward. Ours: one scale per row and 128 columns of a, per 128 x 128 block of b (the
    Hopper kernel; elsewhere the dequantized fp32 product). The peer: one scale per row of a and
    per row of b[g], the recipe ``torch._scaled_grouped_mm`` takes."""
    rows, E, K, N = CASES[case]
    x = torch.randn(rows * E, K, device=DEVICE)
    w = torch.randn(E, N, K, device=DEVICE) / K ** 0.5
    sizes = torch.full((E,), rows, device=DEVICE, dtype=torch.int64)
    if impl == "yilightning":
        (xq, xs), (wq, ws) = quantize_fp8(x), quantize_fp8(w, block=(128, 128))
        fn = lambda: grouped_gemm_fp8(xq, xs, wq, ws, sizes)  # noqa: E731
    else:
        (xq, xs), (wq, ws) = quantize_fp8(x, block=(1, K)), quantize_fp8(w, block=(1, K))
        offs = sizes.cumsum(0).to(torch.int32)
        fn = lambda: torch._scaled_grouped_mm(xq, wq.transpose(1, 2), xs.squeeze(-1), ws.squeeze(-1),  # noqa: E731
                                              offs=offs, out_dtype=torch.bfloat16)
    _measure(benchmark, fn, f"grouped_gemm_fp8 {case}", rows, E, K, N)
