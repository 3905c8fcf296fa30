// FP8 activation quantization on the GPU: one warp per (row, 128-column block), four values a
// lane, the block's amax reduced across the warp (fp8.h). Unlike the CPU kernel it does not
// check for inf/NaN (that would cost a host sync): they propagate into the block's scale.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/check.h"
#include "fp8/fp8.h"

namespace yl::fp8 {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kPerLane = kBlock / 32;

template <typename T>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
quantize_rows_kernel(const T* __restrict__ x, uint8_t* __restrict__ q, float* __restrict__ scale,
                     int64_t M, int64_t K, int64_t KB) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * kWarpsPerBlock;
  for (int64_t w = blockIdx.x * int64_t(kWarpsPerBlock) + threadIdx.x / 32; w < M * KB; w += warps) {
    const int64_t r = w / KB, c0 = (w % KB) * kBlock + lane * kPerLane;
    float v[kPerLane];
    float amax = 0.f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      v[j] = c0 + j < K ? static_cast<float>(x[r * K + c0 + j]) : 0.f;
      amax = amax_step(amax, v[j]);
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) amax = amax_step(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float s = scale_of(amax);
    if (lane == 0) scale[w] = s;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j)
      if (c0 + j < K) q[r * K + c0 + j] = quantize(v[j], s);
  }
}

std::tuple<at::Tensor, at::Tensor> quantize_rows_cuda(const at::Tensor& x_in) {
  auto [q, scale] = outputs_for(x_in);
  TORCH_CHECK(x_in.is_cuda(), "quantize_fp8_rows: x must be a CUDA tensor here, got ", x_in.device());
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const int64_t M = x.size(0), K = x.size(1), KB = scale.size(1);
  if (M * KB == 0) return {q, scale};
  const int64_t blocks = std::min<int64_t>((M * KB + kWarpsPerBlock - 1) / kWarpsPerBlock, 65535 * 4);
  YL_DISPATCH_FLOAT(x.scalar_type(), "quantize_fp8_rows_cuda", [&] {
    quantize_rows_kernel<scalar_t><<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0,
                                     c10::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), reinterpret_cast<uint8_t*>(q.mutable_data_ptr()),
        scale.mutable_data_ptr<float>(), M, K, KB);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {q, scale};
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CUDA, m) { m.impl("quantize_fp8_rows", &quantize_rows_cuda); }

}  // namespace yl::fp8
