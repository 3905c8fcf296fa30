// The fused expert path on the CPU. Composed, permute -> grouped GEMM -> SwiGLU -> grouped GEMM
// -> unpermute write fresh [T*k, H]-sized tensors at every step (x_sorted, activations,
// y_sorted; in backward their gradients too), and on the CPU a fresh large tensor is the
// expensive part: glibc maps every allocation above 32 MiB anew, so each call page-faults and
// zeroes them again (measured: permute alone 14.6 ms of a 125 ms fine layer, 12.6 ms of it first
// touch). Here each task multiplies its tokens' rows where they are (fp32: the tiled GEMM packs
// them through the token index, cpu::Operand; bf16 rows are gathered into a per-thread tile),
// runs the GEMMs (single-threaded, tasks in parallel) and SwiGLU in per-thread scratch, and
// writes its output rows once into a workspace the calling thread keeps between calls; a last
// pass sums each token's k rows in slot order, as unpermute does (deterministic).
// Forward tasks are (expert, chunk of <= kChunk rows; up to kChunkBf16 with bf16 GEMMs);
// backward tasks are whole experts, so each expert's weight gradient has one writer
// (deterministic, no atomics).
// bf16 inputs on a CPU with bf16 units (cpu::native_bf16) multiply as bf16 (oneDNN, products
// rounded to bf16 as torch.mm in bf16 does: 3x faster on a Zen 5 core); elsewhere the tiles and
// each expert's weights are converted to fp32 first. Activations and sums stay fp32 either way.
// Where the CPU has AMX and H and I are multiples of 32, the forward's two products run on AMX
// tiles instead (cpu_amx.h: fp32 pre-activations, token rows read in place, no per-call oneDNN
// set-up): 6-17% off the fine layer's bf16 forward on a 2-core Xeon guest. For inference, moe_ffn
// also takes the experts laid out for the tiles once (pack_experts: `tiles`), and then skips
// laying them out on every call (fine bf16 forward 23.2 -> 19.9 ms there).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common/cpu_alloc.h"
#include "common/cpu_amx.h"
#include "common/cpu_blas.h"
#include "common/cpu_convert.h"
#include "common/cpu_gemm.h"
#include "common/cpu_math.h"
#include "common/cpu_parallel.h"
#include "common/cpu_skinny.h"
#include "common/kernel_guard.h"
#include "moe_ffn/moe_ffn.h"
#include "permute/permute_cpu.h"
#include "swiglu/swiglu.h"

