"""``YiLightningConfig``: every architectural choice of the model, one documented field each,
and the presets from a 2-core laptop (``tiny``) to the report's scale (``paper``)."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from yilightning.layers import KVLayout


@strict
class YiLightningConfig(PreTrainedConfig):
    """Configuration of a Yi-Lightning causal LM (a transformers config: ``save_pretrained``,
    ``from_pretrained`` and ``AutoConfig`` work with it after ``import yilightning``)."""

    model_type = "yilightning"

    vocab_size: int = 8192  # tokens in the vocabulary (the report's tokenizer: 100,352)
    hidden_size: int = 256  # model width H
    num_hidden_layers: int = 8  # decoder layers
    num_attention_heads: int = 4  # query heads
    num_key_value_heads: int = 2  # key/value heads (GQA)
    head_dim: int | None = None  # per-head width; None: hidden_size // num_attention_heads
    sliding_window: int = 256  # window W of the sliding-window layers (the report: 4096)
    swa_per_full: int = 3  # sliding-window layers per full-attention layer (the report: 3)
    share_full_kv: bool = True  # consecutive full-attention layers share one KV cache (the report)
    rope_theta: float = 10000.0  # RoPE base, raised for long-context extension
    max_position_embeddings: int = 1024  # longest context the model is meant for
    qk_norm: bool = True  # RMS-normalise queries and keys per head (training stability)
    num_experts: int = 16  # routed experts per MoE layer (fine-grained: many and small)
    num_experts_per_tok: int = 4  # experts chosen per token (top-k)
    moe_intermediate_size: int = 128  # width I of one routed expert
    num_shared_experts: int = 1  # always-on experts of the same width
    first_dense_layers: int = 0  # leading layers with a dense FFN instead of MoE
    intermediate_size: int = 1024  # width of the dense FFN of those layers
    router_score: str = "softmax"  # "softmax" or "sigmoid" expert scores
    n_expert_groups: int = 1  # group-limited routing: expert groups
    topk_expert_groups: int | None = None  # ... of which this many may be chosen (None: all)
    norm_topk_prob: bool = True  # renormalise the chosen experts' weights to sum to 1
    routed_scaling_factor: float = 1.0  # multiply the routed experts' weights
    expert_bias: bool = False  # selection-only expert bias for aux-loss-free balancing
    ep_size: int = 1  # expert-parallel groups seen by L_EP
    expert_partitions: int = 1  # partitions per EP group seen by L_PEP
    aux_coef_st: float = 1e-6  # a_ST of the report
    aux_coef_ep: float = 1e-4  # a_EP of the report
    aux_coef_pep: float = 1e-3  # a_PEP of the report
    rms_norm_eps: float = 1e-6  # RMSNorm epsilon
    initializer_range: float = 0.02  # std of the normal init of linear layers and embeddings
    tie_word_embeddings: bool = False  # share the input embedding with the LM head
    recompute_experts: bool = False  # recompute expert activations in backward (saves memory)
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs) -> None:
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"YiLightningConfig: num_attention_heads ({self.num_attention_heads}) must be a "
                             f"multiple of num_key_value_heads ({self.num_key_value_heads})")
        if not 1 <= self.num_experts_per_tok <= self.num_experts:
            raise ValueError(f"YiLightningConfig: num_experts_per_tok must be in [1, num_experts="
                             f"{self.num_experts}], got {self.num_experts_per_tok}")
        if self.router_score not in ("softmax", "sigmoid"):
            raise ValueError(f"YiLightningConfig: router_score must be 'softmax' or 'sigmoid', got {self.router_score!r}")
        super().__post_init__(**kwargs)

    def kv_layout(self) -> KVLayout:
        """The layer schedule's KV-cache layout (see ``yilightning.layers.kv_cache_bytes``)."""
        return KVLayout(self.num_hidden_layers, self.num_key_value_heads, self.head_dim, self.sliding_window,
                        self.swa_per_full, self.share_full_kv)

    @classmethod
    def preset(cls, name: str, **overrides) -> "YiLightningConfig":
        """``tiny`` (about 19M parameters, trains on 2 CPU cores in minutes), ``small`` (about
        280M, one GPU) or ``paper`` (the report's design at an estimated scale; instantiate it on
        the meta device to count parameters). Keyword arguments override fields."""
        if name not in PRESETS:
            raise ValueError(f"YiLightningConfig.preset: unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PRESETS: dict[str, dict] = {
    "tiny": dict(),  # the field defaults
    "small": dict(vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  num_key_value_heads=4, sliding_window=1024, max_position_embeddings=4096, num_experts=32,
                  num_experts_per_tok=4, moe_intermediate_size=256, num_shared_experts=1,
                  tie_word_embeddings=True),
    # The report publishes the design, not the sizes: vocabulary 100,352, 8K pre-training
    # context extended to 64K, window 4096, 3:1 hybrid blocks, paired full-layer KV sharing and
    # fine-grained experts are from the report; the widths, depth and expert counts below are
    # our estimates for a model of its class.
    "paper": dict(vocab_size=100352, hidden_size=4096, num_hidden_layers=64, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=128, sliding_window=4096, max_position_embeddings=65536,
                  rope_theta=1_000_000.0, num_experts=128, num_experts_per_tok=8, moe_intermediate_size=1024,
                  num_shared_experts=2, first_dense_layers=1, intermediate_size=11008, ep_size=8,
                  expert_partitions=2),
}
