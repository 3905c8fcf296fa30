#include "common/cpu_math.h"

#include <cmath>
#include <cstring>

#include "common/cpu_convert.h"
#include "common/macros.h"

namespace yl::cpu {
namespace {
// Reductions run on 16-float GCC vectors: the compiler keeps them in one zmm register (two ymm,
// four xmm on older CPUs) in every target clone. A lane array with a scalar loop over the lanes
// is not reliably vectorised: GCC unrolled it into 16 scalar registers.
typedef float vf16 __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;

inline __attribute__((always_inline)) vf16 load16(const float* p) {
  vf16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// 16 bf16 values widened to fp32 (exact: a bf16 is the top half of an fp32).
typedef uint16_t vu16x16 __attribute__((vector_size(32)));
typedef uint32_t vu32x16 __attribute__((vector_size(64)));
inline __attribute__((always_inline)) vf16 load16(const at::BFloat16* p) {
  vu16x16 h;
  std::memcpy(&h, p, sizeof(h));
  const vu32x16 u = __builtin_convertvector(h, vu32x16) << 16;
  vf16 v;
  std::memcpy(&v, &u, sizeof(v));
  return v;
}

// A pairwise (tree) sum of the lanes: 4 dependent adds instead of a chain of 16.
typedef float vf8 __attribute__((vector_size(32)));
typedef float vf4 __attribute__((vector_size(16)));
inline __attribute__((always_inline)) float hsum(vf16 v) {
  const vf8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const vf4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}

YL_CPU_CLONES float sum_f32(const float* x, int64_t n) {
  vf16 acc = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) acc += load16(x + i);
  float s = hsum(acc);
  for (; i < n; ++i) s += x[i];
  return s;
}
}  // namespace

YL_CPU_CLONES float max_f32(const float* x, int64_t n) {
  vf16 acc = vf16{} - INFINITY;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const vf16 v = load16(x + i);
    acc = v > acc ? v : acc;
  }
  float m = -INFINITY;
  for (int64_t l = 0; l < kLanes; ++l) m = acc[l] > m ? acc[l] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

YL_CPU_CLONES float exp_sub_sum(float* x, int64_t n, float m) {
  for (int64_t i = 0; i < n; ++i) x[i] = exp_f32(x[i] - m);  // element-wise: vectorised
  return sum_f32(x, n);
}

YL_CPU_CLONES float dot_f32(const float* x, const float* y, int64_t n) {
  vf16 acc0 = {}, acc1 = {};  // two independent FMA chains: half the latency-bound steps
  int64_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    acc0 += load16(x + i) * load16(y + i);
    acc1 += load16(x + i + kLanes) * load16(y + i + kLanes);
  }
  if (i + kLanes <= n) {
    acc0 += load16(x + i) * load16(y + i);
    i += kLanes;
  }
  float s = hsum(acc0 + acc1);
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

YL_CPU_CLONES void scale_f32(float* x, int64_t n, float a) {
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

YL_CPU_CLONES void scaled_copy_f32(const float* x, float* y, int64_t n, float a) {
  for (int64_t i = 0; i < n; ++i) y[i] = a * x[i];
}

YL_CPU_CLONES void mul_scaled_f32(const float* a, const float* x, float s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * (x[i] * s);
}

YL_CPU_CLONES float rms_backward_pass_f32(const float* x, float r, const float* g, const float* w, float* n,
                                          float* dw, int64_t len) {
  vf16 acc = {};
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
    const vf16 ni = load16(x + i) * r, gi = load16(g + i);
    std::memcpy(n + i, &ni, sizeof(ni));
    const vf16 dwi = load16(dw + i) + gi * ni;
    std::memcpy(dw + i, &dwi, sizeof(dwi));
    acc += (gi * load16(w + i)) * ni;
  }
  float s = hsum(acc);
  for (; i < len; ++i) {
    n[i] = x[i] * r;
    dw[i] += g[i] * n[i];
    s += (g[i] * w[i]) * n[i];
  }
  return s;
}

YL_CPU_CLONES void rms_backward_dx_f32(const float* g, const float* w, float r, float c, const float* n, float* dx,
                                      int64_t len) {
  for (int64_t i = 0; i < len; ++i) dx[i] = (g[i] * w[i]) * r + c * n[i];
}

YL_CPU_CLONES void rotate_f32(const float* x, const float* c, const float* s, float* o, int64_t half) {
  const float *x1 = x, *x2 = x + half;
  for (int64_t i = 0; i < half; ++i) {
    o[i] = x1[i] * c[i] - x2[i] * s[i];
    o[half + i] = x2[i] * c[i] + x1[i] * s[i];
  }
}

YL_CPU_CLONES void axpy_f32(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

namespace {
template <typename X>
inline __attribute__((always_inline)) void weighted_sum(const X* const* x, const float* w, int64_t k, float* y,
                                                        int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {  // all k rows stream at once: one pass over y
    vf16 acc = {};
    for (int64_t j = 0; j < k; ++j) acc += w[j] * load16(x[j] + i);
    std::memcpy(y + i, &acc, sizeof(acc));
  }
  for (; i < n; ++i) {
    float s = 0.f;
    for (int64_t j = 0; j < k; ++j) s += w[j] * static_cast<float>(x[j][i]);
    y[i] = s;
  }
}
}  // namespace

YL_CPU_CLONES void weighted_sum_f32(const float* const* x, const float* w, int64_t k, float* y, int64_t n) {
  weighted_sum(x, w, k, y, n);
}

YL_CPU_CLONES void weighted_sum_f32(const at::BFloat16* const* x, const float* w, int64_t k, float* y, int64_t n) {
  weighted_sum(x, w, k, y, n);
}

YL_CPU_CLONES void mul_f32(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

YL_CPU_CLONES void mul_add_f32(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a[i] * b[i];
}

}  // namespace yl::cpu
