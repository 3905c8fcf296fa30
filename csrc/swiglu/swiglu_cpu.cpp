// SwiGLU on the CPU: one pass over x (PyTorch eager makes a silu temporary, then multiplies),
// fp32 math in chunks, parallel over (row, column block). The fp32 inner loops are compiled
// twice (AVX2+FMA and baseline x86-64) and picked at load time, so one binary runs everywhere.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "swiglu/swiglu.h"

namespace yl::swiglu {
namespace {

constexpr int64_t kBlock = 1024;  // columns per task: 4 KiB fp32 per stream, fits in L1

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define YL_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define YL_CLONES
#endif

YL_CLONES void forward_f32(const float* g, const float* u, float* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = forward(g[j], u[j]);
}

YL_CLONES void backward_f32(const float* dy, const float* g, const float* u, float* dg, float* du,
                            int64_t n) {
  for (int64_t j = 0; j < n; ++j) backward(dy[j], g[j], u[j], dg[j], du[j]);
}

// Loads n values of type T as fp32: a no-op view for float, a conversion into buf otherwise.
template <typename T>
const float* load(const T* src, float* buf, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return src;
  } else {
    for (int64_t j = 0; j < n; ++j) buf[j] = static_cast<float>(src[j]);
    return buf;
  }
}

template <typename T>
float* out_buf(T* dst, float* buf) {
  if constexpr (std::is_same_v<T, float>) return dst; else return buf;
}

template <typename T>
void store(T* dst, const float* src, int64_t n) {
  if constexpr (!std::is_same_v<T, float>)
    for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<T>(src[j]);
}

// Runs body(row, col0, ncols) over all rows x column blocks of width `cols`, in parallel.
template <typename F>
void for_blocks(int64_t rows, int64_t cols, const F& body) {
  const int64_t nblk = (cols + kBlock - 1) / kBlock;
  at::parallel_for(0, rows * nblk, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r = t / nblk, c0 = (t % nblk) * kBlock;
      body(r, c0, std::min(kBlock, cols - c0));
    }
  });
}

at::Tensor swiglu_cpu(const at::Tensor& x_in) {
  auto shape = check_input(x_in);
  TORCH_CHECK(x_in.device().is_cpu(), "swiglu: x must be a CPU tensor here, got ", x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty(shape, x.options());
  const int64_t I = shape.back();
  if (y.numel() == 0) return y;
  const int64_t rows = y.numel() / I;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "swiglu_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    for_blocks(rows, I, [&](int64_t r, int64_t c0, int64_t n) {
      float gb[kBlock], ub[kBlock], yb[kBlock];
      const scalar_t* row = xp + r * 2 * I + c0;
      float* out = out_buf(yp + r * I + c0, yb);
      forward_f32(load(row, gb, n), load(row + I, ub, n), out, n);
      store(yp + r * I + c0, out, n);
    });
  });
  return y;
}

at::Tensor swiglu_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in) {
  check_backward(grad_in, x_in);
  TORCH_CHECK(x_in.device().is_cpu(), "swiglu_backward: x must be a CPU tensor here, got ",
              x_in.device());
  const at::Tensor x = x_in.contiguous(), grad = grad_in.contiguous();
  at::Tensor dx = at::empty(x.sizes(), x.options());
  const int64_t I = x.size(-1) / 2;
  if (dx.numel() == 0) return dx;
  const int64_t rows = grad.numel() / I;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "swiglu_bwd_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* gp = grad.const_data_ptr<scalar_t>();
    scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
    for_blocks(rows, I, [&](int64_t r, int64_t c0, int64_t n) {
      float gb[kBlock], ub[kBlock], db[kBlock], dgb[kBlock], dub[kBlock];
      const scalar_t* row = xp + r * 2 * I + c0;
      scalar_t* drow = dp + r * 2 * I + c0;
      float* dg = out_buf(drow, dgb);
      float* du = out_buf(drow + I, dub);
      backward_f32(load(gp + r * I + c0, db, n), load(row, gb, n), load(row + I, ub, n), dg, du, n);
      store(drow, dg, n);
      store(drow + I, du, n);
    });
  });
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CPU, m) {
  m.impl("swiglu", &swiglu_cpu);
  m.impl("swiglu_backward", &swiglu_backward_cpu);
}

}  // namespace yl::swiglu
