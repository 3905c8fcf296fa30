// "Skinny" GEMM for products with only a few rows: C [m, n] = A [m, k] @ B [n, k]^T (+ bias),
// B row-major as an nn.Linear weight. This is what generation runs: a decode step multiplies
// one to eight token rows by every weight of the model, and an expert sees a token or two.
// BLAS packs B for a tiled kernel first and, measured on a Zen 5 core with torch's MKL, reads
// a 256 x 256 fp32 weight at 12-17 GB/s for one row; these kernels stream B once with many
// rows' dot products in flight (AVX-512 or AVX2 + FMA, picked at load time), prefetch it and
// reduce the accumulators of a tile together: 30-45 GB/s from memory (the machine reads 37-40),
// 1.65-5.5x F.linear at 1-4 rows (bench/bench_linear.py). fp32 accumulation for fp32 and bf16.
#pragma once
#include <c10/util/BFloat16.h>

#include <cstdint>

namespace yl::cpu {

// Up to this many rows the skinny kernels beat the BLAS (measured; at 12-16 rows the BLAS's
// packed kernel wins on the larger weights).
constexpr int64_t kSkinnyRows = 8;

// Whether an m-row product should run the skinny kernel: skinny_enabled(), and m <= kSkinnyRows
// (m <= 4 in bf16 where the CPU multiplies bf16 natively: at 8 rows oneDNN's AVX512-BF16 kernel
// is faster on the larger weights, 250 against 215 us on an 8192 x 256 LM head).
bool use_skinny(int64_t m, bool bf16);

// True when a skinny kernel runs here: x86-64 with AVX2 + FMA at least, and YL_CPU_SKINNY is
// not "0" (read on every call, so change it only while no kernel runs; "avx2" caps an AVX-512
// CPU at the AVX2 kernel, for tests).
bool skinny_enabled();
// "avx512", "avx2" or "none": the kernel skinny_gemm_nt runs now (reported by build_info).
const char* skinny_isa();

// C [m, n] (row stride ldc) = alpha * A [m, k] @ B [n, k]^T + beta * C + bias, on the calling
// thread. bias (n values) may be null; beta = 0 never reads C. Requires skinny_enabled().
// a_rows (fp32, or null): row r of A is stored row a_rows[r], at a + a_rows[r] * lda.
void skinny_gemm_nt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                    float alpha, float beta, const float* bias, float* c, int64_t ldc,
                    const int64_t* a_rows = nullptr);
void skinny_gemm_nt(int64_t m, int64_t n, int64_t k, const c10::BFloat16* a, int64_t lda, const c10::BFloat16* b,
                    int64_t ldb, float alpha, float beta, const c10::BFloat16* bias, c10::BFloat16* c, int64_t ldc);

}  // namespace yl::cpu
