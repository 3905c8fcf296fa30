"""SwiGLU activation: ``x = [gate | up]`` along the last dim -> ``silu(gate) * up``.

The expert FFN of the MoE layer computes ``swiglu(x @ W_gate_up)``. Inputs may be float32,
bfloat16 or float16; the math is float32 and the output has the input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from yilightning import _ext


def _check(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"swiglu: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"swiglu: x must be float32, bfloat16 or float16, got {x.dtype}; cast it with x.float()")
    if x.dim() == 0:
        raise ValueError("swiglu: x must have at least one dimension [..., 2*I], got a scalar")
    if x.shape[-1] % 2 != 0:
        raise ValueError(
            f"swiglu: x.shape[-1] must be even (gate and up halves of size I), got {x.shape[-1]}"
        )


def swiglu_reference(x: torch.Tensor) -> torch.Tensor:
    """Pure-PyTorch SwiGLU, fp32 math: the ground truth in tests and the fallback path."""
    _check(x)
    gate, up = x.float().chunk(2, dim=-1)
    return (F.silu(gate) * up).to(x.dtype)


def swiglu(x: torch.Tensor) -> torch.Tensor:
    """``silu(x[..., :I]) * x[..., I:]`` for ``x`` of shape ``[..., 2*I]``, returning ``[..., I]``.

    Differentiable (first derivatives), traceable by ``torch.compile(fullgraph=True)``, and run by
    the compiled CPU/CUDA kernel when there is one for ``x.device`` (else the reference).

    >>> import torch, yilightning
    >>> yilightning.ops.swiglu(torch.randn(4, 16)).shape
    torch.Size([4, 8])
    """
    _check(x)
    if _ext.has_kernel("swiglu", x.device.type):
        return _ext.call(torch.ops.yilightning.swiglu, x)
    return swiglu_reference(x)


def example_inputs(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Odd-sized inputs for the self-check and the tests."""
    return (torch.randn(7, 3, 2 * 97, device=device, dtype=dtype),)


if _ext.module is not None:

    @torch.library.register_fake("yilightning::swiglu")
    def _swiglu_fake(x: torch.Tensor) -> torch.Tensor:
        _check(x)
        return x.new_empty((*x.shape[:-1], x.shape[-1] // 2))

    @torch.library.register_fake("yilightning::swiglu_backward")
    def _swiglu_backward_fake(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001 (torch.library signature)
        (x,) = inputs
        ctx.save_for_backward(x)

    def _backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        (x,) = ctx.saved_tensors
        return torch.ops.yilightning.swiglu_backward(grad, x)

    torch.library.register_autograd("yilightning::swiglu", _backward, setup_context=_setup_context)