namespace yl::moe_ffn {
namespace {

constexpr int64_t kChunk = 256;                              // rows per GEMM tile at most
// Rows per chunk with bf16 GEMMs. Backward: an expert of up to this many rows is one chunk, its
// weight gradients written by one GEMM each straight into the bf16 outputs. In chunks, each
// chunk's [I2, H] and [H, I] products go through fp32 accumulators (about 10 bytes of traffic per
// weight a chunk): with 256-row chunks that made the coarse layer's bf16 backward 13% slower than
// the composed torch._grouped_mm on a 2-core Xeon with AMX. Forward: up to this many rows while
// every thread still gets two tasks; each chunk lays its expert's weight out again (AMX) or pays
// oneDNN's set-up, so fewer chunks: coarse bf16 forward on that Xeon 47.4 -> 45.5 ms (AMX) and
// 63.2 -> 55.9 ms (oneDNN), fine 29.8 -> 28.6 ms, against 256-row chunks.
constexpr int64_t kChunkBf16 = 1024;
constexpr int64_t kKeptWorkspaceBytes = int64_t(512) << 20;  // larger workspaces are not kept

// n floats of the calling thread's workspace (kept between calls up to kKeptWorkspaceBytes).
at::Tensor workspace(int64_t n) {
  thread_local at::Tensor kept;
  if (n * static_cast<int64_t>(sizeof(float)) > kKeptWorkspaceBytes) return cpu::empty_cached({n}, at::kFloat);
  if (!kept.defined() || kept.numel() < n) kept = cpu::empty_cached({n}, at::kFloat);
  return kept;
}

// The routing of one call: sorted rows per expert and, for each sorted row, its (token, slot).
struct Routing {
  at::Tensor group_sizes, row_map;
  std::vector<int64_t> offsets;  // [E + 1] first sorted row of each expert
  std::vector<int64_t> slot;     // sorted row -> t * k + j
  std::vector<int64_t> token;    // sorted row -> t
};

Routing route_rows(const at::Tensor& indices, int64_t E, const char* op) {
  Routing r;
  std::tie(r.group_sizes, r.row_map) = permute::sort_by_expert(indices, E, op);
  const int64_t S = indices.numel(), *rm = r.row_map.const_data_ptr<int64_t>(),
                *counts = r.group_sizes.const_data_ptr<int64_t>();
  r.offsets.assign(E + 1, 0);
  for (int64_t e = 0; e < E; ++e) r.offsets[e + 1] = r.offsets[e] + counts[e];
  r.slot.resize(S);
  r.token.resize(S);
  const int64_t k = indices.size(1);
  for (int64_t s = 0; s < S; ++s) r.slot[rm[s]] = s, r.token[rm[s]] = s / k;
  return r;
}

// fp32 view of expert e's [n, m] weight: the tensor itself for fp32, else converted into scratch.
template <int slot, typename T>
const float* expert_f32(const T* w, int64_t e, int64_t n, int64_t m) {
  if constexpr (std::is_same_v<T, float>) {
    return w + e * n * m;
  } else {
    float* buf = cpu::scratch<slot>(n * m);
    cpu::to_f32(w + e * n * m, buf, n * m);
    return buf;
  }
}

// Gathers the token rows of sorted rows [row0, row0 + rows) of xp (x, or the output gradient)
// into A [rows, H]: fp32, or xp's own dtype (no conversion) for the bf16 GEMMs.
template <typename T, typename A_t>
void gather_rows(const T* xp, const Routing& r, int64_t row0, int64_t rows, int64_t H, A_t* A) {
  for (int64_t i = 0; i < rows; ++i) {
    const T* src = xp + r.token[row0 + i] * H;
    if constexpr (std::is_same_v<T, A_t>) std::copy(src, src + H, A + i * H); else cpu::copy_to_f32(src, A + i * H, H);
  }
}

// The token rows of sorted rows [row0, row0 + rows) of xp as a GEMM operand: fp32 read in place
// through the token index (no copy), other dtypes converted into a per-thread tile first.
template <int slot, typename T>
cpu::Operand token_rows(const T* xp, const Routing& r, int64_t row0, int64_t rows, int64_t H) {
  if constexpr (std::is_same_v<T, float>) {
    return {xp, H, r.token.data() + row0};
  } else {
    float* A = cpu::scratch<slot>(rows * H);
    gather_rows(xp, r, row0, rows, H, A);
    return {A, H};
  }
}

using bf16 = at::BFloat16;

// The bf16 GEMMs multiply a chunk's rows rounded up to a multiple of cpu::kBf16RowQuantum, the
// rows past the chunk's zero (outputs of those rows are dropped): an expert's row count changes
// at every training step, and each new count would be a new oneDNN kernel (cpu_blas.h).
int64_t quantized(int64_t rows) {
  return (rows + cpu::kBf16RowQuantum - 1) / cpu::kBf16RowQuantum * cpu::kBf16RowQuantum;
}

// Rows [rows, padded) of a bf16 matrix of `cols` columns set to zero.
void zero_rows(bf16* m, int64_t rows, int64_t padded, int64_t cols) {
  std::fill(m + rows * cols, m + padded * cols, bf16(0.f));
}

// ab (bf16 [rows, I]) = SwiGLU of the fp32 pre-activations h [rows, 2I], computed in fp32.
void swiglu_to_bf16(const float* h, int64_t rows, int64_t I, bf16* ab) {
  float* a = cpu::scratch<4>(rows * I);
  for (int64_t j = 0; j < rows; ++j) swiglu::forward_f32(h + j * 2 * I, h + j * 2 * I + I, a + j * I, I);
  cpu::from_f32(a, ab, rows * I);
}

// The experts' weights laid out for the AMX tiles by pack_experts (inference), both bf16.
struct Tiles {
  at::Tensor gate_up, down;
};

// One expert's weights for a forward task: plain rows, and (for inference, or null) the same
// laid out for the AMX tiles by pack_experts.
struct ExpertWeights {
  const bf16 *gate_up = nullptr, *down = nullptr, *gate_up_tiles = nullptr, *down_tiles = nullptr;
  cpu::BfWeight amx_gate_up(int64_t H) const {
    return gate_up_tiles ? cpu::BfWeight{gate_up_tiles, 0, true} : cpu::BfWeight{gate_up, H};
  }
  cpu::BfWeight amx_down(int64_t I) const {
    return down_tiles ? cpu::BfWeight{down_tiles, 0, true} : cpu::BfWeight{down, I};
  }
};

// One forward task with bf16 GEMMs (cpu::native_bf16): on AMX tiles where they fit (fp32
// products), else through oneDNN (the products rounded to bf16 as torch.mm in bf16 rounds them);
// SwiGLU runs in fp32; y (bf16 [rows, H]) receives the expert's output rows. then: the weights
// of the thread's next task (their first columns are read in early; gate_up null: none).
void forward_task_bf16(const bf16* xp, const ExpertWeights& w, const Routing& r, int64_t row0, int64_t rows,
                       int64_t H, int64_t I, float* h_keep, bf16* y, const ExpertWeights& then) {
  const int64_t I2 = 2 * I;
  float* h = h_keep ? h_keep + row0 * I2 : cpu::scratch<2>(rows * I2);  // the fp32 pre-activations
  // a decode step's few rows go to the skinny kernel, exactly (no JIT there)
  const bool skinny = cpu::use_skinny(rows, true);
  if (!skinny && cpu::amx_enabled() && cpu::amx_fits(I2, H) && cpu::amx_fits(H, I)) {
    // AMX tiles (no row rounding needed; no oneDNN set-up per call): the token rows are read
    // where they are, and the pre-activations stay fp32 (not rounded to bf16 on the way).
    cpu::amx_gemm_bf16_nt({xp, H, rows, r.token.data() + row0}, I2, H, w.amx_gate_up(H), h, I2, w.amx_down(I), H,
                          I);
    bf16* ab = cpu::scratch_bf16<2>(rows * I);
    swiglu_to_bf16(h, rows, I, ab);
    const cpu::BfWeight next = then.gate_up ? then.amx_gate_up(H) : cpu::BfWeight{};
    cpu::amx_gemm_bf16_nt({ab, I, rows}, H, I, w.amx_down(I), y, H, next, I2, H);
    return;
  }
  const bf16 *wgu = w.gate_up, *wd = w.down;
  const int64_t P = skinny ? rows : quantized(rows);
  bf16 *A = cpu::scratch_bf16<0>(P * H), *hb = cpu::scratch_bf16<1>(P * I2), *ab = cpu::scratch_bf16<2>(P * I);
  bf16* yb = P == rows ? y : cpu::scratch_bf16<3>(P * H);  // padded rows must not reach y
  gather_rows(xp, r, row0, rows, H, A);
  zero_rows(A, rows, P, H);
  cpu::gemm_bf16(false, true, P, I2, H, A, H, wgu, H, hb, I2);
  cpu::to_f32(hb, h, rows * I2);
  swiglu_to_bf16(h, rows, I, ab);
  zero_rows(ab, rows, P, I);
  cpu::gemm_bf16(false, true, P, H, I, ab, I, wd, I, yb, H);
  if (yb != y) std::copy(yb, yb + rows * H, y);
}

// Forward for both entry points; h_keep (fp32 [S, 2I], or null) receives the pre-activations.
template <typename T>
void forward(const at::Tensor& x, const Routing& r, const at::Tensor& weights, const at::Tensor& wgu,
             const at::Tensor& wd, int64_t k, float* h_keep, at::Tensor& out, const Tiles* tiles = nullptr) {
  const int64_t T_ = x.size(0), H = x.size(1), E = wgu.size(0), I2 = wgu.size(1), I = I2 / 2, S = T_ * k;
  const bool bf16_gemm = std::is_same_v<T, bf16> && cpu::native_bf16();
  const int64_t chunk =
      bf16_gemm ? std::clamp<int64_t>(S / (2 * at::get_num_threads()), kChunk, kChunkBf16) : kChunk;
  struct Task { int64_t e, row0, rows; };
  std::vector<Task> tasks;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = r.offsets[e + 1] - r.offsets[e];
    if (n == 0) continue;
    const int64_t chunks = (n + chunk - 1) / chunk, size = (n + chunks - 1) / chunks;
    for (int64_t row = r.offsets[e]; row < r.offsets[e + 1]; row += size)
      tasks.push_back({e, row, std::min(size, r.offsets[e + 1] - row)});
  }
  // output rows in sorted order: bf16 rows when the GEMMs run in bf16 (half the traffic), else fp32
  const at::Tensor ws = workspace(bf16_gemm ? (S * H + 1) / 2 : S * H);
  float* yp = ws.mutable_data_ptr<float>();
  const T *xp = x.const_data_ptr<T>(), *gup = wgu.const_data_ptr<T>(), *dnp = wd.const_data_ptr<T>();
  cpu::run_dynamic(static_cast<int64_t>(tasks.size()), [&](int64_t i) {
    const Task t = tasks[i];
    if constexpr (std::is_same_v<T, bf16>) {
      if (bf16_gemm) {
        const bf16 *gu_tiles = tiles ? tiles->gate_up.const_data_ptr<bf16>() : nullptr,
                   *dn_tiles = tiles ? tiles->down.const_data_ptr<bf16>() : nullptr;
        const auto expert = [&](int64_t e) {
          return ExpertWeights{gup + e * I2 * H, dnp + e * H * I, gu_tiles ? gu_tiles + e * I2 * H : nullptr,
                               dn_tiles ? dn_tiles + e * H * I : nullptr};
        };
        const bool then = i + 1 < static_cast<int64_t>(tasks.size()) && tasks[i + 1].e != t.e;
        forward_task_bf16(xp, expert(t.e), r, t.row0, t.rows, H, I, h_keep, reinterpret_cast<bf16*>(yp) + t.row0 * H,
                          then ? expert(tasks[i + 1].e) : ExpertWeights{});
        return;
      }
    }
    float* h = h_keep ? h_keep + t.row0 * I2 : cpu::scratch<2>(t.rows * I2);
    // Each product prefetches the weight of the one after it during its last block (the experts'
    // weights come from memory; measured 2-3% off this forward and 1.5% off backward).
    if constexpr (std::is_same_v<T, float>) cpu::prefetch_with_next_gemm(dnp + t.e * H * I, H, I, I);
    cpu::gemm_f32(false, true, t.rows, I2, H, 1.f, token_rows<0>(xp, r, t.row0, t.rows, H),
                  cpu::Operand{expert_f32<1>(gup, t.e, I2, H), H}, 0.f, h, I2);
    float* a = h_keep ? cpu::scratch<4>(t.rows * I) : h;  // in place (row stride 2I) when h is not kept
    const int64_t lda = h_keep ? I : I2;
    for (int64_t j = 0; j < t.rows; ++j) swiglu::forward_f32(h + j * I2, h + j * I2 + I, a + j * lda, I);
    if constexpr (std::is_same_v<T, float>)
      if (i + 1 < static_cast<int64_t>(tasks.size()) && tasks[i + 1].e != t.e)
        cpu::prefetch_with_next_gemm(gup + tasks[i + 1].e * I2 * H, I2, H, H);
    cpu::gemm_f32(false, true, t.rows, H, I, 1.f, a, lda, expert_f32<3>(dnp, t.e, H, I), I, 0.f, yp + t.row0 * H, H);
  });
  const int64_t* rm = r.row_map.const_data_ptr<int64_t>();
  if constexpr (std::is_same_v<T, bf16>) {
    if (bf16_gemm) {
      permute::combine(reinterpret_cast<const bf16*>(yp), rm, weights.const_data_ptr<float>(),
                       out.mutable_data_ptr<T>(), T_, k, H);
      return;
    }
  }
  permute::combine(static_cast<const float*>(yp), rm, weights.const_data_ptr<float>(), out.mutable_data_ptr<T>(),
                   T_, k, H);
}

struct Inputs {
  at::Tensor x, indices, weights, wgu, wd;
};

Inputs prepare(const at::Tensor& x, const at::Tensor& indices, const at::Tensor& weights, const at::Tensor& wgu,
               const at::Tensor& wd, const char* op) {
  check_moe_ffn(x, indices, weights, wgu, wd);
  TORCH_CHECK(x.device().is_cpu(), op, ": x must be a CPU tensor here, got ", x.device());
  return {x.contiguous(), indices.contiguous(), weights.contiguous(), wgu.contiguous(), wd.contiguous()};
}

// The tile shape pack_experts gives a [E, N, K] weight: N / 32 panels of K / 32 depth blocks of two
// 16 x 32 tiles.
std::vector<int64_t> tile_shape(int64_t E, int64_t N, int64_t K) { return {E, N / 32, K / 32, 2, 16, 32}; }

at::Tensor pack_experts_cpu(const at::Tensor& w_in) {
  TORCH_CHECK(w_in.device().is_cpu() && w_in.scalar_type() == at::kBFloat16 && w_in.dim() == 3,
              "pack_experts: w must be a bfloat16 CPU tensor [E, N, K], got ", w_in.scalar_type(), " ", w_in.sizes(),
              " on ", w_in.device());
  TORCH_CHECK(cpu::amx_enabled(), "pack_experts: the tile layout is for CPUs with AMX (Sapphire Rapids and later; ",
              "`yilightning doctor` shows cpu_amx), and this one has none or YL_CPU_AMX=0");
  const int64_t E = w_in.size(0), N = w_in.size(1), K = w_in.size(2);
  TORCH_CHECK(cpu::amx_fits(N, K), "pack_experts: N and K must be multiples of 32, got [", E, ", ", N, ", ", K, "]");
  const at::Tensor w = w_in.contiguous();
  at::Tensor out = at::empty(tile_shape(E, N, K), w.options());
  const bf16* src = w.const_data_ptr<bf16>();
  bf16* dst = out.mutable_data_ptr<bf16>();
  at::parallel_for(0, E, 1, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) cpu::amx_pack_b(src + e * N * K, K, N, K, dst + e * N * K);
  });
  return out;
}

