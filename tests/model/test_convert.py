import pytest
import torch
from transformers import MixtralConfig, MixtralForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

from yilightning.convert import from_hf


def randomize(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if p.dim() == 1 else 0.0))
    return model.eval()


COMMON = dict(vocab_size=320, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
              num_experts_per_tok=2, max_position_embeddings=256)


@pytest.mark.parametrize("make", [
    lambda: Qwen3MoeForCausalLM(Qwen3MoeConfig(**COMMON, head_dim=16, num_experts=8, moe_intermediate_size=32,
                                               norm_topk_prob=True)),
    lambda: Qwen3MoeForCausalLM(Qwen3MoeConfig(**COMMON, head_dim=16, num_experts=4, moe_intermediate_size=32,
                                               norm_topk_prob=False, tie_word_embeddings=True)),
    lambda: MixtralForCausalLM(MixtralConfig(**COMMON, num_local_experts=4, intermediate_size=48)),
], ids=["qwen3-moe", "qwen3-moe-tied-unnormalized", "mixtral"])
def test_imported_model_gives_the_same_logits(make):
    hf = randomize(make())
    ours = from_hf(hf)
    assert all(layer.spec.kind == "full" and layer.spec.owns_kv for layer in ours.layers)
    ids = torch.randint(0, 320, (2, 21))
    torch.testing.assert_close(ours(ids).logits, hf(ids).logits.float(), rtol=1e-4, atol=1e-4)
    assert ours.generate([ids[0, :5].tolist()], 6) == [hf.generate(ids[:1, :5], max_new_tokens=6, do_sample=False,
                                                                   min_new_tokens=6)[0, 5:].tolist()]


def test_unsupported_model_is_refused():
    from transformers import LlamaConfig, LlamaForCausalLM

    with pytest.raises(TypeError, match="supported model types"):
        from_hf(LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=32)))
    with pytest.raises(ValueError, match="attention_bias=True"):
        from_hf(Qwen3MoeForCausalLM(Qwen3MoeConfig(**COMMON, head_dim=16, num_experts=4, moe_intermediate_size=32,
                                                   attention_bias=True)))
