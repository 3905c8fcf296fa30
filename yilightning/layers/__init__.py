"""nn.Modules built from the ops."""

from yilightning.layers.attention import (
    HybridAttention, KVLayout, LayerCache, LayerSpec, RMSNorm, hybrid_schedule, kv_cache_bytes, kv_cache_table,
)
from yilightning.layers.linear import Linear
from yilightning.layers.moe import MoE, MoEOutput

__all__ = [
    "HybridAttention", "KVLayout", "LayerCache", "LayerSpec", "Linear", "MoE", "MoEOutput", "RMSNorm", "hybrid_schedule",
    "kv_cache_bytes", "kv_cache_table",
]
