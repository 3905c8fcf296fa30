// Cross-entropy over the vocabulary without a log-softmax tensor: per row i of logits [N, V]
//   lse_i = log sum_v exp(x_iv),   loss_i = lse_i - x_i,target_i   (0 where target == ignore_index),
// and backward dx_iv = g_i * (exp(x_iv - lse_i) - [v == target_i]) from the logits and lse
// alone. F.cross_entropy keeps an [N, V] log-softmax for backward; this keeps N floats (at the
// paper's 100,352-token vocabulary and 8K tokens: 3.2 GB less per micro-batch). fp32 math.
#pragma once
#include <ATen/ATen.h>

#include "common/check.h"

namespace yl::cross_entropy {

// Returns (N, V).
inline std::tuple<int64_t, int64_t> check_inputs(const at::Tensor& logits, const at::Tensor& targets) {
  check_float(logits, "cross_entropy: logits");
  TORCH_CHECK(logits.dim() == 2 && logits.size(1) >= 1, "cross_entropy: logits must be [N, V] with V >= 1, got ",
              logits.sizes());
  TORCH_CHECK(targets.scalar_type() == at::kLong && targets.dim() == 1 && targets.size(0) == logits.size(0),
              "cross_entropy: targets must be int64 [N=", logits.size(0), "], got ", targets.scalar_type(), " ",
              targets.sizes());
  TORCH_CHECK(targets.device() == logits.device(), "cross_entropy: targets must be on ", logits.device(), ", got ",
              targets.device());
  return {logits.size(0), logits.size(1)};
}

// cross_entropy_backward's grad and lse: float32 [N] on the logits' device.
inline void check_backward(const at::Tensor& grad, const at::Tensor& lse, const at::Tensor& logits, int64_t N) {
  TORCH_CHECK(grad.scalar_type() == at::kFloat && grad.sizes() == at::IntArrayRef({N}) &&
                  lse.scalar_type() == at::kFloat && lse.sizes() == at::IntArrayRef({N}),
              "cross_entropy_backward: grad and lse must be float32 [N=", N, "]");
  TORCH_CHECK(grad.device() == logits.device() && lse.device() == logits.device(),
              "cross_entropy_backward: grad and lse must be on ", logits.device(), ", got ", grad.device(), " and ",
              lse.device());
}

// lm_head_loss's x [N, H] and weight [V, H] (float32, one device) and targets int64 [N];
// returns (N, H, V).
inline std::tuple<int64_t, int64_t, int64_t> check_lm_head(const at::Tensor& x, const at::Tensor& w,
                                                           const at::Tensor& targets) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat,
              "lm_head_loss: x and weight must be float32, got ", x.scalar_type(), " and ", w.scalar_type());
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1) && w.size(0) >= 1 && w.size(1) >= 1,
              "lm_head_loss: x must be [N, H] and weight [V >= 1, H >= 1], got ", x.sizes(), " and ", w.sizes());
  TORCH_CHECK(w.device() == x.device(), "lm_head_loss: weight must be on ", x.device(), ", got ", w.device());
  check_inputs(at::empty({x.size(0), 1}, x.options()), targets);  // int64 [N] on x's device
  return {x.size(0), x.size(1), w.size(0)};
}

}  // namespace yl::cross_entropy
