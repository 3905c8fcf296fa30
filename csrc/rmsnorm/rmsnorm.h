// RMS normalisation over the last dim, fp32 math for every dtype, as Llama/Qwen compute it:
//   y = weight * round_to_x_dtype(x * rsqrt(mean(x^2) + eps))
// The output dtype is the promotion of x's and weight's dtypes (a float32 weight on bf16
// activations gives float32, exactly as the PyTorch expression does).
// Backward, per row with r = rsqrt(mean(x^2) + eps), n = x r, dn = dy * weight:
//   dx = r * (dn - n * mean(dn * n)),   dweight = sum over rows of dy * round_to_x_dtype(n),
// the weight gradient summed over fixed blocks of kRowBlock rows, then over the blocks in order
// (deterministic for any thread count).
#pragma once
#include <ATen/ATen.h>

#include "common/check.h"
#include "common/macros.h"

namespace yl::rmsnorm {

constexpr int64_t kRowBlock = 64;

// Returns (rows, C).
inline std::tuple<int64_t, int64_t> check_inputs(const at::Tensor& x, const at::Tensor& weight, double eps) {
  check_float(x, "rms_norm: x");
  check_float(weight, "rms_norm: weight");
  TORCH_CHECK(x.dim() >= 1, "rms_norm: x must have at least one dimension [..., C], got a scalar");
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == x.size(-1), "rms_norm: weight must be [C=", x.size(-1),
              "], got ", weight.sizes());
  TORCH_CHECK(weight.device() == x.device(), "rms_norm: weight must be on ", x.device(), ", got ",
              weight.device());
  TORCH_CHECK(eps >= 0, "rms_norm: eps must be >= 0, got ", eps);
  const int64_t C = x.size(-1);
  return {C == 0 ? 0 : x.numel() / C, C};
}

inline void check_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight) {
  TORCH_CHECK(grad.sizes() == x.sizes() && grad.device() == x.device(), "rms_norm_backward: grad must have x's "
              "shape ", x.sizes(), " and device, got ", grad.sizes(), " on ", grad.device());
  TORCH_CHECK(grad.scalar_type() == at::result_type(x, weight), "rms_norm_backward: grad must have the output "
              "dtype ", at::result_type(x, weight), ", got ", grad.scalar_type());
}

}  // namespace yl::rmsnorm
