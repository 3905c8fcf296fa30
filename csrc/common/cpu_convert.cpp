#include "common/cpu_convert.h"

#include <cstring>

namespace yl::cpu {

// bf16 is the top half of an fp32: widening is a shift.
YL_CPU_CLONES void to_f32(const at::BFloat16* src, float* dst, int64_t n) {
  const auto* s = reinterpret_cast<const uint16_t*>(src);
  auto* d = reinterpret_cast<uint32_t*>(dst);
  for (int64_t j = 0; j < n; ++j) d[j] = static_cast<uint32_t>(s[j]) << 16;
}

// Round to nearest even, NaN stays a (quiet) NaN: the same result as c10's scalar conversion,
// written branch-free so that it vectorises.
YL_CPU_CLONES void from_f32(const float* src, at::BFloat16* dst, int64_t n) {
  const auto* s = reinterpret_cast<const uint32_t*>(src);
  auto* d = reinterpret_cast<uint16_t*>(dst);
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t u = s[j];
    const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    const bool nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
    d[j] = static_cast<uint16_t>(nan ? 0x7FC0u : rounded);
  }
}

// _Float16 conversions compile to F16C vcvtph2ps/vcvtps2ph in the x86-64-v3 clone.
YL_CPU_CLONES void to_f32(const at::Half* src, float* dst, int64_t n) {
  const auto* s = reinterpret_cast<const _Float16*>(src);
  for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<float>(s[j]);
}

YL_CPU_CLONES void from_f32(const float* src, at::Half* dst, int64_t n) {
  auto* d = reinterpret_cast<_Float16*>(dst);
  for (int64_t j = 0; j < n; ++j) d[j] = static_cast<_Float16>(src[j]);
}

}  // namespace yl::cpu
