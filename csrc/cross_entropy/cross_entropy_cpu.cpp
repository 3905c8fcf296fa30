// Cross-entropy on the CPU: one pass per row for the log-sum-exp (fp32, vectorised), parallel
// over rows; backward writes each row's softmax minus the one-hot target, scaled, in one pass.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "common/cpu_alloc.h"
#include "common/cpu_convert.h"
#include "common/cpu_math.h"
#include "cross_entropy/cross_entropy.h"

namespace yl::cross_entropy {
namespace {

// Returns (loss [N] fp32, lse [N] fp32); an ignored row has loss 0.
std::tuple<at::Tensor, at::Tensor> cross_entropy_cpu(const at::Tensor& logits_in, const at::Tensor& targets_in,
                                                     int64_t ignore_index) {
  const auto [N, V] = check_inputs(logits_in, targets_in);
  TORCH_CHECK(logits_in.device().is_cpu(), "cross_entropy: logits must be a CPU tensor here, got ",
              logits_in.device());
  const at::Tensor x = logits_in.contiguous(), targets = targets_in.contiguous();
  at::Tensor loss = at::empty({N}, x.options().dtype(at::kFloat)), lse = at::empty({N}, loss.options());
  const int64_t* tp = targets.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < N; ++i)
    TORCH_CHECK(tp[i] == ignore_index || (tp[i] >= 0 && tp[i] < V), "cross_entropy: targets must lie in [0, V=", V,
                ") or equal ignore_index=", ignore_index, ", got ", tp[i], " at row ", i);
  float *lp = loss.mutable_data_ptr<float>(), *sp = lse.mutable_data_ptr<float>();
  YL_DISPATCH_FLOAT(x.scalar_type(), "cross_entropy_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    at::parallel_for(0, N, std::max<int64_t>(1, 16384 / V), [&](int64_t begin, int64_t end) {
      std::vector<float> e(V);
      for (int64_t i = begin; i < end; ++i) {
        cpu::copy_to_f32(xp + i * V, e.data(), V);
        const float m = cpu::max_f32(e.data(), V);
        const float target = tp[i] == ignore_index ? 0.f : e[tp[i]];
        sp[i] = m + std::log(cpu::exp_sub_sum(e.data(), V, m));
        lp[i] = tp[i] == ignore_index ? 0.f : sp[i] - target;
      }
    });
  });
  return {loss, lse};
}

// dx[i] = grad[i] * (softmax(x[i]) - onehot(target[i])); zero for an ignored row.
at::Tensor cross_entropy_backward_cpu(const at::Tensor& grad_in, const at::Tensor& logits_in,
                                      const at::Tensor& targets_in, const at::Tensor& lse_in, int64_t ignore_index) {
  const auto [N, V] = check_inputs(logits_in, targets_in);
  TORCH_CHECK(logits_in.device().is_cpu(), "cross_entropy_backward: logits must be a CPU tensor here, got ",
              logits_in.device());
  check_backward(grad_in, lse_in, logits_in, N);
  const at::Tensor x = logits_in.contiguous(), targets = targets_in.contiguous(), grad = grad_in.contiguous(),
                   lse = lse_in.contiguous();
  at::Tensor dx = cpu::empty_huge({N, V}, x.options());  // [N, V]: often past 32 MiB
  const int64_t* tp = targets.const_data_ptr<int64_t>();
  const float *gp = grad.const_data_ptr<float>(), *sp = lse.const_data_ptr<float>();
  YL_DISPATCH_FLOAT(x.scalar_type(), "cross_entropy_backward_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, N, std::max<int64_t>(1, 16384 / V), [&](int64_t begin, int64_t end) {
      std::vector<float> o(V);
      for (int64_t i = begin; i < end; ++i) {
        float* d = cpu::out_f32(dp + i * V, o.data());
        if (tp[i] == ignore_index || gp[i] == 0.f) {
          std::fill(d, d + V, 0.f);
        } else {
          cpu::copy_to_f32(xp + i * V, d, V);
          cpu::exp_sub_sum(d, V, sp[i]);  // softmax: exp(x - lse)
          cpu::scale_f32(d, V, gp[i]);
          d[tp[i]] -= gp[i];
        }
        cpu::store_f32(d, dp + i * V, V);
      }
    });
  });
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CPU, m) {
  m.impl("cross_entropy", &cross_entropy_cpu);
  m.impl("cross_entropy_backward", &cross_entropy_backward_cpu);
}

}  // namespace yl::cross_entropy
