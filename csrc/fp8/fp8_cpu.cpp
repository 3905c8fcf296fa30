// FP8 activation quantization on the CPU: parallel over rows; per 128-value block one pass for
// the amax and one for the values, both vectorised (fp8.h's math written as selects).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <limits>

#include "common/check.h"
#include "common/cpu_convert.h"
#include "fp8/fp8.h"

namespace yl::fp8 {

// Largest |v[j]|, and whether some v[j] is NaN (kept apart so the max vectorises).
YL_CPU_CLONES float block_amax(const float* v, int64_t n, bool& nan) {
  float amax = 0.f;
  int any_nan = 0;
  for (int64_t j = 0; j < n; ++j) {
    const float a = v[j] < 0.f ? -v[j] : v[j];
    amax = a > amax ? a : amax;
    any_nan |= a != a;
  }
  nan = any_nan != 0;
  return amax;
}

YL_CPU_CLONES void block_quantize(const float* v, int64_t n, float scale, uint8_t* q) {
  for (int64_t j = 0; j < n; ++j) q[j] = quantize(v[j], scale);
}

namespace {

std::tuple<at::Tensor, at::Tensor> quantize_rows_cpu(const at::Tensor& x_in) {
  auto [q, scale] = outputs_for(x_in);
  const at::Tensor x = x_in.contiguous();
  const int64_t M = x.size(0), K = x.size(1), KB = scale.size(1);
  std::atomic<bool> finite{true};
  YL_DISPATCH_FLOAT(x.scalar_type(), "quantize_fp8_rows", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    auto* qp = reinterpret_cast<uint8_t*>(q.mutable_data_ptr());
    float* sp = scale.mutable_data_ptr<float>();
    at::parallel_for(0, M, std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)), [&](int64_t r0, int64_t r1) {
      float buf[kBlock];
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t b = 0; b < KB; ++b) {
          const int64_t c0 = b * kBlock, n = std::min(kBlock, K - c0);
          const float* v = cpu::load_f32(xp + r * K + c0, buf, n);
          bool nan = false;
          float amax = block_amax(v, n, nan);
          if (nan || !(amax <= 3.4028235e38f)) {  // inf or NaN: the call fails below
            finite = false;
            amax = nan ? std::numeric_limits<float>::quiet_NaN() : amax;
          }
          sp[r * KB + b] = scale_of(amax);
          block_quantize(v, n, sp[r * KB + b], qp + r * K + c0);
        }
      }
    });
  });
  TORCH_CHECK_VALUE(finite, "quantize_fp8: x has inf or NaN values; FP8 scales need finite inputs");
  return {q, scale};
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CPU, m) { m.impl("quantize_fp8_rows", &quantize_rows_cpu); }

}  // namespace yl::fp8
