// Token permutation for the expert path.
//   permute:   x_sorted[row_map[t*k + j]] = x[t], rows grouped by expert, stable in t;
//              group_sizes[e] = rows of expert e.
//   unpermute: out[t] = sum_j w[t, j] * y[row_map[t*k + j]], summed in j order (deterministic).
//   unpermute_backward: dy[row_map[t*k + j]] = w[t, j] * dout[t],
//                       dw[t, j] = <dout[t], y[row_map[t*k + j]]>.
// Every output row is written by exactly one thread: no atomics on floats anywhere.
#pragma once
#include <ATen/ATen.h>

#include "common/check.h"

namespace yl::permute {

inline void check_permute(const at::Tensor& x, const at::Tensor& indices, int64_t num_experts) {
  TORCH_CHECK(x.dim() == 2, "permute: x must be [T, H], got shape ", x.sizes());
  TORCH_CHECK(indices.scalar_type() == at::kLong, "permute: indices must be int64, got ", indices.scalar_type());
  TORCH_CHECK(indices.dim() == 2 && indices.size(0) == x.size(0) && indices.size(1) >= 1,
              "permute: indices must be [T=", x.size(0), ", k >= 1], got shape ", indices.sizes());
  TORCH_CHECK(indices.device() == x.device(), "permute: indices must be on ", x.device(), ", got ",
              indices.device());
  TORCH_CHECK(num_experts >= 1, "permute: num_experts must be >= 1, got ", num_experts);
}

// Returns (T, k, H).
inline std::tuple<int64_t, int64_t, int64_t> check_unpermute(const at::Tensor& y, const at::Tensor& row_map,
                                                            const at::Tensor& weights) {
  TORCH_CHECK(y.dim() == 2, "unpermute: y_sorted must be [T*k, H], got shape ", y.sizes());
  check_float(y, "unpermute: y_sorted");
  TORCH_CHECK(weights.dim() == 2 && weights.scalar_type() == at::kFloat,
              "unpermute: weights must be float32 [T, k], got ", weights.scalar_type(), " ", weights.sizes());
  TORCH_CHECK(row_map.scalar_type() == at::kLong && row_map.dim() == 1 && row_map.numel() == weights.numel(),
              "unpermute: row_map must be int64 [T*k=", weights.numel(), "], got ", row_map.scalar_type(), " ",
              row_map.sizes());
  TORCH_CHECK(y.size(0) == row_map.numel(), "unpermute: y_sorted has ", y.size(0), " rows, row_map ",
              row_map.numel());
  TORCH_CHECK(row_map.device() == y.device() && weights.device() == y.device(),
              "unpermute: y_sorted, row_map and weights must be on one device");
  return {weights.size(0), weights.size(1), y.size(1)};
}

// unpermute_backward's grad: [T, H] of y_sorted's dtype, on its device.
inline void check_unpermute_grad(const at::Tensor& grad, const at::Tensor& y, int64_t T, int64_t H) {
  TORCH_CHECK(grad.sizes() == at::IntArrayRef({T, H}) && grad.scalar_type() == y.scalar_type(),
              "unpermute_backward: grad must be [T, H] of y_sorted's dtype, got ", grad.scalar_type(), " ",
              grad.sizes());
  TORCH_CHECK(grad.device() == y.device(), "unpermute_backward: grad must be on ", y.device(), ", got ",
              grad.device());
}

}  // namespace yl::permute
