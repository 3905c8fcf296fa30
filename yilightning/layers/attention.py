"""Hybrid attention of Yi-Lightning: blocks of sliding-window layers and one full-attention
layer, with consecutive full-attention layers sharing one KV cache, and the KV-cache memory
arithmetic behind the report's "up to 82.8%" reduction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from yilightning.layers.linear import Linear, is_plain
from yilightning.layers.stamp import weights_stamp
from yilightning.ops import append_kv, attention, decode_attention, linear, rms_norm, rotary


@dataclass(frozen=True)
class LayerSpec:
    """One layer's attention: its kind and where its keys/values come from."""

    kind: str  # "swa" (sliding window) or "full"
    kv_source: int | None  # index of the earlier layer whose K/V this layer reads; None: its own

    @property
    def owns_kv(self) -> bool:
        return self.kv_source is None


def hybrid_schedule(num_layers: int, swa_per_full: int = 3, share_full_kv: bool = True) -> list[LayerSpec]:
    """Per layer: ``swa_per_full`` sliding-window layers, then one full-attention layer,
    repeated; with ``share_full_kv`` the full-attention layers pair up in order and the second
    of each pair reads the first's K/V (it has no k/v projections and stores nothing).

    >>> [(s.kind, s.kv_source) for s in hybrid_schedule(8)]
    [('swa', None), ('swa', None), ('swa', None), ('full', None), ('swa', None), ('swa', None), ('swa', None), ('full', 3)]
    """
    if num_layers < 1 or swa_per_full < 0:
        raise ValueError(f"hybrid_schedule: need num_layers >= 1 and swa_per_full >= 0, got {num_layers}, {swa_per_full}")
    specs, open_full = [], None
    for i in range(num_layers):
        if (i + 1) % (swa_per_full + 1):
            specs.append(LayerSpec("swa", None))
        elif share_full_kv and open_full is not None:
            specs.append(LayerSpec("full", open_full))
            open_full = None
        else:
            specs.append(LayerSpec("full", None))
            open_full = i
    return specs


@dataclass(frozen=True)
class KVLayout:
    """What the KV cache size depends on."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    window: int = 4096  # sliding window W of the "swa" layers
    swa_per_full: int = 3
    share_full_kv: bool = True

    def __post_init__(self) -> None:
        for name in ("num_layers", "num_kv_heads", "head_dim", "window"):
            if getattr(self, name) < 1:
                raise ValueError(f"KVLayout: {name} must be >= 1, got {getattr(self, name)}")
        if self.swa_per_full < 0:
            raise ValueError(f"KVLayout: swa_per_full must be >= 0, got {self.swa_per_full}")

    def schedule(self) -> list[LayerSpec]:
        return hybrid_schedule(self.num_layers, self.swa_per_full, self.share_full_kv)


def kv_cache_bytes(layout: KVLayout, context_len: int, batch: int = 1, dtype: torch.dtype = torch.bfloat16,
                   *, baseline: bool = False) -> int:
    """Bytes of K and V cached for ``context_len`` tokens: a sliding-window layer keeps
    ``min(W, L)`` tokens, a full layer ``L``, a KV-sharing layer nothing. ``baseline=True``: the
    same model with full, unshared GQA attention in every layer."""
    per_token = 2 * layout.num_kv_heads * layout.head_dim * torch.tensor([], dtype=dtype).element_size() * batch
    if baseline:
        return layout.num_layers * context_len * per_token
    tokens = sum(min(layout.window, context_len) if s.kind == "swa" else context_len
                 for s in layout.schedule() if s.owns_kv)
    return tokens * per_token


def kv_cache_table(layout: KVLayout, contexts: tuple[int, ...] = (4096, 8192, 16384, 32768, 65536, 131072),
                   dtype: torch.dtype = torch.bfloat16) -> str:
    """Markdown table: KV bytes per sequence, hybrid vs all-full attention, from 4K to 128K."""
    rows = ["| context | hybrid + shared KV | all full, unshared | saved |", "|---|---|---|---|"]
    for L in contexts:
        ours, full = kv_cache_bytes(layout, L, dtype=dtype), kv_cache_bytes(layout, L, dtype=dtype, baseline=True)
        rows.append(f"| {L // 1024}K | {ours / 2**30:.2f} GiB | {full / 2**30:.2f} GiB | {100 * (1 - ours / full):.1f}% |")
    return "\n".join(rows)


class RMSNorm(nn.Module):
    """RMS normalisation over the last dim, computed in fp32 (as Llama/Qwen)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


