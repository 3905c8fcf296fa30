// RMSNorm on the CPU: one pass per row over fp32 values (16-bit rows converted once), parallel
// over rows; the sum of squares is a vectorised dot product.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "common/cpu_convert.h"
#include "common/cpu_math.h"
#include "rmsnorm/rmsnorm.h"

namespace yl::rmsnorm {
namespace {

at::Tensor rms_norm_cpu(const at::Tensor& x_in, const at::Tensor& weight_in, double eps) {
  const auto [rows, C] = check_inputs(x_in, weight_in, eps);
  TORCH_CHECK(x_in.device().is_cpu(), "rms_norm: x must be a CPU tensor here, got ", x_in.device());
  const at::Tensor x = x_in.contiguous(), w = weight_in.to(at::kFloat).contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(at::result_type(x_in, weight_in)));
  if (rows == 0) return out;
  const bool out_f32 = out.scalar_type() == at::kFloat;  // else it is x's dtype
  const float* wp = w.const_data_ptr<float>();
  YL_DISPATCH_FLOAT(x.scalar_type(), "rms_norm_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / C), [&](int64_t begin, int64_t end) {
      std::vector<float> buf(C), o(C);
      for (int64_t r = begin; r < end; ++r) {
        const float* xr = cpu::load_f32(xp + r * C, buf.data(), C);
        const float inv = 1.f / std::sqrt(cpu::dot_f32(xr, xr, C) / static_cast<float>(C) + static_cast<float>(eps));
        float* orow = out_f32 ? out.mutable_data_ptr<float>() + r * C : o.data();
        for (int64_t c = 0; c < C; ++c) {
          float n = xr[c] * inv;
          if constexpr (!std::is_same_v<scalar_t, float>) n = static_cast<float>(static_cast<scalar_t>(n));
          orow[c] = wp[c] * n;
        }
        if (!out_f32) cpu::store_f32(orow, out.mutable_data_ptr<scalar_t>() + r * C, C);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CPU, m) { m.impl("rms_norm", &rms_norm_cpu); }

}  // namespace yl::rmsnorm
