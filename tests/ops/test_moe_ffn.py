import pytest
import torch
import torch.nn.functional as F

from tests.conftest import BF16_VIA_FP32, BF16_WITHOUT_AMX
from yilightning import _ext
from yilightning.ops import grouped_gemm, moe_ffn, pack_experts, route

needs_ext = pytest.mark.skipif(_ext.module is None, reason=f"extension not loaded: {_ext.load_error}")
# T, H, E, k, I: empty input, one token (most experts empty), E=1, k=E, odd sizes, experts with
# more than 256 rows (the kernel splits them into several tasks) or more than 1024 (bf16
# backward's weight gradients then sum over several chunks), and H and I in 32s (the sizes the
# AMX tiles take: experts of 16-63 rows, of more than 256, and of more than 1024).
SHAPES = [(0, 8, 4, 2, 3), (1, 7, 16, 2, 5), (97, 33, 16, 4, 9), (50, 8, 1, 1, 4), (40, 16, 6, 6, 3),
          (700, 64, 3, 2, 40), (1100, 16, 2, 2, 8), (150, 64, 8, 2, 32), (700, 96, 3, 2, 64), (1100, 32, 2, 2, 32)]
BF16_PATHS = [torch.bfloat16, BF16_VIA_FP32, BF16_WITHOUT_AMX]


def problem(T, H, E, k, I, device, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, H, generator=g)
    w_gu = torch.randn(E, 2 * I, H, generator=g) / H**0.5
    w_dn = torch.randn(E, H, I, generator=g) / I**0.5
    weights, indices, _ = route(torch.randn(T, E, generator=g), k)
    x, w_gu, w_dn = (t.to(device=device, dtype=dtype) for t in (x, w_gu, w_dn))
    return x, indices.to(device), weights.to(device), w_gu, w_dn


def reference(x, indices, weights, w_gu, w_dn, dtype=torch.float32):
    """Token by token, in ``dtype``: sum_j w[t, j] * W_down[e] @ swiglu(W_gate_up[e] @ x[t])."""
    x, w_gu, w_dn, weights = x.to(dtype), w_gu.to(dtype), w_dn.to(dtype), weights.to(dtype)
    h = torch.einsum("tkoh,th->tko", w_gu[indices], x)  # (T, k, 2I)
    gate, up = h.chunk(2, dim=-1)
    y = torch.einsum("tkhi,tki->tkh", w_dn[indices], F.silu(gate) * up)
    return (y * weights.unsqueeze(-1)).sum(1)


@pytest.mark.parametrize("dtype", [torch.float32, *BF16_PATHS])
@pytest.mark.parametrize("T,H,E,k,I", SHAPES)
def test_inference_matches_reference(device, cpu_gemm, resolve_dtype, T, H, E, k, I, dtype):
    dtype = resolve_dtype(dtype)
    args = problem(T, H, E, k, I, device, dtype)
    with torch.no_grad():
        out, sizes = moe_ffn(*args)
    ref = reference(*args)
    assert out.shape == (T, H) and out.dtype == dtype
    assert torch.equal(sizes.cpu(), torch.bincount(args[1].flatten().cpu(), minlength=E))
    tol = 2e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, *BF16_PATHS])
@pytest.mark.parametrize("T,H,E,k,I", SHAPES)
def test_gradients_match_reference(device, cpu_gemm, resolve_dtype, T, H, E, k, I, dtype):
    dtype = resolve_dtype(dtype)
    x, indices, weights, w_gu, w_dn = problem(T, H, E, k, I, device, dtype)
    g = torch.Generator().manual_seed(5)
    grad = torch.randn(T, H, generator=g).to(device=device, dtype=dtype)
    ours = [t.detach().clone().requires_grad_() for t in (x, weights, w_gu, w_dn)]
    refs = [t.detach().clone().float().requires_grad_() for t in (x, weights, w_gu, w_dn)]
    out, _ = moe_ffn(ours[0], indices, *ours[1:])
    out.backward(grad)
    reference(refs[0], indices, *refs[1:]).backward(grad.float())
    for name, a, b in zip(("x", "weights", "w_gate_up", "w_down"), ours, refs):
        assert a.grad is not None and a.grad.dtype == a.dtype, name
        if dtype == torch.float32:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4, msg=name)
        elif b.grad.numel():  # bf16 (the composed fallback sums long groups in bf16): relative error
            assert (a.grad.float() - b.grad).norm() <= 2e-2 * b.grad.norm() + 1e-6, name


