// Linear: y [..., N] = x [..., K] @ weight [N, K]^T (+ bias [N]), as torch.nn.functional.linear.
// The op exists for the CPU: few rows (a decode step's token rows against every weight of the
// model) run the skinny kernels of common/cpu_skinny.h, more fp32 rows our tiled GEMM
// (common/cpu_gemm.h) where it is on, and outputs of 32 MiB or more (an LM head over a
// prefill) come from the cache of huge-page blocks (common/cpu_alloc.h). Python sends
// everything else to F.linear.
#pragma once
#include <ATen/ATen.h>

#include <optional>

#include "common/check.h"

namespace yl::linear {

inline void check_inputs(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  check_float(x, "linear: x");
  check_same_dtype_device(x, "linear: x", weight, "linear: weight");
  TORCH_CHECK(weight.dim() == 2, "linear: weight must be [N, K], got ", weight.sizes());
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: x must be [..., K] with K = weight.shape[1] = ",
              weight.size(1), ", got ", x.sizes());
  if (bias.has_value()) {
    check_same_dtype_device(x, "linear: x", *bias, "linear: bias");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), "linear: bias must be [N] with N = ",
                weight.size(0), ", got ", bias->sizes());
  }
}

}  // namespace yl::linear
