import pytest
import torch
import torch.nn.functional as F

from yilightning import _ext
from yilightning.ops import cross_entropy, cross_entropy_reference, lm_head_loss, lm_head_loss_fused

needs_ext = pytest.mark.skipif(_ext.module is None, reason=f"extension not loaded: {_ext.load_error}")


def problem(N, V, device, dtype=torch.float32, ignored=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (4 * torch.randn(N, V, generator=g)).to(device=device, dtype=dtype)
    targets = torch.randint(0, V, (N,), generator=g)
    targets[torch.randperm(N, generator=g)[:ignored]] = -100
    return logits, targets.to(device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("N,V,ignored", [(1, 1, 0), (7, 33, 2), (64, 8192, 10), (300, 1000, 0)])
def test_loss_and_gradient_match_pytorch(device, N, V, ignored, dtype):
    logits, targets = problem(N, V, device, dtype, ignored)
    ours, ref = logits.clone().requires_grad_(), logits.float().clone().requires_grad_()
    loss = cross_entropy(ours, targets)
    want = F.cross_entropy(ref, targets)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(loss, want, rtol=tol, atol=tol)
    loss.backward()
    want.backward()
    assert ours.grad.dtype == dtype
    torch.testing.assert_close(ours.grad.float(), ref.grad, rtol=tol, atol=tol)


def test_all_ignored_is_nan_like_pytorch(device):
    logits, targets = problem(5, 10, device, ignored=5)
    assert torch.isnan(cross_entropy(logits, targets)) and torch.isnan(cross_entropy_reference(logits, targets))


def test_extreme_logits_stay_finite(device):
    logits = torch.tensor([[1e4, -1e4, 0.0], [-3e4, -3e4, -3e4]], device=device, requires_grad=True)
    targets = torch.tensor([1, 2], device=device)
    loss = cross_entropy(logits, targets)
    loss.backward()
    torch.testing.assert_close(loss, F.cross_entropy(logits.detach(), targets))
    assert torch.isfinite(logits.grad).all()


@needs_ext
def test_opcheck_and_compile(device):
    logits, targets = problem(9, 17, device, ignored=2)
    logits.requires_grad_()
    torch.library.opcheck(torch.ops.yilightning.cross_entropy.default, (logits, targets, -100))
    torch._dynamo.reset()
    loss = torch.compile(lambda x, t: cross_entropy(x, t), fullgraph=True)(logits, targets)
    grad = torch.autograd.grad(loss, logits)[0]
    ref = logits.detach().clone().requires_grad_()
    F.cross_entropy(ref, targets).backward()
    torch.testing.assert_close(grad, ref.grad, rtol=1e-5, atol=1e-5)


def test_bad_inputs():
    logits = torch.randn(4, 10)
    with pytest.raises(ValueError, match="targets must be int64"):
        cross_entropy(logits, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"logits must be a float \[N, V\]"):
        cross_entropy(torch.randn(4), torch.tensor([1, 2, 3, 4]))
    if _ext.has_kernel("cross_entropy", "cpu"):
        with pytest.raises(RuntimeError, match=r"targets must lie in \[0, V=10\)"):
            cross_entropy(logits, torch.tensor([1, 2, 10, 3]))


@pytest.mark.parametrize("N,H,V,ignored", [(1, 1, 1, 0), (9, 5, 3, 3), (37, 70, 1000, 5), (600, 24, 8200, 50)])
def test_lm_head_loss_matches_pytorch(cpu_gemm, N, H, V, ignored):
    # (600, 24, 8200): the rows span two chunks of logits (~16 MiB each: 511 rows at V=8200)
    g = torch.Generator().manual_seed(N + V)
    x = torch.randn(N, H, generator=g, dtype=torch.float64)
    w = torch.randn(V, H, generator=g, dtype=torch.float64) / H ** 0.5
    targets = torch.randint(0, V, (N,), generator=g)
    targets[torch.randperm(N, generator=g)[:ignored]] = -100
    ours = [t.float().requires_grad_() for t in (x, w)]
    ref = [t.clone().requires_grad_() for t in (x, w)]
    loss, want = lm_head_loss(*ours, targets), F.cross_entropy(ref[0] @ ref[1].T, targets)
    torch.testing.assert_close(loss.double(), want, rtol=1e-5, atol=1e-5)
    (3 * loss).backward()  # backward scales the gradients computed in forward
    (3 * want).backward()
    for got, exp in zip(ours, ref):
        torch.testing.assert_close(got.grad.double(), exp.grad, rtol=1e-4, atol=1e-5)


def test_lm_head_loss_without_gradients_and_all_ignored():
    x, w = torch.randn(6, 8), torch.randn(11, 8)
    targets = torch.tensor([1, 2, 3, 4, 5, 6])
    with torch.no_grad():
        torch.testing.assert_close(lm_head_loss(x, w, targets), F.cross_entropy(x @ w.T, targets))
    x.requires_grad_()
    loss = lm_head_loss(x, w, torch.full((6,), -100))  # NaN like F.cross_entropy, zero gradients
    loss.backward()
    assert torch.isnan(loss) and torch.equal(x.grad, torch.zeros_like(x))
    w.requires_grad_()
    x0 = torch.randn(0, 8, requires_grad=True)
    loss = lm_head_loss(x0, w, torch.empty(0, dtype=torch.int64))  # no rows: NaN, zero weight gradient
    loss.backward()
    assert torch.isnan(loss) and torch.equal(w.grad, torch.zeros_like(w))


def test_lm_head_loss_fuses_only_fp32_cpu_outside_autocast():
    x, w = torch.randn(4, 8), torch.randn(11, 8)
    assert lm_head_loss_fused(x, w) == _ext.has_kernel("lm_head_loss", "cpu")
    assert not lm_head_loss_fused(x.double(), w.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not lm_head_loss_fused(x, w)
        loss = lm_head_loss(x, w, torch.tensor([1, 2, 3, 4]))  # the unfused path, in bf16
    torch.testing.assert_close(loss.float(), F.cross_entropy(x @ w.T, torch.tensor([1, 2, 3, 4])), rtol=0.05, atol=0.05)


@needs_ext
def test_lm_head_loss_opcheck_and_compile():
    x, w = torch.randn(9, 6, requires_grad=True), torch.randn(13, 6, requires_grad=True)
    targets = torch.tensor([0, 12, -100, 3, 4, 5, 6, 7, -100])
    # as lm_head_loss calls it: gradients computed exactly when an input requires them
    torch.library.opcheck(torch.ops.yilightning.lm_head_loss.default, (x, w, targets, -100, True))
    torch.library.opcheck(torch.ops.yilightning.lm_head_loss.default, (x.detach(), w.detach(), targets, -100, False))
    torch._dynamo.reset()
    loss = torch.compile(lambda a, b, t: lm_head_loss(a, b, t), fullgraph=True)(x, w, targets)
    gx, gw = torch.autograd.grad(loss, (x, w))
    xr, wr = (t.detach().clone().requires_grad_() for t in (x, w))
    F.cross_entropy(xr @ wr.T, targets).backward()
    torch.testing.assert_close(gx, xr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, wr.grad, rtol=1e-5, atol=1e-5)


def test_lm_head_loss_bad_inputs():
    x, w = torch.randn(4, 8), torch.randn(10, 8)
    with pytest.raises(ValueError, match=r"hidden must be \[N, H\] and weight \[V, H\]"):
        lm_head_loss(x, torch.randn(10, 7), torch.tensor([1, 2, 3, 4]))
    with pytest.raises(ValueError, match="H >= 1"):
        lm_head_loss(torch.randn(4, 0), torch.randn(10, 0), torch.tensor([1, 2, 3, 4]))
    with pytest.raises(ValueError, match="targets must be int64"):
        lm_head_loss(x, w, torch.tensor([1, 2, 3]))
    if lm_head_loss_fused(x, w):  # its gradients come from forward: no graph of them to differentiate
        h = x.clone().requires_grad_()
        with pytest.raises(RuntimeError, match="double backward"):
            torch.autograd.grad(lm_head_loss(h, w, torch.tensor([1, 2, 3, 4])), h, create_graph=True)
    if lm_head_loss_fused(x, w):
        with pytest.raises(RuntimeError, match=r"targets must lie in \[0, V=10\)"):
            lm_head_loss(x, w, torch.tensor([1, 2, 10, 3]))
