"""The fine-grained Mixture-of-Experts FFN of Yi-Lightning.

router -> ``route`` (top-k) -> ``permute`` (group rows by expert) -> ``expert_ffn`` (grouped
GEMM, SwiGLU, grouped GEMM) -> ``unpermute`` (weighted sum back per token) [+ shared experts],
with the report's three load-balancing losses (L_ST, L_EP, L_PEP) computed on the way. The
expert path is ``ops.moe_ffn``: fused kernels on the CPU (forward and backward), the composed ops
otherwise; inference can keep the experts packed for AMX tiles (``pack_for_inference``) or run
them in FP8 (``quantize_fp8``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from yilightning import _ext
from yilightning.layers.linear import Linear
from yilightning.layers.stamp import weights_stamp
from yilightning.ops import (
    expert_ffn_fp8, load_balance_losses, moe_ffn, pack_experts, permute, quantize_fp8, route, swiglu, unpermute,
)
from yilightning.ops.fp8 import fp8_kernel_runs


@dataclass
class MoEOutput:
    """What ``MoE.forward`` returns."""

    hidden: torch.Tensor  # (..., H) the layer output
    st: torch.Tensor  # L_ST, all experts, times coef_st (0 in eval mode without autograd)
    ep: torch.Tensor  # L_EP, mean over expert-parallel groups, times coef_ep
    pep: torch.Tensor  # L_PEP, mean over partitions, times coef_pep
    tokens_per_expert: torch.Tensor  # (E,) int64, for load logging and expert-bias updates

    @property
    def aux_loss(self) -> torch.Tensor:
        """st + ep + pep: add it to the LM loss."""
        return self.st + self.ep + self.pep


class MoE(nn.Module):
    """Fine-grained MoE with SwiGLU experts.

    Args:
        hidden_size: H.
        num_experts: E routed experts.
        top_k: experts per token.
        intermediate_size: I of one (fine-grained) expert.
        num_shared_experts: always-on experts, fused into one SwiGLU MLP of width
            ``num_shared_experts * intermediate_size``.
        score, normalize, scale, n_groups, topk_groups: routing options (see ``ops.route``).
        expert_bias: keep a selection-only bias buffer (aux-loss-free balancing, updated by
            the trainer with ``ops.update_expert_bias``).
        ep_size, partitions, coef_st, coef_ep, coef_pep: the load-balancing losses (see
            ``ops.load_balance_losses``); defaults are the report's coefficients.
        recompute: recompute the expert activation in backward instead of storing it (the
            composed GPU path; the fused CPU path always keeps only the pre-activations).

    Weights use the Hugging Face layout: ``w_gate_up [E, 2I, H]`` (gate rows first),
    ``w_down [E, H, I]``, ``router.weight [E, H]``.
    """

    def __init__(
        self,
        hidden_size: int,
        num_experts: int,
        top_k: int,
        intermediate_size: int,
        *,
        num_shared_experts: int = 0,
        score: str = "softmax",
        normalize: bool = True,
        scale: float = 1.0,
        n_groups: int = 1,
        topk_groups: int | None = None,
        expert_bias: bool = False,
        ep_size: int = 1,
        partitions: int = 1,
        coef_st: float = 1e-6,
        coef_ep: float = 1e-4,
        coef_pep: float = 1e-3,
        recompute: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value, least in (("hidden_size", hidden_size, 1), ("num_experts", num_experts, 1),
                                   ("intermediate_size", intermediate_size, 1),
                                   ("num_shared_experts", num_shared_experts, 0), ("ep_size", ep_size, 1),
                                   ("partitions", partitions, 1)):
            if not isinstance(value, int) or value < least:
                raise ValueError(f"MoE: {name} must be an integer >= {least}, got {value!r}")
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"MoE: top_k must be in [1, num_experts={num_experts}], got {top_k}")
        if num_experts % ep_size or (num_experts // ep_size) % partitions:
            raise ValueError(f"MoE: num_experts={num_experts} must split into ep_size={ep_size} groups of "
                             f"partitions={partitions} equal partitions")
        f = dict(device=device, dtype=dtype)
        self.hidden_size, self.num_experts, self.top_k = hidden_size, num_experts, top_k
        self.intermediate_size = intermediate_size
        self.route_kwargs = dict(score=score, normalize=normalize, scale=scale, n_groups=n_groups,
                                 topk_groups=topk_groups)
        self.loss_kwargs = dict(ep_size=ep_size, partitions=partitions, coef_st=coef_st, coef_ep=coef_ep,
                                coef_pep=coef_pep)
        self.recompute = recompute
        self.router = Linear(hidden_size, num_experts, bias=False, **f)
        self.w_gate_up = nn.Parameter(torch.empty(num_experts, 2 * intermediate_size, hidden_size, **f))
        self.w_down = nn.Parameter(torch.empty(num_experts, hidden_size, intermediate_size, **f))
        self.register_buffer("expert_bias", torch.zeros(num_experts, device=device) if expert_bias else None)
        shared = num_shared_experts * intermediate_size
        self.shared_gate_up = Linear(hidden_size, 2 * shared, bias=False, **f) if shared else None
        self.shared_down = Linear(shared, hidden_size, bias=False, **f) if shared else None
        self._tiles: tuple | None = None  # pack_for_inference: (gate_up tiles, down tiles, the weights' stamp)
        self._fp8: tuple | None = None  # quantize_fp8: ((q, scale) of gate_up, of down, the weights' stamp)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Each expert initialised like an ``nn.Linear`` of its own fan-in."""
        nn.init.uniform_(self.w_gate_up, -1 / math.sqrt(self.hidden_size), 1 / math.sqrt(self.hidden_size))
        bound = 1 / math.sqrt(self.intermediate_size)
        nn.init.uniform_(self.w_down, -bound, bound)

    def forward(self, x: torch.Tensor) -> MoEOutput:
        """``x [..., H]`` -> ``MoEOutput`` with ``hidden [..., H]``."""
        if x.shape[-1] != self.hidden_size:
            raise ValueError(f"MoE: x.shape[-1] must be hidden_size={self.hidden_size}, got {x.shape[-1]}")
        shape = x.shape
        x2 = x.reshape(-1, self.hidden_size)  # (T, H)
        logits = self.router(x2)  # (T, E)
        weights, indices, probs = route(logits, self.top_k, expert_bias=self.expert_bias, **self.route_kwargs)
        if self.training or torch.is_grad_enabled():
            st, ep, pep = load_balance_losses(probs, indices, **self.loss_kwargs)
        else:  # inference (e.g. generation): the balancing losses are not needed; skip their cost
            st = ep = pep = logits.new_zeros((), dtype=torch.float32)
        inference = not torch.is_grad_enabled()
        if inference and (fp8 := self._current("_fp8", self.quantize_fp8)):
            x_sorted, group_sizes, row_map = permute(x2, indices, self.num_experts)
            out = unpermute(expert_ffn_fp8(x_sorted, *fp8, group_sizes), row_map, weights)
        else:
            tiles = self._current("_tiles", self.pack_for_inference) if inference else None
            out, group_sizes = moe_ffn(x2, indices, weights, self.w_gate_up, self.w_down, recompute=self.recompute,
                                       tiles=tiles)
        if self.shared_gate_up is not None:
            out = out + self.shared_down(swiglu(self.shared_gate_up(x2)))
        return MoEOutput(out.reshape(shape), st, ep, pep, group_sizes)

    def pack_for_inference(self, enable: bool = True) -> bool:
        """Keep the experts' weights laid out for the CPU's AMX tiles (``ops.pack_experts``):
        inference in bf16 (or under bf16 autocast) without autograd, a prefill, evaluation or
        generation, then skips laying them out on every call. The copy costs the memory of the
        experts' weights in bf16, and it follows them: once they may have changed (any
        ``torch.optim`` optimizer's step, an in-place change, ``load_state_dict``, new ``.data``),
        the next such call packs them again; only a change written through ``.data`` in place
        (``w.data.copy_(...)``, which PyTorch does not count) goes unseen: call this method again
        after one. Returns whether the copy is kept: False where it would not be used (no
        compiled extension, a CPU without AMX, the weights not on the CPU, H or I not multiples of
        32). ``enable=False`` drops it.

        >>> import torch
        >>> from yilightning.layers import MoE
        >>> moe = MoE(64, 8, 2, 32, dtype=torch.bfloat16)
        >>> packed = moe.pack_for_inference()  # True on a CPU with AMX
        >>> with torch.no_grad():
        ...     out = moe(torch.randn(16, 64, dtype=torch.bfloat16))
        """
        self._tiles = None
        usable = (enable and self.w_gate_up.device.type == "cpu" and _ext.module is not None
                  and bool(_ext.module.build_info().get("cpu_amx"))
                  and self.hidden_size % 32 == 0 and self.intermediate_size % 32 == 0)
        if usable:
            self._tiles = (pack_experts(self.w_gate_up), pack_experts(self.w_down),
                           weights_stamp(self.w_gate_up, self.w_down))
        return usable

    def quantize_fp8(self, enable: bool = True) -> bool:
        """Keep FP8 (e4m3) copies of the experts' weights, one scale per 128 x 128 block
        (``ops.quantize_fp8``): inference without autograd then runs the experts in FP8
        (``ops.expert_ffn_fp8``: activations quantized per row and 128 columns, DeepSeek-V3's
        recipe). Training and calls with autograd on are unchanged. The copies follow the weights
        as ``pack_for_inference``'s do, and take precedence over them.

        Returns whether the FP8 kernel runs (a Hopper GPU, H and I multiples of 128). Elsewhere
        the FP8 path computes the same product from the dequantized operands: no faster, but it
        shows on any machine what FP8 does to a model's outputs. ``enable=False`` drops the copies.

        >>> import torch
        >>> from yilightning.layers import MoE
        >>> moe = MoE(256, 8, 2, 128)
        >>> on_hopper = moe.quantize_fp8()  # False on a CPU
        >>> with torch.no_grad():
        ...     out = moe(torch.randn(16, 256))
        """
        if enable:
            try:
                with torch.no_grad():  # made first: a failure leaves the layer as it was
                    copies = (quantize_fp8(self.w_gate_up, (128, 128)), quantize_fp8(self.w_down, (128, 128)))
            except ValueError as e:
                raise ValueError(f"MoE.quantize_fp8: cannot quantize the expert weights: {e}") from e
        self._fp8 = (*copies, weights_stamp(self.w_gate_up, self.w_down)) if enable else None
        return enable and fp8_kernel_runs(self.w_gate_up.device, self.hidden_size, 2 * self.intermediate_size) \
            and fp8_kernel_runs(self.w_gate_up.device, self.intermediate_size, self.hidden_size)

    def __getstate__(self) -> dict:
        """Pickled (``torch.save`` of the module, ``copy.deepcopy``) without the packed or FP8
        copies or their stamps: such a layer keeps the option and makes the copies again on its
        first call."""
        state = dict(super().__getstate__())
        for name in ("_tiles", "_fp8"):
            if state[name] is not None:
                state[name] = (None, None, None)  # a stamp no weights match
        return state

    def __setstate__(self, state: dict) -> None:
        """Unpickles modules saved before an option existed (no ``_tiles`` or ``_fp8``) as without it."""
        super().__setstate__({"_tiles": None, "_fp8": None, **state})

    def _current(self, name: str, remake: Callable[[], bool]) -> tuple | None:
        """The derived copies in attribute ``name`` (``_tiles``, ``_fp8``), made again by
        ``remake`` if the weights changed since; None if the option is off, or if ``remake``
        drops them (packed tiles, once the weights have left the CPU)."""
        current = getattr(self, name)
        if current is not None and current[2] != weights_stamp(self.w_gate_up, self.w_down):
            remake()
            current = getattr(self, name)
        return None if current is None else current[:2]

    @classmethod
    def from_hf(cls, block: nn.Module, **kwargs) -> "MoE":
        """A ``MoE`` with the weights of a Hugging Face ``Qwen3MoeSparseMoeBlock`` (transformers 5
        layout: fused ``experts.gate_up_proj [E, 2I, H]``, ``experts.down_proj [E, H, I]``,
        ``gate.weight [E, H]``). Extra keyword arguments go to the constructor."""
        experts, gate = getattr(block, "experts", None), getattr(block, "gate", None)
        if experts is None or gate is None or not hasattr(experts, "gate_up_proj"):
            raise TypeError(f"MoE.from_hf: expected a transformers Qwen3MoeSparseMoeBlock (fused experts), "
                            f"got {type(block).__name__}")
        E, two_i, H = experts.gate_up_proj.shape
        w = experts.gate_up_proj
        moe = cls(H, E, gate.top_k, two_i // 2, normalize=gate.norm_topk_prob, device=w.device, dtype=w.dtype,
                  **kwargs)
        with torch.no_grad():
            moe.router.weight.copy_(gate.weight)
            moe.w_gate_up.copy_(experts.gate_up_proj)
            moe.w_down.copy_(experts.down_proj)
        return moe
