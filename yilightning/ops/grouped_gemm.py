"""Grouped GEMM for the MoE experts, the expert FFN built from it, and the whole expert path
(``moe_ffn``: permute -> expert FFN -> unpermute, fused on the CPU).

Rows of ``a`` come in consecutive groups (``group_sizes[g]`` rows for expert ``g``, zeros
allowed); group ``g`` is multiplied by its own matrix ``b[g]``. Group sizes stay on the
device: the CUDA path never copies them to the host.
"""

from __future__ import annotations

import torch

from yilightning import _ext
from yilightning.ops._autocast import autocast_inputs
from yilightning.ops.permute import permute, unpermute
from yilightning.ops.swiglu import swiglu

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def _check(a: torch.Tensor, b: torch.Tensor, group_sizes: torch.Tensor, trans_b: bool) -> int:
    """Validates the arguments; returns N."""
    if a.dim() != 2:
        raise ValueError(f"grouped_gemm: a must be [M, K], got shape {tuple(a.shape)}")
    if b.dim() != 3:
        raise ValueError(f"grouped_gemm: b must be [E, K, N] (or [E, N, K] with trans_b=True), got {tuple(b.shape)}")
    if a.dtype not in _FLOATS or b.dtype != a.dtype:
        raise TypeError(f"grouped_gemm: a and b must share one of float32/bfloat16/float16, got {a.dtype} and {b.dtype}")
    if b.device != a.device or group_sizes.device != a.device:
        raise ValueError(f"grouped_gemm: a, b and group_sizes must be on one device, got {a.device}, {b.device}, "
                         f"{group_sizes.device}")
    K_b, N = (b.shape[2], b.shape[1]) if trans_b else (b.shape[1], b.shape[2])
    if K_b != a.shape[1]:
        layout = "[E, N, K]" if trans_b else "[E, K, N]"
        raise ValueError(f"grouped_gemm: a is [M, K={a.shape[1]}] but b {layout} has K={K_b} "
                         f"(shape {tuple(b.shape)}); check trans_b")
    if group_sizes.dtype != torch.int64 or group_sizes.shape != (b.shape[0],):
        raise ValueError(f"grouped_gemm: group_sizes must be int64 [E={b.shape[0]}], got {group_sizes.dtype} "
                         f"{tuple(group_sizes.shape)}")
    # Value checks in eager mode on the CPU only: on a GPU they would cost a host sync (there,
    # sizes that do not sum to M are clamped by the kernel: no out-of-bounds access, zero rows),
    # and under torch.compile they would break the graph (the CPU kernel checks them again).
    if not group_sizes.is_cuda and not torch.compiler.is_compiling():
        sizes = group_sizes.tolist()  # Python ints: a sum that int64 would wrap round stays exact
        if sizes and min(sizes) < 0:
            raise ValueError("grouped_gemm: group_sizes must be >= 0")
        if sum(sizes) != a.shape[0]:
            raise ValueError(f"grouped_gemm: group_sizes must sum to the rows of a (M={a.shape[0]}), "
                             f"got {sum(sizes)}")
    return N


def grouped_gemm_reference(a: torch.Tensor, b: torch.Tensor, group_sizes: torch.Tensor, *,
                           trans_b: bool = False) -> torch.Tensor:
    """Pure-PyTorch grouped GEMM (a loop over groups, fp32 math): the ground truth in tests
    and the fallback path. Reads the group sizes on the host."""
    N = _check(a, b, group_sizes, trans_b)
    out, start = [], 0
    for g, m in enumerate(group_sizes.tolist()):
        bg = b[g].float()
        out.append(a[start:start + m].float() @ (bg.t() if trans_b else bg))
        start += m
    return torch.cat(out).to(a.dtype) if out else a.new_empty(0, N)


