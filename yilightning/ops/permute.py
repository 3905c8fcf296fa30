"""Token permutation for the expert path: group the (token, slot) copies by expert, run the
experts on contiguous row blocks, then sum each token's k expert outputs back, weighted.

Stable (tokens keep their order inside an expert), free of host syncs (group sizes stay on
the device) and deterministic (every output row is written once; the k contributions of a
token are summed in slot order, with no floating-point atomics).
"""

from __future__ import annotations

import torch

from yilightning import _ext

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def _check_permute(x: torch.Tensor, indices: torch.Tensor, num_experts: int) -> None:
    if x.dim() != 2 or x.dtype not in _FLOATS:
        raise ValueError(f"permute: x must be a float32/bfloat16/float16 [T, H] tensor, got {x.dtype} {tuple(x.shape)}")
    T = x.shape[0]
    if indices.dim() != 2 or indices.shape[0] != T or indices.shape[1] < 1:
        raise ValueError(f"permute: indices must be [T={T}, k], got {tuple(indices.shape)}")
    if indices.dtype != torch.int64:
        raise TypeError(f"permute: indices must be int64 (as route returns), got {indices.dtype}")
    if indices.device != x.device:
        raise ValueError(f"permute: indices must be on {x.device}, got {indices.device}")
    if num_experts < 1:
        raise ValueError(f"permute: num_experts must be >= 1, got {num_experts}")
    # Range check in eager mode on the CPU only: on a GPU it would cost a host sync on every
    # call, under torch.compile a graph break (the CPU kernel checks again).
    if (indices.numel() and not indices.is_cuda and not torch.compiler.is_compiling()
            and (int(indices.min()) < 0 or int(indices.max()) >= num_experts)):
        raise ValueError(f"permute: indices must lie in [0, num_experts={num_experts})")


def _check_unpermute(y_sorted: torch.Tensor, row_map: torch.Tensor, weights: torch.Tensor) -> None:
    if weights.dim() != 2 or row_map.shape != (weights.numel(),) or y_sorted.dim() != 2:
        raise ValueError(
            f"unpermute: need y_sorted [T*k, H], row_map [T*k] and weights [T, k], got "
            f"{tuple(y_sorted.shape)}, {tuple(row_map.shape)}, {tuple(weights.shape)}"
        )
    if y_sorted.shape[0] != row_map.numel():
        raise ValueError(f"unpermute: y_sorted has {y_sorted.shape[0]} rows, row_map {row_map.numel()}")
    if y_sorted.dtype not in _FLOATS or row_map.dtype != torch.int64:
        raise TypeError(f"unpermute: y_sorted must be float32/bfloat16/float16 and row_map int64, got "
                        f"{y_sorted.dtype} and {row_map.dtype}")


class _PermuteRows(torch.autograd.Function):
    """Row gather whose backward sums each token's k copies in slot order (index_add would
    use atomics on a GPU: nondeterministic)."""

    @staticmethod
    def forward(ctx, x, src, row_map, k):  # noqa: ANN001, ANN205
        ctx.save_for_backward(row_map)
        ctx.k = k
        return x.index_select(0, src)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        (row_map,) = ctx.saved_tensors
        T = row_map.numel() // ctx.k
        return grad.index_select(0, row_map).view(T, ctx.k, grad.shape[1]).sum(1), None, None, None