// The laid-out weights given to moe_ffn, checked against the plain ones; null where none were
// given, or where the AMX path cannot take them (a CPU without AMX, YL_CPU_AMX=0, other dtypes):
// then the plain weights are used, as always.
std::optional<Tiles> check_tiles(const Inputs& in, const std::optional<at::Tensor>& gate_up,
                                 const std::optional<at::Tensor>& down) {
  TORCH_CHECK(gate_up.has_value() == down.has_value(),
              "moe_ffn: give both gate_up_tiles and down_tiles (from pack_experts) or neither");
  if (!gate_up.has_value()) return std::nullopt;
  const int64_t E = in.wgu.size(0), I2 = in.wgu.size(1), H = in.wgu.size(2), I = I2 / 2;
  for (const auto& [t, want, name] : {std::tuple{*gate_up, tile_shape(E, I2, H), "gate_up_tiles"},
                                      std::tuple{*down, tile_shape(E, H, I), "down_tiles"}})
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kBFloat16 && t.sizes() == at::IntArrayRef(want) &&
                    t.is_contiguous(),
                "moe_ffn: ", name, " must be pack_experts of the matching weight: a contiguous bfloat16 CPU tensor ",
                at::IntArrayRef(want), ", got ", t.scalar_type(), " ", t.sizes());
  if (in.x.scalar_type() != at::kBFloat16 || !cpu::native_bf16() || !cpu::amx_enabled()) return std::nullopt;
  return Tiles{*gate_up, *down};
}

