// SwiGLU on the GPU: memory-bound, so each thread moves 16 bytes per load when the row width
// allows (I % VEC == 0 and 16-byte aligned rows); otherwise one element at a time.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "swiglu/swiglu.h"

namespace yl::swiglu {
namespace {

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

// Grid-stride over groups of VEC output columns; a group never straddles two rows.
template <typename T, int VEC>
__global__ void forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows,
                               int64_t I) {
  const int64_t groups_per_row = I / VEC, total = rows * groups_per_row;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / groups_per_row, c = (idx % groups_per_row) * VEC;
    const auto g = *reinterpret_cast<const Vec<T, VEC>*>(x + r * 2 * I + c);
    const auto u = *reinterpret_cast<const Vec<T, VEC>*>(x + r * 2 * I + I + c);
    Vec<T, VEC> out;
#pragma unroll
    for (int j = 0; j < VEC; ++j)
      out.v[j] = static_cast<T>(forward(static_cast<float>(g.v[j]), static_cast<float>(u.v[j])));
    *reinterpret_cast<Vec<T, VEC>*>(y + r * I + c) = out;
  }
}

template <typename T, int VEC>
__global__ void backward_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                T* __restrict__ dx, int64_t rows, int64_t I) {
  const int64_t groups_per_row = I / VEC, total = rows * groups_per_row;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / groups_per_row, c = (idx % groups_per_row) * VEC;
    const auto d = *reinterpret_cast<const Vec<T, VEC>*>(dy + r * I + c);
    const auto g = *reinterpret_cast<const Vec<T, VEC>*>(x + r * 2 * I + c);
    const auto u = *reinterpret_cast<const Vec<T, VEC>*>(x + r * 2 * I + I + c);
    Vec<T, VEC> dg, du;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      float a, b;
      backward(static_cast<float>(d.v[j]), static_cast<float>(g.v[j]), static_cast<float>(u.v[j]),
               a, b);
      dg.v[j] = static_cast<T>(a);
      du.v[j] = static_cast<T>(b);
    }
    *reinterpret_cast<Vec<T, VEC>*>(dx + r * 2 * I + c) = dg;
    *reinterpret_cast<Vec<T, VEC>*>(dx + r * 2 * I + I + c) = du;
  }
}

bool aligned16(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// Launches kernel<T, VEC> with the widest VEC that divides I (16-byte loads at best); a view
// whose storage offset breaks 16-byte alignment takes the scalar path.
template <typename T, typename Launch>
void launch_vectorized(int64_t rows, int64_t I, bool aligned, const Launch& launch) {
  constexpr int kWide = 16 / sizeof(T);
  auto grid_for = [&](int vec) {
    const int64_t work = rows * (I / vec);
    return static_cast<unsigned>(std::min<int64_t>((work + 255) / 256, 65535LL * 8));
  };
  if (aligned && I % kWide == 0) launch(std::integral_constant<int, kWide>{}, grid_for(kWide));
  else launch(std::integral_constant<int, 1>{}, grid_for(1));
}

at::Tensor swiglu_cuda(const at::Tensor& x_in) {
  auto shape = check_input(x_in);
  TORCH_CHECK(x_in.is_cuda(), "swiglu: x must be a CUDA tensor here, got ", x_in.device());
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty(shape, x.options());
  const int64_t I = shape.back();
  if (y.numel() == 0) return y;
  const int64_t rows = y.numel() / I;
  auto stream = c10::cuda::getCurrentCUDAStream();
  YL_DISPATCH_FLOAT(x.scalar_type(), "swiglu_cuda", [&] {
    const bool aligned = aligned16({x.const_data_ptr(), y.const_data_ptr()});
    launch_vectorized<scalar_t>(rows, I, aligned, [&](auto vec, unsigned grid) {
      forward_kernel<scalar_t, decltype(vec)::value><<<grid, 256, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), rows, I);
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

at::Tensor swiglu_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in) {
  check_backward(grad_in, x_in);
  TORCH_CHECK(x_in.is_cuda(), "swiglu_backward: x must be a CUDA tensor here, got ", x_in.device());
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), grad = grad_in.contiguous();
  at::Tensor dx = at::empty(x.sizes(), x.options());
  const int64_t I = x.size(-1) / 2;
  if (dx.numel() == 0) return dx;
  const int64_t rows = grad.numel() / I;
  auto stream = c10::cuda::getCurrentCUDAStream();
  YL_DISPATCH_FLOAT(x.scalar_type(), "swiglu_bwd_cuda", [&] {
    const bool aligned = aligned16({grad.const_data_ptr(), x.const_data_ptr(), dx.const_data_ptr()});
    launch_vectorized<scalar_t>(rows, I, aligned, [&](auto vec, unsigned grid) {
      backward_kernel<scalar_t, decltype(vec)::value><<<grid, 256, 0, stream>>>(
          grad.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
          dx.mutable_data_ptr<scalar_t>(), rows, I);
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CUDA, m) {
  m.impl("swiglu", &swiglu_cuda);
  m.impl("swiglu_backward", &swiglu_backward_cuda);
}

}  // namespace yl::swiglu
