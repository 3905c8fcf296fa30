"""``YiLightningForCausalLM``: embeddings, pre-norm decoder layers (hybrid attention with
cross-layer KV sharing, fine-grained MoE FFN), final norm, LM head; packed training batches,
a KV cache that allocates only for KV-producing layers, and generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn
from transformers import PreTrainedModel

from yilightning.layers import HybridAttention, LayerCache, Linear, MoE, RMSNorm, hybrid_schedule, kv_cache_bytes
from yilightning.layers.linear import is_plain
from yilightning.layers.stamp import weights_stamp
from yilightning.model.config import YiLightningConfig
from yilightning.ops import cross_entropy, lm_head_loss, lm_head_loss_fused, swiglu
from yilightning.ops._autocast import autocast_inputs
from yilightning.ops.attention import check_cu_seqlens


class DenseMLP(nn.Module):
    """SwiGLU FFN for the optional dense first layers."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_up = Linear(hidden_size, 2 * intermediate_size, bias=False)
        self.down = Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(swiglu(self.gate_up(x)))


class DecoderLayer(nn.Module):
    """x + attn(norm(x)), then + ffn(norm(x)); the FFN is MoE except in the dense first layers."""

    def __init__(self, config: YiLightningConfig, index: int) -> None:
        super().__init__()
        spec = hybrid_schedule(config.num_hidden_layers, config.swa_per_full, config.share_full_kv)[index]
        self.spec = spec
        c = config
        self.attn_norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.attn = HybridAttention(c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
                                    window=c.sliding_window if spec.kind == "swa" else None, owns_kv=spec.owns_kv,
                                    rope_base=c.rope_theta, qk_norm=c.qk_norm, norm_eps=c.rms_norm_eps)
        self.ffn_norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        if index < c.first_dense_layers:
            self.mlp: nn.Module = DenseMLP(c.hidden_size, c.intermediate_size)
        else:
            self.mlp = MoE(c.hidden_size, c.num_experts, c.num_experts_per_tok, c.moe_intermediate_size,
                           num_shared_experts=c.num_shared_experts, score=c.router_score, normalize=c.norm_topk_prob,
                           scale=c.routed_scaling_factor, n_groups=c.n_expert_groups,
                           topk_groups=c.topk_expert_groups, expert_bias=c.expert_bias, ep_size=c.ep_size,
                           partitions=c.expert_partitions, coef_st=c.aux_coef_st, coef_ep=c.aux_coef_ep,
                           coef_pep=c.aux_coef_pep, recompute=c.recompute_experts)

    def attn_input(self, x: torch.Tensor) -> torch.Tensor:
        """attn_norm(x), in the autocast dtype under autocast: cast once here rather than by each
        of the q/k/v projections (and once for the FFN's router, shared expert and experts)."""
        return autocast_inputs(x.device, self.attn_norm(x))[0]

    def ffn(self, x: torch.Tensor, aux: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """FFN residual branch: (out, aux losses [3] or None, tokens per expert or None);
        ``aux=False`` (a generation step) skips stacking the aux losses."""
        h = autocast_inputs(x.device, self.ffn_norm(x))[0]
        if isinstance(self.mlp, MoE):
            o = self.mlp(h)
            return o.hidden, torch.stack([o.st, o.ep, o.pep]) if aux else None, o.tokens_per_expert
        return self.mlp(h), None, None


@dataclass
class CausalLMOutput:
    """What ``YiLightningForCausalLM.forward`` returns."""

    # (..., vocab) the LM head's output: fp32, or bf16 under autocast; None when the loss came
    # from the fused LM-head loss, which never forms it (``logits`` computes it when read)
    head_output: torch.Tensor | None
    loss: torch.Tensor | None = None  # lm_loss + aux_loss (when labels are given)
    lm_loss: torch.Tensor | None = None  # mean next-token cross-entropy over the labelled tokens
    aux_loss: torch.Tensor | None = None  # sum over layers of st + ep + pep (coefficients applied)
    aux_per_layer: torch.Tensor | None = None  # (MoE layers, 3): st, ep, pep of each MoE layer
    tokens_per_expert: list[torch.Tensor] = field(default_factory=list)  # one (E,) tensor per MoE layer
    _logits: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)
    _head: Callable[[], torch.Tensor] | None = field(default=None, repr=False, compare=False)  # computes head_output

    @property
    def logits(self) -> torch.Tensor:
        """(..., vocab) fp32 logits, converted from ``head_output`` when read: a training step
        that only reads the loss skips the conversion (under bf16 autocast a [N, V] fp32 copy,
        13 ms of a tiny-preset step on the CPU). Kept after the first read, except while
        ``head_output`` takes part in autograd (so each read is differentiable, whatever the grad
        mode of the first)."""
        if self._logits is not None:
            return self._logits
        if self.head_output is None:  # the fused loss skipped it: compute it now, once
            self.head_output, self._head = self._head(), None
        logits = self.head_output.float()
        if not self.head_output.requires_grad:
            self._logits = logits
        return logits


