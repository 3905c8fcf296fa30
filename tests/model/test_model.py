import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from yilightning import _ext
from yilightning.layers import MoE
from yilightning.model import YiLightningConfig, YiLightningForCausalLM


def tiny(**kw):
    torch.manual_seed(0)
    cfg = YiLightningConfig.preset("tiny", vocab_size=512, hidden_size=64, num_attention_heads=4,
                                   num_key_value_heads=2, sliding_window=8, num_experts=8, num_experts_per_tok=2,
                                   moe_intermediate_size=32, max_position_embeddings=128, **kw)
    return YiLightningForCausalLM(cfg).eval()


def test_presets_sizes():
    t = YiLightningForCausalLM(YiLightningConfig.preset("tiny")).parameter_counts()
    assert 10e6 <= t["total"] <= 30e6 and t["active"] < t["total"]
    with torch.device("meta"):
        small = YiLightningForCausalLM(YiLightningConfig.preset("small")).parameter_counts()
        paper = YiLightningForCausalLM(YiLightningConfig.preset("paper"))
    assert 100e6 <= small["total"] <= 300e6
    counts = paper.parameter_counts()
    assert counts["total"] > 50e9 and counts["active"] < counts["total"] / 5
    ours, full = paper.kv_cache_bytes(65536), paper.kv_cache_bytes(65536, baseline=True)
    assert 1 - ours / full == pytest.approx(0.828125)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        YiLightningConfig.preset("huge")


def test_packed_batch_equals_separate_sequences_and_is_block_causal():
    model = tiny(first_dense_layers=1)
    a, b = torch.randint(0, 512, (11,)), torch.randint(0, 512, (5,))
    cu = torch.tensor([0, 11, 16], dtype=torch.int32)
    packed = model(torch.cat([a, b]), cu_seqlens=cu).logits
    torch.testing.assert_close(packed[:11], model(a[None]).logits[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(packed[11:], model(b[None]).logits[0], rtol=1e-4, atol=1e-4)
    other = model(torch.cat([torch.randint(0, 512, (11,)), b]), cu_seqlens=cu).logits
    torch.testing.assert_close(other[11:], packed[11:], rtol=1e-4, atol=1e-4)  # b never sees a


def test_loss_is_next_token_within_each_sequence():
    model = tiny()
    ids = torch.randint(0, 512, (2, 9))
    out = model(ids, labels=ids)
    logits = out.logits[:, :-1].reshape(-1, 512)
    want = torch.nn.functional.cross_entropy(logits, ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.lm_loss, want, rtol=1e-5, atol=1e-5)
    assert out.aux_per_layer.shape == (8, 3) and torch.allclose(out.aux_loss, out.aux_per_layer.sum())
    torch.testing.assert_close(out.loss, out.lm_loss + out.aux_loss)
    out.loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "expert_bias" not in n)


def test_fused_head_loss_equals_the_unfused_one_and_logits_come_on_demand(monkeypatch):
    # fp32 on the CPU the loss is fused with the LM head (no logits formed); the same model with
    # the fusion turned off computes the same loss and gradients from materialised logits
    model, ids = tiny(), torch.randint(0, 512, (2, 9))
    fused = model(ids, labels=ids)
    assert (fused.head_output is None) == _ext.has_kernel("lm_head_loss", "cpu")
    grads = torch.autograd.grad(fused.loss, [model.lm_head.weight, model.embed_tokens.weight])
    monkeypatch.setattr("yilightning.model.modeling.lm_head_loss_fused", lambda *a: False)
    plain = model(ids, labels=ids)
    assert plain.head_output is not None
    torch.testing.assert_close(fused.loss, plain.loss, rtol=1e-5, atol=1e-5)
    want = torch.autograd.grad(plain.loss, [model.lm_head.weight, model.embed_tokens.weight])
    for got, exp in zip(grads, want):
        torch.testing.assert_close(got, exp, rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # computed when read, as the forward would have: differentiable
        torch.testing.assert_close(fused.logits, plain.logits)
    assert fused.head_output is not None and fused.logits.requires_grad
    monkeypatch.undo()
    again = model(ids, labels=ids)
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)  # an optimizer step before the read
    if again.head_output is None:  # fused (the compiled kernel is here)
        with pytest.raises(RuntimeError, match="may have changed since this forward"):
            again.logits
    again = model(ids, labels=ids)
    again.loss.backward()
    torch.optim.AdamW(model.parameters(), fused=True).step()  # writes without bumping versions
    if again.head_output is None:
        with pytest.raises(RuntimeError, match="may have changed since this forward"):
            again.logits


def test_logits_read_under_no_grad_stay_differentiable_later():
    model = tiny()
    ids = torch.randint(0, 512, (1, 7))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids)
    assert out.head_output.dtype == torch.bfloat16
    with torch.no_grad():
        first = out.logits.argmax(-1)  # e.g. a metric, before any loss
    assert out.logits.dtype == torch.float32 and torch.equal(out.logits.argmax(-1), first)
    out.logits.float().logsumexp(-1).sum().backward()
    assert model.lm_head.weight.grad is not None