def grouped_gemm(a: torch.Tensor, b: torch.Tensor, group_sizes: torch.Tensor, *,
                 trans_b: bool = False) -> torch.Tensor:
    """``c[rows of g] = a[rows of g] @ b[g]`` (``b[g].T`` when ``trans_b``): ``[M, N]``.

    Args:
        a: ``[M, K]``, rows grouped consecutively by expert (see ``permute``).
        b: ``[E, K, N]``, or ``[E, N, K]`` with ``trans_b=True`` (the ``nn.Linear`` /
            Hugging Face layout).
        group_sizes: int64 ``[E]`` summing to M, on a's device; zeros allowed.

    Differentiable in ``a`` and ``b``: dA is a grouped GEMM with b transposed, dB a K-grouped
    GEMM (``a_g^T @ dC_g`` per group; experts without rows get a zero gradient).

    >>> a, b = torch.randn(5, 4), torch.randn(2, 4, 3)
    >>> grouped_gemm(a, b, torch.tensor([2, 3])).shape
    torch.Size([5, 3])
    """
    a, b = autocast_inputs(a.device, a, b)
    _check(a, b, group_sizes, trans_b)
    if _ext.has_kernel("grouped_gemm", a.device.type):
        return torch.ops.yilightning.grouped_gemm(a, b, group_sizes, trans_b)
    return grouped_gemm_reference(a, b, group_sizes, trans_b=trans_b)


