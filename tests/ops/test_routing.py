import pytest
import torch

from yilightning import _ext
from yilightning.ops import load_balance_losses, route, route_reference, update_expert_bias

needs_ext = pytest.mark.skipif(_ext.module is None, reason=f"extension not loaded: {_ext.load_error}")

CONFIGS = {
    "softmax": dict(),
    "sigmoid-unnormalized": dict(score="sigmoid", normalize=False, scale=2.0),
    "bias": dict(score="sigmoid", bias=True),
    "groups": dict(n_groups=8, topk_groups=3),
    "groups-bias-scale": dict(score="sigmoid", bias=True, n_groups=4, topk_groups=2, scale=2.5),
}


def make(T, E, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, E, generator=g).mul(2).to(device=device, dtype=dtype)


def kwargs_for(cfg, E, device):
    kw = dict(CONFIGS[cfg])
    if kw.pop("bias", False):
        kw["expert_bias"] = torch.linspace(-0.1, 0.1, E, device=device)
    return kw


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("T", [0, 1, 7, 97, 1000])
@pytest.mark.parametrize("E,k", [(64, 6), (32, 1), (8, 8), (160, 8)])
@pytest.mark.parametrize("cfg", list(CONFIGS))
def test_route_matches_reference(device, cfg, E, k, T, dtype):
    kw = kwargs_for(cfg, E, device)
    if kw.get("topk_groups", 1) * E // kw.get("n_groups", 1) < k:
        kw["topk_groups"] = kw["n_groups"]
    logits = make(T, E, dtype, device)
    w, idx, p = route(logits, k, **kw)
    rw, ridx, rp = route_reference(logits, k, **kw)
    assert w.dtype == p.dtype == torch.float32 and idx.dtype == torch.int64
    assert w.shape == (T, k) and idx.shape == (T, k) and p.shape == (T, E)
    torch.testing.assert_close(p, rp, rtol=1e-6, atol=1e-6)
    assert torch.equal(idx, ridx)
    torch.testing.assert_close(w, rw, rtol=1e-5, atol=1e-6)


def test_single_expert_and_k_equals_e(device):
    w, idx, p = route(make(5, 1, torch.float32, device), 1)
    assert torch.equal(idx, torch.zeros(5, 1, dtype=torch.int64, device=device))
    torch.testing.assert_close(w, torch.ones(5, 1, device=device))
    w, idx, _ = route(make(3, 6, torch.float32, device), 6)
    assert torch.equal(idx.sort(-1).values, torch.arange(6, device=device).expand(3, 6))


@pytest.mark.parametrize("E,k", [(13, 3), (200, 7)])
def test_route_odd_expert_counts_and_negative_scores(device, E, k):
    # E not a multiple of the CPU kernel's 8- and 16-key steps; a bias that makes most selection
    # scores negative (their order is the floats' order, not their bits')
    logits = make(97, E, torch.float32, device)
    bias = torch.linspace(-1.0, 0.2, E, device=device)
    for kw in (dict(), dict(score="sigmoid", expert_bias=bias)):
        _, idx, _ = route(logits, k, **kw)
        _, ridx, _ = route_reference(logits, k, **kw)
        assert torch.equal(idx, ridx)


def test_ties_go_to_lower_expert_index(device):
    logits = torch.zeros(4, 16, device=device)
    logits[:, [3, 9, 12]] = 1.0  # a three-way tie at the top, then a 13-way tie
    _, idx, _ = route(logits, 5)
    assert idx.tolist() == [[3, 9, 12, 0, 1]] * 4
    _, idx, _ = route(logits, 2, n_groups=4, topk_groups=2)  # groups 0 and 2 tie with 3: lower wins
    assert idx.tolist() == [[3, 9]] * 4


def test_expert_bias_steers_selection_not_weights(device):
    logits = make(9, 16, torch.float32, device)
    bias = torch.zeros(16, device=device)
    bias[15] = 10.0
    w, idx, p = route(logits, 4, score="sigmoid", expert_bias=bias, normalize=False)
    assert (idx[:, 0] == 15).all()
    torch.testing.assert_close(w, p.gather(1, idx))  # weights are the unbiased probabilities