def test_training_step_and_generation_under_bf16_autocast(device):
    """The trainer runs GPU forwards under bf16 autocast: autocast linears hand our ops bf16
    beside the norms' fp32, and the GEMM-like ops cast to the autocast dtype like torch's own."""
    model = tiny().to(device).train()
    ids = torch.randint(0, 512, (2, 24), device=device)
    ref = model(ids, labels=ids).loss
    want = torch.autograd.grad(ref, list(model.parameters()), allow_unused=True)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = model(ids, labels=ids)
    out.loss.backward()
    assert out.logits.dtype == torch.float32
    torch.testing.assert_close(out.loss, ref, rtol=2e-2, atol=2e-2)
    got = [p.grad for p in model.parameters()]
    assert all(g is None or (g.dtype == torch.float32 and g.isfinite().all()) for g in got)
    pairs = [(g.flatten(), w.flatten()) for g, w in zip(got, want) if g is not None and w is not None]
    ours, exact = torch.cat([g for g, _ in pairs]), torch.cat([w for _, w in pairs])
    cos = torch.nn.functional.cosine_similarity(ours, exact, dim=0)
    assert cos > 0.99, float(cos)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        tokens = model.eval().generate([[1, 2, 3], [4, 5]], 4)
    assert [len(t) for t in tokens] == [4, 4]


def test_fp8_experts_for_inference(device):
    model = YiLightningForCausalLM(YiLightningConfig.preset("tiny")).to(device).eval()
    ids = torch.randint(0, 512, (2, 24), device=device)
    with torch.no_grad():
        full = model(ids).logits
        hopper = device.type == "cuda" and torch.cuda.get_device_capability(device)[0] == 9
        moe_layers = sum(isinstance(m, MoE) for m in model.modules())
        assert model.quantize_fp8() == (moe_layers if hopper and _ext.module is not None else 0)
        fp8 = model(ids).logits
        assert model.generate([[1, 2, 3]], 4) and model.quantize_fp8(False) == 0
        assert torch.equal(model(ids).logits, full)
    rel = ((fp8 - full).norm() / full.norm()).item()
    assert 0 < rel < 0.05, rel  # only the routed experts run in FP8: 0.007 measured (random weights)


def test_cache_only_for_kv_producers_and_ring_buffers():
    model = tiny()
    cache = model.new_cache(2, 100)
    owners = [layer.spec.owns_kv for layer in model.layers]
    assert [c is not None for c in cache.layers] == owners and owners.count(False) == 1
    swa = [c for c, layer in zip(cache.layers, model.layers) if c is not None and layer.spec.kind == "swa"]
    assert all(c.ring and c.k.shape[1] == 8 for c in swa)


@pytest.mark.parametrize("kw", [dict(), dict(first_dense_layers=2, num_shared_experts=0)])
def test_greedy_generation_same_with_and_without_cache_and_batched(kw):
    model = tiny(**kw)
    prompts = [[5, 9, 12, 7, 1, 3, 8, 22, 40, 2], [17, 4], [99]]  # crosses the window of 8
    cached = model.generate(prompts, 12)
    assert cached == model.generate(prompts, 12, use_cache=False)
    assert [model.generate([p], 12)[0] for p in prompts] == cached  # batching changes nothing


