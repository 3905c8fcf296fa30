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

// FP8 block-scaled grouped GEMM (forward only): a [M, K] and b [E, N, K] float8_e4m3fn, a_scale
// [M, ceil(K/128)] and b_scale [E, ceil(N/128), ceil(K/128)] fp32, one scale per row and 128
// columns of a and per 128 x 128 block of b[g]. Returns the bf16 [M, N] product.
inline Dims check_fp8(const at::Tensor& a, const at::Tensor& a_scale, const at::Tensor& b, const at::Tensor& b_scale,
                      const at::Tensor& group_sizes) {
  TORCH_CHECK(a.scalar_type() == at::kFloat8_e4m3fn && b.scalar_type() == at::kFloat8_e4m3fn,
              "grouped_gemm_fp8: a and b must be float8_e4m3fn (see quantize_fp8), got ", a.scalar_type(), " and ",
              b.scalar_type());
  TORCH_CHECK(a_scale.scalar_type() == at::kFloat && b_scale.scalar_type() == at::kFloat,
              "grouped_gemm_fp8: a_scale and b_scale must be float32, got ", a_scale.scalar_type(), " and ",
              b_scale.scalar_type());
  TORCH_CHECK(a.dim() == 2 && b.dim() == 3, "grouped_gemm_fp8: a must be [M, K] and b [E, N, K], got ", a.sizes(),
              " and ", b.sizes());
  const int64_t M = a.size(0), K = a.size(1), E = b.size(0), N = b.size(1);
  TORCH_CHECK(b.size(2) == K, "grouped_gemm_fp8: b must be [E, N, K=", K, "] (the nn.Linear layout), got ",
              b.sizes());
  const int64_t KB = (K + 127) / 128, NB = (N + 127) / 128;
  TORCH_CHECK(a_scale.dim() == 2 && a_scale.size(0) == M && a_scale.size(1) == KB,
              "grouped_gemm_fp8: a_scale must be [M=", M, ", ceil(K/128)=", KB, "], got ", a_scale.sizes());
  TORCH_CHECK(b_scale.dim() == 3 && b_scale.size(0) == E && b_scale.size(1) == NB && b_scale.size(2) == KB,
              "grouped_gemm_fp8: b_scale must be [E=", E, ", ceil(N/128)=", NB, ", ceil(K/128)=", KB, "], got ",
              b_scale.sizes());
  TORCH_CHECK(group_sizes.scalar_type() == at::kLong && group_sizes.dim() == 1 && group_sizes.size(0) == E,
              "grouped_gemm_fp8: group_sizes must be int64 [E=", E, "], got ", group_sizes.scalar_type(), " ",
              group_sizes.sizes());
  for (const at::Tensor* t : {&a_scale, &b, &b_scale, &group_sizes})
    TORCH_CHECK(t->device() == a.device(), "grouped_gemm_fp8: every argument must be on a's device ", a.device(),
                ", got one on ", t->device());
  return {M, K, N, E};
}

#ifdef YL_HAVE_SM90
}  // namespace yl::grouped_gemm
#include <cuda_runtime_api.h>
namespace yl::grouped_gemm {
// Hopper tensor-core path for bf16/fp16 with K, N multiples of 8 (grouped_gemm_sm90.cu).
// offs: device row offsets [E + 1]; c: the [M, N] output.
void forward_sm90(const at::Tensor& a, const at::Tensor& b, at::Tensor& c, const at::Tensor& offs, const Dims& d,
                  bool trans_b, cudaStream_t stream);
// The FP8 kernel (K and N multiples of 128, arguments checked by check_fp8 and contiguous).
at::Tensor forward_fp8_sm90(const at::Tensor& a, const at::Tensor& a_scale, const at::Tensor& b,
                            const at::Tensor& b_scale, const at::Tensor& offs, const Dims& d, cudaStream_t stream);
#endif

}  // namespace yl::grouped_gemm