def permute_reference(x: torch.Tensor, indices: torch.Tensor,
                      num_experts: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pure-PyTorch ``permute`` (a stable sort and a gather): ground truth and fallback."""
    _check_permute(x, indices, num_experts)
    flat = indices.reshape(-1)
    order = torch.sort(flat, stable=True).indices  # row -> slot
    row_map = torch.empty_like(order)
    row_map[order] = torch.arange(order.numel(), device=order.device)  # slot -> row
    group_sizes = torch.zeros(num_experts, dtype=torch.int64, device=x.device)
    group_sizes.scatter_add_(0, flat, torch.ones_like(flat))
    k = indices.shape[1]
    return _PermuteRows.apply(x, order // k, row_map, k), group_sizes, row_map


def unpermute_reference(y_sorted: torch.Tensor, row_map: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Pure-PyTorch ``unpermute`` (gather, fp32 weighted sum in slot order): ground truth and fallback."""
    _check_unpermute(y_sorted, row_map, weights)
    T, k = weights.shape
    rows = y_sorted.index_select(0, row_map).view(T, k, y_sorted.shape[1]).float()
    return (rows * weights.float().unsqueeze(-1)).sum(1).to(y_sorted.dtype)


def permute(x: torch.Tensor, indices: torch.Tensor,
            num_experts: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Copy each token once per chosen expert, grouped by expert.

    Args:
        x: ``[T, H]`` token activations.
        indices: ``[T, k]`` int64 expert ids (from ``route``).
        num_experts: E.

    Returns:
        ``x_sorted [T*k, H]`` (rows of expert 0, then expert 1, ...; tokens keep their order
        inside an expert), ``group_sizes [E]`` int64 on x's device, and ``row_map [T*k]``
        int64: slot ``t*k + j`` went to row ``row_map[t*k + j]``. Differentiable in ``x``.
    """
    _check_permute(x, indices, num_experts)
    if _ext.has_kernel("permute", x.device.type):
        return torch.ops.yilightning.permute(x, indices, num_experts)
    return permute_reference(x, indices, num_experts)


def unpermute(y_sorted: torch.Tensor, row_map: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``out[t] = sum_j weights[t, j] * y_sorted[row_map[t*k + j]]``: ``[T, H]`` in ``y_sorted``'s
    dtype, fp32 accumulation in slot order (deterministic). Differentiable in ``y_sorted`` and
    ``weights``. ``row_map`` is ``permute``'s: a permutation of ``[0, T*k)`` (the CPU kernel
    checks it; the CUDA one trusts it, as checking would wait for the GPU)."""
    _check_unpermute(y_sorted, row_map, weights)
    if _ext.has_kernel("unpermute", y_sorted.device.type):
        return torch.ops.yilightning.unpermute(y_sorted, row_map, weights.float())
    return unpermute_reference(y_sorted, row_map, weights)


if _ext.module is not None:

    @torch.library.register_fake("yilightning::permute")
    def _permute_fake(x, indices, num_experts):  # noqa: ANN001
        S = indices.shape[0] * indices.shape[1]
        return (x.new_empty((S, x.shape[1])), indices.new_empty((num_experts,)), indices.new_empty((S,)))

    @torch.library.register_fake("yilightning::unpermute")
    def _unpermute_fake(y_sorted, row_map, weights):  # noqa: ANN001
        return y_sorted.new_empty((weights.shape[0], y_sorted.shape[1]))

    @torch.library.register_fake("yilightning::unpermute_backward")
    def _unpermute_backward_fake(grad, y_sorted, row_map, weights):  # noqa: ANN001
        return torch.empty_like(y_sorted), torch.empty_like(weights)

    def _permute_setup(ctx, inputs, output) -> None:  # noqa: ANN001
        _, indices, _ = inputs
        _, group_sizes, row_map = output
        ctx.save_for_backward(row_map)
        ctx.k = indices.shape[1]
        ctx.mark_non_differentiable(group_sizes, row_map)

    def _permute_backward(ctx, grad, _gs, _rm):  # noqa: ANN001, ANN202
        (row_map,) = ctx.saved_tensors
        ones = torch.ones(row_map.numel() // ctx.k, ctx.k, device=grad.device)
        return torch.ops.yilightning.unpermute(grad, row_map, ones), None, None

    torch.library.register_autograd("yilightning::permute", _permute_backward, setup_context=_permute_setup)

    def _unpermute_setup(ctx, inputs, output) -> None:  # noqa: ANN001
        ctx.save_for_backward(*inputs)

    def _unpermute_backward(ctx, grad):  # noqa: ANN001, ANN202
        y_sorted, row_map, weights = ctx.saved_tensors
        dy, dw = torch.ops.yilightning.unpermute_backward(grad, y_sorted, row_map, weights)
        return dy, None, dw

    torch.library.register_autograd("yilightning::unpermute", _unpermute_backward, setup_context=_unpermute_setup)
