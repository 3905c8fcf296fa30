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

// C[M, N] (+)= A @ B for products whose A is read in place with any strides: A(i, k) =
// a[i * si + k * sk] (a row-major, a transposed, or a column slice of a wider matrix: nothing
// is packed), B row-major [K, N] with ldb. Each A element is broadcast against 16-float rows of
// B in a 6 x 64 register tile. For attention's blocks (K or N = the head dim 64) it beats the
// BLAS, which packs both operands every call (measured single-thread, [527 x 64] x [64 x 64]:
// 130 GFLOP/s against MKL's 104). N not a multiple of 16 goes to gemm_f32, which needs
// si == 1 or sk == 1.
void gemm_bcast_f32(int64_t M, int64_t N, int64_t K, const float* a, int64_t si, int64_t sk, const float* b,
                    int64_t ldb, float* c, int64_t ldc, bool accumulate);

// True when gemm_f32 goes straight to the BLAS (reported by build_info).
bool direct_blas();

}  // namespace yl::cpu