std::tuple<at::Tensor, at::Tensor> moe_ffn_cpu(const at::Tensor& x_in, const at::Tensor& indices_in,
                                               const at::Tensor& weights_in, const at::Tensor& w_gate_up_in,
                                               const at::Tensor& w_down_in,
                                               const std::optional<at::Tensor>& gate_up_tiles,
                                               const std::optional<at::Tensor>& down_tiles) {
  const Inputs in = prepare(x_in, indices_in, weights_in, w_gate_up_in, w_down_in, "moe_ffn");
  const std::optional<Tiles> tiles = check_tiles(in, gate_up_tiles, down_tiles);
  const KernelGuard kernel_guard;
  const Routing r = route_rows(in.indices, in.wgu.size(0), "moe_ffn");
  at::Tensor out = cpu::empty_cached(in.x.sizes(), in.x.options());
  if (in.indices.numel() == 0 || in.x.size(1) == 0) return {out, r.group_sizes};
  YL_DISPATCH_FLOAT(in.x.scalar_type(), "moe_ffn_cpu", [&] {
    forward<scalar_t>(in.x, r, in.weights, in.wgu, in.wd, in.indices.size(1), nullptr, out,
                      tiles ? &*tiles : nullptr);
  });
  return {out, r.group_sizes};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> moe_ffn_train_cpu(
    const at::Tensor& x_in, const at::Tensor& indices_in, const at::Tensor& weights_in,
    const at::Tensor& w_gate_up_in, const at::Tensor& w_down_in) {
  const Inputs in = prepare(x_in, indices_in, weights_in, w_gate_up_in, w_down_in, "moe_ffn_train");
  const KernelGuard kernel_guard;  // the autograd rule is registered in Python
  const Routing r = route_rows(in.indices, in.wgu.size(0), "moe_ffn_train");
  at::Tensor out = cpu::empty_cached(in.x.sizes(), in.x.options());
  at::Tensor h = cpu::empty_cached({in.indices.numel(), in.wgu.size(1)}, in.x.options().dtype(at::kFloat));
  if (in.indices.numel() == 0 || in.x.size(1) == 0) return {out.zero_(), r.group_sizes, h};
  YL_DISPATCH_FLOAT(in.x.scalar_type(), "moe_ffn_train_cpu", [&] {
    forward<scalar_t>(in.x, r, in.weights, in.wgu, in.wd, in.indices.size(1), h.mutable_data_ptr<float>(), out);
  });
  return {out, r.group_sizes, h};
}

// acc (fp32 [n]) = src for the first chunk of a sum, else acc += src.
void accumulate_bf16(const bf16* src, float* acc, int64_t n, bool first) {
  if (first) {
    cpu::to_f32(src, acc, n);
    return;
  }
  float* buf = cpu::scratch<9>(std::min<int64_t>(n, 4096));
  for (int64_t i0 = 0; i0 < n; i0 += 4096) {
    const int64_t m = std::min<int64_t>(4096, n - i0);
    cpu::axpy_f32(1.f, cpu::load_f32(src + i0, buf, m), acc + i0, m);
  }
}

// Backward per expert e, over its rows in chunks (g = dout of the row's token, w its weight,
// a = swiglu(h)):  u = g @ W_down[e];  dweights = <u, a>;  dW_down[e] = sum (w g)^T a;
// dh = swiglu'(w u, h);  dW_gate_up[e] = sum dh^T x;  dx rows = dh @ W_gate_up[e], summed per
// token in slot order afterwards.
template <typename T>
void backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weights, const Routing& r,
              const at::Tensor& h_all, const at::Tensor& wgu, const at::Tensor& wd, at::Tensor& dx,
              at::Tensor& dweights, at::Tensor& dwgu, at::Tensor& dwd) {
  const int64_t T_ = x.size(0), H = x.size(1), E = wgu.size(0), I2 = wgu.size(1), I = I2 / 2,
                k = weights.size(1), S = T_ * k;
  const at::Tensor ws = workspace(S * H);  // dx rows, sorted order
  float* dxs = ws.mutable_data_ptr<float>();
  const T *xp = x.const_data_ptr<T>(), *gp = grad.const_data_ptr<T>(), *gup = wgu.const_data_ptr<T>(),
          *dnp = wd.const_data_ptr<T>();
  const float *wp = weights.const_data_ptr<float>(), *hp = h_all.const_data_ptr<float>();
  float* dwp = dweights.mutable_data_ptr<float>();
  T *dgup = dwgu.mutable_data_ptr<T>(), *ddnp = dwd.mutable_data_ptr<T>();
  std::vector<int64_t> order(E);  // largest experts first: the dynamic schedule ends evenly
  for (int64_t e = 0; e < E; ++e) order[e] = e;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return r.offsets[a + 1] - r.offsets[a] > r.offsets[b + 1] - r.offsets[b];
  });
  constexpr bool f32 = std::is_same_v<T, float>;
  const bool bf16_gemm = std::is_same_v<T, bf16> && cpu::native_bf16();
  const int64_t chunk = bf16_gemm ? kChunkBf16 : kChunk;
  cpu::run_dynamic(E, [&](int64_t i) {
    const int64_t e = order[i], first = r.offsets[e], n = r.offsets[e + 1] - first;
    const bool direct = bf16_gemm && n > 0 && n <= chunk;  // one chunk: dW straight into the outputs
    // fp32 weight-gradient accumulators: the outputs themselves for fp32, none when direct
    float* dWd = f32 ? reinterpret_cast<float*>(ddnp + e * H * I) : direct ? nullptr : cpu::scratch<5>(H * I);
    float* dWgu = f32 ? reinterpret_cast<float*>(dgup + e * I2 * H) : direct ? nullptr : cpu::scratch<6>(I2 * H);
    if (n == 0) {
      std::fill(dWd, dWd + H * I, 0.f);
      std::fill(dWgu, dWgu + I2 * H, 0.f);
    }
    const float* Wgu = n && !bf16_gemm ? expert_f32<1>(gup, e, I2, H) : nullptr;
    const float* Wd = n && !bf16_gemm ? expert_f32<3>(dnp, e, H, I) : nullptr;
    for (int64_t row0 = first; row0 < first + n; row0 += chunk) {
      const int64_t rows = std::min(chunk, first + n - row0), P = quantized(rows);  // P: bf16 GEMMs
      const float beta = row0 == first ? 0.f : 1.f;
      const float* h = hp + row0 * I2;
      float *u = cpu::scratch<2>(rows * I), *a = cpu::scratch<4>(rows * I), *dh = cpu::scratch<7>(rows * I2);
      // bf16 operands of this chunk's products (bf16_gemm only): G, then w G, a, dh, x rows, one
      // out; Gs holds G in fp32 for them
      float* Gs = nullptr;
      bf16 *Gb = nullptr, *ab = nullptr, *dhb = nullptr, *Ab = nullptr, *out = nullptr;
      if constexpr (std::is_same_v<T, bf16>) {
        if (bf16_gemm) {
          Gs = cpu::scratch<0>(rows * H);
          gather_rows(gp, r, row0, rows, H, Gs);
          Gb = cpu::scratch_bf16<0>(P * H), ab = cpu::scratch_bf16<1>(P * I);
          dhb = cpu::scratch_bf16<2>(P * I2), Ab = cpu::scratch_bf16<3>(P * H);
          out = cpu::scratch_bf16<4>(std::max({P * I, P * H, I2 * H, H * I}));
          cpu::from_f32(Gs, Gb, rows * H);
          zero_rows(Gb, rows, P, H);
          cpu::gemm_bf16(false, false, P, I, H, Gb, H, dnp + e * H * I, I, out, I);
          cpu::to_f32(out, u, rows * I);
        }
      }
      // the output gradients of the chunk's tokens (fp32: read in place through the token index)
      const cpu::Operand G = bf16_gemm ? cpu::Operand{nullptr, 0} : token_rows<0>(gp, r, row0, rows, H);
      if (!bf16_gemm) cpu::gemm_f32(false, false, rows, I, H, 1.f, G, cpu::Operand{Wd, I}, 0.f, u, I);
      for (int64_t j = 0; j < rows; ++j) {
        const int64_t s = r.slot[row0 + j];
        swiglu::forward_f32(h + j * I2, h + j * I2 + I, a + j * I, I);
        dwp[s] = cpu::dot_f32(u + j * I, a + j * I, I);
        // dW_down[e] = sum (w g)^T a: the bf16 GEMMs scale g (rounded as the composed ops round
        // w g), fp32 scales a (g stays where it is)
        if (Gs) cpu::scale_f32(Gs + j * H, H, wp[s]); else cpu::scale_f32(a + j * I, I, wp[s]);
        cpu::scale_f32(u + j * I, I, wp[s]);  // da = w u
        swiglu::backward_f32(u + j * I, h + j * I2, h + j * I2 + I, dh + j * I2, dh + j * I2 + I, I);
      }
      if constexpr (std::is_same_v<T, bf16>) {
        if (bf16_gemm) {
          cpu::from_f32(Gs, Gb, rows * H);  // the pad rows of every operand stay zero
          cpu::from_f32(a, ab, rows * I);
          zero_rows(ab, rows, P, I);
          cpu::from_f32(dh, dhb, rows * I2);
          zero_rows(dhb, rows, P, I2);
          gather_rows(xp, r, row0, rows, H, Ab);
          zero_rows(Ab, rows, P, H);
          if (direct) {
            cpu::gemm_bf16(true, false, H, I, P, Gb, H, ab, I, ddnp + e * H * I, I);
            cpu::gemm_bf16(true, false, I2, H, P, dhb, I2, Ab, H, dgup + e * I2 * H, H);
          } else {
            cpu::gemm_bf16(true, false, H, I, P, Gb, H, ab, I, out, I);
            accumulate_bf16(out, dWd, H * I, row0 == first);
            cpu::gemm_bf16(true, false, I2, H, P, dhb, I2, Ab, H, out, H);
            accumulate_bf16(out, dWgu, I2 * H, row0 == first);
          }
          cpu::gemm_bf16(false, false, P, H, I2, dhb, I2, gup + e * I2 * H, H, out, H);
          cpu::to_f32(out, dxs + row0 * H, rows * H);
          continue;
        }
      }
      cpu::gemm_f32(true, false, H, I, rows, 1.f, G, cpu::Operand{a, I}, beta, dWd, I);
      if (row0 == first) cpu::prefetch_with_next_gemm(Wgu, I2, H, H);  // for dx, below
      cpu::gemm_f32(true, false, I2, H, rows, 1.f, cpu::Operand{dh, I2}, token_rows<8>(xp, r, row0, rows, H), beta,
                    dWgu, H);
      if (row0 + chunk >= first + n && i + 1 < E && f32)  // the next expert's first product's weight
        cpu::prefetch_with_next_gemm(reinterpret_cast<const float*>(dnp) + order[i + 1] * H * I, H, I, I);
      cpu::gemm_f32(false, false, rows, H, I2, 1.f, dh, I2, Wgu, H, 0.f, dxs + row0 * H, H);
    }
    if (!f32 && !direct) {
      cpu::store_f32(dWd, ddnp + e * H * I, H * I);
      cpu::store_f32(dWgu, dgup + e * I2 * H, I2 * H);
    }
  });
  const std::vector<float> ones(S, 1.f);
  permute::combine(static_cast<const float*>(dxs), r.row_map.const_data_ptr<int64_t>(), ones.data(),
                   dx.mutable_data_ptr<T>(), T_, k, H);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> moe_ffn_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& indices_in, const at::Tensor& weights_in,
    const at::Tensor& h_in, const at::Tensor& w_gate_up_in, const at::Tensor& w_down_in) {
  const Inputs in = prepare(x_in, indices_in, weights_in, w_gate_up_in, w_down_in, "moe_ffn_backward");
  check_same_dtype_device(in.x, "moe_ffn_backward: x", grad_in, "moe_ffn_backward: grad");
  TORCH_CHECK(grad_in.sizes() == in.x.sizes(), "moe_ffn_backward: grad must have x's shape ", in.x.sizes(),
              ", got ", grad_in.sizes());
  const int64_t S = in.indices.numel(), I2 = in.wgu.size(1);
  TORCH_CHECK(h_in.scalar_type() == at::kFloat && h_in.sizes() == at::IntArrayRef({S, I2}),
              "moe_ffn_backward: h must be float32 [T*k=", S, ", 2I=", I2, "] as moe_ffn_train returns, got ",
              h_in.scalar_type(), " ", h_in.sizes());
  const KernelGuard kernel_guard;
  const Routing r = route_rows(in.indices, in.wgu.size(0), "moe_ffn_backward");
  at::Tensor dx = cpu::empty_cached(in.x.sizes(), in.x.options()), dweights = at::empty(in.weights.sizes(),
                                                                                       in.weights.options());
  // the weight gradients: as large as the experts (192 MiB at the report's fine shape)
  at::Tensor dwgu = cpu::empty_cached(in.wgu.sizes(), in.wgu.options()),
             dwd = cpu::empty_cached(in.wd.sizes(), in.wd.options());
  if (S == 0 || in.x.size(1) == 0) return {dx.zero_(), dweights.zero_(), dwgu.zero_(), dwd.zero_()};
  const at::Tensor grad = grad_in.contiguous(), h = h_in.contiguous();
  YL_DISPATCH_FLOAT(in.x.scalar_type(), "moe_ffn_backward_cpu", [&] {
    backward<scalar_t>(grad, in.x, in.weights, r, h, in.wgu, in.wd, dx, dweights, dwgu, dwd);
  });
  return {dx, dweights, dwgu, dwd};
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CPU, m) {
  m.impl("moe_ffn", &moe_ffn_cpu);
  m.impl("pack_experts", &pack_experts_cpu);
  m.impl("moe_ffn_train", &moe_ffn_train_cpu);
  m.impl("moe_ffn_backward", &moe_ffn_backward_cpu);
}

}  // namespace yl::moe_ffn
