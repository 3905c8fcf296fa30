import pytest
import torch

from yilightning import _ext
from yilightning.ops import (
    append_kv, attention, attention_reference, decode_attention, decode_attention_reference, rotary,
    rotary_reference,
)

needs_ext = pytest.mark.skipif(_ext.module is None, reason=f"extension not loaded: {_ext.load_error}")


def packed(lengths, hq, hk, d, device, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    q, k, v = (torch.randn(n, h, d, generator=g).to(device=device, dtype=dtype) for h in (hq, hk, hk))
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=device)
    return q, k, v, cu


def masked_sdpa_err(q, k, v, cu, window, ref32):
    """Error of the same masked attention computed by PyTorch at q's own precision."""
    low = attention_reference(q.float(), k.float(), v.float(), cu, window=window).to(q.dtype)  # inputs rounded
    return (low.float() - ref32).abs().max().item()


CASES = [
    ([1], None), ([7], None), ([97], None), ([1000], None),
    ([1000], 1), ([97], 1000), ([300], 64), ([5, 1, 33, 200, 2], None), ([5, 1, 33, 200, 2], 16),
    ([0, 10, 0], 3),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("hq,hk,d", [(2, 2, 64), (4, 2, 128), (8, 1, 64)])
@pytest.mark.parametrize("lengths,window", CASES)
def test_forward_matches_reference(device, cpu_gemm, lengths, window, hq, hk, d, dtype):
    q, k, v, cu = packed(lengths, hq, hk, d, device, dtype)
    out = attention(q, k, v, cu, window=window)
    ref = attention_reference(q.float(), k.float(), v.float(), cu, window=window)
    assert out.shape == q.shape and out.dtype == dtype
    if dtype == torch.float32:
        torch.testing.assert_close(out, ref, rtol=2e-5, atol=2e-5)
    elif out.numel():
        assert (out.float() - ref).abs().max().item() <= 2 * masked_sdpa_err(q, k, v, cu, window, ref) + 2e-3


@pytest.mark.parametrize("lengths,window", [([2600, 300], 2100), ([700, 5], 2040)])
def test_forward_long_window_and_odd_gqa(device, lengths, window):
    """Windows too wide for one key block (the online-softmax path) and 3 query heads per kv head."""
    q, k, v, cu = packed(lengths, 6, 2, 64, device)
    out = attention(q, k, v, cu, window=window)
    torch.testing.assert_close(out, attention_reference(q, k, v, cu, window=window), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("hq,hk,d", [(3, 1, 40), (5, 5, 97), (2, 1, 16)])
@pytest.mark.parametrize("lengths,window", [([300], None), ([5, 260, 33], 20)])
def test_odd_head_dims_and_groups(device, lengths, window, hq, hk, d):
    """Head dims that are neither 64 nor 128 (nor a multiple of 16), and 2 or 3 query heads per
    kv head (stacked query blocks that a sequence end cuts short); forward and gradients."""
    q, k, v, cu = packed(lengths, hq, hk, d, device)
    ours = [t.clone().requires_grad_() for t in (q, k, v)]
    refs = [t.clone().requires_grad_() for t in (q, k, v)]
    out, ref = attention(*ours, cu, window=window), attention_reference(*refs, cu, window=window)
    torch.testing.assert_close(out, ref, rtol=2e-5, atol=2e-5)
    grad = torch.randn_like(q)
    out.backward(grad)
    ref.backward(grad)
    for a, b in zip(ours, refs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hq,hk,d", [(2, 2, 64), (4, 2, 128), (8, 1, 64)])
@pytest.mark.parametrize("lengths,window", [([97], None), ([300], 64), ([5, 1, 33, 130, 2], None), ([200, 70], 16),
                                            ([129], 1), ([530, 300], None)])
@pytest.mark.parametrize("threads", [1, 8])
def test_gradients_match_reference(device, cpu_gemm, lengths, window, hq, hk, d, threads):
    # the CPU backward runs one pass per (sequence, kv head) when there are at least 2 such tasks
    # per thread, two passes otherwise: 1 and 8 threads take each path for most of these shapes
    q, k, v, cu = packed(lengths, hq, hk, d, device, seed=1)
    grad = torch.randn_like(q)
    ours = [t.clone().requires_grad_() for t in (q, k, v)]
    refs = [t.clone().requires_grad_() for t in (q, k, v)]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        attention(*ours, cu, window=window).backward(grad)
    finally:
        torch.set_num_threads(before)
    attention_reference(*refs, cu, window=window).backward(grad)
    for a, b in zip(ours, refs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threads", [1, 2])
def test_windowed_gradients_do_not_depend_on_recycled_memory(device, threads):
    """Sequences longer than a key block plus the window, on the one-pass backward: the rows of
    dQ past a window's reach were left unwritten by the key block meant to write them and then
    added to, so dQ held whatever its recycled memory held (found by fuzzing; fresh memory is
    zero, hence the repeats)."""
    q, k, v, cu = packed([600, 300, 47, 600], 2, 1, 64, device, seed=3)
    q = q.requires_grad_()
    ref, = torch.autograd.grad(attention_reference(q, k, v, cu, window=16).sum(), q)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(3):
            dq, = torch.autograd.grad(attention(q, k, v, cu, window=16).sum(), q)
            torch.testing.assert_close(dq, ref, rtol=1e-4, atol=1e-4)
    finally:
        torch.set_num_threads(before)


def test_bf16_gradients_close_to_fp32(device):
    q, k, v, cu = packed([150, 40], 4, 2, 64, device, torch.bfloat16, seed=2)
    grad = torch.randn(q.shape, device=device)
    ours = [t.clone().requires_grad_() for t in (q, k, v)]
    refs = [t.float().requires_grad_() for t in (q, k, v)]
    attention(*ours, cu, window=32).backward(grad.to(torch.bfloat16))
    attention_reference(*refs, cu, window=32).backward(grad)
    for a, b in zip(ours, refs):
        assert a.grad.dtype == torch.bfloat16
        torch.testing.assert_close(a.grad.float(), b.grad, rtol=5e-2, atol=5e-2)


def test_no_attention_across_sequences(device):
    q, k, v, cu = packed([6, 6], 2, 2, 64, device)
    out = attention(q, k, v, cu)
    v2 = v.clone()
    v2[:6] += 100  # change the first sequence's values: the second must not move
    torch.testing.assert_close(attention(q, k, v2, cu)[6:], out[6:])


def test_window_one_is_identity_on_values(device):
    q, k, v, cu = packed([50], 4, 2, 64, device)
    out = attention(q, k, v, cu, window=1)
    torch.testing.assert_close(out, v.repeat_interleave(2, dim=1), rtol=1e-6, atol=1e-6)


def test_custom_scale(device):
    q, k, v, cu = packed([40], 2, 2, 64, device)
    torch.testing.assert_close(attention(q, k, v, cu, scale=0.3), attention_reference(q, k, v, cu, scale=0.3),
                               rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize(
    "make, exc, words",
    [
        (lambda: packed([5], 3, 2, 64, "cpu"), ValueError, "multiple of key/value heads"),
        (lambda: packed([5], 0, 1, 64, "cpu"), ValueError, "positive multiple"),
        (lambda: packed([5], 2, 0, 64, "cpu"), ValueError, "positive multiple"),
        (lambda: (*packed([5], 2, 2, 64, "cpu")[:3], torch.tensor([0, 4], dtype=torch.int32)), ValueError, "end at N=5"),
        (lambda: (*packed([5], 2, 2, 64, "cpu")[:3], torch.tensor([0, 3, 2, 5], dtype=torch.int32)), ValueError,
         "never decrease"),
        (lambda: (*packed([5], 2, 2, 64, "cpu")[:3], torch.tensor([0, 5])), ValueError, "int32"),
        (lambda: (torch.randn(5, 2, 64), torch.randn(4, 2, 64), torch.randn(4, 2, 64),
                  torch.tensor([0, 5], dtype=torch.int32)), ValueError, r"\[N=5, Hk, D=64\]"),
        (lambda: (torch.randn(5, 2, 64).double(),) * 3 + (torch.tensor([0, 5], dtype=torch.int32),), TypeError,
         "share one of"),
    ],
)
def test_bad_input(make, exc, words):
    q, k, v, cu = make()
    with pytest.raises(exc, match=words):
        attention(q, k, v, cu)


def test_bad_window():
    q, k, v, cu = packed([5], 2, 2, 64, "cpu")
    with pytest.raises(ValueError, match="window must be >= 1"):
        attention(q, k, v, cu, window=0)


@needs_ext
def test_kernel_validates_its_own_input():
    q, k, v, cu = packed([5], 2, 2, 64, "cpu")
    with pytest.raises(RuntimeError, match="must not decrease"):
        torch.ops.yilightning.attention(q, k, v, torch.tensor([0, 3, 2, 5], dtype=torch.int32), 0, 0.125)
    with pytest.raises(RuntimeError, match="multiple of the key/value heads"):
        torch.ops.yilightning.attention(torch.randn(5, 3, 64), k, v, cu, 0, 0.125)
    with pytest.raises(RuntimeError, match="positive multiple"):  # zero heads: no division by zero
        torch.ops.yilightning.attention(torch.randn(5, 0, 64), k, v, cu, 0, 0.125)
    with pytest.raises(RuntimeError, match="head dim D must be >= 1"):
        torch.ops.yilightning.attention(torch.randn(5, 2, 0), torch.randn(5, 2, 0), torch.randn(5, 2, 0), cu, 0, 0.1)


@needs_ext
@pytest.mark.parametrize("window", [0, 3])
def test_opcheck(device, window):
    q, k, v, cu = packed([4, 9], 4, 2, 64, device)
    torch.library.opcheck(torch.ops.yilightning.attention.default,
                          (q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), cu, window, 0.125))


def test_compile_fullgraph(device):
    torch._dynamo.reset()
    q, k, v, cu = packed([30, 11], 4, 2, 64, device)
    q.requires_grad_()
    fn = torch.compile(lambda q, k, v, cu: attention(q, k, v, cu, window=8).sum(), fullgraph=True, dynamic=False)
    fn(q, k, v, cu).backward()
    q_ref = q.detach().clone().requires_grad_()
    attention_reference(q_ref, k, v, cu, window=8).sum().backward()
    torch.testing.assert_close(q.grad, q_ref.grad, rtol=1e-4, atol=1e-4)


# ---- decode over a KV cache -------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("lens,S,window", [([1, 5, 64], 64, None), ([3000, 17], 5000, None), ([40, 7], 64, 16),
                                           ([100, 16, 3], 16, 16), ([5000, 2], 5000, 1000)])
def test_decode_matches_reference(device, skinny_isa, lens, S, window, dtype):
    g = torch.Generator().manual_seed(0)
    B, Hq, Hk, D = len(lens), 8, 2, 64
    q = torch.randn(B, Hq, D, generator=g).to(device=device, dtype=dtype)
    kc, vc = (torch.randn(B, S, Hk, D, generator=g).to(device=device, dtype=dtype) for _ in range(2))
    cl = torch.tensor(lens, device=device)
    out = decode_attention(q, kc, vc, cl, window=window)
    ref = decode_attention_reference(q.float(), kc.float(), vc.float(), cl, window=window)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("window", [None, 8])
def test_decode_equals_last_row_of_prefill(device, window):
    q, k, v, cu = packed([37], 4, 2, 64, device)
    prefill = attention(q, k, v, cu, window=window)
    kc, vc = k[None], v[None]  # a contiguous cache holding all 37 tokens
    out = decode_attention(q[-1:], kc, vc, torch.tensor([37], device=device), window=window)
    torch.testing.assert_close(out[0], prefill[-1], rtol=1e-5, atol=1e-5)


def test_ring_buffer_generation_matches_prefill_over_several_windows(device):
    W, T = 6, 23  # wraps the ring almost four times
    q, k, v, cu = packed([T], 4, 2, 64, device, seed=3)
    prefill = attention(q, k, v, cu, window=W)
    kc = torch.zeros(1, W, 2, 64, device=device)
    vc = torch.zeros_like(kc)
    for t in range(T):
        append_kv(kc, vc, k[t:t + 1], v[t:t + 1], torch.tensor([t], device=device), ring=True)
        out = decode_attention(q[t:t + 1], kc, vc, torch.tensor([t + 1], device=device), window=W)
        torch.testing.assert_close(out[0], prefill[t], rtol=1e-5, atol=1e-5)


def test_append_kv_contiguous_and_bad_positions(device):
    kc = torch.zeros(2, 4, 1, 8, device=device)
    vc = torch.zeros_like(kc)
    k = torch.ones(2, 1, 8, device=device)
    append_kv(kc, vc, k, 2 * k, torch.tensor([0, 3], device=device))
    assert kc[0, 0].eq(1).all() and kc[1, 3].eq(1).all() and vc[1, 3].eq(2).all() and kc[0, 3].eq(0).all()
    if device.type == "cpu":
        with pytest.raises(ValueError, match="does not fit a cache of 4 slots"):
            append_kv(kc, vc, k, k, torch.tensor([0, 4]))
        for ring in (False, True):  # a negative position once wrote the last slot
            with pytest.raises(ValueError, match="positions must be >= 0"):
                append_kv(kc, vc, k, k, torch.tensor([-1, 0]), ring=ring)


def test_decode_bad_input():
    q = torch.randn(2, 4, 64)
    kc = torch.randn(2, 8, 2, 64)
    with pytest.raises(ValueError, match=r"in \[1, S=8\]"):
        decode_attention(q, kc, kc, torch.tensor([3, 9]))
    with pytest.raises(ValueError, match=r"in \[1, S=8\]"):
        decode_attention(q, kc, kc, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="do not fit q"):
        decode_attention(torch.randn(2, 3, 64), kc, kc, torch.tensor([3, 4]))
    with pytest.raises(ValueError, match="cache_seqlens must be int32/int64"):
        decode_attention(q, kc, kc, torch.tensor([3.0, 4.0]))
    empty = torch.randn(2, 0, 2, 64)
    with pytest.raises(ValueError, match="S >= 1"):
        decode_attention(q, empty, empty, torch.tensor([1, 1]))
    if _ext.module is not None:  # the kernels refuse it too (CUDA lengths are not checked in Python)
        with pytest.raises(RuntimeError, match="at least one slot"):
            torch.ops.yilightning.decode_attention(q, empty, empty, torch.tensor([1, 1]), 0, 0.125)


@needs_ext
def test_decode_opcheck(device):
    q = torch.randn(2, 4, 64, device=device)
    kc = torch.randn(2, 8, 2, 64, device=device)
    torch.library.opcheck(torch.ops.yilightning.decode_attention.default, (q, kc, kc, torch.tensor([3, 8], device=device), 0, 0.125))
    vc = torch.randn(2, 8, 2, 64, device=device)
    torch.library.opcheck(torch.ops.yilightning.decode_attention.default,
                          (q.requires_grad_(), kc.requires_grad_(), vc.requires_grad_(),
                           torch.tensor([3, 8], device=device), 0, 0.125))


@pytest.mark.parametrize("window,lens", [(None, [3, 8]), (8, [5, 13])])  # a contiguous cache; a wrapped ring
def test_decode_gradients_match_reference(device, window, lens):
    """The output of a step with autograd on carried no gradient once (found by fuzzing)."""
    g = torch.Generator().manual_seed(0)
    q, kc, vc = (torch.randn(*shape, generator=g).to(device) for shape in ((2, 4, 16), (2, 8, 2, 16), (2, 8, 2, 16)))
    seqlens = torch.tensor(lens, device=device)
    grad = torch.randn(2, 4, 16, generator=g).to(device)
    ours = [t.clone().requires_grad_() for t in (q, kc, vc)]
    refs = [t.clone().requires_grad_() for t in (q, kc, vc)]
    decode_attention(*ours, seqlens, window=window).backward(grad)
    decode_attention_reference(*refs, seqlens, window=window).backward(grad)
    for a, b in zip(ours, refs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5)


def test_rotary_matches_transformers_convention():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, rotate_half  # noqa: F401

    x = torch.randn(5, 3, 16)  # (T, H, D)
    pos = torch.arange(5) + 7
    inv = 1.0 / (10000 ** (torch.arange(0, 16, 2).float() / 16))
    emb = torch.cat([pos[:, None] * inv, pos[:, None] * inv], -1)
    cos, sin = emb.cos()[None], emb.sin()[None]  # (1, T, D)
    want, _ = apply_rotary_pos_emb(x.transpose(0, 1)[None], x.transpose(0, 1)[None], cos, sin)
    torch.testing.assert_close(rotary(x, pos), want[0].transpose(0, 1), rtol=1e-5, atol=1e-5)
    # relative: <rot(q, m), rot(k, n)> depends only on m - n
    q, k = torch.randn(1, 1, 16), torch.randn(1, 1, 16)
    a = (rotary(q, torch.tensor([10])) * rotary(k, torch.tensor([4]))).sum()
    b = (rotary(q, torch.tensor([106])) * rotary(k, torch.tensor([100]))).sum()
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape,max_pos,base", [((7, 3, 16), 7, 10000.0), ((2, 33, 4, 128), 70000, 1e6),
                                                ((1, 1, 2), 3, 500.0), ((0, 2, 8), 1, 10000.0)])
