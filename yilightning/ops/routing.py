"""Top-k expert routing and the report's three load-balancing losses.

``route`` turns router logits into per-token expert choices: scores (softmax or sigmoid),
an optional ``expert_bias`` that only steers *which* experts are chosen (DeepSeek-V3's
aux-loss-free balancing), optional group-limited selection, and normalised weights.
``load_balance_losses`` computes the Yi-Lightning losses L_ST (all experts), L_EP (per
expert-parallel group) and L_PEP (per partition of a group).
"""

from __future__ import annotations

import torch

from yilightning import _ext

SCORES = {"softmax": 0, "sigmoid": 1}


def _check_route(logits: torch.Tensor, top_k: int, score: str, expert_bias: torch.Tensor | None,
                 n_groups: int, topk_groups: int) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError(f"route: logits must be a [T, E] tensor, got {getattr(logits, 'shape', type(logits))}")
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"route: logits must be float32, bfloat16 or float16, got {logits.dtype}")
    E = logits.shape[1]
    if E < 1:
        raise ValueError("route: logits needs at least one expert column, got E = 0")
    if score not in SCORES:
        raise ValueError(f"route: score must be one of {sorted(SCORES)}, got {score!r}")
    if not 1 <= top_k <= E:
        raise ValueError(f"route: top_k must be in [1, E={E}], got {top_k}")
    if n_groups < 1 or E % n_groups:
        raise ValueError(f"route: n_groups must divide the number of experts E={E}, got {n_groups}")
    if not 1 <= topk_groups <= n_groups:
        raise ValueError(f"route: topk_groups must be in [1, n_groups={n_groups}], got {topk_groups}")
    if topk_groups * (E // n_groups) < top_k:
        raise ValueError(
            f"route: the {topk_groups} kept groups hold {topk_groups * (E // n_groups)} experts, "
            f"fewer than top_k={top_k}; raise topk_groups"
        )
    if expert_bias is not None:
        if expert_bias.shape != (E,) or expert_bias.dtype != torch.float32:
            raise ValueError(
                f"route: expert_bias must be a float32 [E={E}] tensor, got {expert_bias.dtype} {tuple(expert_bias.shape)}"
            )
        if expert_bias.device != logits.device:
            raise ValueError(f"route: expert_bias must be on {logits.device}, got {expert_bias.device}")


def _stable_topk(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest along the last dim; ties go to the lower index."""
    return x.sort(dim=-1, descending=True, stable=True).indices[..., :k]


def route_reference(
    logits: torch.Tensor,
    top_k: int,
    *,
    score: str = "softmax",
    expert_bias: torch.Tensor | None = None,
    n_groups: int = 1,
    topk_groups: int | None = None,
    normalize: bool = True,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pure-PyTorch ``route``: the ground truth in tests and the fallback path."""
    topk_groups = n_groups if topk_groups is None else topk_groups
    _check_route(logits, top_k, score, expert_bias, n_groups, topk_groups)
    T, E = logits.shape
    lf = logits.float()
    probs = lf.softmax(-1) if score == "softmax" else lf.sigmoid()  # (T, E)
    sel = probs.detach() if expert_bias is None else probs.detach() + expert_bias
    if topk_groups < n_groups:
        gs = E // n_groups
        grouped = sel.view(T, n_groups, gs)
        gscore = grouped.topk(min(2, gs), dim=-1).values.sum(-1)  # (T, G): sum of the best two
        keep = torch.zeros(T, n_groups, dtype=torch.bool, device=logits.device)
        keep.scatter_(1, _stable_topk(gscore, topk_groups), True)
        sel = sel.masked_fill(~keep.repeat_interleave(gs, dim=1), float("-inf"))
    indices = _stable_topk(sel, top_k)  # (T, k)
    weights = probs.gather(1, indices)
    if normalize:
        weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
    return weights * scale, indices, probs


def route(
    logits: torch.Tensor,
    top_k: int,
    *,
    score: str = "softmax",
    expert_bias: torch.Tensor | None = None,
    n_groups: int = 1,
    topk_groups: int | None = None,
    normalize: bool = True,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Choose ``top_k`` experts per token.

    Args:
        logits: router logits ``[T, E]`` (fp32/bf16/fp16; scores are computed in fp32).
        top_k: experts per token.
        score: ``"softmax"`` over experts or independent ``"sigmoid"`` scores.
        expert_bias: fp32 ``[E]`` added to the scores for *selection only*; the weights never
            see it (aux-loss-free balancing, see ``update_expert_bias``).
        n_groups, topk_groups: group-limited routing: experts form ``n_groups`` contiguous
            groups, a group's score is the sum of its two best selection scores, and only the
            best ``topk_groups`` groups may be chosen from. Default: no limit.
        normalize: rescale the chosen probabilities to sum to 1.
        scale: multiply the weights by this (routed scaling factor).

    Returns:
        ``weights [T, k]`` fp32, ``indices [T, k]`` int64 (best first; ties go to the lower
        expert index), ``probs [T, E]`` fp32. Gradients reach ``logits`` through ``weights``
        and ``probs``.

    >>> w, idx, p = route(torch.randn(5, 16), 4)
    >>> w.shape, idx.shape, p.shape
    (torch.Size([5, 4]), torch.Size([5, 4]), torch.Size([5, 16]))
    """
    topk_groups = n_groups if topk_groups is None else topk_groups
    _check_route(logits, top_k, score, expert_bias, n_groups, topk_groups)
    if _ext.has_kernel("route", logits.device.type):
        return _ext.call(torch.ops.yilightning.route, logits, top_k, SCORES[score], expert_bias, n_groups,
                         topk_groups, normalize, float(scale))
    return route_reference(logits, top_k, score=score, expert_bias=expert_bias, n_groups=n_groups,
                           topk_groups=topk_groups, normalize=normalize, scale=scale)


def example_inputs(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Router logits for the self-check: 97 tokens, 64 experts."""
    return (torch.randn(97, 64, device=device, dtype=dtype),)


def check_fn(fn):  # noqa: ANN001, ANN201
    """``fn`` (route or its reference) as one tensor for the self-check: a grouped, biased
    sigmoid routing, weights and probabilities side by side (the indices order the weights)."""

    def run(logits: torch.Tensor) -> torch.Tensor:
        bias = torch.linspace(-0.05, 0.05, logits.shape[1], device=logits.device)
        w, _, p = fn(logits, 6, score="sigmoid", expert_bias=bias, n_groups=8, topk_groups=4, scale=2.5)
        return torch.cat([w, p], dim=1)

    return run


def _route_backward(grad_w: torch.Tensor | None, grad_probs: torch.Tensor | None, probs: torch.Tensor,
                    indices: torch.Tensor, score: int, normalize: bool, scale: float) -> torch.Tensor:
    """d loss / d logits, given the gradients of the weights and of the probabilities (fp32)."""
    dp = torch.zeros_like(probs) if grad_probs is None else grad_probs.float().clone()
    if grad_w is not None:
        chosen = probs.gather(1, indices)  # (T, k)
        gw = grad_w.float()
        if normalize:  # w_i = scale * c_i / s, s = sum_j c_j  =>  dc_j = scale/s * (gw_j - sum_i gw_i c_i / s)
            s = chosen.sum(-1, keepdim=True) + 1e-20
            d_chosen = scale / s * (gw - (gw * chosen).sum(-1, keepdim=True) / s)
        else:
            d_chosen = gw * scale
        dp.scatter_add_(1, indices, d_chosen)
    if score == SCORES["softmax"]:
        return probs * (dp - (dp * probs).sum(-1, keepdim=True))
    return dp * probs * (1 - probs)


if _ext.module is not None:

    @torch.library.register_fake("yilightning::route")
    def _route_fake(logits, top_k, score, expert_bias, n_groups, topk_groups, normalize, scale):  # noqa: ANN001
        T, E = logits.shape
        f32 = dict(device=logits.device, dtype=torch.float32)
        return (logits.new_empty((T, top_k), **f32), logits.new_empty((T, top_k), device=logits.device, dtype=torch.int64),
                logits.new_empty((T, E), **f32))

    def _route_setup(ctx, inputs, output) -> None:  # noqa: ANN001
        logits, _, score, _, _, _, normalize, scale = inputs
        _, indices, probs = output
        ctx.save_for_backward(probs, indices)
        ctx.score, ctx.normalize, ctx.scale, ctx.dtype = score, normalize, scale, logits.dtype
        ctx.mark_non_differentiable(indices)

    def _route_autograd(ctx, grad_w, grad_idx, grad_probs):  # noqa: ANN001
        probs, indices = ctx.saved_tensors
        d = _route_backward(grad_w, grad_probs, probs, indices, ctx.score, ctx.normalize, ctx.scale)
        return d.to(ctx.dtype), None, None, None, None, None, None, None

    torch.library.register_autograd("yilightning::route", _route_autograd, setup_context=_route_setup)


def _set_losses(probs: torch.Tensor, indices: torch.Tensor, n_sets: int) -> torch.Tensor:
    """L_S for the experts split into ``n_sets`` contiguous sets of equal size: shape [n_sets].

    B_S = tokens with at least one of their top-k experts in S; f_i = assignments to expert i
    over assignments into S; P_i = mean over B_S of p_i / sum_{j in S} p_j; L_S = n_S sum f_i P_i.
    A set that received no token contributes 0.
    """
    T, E = probs.shape
    n = E // n_sets
    p = probs.float().view(T, n_sets, n)
    p_norm = p / p.sum(-1, keepdim=True).clamp_min(1e-20)  # (T, G, n)
    member = torch.zeros(T, n_sets, device=probs.device, dtype=torch.float32)
    member.scatter_(1, indices // n, 1.0)  # (T, G): token in B_S
    counts = torch.bincount(indices.flatten(), minlength=E).view(n_sets, n).float()
    f = counts / counts.sum(-1, keepdim=True).clamp_min(1)
    P = torch.einsum("tg,tgn->gn", member, p_norm) / member.sum(0).clamp_min(1).unsqueeze(-1)
    return n * (f * P).sum(-1)


def load_balance_losses(
    probs: torch.Tensor,
    indices: torch.Tensor,
    *,
    ep_size: int = 1,
    partitions: int = 1,
    coef_st: float = 1e-6,
    coef_ep: float = 1e-4,
    coef_pep: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The report's three load-balancing losses ``(st, ep, pep)``, differentiable in ``probs``.

    Experts ``[0, E)`` form ``ep_size`` contiguous expert-parallel groups, each split into
    ``partitions`` contiguous partitions. ``st = coef_st * L_all``, ``ep = coef_ep * mean_g L_g``,
    ``pep = coef_pep * mean_p L_p`` where ``L_S = n_S * sum_{i in S} f_i P_i`` (1 when perfectly
    balanced); with one group and one partition all three are the Switch-Transformer loss.
    The default coefficients are the report's (1e-6, 1e-4, 1e-3). Plain PyTorch reductions:
    a few [T, E] passes, negligible beside the expert GEMMs.
    """
    if probs.dim() != 2 or indices.dim() != 2 or indices.shape[0] != probs.shape[0]:
        raise ValueError(f"load_balance_losses: probs must be [T, E] and indices [T, k], got "
                         f"{tuple(probs.shape)} and {tuple(indices.shape)}")
    if indices.dtype != torch.int64:
        raise TypeError(f"load_balance_losses: indices must be int64 (as route returns), got {indices.dtype}")
    E = probs.shape[1]
    if ep_size < 1 or E % ep_size:
        raise ValueError(f"load_balance_losses: ep_size must divide E={E}, got {ep_size}")
    if partitions < 1 or (E // ep_size) % partitions:
        raise ValueError(f"load_balance_losses: partitions must divide the {E // ep_size} experts of an EP group, got {partitions}")
    # Range check in eager mode on the CPU only: on a GPU it would cost a host sync every
    # training step, under torch.compile a graph break.
    if indices.numel() and not indices.is_cuda and not torch.compiler.is_compiling() and (int(indices.min()) < 0 or int(indices.max()) >= E):
        raise ValueError(f"load_balance_losses: indices must lie in [0, E={E})")
    # one computation per distinct number of sets (with ep_size = partitions = 1, one for all three)
    levels: dict[int, torch.Tensor] = {}

    def level(n_sets: int) -> torch.Tensor:
        if n_sets not in levels:
            levels[n_sets] = _set_losses(probs, indices, n_sets).mean()
        return levels[n_sets]

    return coef_st * level(1), coef_ep * level(ep_size), coef_pep * level(ep_size * partitions)


def update_expert_bias(bias: torch.Tensor, tokens_per_expert: torch.Tensor, rate: float) -> torch.Tensor:
    """Aux-loss-free balancing (DeepSeek-V3, an option beyond the report): raise the bias of
    under-loaded experts and lower it for over-loaded ones by ``rate``. Returns the new bias."""
    if bias.shape != tokens_per_expert.shape or bias.dim() != 1:
        raise ValueError(f"update_expert_bias: bias and tokens_per_expert must both be [E], got "
                         f"{tuple(bias.shape)} and {tuple(tokens_per_expert.shape)}")
    load = tokens_per_expert.float()
    return bias + rate * torch.sign(load.mean() - load)
