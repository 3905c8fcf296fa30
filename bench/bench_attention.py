"""Attention side by side with PyTorch SDPA, one table (plain script, not pytest):

    python bench/bench_attention.py            # S=4096, GQA 16/4, D=64, fp32 on CPU (bf16 on GPU)

Rows: causal prefill forward and forward+backward; sliding-window prefill (W=512) against
SDPA causal and SDPA with the window as a boolean mask; decode of one token over a 32K cache
(ours reads the cache in place; SDPA gets the same contiguous cache). TFLOP/s counts the
useful work (the causal or windowed half of the score matrix).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from timing import timed

from yilightning.ops import attention, decode_attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--cache", type=int, default=32768)
    args = parser.parse_args()
    dev, S, W = args.device, args.seq, args.window
    Hq, Hk, D = 16, 4, 64
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    reps = 20 if dev == "cuda" else 5
    q, k, v = (torch.randn(S, h, D, device=dev, dtype=dtype) for h in (Hq, Hk, Hk))
    cu = torch.tensor([0, S], dtype=torch.int32, device=dev)
    qs, ks, vs = (t.transpose(0, 1)[None] for t in (q, k, v))  # (1, H, S, D) for SDPA
    pos = torch.arange(S, device=dev)
    band = (pos[None, :] <= pos[:, None]) & (pos[None, :] > pos[:, None] - W)
    causal_flops = 4 * Hq * D * S * (S + 1) / 2
    window_flops = 4 * Hq * D * sum(min(i + 1, W) for i in range(S))

    def fwd_bwd(fn):
        def run():
            ins = [t.detach().requires_grad_() for t in (q, k, v)]
            fn(*ins).float().sum().backward()
        return run

    def sdpa(q_, k_, v_, **kw):
        return F.scaled_dot_product_attention(q_.transpose(0, 1)[None], k_.transpose(0, 1)[None],
                                              v_.transpose(0, 1)[None], enable_gqa=True, **kw)

    rows = [
        ("causal fwd", "SDPA causal", lambda: sdpa(q, k, v, is_causal=True), causal_flops),
        ("causal fwd", "yilightning", lambda: attention(q, k, v, cu), causal_flops),
        ("causal fwd+bwd", "SDPA causal", fwd_bwd(lambda a, b, c: sdpa(a, b, c, is_causal=True)), 3.5 * causal_flops),
        ("causal fwd+bwd", "yilightning", fwd_bwd(lambda a, b, c: attention(a, b, c, cu)), 3.5 * causal_flops),
        (f"window {W} fwd", "SDPA causal (no window)", lambda: sdpa(q, k, v, is_causal=True), window_flops),
        (f"window {W} fwd", "SDPA boolean mask", lambda: sdpa(q, k, v, attn_mask=band), window_flops),
        (f"window {W} fwd", "yilightning", lambda: attention(q, k, v, cu, window=W), window_flops),
        (f"window {W} fwd+bwd", "SDPA boolean mask", fwd_bwd(lambda a, b, c: sdpa(a, b, c, attn_mask=band)),
         3.5 * window_flops),
        (f"window {W} fwd+bwd", "yilightning", fwd_bwd(lambda a, b, c: attention(a, b, c, cu, window=W)),
         3.5 * window_flops),
    ]
    L = args.cache
    kc, vc = (torch.randn(1, L, Hk, D, device=dev, dtype=dtype) for _ in range(2))
    qd = torch.randn(1, Hq, D, device=dev, dtype=dtype)
    lens = torch.tensor([L], device=dev)
    decode_bytes = 2 * L * Hk * D * kc.element_size()
    rows += [
        (f"decode, {L // 1024}K cache", "SDPA", lambda: F.scaled_dot_product_attention(
            qd[:, :, None], kc.transpose(1, 2), vc.transpose(1, 2), enable_gqa=True), decode_bytes),
        (f"decode, {L // 1024}K cache", "yilightning", lambda: decode_attention(qd, kc, vc, lens), decode_bytes),
    ]
    name = torch.cuda.get_device_name() if dev == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; S={S}, heads {Hq}/{Hk}, D={D}, {str(dtype)[6:]}\n")
    print("| case | implementation | ms | TFLOP/s (decode: GB/s) | speed-up vs first row of the case |")
    print("|---|---|---|---|---|")
    base = {}
    for case, label, fn, work in rows:
        sec = timed(fn, dev, reps)
        base.setdefault(case, sec)
        rate = f"{work / sec / 1e9:.1f} GB/s" if case.startswith("decode") else f"{work / sec / 1e12:.3f}"
        print(f"| {case} | {label} | {sec * 1e3:.2f} | {rate} | {base[case] / sec:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
