"""Linear layers: ``x @ weight.T + bias``, as ``torch.nn.functional.linear``.

On the CPU the op runs our own kernels where they beat the BLAS that torch ships:

- at most ``SKINNY_ROWS`` rows (a decode step multiplies one to eight token rows by every
  weight of the model) run the skinny kernels (AVX-512 or AVX2, fp32 accumulation for fp32 and
  bf16): torch's MKL reads a 256 x 256 fp32 weight at 12-17 GB/s for one row on a Zen 5 core,
  these 30-45 GB/s, 2-5x faster;
- more fp32 rows run our tiled AVX-512 GEMM where ``build_info()["cpu_gemm"]`` is "avx512"
  (CPUs with AVX-512 that are not Intel ones; csrc/common/cpu_gemm.h): up to 1.4-1.7x MKL's
  sgemm on the model's tall products on a 2-core Zen 5; backward's two products run it too;
- outputs of 32 MiB or more (the LM head over a prefill or a training batch) are written into
  memory advised to use huge pages, kept for reuse once freed (csrc/common/cpu_alloc.h): 64
  page faults instead of 32K for a fresh 128 MiB output, none for a reused one.

Every other case - other devices, no compiled extension, float64, under ``torch.autocast`` -
is ``F.linear`` itself, so GPUs run exactly what PyTorch runs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from yilightning import _ext

SKINNY_ROWS = 8  # csrc/common/cpu_skinny.h: kSkinnyRows
HUGE_BYTES = 32 << 20  # bf16/fp16 outputs this large take our op for its cached huge-page memory
_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    if weight.dim() != 2 or x.dim() == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x must be [..., K] and weight [N, K], got {tuple(x.shape)} and "
                         f"{tuple(weight.shape)}")
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != x.dtype):
        raise TypeError(f"linear: x, weight and bias must share a dtype, got {x.dtype}, {weight.dtype} and "
                        f"{None if bias is None else bias.dtype}; cast them (or run under torch.autocast)")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must be [N] = [{weight.shape[0]}], got {tuple(bias.shape)}")


def linear_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` in fp32 math, cast back to ``x``'s dtype: the ground truth in tests."""
    _check(x, weight, bias)
    return F.linear(x.float(), weight.float(), None if bias is None else bias.float()).to(x.dtype)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x [..., K] @ weight [N, K]^T + bias [N]`` -> ``[..., N]``, differentiable in all three.

    >>> import torch, yilightning
    >>> yilightning.ops.linear(torch.randn(1, 16), torch.randn(4, 16)).shape
    torch.Size([1, 4])
    """
    if torch.is_autocast_enabled(x.device.type):  # autocast casts F.linear's weights once a region
        return F.linear(x, weight, bias)
    _check(x, weight, bias)
    if x.device.type == "cpu" and _ext.has_kernel("linear", "cpu"):
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        few = rows <= SKINNY_ROWS and x.dtype == torch.bfloat16
        if x.dtype == torch.float32 or few or (
                rows * weight.shape[0] * x.element_size() >= HUGE_BYTES and x.dtype in _KERNEL_DTYPES):
            return _ext.call(torch.ops.yilightning.linear, x, weight, bias)
    return F.linear(x, weight, bias)


def example_inputs(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Odd-sized few-row inputs (the skinny path) for the self-check."""
    x = torch.randn(2, 3, 97, device=device)
    w = torch.randn(29, 97, device=device) / 97**0.5
    return x.to(dtype), w.to(dtype), torch.randn(29, device=device).to(dtype)


if _ext.module is not None:

    @torch.library.register_fake("yilightning::linear")
    def _linear_fake(x, weight, bias):  # noqa: ANN001
        return x.new_empty((*x.shape[:-1], weight.shape[0]))

    def _setup(ctx, inputs, output) -> None:  # noqa: ANN001
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None

    def _backward(ctx, grad):  # noqa: ANN001, ANN202
        x, weight = ctx.saved_tensors
        rows = math.prod(grad.shape[:-1])  # explicit: reshape(-1, 0) is ambiguous for K or N = 0
        g2 = grad.reshape(rows, grad.shape[-1])
        # Both products through the op again (its CPU GEMM reads the transposed views in place).
        dx = linear(grad, weight.t()) if ctx.needs_input_grad[0] else None
        dw = linear(g2.t(), x.reshape(rows, x.shape[-1]).t()) if ctx.needs_input_grad[1] else None
        db = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db

    torch.library.register_autograd("yilightning::linear", _backward, setup_context=_setup)
