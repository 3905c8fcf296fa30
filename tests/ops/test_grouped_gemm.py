import pytest
import torch

from tests.conftest import BF16_VIA_FP32
from yilightning import _ext
from yilightning.ops import expert_ffn, grouped_gemm, grouped_gemm_reference, swiglu

needs_ext = pytest.mark.skipif(_ext.module is None, reason=f"extension not loaded: {_ext.load_error}")

# (group sizes, K, N): odd sizes, empty groups, a single group, E=1, all rows in one expert.
CASES = [
    ([3, 0, 5, 1], 7, 9),
    ([0, 0, 0], 16, 8),
    ([97], 33, 20),
    ([1], 1, 1),
    ([45, 3, 0, 20], 24, 40),  # row tiles (M < 64 E) of 16-row multiples and a rest (bf16)
    ([0, 300, 0, 2], 64, 48),
    ([40, 41, 0, 17, 1000 - 98], 32, 16),
]


def operands(sizes, K, N, trans_b, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    M, E = sum(sizes), len(sizes)
    a = torch.randn(M, K, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(E, *((N, K) if trans_b else (K, N)), generator=g).to(device=device, dtype=dtype)
    return a, b, torch.tensor(sizes, dtype=torch.int64, device=device)


def yardstick(a, b, gs, trans_b):
    """Error of PyTorch doing the same products at a's own precision, against fp32."""
    out, start = [], 0
    for g, m in enumerate(gs.tolist()):
        bg = b[g].t() if trans_b else b[g]
        out.append(a[start:start + m] @ bg)
        start += m
    low = torch.cat(out).float()
    return (low - grouped_gemm_reference(a.float(), b.float(), gs, trans_b=trans_b)).abs().max().item()


def assert_near_torch_error(ours, ref, yard):
    """``ours`` (bf16/fp16) within 2x ``yard`` (PyTorch's own error at that precision) of the fp32
    ``ref``, plus one ulp of its largest value: a sum rounded once may land on the other side of a
    rounding boundary than PyTorch's (with 2x alone, 1.7% of random gradients failed)."""
    if not ref.numel():
        return
    err = (ours.float() - ref).abs().max().item()
    ulp = torch.finfo(ours.dtype).eps * ref.abs().max().item()
    assert err <= 2 * yard + ulp + 1e-3, (err, yard, ulp)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, BF16_VIA_FP32, torch.float16])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("sizes,K,N", CASES)
def test_forward_matches_reference(device, cpu_gemm, resolve_dtype, sizes, K, N, trans_b, dtype):
    dtype = resolve_dtype(dtype)
    a, b, gs = operands(sizes, K, N, trans_b, dtype, device)
    out = grouped_gemm(a, b, gs, trans_b=trans_b)
    ref = grouped_gemm_reference(a.float(), b.float(), gs, trans_b=trans_b)
    assert out.shape == (sum(sizes), N) and out.dtype == dtype
    if dtype == torch.float32:
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)
    elif out.numel():
        assert_near_torch_error(out, ref, yardstick(a, b, gs, trans_b))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("sizes,K,N", CASES)
def test_sm80_kernel_matches_reference_on_any_gpu(monkeypatch, sizes, K, N, trans_b, dtype):
    # YL_CUDA_SM90=0: the A100 (sm80 CUTLASS) kernel on Hopper too, so a Hopper machine tests both
    monkeypatch.setenv("YL_CUDA_SM90", "0")
    a, b, gs = operands(sizes, K, N, trans_b, dtype, "cuda")
    out = grouped_gemm(a, b, gs, trans_b=trans_b)
    assert out.shape == (sum(sizes), N) and out.dtype == dtype
    assert_near_torch_error(out, grouped_gemm_reference(a.float(), b.float(), gs, trans_b=trans_b),
                            yardstick(a, b, gs, trans_b))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, BF16_VIA_FP32])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("sizes,K,N", CASES[:5])
