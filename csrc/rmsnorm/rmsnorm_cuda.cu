// RMSNorm on the GPU: one block per row; the block sums the squares (cuda::block_reduce) and
// every thread writes its strided share of the row.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/cuda_reduce.cuh"
#include "rmsnorm/rmsnorm.h"

namespace yl::rmsnorm {
namespace {

constexpr int kThreads = 256;

template <typename X, typename O>
__global__ void rms_norm_kernel(const X* __restrict__ x, const float* __restrict__ w, O* __restrict__ out,
                                int64_t C, float eps) {
  const X* xr = x + blockIdx.x * C;
  float ss = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    const float v = static_cast<float>(xr[c]);
    ss += v * v;
  }
  const float inv = rsqrtf(cuda::block_reduce<kThreads>(ss) / static_cast<float>(C) + eps);
  O* orow = out + blockIdx.x * C;
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    const float n = static_cast<float>(static_cast<X>(static_cast<float>(xr[c]) * inv));  // rounded to x's dtype
    orow[c] = static_cast<O>(w[c] * n);
  }
}

at::Tensor rms_norm_cuda(const at::Tensor& x_in, const at::Tensor& weight_in, double eps) {
  const auto [rows, C] = check_inputs(x_in, weight_in, eps);
  TORCH_CHECK(x_in.is_cuda(), "rms_norm: x must be a CUDA tensor here, got ", x_in.device());
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), w = weight_in.to(at::kFloat).contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(at::result_type(x_in, weight_in)));
  if (rows == 0) return out;
  TORCH_CHECK(rows <= INT32_MAX, "rms_norm: at most 2^31 - 1 rows per call, got ", rows);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  YL_DISPATCH_FLOAT(x.scalar_type(), "rms_norm_cuda", [&] {
    if (out.scalar_type() == at::kFloat) {
      rms_norm_kernel<scalar_t, float><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), w.const_data_ptr<float>(), out.mutable_data_ptr<float>(), C,
          static_cast<float>(eps));
    } else {
      rms_norm_kernel<scalar_t, scalar_t><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), w.const_data_ptr<float>(), out.mutable_data_ptr<scalar_t>(), C,
          static_cast<float>(eps));
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// dx: one block per row; also keeps each row's rsqrt for the weight gradient.
template <typename X>
__global__ void rms_norm_dx_kernel(const float* __restrict__ g, const X* __restrict__ x, const float* __restrict__ w,
                                   X* __restrict__ dx, float* __restrict__ inv_out, int64_t C, float eps) {
  const X* xr = x + blockIdx.x * C;
  const float* gr = g + blockIdx.x * C;
  float ss = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += kThreads) ss += static_cast<float>(xr[c]) * static_cast<float>(xr[c]);
  const float inv = rsqrtf(cuda::block_reduce<kThreads>(ss) / static_cast<float>(C) + eps);
  if (threadIdx.x == 0) inv_out[blockIdx.x] = inv;
  float dot = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += kThreads) dot += gr[c] * w[c] * static_cast<float>(xr[c]) * inv;
  const float mean = cuda::block_reduce<kThreads>(dot) / static_cast<float>(C);
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    const float n = static_cast<float>(xr[c]) * inv;
    dx[blockIdx.x * C + c] = static_cast<X>(inv * (gr[c] * w[c] - n * mean));
  }
}

// Partial weight gradients: block (row block, column tile) sums its kRowBlock rows in order.
template <typename X>
__global__ void rms_norm_dw_kernel(const float* __restrict__ g, const X* __restrict__ x, const float* __restrict__ inv,
                                   float* __restrict__ part, int64_t rows, int64_t C) {
  const int64_t c = blockIdx.y * int64_t(kThreads) + threadIdx.x, r0 = blockIdx.x * kRowBlock;
  if (c >= C) return;
  float acc = 0.f;
  for (int64_t r = r0; r < min(rows, r0 + kRowBlock); ++r)
    acc += g[r * C + c] * static_cast<float>(static_cast<X>(static_cast<float>(x[r * C + c]) * inv[r]));
  part[blockIdx.x * C + c] = acc;
}

std::tuple<at::Tensor, at::Tensor> rms_norm_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                          const at::Tensor& weight_in, double eps) {
  const auto [rows, C] = check_inputs(x_in, weight_in, eps);
  check_backward(grad_in, x_in, weight_in);
  TORCH_CHECK(x_in.is_cuda(), "rms_norm_backward: x must be a CUDA tensor here, got ", x_in.device());
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), g = grad_in.to(at::kFloat).contiguous(),
                   w = weight_in.to(at::kFloat).contiguous();
  at::Tensor dx = at::empty(x.sizes(), x.options());
  const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  at::Tensor part = at::zeros({std::max<int64_t>(blocks, 1), C}, w.options());
  at::Tensor inv = at::empty({rows}, w.options());
  if (rows > 0) {
    TORCH_CHECK(rows <= INT32_MAX && (C + kThreads - 1) / kThreads <= 65535, "rms_norm_backward: at most 2^31 - 1 "
                "rows and 16M columns per call, got ", rows, " x ", C);
    const auto stream = c10::cuda::getCurrentCUDAStream();
    const dim3 dw_grid(static_cast<unsigned>(blocks), static_cast<unsigned>((C + kThreads - 1) / kThreads));
    YL_DISPATCH_FLOAT(x.scalar_type(), "rms_norm_backward_cuda", [&] {
      rms_norm_dx_kernel<scalar_t><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
          g.const_data_ptr<float>(), x.const_data_ptr<scalar_t>(), w.const_data_ptr<float>(),
          dx.mutable_data_ptr<scalar_t>(), inv.mutable_data_ptr<float>(), C, static_cast<float>(eps));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      rms_norm_dw_kernel<scalar_t><<<dw_grid, kThreads, 0, stream>>>(
          g.const_data_ptr<float>(), x.const_data_ptr<scalar_t>(), inv.const_data_ptr<float>(),
          part.mutable_data_ptr<float>(), rows, C);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {dx, part.sum(0).to(weight_in.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CUDA, m) {
  m.impl("rms_norm", &rms_norm_cuda);
  m.impl("rms_norm_backward", &rms_norm_backward_cuda);
}

}  // namespace yl::rmsnorm