@pytest.mark.parametrize("dtype", BF16_PATHS)
@pytest.mark.parametrize("T,H,E,k,I", SHAPES[1:])
def test_bf16_within_twice_pytorch_bf16_error(resolve_dtype, T, H, E, k, I, dtype):
    """The output and every gradient in bf16 (AMX tiles, oneDNN's bf16 GEMMs or the fp32
    conversion) stay within 2x the error of the same layer computed by PyTorch in bf16."""
    x, indices, weights, w_gu, w_dn = problem(T, H, E, k, I, "cpu", resolve_dtype(dtype))
    grad = torch.randn(T, H, generator=torch.Generator().manual_seed(5)).bfloat16()
    runs = {}
    for name, ref_dtype in (("ours", None), ("fp32", torch.float32), ("torch_bf16", torch.bfloat16)):
        ins = [t.detach().clone().requires_grad_() for t in (x, weights, w_gu, w_dn)]
        out = (moe_ffn(ins[0], indices, *ins[1:])[0] if ref_dtype is None
               else reference(ins[0], indices, *ins[1:], ref_dtype))
        out.backward(grad.to(out.dtype))
        runs[name] = [out.detach().float()] + [t.grad.float() for t in ins]
    for i, what in enumerate(("out", "x", "weights", "w_gate_up", "w_down")):
        exact = runs["fp32"][i]
        err = (runs["ours"][i] - exact).norm()
        torch_err = (runs["torch_bf16"][i] - exact).norm()
        assert err <= 2 * torch_err + 1e-3 * exact.norm() + 1e-6, (what, float(err), float(torch_err))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("T", [1, 3, 8])
def test_few_tokens_with_each_skinny_kernel(skinny_isa, T, dtype):
    # a decode step: each expert sees a row or a few, the products the skinny kernels take
    args = problem(T, 40, 8, 3, 24, "cpu", dtype, seed=T)
    with torch.no_grad():
        out, _ = moe_ffn(*args)
    tol = 2e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.float(), reference(*args), rtol=tol, atol=tol)


@pytest.mark.parametrize("I", [1, 3, 7])
def test_narrow_experts_with_each_skinny_kernel(skinny_isa, I):
    # 2I < 16 gate/up columns: the skinny kernel reads each expert's gathered token rows in place
    # (H = 37: a partial vector at the end of every row for both vector widths)
    x, indices, weights, w_gu, w_dn = problem(300, 37, 8, 3, I, "cpu", seed=I)
    grad = torch.randn(300, 37, generator=torch.Generator().manual_seed(1))
    ours = [t.detach().clone().requires_grad_() for t in (x, weights, w_gu, w_dn)]
    refs = [t.detach().clone().requires_grad_() for t in (x, weights, w_gu, w_dn)]
    out, _ = moe_ffn(ours[0], indices, *ours[1:])
    ref = reference(refs[0], indices, *refs[1:])
    torch.testing.assert_close(out, ref, rtol=2e-5, atol=2e-5)
    out.backward(grad)
    ref.backward(grad)
    for name, a, b in zip(("x", "weights", "w_gate_up", "w_down"), ours, refs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4, msg=name)


def test_gradients_of_large_experts():
    # 32 MiB of gate/up weight gradient: the weight gradients come from the cache of large blocks
    x, indices, weights, w_gu, w_dn = problem(16, 1024, 8, 2, 512, "cpu", seed=4)
    grad = torch.randn(16, 1024, generator=torch.Generator().manual_seed(2))
    for _ in range(2):  # the second backward reuses the first one's freed blocks
        ours = [t.detach().clone().requires_grad_() for t in (x, weights, w_gu, w_dn)]
        moe_ffn(ours[0], indices, *ours[1:])[0].backward(grad)
    refs = [t.detach().clone().requires_grad_() for t in (x, weights, w_gu, w_dn)]
    reference(refs[0], indices, *refs[1:]).backward(grad)
    for name, a, b in zip(("x", "weights", "w_gate_up", "w_down"), ours, refs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize("dtype", BF16_PATHS)
def test_bf16_forward_of_tasks_larger_than_l2(resolve_dtype, dtype):
    # 4000 rows of one expert: tasks of 1000 rows, whose A operands (2 MiB at depth H=1024, 1.1 MiB
    # at depth I=576) the AMX kernel multiplies in two parts each, each part under 1 MiB
    x, indices, weights, w_gu, w_dn = problem(4000, 1024, 1, 1, 576, "cpu", resolve_dtype(dtype))
    with torch.no_grad():
        out, _ = moe_ffn(x, indices, weights, w_gu, w_dn)
    gate, up = (x.float() @ w_gu[0].float().t()).chunk(2, dim=-1)
    ref = (F.silu(gate) * up) @ w_dn[0].float().t() * weights.float()
    assert (out.float() - ref).norm() <= 1e-2 * ref.norm()


@needs_ext
def test_gradients_are_deterministic_across_thread_counts():
    args = problem(300, 32, 8, 3, 24, "cpu", seed=3)
    threads, runs = torch.get_num_threads(), []
    try:
        for n in (1, 2, 2):
            torch.set_num_threads(n)
            ins = [t.detach().clone().requires_grad_() for t in (args[0], args[2], args[3], args[4])]
            moe_ffn(ins[0], args[1], *ins[1:])[0].square().sum().backward()
            runs.append([t.grad for t in ins])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for run in runs[1:] for a, b in zip(runs[0], run))


