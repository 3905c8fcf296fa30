// Token permutation for the expert path.
//   permute:   x_sorted[row_map[t*k + j]] = x[t], rows grouped by expert, stable in t;
//              group_sizes[e] = rows of expert e.
//   unpermute: out[t] = sum_j w[t, j] * y[row_map[t*k + j]], summed in j order (deterministic).
//   unpermute_backward: dy[row_map[t*k + j]] = w[t, j] * dout[t],
//                       dw[t, j] = <dout[t], y[row_map[t*k + j]]>.
//   moe_ffn (CPU, inference): unpermute(expert FFNs(permute(x))) in one kernel, returning
//                       (out [T, H], group_sizes [E]); the expert FFN of row r of expert e is
//                       W_down[e] @ swiglu(W_gate_up[e] @ x_sorted[r]).
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

}  // namespace yl::permute