@dataclass
class ModelCache:
    """KV caches of one generation batch: one ``LayerCache`` per KV-producing layer (ring
    buffers for sliding-window layers), ``None`` for layers that read another layer's cache."""

    layers: list[LayerCache | None]
    max_len: int

    def nbytes(self) -> int:
        return sum(c.k.nbytes + c.v.nbytes for c in self.layers if c is not None)


class YiLightningPreTrainedModel(PreTrainedModel):
    config_class = YiLightningConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DecoderLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, MoE):
            nn.init.normal_(module.w_gate_up, mean=0.0, std=std)
            nn.init.normal_(module.w_down, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)


class YiLightningForCausalLM(YiLightningPreTrainedModel):
    """The Yi-Lightning causal LM.

    >>> model = YiLightningForCausalLM(YiLightningConfig.preset("tiny"))
    >>> out = model(torch.randint(0, 8192, (2, 16)), labels=torch.randint(0, 8192, (2, 16)))
    >>> out.loss.backward()
    """

    _tied_weights_keys = {"lm_head.weight": "embed_tokens.weight"}

    def __init__(self, config: YiLightningConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        self.gradient_checkpointing = False  # set by gradient_checkpointing_enable(): recompute attention
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def pack_for_inference(self, enable: bool = True) -> int:
        """``MoE.pack_for_inference`` on every MoE layer: for bf16 inference (or under bf16
        autocast) on a CPU with AMX, the experts' weights kept laid out for the tiles, at the cost
        of a bf16 copy of them. Returns how many layers keep one (0 where it would not be used).

        >>> model = YiLightningForCausalLM(YiLightningConfig.preset("tiny")).to(torch.bfloat16)
        >>> packed = model.pack_for_inference()  # the number of MoE layers on a CPU with AMX, else 0
        """
        return sum(m.pack_for_inference(enable) for m in self.modules() if isinstance(m, MoE))

    def quantize_fp8(self, enable: bool = True) -> int:
        """``MoE.quantize_fp8`` on every MoE layer: inference runs the routed experts in FP8
        (e4m3, block scales). Returns how many layers run the Hopper FP8 kernel (0 elsewhere,
        where the FP8 product is computed from dequantized operands: the same outputs, no speed).

        >>> model = YiLightningForCausalLM(YiLightningConfig.preset("tiny"))
        >>> on_hopper = model.quantize_fp8()  # 0 on a CPU
        """
        return sum(m.quantize_fp8(enable) for m in self.modules() if isinstance(m, MoE))

    def parameter_counts(self) -> dict[str, int]:
        """``total`` parameters and ``active`` ones per token (each MoE layer runs top-k of its
        routed experts; everything else always runs). Works on the meta device."""
        total = sum(p.numel() for p in self.parameters())
        routed = sum(m.w_gate_up.numel() + m.w_down.numel() for m in self.modules() if isinstance(m, MoE))
        c = self.config
        return {"total": total, "active": total - routed + routed * c.num_experts_per_tok // c.num_experts}

    # ---- training / prefill -------------------------------------------------------------

    def _packing(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor | None,
                 position_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat token ids [N], cu_seqlens [B + 1] int32 and positions [N]."""
        if input_ids.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"input_ids must be an integer tensor, got {input_ids.dtype}")
        if cu_seqlens is None:
            if input_ids.dim() != 2:
                raise ValueError("input_ids must be [B, S] (or packed [N] with cu_seqlens), got "
                                 f"{tuple(input_ids.shape)}")
            B, S = input_ids.shape
            cu_seqlens = torch.arange(0, B * S + 1, S, dtype=torch.int32, device=input_ids.device)
        elif input_ids.dim() != 1:
            raise ValueError(f"with cu_seqlens, input_ids must be packed [N], got {tuple(input_ids.shape)}")
        elif cu_seqlens.dtype not in (torch.int32, torch.int64) or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
            raise ValueError(f"cu_seqlens must be an int32/int64 [B + 1] tensor, got {cu_seqlens.dtype} "
                             f"{tuple(cu_seqlens.shape)}")
        else:
            check_cu_seqlens(cu_seqlens, input_ids.numel(), "model")
        ids = input_ids.reshape(-1)
        if position_ids is None:
            starts = cu_seqlens[:-1].long().repeat_interleave((cu_seqlens[1:] - cu_seqlens[:-1]).long())
            position_ids = torch.arange(ids.numel(), device=ids.device) - starts
        return ids, cu_seqlens.to(torch.int32), position_ids.reshape(-1)

    def _run_layers(self, hidden: torch.Tensor, cu: torch.Tensor, pos: torch.Tensor,
                    cache: ModelCache | None = None) -> tuple[torch.Tensor, list, list]:
        kvs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        aux, counts = [], []
        for i, layer in enumerate(self.layers):
            spec = layer.spec
            shared = None if spec.owns_kv else kvs[spec.kv_source]
            if self.gradient_checkpointing and self.training:
                a, kv = torch.utils.checkpoint.checkpoint(layer.attn, layer.attn_input(hidden), cu, pos, shared,
                                                          use_reentrant=False)
            else:
                a, kv = layer.attn(layer.attn_input(hidden), cu, pos, shared)
            hidden = hidden + a
            if spec.owns_kv:
                kvs[i] = kv
                if cache is not None:
                    layer.attn.fill_cache(cache.layers[i], *kv, cu)
            f, layer_aux, layer_counts = layer.ffn(hidden)
            hidden = hidden + f
            if layer_aux is not None:
                aux.append(layer_aux)
                counts.append(layer_counts)
        return self.norm(hidden), aux, counts

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                cu_seqlens: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                cache: ModelCache | None = None, **kwargs) -> CausalLMOutput:
        """Logits for every token; with ``labels`` (same shape as ``input_ids``, -100 = ignore)
        the next-token loss within each sequence plus the MoE aux losses.

        Args:
            input_ids: ``[B, S]`` (B sequences of S tokens) or packed ``[N]`` with ``cu_seqlens``.
            cu_seqlens: int32 ``[B + 1]`` sequence boundaries of a packed batch (block-causal:
                packed samples never attend to each other).
            position_ids: positions within each sequence (default 0, 1, ... per sequence).
            cache: fill this cache with the batch's keys/values (prefill; sequence b -> row b).
        """
        mask = kwargs.get("attention_mask")
        if mask is not None and not bool(mask.all()):
            raise ValueError("forward: a padded attention_mask is not supported; pack the sequences without padding "
                             "and pass cu_seqlens (block-causal), or pass each sequence separately")
        shape = input_ids.shape
        ids, cu, pos = self._packing(input_ids, cu_seqlens, position_ids)
        # Checked on the CPU (on a GPU it would cost a host sync every step; generate checks its prompts).
        if ids.numel() and not ids.is_cuda and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(f"input_ids must lie in [0, vocab_size={self.config.vocab_size})")
        if cache is not None:
            rows = next((c.k.shape[0] for c in cache.layers if c is not None), 0)
            if len(cache.layers) != len(self.layers) or cu.numel() - 1 > rows:
                raise ValueError(f"forward: the cache ({len(cache.layers)} layers, {rows} rows) must come from this "
                                 f"model's new_cache with a row per sequence ({cu.numel() - 1} here)")
        hidden, aux, counts = self._run_layers(self.embed_tokens(ids), cu, pos, cache)
        # With labels on the CPU in fp32 the loss is fused with the LM head and no [N, V] logits
        # are formed unless ``out.logits`` is read (ops.lm_head_loss). Not for a replaced or
        # hooked head (an adapter, a quantised head): the fused loss reads the weight directly.
        head = self.lm_head
        fused = (labels is not None and is_plain(head) and head.bias is None
                 and lm_head_loss_fused(hidden, head.weight))
        raw = None if fused else head(hidden)  # (N, V), bf16 under autocast
        out = CausalLMOutput(head_output=None if fused else raw.view(*shape, -1), tokens_per_expert=counts,
                             _head=self._deferred_head(hidden, shape) if fused else None)
        if aux:
            out.aux_per_layer = torch.stack(aux)
            out.aux_loss = out.aux_per_layer.sum()
        if labels is not None:
            if labels.shape != shape:
                raise ValueError(f"labels must have input_ids' shape {tuple(shape)}, got {tuple(labels.shape)}")
            targets = labels.reshape(-1).roll(-1)  # token i predicts token i + 1 ...
            last = torch.zeros_like(targets, dtype=torch.bool)
            last[cu[1:].long() - 1] = True  # ... of its own sequence only
            targets = targets.masked_fill(last, -100)
            # from the head's own output (the kernel reads bf16 in fp32): under autocast the
            # gradient then skips the [N, V] fp32 copy (2 x 10 ms a tiny-preset step on the CPU)
            out.lm_loss = (lm_head_loss(hidden, self.lm_head.weight, targets) if fused
                           else cross_entropy(raw, targets, ignore_index=-100))
            out.loss = out.lm_loss + (out.aux_loss if out.aux_loss is not None else 0.0)
        return out

    def _deferred_head(self, hidden: torch.Tensor, shape: torch.Size) -> Callable[[], torch.Tensor]:
        """The LM head's output for ``hidden``, computed when called as it would have been now:
        under this forward's grad mode, without autocast (a fused forward runs without it), and
        only while the head's weight is unchanged (not after an optimizer step)."""
        weight, grad = self.lm_head.weight, torch.is_grad_enabled()
        stamp = weights_stamp(weight)

        def compute() -> torch.Tensor:
            if weights_stamp(weight) != stamp:
                raise RuntimeError("logits: the LM head's weight may have changed since this forward (it was "
                                   "modified or replaced, or an optimizer took a step); read out.logits before "
                                   "updating the weights, or run the model again")
            with torch.set_grad_enabled(grad), torch.autocast(hidden.device.type, enabled=False):
                return self.lm_head(hidden).view(*shape, -1)
        return compute

    # ---- KV cache and generation ----------------------------------------------------------

    def new_cache(self, batch_size: int, max_len: int, dtype: torch.dtype | None = None) -> ModelCache:
        """Caches for ``batch_size`` sequences of up to ``max_len`` tokens, only for the layers
        that produce K/V (ring buffers of ``sliding_window`` slots for sliding-window layers)."""
        dtype = dtype or self.embed_tokens.weight.dtype
        device = self.embed_tokens.weight.device
        return ModelCache([layer.attn.new_cache(batch_size, max_len, dtype, device) if layer.spec.owns_kv else None
                           for layer in self.layers], max_len)

    def kv_cache_bytes(self, context_len: int, batch: int = 1, dtype: torch.dtype = torch.bfloat16,
                       baseline: bool = False) -> int:
        """KV bytes at ``context_len`` (``baseline``: the same model with full, unshared attention)."""
        return kv_cache_bytes(self.config.kv_layout(), context_len, batch, dtype, baseline=baseline)

    def _step(self, tokens: torch.Tensor, positions: torch.Tensor, cache: ModelCache) -> torch.Tensor:
        """Logits [B, V] for one new token per sequence."""
        hidden = self.embed_tokens(tokens)  # (B, H)
        for i, layer in enumerate(self.layers):
            layer_cache = cache.layers[i if layer.spec.owns_kv else layer.spec.kv_source]
            hidden = hidden + layer.attn.step(layer.attn_input(hidden), positions, layer_cache)
            hidden = hidden + layer.ffn(hidden, aux=False)[0]
        return self.lm_head(self.norm(hidden)).float()

    @torch.no_grad()
    def stream(self, prompts: list[list[int]], max_new_tokens: int, *, temperature: float = 0.0,
               top_p: float = 1.0, top_k: int = 0, repetition_penalty: float = 1.0,
               stop_token_ids: tuple[int, ...] = (), seed: int | None = None,
               use_cache: bool = True) -> Iterator[list[int | None]]:
        """Generate for a batch of prompts of different lengths, yielding after every step the
        new token of each sequence (``None`` for a sequence that has stopped).

        ``temperature=0`` is greedy decoding. ``use_cache=False`` recomputes the whole prefix at
        every step (slow; the reference that the cached path must equal)."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("generate: every prompt needs at least one token")
        for name, value, ok, rule in (
                ("max_new_tokens", max_new_tokens, max_new_tokens >= 0, ">= 0"),
                ("temperature", temperature, temperature >= 0, ">= 0 (0: greedy)"),
                ("top_p", top_p, 0 < top_p <= 1, "in (0, 1]"),
                ("top_k", top_k, top_k >= 0, ">= 0 (0: off)"),
                ("repetition_penalty", repetition_penalty, repetition_penalty > 0, "> 0 (1: off)")):
            if not ok:
                raise ValueError(f"generate: {name} must be {rule}, got {value}")
        if any(not 0 <= t < self.config.vocab_size for p in prompts for t in p):
            raise ValueError(f"generate: prompt tokens must lie in [0, vocab_size={self.config.vocab_size})")
        longest = max(len(p) for p in prompts) + max_new_tokens
        if longest > self.config.max_position_embeddings:
            raise ValueError(f"generate: prompt + max_new_tokens = {longest} tokens exceeds the model's context "
                             f"max_position_embeddings={self.config.max_position_embeddings}")
        device = self.embed_tokens.weight.device
        gen = torch.Generator(device=device)
        if seed is not None:
            gen.manual_seed(seed)
        else:
            gen.seed()  # a fresh generator always starts from the same default seed
        seqs = [list(p) for p in prompts]
        done = [False] * len(seqs)
        lengths = torch.tensor([len(p) for p in prompts], device=device)
        cu = torch.tensor([0, *lengths.cumsum(0).tolist()], dtype=torch.int32, device=device)
        cache = self.new_cache(len(prompts), longest) if use_cache else None
        logits = self(torch.tensor(sum(seqs, []), device=device), cu_seqlens=cu, cache=cache).logits
        last = logits[cu[1:].long() - 1]  # (B, V): each prompt's last position
        for _ in range(max_new_tokens):
            nxt = self._sample(last, seqs, temperature, top_p, top_k, repetition_penalty, gen)
            out: list[int | None] = []
            for b, t in enumerate(nxt.tolist()):
                if done[b]:
                    out.append(None)
                    continue
                seqs[b].append(t)
                done[b] = t in stop_token_ids
                out.append(t)
            yield out
            if all(done):
                return
            if use_cache:
                positions = torch.tensor([len(s) - 1 for s in seqs], device=device)
                last = self._step(torch.tensor([s[-1] for s in seqs], device=device), positions, cache)
            else:
                cu = torch.tensor([0, *torch.tensor([len(s) for s in seqs]).cumsum(0).tolist()], dtype=torch.int32,
                                  device=device)
                logits = self(torch.tensor(sum(seqs, []), device=device), cu_seqlens=cu).logits
                last = logits[cu[1:].long() - 1]

    def generate(self, prompts: list[list[int]], max_new_tokens: int, **kwargs) -> list[list[int]]:
        """The generated tokens of each prompt (stopping tokens included); see ``stream``."""
        out: list[list[int]] = [[] for _ in prompts]
        for step in self.stream(prompts, max_new_tokens, **kwargs):
            for b, t in enumerate(step):
                if t is not None:
                    out[b].append(t)
        return out

    @staticmethod
    def _sample(logits: torch.Tensor, seqs: list[list[int]], temperature: float, top_p: float, top_k: int,
                repetition_penalty: float, gen: torch.Generator) -> torch.Tensor:
        logits = logits.clone()
        if repetition_penalty != 1.0:  # CTRL-style: shrink the logits of tokens already seen
            for b, s in enumerate(seqs):
                seen = torch.tensor(sorted(set(s)), device=logits.device)
                vals = logits[b, seen]
                logits[b, seen] = torch.where(vals > 0, vals / repetition_penalty, vals * repetition_penalty)
        if temperature <= 0:
            return logits.argmax(-1)
        logits = logits / temperature
        if top_k > 0:
            kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.softmax(-1)
        if top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p >= top_p  # keep the smallest set reaching top_p
            drop[:, 0] = False
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        return torch.multinomial(probs, 1, generator=gen)[:, 0]
