// Linear on the CPU: up to cpu::kSkinnyRows rows of fp32 or bf16 run the skinny kernels, split
// over the output columns; everything else is the BLAS (it packs B and wins there), into an
// output advised to use huge pages when it is large (an LM head over a prefill: cpu_alloc.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/cpu_alloc.h"
#include "common/cpu_skinny.h"
#include "linear/linear.h"

namespace yl::linear {
namespace {

// Output columns per parallel task: at least ~32K multiply-adds, a multiple of 16 (a tile).
int64_t column_grain(int64_t rows, int64_t k) {
  const int64_t cols = (int64_t{1} << 15) / std::max<int64_t>(rows * k, 1);
  return std::max<int64_t>(16, (cols + 15) / 16 * 16);
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
  at::Tensor y = cpu::empty_huge(shape, x.options());  // huge pages from 32 MiB up
  if (!skinny) {
    const at::AutoDispatchBelowADInplaceOrView no_autograd;
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
