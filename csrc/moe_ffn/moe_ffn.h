// The whole expert path of an MoE layer, fused (CPU): permute -> grouped GEMM (gate_up) ->
// SwiGLU -> grouped GEMM (down) -> weighted unpermute, i.e. for token t
//   out[t] = sum_j w[t, j] * W_down[e] @ swiglu(W_gate_up[e] @ x[t]),   e = indices[t, j].
//   moe_ffn:          inference; returns (out [T, H], group_sizes [E]). Optionally with the
//                     experts' weights laid out for AMX tiles by pack_experts.
//   pack_experts:     that layout of a [E, N, K] bf16 weight (bf16 [E, N/32, K/32, 2, 16, 32]).
//   moe_ffn_train:    also returns the pre-activations h [T*k, 2I] (fp32, rows grouped by
//                     expert): the only intermediate that backward keeps.
//   moe_ffn_backward: (dx, dweights, dW_gate_up, dW_down) from dout, the inputs and h (the
//                     routing is sorted again: cheaper than keeping it).
// There is no CUDA kernel: on GPUs the composed ops run (their buffers come from the caching
// allocator, so the fusion's main gain on the CPU, avoiding fresh large tensors, does not apply).
#pragma once
#include <ATen/ATen.h>

#include "common/check.h"
#include "permute/permute.h"

namespace yl::moe_ffn {

using permute::check_permute;

inline void check_moe_ffn(const at::Tensor& x, const at::Tensor& indices, const at::Tensor& weights,
                          const at::Tensor& w_gate_up, const at::Tensor& w_down) {
  check_float(x, "moe_ffn: x");
  check_same_dtype_device(x, "moe_ffn: x", w_gate_up, "moe_ffn: w_gate_up");
  check_same_dtype_device(x, "moe_ffn: x", w_down, "moe_ffn: w_down");
  TORCH_CHECK(w_gate_up.dim() == 3 && x.dim() == 2 && w_gate_up.size(1) >= 2 && w_gate_up.size(1) % 2 == 0 &&
                  w_gate_up.size(2) == x.size(1),
              "moe_ffn: w_gate_up must be [E, 2I, H] with H = x.shape[1] and I >= 1, got ", w_gate_up.sizes(),
              " for x ", x.sizes());
  const int64_t E = w_gate_up.size(0);
  check_permute(x, indices, E);
  TORCH_CHECK(w_down.dim() == 3 && w_down.size(0) == E && w_down.size(1) == x.size(1) &&
                  w_down.size(2) == w_gate_up.size(1) / 2,
              "moe_ffn: w_down must be [E=", E, ", H=", x.size(1), ", I=", w_gate_up.size(1) / 2, "], got ",
              w_down.sizes());
  TORCH_CHECK(weights.scalar_type() == at::kFloat && weights.sizes() == indices.sizes() &&
                  weights.device() == x.device(),
              "moe_ffn: weights must be float32 ", indices.sizes(), " on ", x.device(), ", got ", weights.scalar_type(),
              " ", weights.sizes());
}

}  // namespace yl::moe_ffn
