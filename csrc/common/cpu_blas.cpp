#include "common/cpu_blas.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstring>

#include "common/cpu_convert.h"

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

typedef float vf16 __attribute__((vector_size(64)));

inline __attribute__((always_inline)) vf16 load16(const float* p) {
  vf16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline __attribute__((always_inline)) void store16(float* p, vf16 v) { std::memcpy(p, &v, sizeof(v)); }

// MR rows x NV * 16 columns of C, the whole K loop in registers (MR * NV <= 24 accumulators).
template <int MR, int NV>
inline __attribute__((always_inline)) void bcast_tile(int64_t K, const float* a, int64_t si, int64_t sk,
                                                      const float* b, int64_t ldb, float* c, int64_t ldc,
                                                      bool accumulate) {
  vf16 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = accumulate ? load16(c + i * ldc + 16 * j) : vf16{};
  for (int64_t k = 0; k < K; ++k) {
    vf16 bv[NV];
    for (int j = 0; j < NV; ++j) bv[j] = load16(b + k * ldb + 16 * j);
    const float* ak = a + k * sk;
    for (int i = 0; i < MR; ++i) {
      const float s = ak[i * si];
      for (int j = 0; j < NV; ++j) acc[i][j] += s * bv[j];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) store16(c + i * ldc + 16 * j, acc[i][j]);
}

// All rows of one column panel of NV * 16 columns: 6-row tiles, then one tile of the rest.
template <int NV>
inline __attribute__((always_inline)) void bcast_panel(int64_t M, int64_t K, const float* a, int64_t si, int64_t sk,
                                                       const float* b, int64_t ldb, float* c, int64_t ldc,
                                                       bool accumulate) {
  int64_t i = 0;
  for (; i + 6 <= M; i += 6) bcast_tile<6, NV>(K, a + i * si, si, sk, b, ldb, c + i * ldc, ldc, accumulate);
  const float* ai = a + i * si;
  float* ci = c + i * ldc;
  switch (M - i) {
    case 5: bcast_tile<5, NV>(K, ai, si, sk, b, ldb, ci, ldc, accumulate); break;
    case 4: bcast_tile<4, NV>(K, ai, si, sk, b, ldb, ci, ldc, accumulate); break;
    case 3: bcast_tile<3, NV>(K, ai, si, sk, b, ldb, ci, ldc, accumulate); break;
    case 2: bcast_tile<2, NV>(K, ai, si, sk, b, ldb, ci, ldc, accumulate); break;
    case 1: bcast_tile<1, NV>(K, ai, si, sk, b, ldb, ci, ldc, accumulate); break;
    default: break;
  }
}

}  // namespace

YL_CPU_CLONES void gemm_bcast_f32(int64_t M, int64_t N, int64_t K, const float* a, int64_t si, int64_t sk,
                                  const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  if (M == 0 || N == 0) return;
  if (N % 16 != 0) {
    TORCH_CHECK(si == 1 || sk == 1, "gemm_bcast_f32: with N = ", N, " (not a multiple of 16) A must have a unit "
                "stride, got si = ", si, ", sk = ", sk);
    const bool trans = sk != 1;  // A stored [K, M] with leading dimension sk, else [M, K] with si
    const int64_t lda = trans ? (K == 1 ? M : sk) : (M == 1 ? K : si);  // one row: any valid value
    gemm_f32(trans, false, M, N, K, 1.f, a, lda, b, ldb, accumulate ? 1.f : 0.f, c, ldc);
    return;
  }
  for (int64_t n0 = 0; n0 < N; n0 += 64) {  // B's panel stays in cache while every row tile passes
    const float* bp = b + n0;
    float* cp = c + n0;
    switch (std::min<int64_t>(4, (N - n0) / 16)) {
      case 4: bcast_panel<4>(M, K, a, si, sk, bp, ldb, cp, ldc, accumulate); break;
      case 3: bcast_panel<3>(M, K, a, si, sk, bp, ldb, cp, ldc, accumulate); break;
      case 2: bcast_panel<2>(M, K, a, si, sk, bp, ldb, cp, ldc, accumulate); break;
      default: bcast_panel<1>(M, K, a, si, sk, bp, ldb, cp, ldc, accumulate); break;
    }
  }
}

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
