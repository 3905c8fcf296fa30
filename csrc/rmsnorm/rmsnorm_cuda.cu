// RMSNorm on the GPU: one block per row; the block sums the squares (warp shuffles, then one
// value per warp in shared memory) and every thread writes its strided share of the row.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

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
  for (int off = 16; off > 0; off /= 2) ss += __shfl_down_sync(0xffffffffu, ss, off);
  __shared__ float part[kThreads / 32];
  __shared__ float inv;
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.f;
    for (int i = 0; i < kThreads / 32; ++i) total += part[i];
    inv = rsqrtf(total / static_cast<float>(C) + eps);
  }
  __syncthreads();
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

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CUDA, m) { m.impl("rms_norm", &rms_norm_cuda); }

}  // namespace yl::rmsnorm