def test_rotary_kernel_matches_reference(device, shape, max_pos, base, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g).to(device=device, dtype=dtype)
    for pos_dtype in (torch.int64, torch.int32):
        pos = torch.randint(0, max_pos, shape[:-2], generator=g).to(device=device, dtype=pos_dtype)
        out = rotary(x, pos, base)
        assert out.dtype == dtype and out.shape == x.shape
        # same fp32 angle arithmetic; cos/sin implementations differ by an ulp or two
        tol = (1e-5 if max_pos < 100 else 1e-4) if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(out.float(), rotary_reference(x, pos, base).float(), rtol=tol, atol=tol)


def test_rotary_gradient_is_the_inverse_rotation(device):
    x = torch.randn(2, 9, 4, 32, device=device, requires_grad=True)
    pos = torch.randint(0, 500, (2, 9), device=device)
    grad = torch.randn_like(x)
    rotary(x, pos).backward(grad)
    x_ref = x.detach().clone().requires_grad_()
    rotary_reference(x_ref, pos).backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)


def test_rotary_table_follows_the_positions(device):
    """The CPU kernel keeps the last positions' cos/sin table: it must follow a change of the
    positions by any route (in place, through ``.data``, a new tensor), another base or head
    width, and inference tensors."""
    pos = torch.arange(6, device=device) * 3
    for x in (torch.randn(6, 2, 16, device=device), torch.randn(6, 1, 8, device=device)):
        for base in (10000.0, 500.0):
            torch.testing.assert_close(rotary(x, pos, base), rotary_reference(x, pos, base), rtol=1e-5, atol=1e-5)
    x = torch.randn(6, 2, 16, device=device)
    for change in (lambda p: p.add_(11), lambda p: p.data.mul_(2), lambda p: p.flip(0), lambda p: p.int() + 1):
        rotary(x, pos)
        pos = change(pos)
        torch.testing.assert_close(rotary(x, pos), rotary_reference(x, pos), rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        ipos = torch.arange(6, device=device) + 40
        torch.testing.assert_close(rotary(x, ipos), rotary_reference(x, ipos), rtol=1e-5, atol=1e-5)
        ipos.add_(1)
        torch.testing.assert_close(rotary(x, ipos), rotary_reference(x, ipos), rtol=1e-5, atol=1e-5)


@needs_ext
def test_rotary_opcheck_and_compile(device):
    x = torch.randn(5, 2, 16, device=device, requires_grad=True)
    pos = torch.arange(5, device=device) + 3
    torch.library.opcheck(torch.ops.yilightning.rotary.default, (x, pos, 10000.0, False))
    torch._dynamo.reset()
    fn = torch.compile(lambda x, p: rotary(x, p, 500.0).square().sum(), fullgraph=True)
    fn(x, pos).backward()
    x_ref = x.detach().clone().requires_grad_()
    rotary_reference(x_ref, pos, 500.0).square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)


