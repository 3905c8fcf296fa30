// Cross-entropy on the CPU: one pass per row for the log-sum-exp (fp32, vectorised), parallel
// over rows; backward writes each row's softmax minus the one-hot target, scaled, in one pass.
//
// lm_head_loss: the LM head and its cross-entropy fused, fp32: the sum over the labelled rows
// of lse(x_i W^T) - (x_i W^T)_target and (with_grad) its gradients dx = dL W, dW = dL^T x with
// dL = softmax - onehot, for a gradient of 1 (autograd scales them by the incoming one: the
// sum is linear in it). Rows go in chunks of about 16 MiB of logits, each through three GEMMs
// (cpu::parallel_gemm_f32) and one softmax pass in between, so the [N, V] logits and their
// gradient are never written to memory: in a tiny-preset training step those are two fresh
// 64 MiB tensors (page faults) and two passes over them (cross_entropy, its backward).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/cpu_alloc.h"
#include "common/cpu_convert.h"
#include "common/cpu_gemm.h"
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
  at::Tensor dx = cpu::empty_cached({N, V}, x.options());
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

// LM head + cross-entropy, fused (see the top of the file).
// Logits per chunk: half the L3 of the Zen 5 guest. 4 MiB chunks made each GEMM 10-20% slower
// than one over all rows (more, smaller depth blocks; dW read and written per chunk).
constexpr int64_t kChunkBytes = int64_t(16) << 20;

std::tuple<at::Tensor, at::Tensor, at::Tensor> lm_head_loss_cpu(const at::Tensor& x_in, const at::Tensor& w_in,
                                                                const at::Tensor& targets_in, int64_t ignore_index,
                                                                bool with_grad) {
  const auto [N, H, V] = check_lm_head(x_in, w_in, targets_in);
  TORCH_CHECK(x_in.device().is_cpu(), "lm_head_loss: x must be a CPU tensor here, got ", x_in.device());
  const at::Tensor x = x_in.contiguous(), w = w_in.contiguous(), targets = targets_in.contiguous();
  const int64_t* tp = targets.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < N; ++i)
    TORCH_CHECK(tp[i] == ignore_index || (tp[i] >= 0 && tp[i] < V), "lm_head_loss: targets must lie in [0, V=", V,
                ") or equal ignore_index=", ignore_index, ", got ", tp[i], " at row ", i);
  at::Tensor dx = with_grad ? at::empty({N, H}, x.options()) : at::empty({0}, x.options());
  // dW: written by the first chunk's GEMM (beta = 0), summed into by the others; zero without rows
  at::Tensor dw = !with_grad ? at::empty({0}, x.options()) : N > 0 ? at::empty({V, H}, x.options())
                                                                  : at::zeros({V, H}, x.options());
  at::Tensor row_loss = at::zeros({N}, x.options());
  const int64_t chunk = std::clamp<int64_t>(kChunkBytes / (V * 4), 16, 1024);
  at::Tensor logits = at::empty({std::min(chunk, std::max<int64_t>(N, 1)), V}, x.options());
  const float *xp = x.const_data_ptr<float>(), *wp = w.const_data_ptr<float>();
  float *lp = logits.mutable_data_ptr<float>(), *rp = row_loss.mutable_data_ptr<float>();
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t rows = std::min(chunk, N - r0);
    cpu::parallel_gemm_f32(false, true, rows, V, H, 1.f, xp + r0 * H, H, wp, H, 0.f, lp, V);
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / V), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        float* l = lp + r * V;
        const int64_t t = tp[r0 + r];
        if (t == ignore_index) {  // no loss, no gradient
          if (with_grad) std::fill(l, l + V, 0.f);
          continue;
        }
        const float m = cpu::max_f32(l, V), target = l[t];
        // exp_sub_sum leaves exp(l - m) in l: the softmax once divided by the sum
        const float sum = cpu::exp_sub_sum(l, V, m);
        rp[r0 + r] = m + std::log(sum) - target;
        if (with_grad) {
          cpu::scale_f32(l, V, 1.f / sum);
          l[t] -= 1.f;
        }
      }
    });
    if (!with_grad) continue;
    cpu::parallel_gemm_f32(false, false, rows, H, V, 1.f, lp, V, wp, H, 0.f, dx.mutable_data_ptr<float>() + r0 * H, H);
    cpu::parallel_gemm_f32(true, false, V, H, rows, 1.f, lp, V, xp + r0 * H, H, r0 == 0 ? 0.f : 1.f,
                           dw.mutable_data_ptr<float>(), H);
  }
  return {row_loss.sum(), dx, dw};  // the rows summed in a fixed order: deterministic
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CPU, m) {
  m.impl("cross_entropy", &cross_entropy_cpu);
  m.impl("cross_entropy_backward", &cross_entropy_backward_cpu);
  m.impl("lm_head_loss", &lm_head_loss_cpu);
}

}  // namespace yl::cross_entropy
