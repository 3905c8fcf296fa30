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
from yilightning.ops._autocast import autocast_inputs

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
    if k.shape[1] < 1 or q.shape[1] < 1 or q.shape[1] % k.shape[1] or q.shape[2] < 1:
        raise ValueError(f"attention: query heads ({q.shape[1]}) must be a positive multiple of key/value heads "
                         f"({k.shape[1]}) and the head dim ({q.shape[2]}) >= 1")
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dtype != torch.int32 or cu_seqlens.dim() != 1 \
            or cu_seqlens.numel() < 2:
        raise ValueError("attention: cu_seqlens must be an int32 [B + 1] tensor of cumulative lengths starting at 0")
    if window is not None and window < 1:
        raise ValueError(f"attention: window must be >= 1 or None, got {window}")
    check_cu_seqlens(cu_seqlens, q.shape[0], "attention")


def check_cu_seqlens(cu_seqlens: torch.Tensor, n: int, op: str) -> None:
    """Raises unless ``cu_seqlens`` (1-D) starts at 0, never decreases and ends at ``n`` (values
    read in eager mode only: under torch.compile they would break the graph)."""
    if not torch.compiler.is_compiling():
        cu = cu_seqlens.tolist()
        if cu[0] != 0 or cu[-1] != n or any(b < a for a, b in zip(cu, cu[1:])):
            raise ValueError(f"{op}: cu_seqlens must start at 0, never decrease and end at N={n}, "
                             f"got {cu[:8]}{'...' if len(cu) > 8 else ''}")


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, *,
                        window: int | None = None, scale: float | None = None) -> torch.Tensor:
    """Pure PyTorch, fp32, one explicit [N, N] mask: the ground truth in tests and the fallback
    (O(N^2) memory: fine for tests and short inputs; the kernels are O(N))."""
    _check(q, k, v, cu_seqlens, window)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    group = q.shape[1] // k.shape[1]
    pos = torch.arange(q.shape[0], device=q.device)
    seq = torch.searchsorted(cu_seqlens[1:].long(), pos, right=True)  # sequence of each token
    visible = (seq[:, None] == seq[None, :]) & (pos[None, :] <= pos[:, None])  # (N, N)
    if window is not None:
        visible &= pos[None, :] > pos[:, None] - window
    qs = q.float().transpose(0, 1)  # (Hq, N, D)
    ks = k.float().transpose(0, 1).repeat_interleave(group, 0)
    vs = v.float().transpose(0, 1).repeat_interleave(group, 0)
    probs = ((qs @ ks.transpose(1, 2)) * scale).masked_fill(~visible, float("-inf")).softmax(-1)
    return (probs @ vs).transpose(0, 1).to(q.dtype)


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
    q, k, v = autocast_inputs(q.device, q, k, v)
    _check(q, k, v, cu_seqlens, window)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    if _ext.has_kernel("attention", q.device.type):
        return _ext.call(torch.ops.yilightning.attention, q, k, v, cu_seqlens, window or 0, float(scale))[0]
    return attention_reference(q, k, v, cu_seqlens, window=window, scale=scale)


def example_inputs(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """q [45, 4, 64], k and v [45, 2, 64] for the self-check (two packed sequences, GQA 2)."""
    return tuple(torch.randn(45, h, 64, device=device, dtype=dtype) for h in (4, 2, 2))


def check_fn(fn):  # noqa: ANN001, ANN201
    """``fn`` (attention or its reference) on sequences of 7 and 38 tokens, window 16."""

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return fn(q, k, v, torch.tensor([0, 7, 45], dtype=torch.int32, device=q.device), window=16)

    return run


def _check_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_seqlens: torch.Tensor,
                  window: int | None) -> None:
    if q.dim() != 3 or q.dtype not in _FLOATS:
        raise ValueError(f"decode_attention: q must be a float [B, Hq, D] tensor, got {q.dtype} {tuple(q.shape)}")
    if k_cache.dim() != 4 or k_cache.shape != v_cache.shape or k_cache.dtype != q.dtype or v_cache.dtype != q.dtype:
        raise ValueError(f"decode_attention: k_cache and v_cache must be [B, S, Hk, D] of q's dtype ({q.dtype}), "
                         f"got {k_cache.dtype} {tuple(k_cache.shape)} and {v_cache.dtype} {tuple(v_cache.shape)}")
    B, S, Hk, D = k_cache.shape
    if B != q.shape[0] or D != q.shape[2] or Hk < 1 or q.shape[1] < 1 or q.shape[1] % Hk or D < 1 or S < 1:
        raise ValueError(f"decode_attention: caches {tuple(k_cache.shape)} do not fit q {tuple(q.shape)} "
                         "([B, S, Hk, D] with S >= 1, Hq a positive multiple of Hk and D >= 1)")
    if cache_seqlens.shape != (B,) or cache_seqlens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"decode_attention: cache_seqlens must be int32/int64 [B={B}], got {cache_seqlens.dtype} "
                         f"{tuple(cache_seqlens.shape)}")
    if window is not None and window < 1:
        raise ValueError(f"decode_attention: window must be >= 1 or None, got {window}")
    if not cache_seqlens.is_cuda and not torch.compiler.is_compiling() and B:
        lens = cache_seqlens.tolist()
        ring = window is not None and window == S
        if min(lens) < 1 or (max(lens) > S and not ring):
            raise ValueError(f"decode_attention: cache_seqlens must be in [1, S={S}] (only a ring buffer of exactly "
                             f"`window` slots may hold more), got {lens[:8]}")


