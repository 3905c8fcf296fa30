// Linear on the CPU: up to cpu::kSkinnyRows rows of fp32 or bf16 run the skinny kernels, split
// over the output columns; more fp32 rows run our tiled GEMM (cpu_gemm.h) where it is on, split
// over the threads; everything else is the BLAS. Large outputs (an LM head over a prefill) go
// into the cache of huge-page blocks (cpu_alloc.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "common/cpu_alloc.h"
#include "common/cpu_gemm.h"
#include "common/cpu_skinny.h"
#include "common/kernel_guard.h"
#include "linear/linear.h"

namespace yl::linear {
namespace {

// Output columns per parallel task: at least ~32K multiply-adds, a multiple of 16 (a tile).
int64_t column_grain(int64_t rows, int64_t k) {
  const int64_t cols = (int64_t{1} << 15) / std::max<int64_t>(rows * k, 1);
  return std::max<int64_t>(16, (cols + 15) / 16 * 16);
}

// A 2-D fp32 operand as (pointer, transposed, leading dimension) for the GEMM: row-major or
// column-major views are read in place, anything else is copied first (into `keep`).
struct Operand {
  const float* p;
  bool trans;
  int64_t ld;
};
Operand operand(const at::Tensor& t, at::Tensor& keep) {
  const int64_t r = t.size(0), c = t.size(1);
  if (t.stride(1) == 1 && (r <= 1 || t.stride(0) >= c))
    return {t.const_data_ptr<float>(), false, std::max({t.stride(0), c, int64_t{1}})};
  if (t.stride(0) == 1 && (c <= 1 || t.stride(1) >= r))
    return {t.const_data_ptr<float>(), true, std::max({t.stride(1), r, int64_t{1}})};
  keep = t.contiguous();
  return {keep.const_data_ptr<float>(), false, std::max(c, int64_t{1})};
}

at::Tensor linear_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  check_inputs(x, weight, bias);
  TORCH_CHECK(x.device().is_cpu(), "linear: x must be a CPU tensor here, got ", x.device());
  const int64_t K = weight.size(1), N = weight.size(0);
  const int64_t rows = c10::multiply_integers(x.sizes().begin(), x.sizes().end() - 1);
  const bool skinny = rows >= 1 && K > 0 && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) &&
                      cpu::use_skinny(rows, x.scalar_type() == at::kBFloat16);
  auto shape = x.sizes().vec();
  shape.back() = N;
  at::Tensor y = cpu::empty_cached(shape, x.options());  // from the block cache from 256 KiB up
  if (!skinny && x.scalar_type() == at::kFloat && cpu::tiled_pays(N, K) && rows > 0) {
    // y = x @ weight^T: A = x [rows, K], B = weight^T [K, N] (weight^T of a transposed view is
    // row-major: backward passes weight.t() and x.t() here without copies).
    at::Tensor xk, wk;
    const Operand a = operand(x.reshape({rows, K}), xk), w = operand(weight, wk);
    float* yp = y.mutable_data_ptr<float>();
    if (bias.has_value()) {  // y = bias, then y += x @ weight^T
      const at::Tensor b = bias->contiguous();
      const float* bp = b.const_data_ptr<float>();
      at::parallel_for(0, rows, 64, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) std::copy(bp, bp + N, yp + r * N);
      });
    }
    cpu::parallel_gemm_f32(a.trans, !w.trans, rows, N, K, 1.f, a.p, a.ld, w.p, w.ld, bias.has_value() ? 1.f : 0.f,
                           yp, N);
    return y;
  }
  if (!skinny) {
    const KernelGuard kernel_guard;
    at::Tensor y2 = y.view({rows, N});
    const at::Tensor x2 = x.reshape({rows, K});
    if (bias.has_value()) at::addmm_out(y2, *bias, x2, weight.t()); else at::mm_out(y2, x2, weight.t());
    return y;
  }
  const at::Tensor a = x.reshape({rows, K}).contiguous();
  const at::Tensor w = weight.stride(1) == 1 ? weight : weight.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* ap = a.const_data_ptr<T>();
    const T* wp = w.const_data_ptr<T>();
    const T* bp = b.defined() ? b.const_data_ptr<T>() : nullptr;
    T* yp = y.mutable_data_ptr<T>();
    at::parallel_for(0, N, column_grain(rows, K), [&](int64_t n0, int64_t n1) {
      cpu::skinny_gemm_nt(rows, n1 - n0, K, ap, K, wp + n0 * w.stride(0), w.stride(0), 1.f, 0.f,
                          bp != nullptr ? bp + n0 : nullptr, yp + n0, N);
    });
  };
  if (x.scalar_type() == at::kFloat) run(float{}); else run(c10::BFloat16{});
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CPU, m) { m.impl("linear", &linear_cpu); }

}  // namespace yl::linear
