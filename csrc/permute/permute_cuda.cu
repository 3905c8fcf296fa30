// Token permutation on the GPU. The stable order comes from a stable device sort of the expert
// ids (no host sync); row copies and weighted sums run one block per row or token, threads
// across the hidden dimension, sums in a fixed order (deterministic, no float atomics).
// Expert ids outside [0, E) are not checked here (that would need a host sync): they are left
// out of group_sizes and sorted after every group (negative ones too), so no group shifts.
// unpermute trusts row_map to be a permutation, as permute returns it (the CPU kernel checks);
// an entry outside [0, T*k) is skipped (reads as zero, writes nothing; dy starts at zero) rather
// than touching memory out of bounds.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/kernel_guard.h"
#include "permute/permute.h"

namespace yl::permute {
namespace {

constexpr int kThreads = 256;

__global__ void histogram_kernel(const int64_t* __restrict__ idx, int64_t S, int64_t E,
                                 unsigned long long* __restrict__ counts) {
  for (int64_t s = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; s < S; s += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = idx[s];
    if (e >= 0 && e < E) atomicAdd(counts + e, 1ULL);  // integer adds: exact in any order
  }
}

// row_map[order[r]] = r; src_token[r] = order[r] / k.
__global__ void invert_kernel(const int64_t* __restrict__ order, int64_t S, int64_t k, int64_t* __restrict__ row_map,
                              int64_t* __restrict__ src_token) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < S; r += int64_t(gridDim.x) * blockDim.x) {
    row_map[order[r]] = r;
    src_token[r] = order[r] / k;
  }
}

template <typename T>
__global__ void gather_rows_kernel(const T* __restrict__ x, const int64_t* __restrict__ src, T* __restrict__ out,
                                   int64_t H) {
  const int64_t r = blockIdx.x;
  const T* in = x + src[r] * H;
  for (int64_t h = threadIdx.x; h < H; h += blockDim.x) out[r * H + h] = in[h];
}

template <typename T>
__global__ void unpermute_kernel(const T* __restrict__ y, const int64_t* __restrict__ row_map,
                                 const float* __restrict__ w, T* __restrict__ out, int64_t k, int64_t H) {
  const int64_t t = blockIdx.x, S = gridDim.x * k;
  for (int64_t h = threadIdx.x; h < H; h += blockDim.x) {
    float acc = 0.f;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t r = row_map[t * k + j];
      if (r >= 0 && r < S) acc += w[t * k + j] * static_cast<float>(y[r * H + h]);
    }
    out[t * H + h] = static_cast<T>(acc);
  }
}

template <typename T>
__global__ void unpermute_backward_kernel(const T* __restrict__ grad, const T* __restrict__ y,
                                          const int64_t* __restrict__ row_map, const float* __restrict__ w,
                                          T* __restrict__ dy, float* __restrict__ dw, int64_t k, int64_t H) {
  __shared__ float partial[kThreads];
  const int64_t t = blockIdx.x, S = gridDim.x * k;
  for (int64_t j = 0; j < k; ++j) {
    const int64_t r = row_map[t * k + j];
    const float wt = w[t * k + j];
    float dot = 0.f;
    for (int64_t h = threadIdx.x; h < H && r >= 0 && r < S; h += blockDim.x) {
      const float g = static_cast<float>(grad[t * H + h]);
      dy[r * H + h] = static_cast<T>(wt * g);
      dot += g * static_cast<float>(y[r * H + h]);
    }
    partial[threadIdx.x] = dot;
    __syncthreads();
    for (int stride = kThreads / 2; stride > 0; stride /= 2) {  // fixed tree: deterministic
      if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
      __syncthreads();
    }
    if (threadIdx.x == 0) dw[t * k + j] = partial[0];
    __syncthreads();
  }
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)); }