def _decode_math(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_seqlens: torch.Tensor,
                 window: int | None, scale: float) -> torch.Tensor:
    """decode_attention in fp32 PyTorch over every slot of the caches, the unseen ones masked:
    no host sync, so it traces (the compiled op's backward recomputes through it)."""
    B, Hq, D = q.shape
    S, Hk = k_cache.shape[1:3]
    slot = torch.arange(S, device=q.device)
    length = cache_seqlens.to(q.device).long().unsqueeze(1)  # (B, 1)
    first = (length - window).clamp(min=0) if window else torch.zeros_like(length)
    # a wrapped ring buffer (more tokens than slots) holds the last `window` tokens in every slot
    seen = (length > S) | ((slot >= first) & (slot < length))  # (B, S)
    qg = q.float().view(B, Hk, Hq // Hk, D)  # query heads grouped by the kv head they read
    scores = torch.einsum("bkgd,bskd->bkgs", qg, k_cache.float()) * scale
    probs = scores.masked_fill(~seen.view(B, 1, 1, S), float("-inf")).softmax(-1)
    return torch.einsum("bkgs,bskd->bkgd", probs, v_cache.float()).reshape(B, Hq, D).to(q.dtype)


def decode_attention_reference(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                               cache_seqlens: torch.Tensor, *, window: int | None = None,
                               scale: float | None = None) -> torch.Tensor:
    """Pure-PyTorch ``decode_attention`` (one masked softmax over the cache slots, fp32)."""
    _check_decode(q, k_cache, v_cache, cache_seqlens, window)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    if q.shape[0] and not torch.compiler.is_compiling():  # only the slots up to the longest sequence
        top = min(k_cache.shape[1], int(cache_seqlens.max()))  # (all of them once a ring wrapped)
        k_cache, v_cache = k_cache[:, :top], v_cache[:, :top]
    return _decode_math(q, k_cache, v_cache, cache_seqlens, window, scale)


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_seqlens: torch.Tensor, *,
                     window: int | None = None, scale: float | None = None) -> torch.Tensor:
    """One generation step: each sequence's new query over its KV cache. ``[B, Hq, D]``.

    Args:
        q: ``[B, Hq, D]``, the new token's queries (RoPE applied).
        k_cache, v_cache: ``[B, S, Hk, D]``. Full-attention layers use a contiguous cache (token
            t in slot t); sliding-window layers a ring buffer of ``S == window`` slots (token t in
            slot ``t % window``), which ``append_kv(..., ring=True)`` maintains.
        cache_seqlens: ``[B]`` tokens in each cache, the new one included.
        window: the layer's window (None for full attention).

    Reads the cache in place (a layer that shares KV passes the producer's tensors: no copy).
    Long caches are split and merged by log-sum-exp (flash-decoding). Under ``torch.autocast``
    the query takes the cache's dtype (casting the cache would copy it at every step).
    Differentiable in ``q`` and the caches (the backward recomputes the step in PyTorch).
    """
    if torch.is_autocast_enabled(q.device.type):
        q = q.to(k_cache.dtype)
    _check_decode(q, k_cache, v_cache, cache_seqlens, window)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    if _ext.has_kernel("decode_attention", q.device.type):
        return _ext.call(torch.ops.yilightning.decode_attention, q, k_cache, v_cache, cache_seqlens, window or 0,
                         float(scale))
    return decode_attention_reference(q, k_cache, v_cache, cache_seqlens, window=window, scale=scale)


