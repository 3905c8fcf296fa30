// Token permutation on the CPU: a stable counting sort of the (token, slot) pairs by expert,
// then row copies and fp32 weighted sums in parallel over tokens. Also the fused expert path
// for inference (moe_ffn), see below.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "common/cpu_convert.h"
#include "common/cpu_blas.h"
#include "common/cpu_math.h"
#include "common/cpu_parallel.h"
#include "permute/permute.h"
#include "swiglu/swiglu.h"

namespace yl::permute {
namespace {

// The stable counting sort of the (token, slot) pairs by expert: (group_sizes [E], row_map
// [T*k]) with row_map[t*k + j] the sorted row of token t's j-th copy (tokens keep their order
// inside an expert).
std::tuple<at::Tensor, at::Tensor> sort_by_expert(const at::Tensor& indices, int64_t num_experts, const char* op) {
  const int64_t k = indices.size(1), S = indices.numel();
  const int64_t* idx = indices.const_data_ptr<int64_t>();
  at::Tensor group_sizes = at::zeros({num_experts}, indices.options());
  at::Tensor row_map = at::empty({S}, indices.options());
  int64_t* counts = group_sizes.mutable_data_ptr<int64_t>();
  for (int64_t s = 0; s < S; ++s) {
    TORCH_CHECK(idx[s] >= 0 && idx[s] < num_experts, op, ": indices must lie in [0, num_experts=", num_experts,
                "), got ", idx[s], " at token ", s / k);
    ++counts[idx[s]];
  }
  std::vector<int64_t> cursor(num_experts, 0);
  for (int64_t e = 1; e < num_experts; ++e) cursor[e] = cursor[e - 1] + counts[e - 1];
  int64_t* rm = row_map.mutable_data_ptr<int64_t>();
  for (int64_t s = 0; s < S; ++s) rm[s] = cursor[idx[s]]++;
  return {group_sizes, row_map};
}

// out[t] = sum_j w[t, j] * y[row_map[t*k + j]] in fp32, summed in j order, parallel over tokens.
template <typename Y, typename O>
void combine(const Y* yp, const int64_t* rm, const float* w, O* op, int64_t T, int64_t k, int64_t H) {
  at::parallel_for(0, T, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> accbuf(H), row(H);
    for (int64_t t = begin; t < end; ++t) {
      float* acc = cpu::out_f32(op + t * H, accbuf.data());  // fp32 output: sum in place
      std::fill(acc, acc + H, 0.f);
      for (int64_t j = 0; j < k; ++j)
        cpu::axpy_f32(w[t * k + j], cpu::load_f32(yp + rm[t * k + j] * H, row.data(), H), acc, H);
      cpu::store_f32(acc, op + t * H, H);
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> permute_cpu(const at::Tensor& x_in, const at::Tensor& indices_in,
                                                           int64_t num_experts) {
  check_permute(x_in, indices_in, num_experts);
  TORCH_CHECK(x_in.device().is_cpu(), "permute: x must be a CPU tensor here, got ", x_in.device());
  const at::Tensor x = x_in.contiguous(), indices = indices_in.contiguous();
  const int64_t T = x.size(0), H = x.size(1), k = indices.size(1), S = T * k;
  const auto [group_sizes, row_map] = sort_by_expert(indices, num_experts, "permute");
  const int64_t* rm = row_map.const_data_ptr<int64_t>();
  at::Tensor x_sorted = at::empty({S, H}, x.options());
  const int64_t row_bytes = H * x.element_size();
  const auto* src = static_cast<const char*>(x.const_data_ptr());
  auto* dst = static_cast<char*>(x_sorted.mutable_data_ptr());
  at::parallel_for(0, T, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      for (int64_t j = 0; j < k; ++j) std::memcpy(dst + rm[t * k + j] * row_bytes, src + t * row_bytes, row_bytes);
  });
  return {x_sorted, group_sizes, row_map};
}

at::Tensor unpermute_cpu(const at::Tensor& y_in, const at::Tensor& row_map_in, const at::Tensor& weights_in) {
  const auto [T, k, H] = check_unpermute(y_in, row_map_in, weights_in);
  TORCH_CHECK(y_in.device().is_cpu(), "unpermute: y_sorted must be a CPU tensor here, got ", y_in.device());
  const at::Tensor y = y_in.contiguous(), row_map = row_map_in.contiguous(), weights = weights_in.contiguous();
  const int64_t* rm = row_map.const_data_ptr<int64_t>();
  for (int64_t s = 0; s < T * k; ++s)
    TORCH_CHECK(rm[s] >= 0 && rm[s] < T * k, "unpermute: row_map values must lie in [0, ", T * k, "), got ", rm[s]);
  at::Tensor out = at::empty({T, H}, y.options());
  const float* w = weights.const_data_ptr<float>();
  YL_DISPATCH_FLOAT(y.scalar_type(), "unpermute_cpu", [&] {
    combine(y.const_data_ptr<scalar_t>(), rm, w, out.mutable_data_ptr<scalar_t>(), T, k, H);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> unpermute_backward_cpu(const at::Tensor& grad_in, const at::Tensor& y_in,
                                                          const at::Tensor& row_map_in, const at::Tensor& weights_in) {
  const auto [T, k, H] = check_unpermute(y_in, row_map_in, weights_in);
  TORCH_CHECK(y_in.device().is_cpu(), "unpermute_backward: y_sorted must be a CPU tensor here, got ", y_in.device());
  TORCH_CHECK(grad_in.sizes() == at::IntArrayRef({T, H}) && grad_in.scalar_type() == y_in.scalar_type(),
              "unpermute_backward: grad must be [T, H] of y_sorted's dtype, got ", grad_in.scalar_type(), " ",
              grad_in.sizes());
  const at::Tensor y = y_in.contiguous(), grad = grad_in.contiguous(), row_map = row_map_in.contiguous(),
                   weights = weights_in.contiguous();
  const int64_t* rm = row_map.const_data_ptr<int64_t>();
  const float* w = weights.const_data_ptr<float>();
  at::Tensor dy = at::empty_like(y), dw = at::empty({T, k}, weights.options());
  float* dwp = dw.mutable_data_ptr<float>();
  YL_DISPATCH_FLOAT(y.scalar_type(), "unpermute_backward_cpu", [&] {
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    const scalar_t* gp = grad.const_data_ptr<scalar_t>();
    scalar_t* dyp = dy.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, T, 16, [&](int64_t begin, int64_t end) {
      std::vector<float> gbuf(H), ybuf(H), obuf(H);
      for (int64_t t = begin; t < end; ++t) {
        const float* g = cpu::load_f32(gp + t * H, gbuf.data(), H);
        for (int64_t j = 0; j < k; ++j) {
          const int64_t r = rm[t * k + j];
          dwp[t * k + j] = cpu::dot_f32(g, cpu::load_f32(yp + r * H, ybuf.data(), H), H);
          float* o = cpu::out_f32(dyp + r * H, obuf.data());
          cpu::scaled_copy_f32(g, o, H, w[t * k + j]);
          cpu::store_f32(o, dyp + r * H, H);
        }
      }
    });
  });
  return {dy, dw};
}


// The expert path of an MoE layer for inference in one kernel: permute -> grouped GEMM (gate_up)
// -> SwiGLU -> grouped GEMM (down) -> weighted unpermute. Composed, those ops write three fresh
// [T*k, H]-sized tensors per call (x_sorted, the activations, y_sorted), and on the CPU a fresh
// large tensor is the expensive part: glibc maps every allocation above 32 MiB anew, so each call
// page-faults and zeroes them again (measured: permute alone 14.6 ms of a 125 ms fine layer, of
// which 12.6 ms is first touch). Here each (expert, row chunk) task gathers its tokens straight
// into a per-thread fp32 tile, runs both GEMMs and the SwiGLU in per-thread scratch, and writes
// its output rows once into a workspace the calling thread keeps between calls; a last pass sums
// each token's k rows in slot order, as unpermute does (deterministic).
constexpr int64_t kChunk = 256;                                   // rows per task at most
constexpr int64_t kKeptWorkspaceBytes = int64_t(512) << 20;       // larger workspaces are not kept

// n floats of the calling thread's workspace (kept between calls up to kKeptWorkspaceBytes).
at::Tensor workspace(int64_t n) {
  thread_local at::Tensor kept;
  if (n * static_cast<int64_t>(sizeof(float)) > kKeptWorkspaceBytes) return at::empty({n}, at::kFloat);
  if (!kept.defined() || kept.numel() < n) kept = at::empty({n}, at::kFloat);
  return kept;
}

std::tuple<at::Tensor, at::Tensor> moe_ffn_cpu(const at::Tensor& x_in, const at::Tensor& indices_in,
                                               const at::Tensor& weights_in, const at::Tensor& w_gate_up_in,
                                               const at::Tensor& w_down_in) {
  check_moe_ffn(x_in, indices_in, weights_in, w_gate_up_in, w_down_in);
  TORCH_CHECK(x_in.device().is_cpu(), "moe_ffn: x must be a CPU tensor here, got ", x_in.device());
  const at::AutoDispatchBelowADInplaceOrView no_autograd;  // an inference kernel: no gradient
  const at::Tensor x = x_in.contiguous(), indices = indices_in.contiguous(), weights = weights_in.contiguous(),
                   wgu = w_gate_up_in.contiguous(), wd = w_down_in.contiguous();
  const int64_t T = x.size(0), H = x.size(1), k = indices.size(1), S = T * k, E = wgu.size(0),
                I2 = wgu.size(1), I = I2 / 2;
  const auto [group_sizes, row_map] = sort_by_expert(indices, E, "moe_ffn");
  at::Tensor out = at::empty({T, H}, x.options());
  if (S == 0 || H == 0) return {out, group_sizes};
  const int64_t *rm = row_map.const_data_ptr<int64_t>(), *counts = group_sizes.const_data_ptr<int64_t>();
  std::vector<int64_t> token(S);  // token of each sorted row
  for (int64_t s = 0; s < S; ++s) token[rm[s]] = s / k;
  struct Task { int64_t e, row0, rows; };
  std::vector<Task> tasks;
  for (int64_t e = 0, row0 = 0; e < E; row0 += counts[e++]) {
    if (counts[e] == 0) continue;
    const int64_t chunks = (counts[e] + kChunk - 1) / kChunk, size = (counts[e] + chunks - 1) / chunks;
    for (int64_t r = row0; r < row0 + counts[e]; r += size) tasks.push_back({e, r, std::min(size, row0 + counts[e] - r)});
  }
  const at::Tensor ws = workspace(S * H);
  float* yp = ws.mutable_data_ptr<float>();
  YL_DISPATCH_FLOAT(x.scalar_type(), "moe_ffn_cpu", [&] {
    constexpr bool f32 = std::is_same_v<scalar_t, float>;
    const scalar_t *xp = x.const_data_ptr<scalar_t>(), *gup = wgu.const_data_ptr<scalar_t>(),
                   *dnp = wd.const_data_ptr<scalar_t>();
    cpu::run_dynamic(static_cast<int64_t>(tasks.size()), [&](int64_t i) {
      const Task t = tasks[i];
      float* A = cpu::scratch<0>(t.rows * H);
      for (int64_t r = 0; r < t.rows; ++r) cpu::copy_to_f32(xp + token[t.row0 + r] * H, A + r * H, H);
      const float* Wgu = cpu::load_f32(gup + t.e * I2 * H, f32 ? nullptr : cpu::scratch<1>(I2 * H), I2 * H);
      float* h = cpu::scratch<2>(t.rows * I2);
      cpu::gemm_f32(false, true, t.rows, I2, H, 1.f, A, H, Wgu, H, 0.f, h, I2);
      for (int64_t r = 0; r < t.rows; ++r) swiglu::forward_f32(h + r * I2, h + r * I2 + I, h + r * I2, I);
      const float* Wd = cpu::load_f32(dnp + t.e * H * I, f32 ? nullptr : cpu::scratch<3>(H * I), H * I);
      cpu::gemm_f32(false, true, t.rows, H, I, 1.f, h, I2, Wd, I, 0.f, yp + t.row0 * H, H);
    });
    combine(static_cast<const float*>(yp), rm, weights.const_data_ptr<float>(), out.mutable_data_ptr<scalar_t>(),
            T, k, H);
  });
  return {out, group_sizes};
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CPU, m) {
  m.impl("permute", &permute_cpu);
  m.impl("unpermute", &unpermute_cpu);
  m.impl("unpermute_backward", &unpermute_backward_cpu);
  m.impl("moe_ffn", &moe_ffn_cpu);
}

}  // namespace yl::permute