std::tuple<at::Tensor, at::Tensor, at::Tensor> permute_cuda(const at::Tensor& x_in, const at::Tensor& indices_in,
                                                            int64_t num_experts) {
  check_permute(x_in, indices_in, num_experts);
  TORCH_CHECK(x_in.is_cuda(), "permute: x must be a CUDA tensor here, got ", x_in.device());
  const c10::cuda::CUDAGuard guard(x_in.device());
  const KernelGuard kernel_guard;
  const at::Tensor x = x_in.contiguous(), flat = indices_in.contiguous().view(-1);
  const int64_t T = x.size(0), H = x.size(1), k = indices_in.size(1), S = T * k;
  at::Tensor group_sizes = at::zeros({num_experts}, flat.options());
  at::Tensor row_map = at::empty({S}, flat.options()), src = at::empty({S}, flat.options());
  at::Tensor x_sorted = at::empty({S, H}, x.options());
  if (S == 0) return {x_sorted, group_sizes, row_map};
  auto stream = c10::cuda::getCurrentCUDAStream();
  histogram_kernel<<<blocks_for(S), kThreads, 0, stream>>>(
      flat.const_data_ptr<int64_t>(), S, num_experts,
      reinterpret_cast<unsigned long long*>(group_sizes.mutable_data_ptr<int64_t>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor key = at::where(flat.lt(0), num_experts, flat);  // invalid ids after every group
  const at::Tensor order = std::get<1>(at::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  invert_kernel<<<blocks_for(S), kThreads, 0, stream>>>(order.const_data_ptr<int64_t>(), S, k,
                                                        row_map.mutable_data_ptr<int64_t>(),
                                                        src.mutable_data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (H > 0) {
    YL_DISPATCH_FLOAT(x.scalar_type(), "permute_cuda", [&] {
      gather_rows_kernel<scalar_t><<<static_cast<unsigned>(S), kThreads, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), src.const_data_ptr<int64_t>(), x_sorted.mutable_data_ptr<scalar_t>(), H);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {x_sorted, group_sizes, row_map};
}

at::Tensor unpermute_cuda(const at::Tensor& y_in, const at::Tensor& row_map_in, const at::Tensor& weights_in) {
  const auto [T, k, H] = check_unpermute(y_in, row_map_in, weights_in);
  TORCH_CHECK(y_in.is_cuda(), "unpermute: y_sorted must be a CUDA tensor here, got ", y_in.device());
  const c10::cuda::CUDAGuard guard(y_in.device());
  const at::Tensor y = y_in.contiguous(), row_map = row_map_in.contiguous(), weights = weights_in.contiguous();
  at::Tensor out = at::empty({T, H}, y.options());
  if (out.numel() == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  YL_DISPATCH_FLOAT(y.scalar_type(), "unpermute_cuda", [&] {
    unpermute_kernel<scalar_t><<<static_cast<unsigned>(T), kThreads, 0, stream>>>(
        y.const_data_ptr<scalar_t>(), row_map.const_data_ptr<int64_t>(), weights.const_data_ptr<float>(),
        out.mutable_data_ptr<scalar_t>(), k, H);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor> unpermute_backward_cuda(const at::Tensor& grad_in, const at::Tensor& y_in,
                                                           const at::Tensor& row_map_in, const at::Tensor& weights_in) {
  const auto [T, k, H] = check_unpermute(y_in, row_map_in, weights_in);
  TORCH_CHECK(y_in.is_cuda(), "unpermute_backward: y_sorted must be a CUDA tensor here, got ", y_in.device());
  check_unpermute_grad(grad_in, y_in, T, H);
  const c10::cuda::CUDAGuard guard(y_in.device());
  const at::Tensor y = y_in.contiguous(), grad = grad_in.contiguous(), row_map = row_map_in.contiguous(),
                   weights = weights_in.contiguous();
  at::Tensor dy = at::zeros_like(y), dw = at::empty({T, k}, weights.options());
  if (T * k == 0) return {dy, dw};
  auto stream = c10::cuda::getCurrentCUDAStream();
  YL_DISPATCH_FLOAT(y.scalar_type(), "unpermute_backward_cuda", [&] {
    unpermute_backward_kernel<scalar_t><<<static_cast<unsigned>(T), kThreads, 0, stream>>>(
        grad.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(), row_map.const_data_ptr<int64_t>(),
        weights.const_data_ptr<float>(), dy.mutable_data_ptr<scalar_t>(), dw.mutable_data_ptr<float>(), k, H);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {dy, dw};
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CUDA, m) {
  m.impl("permute", &permute_cuda);
  m.impl("unpermute", &unpermute_cuda);
  m.impl("unpermute_backward", &unpermute_backward_cuda);
}

}  // namespace yl::permute
