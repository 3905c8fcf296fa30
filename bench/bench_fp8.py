"""FP8 quantization: our kernels vs the PyTorch-ops references, on the fine MoE layer's operands.

    pytest bench/bench_fp8.py --benchmark-only

- quantize: the permuted activations (T*k = 12288 rows of H = 1024), one scale per row and 128
  columns, from fp32 and bf16;
- dequantize: the gate/up expert weights (64 experts of 512 x 1024), one scale per 128 x 128
  block (the FP8 product's path on a CPU; a GPU uses the reference).
Both are memory-bound: compare GB/s (bytes moved / time) against the machine's copy bandwidth.
"""

import pytest
import torch
from timing import DEVICE, run_benchmark

from yilightning.ops import dequantize_fp8, dequantize_fp8_reference, quantize_fp8, quantize_fp8_reference


def _measure(benchmark, fn, group, nbytes):
    mean = run_benchmark(benchmark, fn, group)
    if mean is not None:
        benchmark.extra_info["GB/s"] = round(nbytes / mean / 1e9, 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("impl", ["yilightning", "reference"])
def test_quantize_activations(benchmark, impl, dtype):
    x = torch.randn(12288, 1024, device=DEVICE, dtype=dtype)
    fn = quantize_fp8 if impl == "yilightning" else quantize_fp8_reference
    _measure(benchmark, lambda: fn(x), f"quantize_fp8 12288x1024 {dtype}", x.numel() * (x.element_size() + 1))


@pytest.mark.parametrize("impl", ["yilightning", "reference"])
def test_dequantize_weights(benchmark, impl):
    q, scale = quantize_fp8(torch.randn(64, 512, 1024, device=DEVICE), block=(128, 128))
    fn = dequantize_fp8 if impl == "yilightning" else dequantize_fp8_reference
    _measure(benchmark, lambda: fn(q, scale, (128, 128)), "dequantize_fp8 64x512x1024", q.numel() * 5)
