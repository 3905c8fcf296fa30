import copy
import io

import pytest
import torch
from torch import nn
from transformers import Qwen3MoeConfig
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

from yilightning.layers import MoE


def hf_block(H=24, E=8, k=2, inter=12, dtype=torch.float32, seed=0):
    cfg = Qwen3MoeConfig(hidden_size=H, num_experts=E, num_experts_per_tok=k, moe_intermediate_size=inter,
                         norm_topk_prob=True, hidden_act="silu")
    block = Qwen3MoeSparseMoeBlock(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return block.to(dtype)


@pytest.mark.parametrize("E,k,T", [(8, 2, 13), (16, 4, 1), (4, 4, 9), (1, 1, 5), (32, 6, 0)])
def test_matches_qwen3_moe_block_outputs_and_gradients(E, k, T):
    block = hf_block(E=E, k=k)
    moe = MoE.from_hf(block)
    x = torch.randn(1, T, 24, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    out = moe(x)
    ref = block(x_ref)
    torch.testing.assert_close(out.hidden, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ref)
    out.hidden.backward(g)
    if T == 0:  # HF's expert loop builds no graph for an empty batch; ours gives zero gradients
        assert not x.grad.any() and not moe.w_gate_up.grad.any()
        return
    ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(moe.router.weight.grad, block.gate.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(moe.w_gate_up.grad, block.experts.gate_up_proj.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(moe.w_down.grad, block.experts.down_proj.grad, rtol=1e-4, atol=1e-5)


def test_matches_qwen3_moe_block_in_bf16():
    block = hf_block(E=16, k=4, dtype=torch.bfloat16)
    moe = MoE.from_hf(block)
    x = torch.randn(2, 7, 24, dtype=torch.bfloat16)
    ref32 = MoE.from_hf(hf_block(E=16, k=4))(x.float()).hidden  # the same weights, fp32 math
    ours, theirs = moe(x).hidden, block(x)
    assert ours.dtype == torch.bfloat16
    assert (ours.float() - ref32).abs().max() <= 2 * (theirs.float() - ref32).abs().max() + 1e-3


def test_outputs_losses_and_counts():
    torch.manual_seed(0)
    moe = MoE(32, 16, 4, 8, num_shared_experts=2, ep_size=4, partitions=2)
    x = torch.randn(3, 5, 32)
    out = moe(x)
    assert out.hidden.shape == x.shape
    assert out.tokens_per_expert.shape == (16,) and int(out.tokens_per_expert.sum()) == 15 * 4
    # each loss is coef * (a value near 1 for a random router): positive and of the coefficient's size
    for loss, coef in ((out.st, 1e-6), (out.ep, 1e-4), (out.pep, 1e-3)):
        assert 0.2 * coef < loss.item() < 5 * coef
    out.aux_loss.backward(retain_graph=True)
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0
    assert moe.shared_gate_up.weight.shape == (2 * 16, 32)


def test_recompute_gives_the_same_gradients():
    torch.manual_seed(0)
    a, b = MoE(16, 8, 2, 12), MoE(16, 8, 2, 12, recompute=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(20, 16)
    a(x).hidden.square().sum().backward()
    b(x).hidden.square().sum().backward()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-6)


def test_expert_bias_buffer_and_grouped_sigmoid_routing():
    moe = MoE(16, 8, 2, 8, score="sigmoid", n_groups=4, topk_groups=2, expert_bias=True, scale=2.0)
    assert "expert_bias" in dict(moe.named_buffers())
    moe.expert_bias[7] = 5.0  # every token now picks expert 7
    out = moe(torch.randn(10, 16))
    assert out.tokens_per_expert[7].item() == 10


def test_bad_configuration_and_input():
    with pytest.raises(ValueError, match="top_k must be in"):
        MoE(16, 4, 5, 8)
    with pytest.raises(ValueError, match="ep_size=3"):
        MoE(16, 8, 2, 8, ep_size=3)
    # sizes below their least value named, not a ZeroDivisionError (found by fuzzing)
    for kw, name in ((dict(ep_size=0), "ep_size"), (dict(partitions=0), "partitions"),
                     (dict(intermediate_size=0), "intermediate_size"), (dict(hidden_size=0), "hidden_size"),
                     (dict(num_shared_experts=-1), "num_shared_experts")):
        with pytest.raises(ValueError, match=f"{name} must be an integer >="):
            MoE(**{**dict(hidden_size=16, num_experts=4, top_k=2, intermediate_size=8), **kw})
    with pytest.raises(ValueError, match="hidden_size=16"):
        MoE(16, 4, 2, 8)(torch.randn(3, 15))
    with pytest.raises(TypeError, match="Qwen3MoeSparseMoeBlock"):
        MoE.from_hf(nn.Linear(3, 3))


def test_inference_skips_the_balancing_losses():
    moe = MoE(16, 8, 2, 8).eval()
    with torch.no_grad():
        out = moe(torch.randn(5, 16))
    assert out.st.item() == out.ep.item() == out.pep.item() == 0.0
    assert int(out.tokens_per_expert.sum()) == 10


def _amx() -> bool:
    from yilightning import _ext
    return _ext.module is not None and bool(_ext.module.build_info()["cpu_amx"])


@pytest.mark.skipif(not _amx(), reason="the packed experts are for CPUs with AMX and the compiled extension")
def test_pack_for_inference_follows_the_weights():
    torch.manual_seed(0)
    moe = MoE(64, 8, 2, 32, dtype=torch.bfloat16)
    x = torch.randn(40, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        plain = moe(x).hidden
        assert moe.pack_for_inference()
        assert torch.equal(moe(x).hidden, plain)
        moe.w_down.mul_(2)  # an in-place change (as an optimizer step): packed again on the next call
        doubled = moe(x).hidden
        moe.pack_for_inference(False)
        assert torch.equal(doubled, moe(x).hidden) and not torch.equal(doubled, plain)
        moe.pack_for_inference()
        moe.load_state_dict({k: v.clone() for k, v in MoE(64, 8, 2, 32, dtype=torch.bfloat16).state_dict().items()})
        reloaded = moe(x).hidden
        moe.pack_for_inference(False)
        assert torch.equal(reloaded, moe(x).hidden)
    # with autograd the training path runs on the plain weights, as always
    moe.pack_for_inference()
    out = moe(x.requires_grad_())
    out.hidden.float().sum().backward()
    assert moe.w_gate_up.grad is not None and x.grad is not None


@pytest.mark.skipif(not _amx(), reason="the packed experts are for CPUs with AMX and the compiled extension")
@pytest.mark.parametrize("change", ["fused AdamW step", "new .data twice"])
def test_pack_for_inference_sees_changes_its_version_does_not_count(change):
    """A fused optimizer writes the weights without bumping their version, and a second new
    ``.data`` can land at the first one's freed address with the same version: both once left
    the packed copy stale (found by fuzzing)."""
    torch.manual_seed(0)
    moe = MoE(64, 8, 2, 32, dtype=torch.bfloat16)
    x = torch.randn(16, 64, dtype=torch.bfloat16)
    assert moe.pack_for_inference()
    before = moe.w_gate_up.detach().clone()
    if change == "fused AdamW step":
        opt = torch.optim.AdamW(moe.parameters(), lr=1e-2, fused=True)
        moe(x).hidden.float().pow(2).mean().backward()
        opt.step()
    else:
        for _ in range(2):
            moe.w_gate_up.data = torch.randn_like(moe.w_gate_up)
    assert not torch.equal(moe.w_gate_up, before)
    with torch.no_grad():
        packed = moe(x).hidden
        moe.pack_for_inference(False)
        assert torch.equal(packed, moe(x).hidden)


def test_weights_stamp_is_stable_while_nothing_changes():
    from yilightning.layers.stamp import weights_stamp

    w = torch.randn(4, 4)
    assert weights_stamp(w) == weights_stamp(w)  # else every call would pack / stack anew
    v = w.clone()
    assert weights_stamp(w) != weights_stamp(v)


@pytest.mark.skipif(not _amx(), reason="the packed experts are for CPUs with AMX and the compiled extension")
def test_packed_copy_is_kept_across_calls():
    moe = MoE(64, 8, 2, 32, dtype=torch.bfloat16)
    assert moe.pack_for_inference()
    tiles = moe._tiles[0]
    with torch.no_grad():
        moe(torch.randn(16, 64, dtype=torch.bfloat16))
        moe(torch.randn(16, 64, dtype=torch.bfloat16))
    assert moe._tiles[0] is tiles


@pytest.mark.skipif(not _amx(), reason="the packed experts are for CPUs with AMX and the compiled extension")
def test_packed_layer_pickles_and_copies_without_its_copy():
    moe = MoE(64, 8, 2, 32, dtype=torch.bfloat16)
    assert moe.pack_for_inference()
    buf = io.BytesIO()
    torch.save(moe, buf)  # the stamp's weak references cannot be pickled: the state leaves the copy out
    assert buf.tell() < 1.5 * sum(p.numel() * p.element_size() for p in moe.parameters())
    buf.seek(0)
    x = torch.randn(16, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        want = moe(x).hidden
        for other in (torch.load(buf, weights_only=False), copy.deepcopy(moe)):
            assert torch.equal(other(x).hidden, want)
            assert other._tiles[0] is not None  # still packed: made again on the first call


@pytest.mark.skipif(not _amx(), reason="the packed experts are for CPUs with AMX and the compiled extension")
def test_pack_for_inference_under_autocast_and_where_unusable(monkeypatch):
    moe = MoE(64, 4, 2, 32)  # fp32 weights: packed as bf16, used under bf16 autocast
    x = torch.randn(30, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = moe(x).hidden
        assert moe.pack_for_inference()
        assert torch.equal(moe(x).hidden, plain)
    with torch.no_grad():  # in fp32 the tiles are not used
        fp32 = moe(x).hidden
        moe.pack_for_inference(False)
        assert torch.equal(fp32, moe(x).hidden)
    assert not MoE(48, 4, 2, 32).pack_for_inference()  # H not in 32s
    monkeypatch.setenv("YL_CPU_AMX", "0")
    assert not moe.pack_for_inference()


def test_quantize_fp8_runs_inference_in_fp8_and_follows_the_weights():
    torch.manual_seed(0)
    moe = MoE(256, 8, 2, 128)
    x = torch.randn(40, 256)
    with torch.no_grad():
        full = moe(x).hidden
        assert moe.quantize_fp8() is False  # no Hopper GPU here: the dequantized FP8 product runs
        fp8 = moe(x).hidden
        rel = ((fp8 - full).norm() / full.norm()).item()
        assert 0 < rel < 0.08, rel  # two e4m3 products (each ~3.7%, see test_fp8): 0.061 measured
        moe.w_down.mul_(2)  # the FP8 copies follow: doubled weights double the block scales exactly
        doubled = moe(x).hidden
        torch.testing.assert_close(doubled, 2 * fp8, rtol=1e-6, atol=1e-7)
        for other in (copy.deepcopy(moe), torch.load(_saved(moe), weights_only=False)):
            assert other._fp8 is not None and torch.equal(other(x).hidden, doubled)
        moe.quantize_fp8(False)
        assert moe._fp8 is None
        torch.testing.assert_close(moe(x).hidden, 2 * full, rtol=1e-6, atol=1e-7)
    # with autograd on, the layer trains on its plain weights, as always
    moe.quantize_fp8()
    out = moe(x.requires_grad_()).hidden
    with torch.no_grad():
        moe.quantize_fp8(False)
        assert torch.equal(out.detach(), moe(x).hidden)
    out.sum().backward()
    assert moe.w_gate_up.grad is not None and x.grad is not None


def test_fp8_layer_under_autocast_and_after_a_failed_requantization():
    torch.manual_seed(0)
    moe = MoE(128, 4, 2, 128)
    x = torch.randn(20, 128)
    moe.quantize_fp8()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain_dtype = MoE(128, 4, 2, 128)(x).hidden.dtype
        assert moe(x).hidden.dtype == plain_dtype == torch.bfloat16  # as the full-precision path
    good = {k: v.clone() for k, v in moe.state_dict().items()}
    with torch.no_grad():
        want = moe(x).hidden
        moe.w_down[0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match="MoE.quantize_fp8: cannot quantize the expert weights"):
            moe(x)
        moe.load_state_dict(good)
        assert moe._fp8 is not None and torch.equal(moe(x).hidden, want)  # FP8 stayed on (found by fuzzing)


def test_modules_pickled_before_the_inference_options_load():
    moe = MoE(64, 4, 2, 32)
    state = moe.__getstate__()
    del state["_tiles"], state["_fp8"]  # as pickled before these options existed
    old = MoE.__new__(MoE)
    old.__setstate__(state)
    x = torch.randn(8, 64)
    with torch.no_grad():
        assert torch.equal(old(x).hidden, moe(x).hidden)
    old.quantize_fp8()
    assert old._fp8 is not None


def _saved(module) -> io.BytesIO:
    buf = io.BytesIO()
    torch.save(module, buf)
    buf.seek(0)
    return buf
