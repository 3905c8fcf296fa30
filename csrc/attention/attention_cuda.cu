// Attention on the GPU: the tiled online-softmax algorithm with fp32 accumulation on CUDA cores,
// written for correctness and clarity first (tensor-core tiles are the next step).
//   forward:  one block per (query tile, head); key tiles streamed through shared memory.
//   backward: like the CPU kernel, two deterministic passes without atomics: blocks owning a
//             (key tile, kv head) accumulate dK, dV over the group's heads; blocks owning a
//             (query tile, head) accumulate dQ.
//   decode:   one block per (sequence, head, cache split), merged by log-sum-exp.
// The tile table (sequence bounds and first row of every tile) is built on the host from
// cu_seqlens, which the kernels need there anyway to validate it.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "attention/attention.h"
#include "common/kernel_guard.h"

namespace yl::attention {
namespace {

constexpr int kThreads = 128;
constexpr int T = 16;  // rows per query tile and per key tile

// Loads rows [r0, r0 + T) of x (row stride ld, head offset applied) into smem [T][DM] as fp32,
// zero past `r_end` or past D.
template <typename S, int DM>
__device__ void load_tile(float (*dst)[DM], const S* x, int64_t r0, int64_t r_end, int64_t ld, int D) {
  for (int i = threadIdx.x; i < T * DM; i += kThreads) {
    const int r = i / DM, c = i % DM;
    dst[r][c] = (r0 + r < r_end && c < D) ? static_cast<float>(x[(r0 + r) * ld + c]) : 0.f;
  }
}

// s[r][c] = scale * <a[r], b[c]> for the T x T tile; each thread computes T*T/kThreads entries.
template <int DM>
__device__ void tile_dots(float (*s)[T + 1], const float (*a)[DM], const float (*b)[DM], float scale) {
  for (int i = threadIdx.x; i < T * T; i += kThreads) {
    const int r = i / T, c = i % T;
    float acc = 0.f;
#pragma unroll 8
    for (int d = 0; d < DM; ++d) acc += a[r][d] * b[c][d];
    s[r][c] = acc * scale;
  }
}

template <typename S, int DM>
__global__ void __launch_bounds__(kThreads)
forward_kernel(const S* __restrict__ q, const S* __restrict__ k, const S* __restrict__ v, S* __restrict__ out,
               float* __restrict__ lse, const int64_t* __restrict__ tiles, int64_t N, int Hq, int Hk, int D,
               int64_t window, float scale) {
  __shared__ float Qs[T][DM], Ks[T][DM], Vs[T][DM];
  __shared__ float P[T][T + 1], row_alpha[T], row_m[T], row_l[T];
  const int64_t s0 = tiles[3 * blockIdx.x], s1 = tiles[3 * blockIdx.x + 1], i0 = tiles[3 * blockIdx.x + 2];
  const int h = blockIdx.y, hk = h / (Hq / Hk);
  const int64_t i1 = i0 + T < s1 ? i0 + T : s1;
  load_tile<S, DM>(Qs, q + int64_t(h) * D, i0, i1, int64_t(Hq) * D, D);
  if (threadIdx.x < T) {
    row_m[threadIdx.x] = -INFINITY;
    row_l[threadIdx.x] = 0.f;
  }
  // thread -> (row r, columns c, c + 4, ...): T rows x DM columns over kThreads threads
  constexpr int kPerRow = kThreads / T, kCols = DM / kPerRow;
  const int r_own = threadIdx.x / kPerRow, c_own = threadIdx.x % kPerRow;
  float acc[kCols] = {};
  __syncthreads();
  for (int64_t j0 = first_key(i0, s0, window); j0 < i1; j0 += T) {
    load_tile<S, DM>(Ks, k + int64_t(hk) * D, j0, i1, int64_t(Hk) * D, D);
    load_tile<S, DM>(Vs, v + int64_t(hk) * D, j0, i1, int64_t(Hk) * D, D);
    __syncthreads();
    tile_dots<DM>(P, Qs, Ks, scale);
    __syncthreads();
    if (threadIdx.x < T) {  // one thread per query row: mask, online-softmax update
      const int r = threadIdx.x;
      const int64_t i = i0 + r, lo = first_key(i, s0, window);
      float m_new = row_m[r];
      for (int c = 0; c < T; ++c) {
        const int64_t j = j0 + c;
        if (i < i1 && j >= lo && j <= i) m_new = fmaxf(m_new, P[r][c]);
      }
      float sum = 0.f;
      for (int c = 0; c < T; ++c) {
        const int64_t j = j0 + c;
        const float p = (i < i1 && j >= lo && j <= i) ? exp_f32(P[r][c] - m_new) : 0.f;
        P[r][c] = p;
        sum += p;
      }
      const float alpha = row_m[r] == -INFINITY ? 0.f : exp_f32(row_m[r] - m_new);
      row_alpha[r] = m_new == -INFINITY ? 1.f : alpha;
      row_l[r] = row_l[r] * alpha + sum;
      if (m_new != -INFINITY) row_m[r] = m_new;
    }
    __syncthreads();
    const float a = row_alpha[r_own];
#pragma unroll
    for (int x = 0; x < kCols; ++x) {
      const int c = c_own + x * kPerRow;
      float o = acc[x] * a;
      for (int j = 0; j < T; ++j) o += P[r_own][j] * Vs[j][c];
      acc[x] = o;
    }
    __syncthreads();
  }
  const int64_t i = i0 + r_own;
  if (i < i1) {
    const float inv = 1.f / row_l[r_own];
    for (int x = 0; x < kCols; ++x) {
      const int c = c_own + x * kPerRow;
      if (c < D) out[(i * Hq + h) * D + c] = static_cast<S>(acc[x] * inv);
    }
    if (c_own == 0) lse[int64_t(h) * N + i] = row_m[r_own] + logf(row_l[r_own]);
  }
}

// The saved log-sum-exp and delta = <dO, O> of query rows [i0, i0 + T) of head h (0 past i_end).
__device__ void load_row_stats(float* lse_r, float* delta_r, const float* lse, const float* delta, int h, int64_t N,
                               int64_t i0, int64_t i_end) {
  if (threadIdx.x < T) {
    const int64_t i = i0 + threadIdx.x;
    lse_r[threadIdx.x] = i < i_end ? lse[int64_t(h) * N + i] : 0.f;
    delta_r[threadIdx.x] = i < i_end ? delta[int64_t(h) * N + i] : 0.f;
  }
}

// P = exp(scale q k - lse) inside the visible band, dS = P (dP - delta), for one tile pair.
__device__ void probs_and_grads(float (*P)[T + 1], float (*dS)[T + 1], const float* lse_rows,
                                const float* delta_rows, int64_t i0, int64_t i_end, int64_t j0, int64_t j_end,
                                int64_t s0, int64_t window) {
  for (int x = threadIdx.x; x < T * T; x += kThreads) {
    const int r = x / T, c = x % T;
    const int64_t i = i0 + r, j = j0 + c;
    const bool visible = i < i_end && j < j_end && j <= i && j >= first_key(i, s0, window);
    const float p = visible ? exp_f32(P[r][c] - lse_rows[r]) : 0.f;
    P[r][c] = p;
    dS[r][c] = p * (dS[r][c] - delta_rows[r]);
  }
}

// For one (query tile, key tile): P = softmax probabilities and dS = P (dO V^T - delta), both
// recomputed from the loaded tiles; ends with a barrier so every thread may read P and dS.
template <int DM>
__device__ void tile_grads(float (*P)[T + 1], float (*dS)[T + 1], const float (*Qs)[DM], const float (*Ks)[DM],
                           const float (*dOs)[DM], const float (*Vs)[DM], const float* lse_r, const float* delta_r,
                           float scale, int64_t i0, int64_t i_end, int64_t j0, int64_t j_end, int64_t s0,
                           int64_t window) {
  tile_dots<DM>(P, Qs, Ks, scale);
  tile_dots<DM>(dS, dOs, Vs, 1.f);  // dP
  __syncthreads();
  probs_and_grads(P, dS, lse_r, delta_r, i0, i_end, j0, j_end, s0, window);
  __syncthreads();
}

template <typename S, int DM>
__global__ void __launch_bounds__(kThreads)
dkdv_kernel(const S* __restrict__ q, const S* __restrict__ k, const S* __restrict__ v, const S* __restrict__ dout,
            const float* __restrict__ lse, const float* __restrict__ delta, float* __restrict__ dk,
            float* __restrict__ dv, const int64_t* __restrict__ tiles, int64_t N, int Hq, int Hk, int D,
            int64_t window, float scale) {
  __shared__ float Qs[T][DM], dOs[T][DM], Ks[T][DM], Vs[T][DM];
  __shared__ float P[T][T + 1], dS[T][T + 1], lse_r[T], delta_r[T];
  const int64_t s0 = tiles[3 * blockIdx.x], s1 = tiles[3 * blockIdx.x + 1], j0 = tiles[3 * blockIdx.x + 2];
  const int hk = blockIdx.y, G = Hq / Hk;
  const int64_t j1 = j0 + T < s1 ? j0 + T : s1;
  const int64_t i_end = window > 0 && j1 - 1 + window < s1 ? j1 - 1 + window : s1;
  load_tile<S, DM>(Ks, k + int64_t(hk) * D, j0, j1, int64_t(Hk) * D, D);
  load_tile<S, DM>(Vs, v + int64_t(hk) * D, j0, j1, int64_t(Hk) * D, D);
  constexpr int kPerRow = kThreads / T, kCols = DM / kPerRow;
  const int r_own = threadIdx.x / kPerRow, c_own = threadIdx.x % kPerRow;  // r_own: a key row here
  float acc_k[kCols] = {}, acc_v[kCols] = {};
  for (int h = hk * G; h < (hk + 1) * G; ++h) {
    for (int64_t i0 = j0; i0 < i_end; i0 += T) {
      __syncthreads();
      load_tile<S, DM>(Qs, q + int64_t(h) * D, i0, i_end, int64_t(Hq) * D, D);
      load_tile<S, DM>(dOs, dout + int64_t(h) * D, i0, i_end, int64_t(Hq) * D, D);
      load_row_stats(lse_r, delta_r, lse, delta, h, N, i0, i_end);
      __syncthreads();
      tile_grads<DM>(P, dS, Qs, Ks, dOs, Vs, lse_r, delta_r, scale, i0, i_end, j0, j1, s0, window);
#pragma unroll
      for (int x = 0; x < kCols; ++x) {
        const int c = c_own + x * kPerRow;
        float a = 0.f, b = 0.f;
        for (int r = 0; r < T; ++r) {
          a += P[r][r_own] * dOs[r][c];
          b += dS[r][r_own] * Qs[r][c];
        }
        acc_v[x] += a;
        acc_k[x] += scale * b;
      }
    }
  }
  const int64_t j = j0 + r_own;
  if (j < j1)
    for (int x = 0; x < kCols; ++x) {
      const int c = c_own + x * kPerRow;
      if (c < D) {
        dk[(j * Hk + hk) * D + c] = acc_k[x];
        dv[(j * Hk + hk) * D + c] = acc_v[x];
      }
    }
}

template <typename S, int DM>
__global__ void __launch_bounds__(kThreads)
dq_kernel(const S* __restrict__ q, const S* __restrict__ k, const S* __restrict__ v, const S* __restrict__ dout,
          const float* __restrict__ lse, const float* __restrict__ delta, float* __restrict__ dq,
          const int64_t* __restrict__ tiles, int64_t N, int Hq, int Hk, int D, int64_t window, float scale) {
  __shared__ float Qs[T][DM], dOs[T][DM], Ks[T][DM], Vs[T][DM];
  __shared__ float P[T][T + 1], dS[T][T + 1], lse_r[T], delta_r[T];
  const int64_t s0 = tiles[3 * blockIdx.x], s1 = tiles[3 * blockIdx.x + 1], i0 = tiles[3 * blockIdx.x + 2];
  const int h = blockIdx.y, hk = h / (Hq / Hk);
  const int64_t i1 = i0 + T < s1 ? i0 + T : s1;
  load_tile<S, DM>(Qs, q + int64_t(h) * D, i0, i1, int64_t(Hq) * D, D);
  load_tile<S, DM>(dOs, dout + int64_t(h) * D, i0, i1, int64_t(Hq) * D, D);
  load_row_stats(lse_r, delta_r, lse, delta, h, N, i0, i1);
  constexpr int kPerRow = kThreads / T, kCols = DM / kPerRow;
  const int r_own = threadIdx.x / kPerRow, c_own = threadIdx.x % kPerRow;
  float acc[kCols] = {};
  for (int64_t j0 = first_key(i0, s0, window); j0 < i1; j0 += T) {
    __syncthreads();
    load_tile<S, DM>(Ks, k + int64_t(hk) * D, j0, i1, int64_t(Hk) * D, D);
    load_tile<S, DM>(Vs, v + int64_t(hk) * D, j0, i1, int64_t(Hk) * D, D);
    __syncthreads();
    tile_grads<DM>(P, dS, Qs, Ks, dOs, Vs, lse_r, delta_r, scale, i0, i1, j0, i1, s0, window);
#pragma unroll
    for (int x = 0; x < kCols; ++x) {
      const int c = c_own + x * kPerRow;
      float a = 0.f;
      for (int j = 0; j < T; ++j) a += dS[r_own][j] * Ks[j][c];
      acc[x] += scale * a;
    }
  }
  const int64_t i = i0 + r_own;
  if (i < i1)
    for (int x = 0; x < kCols; ++x) {
      const int c = c_own + x * kPerRow;
      if (c < D) dq[(i * Hq + h) * D + c] = acc[x];
    }
}

// Tile table on the device: int64 [tiles, 3] = (sequence start, sequence end, first row).
at::Tensor tile_table(const std::vector<int64_t>& cu, int64_t block, const at::Device& device) {
  const auto tasks = make_tasks(cu, 1, block);
  std::vector<int64_t> flat;
  flat.reserve(tasks.size() * 3);
  for (const Task& t : tasks) flat.insert(flat.end(), {t.s0, t.s1, t.r0});
  // at::tensor makes it 1-D: shaped [tiles, 3] here, since the launches take size(0) as the tile count
  const auto n = static_cast<int64_t>(tasks.size());
  return at::tensor(flat, at::TensorOptions().dtype(at::kLong)).view({n, 3}).to(device);
}

// Calls f(std::integral_constant<int, DM>) with the smallest supported padded head dim >= D.
template <typename F>
void with_head_dim(int64_t D, const F& f) {
  TORCH_CHECK(D >= 1 && D <= 128, "attention: the CUDA kernels support head dims up to 128, got ", D);
  if (D <= 64) f(std::integral_constant<int, 64>{}); else f(std::integral_constant<int, 128>{});
}

std::tuple<at::Tensor, at::Tensor> attention_fwd_cuda(const at::Tensor& q_in, const at::Tensor& k_in,
                                                      const at::Tensor& v_in, const at::Tensor& cu_in, int64_t window,
                                                      double scale) {
  const Dims d = check_inputs(q_in, k_in, v_in, cu_in, window);
  TORCH_CHECK(q_in.is_cuda(), "attention: q must be a CUDA tensor here, got ", q_in.device());
  const c10::cuda::CUDAGuard guard(q_in.device());
  const auto cu = host_offsets(cu_in, d.N);
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  at::Tensor out = at::empty_like(q), lse = at::empty({d.Hq, d.N}, q.options().dtype(at::kFloat));
  const at::Tensor tiles = tile_table(cu, T, q.device());
  if (tiles.size(0) == 0) return {out, lse};
  TORCH_CHECK(d.Hq <= 65535, "attention: at most 65535 query heads on CUDA, got ", d.Hq);
  const dim3 grid(static_cast<unsigned>(tiles.size(0)), static_cast<unsigned>(d.Hq));
  auto stream = c10::cuda::getCurrentCUDAStream();
  YL_DISPATCH_FLOAT(q.scalar_type(), "attention_fwd_cuda", [&] {
    with_head_dim(d.D, [&](auto dm) {
      forward_kernel<scalar_t, decltype(dm)::value><<<grid, kThreads, 0, stream>>>(
          q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
          out.mutable_data_ptr<scalar_t>(), lse.mutable_data_ptr<float>(), tiles.const_data_ptr<int64_t>(), d.N,
          static_cast<int>(d.Hq), static_cast<int>(d.Hk), static_cast<int>(d.D), window, static_cast<float>(scale));
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_bwd_cuda(const at::Tensor& dout_in, const at::Tensor& q_in,
                                                                  const at::Tensor& k_in, const at::Tensor& v_in,
                                                                  const at::Tensor& out_in, const at::Tensor& lse_in,
                                                                  const at::Tensor& cu_in, int64_t window,
                                                                  double scale) {
  const Dims d = check_inputs(q_in, k_in, v_in, cu_in, window);
  TORCH_CHECK(q_in.is_cuda(), "attention_backward: q must be a CUDA tensor here, got ", q_in.device());
  check_backward(dout_in, q_in, out_in, lse_in, d);
  TORCH_CHECK(d.Hq <= 65535, "attention_backward: at most 65535 query heads on CUDA, got ", d.Hq);
  const c10::cuda::CUDAGuard guard(q_in.device());
  const KernelGuard kernel_guard;
  const auto cu = host_offsets(cu_in, d.N);
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous(),
                   dout = dout_in.contiguous(), lse = lse_in.contiguous();
  const at::Tensor delta = (dout.to(at::kFloat) * out_in.to(at::kFloat)).sum(-1).t().contiguous();  // (Hq, N)
  at::Tensor dq = at::empty(q.sizes(), q.options().dtype(at::kFloat));
  at::Tensor dk = at::empty(k.sizes(), k.options().dtype(at::kFloat)), dv = at::empty_like(dk);
  const at::Tensor tiles = tile_table(cu, T, q.device());
  const auto dtype = q_in.scalar_type();
  if (tiles.size(0) == 0) return {dq.to(dtype), dk.to(dtype), dv.to(dtype)};
  auto stream = c10::cuda::getCurrentCUDAStream();
  const auto n_tiles = static_cast<unsigned>(tiles.size(0));
  YL_DISPATCH_FLOAT(q.scalar_type(), "attention_bwd_cuda", [&] {
    with_head_dim(d.D, [&](auto dm) {
      constexpr int DM = decltype(dm)::value;
      const int Hq = static_cast<int>(d.Hq), Hk = static_cast<int>(d.Hk), D = static_cast<int>(d.D);
      dkdv_kernel<scalar_t, DM><<<dim3(n_tiles, Hk), kThreads, 0, stream>>>(
          q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
          dout.const_data_ptr<scalar_t>(), lse.const_data_ptr<float>(), delta.const_data_ptr<float>(),
          dk.mutable_data_ptr<float>(), dv.mutable_data_ptr<float>(), tiles.const_data_ptr<int64_t>(), d.N, Hq, Hk,
          D, window, static_cast<float>(scale));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      dq_kernel<scalar_t, DM><<<dim3(n_tiles, Hq), kThreads, 0, stream>>>(
          q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
          dout.const_data_ptr<scalar_t>(), lse.const_data_ptr<float>(), delta.const_data_ptr<float>(),
          dq.mutable_data_ptr<float>(), tiles.const_data_ptr<int64_t>(), d.N, Hq, Hk, D, window,
          static_cast<float>(scale));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {dq.to(dtype), dk.to(dtype), dv.to(dtype)};
}

constexpr int64_t kSplit = 1024;  // cache slots per decode block

// One block per (sequence, query head, split): scores in shared memory, block reductions in a
// fixed order, partial (o, m, l) out for the merge.
template <typename S>
__global__ void __launch_bounds__(kThreads)
decode_kernel(const S* __restrict__ q, const S* __restrict__ kc, const S* __restrict__ vc,
              const int64_t* __restrict__ lens, float* __restrict__ part_o, float* __restrict__ part_m,
              float* __restrict__ part_l, int64_t Slots, int Hq, int Hk, int D, int64_t window, float scale,
              int64_t nsplit) {
  __shared__ float scores[kSplit];
  __shared__ float red[kThreads];
  __shared__ float qv[128];
  const int64_t b = blockIdx.x, sp = blockIdx.z;
  const int h = blockIdx.y, hk = h / (Hq / Hk);
  int64_t lo, hi;
  visible_slots(lens[b] < 1 ? 1 : lens[b], Slots, window, lo, hi);
  hi = hi < Slots ? hi : Slots;  // clamp: no read past the cache even for bad lengths
  const int64_t j0 = lo > sp * kSplit ? lo : sp * kSplit, j1 = hi < (sp + 1) * kSplit ? hi : (sp + 1) * kSplit;
  const int64_t idx = (b * Hq + h) * nsplit + sp;
  float* o = part_o + idx * D;
  for (int c = threadIdx.x; c < D; c += kThreads) qv[c] = static_cast<float>(q[(b * Hq + h) * D + c]);
  __syncthreads();
  if (j1 <= j0) {
    for (int c = threadIdx.x; c < D; c += kThreads) o[c] = 0.f;
    if (threadIdx.x == 0) { part_m[idx] = -INFINITY; part_l[idx] = 0.f; }
    return;
  }
  float mx = -INFINITY;
  for (int64_t j = j0 + threadIdx.x; j < j1; j += kThreads) {
    const S* kr = kc + ((b * Slots + j) * Hk + hk) * D;
    float acc = 0.f;
    for (int c = 0; c < D; ++c) acc += qv[c] * static_cast<float>(kr[c]);
    scores[j - j0] = acc * scale;
    mx = fmaxf(mx, acc * scale);
  }
  red[threadIdx.x] = mx;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
    __syncthreads();
  }
  mx = red[0];
  __syncthreads();
  float sum = 0.f;
  for (int64_t j = j0 + threadIdx.x; j < j1; j += kThreads) sum += (scores[j - j0] = exp_f32(scores[j - j0] - mx));
  red[threadIdx.x] = sum;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  for (int c = threadIdx.x; c < D; c += kThreads) {
    float acc = 0.f;
    for (int64_t j = j0; j < j1; ++j) acc += scores[j - j0] * static_cast<float>(vc[((b * Slots + j) * Hk + hk) * D + c]);
    o[c] = acc;
  }
  if (threadIdx.x == 0) { part_m[idx] = mx; part_l[idx] = red[0]; }
}

at::Tensor decode_cuda(const at::Tensor& q_in, const at::Tensor& kc_in, const at::Tensor& vc_in,
                       const at::Tensor& lens_in, int64_t window, double scale) {
  check_decode(q_in, kc_in, vc_in, lens_in, window);
  TORCH_CHECK(q_in.is_cuda(), "decode_attention: q must be a CUDA tensor here, got ", q_in.device());
  TORCH_CHECK(q_in.size(2) <= 128, "decode_attention: the CUDA kernel supports head dims up to 128, got ",
              q_in.size(2));
  const c10::cuda::CUDAGuard guard(q_in.device());
  const KernelGuard kernel_guard;
  const int64_t B = q_in.size(0), Hq = q_in.size(1), D = q_in.size(2), Slots = kc_in.size(1), Hk = kc_in.size(2);
  const int64_t nsplit = std::max<int64_t>(1, (Slots + kSplit - 1) / kSplit);
  const at::Tensor q = q_in.contiguous(), kc = kc_in.contiguous(), vc = vc_in.contiguous();
  const at::Tensor lens = lens_in.to(q_in.device(), at::kLong).contiguous();  // host lengths are allowed
  TORCH_CHECK(Hq <= 65535 && nsplit <= 65535, "decode_attention: at most 65535 query heads and ",
              65535 * kSplit, " cache slots on CUDA");
  auto f32 = q.options().dtype(at::kFloat);
  at::Tensor part_o = at::empty({B, Hq, nsplit, D}, f32), part_m = at::empty({B, Hq, nsplit}, f32),
             part_l = at::empty({B, Hq, nsplit}, f32);
  if (B == 0) return at::empty_like(q);
  auto stream = c10::cuda::getCurrentCUDAStream();
  const dim3 grid(static_cast<unsigned>(B), static_cast<unsigned>(Hq), static_cast<unsigned>(nsplit));
  YL_DISPATCH_FLOAT(q.scalar_type(), "decode_cuda", [&] {
    decode_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        q.const_data_ptr<scalar_t>(), kc.const_data_ptr<scalar_t>(), vc.const_data_ptr<scalar_t>(),
        lens.const_data_ptr<int64_t>(), part_o.mutable_data_ptr<float>(), part_m.mutable_data_ptr<float>(),
        part_l.mutable_data_ptr<float>(), Slots, static_cast<int>(Hq), static_cast<int>(Hk), static_cast<int>(D),
        window, static_cast<float>(scale), nsplit);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return merge_splits(part_o, part_m, part_l).to(q_in.scalar_type());
}

// Rotary: one thread per (row, head, pair i < D/2).
template <typename S>
__global__ void rotary_kernel(const S* __restrict__ x, const int64_t* __restrict__ pos, S* __restrict__ out,
                              int64_t R, int64_t H, int64_t D, float base, float sign) {
  const int64_t half = D / 2, n = R * H * half;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = t % half, rh = t / half, r = rh / H;
    float s, c;
    sincosf(static_cast<float>(pos[r]) * rope_inv_freq(i, D, base), &s, &c);
    float o1, o2;
    rope_pair(static_cast<float>(x[rh * D + i]), static_cast<float>(x[rh * D + i + half]), c, sign * s, o1, o2);
    out[rh * D + i] = static_cast<S>(o1);
    out[rh * D + i + half] = static_cast<S>(o2);
  }
}

at::Tensor rotary_cuda(const at::Tensor& x_in, const at::Tensor& pos_in, double base, bool inverse) {
  const auto [R, H, D] = check_rotary(x_in, pos_in, base);
  TORCH_CHECK(x_in.is_cuda(), "rotary: x must be a CUDA tensor here, got ", x_in.device());
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), pos = pos_in.to(at::kLong).contiguous();
  at::Tensor out = at::empty_like(x);
  const int64_t n = R * H * (D / 2);
  if (n == 0) return out;
  const int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 65535));
  YL_DISPATCH_FLOAT(x.scalar_type(), "rotary_cuda", [&] {
    rotary_kernel<scalar_t><<<blocks, 256, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), pos.const_data_ptr<int64_t>(), out.mutable_data_ptr<scalar_t>(), R, H, D,
        static_cast<float>(base), inverse ? -1.f : 1.f);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CUDA, m) {
  m.impl("attention", &attention_fwd_cuda);
  m.impl("attention_backward", &attention_bwd_cuda);
  m.impl("decode_attention", &decode_cuda);
  m.impl("rotary", &rotary_cuda);
}

}  // namespace yl::attention