@pytest.mark.parametrize("T,H,E,k,I", [(97, 33, 16, 4, 9), (700, 64, 3, 2, 40)])
def test_fused_inference_equals_training_path(device, T, H, E, k, I):
    """No gradient: the inference kernel; with one: the training kernel (CPU) or the composed ops."""
    x, indices, weights, w_gu, w_dn = problem(T, H, E, k, I, device)
    with torch.no_grad():
        fused, _ = moe_ffn(x, indices, weights, w_gu, w_dn)
    w_gu.requires_grad_()
    composed, _ = moe_ffn(x, indices, weights, w_gu, w_dn)
    composed.square().sum().backward()
    assert w_gu.grad is not None and composed.requires_grad
    torch.testing.assert_close(fused, composed.detach(), rtol=2e-5, atol=2e-5)


@needs_ext
def test_workspace_reuse_across_sizes():
    """The kept workspace grows and shrinks in use: results never depend on the previous call."""
    big, small = problem(600, 48, 8, 3, 20, "cpu", seed=1), problem(30, 48, 8, 3, 20, "cpu", seed=2)
    with torch.no_grad():
        first = moe_ffn(*big)[0]
        small_out = moe_ffn(*small)[0]
        again = moe_ffn(*big)[0]
    assert torch.equal(first, again)
    torch.testing.assert_close(small_out, reference(*small), rtol=2e-5, atol=2e-5)


@needs_ext
def test_opcheck_and_compile():
    args = problem(37, 24, 5, 2, 7, "cpu")
    torch.library.opcheck(torch.ops.yilightning.moe_ffn.default, args)
    x, indices, weights, w_gu, w_dn = (t.requires_grad_() if t.is_floating_point() else t for t in args)
    torch.library.opcheck(torch.ops.yilightning.moe_ffn_train.default, (x, indices, weights, w_gu, w_dn))
    with torch.no_grad():
        compiled = torch.compile(lambda *a: moe_ffn(*a)[0], fullgraph=True)(*args)
        torch.testing.assert_close(compiled, moe_ffn(*args)[0])
    torch._dynamo.reset()
    loss = torch.compile(lambda *a: moe_ffn(*a)[0].square().sum(), fullgraph=True)(x, indices, weights, w_gu, w_dn)
    dw = torch.autograd.grad(loss, w_gu)[0]
    ref = torch.autograd.grad(reference(x, indices, weights, w_gu, w_dn).square().sum(), w_gu)[0]
    torch.testing.assert_close(dw, ref, rtol=1e-4, atol=1e-4)


def test_bad_inputs():
    x, indices, weights, w_gu, w_dn = problem(9, 8, 4, 2, 3, "cpu")
    with torch.no_grad():
        with pytest.raises(ValueError, match="w_gate_up must be"):
            moe_ffn(x, indices, weights, w_gu[0], w_dn)
        with pytest.raises(ValueError, match="weights must have"):
            moe_ffn(x, indices, weights[:, :1], w_gu, w_dn)
        with pytest.raises(TypeError, match="share one dtype"):
            moe_ffn(x, indices, weights, w_gu.double(), w_dn)
        with pytest.raises(ValueError, match="w_down must be"):
            moe_ffn(x, indices, weights, w_gu, w_dn[:, :, :2])
        with pytest.raises((ValueError, RuntimeError), match=r"indices must lie in \[0, num_experts=4\)"):
            moe_ffn(x, indices + 3, weights, w_gu, w_dn)


needs_amx = pytest.mark.skipif(_ext.module is None or not _ext.module.build_info()["cpu_amx"],
                               reason="the tile layout is for CPUs with AMX and the compiled extension")


