#include "common/cpu_blas.h"

#include <ATen/ATen.h>

#include <cmath>

// Weak: resolved at load time from torch's libraries when present, null otherwise.
extern "C" void sgemm_(const char*, const char*, const void*, const void*, const void*, const float*, const float*,
                       const void*, const float*, const void*, const float*, float*, const void*)
    __attribute__((weak));

namespace yl::cpu {
namespace {

// Column-major BLAS call. Integer arguments are int64 holding values < 2^31: read as 32-bit
// (LP64 BLAS, the little-endian low half) or 64-bit (ILP64 BLAS), they are the same number.
void blas_sgemm(char ta, char tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  sgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

void row_major_blas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
  blas_sgemm(trans_b ? 'T' : 'N', trans_a ? 'T' : 'N', n, m, k, alpha, b, ldb, a, lda, beta, c, ldc);
}

bool check_direct_blas() {
  if (sgemm_ == nullptr) return false;
  // [[1, 2], [3, 4]] @ [[5, 6], [7, 8]]^T = [[17, 23], [39, 53]]
  const float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
  float c[4] = {0, 0, 0, 0};
  row_major_blas(false, true, 2, 2, 2, 1.f, a, 2, b, 2, 0.f, c, 2);
  return c[0] == 17 && c[1] == 23 && c[2] == 39 && c[3] == 53;
}

}  // namespace

bool direct_blas() {
  static const bool ok = check_direct_blas();
  return ok;
}

void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
              int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (direct_blas()) {
    row_major_blas(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const at::AutoDispatchBelowADInplaceOrView no_autograd;
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  // Views with the given leading dimensions (op(X) is a transposed view when asked).
  auto view = [&](const float* p, int64_t rows, int64_t cols, int64_t ld, bool trans) {
    at::Tensor t = at::from_blob(const_cast<float*>(p), {trans ? cols : rows, trans ? rows : cols},
                                 {ld, 1}, f32);
    return trans ? t.t() : t;
  };
  at::Tensor ct = at::from_blob(c, {m, n}, {ldc, 1}, f32);
  at::Tensor prod = at::mm(view(a, m, k, lda, trans_a), view(b, k, n, ldb, trans_b));
  if (beta == 0.f) ct.copy_(prod.mul_(alpha)); else ct.mul_(beta).add_(prod, alpha);
}

}  // namespace yl::cpu
