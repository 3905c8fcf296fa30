import copy
import io

import pytest
import torch
from transformers import Qwen3Config
from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention, Qwen3RotaryEmbedding

from yilightning.layers import HybridAttention, KVLayout, hybrid_schedule, kv_cache_bytes, kv_cache_table
from yilightning.ops import rotary


def test_hybrid_schedule():
    s = hybrid_schedule(16)
    assert [x.kind for x in s] == (["swa"] * 3 + ["full"]) * 4
    assert [x.kv_source for x in s if x.kind == "full"] == [None, 3, None, 11]
    assert all(x.kv_source is None for x in s if x.kind == "swa")
    assert [x.kv_source for x in hybrid_schedule(4, swa_per_full=0)] == [None, 0, None, 2]
    assert all(x.owns_kv for x in hybrid_schedule(8, share_full_kv=False))
    with pytest.raises(ValueError, match="num_layers >= 1"):
        hybrid_schedule(0)


def test_kv_cache_reduction_reproduces_the_report():
    layout = KVLayout(num_layers=64, num_kv_heads=8, head_dim=128, window=4096)
    ours, full = kv_cache_bytes(layout, 65536), kv_cache_bytes(layout, 65536, baseline=True)
    assert 1 - ours / full == pytest.approx(0.828125)  # 1/8 + 3/4 * 4096/65536 = 17.2% kept
    assert full == 64 * 65536 * 2 * 8 * 128 * 2
    table = kv_cache_table(layout)
    assert "| 64K |" in table and "82.8%" in table and "| 128K |" in table
    # at or below the window only the sharing saves: 1 - (8 + 48) / 64 = 12.5%
    assert 1 - kv_cache_bytes(layout, 4096) / kv_cache_bytes(layout, 4096, baseline=True) == pytest.approx(0.125)


def qwen3_pair(window, seed=0):
    cfg = Qwen3Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=32, num_hidden_layers=1,
                      sliding_window=window, layer_types=["sliding_attention" if window else "full_attention"],
                      rope_theta=10000.0, rms_norm_eps=1e-6, attention_bias=False)
    cfg._attn_implementation = "eager"
    hf = Qwen3Attention(cfg, layer_idx=0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in hf.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if p.dim() == 1 else 0.0))
    ours = HybridAttention(64, 4, 2, 32, window=window, qk_norm=True, rope_base=10000.0)
    ours.load_state_dict(hf.state_dict())
    return cfg, hf, ours


@pytest.mark.parametrize("window", [None, 5])
def test_matches_qwen3_attention_outputs_and_gradients(window):
    cfg, hf, ours = qwen3_pair(window)
    T = 23
    x = torch.randn(1, T, 64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    pos = torch.arange(T)
    cos, sin = Qwen3RotaryEmbedding(cfg)(x_ref, pos[None])
    visible = pos[None, :] <= pos[:, None]
    if window:
        visible &= pos[None, :] > pos[:, None] - window
    mask = torch.zeros(T, T).masked_fill(~visible, float("-inf"))[None, None]
    ref, _ = hf(x_ref, (cos, sin), mask)
    out, _ = ours(x[0], torch.tensor([0, T], dtype=torch.int32), pos)
    torch.testing.assert_close(out, ref[0], rtol=1e-5, atol=1e-5)
    g = torch.randn(T, 64)
    out.backward(g)
    ref[0].backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    hf_grads = dict(hf.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, hf_grads[name].grad, rtol=1e-4, atol=1e-5)


def test_kv_sharing_layer_equals_unshared_layer_with_copied_projections():
    torch.manual_seed(0)
    producer = HybridAttention(32, 4, 2, 16)
    consumer = HybridAttention(32, 4, 2, 16, owns_kv=False)
    assert consumer.k_proj is None and consumer.v_proj is None
    unshared = HybridAttention(32, 4, 2, 16)
    with torch.no_grad():
        unshared.q_proj.load_state_dict(consumer.q_proj.state_dict())
        unshared.o_proj.load_state_dict(consumer.o_proj.state_dict())
        unshared.k_proj.load_state_dict(producer.k_proj.state_dict())
        unshared.v_proj.load_state_dict(producer.v_proj.state_dict())
    x_prod, x_cons = torch.randn(19, 32), torch.randn(19, 32)  # the two layers see different inputs
    cu, pos = torch.tensor([0, 7, 19], dtype=torch.int32), torch.cat([torch.arange(7), torch.arange(12)])
    _, kv = producer(x_prod, cu, pos)
    shared_out, kv2 = consumer(x_cons, cu, pos, shared_kv=kv)
    assert kv2[0] is kv[0]  # no copy
    # the unshared twin computes its q from x_cons and its k/v from the producer's input
    q = unshared._queries(x_cons, pos)
    k, v = unshared._keys_values(x_prod, pos)
    from yilightning.ops import attention
    want = unshared.o_proj(attention(q, k, v, cu).reshape(19, -1))
    torch.testing.assert_close(shared_out, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="shared_kv exactly"):
        consumer(x_cons, cu, pos)


def test_generation_step_calls_hooked_projections():
    """The no-grad step's stacked q/k/v product is only for plain projections: a forward hook
    (as an adapter library adds) must see its module called, and the result must not change."""
    torch.manual_seed(2)
    layer = HybridAttention(32, 4, 2, 16)
    x, pos = torch.randn(3, 32), torch.tensor([0, 0, 0])
    with torch.no_grad():
        plain = layer.step(x, pos, layer.new_cache(3, 8, torch.float32, "cpu"))
        calls = []
        layer.v_proj.register_forward_hook(lambda *args: calls.append(1))
        hooked = layer.step(x, pos, layer.new_cache(3, 8, torch.float32, "cpu"))
    assert calls
    torch.testing.assert_close(hooked, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grad", [True, False])  # no-grad steps stack the q/k/v projections into one
@pytest.mark.parametrize("window,max_len", [(None, 40), (4, 40), (64, 40)])
@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.bfloat16])  # a bf16 cache for an fp32 layer too
def test_generation_with_cache_matches_full_forward(window, max_len, grad, cache_dtype):
    torch.manual_seed(1)
    tol = dict(rtol=1e-5, atol=1e-5) if cache_dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    layer = HybridAttention(32, 4, 2, 16, window=window, qk_norm=True)
    sharer = HybridAttention(32, 4, 2, 16, window=window, owns_kv=False)
    lengths, prompt = [17, 9], [5, 3]  # two sequences of different lengths, prompts of different lengths
    xs = [torch.randn(L, 32) for L in lengths]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    pos = torch.cat([torch.arange(L) for L in lengths])
    full, kv = layer(torch.cat(xs), cu, pos)
    full_shared, _ = sharer(torch.cat(xs), cu, pos, shared_kv=kv)
    cache = layer.new_cache(2, max_len, cache_dtype, "cpu")
    assert cache.ring == (window is not None and window < max_len)
    # prefill the prompts, then step token by token
    p_cu = torch.tensor([0, prompt[0], sum(prompt)], dtype=torch.int32)
    p_pos = torch.cat([torch.arange(n) for n in prompt])
    p_out, p_kv = layer(torch.cat([xs[0][:prompt[0]], xs[1][:prompt[1]]]), p_cu, p_pos)
    layer.fill_cache(cache, *p_kv, p_cu)
    torch.testing.assert_close(p_out[:prompt[0]], full[:prompt[0]], rtol=1e-5, atol=1e-5)
    steps = min(L - p for L, p in zip(lengths, prompt))  # both sequences generate this many tokens
    for s in range(steps):
        offs = [prompt[0] + s, prompt[1] + s]  # the two sequences sit at different positions
        x = torch.stack([xs[0][offs[0]], xs[1][offs[1]]])
        positions = torch.tensor(offs)
        with torch.set_grad_enabled(grad):
            out = layer.step(x, positions, cache)
            out_shared = sharer.step(x, positions, cache)
        assert out.dtype == out_shared.dtype == torch.float32
        for b in range(2):
            row = int(cu[b]) + offs[b]
            torch.testing.assert_close(out[b], full[row], **tol)
            torch.testing.assert_close(out_shared[b], full_shared[row], **tol)


