// Grouped GEMM for the MoE experts: rows of `a` come in consecutive groups (group_sizes[g] rows
// for expert g); group g is multiplied by its own matrix b[g].
//   forward:  c[rows of g] = a[rows of g] @ (trans_b ? b[g]^T : b[g])
//   wgrad:    db[g] = trans_b ? dc_g^T @ a_g : a_g^T @ dc_g      (the K-grouped GEMM)
#pragma once
#include <ATen/ATen.h>

#include "common/check.h"

namespace yl::grouped_gemm {

// Shape facts of one call, validated.
struct Dims {
  int64_t M, K, N, E;
};

inline Dims check_forward(const at::Tensor& a, const at::Tensor& b, const at::Tensor& group_sizes,
                          bool trans_b) {
  check_float(a, "grouped_gemm: a");
  check_same_dtype_device(a, "grouped_gemm: a", b, "grouped_gemm: b");
  TORCH_CHECK(a.dim() == 2, "grouped_gemm: a must be [M, K], got shape ", a.sizes());
  TORCH_CHECK(b.dim() == 3, "grouped_gemm: b must be [E, K, N] (or [E, N, K] with trans_b), got shape ",
              b.sizes());
  const int64_t E = b.size(0), K = a.size(1);
  const int64_t bk = trans_b ? b.size(2) : b.size(1), N = trans_b ? b.size(1) : b.size(2);
  TORCH_CHECK(bk == K, "grouped_gemm: a is [M, K=", K, "] but b", trans_b ? " [E, N, K]" : " [E, K, N]",
              " has K=", bk, " (shape ", b.sizes(), "); check trans_b");
  TORCH_CHECK(group_sizes.scalar_type() == at::kLong, "grouped_gemm: group_sizes must be int64, got ",
              group_sizes.scalar_type());
  TORCH_CHECK(group_sizes.dim() == 1 && group_sizes.size(0) == E, "grouped_gemm: group_sizes must be [E=",
              E, "], got shape ", group_sizes.sizes());
  TORCH_CHECK(group_sizes.device() == a.device(), "grouped_gemm: group_sizes must be on ", a.device(),
              ", got ", group_sizes.device());
  return {a.size(0), K, N, E};
}

inline Dims check_wgrad(const at::Tensor& a, const at::Tensor& dc, const at::Tensor& group_sizes) {
  check_float(a, "grouped_gemm_wgrad: a");
  check_same_dtype_device(a, "grouped_gemm_wgrad: a", dc, "grouped_gemm_wgrad: dc");
  TORCH_CHECK(a.dim() == 2 && dc.dim() == 2 && a.size(0) == dc.size(0),
              "grouped_gemm_wgrad: a must be [M, K] and dc [M, N], got ", a.sizes(), " and ", dc.sizes());
  TORCH_CHECK(group_sizes.scalar_type() == at::kLong && group_sizes.dim() == 1,
              "grouped_gemm_wgrad: group_sizes must be a 1-D int64 tensor, got ", group_sizes.scalar_type(),
              " ", group_sizes.sizes());
  TORCH_CHECK(group_sizes.device() == a.device(), "grouped_gemm_wgrad: group_sizes must be on ", a.device(),
              ", got ", group_sizes.device());
  return {a.size(0), a.size(1), dc.size(1), group_sizes.size(0)};
}

#ifdef YL_HAVE_SM90
}  // namespace yl::grouped_gemm
#include <cuda_runtime_api.h>
namespace yl::grouped_gemm {
// Hopper tensor-core path for bf16/fp16 with K, N multiples of 8 (grouped_gemm_sm90.cu).
// offs: device row offsets [E + 1]; c: the [M, N] output.
void forward_sm90(const at::Tensor& a, const at::Tensor& b, at::Tensor& c, const at::Tensor& offs, const Dims& d,
                  bool trans_b, cudaStream_t stream);
#endif

}  // namespace yl::grouped_gemm
