import pytest
import torch
import torch.nn.functional as F

from yilightning import _ext
from yilightning.ops import swiglu, swiglu_reference

needs_ext = pytest.mark.skipif(_ext.module is None, reason=f"extension not loaded: {_ext.load_error}")
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
SHAPES = [(1, 2), (7, 14), (97, 2 * 97), (3, 5, 2 * 1000), (2, 2 * 4096 + 2), (0, 8), (5, 0), (2 * 7,)]


def same_precision_err(x: torch.Tensor, ref32: torch.Tensor) -> float:
    """Error of PyTorch doing the same computation in x's own dtype (the tolerance yardstick)."""
    gate, up = x.chunk(2, dim=-1)
    return (F.silu(gate) * up).float().sub(ref32).abs().max().item() if ref32.numel() else 0.0


def assert_close_to_fp32(out: torch.Tensor, ref32: torch.Tensor, x: torch.Tensor) -> None:
    assert out.dtype == x.dtype and out.shape == ref32.shape
    if out.numel() == 0:
        return
    err = (out.float() - ref32).abs().max().item()
    if x.dtype == torch.float32:
        torch.testing.assert_close(out, ref32, rtol=1e-6, atol=1e-6)
    else:  # at most 2x the error of PyTorch at the same precision
        assert err <= 2 * same_precision_err(x, ref32) + 1e-6, err


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(device, shape, dtype):
    torch.manual_seed(0)
    x = torch.randn(shape, device=device).mul(3).to(dtype)
    ref32 = swiglu_reference(x.float())
    assert_close_to_fp32(swiglu(x), ref32, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 2), (7, 14), (97, 2 * 97), (3, 5, 2 * 1000)])
def test_backward_matches_reference_autograd(device, shape, dtype):
    torch.manual_seed(1)
    x = torch.randn(shape, device=device).mul(3).to(dtype).requires_grad_()
    x32 = x.detach().float().requires_grad_()
    grad = torch.randn(*shape[:-1], shape[-1] // 2, device=device)
    swiglu(x).backward(grad.to(dtype))
    swiglu_reference(x32).backward(grad)
    assert x.grad.dtype == dtype
    if dtype == torch.float32:
        torch.testing.assert_close(x.grad, x32.grad, rtol=1e-5, atol=1e-5)
    else:  # yardstick: PyTorch autograd of the same function at this precision
        xl = x.detach().clone().requires_grad_()
        gate, up = xl.chunk(2, dim=-1)
        (F.silu(gate) * up).backward(grad.to(dtype))
        torch_err = (xl.grad.float() - x32.grad).abs().max().item()
        assert (x.grad.float() - x32.grad).abs().max().item() <= 2 * torch_err + 1e-6


def test_extreme_values_are_finite(device):
    x = torch.tensor([[-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]], device=device)
    out = swiglu(x)
    torch.testing.assert_close(out, swiglu_reference(x), rtol=1e-6, atol=1e-6)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("make", ["transpose", "slice_rows", "offset_view"])
def test_non_contiguous_and_offset_inputs(device, make):
    torch.manual_seed(2)
    base = torch.randn(33, 64, device=device)
    x = {"transpose": base.t()[:, :32], "slice_rows": base[::2], "offset_view": base.view(-1)[1:1 + 31 * 64].view(31, 64)}[make]
    assert not x.is_contiguous() or x.storage_offset() == 1
    torch.testing.assert_close(swiglu(x), swiglu_reference(x), rtol=1e-6, atol=1e-6)


def test_gradient_through_non_contiguous_input(device):
    base = torch.randn(16, 40, device=device, requires_grad=True)
    ref = base.detach().clone().requires_grad_()
    swiglu(base.t()).sum().backward()
    swiglu_reference(ref.t()).sum().backward()
    torch.testing.assert_close(base.grad, ref.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "x, exc, words",
    [
        (torch.randn(4, 7), ValueError, "must be even"),
        (torch.randn(()), ValueError, "at least one dimension"),
        (torch.ones(4, 8, dtype=torch.int32), TypeError, "float32, bfloat16 or float16"),
        (torch.randn(4, 8, dtype=torch.float64), TypeError, "x.float()"),
        ([1.0, 2.0], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_raises_clear_error(x, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")):
        swiglu(x)


@needs_ext
def test_kernel_validates_its_own_input():
    # Called directly (bypassing the Python checks), the C++ kernel still refuses bad input.
    with pytest.raises(RuntimeError, match=r"x.shape\[-1\] must be even"):
        torch.ops.yilightning.swiglu(torch.randn(4, 7))
    with pytest.raises(RuntimeError, match="grad must have shape"):
        torch.ops.yilightning.swiglu_backward(torch.randn(4, 3), torch.randn(4, 8))
    with pytest.raises(RuntimeError, match="float32, bfloat16 or float16"):
        torch.ops.yilightning.swiglu(torch.ones(4, 8, dtype=torch.int64))


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck(device, dtype):
    x = torch.randn(5, 2 * 33, device=device, dtype=dtype, requires_grad=True)
    torch.library.opcheck(torch.ops.yilightning.swiglu.default, (x,))
    torch.library.opcheck(torch.ops.yilightning.swiglu_backward.default, (torch.randn(5, 33, device=device, dtype=dtype), x.detach()))


def test_compile_fullgraph(device):
    torch._dynamo.reset()
    fn = torch.compile(lambda x: swiglu(x) * 2, fullgraph=True, dynamic=False)
    x = torch.randn(9, 2 * 17, device=device, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    out = fn(x)
    out.sum().backward()
    (swiglu_reference(x_ref) * 2).sum().backward()
    torch.testing.assert_close(out, swiglu_reference(x_ref.detach()) * 2)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
