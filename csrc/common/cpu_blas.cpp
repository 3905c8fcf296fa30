#include "common/cpu_blas.h"

#include "common/cpu_gemm.h"
#include "common/cpu_skinny.h"
#include "common/kernel_guard.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

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

// A [rows, cols] row-major matrix with leading dimension ld as a tensor, transposed when asked.
template <typename T>
at::Tensor matrix(const T* p, int64_t rows, int64_t cols, int64_t ld, bool trans, at::ScalarType dtype) {
  at::Tensor t = at::from_blob(const_cast<T*>(p), {trans ? cols : rows, trans ? rows : cols}, {ld, 1},
                               at::TensorOptions().dtype(dtype));
  return trans ? t.t() : t;
}

bool cpu_has_bf16() {
#if defined(__x86_64__) && defined(__GNUC__)
  return __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

}  // namespace

bool direct_blas() {
  static const bool ok = check_direct_blas();
  return ok;
}

bool native_bf16() {
  static const bool hw = cpu_has_bf16();
  if (!hw || !at::globalContext().userEnabledMkldnn()) return false;  // bf16 at::mm needs oneDNN
  const char* env = std::getenv("YL_CPU_BF16");
  return env == nullptr || std::strcmp(env, "0") != 0;
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const c10::BFloat16* a,
               int64_t lda, const c10::BFloat16* b, int64_t ldb, c10::BFloat16* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (!trans_a && trans_b && use_skinny(m, true))
    return skinny_gemm_nt(m, n, k, a, lda, b, ldb, 1.f, 0.f, nullptr, c, ldc);
  const KernelGuard kernel_guard;
  at::Tensor ct = matrix(c, m, n, ldc, false, at::kBFloat16);
  if (k == 0) {
    ct.zero_();
    return;
  }
  at::mm_out(ct, matrix(a, m, k, lda, trans_a, at::kBFloat16), matrix(b, k, n, ldb, trans_b, at::kBFloat16));
}

namespace {
// The stored rows [rows, cols] of x, copied into a per-thread buffer when they are gathered.
template <int slot>
const float* contiguous_rows(const Operand& x, int64_t rows, int64_t cols, int64_t& ld) {
  ld = x.ld;
  if (x.rows == nullptr) return x.data;
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < rows * cols) buf.resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r) std::memcpy(buf.data() + r * cols, x.row(r), cols * sizeof(float));
  ld = cols;
  return buf.data();
}
}  // namespace

void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const Operand& a,
              const Operand& b, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  const bool nt = !trans_a && trans_b && skinny_enabled();
  const bool skinny = nt && use_skinny(m, false);
  if (!skinny && tiled_pays(n, k)) return tiled_gemm_f32(trans_a, trans_b, m, n, k, alpha, a, b, beta, c, ldc);
  int64_t ldb = 0;
  const float* bp = contiguous_rows<1>(b, trans_b ? n : k, trans_b ? k : n, ldb);
  // Gathered A rows against a few columns (an expert of intermediate size < 8): the skinny
  // kernel reads them in place, where the BLAS would need them copied first.
  if (skinny || (nt && a.rows != nullptr && n < 16))
    return skinny_gemm_nt(m, n, k, a.data, a.ld, bp, ldb, alpha, beta, nullptr, c, ldc, a.rows);
  int64_t lda = 0;  // the other paths read contiguous rows
  const float* ap = contiguous_rows<0>(a, trans_a ? k : m, trans_a ? m : k, lda);
  if (direct_blas()) {
    row_major_blas(trans_a, trans_b, m, n, k, alpha, ap, lda, bp, ldb, beta, c, ldc);
    return;
  }
  const KernelGuard kernel_guard;
  at::Tensor ct = matrix(c, m, n, ldc, false, at::kFloat);
  at::Tensor prod = at::mm(matrix(ap, m, k, lda, trans_a, at::kFloat), matrix(bp, k, n, ldb, trans_b, at::kFloat));
  if (beta == 0.f) ct.copy_(prod.mul_(alpha)); else ct.mul_(beta).add_(prod, alpha);
}

void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
              int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  gemm_f32(trans_a, trans_b, m, n, k, alpha, Operand{a, lda}, Operand{b, ldb}, beta, c, ldc);
}

}  // namespace yl::cpu
