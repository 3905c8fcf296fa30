"""Our ops under ``torch.autocast``: the custom ops are not in autocast's op lists, so without
this a model under autocast hands them a mix of dtypes (an autocast linear's bf16 output beside an
fp32 norm's) and they refuse it. The GEMM-like ops (attention, grouped GEMM, the expert path)
cast their floating inputs to the autocast dtype first, as autocast does for ``matmul`` and
``scaled_dot_product_attention``; outside autocast nothing changes."""

from __future__ import annotations

import torch


def autocast_inputs(device: torch.device, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``tensors`` cast to the autocast dtype of ``device``'s type when autocast is on there
    (their gradients flow back through the casts); unchanged otherwise."""
    if not torch.is_autocast_enabled(device.type):
        return tensors
    dtype = torch.get_autocast_dtype(device.type)
    return tuple(t.to(dtype) for t in tensors)
