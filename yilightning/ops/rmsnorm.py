"""RMS normalisation over the last dimension, as Llama/Qwen compute it:
``weight * (x * rsqrt(mean(x^2) + eps)).to(x.dtype)`` with the statistics in float32.

The output dtype is the promotion of ``x``'s and ``weight``'s dtypes, exactly as that PyTorch
expression gives it. One kernel per call instead of the expression's eight ops, and one for
the gradient (``dx = r * (dn - n * mean(dn * n))`` with ``dn = dy * weight``, ``r`` the row's
rsqrt, ``n = x * r``; the weight gradient summed in a fixed order: deterministic).
"""

from __future__ import annotations

import torch

from yilightning import _ext

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def _check(x: torch.Tensor, weight: torch.Tensor, eps: float) -> None:
    if x.dtype not in _FLOATS or weight.dtype not in _FLOATS:
        raise TypeError(f"rms_norm: x and weight must be float32, bfloat16 or float16, got {x.dtype} and "
                        f"{weight.dtype}")
    if x.dim() == 0 or weight.shape != (x.shape[-1],):
        raise ValueError(f"rms_norm: weight must be [C] for x [..., C], got {tuple(weight.shape)} for "
                         f"{tuple(x.shape)}")
    if weight.device != x.device:
        raise ValueError(f"rms_norm: weight must be on {x.device}, got {weight.device}")
    if eps < 0:
        raise ValueError(f"rms_norm: eps must be >= 0, got {eps}")


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Pure-PyTorch ``rms_norm``: the ground truth and the fallback."""
    _check(x, weight, eps)
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``weight * (x * rsqrt(mean(x^2, -1) + eps)).to(x.dtype)`` for ``x [..., C]``, ``weight [C]``.

    Differentiable in both, traceable by ``torch.compile(fullgraph=True)``.

    >>> import torch, yilightning
    >>> y = yilightning.ops.rms_norm(torch.randn(3, 8), torch.ones(8))
    >>> round(float(y.pow(2).mean(-1)[0]), 3)
    1.0
    """
    _check(x, weight, eps)
    if _ext.has_kernel("rms_norm", x.device.type):
        return _ext.call(torch.ops.yilightning.rms_norm, x, weight, float(eps))
    return rms_norm_reference(x, weight, eps)


def example_inputs(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Odd-sized inputs for the self-check."""
    return torch.randn(5, 3, 97, device=device, dtype=dtype), torch.randn(97, device=device, dtype=dtype)


if _ext.module is not None:

    @torch.library.register_fake("yilightning::rms_norm")
    def _rms_norm_fake(x, weight, eps):  # noqa: ANN001
        return x.new_empty(x.shape, dtype=torch.promote_types(x.dtype, weight.dtype))

    def _setup(ctx, inputs, output) -> None:  # noqa: ANN001
        x, weight, eps = inputs
        ctx.save_for_backward(x, weight)
        ctx.eps = eps

    def _backward(ctx, grad):  # noqa: ANN001, ANN202
        x, weight = ctx.saved_tensors
        dx, dw = torch.ops.yilightning.rms_norm_backward(grad, x, weight, ctx.eps)
        return dx, dw, None

    @torch.library.register_fake("yilightning::rms_norm_backward")
    def _rms_norm_backward_fake(grad, x, weight, eps):  # noqa: ANN001
        return torch.empty_like(x, memory_format=torch.contiguous_format), torch.empty_like(weight)

    torch.library.register_autograd("yilightning::rms_norm", _backward, setup_context=_setup)
