"""Causal attention over packed variable-length sequences, with an optional sliding window and
grouped-query attention: the attention of the report's hybrid layers.

Sequences are packed along the token axis and delimited by ``cu_seqlens`` (int32, ``[B + 1]``,
cumulative lengths starting at 0). A token never attends across a sequence boundary
(block-causal: also the report's SFT packing mask). With ``window=W`` a query at position t
sees keys t-W+1 .. t, itself included (flash-attention's ``window_size=(W-1, 0)``).
"""

from __future__ import annotations

import math

import torch

from yilightning import _ext

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, window: int | None) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 3:
            raise ValueError(f"attention: {name} must be a [N, H, D] tensor, got {getattr(t, 'shape', type(t))}")
    if q.dtype not in _FLOATS or k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"attention: q, k, v must share one of float32/bfloat16/float16, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.shape != v.shape or k.shape[0] != q.shape[0] or k.shape[2] != q.shape[2]:
        raise ValueError(f"attention: k and v must be [N={q.shape[0]}, Hk, D={q.shape[2]}], got {tuple(k.shape)} "
                         f"and {tuple(v.shape)}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"attention: query heads ({q.shape[1]}) must be a multiple of key/value heads ({k.shape[1]})")
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dtype != torch.int32 or cu_seqlens.dim() != 1 \
            or cu_seqlens.numel() < 2:
        raise ValueError("attention: cu_seqlens must be an int32 [B + 1] tensor of cumulative lengths starting at 0")
    if window is not None and window < 1:
        raise ValueError(f"attention: window must be >= 1 or None, got {window}")
    if not torch.compiler.is_compiling():
        cu = cu_seqlens.tolist()
        if cu[0] != 0 or cu[-1] != q.shape[0] or any(b < a for a, b in zip(cu, cu[1:])):
            raise ValueError(f"attention: cu_seqlens must start at 0, never decrease and end at N={q.shape[0]}, "
                             f"got {cu[:8]}{'...' if len(cu) > 8 else ''}")


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, *,
                        window: int | None = None, scale: float | None = None) -> torch.Tensor:
    """Pure PyTorch, fp32, an explicit mask per sequence: ground truth and fallback."""
    _check(q, k, v, cu_seqlens, window)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    group = q.shape[1] // k.shape[1]
    outs = []
    cu = cu_seqlens.tolist()
    for s0, s1 in zip(cu, cu[1:]):
        qs = q[s0:s1].float().transpose(0, 1)  # (Hq, L, D)
        ks = k[s0:s1].float().transpose(0, 1).repeat_interleave(group, 0)
        vs = v[s0:s1].float().transpose(0, 1).repeat_interleave(group, 0)
        pos = torch.arange(s1 - s0, device=q.device)
        visible = pos[None, :] <= pos[:, None]  # (L, L): key <= query
        if window is not None:
            visible &= pos[None, :] > pos[:, None] - window
        scores = (qs @ ks.transpose(1, 2)) * scale
        probs = scores.masked_fill(~visible, float("-inf")).softmax(-1)
        outs.append((probs @ vs).transpose(0, 1))
    return torch.cat(outs).to(q.dtype) if outs else q.new_empty(q.shape)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, *,
              window: int | None = None, scale: float | None = None) -> torch.Tensor:
    """Causal attention over packed sequences: ``out [N, Hq, D]``.

    Args:
        q: ``[N, Hq, D]``; k, v: ``[N, Hk, D]`` with ``Hq % Hk == 0`` (GQA).
        cu_seqlens: int32 ``[B + 1]`` cumulative sequence lengths, ``0 .. N``.
        window: sliding window W (a query sees the W most recent keys, itself included), or
            None for full causal attention.
        scale: softmax scale, default ``1/sqrt(D)``.

    Tiled online softmax forward and backward (memory O(N); a window layer does O(N*W) work).
    Differentiable in q, k and v.

    >>> q = torch.randn(10, 4, 16); kv = torch.randn(10, 2, 16)
    >>> attention(q, kv, kv, torch.tensor([0, 3, 10], dtype=torch.int32), window=4).shape
    torch.Size([10, 4, 16])
    """
    _check(q, k, v, cu_seqlens, window)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    if _ext.has_kernel("attention", q.device.type):
        return torch.ops.yilightning.attention(q, k, v, cu_seqlens, window or 0, float(scale))[0]
    return attention_reference(q, k, v, cu_seqlens, window=window, scale=scale)


if _ext.module is not None:

    @torch.library.register_fake("yilightning::attention")
    def _attention_fake(q, k, v, cu_seqlens, window, scale):  # noqa: ANN001
        return torch.empty_like(q), q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32)

    @torch.library.register_fake("yilightning::attention_backward")
    def _attention_backward_fake(grad, q, k, v, out, lse, cu_seqlens, window, scale):  # noqa: ANN001
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    def _setup(ctx, inputs, output) -> None:  # noqa: ANN001
        q, k, v, cu_seqlens, window, scale = inputs
        out, lse = output
        ctx.save_for_backward(q, k, v, out, lse, cu_seqlens)
        ctx.window, ctx.scale = window, scale
        ctx.mark_non_differentiable(lse)

    def _backward(ctx, grad, _grad_lse):  # noqa: ANN001, ANN202
        q, k, v, out, lse, cu_seqlens = ctx.saved_tensors
        dq, dk, dv = torch.ops.yilightning.attention_backward(grad, q, k, v, out, lse, cu_seqlens, ctx.window,
                                                              ctx.scale)
        return dq, dk, dv, None, None, None

    torch.library.register_autograd("yilightning::attention", _backward, setup_context=_setup)
