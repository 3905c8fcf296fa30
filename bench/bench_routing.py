"""Routing: our fused kernel vs the PyTorch eager composition (softmax, top-k, gather,
normalise), the report's fine-grained router shape (4096 tokens x 64 experts, top-8) and a
DeepSeek-V3-style grouped sigmoid router (256 experts, 8 groups, top-4 groups, top-8).

    pytest bench/bench_routing.py --benchmark-only
"""

import pytest
import torch
from timing import DEVICE, run_benchmark

from yilightning.ops import route

CASES = {
    "4096x64-top8-softmax": (4096, 64, 8, dict()),
    "4096x256-top8-sigmoid-groups": (4096, 256, 8, dict(score="sigmoid", n_groups=8, topk_groups=4)),
}


def eager(logits, k, score="softmax", n_groups=1, topk_groups=None):
    """What a user writes without us (the reference's math with torch.topk)."""
    probs = logits.float().softmax(-1) if score == "softmax" else logits.float().sigmoid()
    sel = probs
    if topk_groups is not None and topk_groups < n_groups:
        T, E = probs.shape
        gscore = sel.view(T, n_groups, -1).topk(2, dim=-1).values.sum(-1)
        keep = torch.zeros_like(gscore, dtype=torch.bool).scatter_(1, gscore.topk(topk_groups, -1).indices, True)
        sel = sel.masked_fill(~keep.repeat_interleave(E // n_groups, 1), float("-inf"))
    idx = sel.topk(k, dim=-1).indices
    w = probs.gather(1, idx)
    return w / w.sum(-1, keepdim=True), idx, probs


@pytest.mark.parametrize("impl", ["yilightning", "torch-eager"])
@pytest.mark.parametrize("case", list(CASES))
def test_route(benchmark, impl, case):
    T, E, k, kw = CASES[case]
    logits = torch.randn(T, E, device=DEVICE)
    fn = route if impl == "yilightning" else eager
    run_benchmark(benchmark, lambda: fn(logits, k, **kw), f"route {case}")
