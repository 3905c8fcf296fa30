// Cross-entropy on the GPU: one block per row; the block reduces the row's max, then its sum of
// exp(x - max) (cuda::block_reduce). Backward: one block per row writes g * (exp(x - lse) - onehot).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/cuda_reduce.cuh"
#include "common/macros.h"
#include "cross_entropy/cross_entropy.h"

namespace yl::cross_entropy {
namespace {

constexpr int kThreads = 256;

template <typename S>
__global__ void forward_kernel(const S* __restrict__ x, const int64_t* __restrict__ targets, float* __restrict__ loss,
                               float* __restrict__ lse, int64_t V, int64_t ignore_index) {
  const S* xr = x + blockIdx.x * V;
  float m = -INFINITY;
  for (int64_t v = threadIdx.x; v < V; v += kThreads) m = fmaxf(m, static_cast<float>(xr[v]));
  m = cuda::block_reduce<kThreads, true>(m);
  float s = 0.f;
  for (int64_t v = threadIdx.x; v < V; v += kThreads) s += exp_f32(static_cast<float>(xr[v]) - m);
  s = cuda::block_reduce<kThreads>(s);
  if (threadIdx.x == 0) {
    const float l = m + logf(s);
    const int64_t t = targets[blockIdx.x];
    lse[blockIdx.x] = l;
    loss[blockIdx.x] = t == ignore_index ? 0.f : l - static_cast<float>(xr[t]);
  }
}

template <typename S>
__global__ void backward_kernel(const float* __restrict__ grad, const S* __restrict__ x,
                                const int64_t* __restrict__ targets, const float* __restrict__ lse, S* __restrict__ dx,
                                int64_t V, int64_t ignore_index) {
  const int64_t i = blockIdx.x, t = targets[i];
  const float g = t == ignore_index ? 0.f : grad[i], l = lse[i];
  for (int64_t v = threadIdx.x; v < V; v += kThreads) {
    const float p = g == 0.f ? 0.f : g * exp_f32(static_cast<float>(x[i * V + v]) - l);
    dx[i * V + v] = static_cast<S>(v == t ? p - g : p);
  }
}

// Targets are validated on the host: a kernel cannot raise, and a bad index would read out of
// bounds. This costs one device-to-host copy of N int64 values per call.
void check_targets(const at::Tensor& targets, int64_t V, int64_t ignore_index) {
  const at::Tensor bad = (targets.ne(ignore_index) & (targets.lt(0) | targets.ge(V))).any();
  TORCH_CHECK(!bad.item<bool>(), "cross_entropy: targets must lie in [0, V=", V, ") or equal ignore_index=",
              ignore_index);
}

std::tuple<at::Tensor, at::Tensor> cross_entropy_cuda(const at::Tensor& logits_in, const at::Tensor& targets_in,
                                                      int64_t ignore_index) {
  const auto [N, V] = check_inputs(logits_in, targets_in);
  TORCH_CHECK(logits_in.is_cuda(), "cross_entropy: logits must be a CUDA tensor here, got ", logits_in.device());
  const c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor x = logits_in.contiguous(), targets = targets_in.contiguous();
  at::Tensor loss = at::empty({N}, x.options().dtype(at::kFloat)), lse = at::empty({N}, loss.options());
  if (N == 0) return {loss, lse};
  TORCH_CHECK(N <= INT32_MAX, "cross_entropy: at most 2^31 - 1 rows per call, got ", N);
  check_targets(targets, V, ignore_index);
  YL_DISPATCH_FLOAT(x.scalar_type(), "cross_entropy_cuda", [&] {
    forward_kernel<scalar_t><<<static_cast<unsigned>(N), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), targets.const_data_ptr<int64_t>(), loss.mutable_data_ptr<float>(),
        lse.mutable_data_ptr<float>(), V, ignore_index);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {loss, lse};
}

at::Tensor cross_entropy_backward_cuda(const at::Tensor& grad_in, const at::Tensor& logits_in,
                                       const at::Tensor& targets_in, const at::Tensor& lse_in, int64_t ignore_index) {
  const auto [N, V] = check_inputs(logits_in, targets_in);
  TORCH_CHECK(logits_in.is_cuda(), "cross_entropy_backward: logits must be a CUDA tensor here, got ",
              logits_in.device());
  check_backward(grad_in, lse_in, logits_in, N);
  TORCH_CHECK(N <= INT32_MAX, "cross_entropy_backward: at most 2^31 - 1 rows per call, got ", N);
  const c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor x = logits_in.contiguous(), targets = targets_in.contiguous(), grad = grad_in.contiguous(),
                   lse = lse_in.contiguous();
  at::Tensor dx = at::empty({N, V}, x.options());
  if (N == 0) return dx;
  YL_DISPATCH_FLOAT(x.scalar_type(), "cross_entropy_backward_cuda", [&] {
    backward_kernel<scalar_t><<<static_cast<unsigned>(N), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        grad.const_data_ptr<float>(), x.const_data_ptr<scalar_t>(), targets.const_data_ptr<int64_t>(),
        lse.const_data_ptr<float>(), dx.mutable_data_ptr<scalar_t>(), V, ignore_index);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CUDA, m) {
  m.impl("cross_entropy", &cross_entropy_cuda);
  m.impl("cross_entropy_backward", &cross_entropy_backward_cuda);
}

}  // namespace yl::cross_entropy