def example_inputs(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Odd sizes with an empty group for the self-check: 97 rows, K=33, N=20, 5 experts."""
    return torch.randn(97, 33, device=device, dtype=dtype), torch.randn(5, 33, 20, device=device, dtype=dtype)


def check_fn(fn):  # noqa: ANN001, ANN201
    """``fn`` (grouped_gemm or its reference) with fixed group sizes, for the self-check."""

    def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return fn(a, b, torch.tensor([30, 0, 41, 1, 25], device=a.device))

    return run


if _ext.module is not None:

    @torch.library.register_fake("yilightning::grouped_gemm")
    def _grouped_gemm_fake(a, b, group_sizes, trans_b):  # noqa: ANN001
        return a.new_empty((a.shape[0], b.shape[1] if trans_b else b.shape[2]))

    @torch.library.register_fake("yilightning::grouped_gemm_wgrad")
    def _grouped_gemm_wgrad_fake(a, dc, group_sizes, trans_b):  # noqa: ANN001
        E, K, N = group_sizes.shape[0], a.shape[1], dc.shape[1]
        return a.new_empty((E, N, K) if trans_b else (E, K, N))

    def _setup(ctx, inputs, output) -> None:  # noqa: ANN001
        a, b, group_sizes, trans_b = inputs
        ctx.save_for_backward(a, b, group_sizes)
        ctx.trans_b = trans_b

    def _backward(ctx, dc):  # noqa: ANN001, ANN202
        a, b, group_sizes = ctx.saved_tensors
        da = db = None
        if ctx.needs_input_grad[0]:
            da = torch.ops.yilightning.grouped_gemm(dc, b, group_sizes, not ctx.trans_b)
        if ctx.needs_input_grad[1]:
            db = torch.ops.yilightning.grouped_gemm_wgrad(a, dc, group_sizes, ctx.trans_b)
        return da, db, None, None

    torch.library.register_autograd("yilightning::grouped_gemm", _backward, setup_context=_setup)


class _SwigluDownRecompute(torch.autograd.Function):
    """``grouped_gemm(swiglu(h), w_down)`` that keeps only ``h``: the activation is recomputed
    in backward instead of stored (saves T*k*I values per layer)."""

    @staticmethod
    def forward(ctx, h, w_down, group_sizes):  # noqa: ANN001, ANN205
        ctx.save_for_backward(h, w_down, group_sizes)
        return grouped_gemm(swiglu(h), w_down, group_sizes, trans_b=True)

    @staticmethod
    def backward(ctx, dy):  # noqa: ANN001, ANN205
        h, w_down, group_sizes = ctx.saved_tensors
        with torch.enable_grad():
            h_ = h.detach().requires_grad_()
            w_ = w_down.detach().requires_grad_()
            y = grouped_gemm(swiglu(h_), w_, group_sizes, trans_b=True)
        dh, dw = torch.autograd.grad(y, (h_, w_), dy)
        return dh, dw, None


def expert_ffn(x_sorted: torch.Tensor, w_gate_up: torch.Tensor, w_down: torch.Tensor,
               group_sizes: torch.Tensor, *, recompute: bool = False) -> torch.Tensor:
    """The SwiGLU experts on permuted rows: ``grouped_gemm -> swiglu -> grouped_gemm``.

    Args:
        x_sorted: ``[T*k, H]`` rows grouped by expert.
        w_gate_up: ``[E, 2I, H]`` (gate rows first, then up), the Hugging Face layout.
        w_down: ``[E, H, I]``.
        group_sizes: int64 ``[E]``.
        recompute: recompute the activation in backward instead of storing it.
    """
    h = grouped_gemm(x_sorted, w_gate_up, group_sizes, trans_b=True)  # (T*k, 2I)
    if recompute and torch.is_grad_enabled() and (h.requires_grad or w_down.requires_grad):
        return _SwigluDownRecompute.apply(h, w_down, group_sizes)
    return grouped_gemm(swiglu(h), w_down, group_sizes, trans_b=True)  # (T*k, H)


def pack_experts(w: torch.Tensor) -> torch.Tensor:
    """Expert weights ``w [E, N, K]`` (``moe_ffn``'s ``w_gate_up`` or ``w_down``) laid out once
    for the CPU's AMX tiles: bf16 ``[E, N/32, K/32, 2, 16, 32]``, as many values as ``w``.

    ``moe_ffn``'s CPU kernel lays every expert's weight out this way on each bf16 call; given
    the result (its ``tiles``), inference skips that step. Needs the compiled extension, a CPU
    with AMX (``yilightning doctor`` shows ``cpu_amx``) and N, K multiples of 32; ``w`` of
    another float dtype is rounded to bf16 first (as bf16 autocast would). The copy is as large
    as the bf16 weights, and it does not follow them: pack again after changing them
    (``MoE.pack_for_inference`` does that by itself).

    >>> import torch, yilightning
    >>> w = torch.randn(4, 64, 32, dtype=torch.bfloat16)
    >>> if yilightning.build_info()["cpu_amx"]:
    ...     assert yilightning.ops.pack_experts(w).shape == (4, 2, 1, 2, 16, 32)
    """
    if w.dim() != 3 or not w.is_floating_point():
        raise ValueError(f"pack_experts: w must be a float tensor [E, N, K], got {w.dtype} {tuple(w.shape)}")
    if w.device.type != "cpu" or not _ext.has_kernel("pack_experts", "cpu"):
        raise RuntimeError(f"pack_experts: needs a CPU tensor and the compiled extension (w is on {w.device}; "
                           f"extension: {_ext.load_error or 'loaded'}); the tile layout is for CPUs with AMX")
    with torch.no_grad():
        return torch.ops.yilightning.pack_experts(w.to(torch.bfloat16))


def moe_ffn(x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor, w_gate_up: torch.Tensor,
            w_down: torch.Tensor, *, recompute: bool = False,
            tiles: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The expert path of an MoE layer: ``unpermute(expert_ffn(permute(x)), weights)``.

    Args:
        x: ``[T, H]`` token activations.
        indices, weights: ``[T, k]`` expert ids (int64) and combine weights (from ``route``).
        w_gate_up: ``[E, 2I, H]``; w_down: ``[E, H, I]`` (as ``expert_ffn``), x's dtype and device.
        recompute: as ``expert_ffn`` (training only).
        tiles: ``(pack_experts(w_gate_up), pack_experts(w_down))`` of these very weights, for
            inference in bf16 on a CPU with AMX, which then reads them instead of laying the
            weights out again; the same result, faster. Elsewhere (training, fp32, no AMX, a GPU)
            they are not needed and not used. Stale tiles (of weights since changed) give wrong
            results: pack again after changing the weights.

    Returns:
        ``out [T, H]`` in x's dtype and ``group_sizes [E]`` int64 (tokens per expert).

    On the CPU it is fused: no ``[T*k, H]`` intermediate tensors; each expert's rows gathered,
    multiplied and activated in cache-sized per-thread tiles; the output rows kept in a
    workspace the calling thread reuses (it grows to the largest call, up to 512 MiB; larger
    calls use a temporary). Training keeps only the fp32 pre-activations ``h [T*k, 2I]`` for
    backward (so ``recompute`` changes nothing there), and backward is fused the same way, with
    one writer per expert's weight gradient (deterministic). Elsewhere (a GPU, or without the
    compiled extension) it runs the composed, differentiable ops.

    >>> import torch, yilightning
    >>> x, w_gu, w_dn = torch.randn(5, 8), torch.randn(4, 6, 8), torch.randn(4, 8, 3)
    >>> weights, indices, _ = yilightning.ops.route(torch.randn(5, 4), 2)
    >>> with torch.no_grad():
    ...     out, sizes = yilightning.ops.moe_ffn(x, indices, weights, w_gu, w_dn)
    >>> out.shape, int(sizes.sum())
    (torch.Size([5, 8]), 10)
    """
    if w_gate_up.dim() != 3 or w_down.dim() != 3:
        raise ValueError(f"moe_ffn: w_gate_up must be [E, 2I, H] and w_down [E, H, I], got "
                         f"{tuple(w_gate_up.shape)} and {tuple(w_down.shape)}")
    if weights.shape != indices.shape:
        raise ValueError(f"moe_ffn: weights must have indices' shape {tuple(indices.shape)}, got {tuple(weights.shape)}")
    E, two_i, H = w_gate_up.shape
    if tuple(w_down.shape) != (E, H, two_i // 2):
        raise ValueError(f"moe_ffn: w_down must be [E={E}, H={H}, I={two_i // 2}] to match w_gate_up, got "
                         f"{tuple(w_down.shape)}")
    x, w_gate_up, w_down = autocast_inputs(x.device, x, w_gate_up, w_down)
    if x.dtype != w_gate_up.dtype or x.dtype != w_down.dtype:
        raise TypeError(f"moe_ffn: x, w_gate_up and w_down must share one dtype, got {x.dtype}, "
                        f"{w_gate_up.dtype}, {w_down.dtype}")
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, weights, w_gate_up, w_down)):
        if _ext.has_kernel("moe_ffn_train", x.device.type):
            out, group_sizes, _ = torch.ops.yilightning.moe_ffn_train(x, indices, weights.float(), w_gate_up, w_down)
            return out, group_sizes
    elif _ext.has_kernel("moe_ffn", x.device.type):
        return _ext.call(torch.ops.yilightning.moe_ffn, x, indices, weights.float(), w_gate_up, w_down,
                         *(tiles or (None, None)))
    x_sorted, group_sizes, row_map = permute(x, indices, E)
    y_sorted = expert_ffn(x_sorted, w_gate_up, w_down, group_sizes, recompute=recompute)
    return unpermute(y_sorted, row_map, weights), group_sizes


if _ext.module is not None:

    @torch.library.register_fake("yilightning::moe_ffn")
    def _moe_ffn_fake(x, indices, weights, w_gate_up, w_down, gate_up_tiles=None, down_tiles=None):  # noqa: ANN001
        return x.new_empty(x.shape), indices.new_empty((w_gate_up.shape[0],))

    @torch.library.register_fake("yilightning::pack_experts")
    def _pack_experts_fake(w):  # noqa: ANN001
        E, N, K = w.shape
        return w.new_empty((E, N // 32, K // 32, 2, 16, 32))

    @torch.library.register_fake("yilightning::moe_ffn_train")
    def _moe_ffn_train_fake(x, indices, weights, w_gate_up, w_down):  # noqa: ANN001
        h = x.new_empty((indices.numel(), w_gate_up.shape[1]), dtype=torch.float32)
        return x.new_empty(x.shape), indices.new_empty((w_gate_up.shape[0],)), h

    @torch.library.register_fake("yilightning::moe_ffn_backward")
    def _moe_ffn_backward_fake(grad, x, indices, weights, h, w_gate_up, w_down):  # noqa: ANN001
        return (torch.empty_like(x), torch.empty_like(weights), torch.empty_like(w_gate_up),
                torch.empty_like(w_down))

    def _moe_setup(ctx, inputs, output) -> None:  # noqa: ANN001
        x, indices, weights, w_gate_up, w_down = inputs
        _, group_sizes, h = output
        ctx.save_for_backward(x, indices, weights, h, w_gate_up, w_down)
        ctx.mark_non_differentiable(group_sizes, h)
        ctx.set_materialize_grads(False)  # no zero-filled [T*k, 2I] gradient for h (0.7 ms a layer)

    def _moe_backward(ctx, grad, _gs, _h):  # noqa: ANN001, ANN202
        x, indices, weights, h, w_gate_up, w_down = ctx.saved_tensors
        dx, dweights, dw_gu, dw_dn = torch.ops.yilightning.moe_ffn_backward(
            grad.contiguous(), x, indices, weights, h, w_gate_up, w_down)
        return dx, None, dweights, dw_gu, dw_dn

    torch.library.register_autograd("yilightning::moe_ffn_train", _moe_backward, setup_context=_moe_setup)