def test_sampling_seed_stop_tokens_and_stream():
    model = tiny()
    a = model.generate([[1, 2, 3]], 10, temperature=0.9, top_p=0.9, top_k=50, seed=3)
    assert a == model.generate([[1, 2, 3]], 10, temperature=0.9, top_p=0.9, top_k=50, seed=3)
    stop = a[0][2]
    assert model.generate([[1, 2, 3]], 10, temperature=0.9, top_p=0.9, top_k=50, seed=3,
                          stop_token_ids=(stop,))[0] == a[0][:a[0].index(stop) + 1]
    steps = list(model.stream([[1, 2], [3]], 4))
    assert len(steps) == 4 and all(len(s) == 2 for s in steps)
    penalised = model.generate([[1, 2, 3]], 10, repetition_penalty=10.0)[0]
    assert len(set(penalised)) >= len(set(model.generate([[1, 2, 3]], 10)[0]))


def test_top_p_stops_at_the_token_that_reaches_it_and_unseeded_sampling_varies():
    model = tiny()
    logits = torch.tensor([[2.0, 2.0, -30.0]])  # probabilities 0.5, 0.5, ~0
    gen = torch.Generator().manual_seed(0)
    picks = {int(model._sample(logits, [[]], 1.0, 0.5, 0, 1.0, gen)) for _ in range(30)}
    assert picks == {0}  # the first token alone reaches top_p = 0.5 (the tie goes to the lower id)
    runs = {tuple(model.generate([[1, 2, 3]], 8, temperature=1.5)[0]) for _ in range(4)}
    assert len(runs) > 1  # seed=None: a different draw each call


def test_save_load_round_trip_is_exact(tmp_path):
    model = tiny(tie_word_embeddings=True)
    assert model.lm_head.weight.data_ptr() == model.embed_tokens.weight.data_ptr()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "config.json").exists()
    loaded = YiLightningForCausalLM.from_pretrained(tmp_path).eval()
    auto = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(auto, YiLightningForCausalLM) and AutoConfig.from_pretrained(tmp_path).model_type == "yilightning"
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    ids = torch.randint(0, 512, (1, 12))
    assert torch.equal(model(ids).logits, auto(ids).logits)


def test_large_checkpoints_are_sharded_with_an_index(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path, max_shard_size="200KB")
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "model.safetensors.index.json").exists()
    assert not (tmp_path / "model.safetensors").exists()
    loaded = YiLightningForCausalLM.from_pretrained(tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_bad_inputs():
    model = tiny()
    with pytest.raises(ValueError, match="exceeds the model's context"):
        model.generate([[1] * 120], 20)
    with pytest.raises(TypeError, match="integer tensor"):
        model(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"lie in \[0, vocab_size=512\)"):
        model(torch.tensor([[1, 512]]))
    with pytest.raises(ValueError, match="at least one token"):
        model.generate([[]], 3)
    with pytest.raises(ValueError, match="padded attention_mask is not supported"):
        model(torch.tensor([[1, 2, 3], [4, 5, 0]]), attention_mask=torch.tensor([[1, 1, 1], [1, 1, 0]]))
    assert model(torch.tensor([[1, 2, 3]]), attention_mask=torch.ones(1, 3)).logits.shape == (1, 3, 512)
    with pytest.raises(ValueError, match=r"a row per sequence \(2 here\)"):  # (was an IndexError)
        model(torch.randint(0, 512, (2, 5)), cache=model.new_cache(1, 8))
    ids = torch.randint(0, 512, (20,))  # packed: bad cu_seqlens are named (they were a shape mismatch)
    for cu in ([0, 10, 19], [1, 10, 20], [0, 12, 10, 20]):
        with pytest.raises(ValueError, match="cu_seqlens must start at 0, never decrease and end at N=20"):
            model(ids, cu_seqlens=torch.tensor(cu, dtype=torch.int32))
    with pytest.raises(ValueError, match="cu_seqlens must be an int32/int64"):
        model(ids, cu_seqlens=torch.tensor([0.0, 20.0]))
    for kw, name in ((dict(temperature=-1.0), "temperature"), (dict(top_p=0.0), "top_p"), (dict(top_k=-2), "top_k"),
                     (dict(repetition_penalty=0.0), "repetition_penalty")):
        with pytest.raises(ValueError, match=f"generate: {name} must be"):
            model.generate([[1, 2]], 3, **kw)
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        YiLightningConfig(num_attention_heads=4, num_key_value_heads=3)