def test_rotary_bad_inputs():
    x = torch.randn(4, 2, 8)
    with pytest.raises(ValueError, match="D even"):
        rotary(torch.randn(4, 2, 7), torch.arange(4))
    with pytest.raises(ValueError, match="positions must be int32/int64 of shape"):
        rotary(x, torch.arange(5))
    with pytest.raises(ValueError, match="positions must be int32/int64"):
        rotary(x, torch.arange(4).float())
    with pytest.raises(ValueError, match="base must be > 1"):
        rotary(x, torch.arange(4), 1.0)


def test_autocast_casts_to_its_dtype(device):
    """Under autocast, mixed q/k/v (an fp32 norm's output beside an autocast linear's bf16) run
    in the autocast dtype; a decode query takes the cache's dtype; outside autocast mixed
    dtypes are still refused."""
    q, k, v, cu = packed([9, 4], 4, 2, 16, device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = attention(q, k, v.bfloat16(), cu, window=3)
    assert out.dtype == torch.bfloat16
    ref = attention_reference(q.bfloat16().float(), k.bfloat16().float(), v.bfloat16().float(), cu, window=3)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
    k_cache, v_cache = (torch.randn(2, 6, 2, 16, device=device) for _ in range(2))
    lens = torch.tensor([6, 3], device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        dec = decode_attention(q[:2].bfloat16(), k_cache, v_cache, lens)
    assert dec.dtype == torch.float32  # (the pure-PyTorch fallback's matmuls run under autocast too)
    want = decode_attention_reference(q[:2].bfloat16().float(), k_cache, v_cache, lens)
    torch.testing.assert_close(dec, want, rtol=2e-2, atol=2e-2)
    with pytest.raises(TypeError, match="must share one of"):
        attention(q, k, v.bfloat16(), cu)
