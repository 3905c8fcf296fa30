"""Cross-entropy over a vocabulary without a log-softmax tensor: the LM loss.

``F.cross_entropy`` keeps an ``[N, V]`` log-softmax for its backward; ``cross_entropy`` keeps
one log-sum-exp per row and recomputes the softmax from the logits in backward, one pass per
row. At the paper preset's 100,352-token vocabulary that is 3.2 GB less per 8K-token
micro-batch. ``lm_head_loss`` goes further on the CPU: the LM head and the loss in one op that
never writes the ``[N, V]`` logits (nor their gradient) to memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from yilightning import _ext

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def _check(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.dim() != 2 or logits.dtype not in _FLOATS or logits.shape[1] < 1:
        raise ValueError(f"cross_entropy: logits must be a float [N, V] tensor, got {logits.dtype} "
                         f"{tuple(logits.shape)}")
    if targets.dtype != torch.int64 or targets.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy: targets must be int64 [N={logits.shape[0]}], got {targets.dtype} "
                         f"{tuple(targets.shape)}")
    if targets.device != logits.device:
        raise ValueError(f"cross_entropy: targets must be on {logits.device}, got {targets.device}")


def cross_entropy_reference(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """``F.cross_entropy`` in fp32: the ground truth and the fallback."""
    _check(logits, targets)
    return F.cross_entropy(logits.float(), targets, ignore_index=ignore_index)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of ``logits [N, V]`` against ``targets [N]`` over the rows whose target
    is not ``ignore_index`` (``F.cross_entropy``'s ``reduction="mean"``; NaN when every row is
    ignored, as there). fp32 math; differentiable in ``logits``.

    >>> import torch, yilightning
    >>> logits, targets = torch.randn(4, 10), torch.tensor([1, 2, -100, 9])
    >>> torch.allclose(yilightning.ops.cross_entropy(logits, targets),
    ...                torch.nn.functional.cross_entropy(logits, targets))
    True
    """
    _check(logits, targets)
    if _ext.has_kernel("cross_entropy", logits.device.type):
        loss, _ = _ext.call(torch.ops.yilightning.cross_entropy, logits, targets, ignore_index)
        return loss.sum() / (targets != ignore_index).sum()
    return cross_entropy_reference(logits, targets, ignore_index)


def lm_head_loss_fused(hidden: torch.Tensor, weight: torch.Tensor) -> bool:
    """True when ``lm_head_loss`` runs fused here (float32 CPU tensors, compiled kernel, no
    autocast); elsewhere it computes the logits and calls ``cross_entropy``."""
    return (hidden.device.type == "cpu" and hidden.dtype == weight.dtype == torch.float32
            and _ext.has_kernel("lm_head_loss", "cpu") and not torch.is_autocast_enabled("cpu"))


def lm_head_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                 ignore_index: int = -100) -> torch.Tensor:
    """``cross_entropy(hidden @ weight.T, targets, ignore_index)``: the LM loss from the last
    hidden states ``[N, H]`` and the LM head's weight ``[V, H]``, differentiable in both.

    Fused on the CPU in fp32 (``lm_head_loss_fused``): rows go in chunks of ~16 MiB of logits
    through the head's GEMM, the softmax and, when a gradient is needed, the two gradient GEMMs
    at once (the loss is a sum, linear in its incoming gradient, so backward only scales), so the
    ``[N, V]`` logits and their gradient never reach memory: for the tiny preset's 2048-token
    training batch those are two 64 MiB tensors (at the paper preset's vocabulary and 8K
    tokens, 3.2 GB each). Forward and backward of that head: 173 ms against 181-183 unfused
    (``cross_entropy(linear(...))``) on the 2-core Zen 5 guest.

    >>> import torch, yilightning
    >>> h, w, t = torch.randn(5, 8), torch.randn(11, 8), torch.tensor([1, 2, -100, 10, 0])
    >>> torch.allclose(yilightning.ops.lm_head_loss(h, w, t),
    ...                torch.nn.functional.cross_entropy(h @ w.T, t), atol=1e-5)
    True
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1] or hidden.shape[1] < 1:
        raise ValueError(f"lm_head_loss: hidden must be [N, H] and weight [V, H] with H >= 1, got "
                         f"{tuple(hidden.shape)} and {tuple(weight.shape)}")
    if not lm_head_loss_fused(hidden, weight):
        return cross_entropy(F.linear(hidden, weight), targets, ignore_index)
    _check(hidden.new_empty(hidden.shape[0], 1), targets)
    with_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    total, _, _ = _ext.call(torch.ops.yilightning.lm_head_loss, hidden, weight, targets, ignore_index, with_grad)
    count = (targets != ignore_index).sum()
    # NaN when every row is ignored, as F.cross_entropy, with zero gradients (not inf * 0), no host sync
    return torch.where(count > 0, total / count.clamp_min(1), total.new_tensor(float("nan")))


if _ext.module is not None:

    @torch.library.register_fake("yilightning::lm_head_loss")
    def _lm_head_loss_fake(x, weight, targets, ignore_index, with_grad):  # noqa: ANN001
        return (x.new_empty(()), x.new_empty(x.shape if with_grad else (0,)),
                weight.new_empty(weight.shape if with_grad else (0,)))

    def _lm_setup(ctx, inputs, output) -> None:  # noqa: ANN001
        _, dx, dw = output
        ctx.with_grad = inputs[4]
        ctx.save_for_backward(dx, dw)
        ctx.mark_non_differentiable(dx, dw)
        ctx.set_materialize_grads(False)  # no zero-filled gradients of dx and dw (10 MiB a tiny-preset step)

    def _lm_backward(ctx, grad, _gdx, _gdw):  # noqa: ANN001, ANN202
        if not ctx.with_grad:
            raise RuntimeError("lm_head_loss: backward through a call made with with_grad=False (its gradients "
                               "were not computed); call it with gradients enabled")
        if torch.is_grad_enabled():
            raise RuntimeError("lm_head_loss: double backward (create_graph=True) is not supported; use "
                               "cross_entropy(F.linear(hidden, weight), targets) for higher-order gradients")
        dx, dw = ctx.saved_tensors
        return grad * dx, grad * dw, None, None, None

    torch.library.register_autograd("yilightning::lm_head_loss", _lm_backward, setup_context=_lm_setup)

    @torch.library.register_fake("yilightning::cross_entropy")
    def _cross_entropy_fake(logits, targets, ignore_index):  # noqa: ANN001
        rows = logits.new_empty(logits.shape[:1], dtype=torch.float32)
        return rows, torch.empty_like(rows)

    @torch.library.register_fake("yilightning::cross_entropy_backward")
    def _cross_entropy_backward_fake(grad, logits, targets, lse, ignore_index):  # noqa: ANN001
        return torch.empty_like(logits, memory_format=torch.contiguous_format)

    def _setup(ctx, inputs, output) -> None:  # noqa: ANN001
        logits, targets, ignore_index = inputs
        _, lse = output
        ctx.save_for_backward(logits, targets, lse)
        ctx.ignore_index = ignore_index
        ctx.mark_non_differentiable(lse)

    def _backward(ctx, grad, _grad_lse):  # noqa: ANN001, ANN202
        logits, targets, lse = ctx.saved_tensors
        dx = torch.ops.yilightning.cross_entropy_backward(grad.float().contiguous(), logits, targets, lse,
                                                          ctx.ignore_index)
        return dx, None, None

    torch.library.register_autograd("yilightning::cross_entropy", _backward, setup_context=_setup)
