import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from yilightning import _ext
from yilightning.ops import (
    dequantize_fp8, dequantize_fp8_reference, expert_ffn_fp8, grouped_gemm, grouped_gemm_fp8, quantize_fp8,
    quantize_fp8_reference,
)
from yilightning.ops.fp8 import FP8_MAX, fp8_kernel_runs

needs_ext = pytest.mark.skipif(_ext.module is None, reason=f"extension not loaded: {_ext.load_error}")
# opcheck's test_schema multiplies the inputs to see whether the op changed them, which torch 2.14
# cannot do for float8 tensors on the CPU; the other checks run for the ops that take FP8 inputs
FP8_INPUT_OPCHECKS = ("test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


def hopper(device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] == 9


def blockwise(x, block):
    """x [..., R, C] zero-padded and cut into blocks: [..., RB, br, CB, bc] in float64."""
    br, bc = block
    R, C = x.shape[-2:]
    xp = torch.nn.functional.pad(x.double(), (0, -C % bc, 0, -R % br))
    return xp.unflatten(-1, (-1, bc)).unflatten(-3, (-1, br))


# (shape, block): activations, weights, ragged edges in both dims, one row
QUANT_CASES = [((5, 300), (1, 128)), ((2, 130, 256), (128, 128)), ((3, 17, 33), (4, 8)), ((1, 1), (1, 128))]


@pytest.mark.parametrize("shape,block", QUANT_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantize_rounds_within_e4m3_precision(device, shape, block, dtype):
    g = torch.Generator().manual_seed(0)
    # magnitudes spread over 2^-12..2^12 so blocks get very different scales
    x = (torch.randn(shape, generator=g) * 2.0 ** torch.randint(-12, 13, shape, generator=g)).to(device, dtype)
    q, scale = quantize_fp8(x, block)
    assert q.dtype == torch.float8_e4m3fn and q.shape == x.shape and scale.dtype == torch.float32
    br, bc = block
    assert scale.shape == (*shape[:-2], -(-shape[-2] // br), -(-shape[-1] // bc))
    tiles = blockwise(x.cpu(), block)
    amax = tiles.abs().amax(dim=(-3, -1))
    torch.testing.assert_close(scale.cpu().double(), amax / FP8_MAX, rtol=1e-6, atol=0)
    # each block's largest magnitude becomes e4m3's largest value
    assert blockwise(q.cpu().float(), block).abs().amax(dim=(-3, -1)).eq(FP8_MAX).all()
    # 3 mantissa bits: half an ulp is 1/16 of the value; below e4m3's normals (2^-6 of the scale
    # unit) the spacing is 2^-9 units, so the error is at most 2^-10 units there
    err = (dequantize_fp8(q, scale, block).cpu().double() - x.cpu().double()).abs()
    unit = blockwise(torch.ones(shape, dtype=torch.float64), block) * scale.cpu().double()[..., :, None, :, None]
    unit = unit.flatten(-2).flatten(-3, -2)[..., :shape[-2], :shape[-1]]
    assert (err <= x.cpu().double().abs() / 16 + unit * 2.0 ** -10).all()


@pytest.mark.parametrize("K", [1, 127, 128, 300, 1024])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_activation_kernel_matches_the_reference_bit_for_bit(device, K, dtype):
    g = torch.Generator().manual_seed(K)
    x = torch.randn(37, K, generator=g) * 2.0 ** torch.randint(-20, 8, (37, 1), generator=g)
    x[3] = 0  # an all-zero row: scale 1
    x[5, : min(K, 128)] = 1e-30  # below e4m3's range after scaling: flushed to zero
    x[6] = 1e-41 * torch.randn(K, generator=g)  # fp32 subnormals: the scale keeps its floor, 2^-126
    x = x.to(device, dtype)
    if dtype == torch.float16:
        x = x.clamp(-6e4, 6e4)
    q, scale = quantize_fp8(x)
    q_ref, scale_ref = quantize_fp8_reference(x)
    assert torch.equal(scale, scale_ref) and torch.equal(q.view(torch.uint8), q_ref.view(torch.uint8))
    q_t, _ = quantize_fp8(x.t().contiguous().t())  # a non-contiguous view: the same values
    assert torch.equal(q_t.view(torch.uint8), q.view(torch.uint8))


def test_rounding_equals_torchs_cast_on_every_tie_and_boundary(device):
    """Scale 1 (each row's amax is 448): q must be x cast to e4m3 by torch, bit for bit, for
    every e4m3 value, every midpoint between two (ties go to even), values one fp32 ulp either
    side of them, and the subnormal range."""
    grid = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    grid = grid[grid.isfinite()].unique()  # the 253 distinct values (+-0 are one)
    mids = (grid[1:] + grid[:-1]) / 2
    vals = torch.cat([grid, mids, mids.nextafter(torch.tensor(-1e9)), mids.nextafter(torch.tensor(1e9)),
                      torch.linspace(-2.0 ** -5, 2.0 ** -5, 4001), torch.tensor([-0.0])])
    vals = vals[vals.abs() <= 448]
    rows = torch.nn.functional.pad(vals, (0, -len(vals) % 127)).view(-1, 127)
    x = torch.cat([torch.full((rows.shape[0], 1), 448.0), rows], dim=1).to(device)  # 128 columns
    q, scale = quantize_fp8(x)
    assert scale.eq(1).all()
    assert torch.equal(q.view(torch.uint8), x.to(torch.float8_e4m3fn).view(torch.uint8))


@pytest.mark.cuda
def test_non_finite_values_on_the_gpu_make_their_block_nan():
    x = torch.randn(4, 256, device="cuda")
    x[1, 130] = float("nan")
    x[2, 5] = float("inf")
    q, scale = quantize_fp8(x)
    q_ref, scale_ref = quantize_fp8_reference(x)
    assert torch.equal(q.view(torch.uint8), q_ref.view(torch.uint8))
    assert torch.equal(scale.isnan(), scale_ref.isnan()) and scale[1, 1].isnan() and scale[2, 0].isinf()
    assert q[1, 128:].float().isnan().all() and q[0].float().isfinite().all()


def test_dequantize_every_byte_and_block_shape(device):
    q = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).view(2, 128).to(device)
    out = dequantize_fp8(q, torch.ones(2, 1, device=device))
    want = q.float()  # torch's own conversion
    assert torch.equal(out.isnan(), want.isnan()) and torch.equal(out.nan_to_num(), want.nan_to_num())
    g = torch.Generator().manual_seed(1)
    for shape, block in [((5, 300), (1, 128)), ((3, 130, 260), (128, 128)), ((2, 3, 17, 33), (4, 8)), ((0, 7), (1, 2))]:
        q, scale = quantize_fp8_reference(torch.randn(shape, generator=g).to(device), block)
        assert torch.equal(dequantize_fp8(q, scale, block), dequantize_fp8_reference(q, scale, block))


def test_quantize_zero_block_and_exact_values():
    x = torch.zeros(2, 256)
    x[1, 128:] = torch.tensor([1.0, -0.5, 448.0, 0.0] * 32)
    q, scale = quantize_fp8(x)
    assert scale.tolist() == [[1.0, 1.0], [1.0, 1.0]]  # all-zero blocks, and amax 448 -> scale 1
    assert torch.equal(dequantize_fp8(q, scale), x)


def test_tiny_blocks_keep_a_normal_scale():
    """amax / 448 of a block of fp32 subnormals is 0 (or a subnormal with few bits): 0 / 0 gave
    NaN and everything else +-448 (found by fuzzing); the scale now stops at 2^-126."""
    x = torch.tensor([[1e-44, 0.0, -1e-45] + [0.0] * 125, [3e-41] * 64 + [-1e-38] * 64])
    for fn in (quantize_fp8, quantize_fp8_reference):
        q, scale = fn(x)
        assert scale.eq(torch.finfo(torch.float32).tiny).all() and q.float().isfinite().all()
        err = (dequantize_fp8(q, scale).double() - x.double()).abs()
        assert (err <= x.double().abs() / 16 + torch.finfo(torch.float32).tiny * 2.0 ** -10).all()


def test_quantize_other_float_dtypes_and_large_blocks():
    x = torch.randn(3, 200, dtype=torch.float64)
    q, scale = quantize_fp8(x)  # float64 takes the reference (the kernel reads 16/32-bit floats)
    torch.testing.assert_close(dequantize_fp8(q, scale).double(), x, rtol=1 / 16, atol=0)
    q2, scale2 = quantize_fp8(x, block=(1, 10 ** 9))  # as (1, 200): no padding to 10^9 columns
    assert scale2.shape == (3, 1) and torch.equal(scale2, quantize_fp8(x, block=(1, 200))[1])
    assert torch.equal(dequantize_fp8(q2, scale2, (1, 10 ** 9)), dequantize_fp8_reference(q2, scale2, (1, 10 ** 9)))


def test_quantize_rejects_bad_input():
    for fn in (quantize_fp8, quantize_fp8_reference):  # the kernel and the reference alike
        with pytest.raises(ValueError, match="inf or NaN"):
            fn(torch.tensor([[1.0, float("inf")]]))
        with pytest.raises(ValueError, match="inf or NaN"):
            fn(torch.tensor([[1.0] * 200 + [float("nan")]]))
    with pytest.raises(ValueError, match=r"float tensor \[\.\.\., R, C\]"):
        quantize_fp8(torch.ones(4))
    with pytest.raises(ValueError, match="float tensor"):
        quantize_fp8(torch.ones(2, 2, dtype=torch.int64))
    for block in [(0, 128), 128, None, {1: 0, 128: 0}, (1, True)]:
        with pytest.raises(ValueError, match="block must be two positive ints"):
            quantize_fp8(torch.ones(2, 2), block=block)
    with pytest.raises(ValueError, match="not already FP8"):
        quantize_fp8(torch.ones(2, 2).to(torch.float8_e5m2))
    q, s = quantize_fp8(torch.ones(2, 200))
    with pytest.raises(ValueError, match=r"scale must be float32 \(2, 2\)"):
        dequantize_fp8(q, s[:, :1])
    with pytest.raises(ValueError, match="q must be float8_e4m3fn"):
        dequantize_fp8(q.float(), s)
    with pytest.raises(ValueError, match="scale must be on q's device cpu"):  # the kernel read it as CPU memory
        dequantize_fp8(q, s.to("meta"))
    with pytest.raises(ValueError, match="no gradient flows"):
        dequantize_fp8(q, s.requires_grad_())
    with pytest.raises(TypeError, match="scale must be a torch.Tensor"):
        dequantize_fp8(q, [[1.0, 1.0], [1.0, 1.0]])


def operands(sizes, K, N, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(sizes), K, generator=g).to(device)
    w = (torch.randn(len(sizes), N, K, generator=g) / K ** 0.5).to(device)
    (xq, xs), (wq, ws) = quantize_fp8(x), quantize_fp8(w, block=(128, 128))
    return x, w, xq, xs, wq, ws, torch.tensor(sizes, dtype=torch.int64, device=device)


def exact_product(xq, xs, wq, ws, sizes, absolute=False):
    """The product of the dequantized operands in float64, one expert at a time (of their
    absolute values with ``absolute``: the scale of an accumulation's rounding error)."""
    a, b = dequantize_fp8(xq, xs).cpu().double(), dequantize_fp8(wq, ws, (128, 128)).cpu().double()
    if absolute:
        a, b = a.abs(), b.abs()
    out, start = [], 0
    for e, m in enumerate(sizes):
        out.append(a[start:start + m] @ b[e].t())
        start += m
    return torch.cat(out)


# (group sizes, K, N): ragged K and N (not multiples of 128), empty groups, E=1, no rows at all,
# and the fine MoE layer's two products with skewed groups (the Hopper kernel's shapes)
GEMM_CASES = [([3, 0, 5, 1], 200, 130), ([0, 0], 128, 128), ([97], 256, 384), ([], 128, 128),
              ([300, 0, 1, 211, 0, 64], 1024, 512), ([129, 2, 0, 255], 256, 1024)]


@pytest.mark.parametrize("sizes,K,N", GEMM_CASES)
@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float32])
def test_grouped_gemm_fp8_matches_exact_product(device, sizes, K, N, out_dtype):
    if not sizes:
        sizes_t = torch.zeros(0, dtype=torch.int64, device=device)
        xq, xs = quantize_fp8(torch.zeros(0, K, device=device))
        wq, ws = quantize_fp8(torch.zeros(0, N, K, device=device), block=(128, 128))
        assert grouped_gemm_fp8(xq, xs, wq, ws, sizes_t, out_dtype=out_dtype).shape == (0, N)
        return
    _, _, xq, xs, wq, ws, gs = operands(sizes, K, N, device)
    out = grouped_gemm_fp8(xq, xs, wq, ws, gs, out_dtype=out_dtype)
    assert out.shape == (sum(sizes), N) and out.dtype == out_dtype and out.device == xq.device
    ref = exact_product(xq, xs, wq, ws, sizes)
    if out_dtype == torch.float32:
        torch.testing.assert_close(out.cpu().double(), ref, rtol=1e-5, atol=1e-5)
    else:
        # bf16 rounding of the result (2^-9 relative), plus the accumulation: on Hopper the FP8
        # tensor cores sum each 128-deep block with ~13 mantissa bits before CUTLASS promotes it
        # to fp32, an error relative to the products' magnitudes, not the result's (which can
        # cancel). A wrong scale, row or group boundary errs by O(0.1-1), far outside this.
        err = (out.cpu().double() - ref).abs()
        assert (err <= ref.abs() * 2.0 ** -8 + exact_product(xq, xs, wq, ws, sizes, absolute=True) * 2.0 ** -10).all()
        assert err.norm() <= 2.0 ** -8 * ref.norm()


def test_fp8_product_is_close_to_the_unquantized_one(device):
    x, w, xq, xs, wq, ws, gs = operands([100, 0, 156], 512, 256, device)
    out = grouped_gemm_fp8(xq, xs, wq, ws, gs, out_dtype=torch.float32)
    full = grouped_gemm(x, w, gs, trans_b=True)
    rel = ((out - full).norm() / full.norm()).item()
    assert rel < 0.05, rel  # e4m3 keeps 3 mantissa bits: a few percent (0.037 measured)


def test_grouped_gemm_fp8_rejects_bad_input():
    _, _, xq, xs, wq, ws, gs = operands([3, 5], 256, 128, "cpu")
    with pytest.raises(TypeError, match="a and b must be float8_e4m3fn"):
        grouped_gemm_fp8(xq.float(), xs, wq, ws, gs)
    with pytest.raises(TypeError, match="float32"):
        grouped_gemm_fp8(xq, xs.double(), wq, ws, gs)
    with pytest.raises(TypeError, match="out_dtype"):
        grouped_gemm_fp8(xq, xs, wq, ws, gs, out_dtype=torch.int32)
    with pytest.raises(ValueError, match=r"a_scale must be \[M=8, ceil\(K/128\)=2\]"):
        grouped_gemm_fp8(xq, xs[:, :1], wq, ws, gs)
    with pytest.raises(ValueError, match=r"b_scale must be \[E=2"):
        grouped_gemm_fp8(xq, xs, wq, ws[:, :, :1], gs)
    with pytest.raises(ValueError, match=r"b \[E, N, K\]"):
        grouped_gemm_fp8(xq, xs, wq.transpose(1, 2), ws, gs)
    with pytest.raises(ValueError, match=r"group_sizes must be int64 \[E=2\]"):
        grouped_gemm_fp8(xq, xs, wq, ws, gs[:1])
    with pytest.raises(ValueError, match="group_sizes must sum to the rows of a"):
        grouped_gemm_fp8(xq, xs, wq, ws, torch.tensor([3, 6]))
    with pytest.raises(TypeError, match="group_sizes must be a torch.Tensor"):
        grouped_gemm_fp8(xq, xs, wq, ws, [3, 5])
    with pytest.raises(ValueError, match="forward only"):
        grouped_gemm_fp8(xq, xs.requires_grad_(), wq, ws, gs)


def test_autocast_does_not_round_the_fp8_operands():
    """The CPU path dequantizes to fp32 and multiplies with grouped_gemm, which autocast would
    have cast to bf16 (found by fuzzing)."""
    _, _, xq, xs, wq, ws, gs = operands([3, 0, 5], 256, 128, "cpu")
    want = grouped_gemm_fp8(xq, xs, wq, ws, gs, out_dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(grouped_gemm_fp8(xq, xs, wq, ws, gs, out_dtype=torch.float32), want)


@needs_ext
def test_fake_kernel_shapes():
    with FakeTensorMode():
        a = torch.empty(10, 256, dtype=torch.float8_e4m3fn)
        b = torch.empty(3, 384, 256, dtype=torch.float8_e4m3fn)
        out = torch.ops.yilightning.grouped_gemm_fp8(a, torch.empty(10, 2), b, torch.empty(3, 3, 2),
                                                     torch.empty(3, dtype=torch.int64))
        q, scale = torch.ops.yilightning.quantize_fp8_rows(torch.empty(10, 300, dtype=torch.bfloat16))
        dq = torch.ops.yilightning.dequantize_fp8(q, scale, 1, 128)
    assert out.shape == (10, 384) and out.dtype == torch.bfloat16 and dq.shape == (10, 300)
    assert q.shape == (10, 300) and q.dtype == torch.float8_e4m3fn and scale.shape == (10, 3)


@needs_ext
def test_activation_kernel_opcheck_and_compile(device):
    x = torch.randn(9, 300, device=device, dtype=torch.bfloat16)
    torch.library.opcheck(torch.ops.yilightning.quantize_fp8_rows.default, (x,))
    if _ext.has_kernel("dequantize_fp8", device.type):
        torch.library.opcheck(torch.ops.yilightning.dequantize_fp8.default, (*quantize_fp8(x), 1, 128),
                              test_utils=FP8_INPUT_OPCHECKS)
    torch._dynamo.reset()
    fn = torch.compile(lambda x: dequantize_fp8(*quantize_fp8(x)), fullgraph=True, dynamic=False)
    torch.testing.assert_close(fn(x), dequantize_fp8(*quantize_fp8_reference(x)))


@pytest.mark.cuda
@needs_ext
def test_hopper_kernel_opcheck_and_compile():
    dev = torch.device("cuda")
    if not hopper(dev):
        pytest.skip("the FP8 kernel is for Hopper GPUs only")
    _, _, xq, xs, wq, ws, gs = operands([40, 0, 300, 7], 256, 512, dev)
    assert fp8_kernel_runs(dev, 256, 512)
    torch.library.opcheck(torch.ops.yilightning.grouped_gemm_fp8.default, (xq, xs, wq, ws, gs),
                          test_utils=FP8_INPUT_OPCHECKS)
    torch._dynamo.reset()
    fn = torch.compile(lambda *args: grouped_gemm_fp8(*args).float().relu(), fullgraph=True, dynamic=False)
    torch.testing.assert_close(fn(xq, xs, wq, ws, gs), grouped_gemm_fp8(xq, xs, wq, ws, gs).float().relu())


@needs_ext
def test_expert_ffn_fp8_compiles_fullgraph():
    torch._dynamo.reset()
    x, gs = torch.randn(50, 256), torch.tensor([20, 0, 30])
    w_gate_up = quantize_fp8(torch.randn(3, 256, 256), (128, 128))
    w_down = quantize_fp8(torch.randn(3, 256, 128), (128, 128))
    compiled = torch.compile(expert_ffn_fp8, fullgraph=True)(x, w_gate_up, w_down, gs)
    eager = expert_ffn_fp8(x, w_gate_up, w_down, gs)
    # Not bit for bit: inductor may keep in fp32 a product that eager rounds to bf16 (torch 2.11
    # does even with emulate_precision_casts), so the two differ by about that rounding.
    assert compiled.dtype == eager.dtype and compiled.shape == eager.shape
    assert (compiled - eager).norm() <= 2**-8 * eager.norm()
    torch._dynamo.reset()
