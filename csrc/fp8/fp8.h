// FP8 (e4m3) quantization of activations, one fp32 scale per row and 128 columns (DeepSeek-V3's
// recipe, what grouped_gemm_fp8 takes): scale = amax / 448 (1 for an all-zero block), and each
// value rounded to nearest-even e4m3 after dividing by it and clamping to +-448. The per-value
// math is shared by the CPU and CUDA kernels, and equals yilightning.ops.fp8's PyTorch
// reference bit for bit (the same fp32 division, clamp and conversion).
#pragma once
#include <ATen/ATen.h>
#include <c10/macros/Macros.h>
#include <c10/util/Float8_e4m3fn.h>

namespace yl::fp8 {

constexpr int64_t kBlock = 128;
constexpr float kMax = 448.f;

// NaN propagates (amax NaN gives scale NaN); only an exact zero means "no scale needed".
C10_HOST_DEVICE inline float scale_of(float amax) { return amax == 0.f ? 1.f : amax / kMax; }

// |v| folded into a running maximum, NaN kept (fmaxf would drop it).
C10_HOST_DEVICE inline float amax_step(float amax, float v) {
  const float a = v < 0.f ? -v : v;
  return (a > amax || a != a) ? a : amax;
}

// Comparisons keep NaN as NaN (fminf/fmaxf would turn it into a bound).
C10_HOST_DEVICE inline c10::Float8_e4m3fn quantize(float v, float scale) {
  float q = v / scale;
  q = q > kMax ? kMax : (q < -kMax ? -kMax : q);
  return c10::Float8_e4m3fn(q);
}

// x [M, K] float -> (q [M, K] float8_e4m3fn, scale [M, ceil(K/128)] fp32), both allocated here.
inline std::tuple<at::Tensor, at::Tensor> outputs_for(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 2, "quantize_fp8_rows: x must be [M, K], got shape ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf,
              "quantize_fp8_rows: x must be float32, bfloat16 or float16, got ", x.scalar_type());
  const int64_t M = x.size(0), K = x.size(1);
  return {at::empty({M, K}, x.options().dtype(at::kFloat8_e4m3fn)),
          at::empty({M, (K + kBlock - 1) / kBlock}, x.options().dtype(at::kFloat))};
}

}  // namespace yl::fp8
