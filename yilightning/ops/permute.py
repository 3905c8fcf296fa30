"""Token permutation for the expert path: group the (token, slot) copies by expert, run the
experts on contiguous row blocks, then sum each token's k expert outputs back, weighted.

Both are PyTorch composites for now (a sort, gathers and a fixed-order sum): stable, free of
host syncs and deterministic. Fused CPU/CUDA kernels are tracked in the MoE-kernels issue.
"""

from __future__ import annotations

import torch


def _check_indices(indices: torch.Tensor, num_experts: int, T: int) -> None:
    if indices.dim() != 2 or indices.shape[0] != T or indices.shape[1] < 1:
        raise ValueError(f"permute: indices must be [T={T}, k], got {tuple(indices.shape)}")
    if indices.dtype != torch.int64:
        raise TypeError(f"permute: indices must be int64 (as route returns), got {indices.dtype}")
    if num_experts < 1:
        raise ValueError(f"permute: num_experts must be >= 1, got {num_experts}")
    # Range check in eager mode on the CPU only: on a GPU it would cost a host sync on every
    # call, under torch.compile a graph break.
    if indices.numel() and not indices.is_cuda and not torch.compiler.is_compiling() and (int(indices.min()) < 0 or int(indices.max()) >= num_experts):
        raise ValueError(f"permute: indices must lie in [0, num_experts={num_experts})")


class _Permute(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, src: torch.Tensor, row_map: torch.Tensor, k: int) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(row_map)
        ctx.k = k
        return x.index_select(0, src)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        # Each token's k copies summed in slot order: deterministic, unlike index_add's atomics.
        (row_map,) = ctx.saved_tensors
        T = row_map.numel() // ctx.k
        return grad.index_select(0, row_map).view(T, ctx.k, grad.shape[1]).sum(1), None, None, None


def permute(x: torch.Tensor, indices: torch.Tensor, num_experts: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Copy each token once per chosen expert, grouped by expert.

    Args:
        x: ``[T, H]`` token activations.
        indices: ``[T, k]`` int64 expert ids (from ``route``).
        num_experts: E.

    Returns:
        ``x_sorted [T*k, H]`` (rows of expert 0, then expert 1, ...; tokens keep their order
        inside an expert), ``group_sizes [E]`` int64 on x's device (no host sync), and
        ``row_map [T*k]`` int64: slot ``t*k + j`` went to row ``row_map[t*k + j]``.
    """
    if x.dim() != 2:
        raise ValueError(f"permute: x must be [T, H], got {tuple(x.shape)}")
    _check_indices(indices, num_experts, x.shape[0])
    flat = indices.reshape(-1)
    order = torch.sort(flat, stable=True).indices  # row -> slot
    row_map = torch.empty_like(order)
    row_map[order] = torch.arange(order.numel(), device=order.device)  # slot -> row
    group_sizes = torch.zeros(num_experts, dtype=torch.int64, device=x.device)
    group_sizes.scatter_add_(0, flat, torch.ones_like(flat))
    k = indices.shape[1]
    return _Permute.apply(x, order // k, row_map, k), group_sizes, row_map


def unpermute(y_sorted: torch.Tensor, row_map: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``out[t] = sum_j weights[t, j] * y_sorted[row_map[t*k + j]]``, summed in slot order
    (deterministic), fp32 accumulation, output in ``y_sorted``'s dtype: ``[T, H]``."""
    if weights.dim() != 2 or row_map.shape != (weights.numel(),) or y_sorted.dim() != 2:
        raise ValueError(
            f"unpermute: need y_sorted [T*k, H], row_map [T*k] and weights [T, k], got "
            f"{tuple(y_sorted.shape)}, {tuple(row_map.shape)}, {tuple(weights.shape)}"
        )
    if y_sorted.shape[0] != row_map.numel():
        raise ValueError(f"unpermute: y_sorted has {y_sorted.shape[0]} rows, row_map {row_map.numel()}")
    T, k = weights.shape
    rows = y_sorted.index_select(0, row_map).view(T, k, y_sorted.shape[1]).float()
    return (rows * weights.float().unsqueeze(-1)).sum(1).to(y_sorted.dtype)
