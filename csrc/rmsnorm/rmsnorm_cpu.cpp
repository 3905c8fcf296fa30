// RMSNorm on the CPU, parallel over rows, in fp32 (16-bit rows converted once). An fp32 row takes
// its sum of squares (a vectorised dot product), then one pass forward; backward, one pass for
// n = x r, the weight gradient and sum(dn n) together and one for dx: 30-40% less time than a
// helper call per term (2048 x 256: forward 123 -> 76 us, backward 220 -> 131 us).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "common/cpu_alloc.h"
#include "common/cpu_convert.h"
#include "common/cpu_math.h"
#include "rmsnorm/rmsnorm.h"

namespace yl::rmsnorm {
namespace {

// n <- x * inv rounded to x's dtype (held as fp32); every step a vectorised row helper.
template <typename X>
void normalized(const float* x, float inv, float* n, X* rounded, int64_t C) {
  cpu::scaled_copy_f32(x, n, C, inv);
  if constexpr (!std::is_same_v<X, float>) {
    cpu::from_f32(n, rounded, C);
    cpu::to_f32(rounded, n, C);
  }
}

float row_rsqrt(const float* x, int64_t C, double eps) {
  return 1.f / std::sqrt(cpu::dot_f32(x, x, C) / static_cast<float>(C) + static_cast<float>(eps));
}

at::Tensor rms_norm_cpu(const at::Tensor& x_in, const at::Tensor& weight_in, double eps) {
  const auto [rows, C] = check_inputs(x_in, weight_in, eps);
  TORCH_CHECK(x_in.device().is_cpu(), "rms_norm: x must be a CPU tensor here, got ", x_in.device());
  const at::Tensor x = x_in.contiguous(), w = weight_in.to(at::kFloat).contiguous();
  at::Tensor out = cpu::empty_cached(x.sizes(), x.options().dtype(at::result_type(x_in, weight_in)));
  if (rows == 0) return out;
  const bool out_f32 = out.scalar_type() == at::kFloat;  // else it is x's dtype
  const float* wp = w.const_data_ptr<float>();
  YL_DISPATCH_FLOAT(x.scalar_type(), "rms_norm_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / C), [&](int64_t begin, int64_t end) {
      std::vector<float> buf(C), n(C), o(C);
      std::vector<scalar_t> rounded(std::is_same_v<scalar_t, float> ? 0 : C);
      for (int64_t r = begin; r < end; ++r) {
        const float* xr = cpu::load_f32(xp + r * C, buf.data(), C);
        if constexpr (std::is_same_v<scalar_t, float>) {  // weight * (x * r): one pass, the same roundings
          cpu::mul_scaled_f32(wp, xr, row_rsqrt(xr, C, eps), out.mutable_data_ptr<float>() + r * C, C);
          continue;
        }
        normalized(xr, row_rsqrt(xr, C, eps), n.data(), rounded.data(), C);
        float* orow = out_f32 ? out.mutable_data_ptr<float>() + r * C : o.data();
        cpu::mul_f32(wp, n.data(), orow, C);
        if (!out_f32) cpu::store_f32(orow, out.mutable_data_ptr<scalar_t>() + r * C, C);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> rms_norm_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                         const at::Tensor& weight_in, double eps) {
  const auto [rows, C] = check_inputs(x_in, weight_in, eps);
  check_backward(grad_in, x_in, weight_in);
  TORCH_CHECK(x_in.device().is_cpu(), "rms_norm_backward: x must be a CPU tensor here, got ", x_in.device());
  const at::Tensor x = x_in.contiguous(), grad = grad_in.to(at::kFloat).contiguous(),
                   w = weight_in.to(at::kFloat).contiguous();
  at::Tensor dx = cpu::empty_cached(x.sizes(), x.options());
  const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  at::Tensor dw_part = at::zeros({std::max<int64_t>(blocks, 1), C}, w.options());
  if (rows > 0) {
    const float *wp = w.const_data_ptr<float>(), *gp = grad.const_data_ptr<float>();
    float* dwp = dw_part.mutable_data_ptr<float>();
    YL_DISPATCH_FLOAT(x.scalar_type(), "rms_norm_backward_cpu", [&] {
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* dxp = dx.mutable_data_ptr<scalar_t>();
      at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> buf(C), n(C), dn(C), o(C);
        std::vector<scalar_t> rounded(std::is_same_v<scalar_t, float> ? 0 : C);
        for (int64_t blk = begin; blk < end; ++blk) {
          for (int64_t r = blk * kRowBlock; r < std::min(rows, (blk + 1) * kRowBlock); ++r) {
            const float* xr = cpu::load_f32(xp + r * C, buf.data(), C);
            const float* g = gp + r * C;
            const float inv = row_rsqrt(xr, C, eps);
            if constexpr (std::is_same_v<scalar_t, float>) {  // two passes: n, dw and sum(dn n); dx
              const float mean = cpu::rms_backward_pass_f32(xr, inv, g, wp, n.data(), dwp + blk * C, C) /
                                 static_cast<float>(C);
              cpu::rms_backward_dx_f32(g, wp, inv, -inv * mean, n.data(), cpu::out_f32(dxp + r * C, o.data()), C);
              continue;
            }
            normalized(xr, inv, n.data(), rounded.data(), C);  // 16-bit x: n rounded as forward rounded it
            cpu::mul_add_f32(g, n.data(), dwp + blk * C, C);  // dw: the rounded n, as forward used it
            cpu::scaled_copy_f32(xr, n.data(), C, inv);  // dx: the exact n
            cpu::mul_f32(g, wp, dn.data(), C);
            const float mean = cpu::dot_f32(dn.data(), n.data(), C) / static_cast<float>(C);
            float* d = cpu::out_f32(dxp + r * C, o.data());
            cpu::scaled_copy_f32(dn.data(), d, C, inv);
            cpu::axpy_f32(-inv * mean, n.data(), d, C);
            cpu::store_f32(d, dxp + r * C, C);
          }
        }
      });
    });
  }
  return {dx, dw_part.sum(0).to(weight_in.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CPU, m) {
  m.impl("rms_norm", &rms_norm_cpu);
  m.impl("rms_norm_backward", &rms_norm_backward_cpu);
}

}  // namespace yl::rmsnorm
