#include "common/cpu_skinny.h"

#include "common/cpu_blas.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

// GCC's per-region target pragmas (clang builds take the BLAS for few-row products too).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define YL_SKINNY_X86 1
#endif

namespace yl::cpu {
namespace {

using bf16 = c10::BFloat16;

inline float f32(float v) { return v; }
inline float f32(bf16 v) { return static_cast<float>(v); }
inline void put(float* c, float v) { *c = v; }
inline void put(bf16* c, float v) { *c = bf16(v); }

#ifdef YL_SKINNY_X86
#define YL_INLINE __attribute__((always_inline)) inline
#define YL_INLINE_LAMBDA __attribute__((always_inline))  // on a lambda's call operator

// Each instruction set: a vector type V and the kernel (cpu_skinny_kernel.inc) compiled for it.
// A tile of V::kTile accumulators (one per (row, column) pair) is reduced by V::reduce into one
// vector whose lane V::lane(t) holds the sum of accumulator t: 15 shuffle-add steps for 16
// accumulators instead of 16 horizontal sums.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma")
namespace avx512 {
struct V {
  using reg = __m512;
  static constexpr int kLanes = 16, kTile = 16;
  static YL_INLINE reg zero() { return _mm512_setzero_ps(); }
  static YL_INLINE reg load(const float* p) { return _mm512_loadu_ps(p); }
  static YL_INLINE void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static YL_INLINE reg load(const bf16* p) {  // bf16 -> fp32 is a 16-bit shift
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static YL_INLINE reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  // Lane 4q + r = sum of acc[4r + q].
  static YL_INLINE void reduce(const reg* acc, float* out) {
    reg b[8], c[4];
    for (int t = 0; t < 8; ++t)  // 256-bit halves: [a(2t) partials x 8 | a(2t+1) partials x 8]
      b[t] = _mm512_add_ps(_mm512_shuffle_f32x4(acc[2 * t], acc[2 * t + 1], 0x44),
                           _mm512_shuffle_f32x4(acc[2 * t], acc[2 * t + 1], 0xEE));
    for (int u = 0; u < 4; ++u)  // 128-bit blocks: block q = a(4u + q), 4 partials each
      c[u] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * u], b[2 * u + 1], 0x88),
                           _mm512_shuffle_f32x4(b[2 * u], b[2 * u + 1], 0xDD));
    const reg d01 = _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], 0x44), _mm512_shuffle_ps(c[0], c[1], 0xEE));
    const reg d23 = _mm512_add_ps(_mm512_shuffle_ps(c[2], c[3], 0x44), _mm512_shuffle_ps(c[2], c[3], 0xEE));
    _mm512_storeu_ps(out, _mm512_add_ps(_mm512_shuffle_ps(d01, d23, 0x88), _mm512_shuffle_ps(d01, d23, 0xDD)));
  }
  static constexpr int lane(int t) { return 4 * (t % 4) + t / 4; }
};
#include "common/cpu_skinny_kernel.inc"
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
struct V {
  using reg = __m256;
  static constexpr int kLanes = 8, kTile = 8;
  static YL_INLINE reg zero() { return _mm256_setzero_ps(); }
  static YL_INLINE reg load(const float* p) { return _mm256_loadu_ps(p); }
  static YL_INLINE void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static YL_INLINE reg load(const bf16* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static YL_INLINE reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  // Lane 4h + r = sum of acc[2r + h].
  static YL_INLINE void reduce(const reg* acc, float* out) {
    reg b[4];
    for (int t = 0; t < 4; ++t)  // 128-bit halves: [a(2t) partials x 4 | a(2t+1) partials x 4]
      b[t] = _mm256_add_ps(_mm256_permute2f128_ps(acc[2 * t], acc[2 * t + 1], 0x20),
                           _mm256_permute2f128_ps(acc[2 * t], acc[2 * t + 1], 0x31));
    const reg c0 = _mm256_add_ps(_mm256_shuffle_ps(b[0], b[1], 0x44), _mm256_shuffle_ps(b[0], b[1], 0xEE));
    const reg c1 = _mm256_add_ps(_mm256_shuffle_ps(b[2], b[3], 0x44), _mm256_shuffle_ps(b[2], b[3], 0xEE));
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_shuffle_ps(c0, c1, 0x88), _mm256_shuffle_ps(c0, c1, 0xDD)));
  }
  static constexpr int lane(int t) { return 4 * (t % 2) + t / 2; }
};
#include "common/cpu_skinny_kernel.inc"
}  // namespace avx2
#pragma GCC pop_options

enum class Isa { none, avx2, avx512 };

Isa detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
  return Isa::none;
}
#else
enum class Isa { none };
Isa detect() { return Isa::none; }
#endif

// The CPU's best kernel, capped by YL_CPU_SKINNY ("0": none, the BLAS; "avx2"), read on every
// call so that tests run each kernel on an AVX-512 machine.
Isa isa() {
  static const Isa hw = detect();
  const char* env = std::getenv("YL_CPU_SKINNY");
  if (env == nullptr) return hw;
  if (std::strcmp(env, "0") == 0) return Isa::none;
#ifdef YL_SKINNY_X86
  if (std::strcmp(env, "avx2") == 0) return std::min(hw, Isa::avx2);
#endif
  return hw;
}

template <class T>
void dispatch(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const int64_t* a_rows, const T* b,
              int64_t ldb, float alpha, float beta, const T* bias, T* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
#ifdef YL_SKINNY_X86
  const Isa best = isa();
  if (best == Isa::avx512) return avx512::gemm(m, n, k, a, lda, a_rows, b, ldb, alpha, beta, bias, c, ldc);
  if (best == Isa::avx2) return avx2::gemm(m, n, k, a, lda, a_rows, b, ldb, alpha, beta, bias, c, ldc);
#endif
  TORCH_CHECK(false, "skinny_gemm_nt: no skinny kernel here (needs x86-64 with AVX2 and FMA, YL_CPU_SKINNY != 0)");
}

}  // namespace

bool skinny_enabled() { return isa() != Isa::none; }

bool use_skinny(int64_t m, bool bf16) {
  return m <= (bf16 && native_bf16() ? 4 : kSkinnyRows) && skinny_enabled();
}

const char* skinny_isa() {
  switch (isa()) {
#ifdef YL_SKINNY_X86
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
#endif
    default: return "none";
  }
}

void skinny_gemm_nt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                    float alpha, float beta, const float* bias, float* c, int64_t ldc, const int64_t* a_rows) {
  dispatch(m, n, k, a, lda, a_rows, b, ldb, alpha, beta, bias, c, ldc);
}

void skinny_gemm_nt(int64_t m, int64_t n, int64_t k, const bf16* a, int64_t lda, const bf16* b, int64_t ldb,
                    float alpha, float beta, const bf16* bias, bf16* c, int64_t ldc) {
  dispatch(m, n, k, a, lda, static_cast<const int64_t*>(nullptr), b, ldb, alpha, beta, bias, c, ldc);
}

}  // namespace yl::cpu
