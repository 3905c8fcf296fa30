// Row-major fp32 GEMM for CPU kernels that run many small products inside their own parallel
// loops (attention blocks): C = alpha * op(A) @ op(B) + beta * C, single-threaded per call.
// It calls the Fortran-interface sgemm_ of the BLAS that torch ships when that symbol is there
// and passes a self-test, skipping the ~5 us of tensor/dispatcher overhead of at::mm per call;
// otherwise it falls back to at::mm_out on tensor views. Products of at most kSkinnyRows rows
// by a transposed B (C = A @ B^T: a token or a few against a weight) run the skinny kernels of
// cpu_skinny.h instead, in both precisions.
#pragma once
#include <c10/util/BFloat16.h>

#include <cstdint>

#include "common/cpu_gemm.h"

namespace yl::cpu {

void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
              int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
// The same with operands whose stored rows may be gathered (cpu_gemm.h): the tiled kernel reads
// them in place, and so does the skinny kernel for a gathered A against fewer than 16 columns of
// a transposed B; the BLAS paths multiply a per-thread copy of them. (The overload above is this
// one with plain operands.)
void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const Operand& a,
              const Operand& b, float beta, float* c, int64_t ldc);

// True when gemm_f32 goes straight to the BLAS (reported by build_info).
bool direct_blas();

// True when bf16 products should run in bf16: the CPU has AVX512-BF16, so oneDNN multiplies
// bf16 natively (measured on a Zen 5 core: 460 GFLOP/s against 107 for sgemm; CPUs without it
// emulate bf16 50-150x slower, and the kernels convert to fp32 there). YL_CPU_BF16=0 or
// torch.backends.mkldnn.enabled = False turns it off (read on every call, so tests can exercise
// both paths).
bool native_bf16();

// Row-major C [m, n] = op(A) @ op(B) with bf16 operands and a bf16 result (fp32 accumulation
// inside oneDNN, as torch.mm in bf16), single-threaded when called inside a parallel region.
// oneDNN JIT-compiles a kernel for every shape it has not seen and keeps 1024, so callers whose
// row counts change from call to call (experts, groups) multiply whole multiples of
// kBf16RowQuantum rows (zero-padded): with exact counts a bf16 training step of the tiny preset
// spent most of its time compiling (1000 against 411 ms, a 2-core Xeon with AMX). 16 is also
// AMX's tile height.
constexpr int64_t kBf16RowQuantum = 16;
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const c10::BFloat16* a,
               int64_t lda, const c10::BFloat16* b, int64_t ldb, c10::BFloat16* c, int64_t ldc);

}  // namespace yl::cpu