@dataclass
class LayerCache:
    """One KV-producing layer's cache: ``[B, S, Hk, D]``, a ring buffer of ``S = window``
    slots for a sliding-window layer whose window is shorter than the cache length."""

    k: torch.Tensor
    v: torch.Tensor
    ring: bool


class HybridAttention(nn.Module):
    """GQA self-attention with RoPE for one layer of the hybrid schedule.

    Args:
        hidden_size, num_heads, num_kv_heads, head_dim: projections (``head_dim`` defaults to
            ``hidden_size // num_heads``).
        window: sliding window of an "swa" layer, None for full attention.
        owns_kv: False for a layer that reads an earlier layer's K/V (no k/v projections).
        rope_base: RoPE base frequency (raised for long-context extension).
        qk_norm: RMS-normalise queries and keys per head (Qwen3 style).
    """

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: int | None = None, *,
                 window: int | None = None, owns_kv: bool = True, rope_base: float = 10000.0,
                 qk_norm: bool = False, bias: bool = False, norm_eps: float = 1e-6) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"HybridAttention: num_heads ({num_heads}) must be a multiple of num_kv_heads "
                             f"({num_kv_heads})")
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = head_dim or hidden_size // num_heads
        self.window, self.owns_kv, self.rope_base = window, owns_kv, rope_base
        D = self.head_dim
        self.q_proj = Linear(hidden_size, num_heads * D, bias=bias)
        self.k_proj = Linear(hidden_size, num_kv_heads * D, bias=bias) if owns_kv else None
        self.v_proj = Linear(hidden_size, num_kv_heads * D, bias=bias) if owns_kv else None
        self.o_proj = Linear(num_heads * D, hidden_size, bias=bias)
        self.q_norm = RMSNorm(D, norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(D, norm_eps) if qk_norm and owns_kv else None
        self._qkv_stacked: tuple | None = None  # see _qkv

    def _rotated(self, proj: torch.Tensor, heads: int, norm: nn.Module | None, positions: torch.Tensor) -> torch.Tensor:
        """A q or k projection ``[..., heads * D]`` as ``[..., heads, D]``, normalised per head
        (qk_norm) and rotated."""
        t = proj.view(*proj.shape[:-1], heads, self.head_dim)
        return rotary(norm(t) if norm is not None else t, positions, self.rope_base)

    def _queries(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self._rotated(self.q_proj(x), self.num_heads, self.q_norm, positions)

    def _keys_values(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self._rotated(self.k_proj(x), self.num_kv_heads, self.k_norm, positions)
        return k, self.v_proj(x).view(*x.shape[:-1], self.num_kv_heads, self.head_dim)

    def _qkv(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The q, k and v projections' weights (and biases) stacked, for one product per
        generation step instead of three (no-grad only, and only for plain ``Linear``
        projections: a hooked one is called as a module); rebuilt whenever ``weights_stamp``
        says they may have changed (an optimizer step, fused ones included). Longer inputs
        (training, prefill) keep three products: measured, the stacked one was 2-6% slower there
        (its q/k/v column slices are copied again by the ops after it)."""
        projs = (self.q_proj, self.k_proj, self.v_proj)
        key = weights_stamp(*(t for p in projs for t in p.parameters()))
        if self._qkv_stacked is None or self._qkv_stacked[0] != key:
            bias = torch.cat([p.bias for p in projs]) if self.q_proj.bias is not None else None
            self._qkv_stacked = (key, torch.cat([p.weight for p in projs]), bias)
        return self._qkv_stacked[1], self._qkv_stacked[2]

    def __getstate__(self) -> dict:
        """Pickled (``torch.save`` of the module, ``copy.deepcopy``) without the stacked q/k/v
        (and its stamp): made again on the next generation step."""
        return {**super().__getstate__(), "_qkv_stacked": None}

    def forward(self, x: torch.Tensor, cu_seqlens: torch.Tensor, positions: torch.Tensor,
                shared_kv: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Training / prefill over packed sequences.

        Args:
            x: ``[N, H]`` tokens of all sequences, packed.
            cu_seqlens: int32 ``[B + 1]``; positions: ``[N]`` position of each token in its sequence.
            shared_kv: the producer's ``(k, v)`` for a layer that does not own its K/V.

        Returns ``(out [N, H], (k, v))``: the keys/values this layer attended to (rotated), for a
        later layer that shares them and for filling a cache.
        """
        if self.owns_kv == (shared_kv is not None):
            raise ValueError("HybridAttention: pass shared_kv exactly when the layer does not own its K/V")
        q = self._queries(x, positions)  # (N, Hq, D)
        k, v = self._keys_values(x, positions) if self.owns_kv else shared_kv  # (N, Hk, D)
        out = attention(q, k, v, cu_seqlens, window=self.window)
        return self.o_proj(out.reshape(x.shape[0], -1)), (k, v)

    def new_cache(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device | str) -> LayerCache:
        """An empty cache for this (KV-owning) layer: a ring buffer of ``window`` slots when
        the window is shorter than ``max_len``, else ``max_len`` contiguous slots."""
        ring = self.window is not None and self.window < max_len
        slots = self.window if ring else max_len
        shape = (batch, slots, self.num_kv_heads, self.head_dim)
        return LayerCache(torch.zeros(shape, dtype=dtype, device=device),
                          torch.zeros(shape, dtype=dtype, device=device), ring)

    def fill_cache(self, cache: LayerCache, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor) -> None:
        """Write a prefilled batch's keys/values (sequence b = cache row b) into the cache; a ring
        buffer keeps each sequence's last ``window`` tokens."""
        S = cache.k.shape[1]
        for b, (s0, s1) in enumerate(zip(cu_seqlens.tolist(), cu_seqlens.tolist()[1:])):
            if s1 - s0 > S and not cache.ring:
                raise ValueError(f"fill_cache: a {s1 - s0}-token prompt does not fit a cache of {S} slots")
            start = max(s0, s1 - S)
            slots = torch.arange(start - s0, s1 - s0, device=k.device) % S
            cache.k[b, slots] = k[start:s1].to(cache.k.dtype)
            cache.v[b, slots] = v[start:s1].to(cache.v.dtype)

    def step(self, x: torch.Tensor, positions: torch.Tensor, cache: LayerCache) -> torch.Tensor:
        """One generation step: ``x [B, H]`` (one new token per sequence at ``positions [B]``)
        -> ``[B, H]``. A KV-owning layer appends its new K/V to ``cache`` first; a sharing layer
        reads the producer's cache (already appended this step), with no copy. The cache may hold
        another dtype than the layer's (a bf16 cache for an fp32 layer): the step attends in the
        cache's dtype and returns ``x``'s."""
        projs = (self.q_proj, self.k_proj, self.v_proj)
        if self.owns_kv and not torch.is_grad_enabled() and all(is_plain(p) for p in projs):  # q, k, v in one product
            w, b = self._qkv()
            nq, nk = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
            qp, kp, vp = linear(x, w, b).split([nq, nk, nk], dim=-1)
            q = self._rotated(qp, self.num_heads, self.q_norm, positions)  # (B, Hq, D)
            k = self._rotated(kp, self.num_kv_heads, self.k_norm, positions)
            append_kv(cache.k, cache.v, k, vp.reshape(k.shape), positions, ring=cache.ring)
        else:
            q = self._queries(x[:, None], positions[:, None])[:, 0]  # (B, Hq, D)
            if self.owns_kv:
                k, v = self._keys_values(x[:, None], positions[:, None])
                append_kv(cache.k, cache.v, k[:, 0], v[:, 0], positions, ring=cache.ring)
        out = decode_attention(q.to(cache.k.dtype), cache.k, cache.v, positions + 1, window=self.window)
        return self.o_proj(out.reshape(x.shape[0], -1).to(x.dtype))
