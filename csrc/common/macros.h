// Shared by CPU and CUDA translation units: math written once, run by both.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define YL_HD __host__ __device__ __forceinline__
#else
// always_inline: GCC will not otherwise inline these into the target_clones loops of the CPU
// kernels (different target attributes), and a call per element blocks vectorisation.
#define YL_HD inline __attribute__((always_inline))
#endif

namespace yl {

// exp(x) for float with ~2 ulp error: range reduction to r in [-ln2/2, ln2/2] and a degree-6
// polynomial. Branch-free straight-line float/int code, so GCC auto-vectorises the CPU loops
// that call it (libm's expf blocks vectorisation without -ffast-math), and the GPU runs the
// very same arithmetic. Inputs below -87.3 flush to ~0, above 88.7 saturate near FLT_MAX.
YL_HD float exp_f32(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.7f ? 88.7f : x;
  // Round x*log2(e) to nearest by adding/subtracting 1.5*2^23 (exact for |n| < 2^22).
  const float shifter = 12582912.0f;
  float t = x * 1.44269504088896341f + shifter;
  float n = t - shifter;
  float r = x - n * 0.693145751953125f;  // ln2 split in two parts for an exact product
  r = r - n * 1.428606765330187e-06f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 128)
  float scale;
#if defined(__CUDA_ARCH__)
  scale = __int_as_float(bits);
#else
  std::memcpy(&scale, &bits, sizeof(scale));
#endif
  return p * scale;
}

YL_HD float sigmoid_f32(float x) { return 1.0f / (1.0f + exp_f32(-x)); }

}  // namespace yl
