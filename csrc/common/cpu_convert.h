// CPU kernels compute in fp32 (bf16 math is 50-150x slower on CPUs without bf16 units) and
// convert 16-bit inputs/outputs in L1-sized chunks with these vectorised loops.
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

// Hot fp32 loops are compiled three times, for x86-64-v4 (AVX-512), x86-64-v3 (AVX2, FMA, F16C)
// and baseline x86-64, and chosen once at load time from the CPU's features: one binary runs
// fast everywhere.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define YL_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define YL_CPU_CLONES
#endif

namespace yl::cpu {

void to_f32(const at::BFloat16* src, float* dst, int64_t n);
void to_f32(const at::Half* src, float* dst, int64_t n);
void from_f32(const float* src, at::BFloat16* dst, int64_t n);
void from_f32(const float* src, at::Half* dst, int64_t n);

// n values of T as fp32: the input itself for float, converted into buf (>= n floats) otherwise.
template <typename T>
const float* load_f32(const T* src, float* buf, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return src;
  } else {
    to_f32(src, buf, n);
    return buf;
  }
}

// Where to write fp32 results bound for dst: dst itself for float, else buf (then store_f32).
template <typename T>
float* out_f32(T* dst, float* buf) {
  if constexpr (std::is_same_v<T, float>) return dst; else return buf;
}

// Writes fp32 results into dst: a no-op for float (out_f32 handed out dst itself).
template <typename T>
void store_f32(const float* src, T* dst, int64_t n) {
  if constexpr (!std::is_same_v<T, float>) from_f32(src, dst, n);
}

// Copies n values of T into dst as fp32.
template <typename T>
void copy_to_f32(const T* src, float* dst, int64_t n) {
  if constexpr (std::is_same_v<T, float>) std::copy(src, src + n, dst); else to_f32(src, dst, n);
}

}  // namespace yl::cpu
