"""``Linear``: ``nn.Linear`` whose forward is ``ops.linear`` (the CPU's few-row kernels at
generation, ``F.linear`` everywhere else); same parameters, state-dict keys and init."""

from __future__ import annotations

import torch
from torch import nn

from yilightning.ops import linear


class Linear(nn.Linear):
    """Drop-in ``nn.Linear`` for the model's projections.

    >>> layer = Linear(16, 4, bias=False)
    >>> layer(torch.randn(1, 16)).shape
    torch.Size([1, 4])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def is_plain(module: nn.Module | None) -> bool:
    """True for a ``Linear`` (not a subclass) without forward hooks: its product may be fused
    with others' (stacked q/k/v, the LM head with its loss) without skipping anything."""
    return type(module) is Linear and not module._forward_hooks and not module._forward_pre_hooks
