// FP8 on the CPU: activation quantization (parallel over rows; per 128-value block one pass for
// the amax and one for the values) and dequantization of any block shape (the FP8 product's
// path on the CPU), vectorised (fp8.h's conversions written as selects).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <limits>
#include <vector>

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

YL_CPU_CLONES void block_dequantize(const uint8_t* q, int64_t n, float scale, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = e4m3_value(q[j]) * scale;
}

namespace {

// q [..., R, C] float8_e4m3fn, scale [..., ceil(R/br), ceil(C/bc)] fp32 -> q * scale in fp32.
at::Tensor dequantize_cpu(const at::Tensor& q_in, const at::Tensor& scale_in, int64_t br, int64_t bc) {
  TORCH_CHECK(q_in.scalar_type() == at::kFloat8_e4m3fn && q_in.dim() >= 2,
              "dequantize_fp8: q must be float8_e4m3fn [..., R, C], got ", q_in.scalar_type(), " ", q_in.sizes());
  TORCH_CHECK(br >= 1 && bc >= 1, "dequantize_fp8: the block must be positive, got (", br, ", ", bc, ")");
  const int64_t R = q_in.size(-2), C = q_in.size(-1), RB = (R + br - 1) / br, CB = (C + bc - 1) / bc;
  std::vector<int64_t> want(q_in.sizes().begin(), q_in.sizes().end() - 2);
  want.push_back(RB);
  want.push_back(CB);
  TORCH_CHECK(scale_in.scalar_type() == at::kFloat && scale_in.sizes() == at::IntArrayRef(want),
              "dequantize_fp8: scale must be float32 ", at::IntArrayRef(want), " for q ", q_in.sizes(), ", got ",
              scale_in.scalar_type(), " ", scale_in.sizes());
  TORCH_CHECK(q_in.is_cpu() && scale_in.is_cpu(), "dequantize_fp8: q and scale must be CPU tensors here, got ",
              q_in.device(), " and ", scale_in.device());
  const at::Tensor q = q_in.contiguous(), scale = scale_in.contiguous();
  at::Tensor out = at::empty(q.sizes(), q.options().dtype(at::kFloat));
  const int64_t rows = q.numel() / std::max<int64_t>(C, 1);
  const auto* qp = reinterpret_cast<const uint8_t*>(q.const_data_ptr());
  const float* sp = scale.const_data_ptr<float>();
  float* op = out.mutable_data_ptr<float>();
  if (C == 0) return out;
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / C), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {  // row i: batch i / R, row i % R
      const float* srow = sp + ((i / R) * RB + (i % R) / br) * CB;
      for (int64_t b = 0; b < CB; ++b) {
        const int64_t c0 = b * bc;
        block_dequantize(qp + i * C + c0, std::min(bc, C - c0), srow[b], op + i * C + c0);
      }
    }
  });
  return out;
}

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

TORCH_LIBRARY_IMPL(yilightning, CPU, m) {
  m.impl("quantize_fp8_rows", &quantize_rows_cpu);
  m.impl("dequantize_fp8", &dequantize_cpu);
}

}  // namespace yl::fp8
