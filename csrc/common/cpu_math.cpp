#include "common/cpu_math.h"

#include <cmath>

#include "common/cpu_convert.h"
#include "common/macros.h"

namespace yl::cpu {
namespace {
constexpr int kLanes = 16;
}

YL_CPU_CLONES float max_f32(const float* x, int64_t n) {
  float part[kLanes];
  for (float& p : part) p = -INFINITY;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) part[l] = x[i + l] > part[l] ? x[i + l] : part[l];
  for (; i < n; ++i) part[0] = x[i] > part[0] ? x[i] : part[0];
  float m = part[0];
  for (int l = 1; l < kLanes; ++l) m = part[l] > m ? part[l] : m;
  return m;
}

YL_CPU_CLONES float exp_sub_sum(float* x, int64_t n, float m) {
  float part[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) part[l] += (x[i + l] = exp_f32(x[i + l] - m));
  for (; i < n; ++i) part[0] += (x[i] = exp_f32(x[i] - m));
  float s = 0.f;
  for (float p : part) s += p;
  return s;
}

YL_CPU_CLONES float dot_f32(const float* x, const float* y, int64_t n) {
  float part[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) part[l] += x[i + l] * y[i + l];
  for (; i < n; ++i) part[0] += x[i] * y[i];
  float s = 0.f;
  for (float p : part) s += p;
  return s;
}

YL_CPU_CLONES void scale_f32(float* x, int64_t n, float a) {
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

YL_CPU_CLONES void scaled_copy_f32(const float* x, float* y, int64_t n, float a) {
  for (int64_t i = 0; i < n; ++i) y[i] = a * x[i];
}

YL_CPU_CLONES void axpy_f32(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace yl::cpu
