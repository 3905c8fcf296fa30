import pytest
import torch
import torch.nn.functional as F

from yilightning import _ext
from yilightning.ops import cross_entropy, cross_entropy_reference

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
