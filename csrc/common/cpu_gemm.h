// Our own fp32 GEMM for x86-64 CPUs with AVX-512: C = alpha * op(A) @ op(B) + beta * C, row
// major, any transposes and leading dimensions. Why: on the 2-core Zen 5 guest these kernels
// were tuned on, torch's MKL sgemm leaves a third of the machine unused on the model's tall
// products (the cores do 115 GFLOP/s of FMA each, in AVX2 and AVX-512 alike; MKL reaches
// 75-87 GFLOP/s on one core and 108-158 on two for 2048-4096-row products, though 197 on a
// cache-sized 512^3), while this kernel reaches 166-195 on two (bench/bench_linear.py). The
// design is the BLIS one: B is packed in panels of kKC x kNC into strips 32 columns wide, A in
// blocks of kMC x kKC into strips of 14 rows (transposes through 16 x 16 in-register
// transposes), and a 14 x 32 register tile (28 zmm accumulators) multiplies a strip of each;
// the last strip of A has its own row count (a tile per count, no wasted rows) and the last
// strip of B is zero-padded and stored under a mask.
#pragma once
#include <cstdint>

namespace yl::cpu {

// True when cpu::gemm_f32 runs the kernel below rather than the BLAS: the CPU has AVX-512 and
// either is not an Intel one or YL_CPU_GEMM=avx512 (MKL is its vendor's own tuned path on
// Intel CPUs: on a 2-core Xeon guest with AMX this kernel measured 10-15% slower than MKL on one
// core, 95-108 against 109-125 GFLOP/s, so the BLAS stays the default there); YL_CPU_GEMM=blas
// turns it off. Read on every call, so tests run both.
bool tiled_enabled();
// Whether cpu::gemm_f32 runs the kernel below for an m x n x k product: tiled_enabled(), and n
// and k of at least 16. Narrower products (a router's few experts, the fine MoE layer's glue
// benchmark at an intermediate size of 1) cost the kernel more in packing and padded columns
// than they compute: 19.6 against 13.5 ms with the BLAS for that benchmark.
bool tiled_pays(int64_t n, int64_t k);
// "avx512" or "blas": what cpu::gemm_f32 runs now (reported by build_info).
const char* gemm_kernel();

// A row-major operand whose stored rows may be gathered: stored row r is at
// data + (rows ? rows[r] : r) * ld. Packing reads gathered rows in place, so a product of an
// index's rows (the MoE layer's tokens per expert) needs no copy of them first.
struct Operand {
  const float* data;
  int64_t ld;
  const int64_t* rows = nullptr;
  const float* row(int64_t r) const { return data + (rows ? rows[r] : r) * ld; }
};

// C [m, n] = alpha * op(A) @ op(B) + beta * C on the calling thread (op(A) is [m, k], op(B)
// [k, n]; beta = 0 never reads C). Requires tiled_enabled().
void tiled_gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const Operand& a,
                    const Operand& b, float beta, float* c, int64_t ldc);
void tiled_gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// The calling thread's next tiled product (tiled_gemm_f32) prefetches rows x span floats of a
// row-major matrix (row stride ld) while it computes its last block: for a caller that knows the
// operand of the product after it (an expert's down projection after its gate/up one). A hint
// left unused (the product went to the BLAS) is harmless: prefetches never fault.
void prefetch_with_next_gemm(const float* p, int64_t rows, int64_t span, int64_t ld);

// The same product split over the threads of at::parallel_for by rows of C (by columns when C
// has few rows), for a caller outside a parallel region; where tiled_pays(n, k) is false, the
// BLAS (cpu::gemm_f32), which threads itself there.
void parallel_gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                       int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace yl::cpu