@needs_amx
@pytest.mark.parametrize("T,H,E,k,I", [(150, 64, 8, 2, 32), (700, 96, 3, 2, 64), (3, 64, 4, 2, 32)])
def test_tiles_give_the_same_output(T, H, E, k, I):
    """moe_ffn with pack_experts' tiles equals moe_ffn without them, bit for bit (the same tile
    products, read instead of laid out), including a decode-sized call (the skinny kernel, which
    takes the plain weights)."""
    x, indices, weights, w_gu, w_dn = problem(T, H, E, k, I, "cpu", torch.bfloat16)
    tiles = (pack_experts(w_gu), pack_experts(w_dn))
    assert tiles[0].shape == (E, 2 * I // 32, H // 32, 2, 16, 32) and tiles[0].dtype == torch.bfloat16
    assert tiles[1].shape == (E, H // 32, I // 32, 2, 16, 32)
    with torch.no_grad():
        out, sizes = moe_ffn(x, indices, weights, w_gu, w_dn, tiles=tiles)
        plain, plain_sizes = moe_ffn(x, indices, weights, w_gu, w_dn)
    assert torch.equal(out, plain) and torch.equal(sizes, plain_sizes)
    # the layout itself: tile (e, panel, block, half) row q holds, for the half's 16 columns n,
    # the pair w[e, n, 32 block + 2q], w[e, n, 32 block + 2q + 1]
    e, panel, block, half, q, col = 2, 1, 1, 1, 5, 7
    n = 32 * panel + 16 * half + col
    pair = tiles[0][e, panel, block, half, q, 2 * col:2 * col + 2]
    assert torch.equal(pair, w_gu[e, n, 32 * block + 2 * q:32 * block + 2 * q + 2])
    torch.library.opcheck(torch.ops.yilightning.pack_experts.default, (w_gu,))
    torch.library.opcheck(torch.ops.yilightning.moe_ffn.default, (x, indices, weights, w_gu, w_dn, *tiles))


@needs_amx
def test_tiles_bad_inputs(monkeypatch):
    x, indices, weights, w_gu, w_dn = problem(20, 64, 4, 2, 32, "cpu", torch.bfloat16)
    tiles = (pack_experts(w_gu), pack_experts(w_dn))
    with torch.no_grad():
        with pytest.raises(RuntimeError, match="both gate_up_tiles and down_tiles"):
            torch.ops.yilightning.moe_ffn(x, indices, weights, w_gu, w_dn, tiles[0], None)
        with pytest.raises(RuntimeError, match="down_tiles must be pack_experts of the matching weight"):
            moe_ffn(x, indices, weights, w_gu, w_dn, tiles=(tiles[0], tiles[0]))
        with pytest.raises(RuntimeError, match="gate_up_tiles must be pack_experts"):
            moe_ffn(x, indices, weights, w_gu, w_dn, tiles=(tiles[0].float(), tiles[1]))
    with pytest.raises(RuntimeError, match="multiples of 32"):
        pack_experts(torch.randn(2, 48, 32))
    with pytest.raises(ValueError, match=r"w must be a float tensor \[E, N, K\]"):
        pack_experts(w_gu[0])
    monkeypatch.setenv("YL_CPU_AMX", "0")
    with pytest.raises(RuntimeError, match="CPUs with AMX"):
        pack_experts(w_gu)
    with torch.no_grad():  # given tiles are not used without AMX: the plain weights give the same
        torch.testing.assert_close(moe_ffn(x, indices, weights, w_gu, w_dn, tiles=tiles)[0],
                                   moe_ffn(x, indices, weights, w_gu, w_dn)[0])


def test_autocast_casts_to_its_dtype(device):
    """Under autocast the expert path (and the grouped GEMM under it) runs in the autocast dtype
    with fp32 weights; their gradients come back in fp32."""
    x, indices, weights, w_gu, w_dn = problem(40, 16, 6, 2, 8, device)
    w_gu.requires_grad_()
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out, _ = moe_ffn(x, indices, weights, w_gu, w_dn)
        gg = grouped_gemm(x, w_gu, torch.tensor([40, 0, 0, 0, 0, 0], device=device), trans_b=True)
    assert out.dtype == gg.dtype == torch.bfloat16
    out.float().sum().backward()
    assert w_gu.grad.dtype == torch.float32
    want = reference(x.bfloat16(), indices, weights, w_gu.detach().bfloat16(), w_dn.bfloat16())
    torch.testing.assert_close(out.detach().float(), want, rtol=2e-2, atol=2e-2)
