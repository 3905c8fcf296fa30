"""The model side by side with transformers (plain script, not pytest):

    python bench/bench_model.py

Our ``tiny`` preset (hybrid attention, paired KV sharing, fine-grained MoE) beside a
transformers ``Qwen3MoeForCausalLM`` of the same widths, depth, experts and vocabulary (full
attention everywhere), both randomly initialised, same process, their calls alternated (medians
of 5 each: timing.timed_alternating): generation tokens/s at batch 1 and 8 (greedy, a 32-token
prompt, 64 new tokens), prefill tokens/s (8 x 512 tokens), training
tokens/s (8 x 256 tokens; forward with the LM loss, backward, fused AdamW step as
`yilightning pretrain` runs them: the same loop for both;
again under bf16 autocast where bf16 runs natively), and KV-cache bytes at 8K context.
"""

from __future__ import annotations

import torch
from timing import timed_alternating
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

from yilightning import YiLightningConfig, YiLightningForCausalLM, build_info


def main() -> None:
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    cfg = YiLightningConfig.preset("tiny", max_position_embeddings=8192)
    ours = YiLightningForCausalLM(cfg).to(dev).eval()
    hf_cfg = Qwen3MoeConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                            num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
                            num_key_value_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim,
                            num_experts=cfg.num_experts + cfg.num_shared_experts,  # shared expert as one more
                            num_experts_per_tok=cfg.num_experts_per_tok + cfg.num_shared_experts,
                            moe_intermediate_size=cfg.moe_intermediate_size, norm_topk_prob=True,
                            max_position_embeddings=8192)
    hf_cfg._attn_implementation = "sdpa"
    hf = Qwen3MoeForCausalLM(hf_cfg).to(dev).eval()
    print(f"device: {dev}, threads {torch.get_num_threads()}; ours {ours.parameter_counts()['total'] / 1e6:.1f}M "
          f"parameters, transformers {sum(p.numel() for p in hf.parameters()) / 1e6:.1f}M\n")
    print("| measure | transformers Qwen3-MoE | yilightning | ratio |")
    print("|---|---|---|---|")
    new = 64
    for batch in (1, 8):
        prompts = torch.randint(0, cfg.vocab_size, (batch, 32), device=dev)
        with torch.no_grad():
            t_hf, t_ours = timed_alternating(
                [lambda: hf.generate(prompts, max_new_tokens=new, min_new_tokens=new, do_sample=False),
                 lambda: ours.generate(prompts.tolist(), new)], dev, 5)
        print(f"| generation tokens/s, batch {batch} | {batch * new / t_hf:.0f} | {batch * new / t_ours:.0f} | "
              f"{t_hf / t_ours:.2f}x |", flush=True)
    ids = torch.randint(0, cfg.vocab_size, (8, 512), device=dev)
    with torch.no_grad():
        t_hf, t_ours = timed_alternating([lambda: hf(ids), lambda: ours(ids)], dev, 5)
    print(f"| prefill tokens/s, 8 x 512 | {ids.numel() / t_hf:.0f} | {ids.numel() / t_ours:.0f} | "
          f"{t_hf / t_ours:.2f}x |")
    ids = torch.randint(0, cfg.vocab_size, (8, 256), device=dev)

    def train_step(model: torch.nn.Module, autocast: bool):
        model.train()
        # fused, as `yilightning pretrain` runs it (one kernel over all parameters)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev in ("cpu", "cuda"))

        def step() -> None:
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast):
                loss = model(ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    # bf16 autocast where bf16 runs natively (a GPU, or a CPU with AVX512-BF16; elsewhere it is emulated)
    for autocast in (False, True) if dev == "cuda" or build_info()["cpu_native_bf16"] else (False,):
        t_hf, t_ours = timed_alternating([train_step(hf, autocast), train_step(ours, autocast)], dev, 5)
        what = "AdamW, bf16 autocast" if autocast else "AdamW"
        print(f"| training tokens/s, 8 x 256 (forward, backward, {what}) | {ids.numel() / t_hf:.0f} | "
              f"{ids.numel() / t_ours:.0f} | {t_hf / t_ours:.2f}x |", flush=True)
    # transformers' cache holds K and V of every token in every layer
    hf_bytes = 2 * cfg.num_hidden_layers * 8192 * cfg.num_key_value_heads * cfg.head_dim * 4
    ours_bytes = ours.new_cache(1, 8192, torch.float32).nbytes()
    print(f"| KV cache at 8K context, fp32 | {hf_bytes / 2**20:.1f} MiB | {ours_bytes / 2**20:.1f} MiB | "
          f"{100 * ours_bytes / hf_bytes:.1f}% |")


if __name__ == "__main__":
    main()
