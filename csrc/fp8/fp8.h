// FP8 (e4m3) quantization of activations, one fp32 scale per row and 128 columns (DeepSeek-V3's
// recipe, what grouped_gemm_fp8 takes): scale = amax / 448 (1 for an all-zero block, at least
// 2^-126 otherwise), and each value rounded to nearest-even e4m3 after dividing by it and
// clamping to +-448. The per-value math is shared by the CPU and CUDA kernels, and equals
// yilightning.ops.fp8's PyTorch reference bit for bit (the same fp32 division, clamp and
// conversion).
#pragma once
#include <ATen/ATen.h>
#include <c10/macros/Macros.h>
#include <c10/util/floating_point_utils.h>

#include <cstdint>

namespace yl::fp8 {

constexpr int64_t kBlock = 128;
constexpr float kMax = 448.f;

// NaN propagates (amax NaN gives scale NaN); an exact zero gets scale 1; a tiny amax gets fp32's
// smallest normal number (2^-126): below it the scale would lose precision, and under 3e-43 be 0.
C10_HOST_DEVICE inline float scale_of(float amax) {
  const float s = amax / kMax;
  return amax == 0.f ? 1.f : (s < 1.17549435e-38f ? 1.17549435e-38f : s);
}

// |v| folded into a running maximum, NaN kept (fmaxf would drop it).
C10_HOST_DEVICE inline float amax_step(float amax, float v) {
  const float a = v < 0.f ? -v : v;
  return (a > amax || a != a) ? a : amax;
}

// The e4m3 bits of q, for |q| <= 448 or NaN: c10's round-to-nearest-even conversion (the one
// torch's casts use) with the branches turned into selects, so a CPU loop of it vectorises.
C10_HOST_DEVICE inline uint8_t e4m3_bits(float q) {
  using c10::detail::fp32_from_bits;
  using c10::detail::fp32_to_bits;
  const uint32_t bits = fp32_to_bits(q), sign = bits & 0x80000000u, mag = bits ^ sign;
  constexpr uint32_t denorm = 141u << 23;  // below 2^-6 (e4m3's smallest normal): add 2^-6 * 2^3
  const uint32_t sub = fp32_to_bits(fp32_from_bits(mag) + fp32_from_bits(denorm)) - denorm;
  const uint32_t norm = (mag + (uint32_t(7 - 127) << 23) + 0x7FFFFu + ((mag >> 20) & 1u)) >> 20;
  const uint32_t r = mag > 0x7F800000u ? 0x7Fu : (mag < (121u << 23) ? sub : norm);
  return static_cast<uint8_t>((r & 0xFFu) | (sign >> 24));
}

// v / scale clamped to +-448 (comparisons keep NaN: fminf/fmaxf would turn it into a bound),
// as e4m3 bits.
C10_HOST_DEVICE inline uint8_t quantize(float v, float scale) {
  float q = v / scale;
  q = q > kMax ? kMax : (q < -kMax ? -kMax : q);
  return e4m3_bits(q);
}

// The value of e4m3 bits, exact (0x7f and 0xff are NaN), as selects for the same reason.
C10_HOST_DEVICE inline float e4m3_value(uint8_t b) {
  using c10::detail::fp32_from_bits;
  using c10::detail::fp32_to_bits;
  const uint32_t sign = uint32_t(b & 0x80u) << 24, exp = (b >> 3) & 0xFu, mant = b & 0x7u;
  const float normal = fp32_from_bits(sign | ((exp + 120u) << 23) | (mant << 20));
  const float sub = fp32_from_bits(sign | fp32_to_bits(static_cast<float>(mant) * 0.001953125f));  // mant * 2^-9
  return (b & 0x7Fu) == 0x7Fu ? fp32_from_bits(0x7FC00000u) : (exp == 0 ? sub : normal);
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
