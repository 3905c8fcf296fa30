"""The package's ops: each runs a compiled CPU/CUDA kernel when there is one for the input's
device and its pure-PyTorch ``*_reference`` otherwise (see ``yilightning doctor``).

``SPECS`` lists every op family for the self-check (``yilightning quickstart``) and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from yilightning.ops import attention as _attention_mod
from yilightning.ops import grouped_gemm as _gg_mod
from yilightning.ops import linear as _linear_mod
from yilightning.ops import rmsnorm as _rmsnorm_mod
from yilightning.ops import routing as _routing_mod
from yilightning.ops import swiglu as _swiglu_mod
from yilightning.ops.attention import (
    append_kv, attention, attention_reference, decode_attention, decode_attention_reference, rotary,
    rotary_reference,
)
from yilightning.ops.cross_entropy import cross_entropy, cross_entropy_reference, lm_head_loss, lm_head_loss_fused
from yilightning.ops.fp8 import (
    dequantize_fp8, dequantize_fp8_reference, expert_ffn_fp8, grouped_gemm_fp8, grouped_gemm_fp8_reference,
    quantize_fp8, quantize_fp8_reference,
)
from yilightning.ops.grouped_gemm import expert_ffn, grouped_gemm, grouped_gemm_reference, moe_ffn, pack_experts
from yilightning.ops.linear import linear, linear_reference
from yilightning.ops.permute import permute, permute_reference, unpermute, unpermute_reference
from yilightning.ops.rmsnorm import rms_norm, rms_norm_reference
from yilightning.ops.routing import load_balance_losses, route, route_reference, update_expert_bias
from yilightning.ops.swiglu import swiglu, swiglu_reference


@dataclass(frozen=True)
class OpSpec:
    """One op family: the public function, its reference and odd-sized example inputs."""

    name: str
    fn: Callable[..., torch.Tensor]
    reference: Callable[..., torch.Tensor]
    example_inputs: Callable[[torch.device, torch.dtype], tuple[torch.Tensor, ...]]


SPECS: dict[str, OpSpec] = {
    "swiglu": OpSpec("swiglu", swiglu, swiglu_reference, _swiglu_mod.example_inputs),
    "route": OpSpec("route", _routing_mod.check_fn(route), _routing_mod.check_fn(route_reference),
                    _routing_mod.example_inputs),
    "grouped_gemm": OpSpec("grouped_gemm", _gg_mod.check_fn(grouped_gemm), _gg_mod.check_fn(grouped_gemm_reference),
                           _gg_mod.example_inputs),
    "rms_norm": OpSpec("rms_norm", rms_norm, rms_norm_reference, _rmsnorm_mod.example_inputs),
    "linear": OpSpec("linear", linear, linear_reference, _linear_mod.example_inputs),
    "attention": OpSpec("attention", _attention_mod.check_fn(attention), _attention_mod.check_fn(attention_reference),
                        _attention_mod.example_inputs),
}

__all__ = [
    "OpSpec", "SPECS", "append_kv", "attention", "attention_reference", "cross_entropy", "cross_entropy_reference",
    "decode_attention",
    "decode_attention_reference", "dequantize_fp8", "dequantize_fp8_reference", "expert_ffn", "expert_ffn_fp8", "grouped_gemm_fp8", "grouped_gemm_fp8_reference",
    "quantize_fp8", "quantize_fp8_reference", "rotary", "rotary_reference", "grouped_gemm", "grouped_gemm_reference", "linear",
    "linear_reference", "lm_head_loss", "lm_head_loss_fused", "load_balance_losses",
    "moe_ffn", "pack_experts", "permute", "rms_norm", "rms_norm_reference", "permute_reference", "route", "route_reference", "swiglu",
    "swiglu_reference", "unpermute", "unpermute_reference", "update_expert_bias",
]
