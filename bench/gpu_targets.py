"""The MoE kernels' GPU targets, timed with CUDA events (run by bench/gpu_check.sh):

    python bench/gpu_targets.py

- routing of 4096 tokens over 64 experts (top-8) under 15 us;
- grouped GEMM in bf16 at 2048 rows per expert (8 experts, K = N = 4096): >= 600 TFLOP/s on an
  H200 and >= 1.2x ``torch._grouped_mm``;
- the FP8 grouped GEMM on the same shape beside ``torch._scaled_grouped_mm`` (row scales), with
  its difference from the dequantized fp32 product.
"""

from __future__ import annotations

import sys

import torch
from timing import timed

from yilightning.ops import grouped_gemm, grouped_gemm_fp8, grouped_gemm_fp8_reference, quantize_fp8, route


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("gpu_targets.py: needs a CUDA GPU")
    dev = "cuda"
    print(f"device: {torch.cuda.get_device_name()}")
    logits = torch.randn(4096, 64, device=dev)
    t = timed(lambda: route(logits, 8), dev, 200)
    print(f"route 4096 tokens x 64 experts, top-8: {t * 1e6:.1f} us (target < 15 us)")

    E, rows, K, N = 8, 2048, 4096, 4096
    flops = 2 * E * rows * K * N
    a = torch.randn(E * rows, K, device=dev, dtype=torch.bfloat16)
    b = torch.randn(E, N, K, device=dev, dtype=torch.bfloat16) / K ** 0.5
    sizes = torch.full((E,), rows, device=dev, dtype=torch.int64)
    offs = sizes.cumsum(0).to(torch.int32)
    ours = timed(lambda: grouped_gemm(a, b, sizes, trans_b=True), dev, 50)
    peer = timed(lambda: torch._grouped_mm(a, b.transpose(1, 2), offs=offs), dev, 50)
    print(f"grouped GEMM bf16, {E} experts x {rows} rows, K = N = {K}: {flops / ours / 1e12:.0f} TFLOP/s "
          f"(target >= 600); torch._grouped_mm {flops / peer / 1e12:.0f} TFLOP/s: ours {peer / ours:.2f}x "
          f"(target >= 1.2x)")

    (xq, xs), (wq, ws) = quantize_fp8(a), quantize_fp8(b, block=(128, 128))
    fp8 = timed(lambda: grouped_gemm_fp8(xq, xs, wq, ws, sizes), dev, 50)
    (rq, rs), (vq, vs) = quantize_fp8(a, block=(1, K)), quantize_fp8(b, block=(1, K))
    scaled = timed(lambda: torch._scaled_grouped_mm(rq, vq.transpose(1, 2), rs.squeeze(-1), vs.squeeze(-1),
                                                    offs=offs, out_dtype=torch.bfloat16), dev, 50)
    out = grouped_gemm_fp8(xq, xs, wq, ws, sizes).float()
    ref = grouped_gemm_fp8_reference(xq, xs, wq, ws, sizes, out_dtype=torch.float32)
    err = ((out - ref).norm() / ref.norm()).item()
    print(f"grouped GEMM FP8 (block scales), same shape: {flops / fp8 / 1e12:.0f} TFLOP/s; "
          f"torch._scaled_grouped_mm (row scales) {flops / scaled / 1e12:.0f} TFLOP/s; "
          f"relative difference from the dequantized fp32 product {err:.1e}")


if __name__ == "__main__":
    main()