def test_gradients_match_reference(device, cpu_gemm, resolve_dtype, sizes, K, N, trans_b, dtype):
    dtype = resolve_dtype(dtype)
    a, b, gs = operands(sizes, K, N, trans_b, dtype, device, seed=1)
    a.requires_grad_(), b.requires_grad_()
    a32 = a.detach().float().requires_grad_()
    b32 = b.detach().float().requires_grad_()
    # its own generator: drawn from the global one, the gradient changed with the tests run before
    grad = torch.randn(sum(sizes), N, generator=torch.Generator().manual_seed(2)).to(device)
    grouped_gemm(a, b, gs, trans_b=trans_b).backward(grad.to(dtype))
    grouped_gemm_reference(a32, b32, gs, trans_b=trans_b).backward(grad)
    if dtype == torch.float32:
        torch.testing.assert_close(a.grad, a32.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(b.grad, b32.grad, rtol=1e-4, atol=1e-4)
    else:  # near the error of PyTorch autograd doing the per-group products in bf16
        a_l, b_l = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
        out, start = [], 0
        for g, m in enumerate(sizes):
            out.append(a_l[start:start + m] @ (b_l[g].t() if trans_b else b_l[g]))
            start += m
        torch.cat(out).backward(grad.to(dtype))
        for ours, torch_low, ref in ((a.grad, a_l.grad, a32.grad), (b.grad, b_l.grad, b32.grad)):
            yard = (torch_low.float() - ref).abs().max().item() if ref.numel() else 0.0
            assert_near_torch_error(ours, ref, yard)
    for g, m in enumerate(sizes):  # an expert without rows gets an exactly zero gradient
        if m == 0:
            assert not b.grad[g].any()


def test_non_contiguous_operands(device):
    a, b, gs = operands([5, 0, 6], 12, 10, False, torch.float32, device)
    a_nc = torch.randn(12, 11, device=device).t()  # [11, 12], not contiguous
    b_nc = b.transpose(1, 2).contiguous().transpose(1, 2)
    ref = grouped_gemm_reference(a_nc, b_nc, gs)
    torch.testing.assert_close(grouped_gemm(a_nc, b_nc, gs), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, BF16_VIA_FP32, torch.float16])
def test_forward_and_backward_under_autocast(device, resolve_dtype, dtype):
    """fp32 operands under autocast run in its dtype, backward inside the region too. The CPU
    kernel's fp32 tiles (fp16, and bf16 without bf16 units) once went through an at::mm that
    autocast re-cast to the low dtype, and the kernel read the product as fp32."""
    dtype = resolve_dtype(dtype)
    a, b, gs = operands([5, 0, 19], 24, 16, True, torch.float32, device)
    a.requires_grad_()
    b.requires_grad_()
    with torch.autocast(device.type, dtype=dtype):
        out = grouped_gemm(a, b, gs, trans_b=True)
        out.float().sum().backward()
    assert out.dtype == dtype and a.grad.dtype == b.grad.dtype == torch.float32
    ref = grouped_gemm_reference(a.detach().to(dtype).float(), b.detach().to(dtype).float(), gs, trans_b=True)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=5e-2)
    ones = torch.ones_like(ref)
    want_da = grouped_gemm_reference(ones, b.detach().to(dtype).float().transpose(1, 2), gs, trans_b=True)
    torch.testing.assert_close(a.grad, want_da, rtol=2e-2, atol=5e-2)


