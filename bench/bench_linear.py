"""Linears side by side with ``F.linear`` (plain script), two tables:

    python bench/bench_linear.py

Dense fp32 products: the ``tiny`` preset's projections and LM head over a training batch or a
prefill (2048 or 4096 token rows), forward and the two backward products (dX = dY W reads W
in place, dW = dY^T X reads both transposed), plus a square 2048^3 product; GFLOP/s, medians
of 7 with the operands in cache. On CPUs where ``build_info()["cpu_gemm"]`` is "avx512" these
run our tiled GEMM, elsewhere the same BLAS as ``F.linear``.

Few-row linears (a decode step's projections):
Rows 1, 4 and 8 (batch sizes of generation) against the weights of the ``tiny`` preset (q/o
256 x 256, the LM head 8192 x 256), the ``small`` preset (768 x 768) and one paper-scale
projection (4096 x 4096, bf16), in fp32 and bf16. A decode step touches every weight once, so
each call here reads a weight that is not in cache (the calls cycle through copies larger than
the last-level cache), and GB/s of weight read is set against the machine's read bandwidth
(a ``sum`` over a 256 MiB tensor, measured first).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from timing import DEVICE, timed

from yilightning import build_info
from yilightning.ops import linear

# name: (x shape, weight shape, transposed views): y = x @ weight^T
DENSE = {
    "proj 2048x256 @ 256x256": ((2048, 256), (256, 256), False),
    "proj dW 256x2048 @ 2048x256": ((256, 2048), (256, 2048), True),
    "expert-sized 4096x512 @ 512x1536": ((4096, 512), (1536, 512), False),
    "LM head 2048x256 @ 256x8192": ((2048, 256), (8192, 256), False),
    "LM head dX 2048x8192 @ 8192x256": ((2048, 8192), (256, 8192), True),
    "square 2048^3": ((2048, 2048), (2048, 2048), False),
}
SHAPES = {"tiny q/o 256x256": (256, 256), "tiny LM head 8192x256": (8192, 256), "small 768x768": (768, 768),
          "paper 4096x4096": (4096, 4096)}


def cold_time(fn, weights: list[torch.Tensor], calls: int) -> float:
    """Median over 5 rounds of the mean seconds per call, each call on the next weight copy."""
    for w in weights[:3]:
        fn(w)
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(calls):
            fn(weights[i % len(weights)])
        rounds.append((time.perf_counter() - t0) / calls)
    return sorted(rounds)[2]


def dense_table() -> None:
    print("| product | F.linear ms | yilightning ms | F.linear GFLOP/s | yilightning GFLOP/s | speed-up |")
    print("|---|---|---|---|---|---|")
    for name, (xs, ws, transposed) in DENSE.items():
        # transposed: both operands are views of the transposed tensors, as backward passes them
        x = torch.randn(*reversed(xs), device=DEVICE).t() if transposed else torch.randn(*xs, device=DEVICE)
        w = torch.randn(*reversed(ws), device=DEVICE).t() if transposed else torch.randn(*ws, device=DEVICE)
        flops = 2 * xs[0] * xs[1] * ws[0]
        with torch.no_grad():
            t_ref, t_ours = timed(lambda: F.linear(x, w), DEVICE, 7), timed(lambda: linear(x, w), DEVICE, 7)
        print(f"| {name} | {t_ref * 1e3:.2f} | {t_ours * 1e3:.2f} | {flops / t_ref / 1e9:.0f} | "
              f"{flops / t_ours / 1e9:.0f} | {t_ref / t_ours:.2f}x |", flush=True)
    print()


def main() -> None:
    big = torch.ones(64 * 2**20, device=DEVICE)
    big.sum()
    t0 = time.perf_counter()
    for _ in range(5):
        big.sum()
    peak = 5 * big.nbytes / (time.perf_counter() - t0) / 1e9
    print(f"device: {DEVICE}, threads {torch.get_num_threads()}, fp32 GEMM: {build_info()['cpu_gemm']}, skinny "
          f"kernels: {build_info()['cpu_skinny']}; read bandwidth {peak:.0f} GB/s\n")
    dense_table()
    print("| weight | dtype | rows | F.linear us | yilightning us | GB/s (% of read) | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name, (n, k) in SHAPES.items():
        for dtype in (torch.float32, torch.bfloat16):
            if name.startswith("paper") and dtype == torch.float32:
                continue
            nbytes = n * k * dtype.itemsize
            copies = max(2, -(-96 * 2**20 // nbytes))  # 96 MiB of weights: past a 32 MiB L3
            weights = [torch.randn(n, k, device=DEVICE).to(dtype) for _ in range(copies)]
            calls = max(20, min(2000, int(2e9 / nbytes / 100)))
            for rows in (1, 4, 8):
                x = torch.randn(rows, k, device=DEVICE).to(dtype)
                with torch.no_grad():
                    t_ref = cold_time(lambda w: F.linear(x, w), weights, calls)
                    t_ours = cold_time(lambda w: linear(x, w), weights, calls)
                gbs = nbytes / t_ours / 1e9
                print(f"| {name} | {str(dtype)[6:]} | {rows} | {t_ref * 1e6:.1f} | {t_ours * 1e6:.1f} | "
                      f"{gbs:.0f} ({100 * gbs / peak:.0f}%) | {t_ref / t_ours:.2f}x |", flush=True)
            del weights


if __name__ == "__main__":
    main()
