"""nn.Modules built from the ops."""

from yilightning.layers.moe import MoE, MoEOutput

__all__ = ["MoE", "MoEOutput"]