@needs_ext
def test_large_outputs_reuse_their_memory():
    """Large outputs come from the CPU kernels' cache of (huge-page) blocks: correct,
    handed out again once freed (no fresh page faults), and resizable like any tensor."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4096, 8, generator=g), torch.randn(2, 8, 2048, generator=g)
    gs = torch.tensor([1000, 3096])
    c = grouped_gemm(a, b, gs)  # 4096 x 2048 fp32: 32 MiB
    torch.testing.assert_close(c, torch.cat([a[:1000] @ b[0], a[1000:] @ b[1]]))
    first = c.data_ptr()
    del c
    other = torch.empty(8 << 20)  # 32 MiB from glibc in between: it may map the freed address anew
    c = grouped_gemm(a, b, gs)
    assert other.data_ptr() != first
    assert c.data_ptr() == first
    head = c[:2].clone()
    c.resize_(8192, 2048)
    assert torch.equal(c[:2], head)


@needs_ext
def test_output_cache_gives_back_the_oldest_blocks_first():
    """The cache keeps at most 512 MiB of freed blocks: once sizes that no longer come back fill
    it, a new size is still kept (the blocks freed longest ago go back to the OS instead)."""
    a, gs = torch.ones(4096, 1), torch.tensor([4096])
    for n in (16384, 15872):  # two stale blocks, 256 MiB and 248 MiB
        del_me = grouped_gemm(a, torch.ones(1, 1, n), gs)
        del del_me
    c = grouped_gemm(a, torch.ones(1, 1, 2048), gs)  # 32 MiB: room only if the first is given back
    first = c.data_ptr()
    del c
    other = torch.empty(8 << 20)  # 32 MiB from glibc in between: it may map a freed address anew
    c = grouped_gemm(a, torch.ones(1, 1, 2048), gs)
    assert other.data_ptr() != first
    assert c.data_ptr() == first
    assert torch.equal(c, torch.ones(4096, 2048))


@pytest.mark.parametrize(
    "a, b, gs, kw, exc, words",
    [
        (torch.randn(5, 4), torch.randn(2, 4, 3), torch.tensor([2, 2]), {}, ValueError, "sum to the rows of a"),
        (torch.randn(5, 4), torch.randn(2, 4, 3), torch.tensor([6, -1]), {}, ValueError, ">= 0"),
        (torch.randn(5, 4), torch.randn(2, 5, 3), torch.tensor([2, 3]), {}, ValueError, "check trans_b"),
        (torch.randn(5, 4), torch.randn(2, 4, 3), torch.tensor([2, 3]), dict(trans_b=True), ValueError, "K=3"),
        (torch.randn(5, 4), torch.randn(2, 4, 3), torch.tensor([5]), {}, ValueError, r"int64 \[E=2\]"),
        (torch.randn(5, 4), torch.randn(2, 4, 3), torch.tensor([2, 3], dtype=torch.int32), {}, ValueError, "int64"),
        (torch.randn(5, 4), torch.randn(2, 4, 3).double(), torch.tensor([2, 3]), {}, TypeError, "share one of"),
        (torch.randn(5, 4, 1), torch.randn(2, 4, 3), torch.tensor([2, 3]), {}, ValueError, r"\[M, K\]"),
        (torch.randn(5, 4), torch.randn(4, 3), torch.tensor([2, 3]), {}, ValueError, r"\[E, K, N\]"),
        # sizes whose int64 sum wraps round to M (found by fuzzing)
        (torch.randn(12, 4), torch.randn(4, 4, 3), torch.tensor([2**63 - 1, 2**63 - 1, 2, 12]), {}, ValueError,
         "sum to the rows of a"),
    ],
)
def test_bad_input(a, b, gs, kw, exc, words):
    with pytest.raises(exc, match=words):
        grouped_gemm(a, b, gs, **kw)


@needs_ext
def test_kernel_validates_its_own_input():
    with pytest.raises(RuntimeError, match="must sum to the number of rows"):
        torch.ops.yilightning.grouped_gemm(torch.randn(5, 4), torch.randn(2, 4, 3), torch.tensor([2, 2]), False)
    with pytest.raises(RuntimeError, match="is negative"):
        torch.ops.yilightning.grouped_gemm(torch.randn(5, 4), torch.randn(2, 4, 3), torch.tensor([-1, 6]), False)
    wraps = torch.tensor([2**63 - 1, 2**63 - 1, 2, 12])  # an int64 sum of 12
    with pytest.raises(RuntimeError, match="the first 1 already sum to more"):
        torch.ops.yilightning.grouped_gemm(torch.randn(12, 4), torch.randn(4, 4, 3), wraps, False)
    with pytest.raises(RuntimeError, match="the first 1 already sum to more"):
        torch.ops.yilightning.grouped_gemm_wgrad(torch.randn(12, 4), torch.randn(12, 3), wraps, False)
    with pytest.raises(RuntimeError, match="group_sizes must be a 1-D int64"):
        torch.ops.yilightning.grouped_gemm_wgrad(torch.randn(5, 4), torch.randn(5, 3), torch.tensor([2.0, 3.0]), False)


@needs_ext
@pytest.mark.parametrize("trans_b", [False, True])
def test_opcheck(device, trans_b):
    a, b, gs = operands([3, 0, 4], 8, 6, trans_b, torch.float32, device)
    torch.library.opcheck(torch.ops.yilightning.grouped_gemm.default, (a.requires_grad_(), b.requires_grad_(), gs, trans_b))
    dc = torch.randn(7, 6, device=device)
    torch.library.opcheck(torch.ops.yilightning.grouped_gemm_wgrad.default, (a.detach(), dc, gs, trans_b))


@pytest.mark.skipif(_ext.module is None, reason="the fallback reference loops over host-side group sizes: a graph "
                    "break by design; fullgraph tracing is a property of the compiled op")
def test_compile_fullgraph(device):
    torch._dynamo.reset()
    a, b, gs = operands([3, 0, 4], 8, 6, True, torch.float32, device)
    a.requires_grad_()
    fn = torch.compile(lambda a, b, gs: grouped_gemm(a, b, gs, trans_b=True).relu(), fullgraph=True, dynamic=False)
    out = fn(a, b, gs)
    out.sum().backward()
    a_ref = a.detach().clone().requires_grad_()
    grouped_gemm_reference(a_ref, b, gs, trans_b=True).relu().sum().backward()
    torch.testing.assert_close(out, grouped_gemm_reference(a.detach(), b, gs, trans_b=True).relu())
    torch.testing.assert_close(a.grad, a_ref.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("recompute", [False, True])
def test_expert_ffn_matches_per_expert_loop(device, recompute):
    torch.manual_seed(0)
    sizes, H, inter = [4, 0, 7, 2], 16, 12
    gs = torch.tensor(sizes, device=device)
    x = torch.randn(sum(sizes), H, device=device, requires_grad=True)
    w1 = torch.randn(4, 2 * inter, H, device=device, requires_grad=True)
    w2 = torch.randn(4, H, inter, device=device, requires_grad=True)
    y = expert_ffn(x, w1, w2, gs, recompute=recompute)
    ref, start = [], 0
    for g, m in enumerate(sizes):
        xs = x[start:start + m]
        ref.append(swiglu(xs @ w1[g].t()) @ w2[g].t())
        start += m
    ref = torch.cat(ref)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-4)
    grads = torch.autograd.grad(y.square().sum(), (x, w1, w2))
    ref_grads = torch.autograd.grad(ref.square().sum(), (x, w1, w2))
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)
