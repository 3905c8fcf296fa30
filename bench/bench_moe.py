"""The MoE layer side by side with its peers, one table (plain script, not pytest):

    python bench/bench_moe.py                 # fine + coarse, fp32 + bf16, fwd + fwd+bwd
    python bench/bench_moe.py --quick         # fine fp32 only

Peers in the same process on the same weights, their calls alternated (medians of 3 each on
the CPU: timing.timed_alternating): Hugging Face transformers' ``Qwen3MoeSparseMoeBlock`` with
experts_implementation "eager" (a loop over experts) and "grouped_mm", and
``torch._grouped_mm`` as the expert GEMM behind our routing/permutation. On a CPU with AMX the
bf16 forward has one more row: ours with the experts kept laid out for the tiles
(``MoE.pack_for_inference``), as inference would run; on a Hopper GPU, one with the experts
in FP8 (``MoE.quantize_fp8``: e4m3 with block scales, the FP8 kernel).
GFLOP/s counts the expert GEMMs (6*T*k*H*I forward, 3x that forward+backward); "% sgemm" is
against a 2048^3 fp32 ``torch.mm`` timed in the same alternation as the group's calls (its own
row), so a shared machine's drift moves both alike: measured once at the start, the base of a
ten-minute run was 260 GFLOP/s while the coarse rows ran minutes later on a machine a quarter
slower.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from transformers import Qwen3MoeConfig
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

from timing import timed_alternating

from yilightning.layers import MoE
from yilightning.ops import permute, route, swiglu, unpermute

CASES = {
    "fine": dict(T=2048, H=1024, E=64, k=6, I=256),
    "coarse": dict(T=2048, H=1024, E=8, k=2, I=1408),
}


def hf_block(c: dict, impl: str, dtype: torch.dtype, device: str) -> Qwen3MoeSparseMoeBlock:
    cfg = Qwen3MoeConfig(hidden_size=c["H"], num_experts=c["E"], num_experts_per_tok=c["k"],
                         moe_intermediate_size=c["I"], norm_topk_prob=True, hidden_act="silu")
    cfg._experts_implementation = impl
    block = Qwen3MoeSparseMoeBlock(cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.02)
    return block.to(device=device, dtype=dtype)


class Routed(torch.nn.Module):
    """Our router, routing and permutation around ``experts(x_sorted, group_sizes) -> y_sorted``
    (standalone ops; on the CPU the layer runs the router and routing as these same ops, and the
    permutation, experts and combine inside one fused kernel)."""

    def __init__(self, moe: MoE, experts: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.moe, self.experts = moe, experts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.moe
        x2 = x.reshape(-1, m.hidden_size)
        w, idx, _ = route(m.router(x2), m.top_k)
        xs, sizes, row_map = permute(x2, idx, m.num_experts)
        return unpermute(self.experts(xs, sizes), row_map, w).reshape(x.shape)


def torch_grouped_mm(moe: MoE) -> Routed:
    """Our routing and permutation with ``torch._grouped_mm`` as the expert GEMM."""

    def experts(xs: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        offs = sizes.cumsum(0).to(torch.int32)
        h = torch._grouped_mm(xs, moe.w_gate_up.transpose(1, 2), offs=offs)
        return torch._grouped_mm(swiglu(h), moe.w_down.transpose(1, 2), offs=offs)

    return Routed(moe, experts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fine fp32 only")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    dev = args.device
    reps = 3 if args.quick or dev == "cpu" else 20
    sa, sb = torch.randn(2048, 2048, device=dev), torch.randn(2048, 2048, device=dev)
    sgemm_flops = 2 * 2048**3
    print(f"device: {torch.cuda.get_device_name() if dev == 'cuda' else 'cpu'}, threads {torch.get_num_threads()}\n")
    print("| case | dtype | pass | implementation | ms | GFLOP/s | % sgemm | vs HF eager |")
    print("|---|---|---|---|---|---|---|---|")
    cases = {"fine": CASES["fine"]} if args.quick else CASES
    dtypes = [torch.float32] if args.quick else [torch.float32, torch.bfloat16]
    for name, c in cases.items():
        for dtype in dtypes:
            eager = hf_block(c, "eager", dtype, dev)
            ours = MoE.from_hf(eager)
            impls = {"HF eager": eager, "HF grouped_mm": hf_block(c, "grouped_mm", dtype, dev),
                     "torch._grouped_mm": torch_grouped_mm(ours), "yilightning": ours}
            # inference with the experts kept laid out for AMX tiles (MoE.pack_for_inference),
            # where the CPU has them: a forward-only row
            packed = MoE.from_hf(eager) if dtype == torch.bfloat16 else None
            packed = packed if packed is not None and packed.pack_for_inference() else None
            # inference with the experts in FP8 (MoE.quantize_fp8), where the Hopper kernel runs it
            fp8 = MoE.from_hf(eager) if dtype == torch.bfloat16 else None
            fp8 = fp8 if fp8 is not None and fp8.quantize_fp8() else None
            x = torch.randn(1, c["T"], c["H"], device=dev, dtype=dtype)  # HF blocks want [B, S, H]
            flops = 6 * c["T"] * c["k"] * c["H"] * c["I"]
            for mode in ("fwd", "fwd+bwd"):
                def step(label: str, module: torch.nn.Module, mode: str = mode):
                    def run() -> None:
                        # as a training step's zero_grad(set_to_none=True): the weight gradients
                        # are written, not added to those of the runs before (an add of 96 MB of
                        # bf16 gradients took 9% of the fine layer's forward+backward)
                        module.zero_grad(set_to_none=True)
                        xi = x.detach().requires_grad_(mode == "fwd+bwd")
                        with torch.set_grad_enabled(mode == "fwd+bwd"):
                            out = module(xi)
                            out = out.hidden if isinstance(module, MoE) else out
                            if mode == "fwd+bwd":
                                out.float().square().mean().backward()
                    return run
                run = dict(impls)
                if packed is not None and mode == "fwd":
                    run["yilightning, packed experts"] = packed
                if fp8 is not None and mode == "fwd":
                    run["yilightning, FP8 experts"] = fp8
                *secs, sgemm_sec = timed_alternating(
                    [step(label, module) for label, module in run.items()] + [lambda: sa @ sb], dev, reps)
                peak = sgemm_flops / sgemm_sec / 1e9
                print(f"| {name} | {str(dtype)[6:]} | {mode} | fp32 sgemm 2048^3 (the % sgemm base) | "
                      f"{sgemm_sec * 1e3:.1f} | {peak:.1f} | 100% | |")
                for label, sec in zip(run, secs):
                    gf = flops * (3 if mode == "fwd+bwd" else 1) / sec / 1e9
                    print(f"| {name} | {str(dtype)[6:]} | {mode} | {label} | {sec * 1e3:.1f} | {gf:.1f} | "
                          f"{100 * gf / peak:.0f}% | {secs[0] / sec:.2f}x |", flush=True)
            # The router, routing, permutation and combine as standalone ops, the experts left out
            # (the combine sums x_sorted, the shape and dtype of the experts' output): an upper
            # bound on what the fused layer spends on them (it gathers into cache-sized tiles).
            glue_only = Routed(ours, lambda xs, sizes: xs)
            with torch.no_grad():
                glue, layer = timed_alternating([lambda: glue_only(x), lambda: ours(x)], dev, max(reps, 5))
            print(f"| {name} | {str(dtype)[6:]} | fwd | router+route+permute+unpermute share (standalone ops) | "
                  f"{glue * 1e3:.1f} | | {100 * glue / layer:.0f}% of layer | |", flush=True)


if __name__ == "__main__":
    main()
