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
