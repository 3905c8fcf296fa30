"""Import Hugging Face MoE causal LMs (Qwen3-MoE, Mixtral) into a ``YiLightningForCausalLM``
with full attention in every layer and no KV sharing, so that it computes the same logits."""

from __future__ import annotations

import torch
from torch import nn

from yilightning.layers import MoE
from yilightning.model import YiLightningConfig, YiLightningForCausalLM

SUPPORTED = ("qwen3_moe", "mixtral")


def _config_from_hf(hf: nn.Module) -> YiLightningConfig:
    c = hf.config
    if c.model_type not in SUPPORTED:
        raise TypeError(f"convert.from_hf: supported model types are {SUPPORTED}, got {c.model_type!r}")
    rope = dict(getattr(c, "rope_parameters", None) or {})
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"convert.from_hf: only default RoPE is supported, got {rope.get('rope_type')!r}")
    if getattr(c, "sliding_window", None) and (c.model_type == "mixtral" or getattr(c, "use_sliding_window", False)):
        raise ValueError("convert.from_hf: models with sliding-window attention are not supported")
    qwen = c.model_type == "qwen3_moe"
    if getattr(c, "attention_bias", False):
        raise ValueError("convert.from_hf: attention projections with biases (attention_bias=True) are not supported")
    if qwen and (getattr(c, "mlp_only_layers", None) or c.decoder_sparse_step != 1):
        raise ValueError("convert.from_hf: Qwen3-MoE models with dense layers (mlp_only_layers / "
                         "decoder_sparse_step) are not supported")
    num_experts = c.num_experts if qwen else c.num_local_experts
    return YiLightningConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, num_key_value_heads=c.num_key_value_heads,
        head_dim=getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads,
        swa_per_full=0, share_full_kv=False, sliding_window=c.max_position_embeddings,
        rope_theta=float(rope.get("rope_theta", 10000.0)), max_position_embeddings=c.max_position_embeddings,
        qk_norm=qwen, num_experts=num_experts, num_experts_per_tok=c.num_experts_per_tok,
        moe_intermediate_size=c.moe_intermediate_size if qwen else c.intermediate_size, num_shared_experts=0,
        norm_topk_prob=c.norm_topk_prob if qwen else True, rms_norm_eps=c.rms_norm_eps,
        tie_word_embeddings=c.tie_word_embeddings, pad_token_id=c.pad_token_id, bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id,
    )


@torch.no_grad()
def from_hf(hf: nn.Module) -> YiLightningForCausalLM:
    """A YiLightning model with the weights of a transformers ``Qwen3MoeForCausalLM`` or
    ``MixtralForCausalLM`` (transformers 5 layout, fused experts): same logits, in the HF
    model's dtype and device."""
    config = _config_from_hf(hf)
    src = hf.model
    dtype, device = src.embed_tokens.weight.dtype, src.embed_tokens.weight.device
    with torch.device(device):
        model = YiLightningForCausalLM(config).to(dtype)
    model.embed_tokens.weight.copy_(src.embed_tokens.weight)
    model.norm.weight.copy_(src.norm.weight)
    if not config.tie_word_embeddings:
        model.lm_head.weight.copy_(hf.lm_head.weight)
    for ours, theirs in zip(model.layers, src.layers):
        ours.attn_norm.weight.copy_(theirs.input_layernorm.weight)
        ours.ffn_norm.weight.copy_(theirs.post_attention_layernorm.weight)
        for name in ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm"):
            target = getattr(ours.attn, name)
            if target is not None:
                target.load_state_dict(getattr(theirs.self_attn, name).state_dict())
        moe: MoE = ours.mlp
        moe.router.weight.copy_(theirs.mlp.gate.weight)
        moe.w_gate_up.copy_(theirs.mlp.experts.gate_up_proj)
        moe.w_down.copy_(theirs.mlp.experts.down_proj)
    return model.eval()
