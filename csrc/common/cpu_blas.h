// Row-major fp32 GEMM for CPU kernels that run many small products inside their own parallel
// loops (attention blocks): C = alpha * op(A) @ op(B) + beta * C, single-threaded per call.
// It calls the Fortran-interface sgemm_ of the BLAS that torch ships when that symbol is there
// and passes a self-test, skipping the ~5 us of tensor/dispatcher overhead of at::mm per call;
// otherwise it falls back to at::mm_out on tensor views.
#pragma once
#include <cstdint>

namespace yl::cpu {

void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
              int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// True when gemm_f32 goes straight to the BLAS (reported by build_info).
bool direct_blas();

}  // namespace yl::cpu
