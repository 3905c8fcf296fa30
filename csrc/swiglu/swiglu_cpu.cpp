// SwiGLU on the CPU: one pass over x (PyTorch eager makes a silu temporary, then multiplies),
// fp32 math in L1-sized chunks, parallel over (row, column block).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/cpu_alloc.h"
#include "common/cpu_convert.h"
#include "swiglu/swiglu.h"

// The fp32 scratch buffers are only written for 16-bit inputs; GCC cannot see that.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace yl::swiglu {

YL_CPU_CLONES void forward_f32(const float* g, const float* u, float* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = forward(g[j], u[j]);
}

YL_CPU_CLONES void backward_f32(const float* dy, const float* g, const float* u, float* dg, float* du, int64_t n) {
  for (int64_t j = 0; j < n; ++j) backward(dy[j], g[j], u[j], dg[j], du[j]);
}

namespace {

using cpu::load_f32;
using cpu::out_f32;
using cpu::store_f32;

constexpr int64_t kBlock = 1024;  // columns per task: 4 KiB fp32 per stream, fits in L1

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
  at::Tensor y = cpu::empty_cached(shape, x.options());
  const int64_t I = shape.back();
  if (y.numel() == 0) return y;
  const int64_t rows = y.numel() / I;
  YL_DISPATCH_FLOAT(x.scalar_type(), "swiglu_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    for_blocks(rows, I, [&](int64_t r, int64_t c0, int64_t n) {
      float gb[kBlock], ub[kBlock], yb[kBlock];
      const scalar_t* row = xp + r * 2 * I + c0;
      float* out = out_f32(yp + r * I + c0, yb);
      forward_f32(load_f32(row, gb, n), load_f32(row + I, ub, n), out, n);
      store_f32(out, yp + r * I + c0, n);
    });
  });
  return y;
}

at::Tensor swiglu_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in) {
  check_backward(grad_in, x_in);
  TORCH_CHECK(x_in.device().is_cpu(), "swiglu_backward: x must be a CPU tensor here, got ",
              x_in.device());
  const at::Tensor x = x_in.contiguous(), grad = grad_in.contiguous();
  at::Tensor dx = cpu::empty_cached(x.sizes(), x.options());
  const int64_t I = x.size(-1) / 2;
  if (dx.numel() == 0) return dx;
  const int64_t rows = grad.numel() / I;
  YL_DISPATCH_FLOAT(x.scalar_type(), "swiglu_bwd_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* gp = grad.const_data_ptr<scalar_t>();
    scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
    for_blocks(rows, I, [&](int64_t r, int64_t c0, int64_t n) {
      float gb[kBlock], ub[kBlock], db[kBlock], dgb[kBlock], dub[kBlock];
      const scalar_t* row = xp + r * 2 * I + c0;
      scalar_t* drow = dp + r * 2 * I + c0;
      float* dg = out_f32(drow, dgb);
      float* du = out_f32(drow + I, dub);
      backward_f32(load_f32(gp + r * I + c0, db, n), load_f32(row, gb, n), load_f32(row + I, ub, n), dg, du, n);
      store_f32(dg, drow, n);
      store_f32(du, drow + I, n);
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
