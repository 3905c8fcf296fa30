import pytest
import torch

from yilightning import _ext
from yilightning.ops import rms_norm, rms_norm_reference

needs_ext = pytest.mark.skipif(_ext.module is None, reason=f"extension not loaded: {_ext.load_error}")


@pytest.mark.parametrize("x_dtype,w_dtype", [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16),
                                             (torch.bfloat16, torch.float32), (torch.float16, torch.float16)])
@pytest.mark.parametrize("shape", [(0, 16), (1, 1), (3, 48), (7, 97), (2, 5, 1024)])
def test_matches_reference(device, shape, x_dtype, w_dtype):
    g = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(*shape, generator=g)).to(device=device, dtype=x_dtype)
    w = torch.randn(shape[-1], generator=g).to(device=device, dtype=w_dtype)
    out, ref = rms_norm(x, w, 1e-5), rms_norm_reference(x, w, 1e-5)
    assert out.dtype == ref.dtype == torch.promote_types(x_dtype, w_dtype) and out.shape == x.shape
    tol = 1e-5 if ref.dtype == torch.float32 and x_dtype == torch.float32 else 1e-2
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradients_match_reference(device, dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 40, generator=g).to(device=device, dtype=dtype).requires_grad_()
    w = torch.randn(40, generator=g).to(device=device, dtype=dtype).requires_grad_()
    grad = torch.randn(6, 3, 40, generator=g).to(device=device, dtype=dtype)
    rms_norm(x, w).backward(grad)
    xr, wr = (t.detach().clone().requires_grad_() for t in (x, w))
    rms_norm_reference(xr, wr).backward(grad)
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(x.grad, xr.grad, rtol=tol, atol=tol)
    torch.testing.assert_close(w.grad, wr.grad, rtol=tol, atol=tol * 10)


@needs_ext
def test_opcheck_and_compile(device):
    x = torch.randn(4, 33, device=device, requires_grad=True)
    w = torch.randn(33, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.yilightning.rms_norm.default, (x, w, 1e-6))
    torch._dynamo.reset()
    torch.compile(lambda a, b: rms_norm(a, b).square().sum(), fullgraph=True)(x, w).backward()
    xr, wr = (t.detach().clone().requires_grad_() for t in (x, w))
    rms_norm_reference(xr, wr).square().sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.grad, wr.grad, rtol=1e-5, atol=1e-5)


def test_bad_inputs():
    x = torch.randn(3, 8)
    with pytest.raises(ValueError, match=r"weight must be \[C\]"):
        rms_norm(x, torch.ones(7))
    with pytest.raises(TypeError, match="float32, bfloat16 or float16"):
        rms_norm(x.double(), torch.ones(8))
    with pytest.raises(ValueError, match="eps must be >= 0"):
        rms_norm(x, torch.ones(8), -1.0)


def test_weight_gradient_is_deterministic_across_thread_counts():
    x = torch.randn(1000, 64, requires_grad=True)
    w = torch.randn(64, requires_grad=True)
    grads = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            grads.append(torch.autograd.grad(rms_norm(x, w).square().sum(), (x, w)))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*grads))