def test_group_limited_selection_stays_in_kept_groups(device):
    logits = make(200, 64, torch.float32, device, seed=3)
    _, idx, _ = route(logits, 8, n_groups=8, topk_groups=2)
    assert all(len(set(groups)) <= 2 for groups in (idx // 8).tolist())


@pytest.mark.parametrize("cfg", list(CONFIGS))
def test_route_gradients_match_reference(device, cfg):
    kw = kwargs_for(cfg, 32, device)
    logits = make(37, 32, torch.float32, device).requires_grad_()
    ref_logits = logits.detach().clone().requires_grad_()
    gw, gp = torch.randn(37, 4, device=device), torch.randn(37, 32, device=device)
    w, _, p = route(logits, 4, **kw)
    ((w * gw).sum() + (p * gp).sum()).backward()
    rw, _, rp = route_reference(ref_logits, 4, **kw)
    ((rw * gw).sum() + (rp * gp).sum()).backward()
    torch.testing.assert_close(logits.grad, ref_logits.grad, rtol=1e-4, atol=1e-6)


def test_route_gradient_through_weights_only(device):
    logits = make(11, 16, torch.bfloat16, device).requires_grad_()
    w, _, _ = route(logits, 3)
    w.square().sum().backward()
    ref = logits.detach().float().requires_grad_()
    route_reference(ref, 3)[0].square().sum().backward()
    assert logits.grad.dtype == torch.bfloat16
    torch.testing.assert_close(logits.grad.float(), ref.grad, rtol=2e-2, atol=1e-4)


@pytest.mark.parametrize(
    "args, kw, exc, words",
    [
        ((torch.randn(4, 8), 9), {}, ValueError, r"top_k must be in \[1, E=8\]"),
        ((torch.randn(4, 8), 0), {}, ValueError, "top_k"),
        ((torch.randn(8), 2), {}, ValueError, r"\[T, E\]"),
        ((torch.randn(4, 8), 2), dict(score="relu"), ValueError, "score must be one of"),
        ((torch.randn(4, 8), 2), dict(n_groups=3), ValueError, "n_groups must divide"),
        ((torch.randn(4, 8), 2), dict(n_groups=4, topk_groups=5), ValueError, "topk_groups must be in"),
        ((torch.randn(4, 8), 4), dict(n_groups=4, topk_groups=1), ValueError, "fewer than top_k=4"),
        ((torch.randn(4, 8), 2), dict(expert_bias=torch.zeros(7)), ValueError, "expert_bias must be a float32"),
        ((torch.randn(4, 8), 2), dict(expert_bias=torch.zeros(8, dtype=torch.float64)), ValueError, "float32"),
        ((torch.ones(4, 8, dtype=torch.int64), 2), {}, TypeError, "float32, bfloat16 or float16"),
    ],
)
def test_route_bad_input(args, kw, exc, words):
    with pytest.raises(exc, match=words):
        route(*args, **kw)


@needs_ext
def test_route_kernel_validates_its_own_input():
    with pytest.raises(RuntimeError, match="top_k must be in"):
        torch.ops.yilightning.route(torch.randn(4, 8), 9, 0, None, 1, 1, True, 1.0)
    with pytest.raises(RuntimeError, match="expert_bias must be"):
        torch.ops.yilightning.route(torch.randn(4, 8), 2, 0, torch.zeros(3), 1, 1, True, 1.0)


@needs_ext
@pytest.mark.parametrize("score", [0, 1])
def test_route_opcheck(device, score):
    logits = torch.randn(13, 32, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.yilightning.route.default, (logits, 4, score, None, 4, 2, True, 1.5))


def test_route_compile_fullgraph(device):
    torch._dynamo.reset()

    @torch.compile(fullgraph=True, dynamic=False)
    def step(logits):
        w, idx, p = route(logits, 4, score="sigmoid", n_groups=4, topk_groups=2)
        return w.sum() + p.mean(), idx

    logits = make(21, 32, torch.float32, device).requires_grad_()
    loss, idx = step(logits)
    loss.backward()
    ref = logits.detach().clone().requires_grad_()
    rw, ridx, rp = route_reference(ref, 4, score="sigmoid", n_groups=4, topk_groups=2)
    (rw.sum() + rp.mean()).backward()
    assert torch.equal(idx, ridx)
    torch.testing.assert_close(logits.grad, ref.grad, rtol=1e-4, atol=1e-6)


# ---- load-balancing losses -------------------------------------------------------------

def naive_set_loss(probs, indices, lo, hi):
    """L_S for experts [lo, hi) exactly as the issue defines it, one token at a time."""
    tokens = [t for t in range(probs.shape[0]) if any(lo <= e < hi for e in indices[t].tolist())]
    if not tokens:
        return 0.0
    assigned = [e for t in tokens for e in indices[t].tolist() if lo <= e < hi]
    total = 0.0
    for i in range(lo, hi):
        f = assigned.count(i) / len(assigned)
        P = sum((probs[t, i] / probs[t, lo:hi].sum()).item() for t in tokens) / len(tokens)
        total += f * P
    return (hi - lo) * total


@pytest.mark.parametrize("ep_size,partitions", [(1, 1), (2, 1), (4, 2), (2, 4)])
def test_losses_match_the_definition(ep_size, partitions):
    torch.manual_seed(0)
    probs = torch.randn(23, 16).softmax(-1)
    _, idx, _ = route_reference(torch.randn(23, 16), 3)
    st, ep, pep = load_balance_losses(probs, idx, ep_size=ep_size, partitions=partitions,
                                      coef_st=1.0, coef_ep=1.0, coef_pep=1.0)
    n_ep, n_p = 16 // ep_size, 16 // (ep_size * partitions)
    assert st.item() == pytest.approx(naive_set_loss(probs, idx, 0, 16), rel=1e-5)
    want_ep = sum(naive_set_loss(probs, idx, g * n_ep, (g + 1) * n_ep) for g in range(ep_size)) / ep_size
    want_pep = sum(naive_set_loss(probs, idx, q * n_p, (q + 1) * n_p) for q in range(ep_size * partitions))
    assert ep.item() == pytest.approx(want_ep, rel=1e-5)
    assert pep.item() == pytest.approx(want_pep / (ep_size * partitions), rel=1e-5)


def test_single_group_is_switch_loss_and_balanced_is_one():
    torch.manual_seed(1)
    probs = torch.randn(50, 8).softmax(-1)
    _, idx, _ = route_reference(torch.randn(50, 8), 2)
    st, ep, pep = load_balance_losses(probs, idx, coef_st=1.0, coef_ep=1.0, coef_pep=1.0)
    f = torch.bincount(idx.flatten(), minlength=8).float() / idx.numel()
    switch = 8 * (f * probs.mean(0)).sum()
    torch.testing.assert_close(st, switch)
    torch.testing.assert_close(ep, switch)
    torch.testing.assert_close(pep, switch)
    uniform = torch.full((8, 8), 1 / 8)
    balanced = torch.arange(8).view(8, 1)  # each expert gets one token
    st, _, _ = load_balance_losses(uniform, balanced, coef_st=1.0)
    assert st.item() == pytest.approx(1.0)


def test_losses_default_coefficients_and_gradient():
    logits = torch.randn(40, 16, requires_grad=True)
    w, idx, probs = route(logits, 4)
    st, ep, pep = load_balance_losses(probs, idx, ep_size=2, partitions=2)
    ref = load_balance_losses(probs, idx, ep_size=2, partitions=2, coef_st=1, coef_ep=1, coef_pep=1)
    torch.testing.assert_close(torch.stack([st, ep, pep]), torch.stack(ref) * torch.tensor([1e-6, 1e-4, 1e-3]))
    (st + ep + pep).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_losses_with_no_tokens_are_zero():
    st, ep, pep = load_balance_losses(torch.empty(0, 8), torch.empty(0, 2, dtype=torch.int64))
    assert st.item() == ep.item() == pep.item() == 0.0


@pytest.mark.parametrize(
    "kw, words",
    [(dict(ep_size=3), "ep_size must divide"), (dict(ep_size=2, partitions=3), "partitions must divide")],
)
def test_losses_bad_input(kw, words):
    with pytest.raises(ValueError, match=words):
        load_balance_losses(torch.rand(4, 8), torch.zeros(4, 2, dtype=torch.int64), **kw)
    with pytest.raises(ValueError, match=r"lie in \[0, E=8\)"):
        load_balance_losses(torch.rand(4, 8), torch.full((4, 2), 8))
    with pytest.raises(TypeError, match="int64"):
        load_balance_losses(torch.rand(4, 8), torch.zeros(4, 2, dtype=torch.int32))


def test_update_expert_bias_moves_toward_balance():
    bias = torch.zeros(4)
    new = update_expert_bias(bias, torch.tensor([10, 2, 4, 4]), rate=0.01)
    torch.testing.assert_close(new, torch.tensor([-0.01, 0.01, 0.01, 0.01]))
    with pytest.raises(ValueError, match="both be"):
        update_expert_bias(bias, torch.ones(5), 0.1)