@pytest.mark.parametrize("change", ["in place", "fused AdamW step", "new .data twice"])
def test_stacked_qkv_of_a_step_follows_weight_updates(change):
    """A fused optimizer writes without bumping versions, and a second new ``.data`` may land at
    the first one's freed address: the stacked weights were once kept stale by both."""
    layer = HybridAttention(32, 4, 2, 16)
    x, pos = torch.randn(1, 32), torch.tensor([0])
    with torch.no_grad():
        layer.step(x, pos, layer.new_cache(1, 8, torch.float32, "cpu"))  # stacks the weights
    if change == "in place":
        with torch.no_grad():
            layer.k_proj.weight.mul_(2)
    elif change == "fused AdamW step":
        layer(torch.randn(5, 32), torch.tensor([0, 5], dtype=torch.int32), torch.arange(5))[0].sum().backward()
        torch.optim.AdamW(layer.parameters(), lr=0.1, fused=True).step()
    else:
        for _ in range(2):
            layer.k_proj.weight.data = torch.randn_like(layer.k_proj.weight)
    with torch.no_grad():
        cache = layer.new_cache(1, 8, torch.float32, "cpu")
        layer.step(x, pos, cache)
        want = rotary(layer.k_proj(x).view(1, 2, 16), pos, layer.rope_base)
    torch.testing.assert_close(cache.k[0, 0], want[0], rtol=1e-5, atol=1e-5)


def test_pickles_and_copies_after_a_step():
    layer = HybridAttention(32, 4, 2, 16)
    x, pos = torch.randn(1, 32), torch.tensor([0])
    with torch.no_grad():
        layer.step(x, pos, layer.new_cache(1, 8, torch.float32, "cpu"))  # keeps the stacked q/k/v
        stacked = layer._qkv_stacked[1]
        layer.step(x, pos, layer.new_cache(1, 8, torch.float32, "cpu"))
        assert layer._qkv_stacked[1] is stacked  # kept while the weights stay
        layer.compile()  # nn.Module's own state handling (a compiled call) still applies
        buf = io.BytesIO()
        torch.save(layer, buf)  # its stamp's weak references cannot be pickled: left out
        buf.seek(0)
        for other in (torch.load(buf, weights_only=False), copy.deepcopy(layer)):
            a, b = layer.new_cache(1, 8, torch.float32, "cpu"), other.new_cache(1, 8, torch.float32, "cpu")
            torch.testing.assert_close(other.step(x, pos, b), layer.step(x, pos, a))
