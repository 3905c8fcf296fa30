import pytest
import torch
import torch.nn.functional as F

from yilightning import _ext
from yilightning.layers import Linear
from yilightning.ops import linear, linear_reference

needs_ext = pytest.mark.skipif(_ext.module is None, reason=f"extension not loaded: {_ext.load_error}")


def _inputs(lead, n, k, dtype, bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, k, generator=g).to(dtype)
    w = torch.randn(n, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g).to(dtype) if bias else None
    return x, w, b


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("lead", [(1,), (2,), (3,), (5,), (7,), (8,), (2, 4), (9,), (33,), (0,)])
@pytest.mark.parametrize("n,k", [(1, 1), (7, 97), (97, 7), (1000, 256), (16, 33)])
def test_matches_reference(skinny_isa, cpu_gemm, lead, n, k, dtype):
    x, w, b = _inputs(lead, n, k, dtype, bias=n % 2 == 1)
    out, ref = linear(x, w, b), linear_reference(x, w, b)
    assert out.shape == (*lead, n) and out.dtype == dtype
    if out.numel() == 0:
        return
    if dtype == torch.float32:
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * k ** 0.5)
    else:  # within 2x PyTorch's own bf16 error against the fp32 result
        exact = F.linear(x.double(), w.double(), None if b is None else b.double())
        torch_err = (F.linear(x, w, b).double() - exact).abs().max()
        assert (out.double() - exact).abs().max() <= 2 * torch_err + 1e-3


def test_strided_inputs(skinny_isa, cpu_gemm):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 2, 70, generator=g)[:, 0, :64]  # rows 140 floats apart
    w = torch.randn(64, 50, generator=g).t()  # [50, 64] with column stride 50: not row-contiguous
    torch.testing.assert_close(linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("x_t,w_t", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("m,n,k", [(15, 33, 17), (29, 65, 530), (300, 70, 1100), (170, 2100, 40)])
def test_transposed_views_in_every_combination(cpu_gemm, x_t, w_t, m, n, k):
    # Past one register tile (14 x 32), one depth block (512), one A block (168 rows) and one B
    # panel (2048 columns), with edges everywhere; transposed views reach the GEMM in place.
    g = torch.Generator().manual_seed(m + n + k)
    x = torch.randn(k, m, generator=g).t() if x_t else torch.randn(m, k, generator=g)
    w = torch.randn(k, n, generator=g).t() if w_t else torch.randn(n, k, generator=g)
    b = torch.randn(n, generator=g)
    exact = F.linear(x.double(), w.double(), b.double())
    torch.testing.assert_close(linear(x, w, b).double(), exact, rtol=1e-5, atol=1e-5 * k ** 0.5)


@pytest.mark.parametrize("rows", [1, 6, 40])
def test_gradients_match_reference(cpu_gemm, rows):
    x, w, b = _inputs((rows,), 19, 37, torch.float32, bias=True, seed=1)
    x, w, b = (t.requires_grad_() for t in (x, w, b))
    grad = torch.randn(rows, 19)
    linear(x, w, b).backward(grad)
    xr, wr, br = (t.detach().clone().requires_grad_() for t in (x, w, b))
    linear_reference(xr, wr, br).backward(grad)
    for got, want in ((x.grad, xr.grad), (w.grad, wr.grad), (b.grad, br.grad)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k,n", [(0, 4), (4, 0), (0, 0)])
def test_gradients_of_empty_products(k, n):
    """K or N = 0 (found by fuzzing: the backward's reshape(-1, 0) raised)."""
    x, w, b = torch.randn(3, k, requires_grad=True), torch.randn(n, k, requires_grad=True), torch.randn(n, requires_grad=True)
    linear(x, w, b).sum().backward()
    xr, wr, br = (t.detach().clone().requires_grad_() for t in (x, w, b))
    torch.nn.functional.linear(xr, wr, br).sum().backward()
    for got, want in ((x.grad, xr.grad), (w.grad, wr.grad), (b.grad, br.grad)):
        torch.testing.assert_close(got, want)


def test_under_autocast_takes_the_autocast_dtype():
    x, w, b = _inputs((2,), 24, 40, torch.float32, bias=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, ref = linear(x, w, b), F.linear(x, w, b)
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref.float(), rtol=2e-2, atol=5e-2)


@needs_ext
def test_opcheck_and_compile():
    x, w, b = _inputs((3,), 11, 20, torch.float32, bias=True)
    x, w, b = (t.requires_grad_() for t in (x, w, b))
    torch.library.opcheck(torch.ops.yilightning.linear.default, (x, w, b))
    torch.library.opcheck(torch.ops.yilightning.linear.default, (x, w, None))
    torch._dynamo.reset()
    torch.compile(lambda a, c, d: linear(a, c, d).square().sum(), fullgraph=True)(x, w, b).backward()
    xr, wr, br = (t.detach().clone().requires_grad_() for t in (x, w, b))
    F.linear(xr, wr, br).square().sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.grad, wr.grad, rtol=1e-5, atol=1e-5)


def test_module_is_a_drop_in_nn_linear():
    torch.manual_seed(0)
    ours, theirs = Linear(20, 9), torch.nn.Linear(20, 9)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 20)
    assert isinstance(ours, torch.nn.Linear) and ours.state_dict().keys() == theirs.state_dict().keys()
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_bad_inputs():
    x = torch.randn(2, 8)
    with pytest.raises(ValueError, match=r"x must be \[..., K\] and weight \[N, K\]"):
        linear(x, torch.randn(4, 7))
    with pytest.raises(TypeError, match="share a dtype"):
        linear(x, torch.randn(4, 8, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match=r"bias must be \[N\]"):
        linear(x, torch.randn(4, 8), torch.randn(5))


def test_large_output_path_matches_f_linear():
    # >= 32 MiB of output: the kernel writes it into memory advised to use huge pages
    x, w, b = _inputs((2, 512), 8192, 24, torch.float32, bias=True, seed=4)
    out = linear(x, w, b)
    assert out.nbytes >= 32 << 20 and out.shape == (2, 512, 8192)
    torch.testing.assert_close(out, F.linear(x, w, b), rtol=1e-5, atol=1e-5)
    x.requires_grad_()
    grad = torch.randn_like(out)
    linear(x, w).backward(grad)
    torch.testing.assert_close(x.grad, grad @ w, rtol=1e-5, atol=1e-5 * 8192 ** 0.5)


def test_float64_and_autocast_take_f_linear():
    x, w, b = _inputs((2,), 9, 20, torch.float64, bias=True)
    torch.testing.assert_close(linear(x, w, b), F.linear(x, w, b))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed dtypes are autocast's to resolve
        assert linear(x.float().bfloat16(), w.float(), b.float()).dtype == torch.bfloat16
