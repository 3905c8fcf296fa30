// The 16 x 16 in-register transpose of 32-bit values behind the CPU GEMMs' packing: the tiled
// fp32 GEMM's operand strips (cpu_gemm.cpp) and the AMX GEMM's pairs of bf16 (cpu_amx.cpp). For
// x86-64 with GCC (AVX-512); callers compile it under a target that includes avx512f.
#pragma once
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>

#include <cstdint>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx2,fma")

namespace yl::cpu {

// dst[q * dst_ld + r] = src[r][col + q] for r < rows (<= 16), q < depth (<= 16): the columns of
// a block of up to 16 rows, through a 16 x 16 in-register transpose. Output row q keeps the
// lanes under `store` (rows past `rows` read as zeros).
__attribute__((always_inline)) inline void transpose16(const float* const* src, int64_t col, int64_t rows,
                                                       int64_t depth, float* dst, int64_t dst_ld, __mmask16 store) {
  const __mmask16 in = static_cast<__mmask16>((1u << depth) - 1);
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_maskz_loadu_ps(in, src[i] + col) : _mm512_setzero_ps();
  for (int i = 0; i < 16; i += 2) {  // lane L of t[i]: r[i][4L], r[i+1][4L], r[i][4L+1], r[i+1][4L+1]
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int g = 0; g < 16; g += 4) {  // lane L of r[g + c]: rows g..g+3 of column 4L + c
    r[g] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
    r[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
    r[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
    r[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {  // gather lane L of r[c], r[4+c], r[8+c], r[12+c]: column 4L + c
    const __m512 v = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88), w = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
    const __m512 x = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88), y = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
    t[c] = _mm512_shuffle_f32x4(v, x, 0x88);
    t[8 + c] = _mm512_shuffle_f32x4(v, x, 0xDD);
    t[4 + c] = _mm512_shuffle_f32x4(w, y, 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(w, y, 0xDD);
  }
  for (int q = 0; q < depth; ++q) _mm512_mask_storeu_ps(dst + q * dst_ld, store, t[q]);
}

}  // namespace yl::cpu

#pragma GCC pop_options
#endif
