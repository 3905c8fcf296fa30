// FP8 activation quantization on the CPU: one pass over x, parallel over rows (fp8.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>

#include "common/check.h"
#include "fp8/fp8.h"

namespace yl::fp8 {
namespace {

std::tuple<at::Tensor, at::Tensor> quantize_rows_cpu(const at::Tensor& x_in) {
  auto [q, scale] = outputs_for(x_in);
  const at::Tensor x = x_in.contiguous();
  const int64_t M = x.size(0), K = x.size(1), KB = scale.size(1);
  std::atomic<bool> finite{true};
  YL_DISPATCH_FLOAT(x.scalar_type(), "quantize_fp8_rows", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    auto* qp = reinterpret_cast<c10::Float8_e4m3fn*>(q.mutable_data_ptr());
    float* sp = scale.mutable_data_ptr<float>();
    at::parallel_for(0, M, std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)), [&](int64_t r0, int64_t r1) {
      float v[kBlock];
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t b = 0; b < KB; ++b) {
          const int64_t c0 = b * kBlock, n = std::min(kBlock, K - c0);
          float amax = 0.f;
          for (int64_t j = 0; j < n; ++j) {
            v[j] = static_cast<float>(xp[r * K + c0 + j]);
            amax = amax_step(amax, v[j]);
          }
          if (!(amax <= 3.4028235e38f)) finite = false;  // inf or NaN
          const float s = scale_of(amax);
          sp[r * KB + b] = s;
          for (int64_t j = 0; j < n; ++j) qp[r * K + c0 + j] = quantize(v[j], s);
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