def append_kv(k_cache: torch.Tensor, v_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              positions: torch.Tensor, *, ring: bool = False) -> None:
    """Write each sequence's new key/value ``[B, Hk, D]`` into its cache, in place: slot
    ``positions[b]`` (``positions[b] % S`` for a ring buffer). One indexed store, no host sync."""
    B, S = k_cache.shape[:2]
    if k.shape != (B, *k_cache.shape[2:]) or v.shape != k.shape or positions.shape != (B,):
        raise ValueError(f"append_kv: need k, v [B={B}, Hk, D] matching the cache {tuple(k_cache.shape)} and "
                         f"positions [B], got {tuple(k.shape)}, {tuple(v.shape)}, {tuple(positions.shape)}")
    if not positions.is_cuda and B:
        if int(positions.min()) < 0:
            raise ValueError(f"append_kv: positions must be >= 0, got {int(positions.min())}")
        if not ring and int(positions.max()) >= S:
            raise ValueError(f"append_kv: position {int(positions.max())} does not fit a cache of {S} slots; "
                             "allocate a longer cache or use a ring buffer")
    slots = positions.long() % S if ring else positions.long()
    rows = torch.arange(B, device=k_cache.device)
    k_cache[rows, slots] = k.to(k_cache.dtype)
    v_cache[rows, slots] = v.to(v_cache.dtype)


def _check_rotary(x: torch.Tensor, positions: torch.Tensor, base: float) -> None:
    if x.dim() < 2 or x.shape[-1] % 2 or x.dtype not in _FLOATS:
        raise ValueError(f"rotary: x must be a float [..., H, D] tensor with D even, got {x.dtype} {tuple(x.shape)}")
    if positions.dtype not in (torch.int32, torch.int64) or positions.shape != x.shape[:-2]:
        raise ValueError(f"rotary: positions must be int32/int64 of shape {tuple(x.shape[:-2])} (x without its "
                         f"last two dims), got {positions.dtype} {tuple(positions.shape)}")
    if positions.device != x.device:
        raise ValueError(f"rotary: positions must be on {x.device}, got {positions.device}")
    if not base > 1:
        raise ValueError(f"rotary: base must be > 1, got {base}")


def rotary_reference(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Pure-PyTorch ``rotary``: the ground truth and the fallback."""
    _check_rotary(x, positions, base)
    D = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D))
    angles = positions.float().unsqueeze(-1) * inv_freq  # (..., T, D/2)
    emb = torch.cat([angles, angles], dim=-1).unsqueeze(-2)  # (..., T, 1, D)
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x.float() * emb.cos() + rotated * emb.sin()).to(x.dtype)


def rotary(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding (the rotate-half convention of Llama/Qwen/Mistral) of
    ``x [..., T, H, D]`` at integer ``positions [..., T]``; the angles are computed in fp32.
    Raise ``base`` for long-context extension. One kernel (the angles computed once per token
    for all its heads); differentiable: the gradient is the inverse rotation."""
    _check_rotary(x, positions, base)
    if _ext.has_kernel("rotary", x.device.type):
        return _ext.call(torch.ops.yilightning.rotary, x, positions, float(base), False)
    return rotary_reference(x, positions, base)


if _ext.module is not None:

    @torch.library.register_fake("yilightning::decode_attention")
    def _decode_fake(q, k_cache, v_cache, cache_seqlens, window, scale):  # noqa: ANN001
        return torch.empty_like(q)

    def _decode_setup(ctx, inputs, output) -> None:  # noqa: ANN001
        q, k_cache, v_cache, cache_seqlens, window, scale = inputs
        ctx.save_for_backward(q, k_cache, v_cache, cache_seqlens)
        ctx.window, ctx.scale = window, scale

    def _decode_backward(ctx, grad):  # noqa: ANN001, ANN202
        # A generation step needs no gradient: the rare caller that does gets it from the
        # PyTorch math, recomputed (the kernel has no backward of its own).
        q, k_cache, v_cache, cache_seqlens = ctx.saved_tensors
        inputs = [t.detach().requires_grad_(need) for t, need in zip((q, k_cache, v_cache), ctx.needs_input_grad)]
        with torch.enable_grad(), torch.autocast(q.device.type, enabled=False):
            out = _decode_math(*inputs, cache_seqlens, ctx.window or None, ctx.scale)
        wanted = [t for t in inputs if t.requires_grad]
        grads = iter(torch.autograd.grad(out, wanted, grad))
        return (*(next(grads) if t.requires_grad else None for t in inputs), None, None, None)

    torch.library.register_autograd("yilightning::decode_attention", _decode_backward, setup_context=_decode_setup)

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

    @torch.library.register_fake("yilightning::rotary")
    def _rotary_fake(x, positions, base, inverse):  # noqa: ANN001
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    def _rotary_setup(ctx, inputs, output) -> None:  # noqa: ANN001
        _, positions, base, inverse = inputs
        ctx.save_for_backward(positions)
        ctx.base, ctx.inverse = base, inverse

    def _rotary_backward(ctx, grad):  # noqa: ANN001, ANN202
        (positions,) = ctx.saved_tensors
        return torch.ops.yilightning.rotary(grad, positions, ctx.base, not ctx.inverse), None, None, None

    torch.library.register_autograd("yilightning::rotary", _rotary_backward, setup_context=_rotary_setup)
