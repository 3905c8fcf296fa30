// Attention on the CPU: the tiled online-softmax (flash-attention) algorithm. Work is split into
// (sequence, head, block) tasks taken dynamically by the threads; each task multiplies blocks
// single-threaded (the forward with cpu::gemm_bcast_f32, which reads keys and values in place,
// the backward with fp32 BLAS calls) and keeps the softmax state of its query rows, so memory
// is O(N) and never an N x N matrix, and a sliding-window layer only visits the key blocks
// inside the window: work O(N * W).
// Backward recomputes the probabilities from the saved log-sum-exp: pass 1 owns (kv head, key
// block) and accumulates dK, dV over all query heads of its group; pass 2 owns (head, query
// block) and accumulates dQ. Every output row has one writer: deterministic, no atomics.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <utility>
#include <vector>

#include "attention/attention.h"
#include "common/cpu_blas.h"
#include "common/cpu_convert.h"
#include "common/cpu_math.h"
#include "common/cpu_parallel.h"

namespace yl::attention {
namespace {

constexpr int64_t BQ = 128, BK = 256;
// Forward tasks stack the G query heads that share a kv head: a block of R query rows becomes
// one product with the shared keys (column r * G + g of the transposed blocks is query row r
// of head g), so the keys are read once per block and the products keep about kRowsM queries
// even when R is small. Blocks are transposed, S^T = K Q^T: keys and values are read in place
// (no packing), and the softmax runs down the key rows with full-width vector operations.
// A sliding-window block sees at most W + R - 1 keys; when that span is at most kMaxSpan it is
// one key block (a single softmax pass, no rescaling) and R is small so that only
// (R - 1) / (W + R - 1) of the scores are masked.
constexpr int64_t kRowsM = 128, kRowsWindowM = 64, kMaxSpan = 2048;

// ds <- p * (dp - delta)
YL_CPU_CLONES void softmax_grad(const float* p, float* dp, int64_t n, float delta) {
  for (int64_t i = 0; i < n; ++i) dp[i] = p[i] * (dp[i] - delta);
}

// Forward blocks are transposed: row j of S^T holds key j's scores for the Mp query columns
// (column c = query row c / G of head c % G), so the softmax statistics of all queries are
// updated with full-width vector operations down the rows. Key j is visible to columns [lo, hi).
YL_CPU_CLONES void column_max(const float* s, int64_t lo, int64_t hi, float* mb) {
  for (int64_t c = lo; c < hi; ++c) mb[c] = s[c] > mb[c] ? s[c] : mb[c];
}

// m <- max(m, mb); mb <- alpha = exp(m_old - m_new), the rescaling of what the columns summed
// so far (0 while a column has seen no key); mu <- m_new, or 0 for a column without keys yet.
YL_CPU_CLONES void column_update(int64_t n, float* m, float* mb, float* mu) {
  for (int64_t c = 0; c < n; ++c) {
    const float m_new = m[c] > mb[c] ? m[c] : mb[c];
    mb[c] = m[c] == -INFINITY ? 0.f : exp_f32(m[c] - m_new);
    m[c] = m_new;
    mu[c] = m_new == -INFINITY ? 0.f : m_new;
  }
}

// s <- exp(s - mu) on [lo, hi), 0 elsewhere; ls += s.
YL_CPU_CLONES void column_exp(float* s, int64_t n, int64_t lo, int64_t hi, const float* mu, float* ls) {
  std::fill(s, s + lo, 0.f);
  for (int64_t c = lo; c < hi; ++c) {
    s[c] = exp_f32(s[c] - mu[c]);
    ls[c] += s[c];
  }
  std::fill(s + hi, s + n, 0.f);
}

// dst[e * ldd + r * step] = scale * src[r * ld + e] for r < n, e < D: rows of a block (queries,
// keys) transposed into a product operand, written row by row of the destination.
void pack_t(const float* src, int64_t ld, int64_t n, int64_t D, float scale, float* dst, int64_t ldd,
            int64_t step) {
  for (int64_t e = 0; e < D; ++e)
    for (int64_t r = 0; r < n; ++r) dst[e * ldd + r * step] = scale * src[r * ld + e];
}

// Backward's pass 2 works on transposed blocks (row c: key c, column r: query row r):
// p <- exp(s - lse) on [lo, hi), 0 elsewhere.
YL_CPU_CLONES void exp_lse_row(float* s, int64_t n, int64_t lo, int64_t hi, const float* lse) {
  std::fill(s, s + lo, 0.f);
  for (int64_t r = lo; r < hi; ++r) s[r] = exp_f32(s[r] - lse[r]);
  std::fill(s + hi, s + n, 0.f);
}

// ds <- p * (dp - delta), delta per column.
YL_CPU_CLONES void softmax_grad_row(const float* p, float* dp, int64_t n, const float* delta) {
  for (int64_t r = 0; r < n; ++r) dp[r] = p[r] * (dp[r] - delta[r]);
}

// Scores of a (query block, key block) with everything outside [first_key(i), i] zeroed after
// exp(s - lse_i): the probabilities of backward. S has leading dimension BK.
void probabilities(float* S, int64_t rows, int64_t cols, int64_t i0, int64_t j0, int64_t s0, int64_t window,
                   const float* lse_rows) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = i0 + r;
    const int64_t c_lo = std::max<int64_t>(0, first_key(i, s0, window) - j0);
    const int64_t c_hi = std::min<int64_t>(cols, i - j0 + 1);  // exclusive
    float* s = S + r * BK;
    if (c_hi <= c_lo) {
      std::fill(s, s + cols, 0.f);
      continue;
    }
    std::fill(s, s + c_lo, 0.f);
    cpu::exp_sub_sum(s + c_lo, c_hi - c_lo, lse_rows[r]);
    std::fill(s + c_hi, s + cols, 0.f);
  }
}

std::tuple<at::Tensor, at::Tensor> attention_fwd_cpu(const at::Tensor& q_in, const at::Tensor& k_in,
                                                     const at::Tensor& v_in, const at::Tensor& cu_in, int64_t window,
                                                     double scale_d) {
  const Dims d = check_inputs(q_in, k_in, v_in, cu_in, window);
  TORCH_CHECK(q_in.device().is_cpu(), "attention: q must be a CPU tensor here, got ", q_in.device());
  const auto cu = host_offsets(cu_in, d.N);
  const at::Tensor q = q_in.to(at::kFloat).contiguous(), k = k_in.to(at::kFloat).contiguous(),
                   v = v_in.to(at::kFloat).contiguous();
  at::Tensor out = at::empty({d.N, d.Hq, d.D}, q.options());
  at::Tensor lse = at::empty({d.Hq, d.N}, q.options());
  const float scale = static_cast<float>(scale_d);
  const int64_t G = d.Hq / d.Hk, D = d.D, ldk = d.Hk * D;
  const float *qp = q.const_data_ptr<float>(), *kp = k.const_data_ptr<float>(), *vp = v.const_data_ptr<float>();
  float *op = out.mutable_data_ptr<float>(), *lp = lse.mutable_data_ptr<float>();
  const bool span = window > 0 && window - 1 + std::max<int64_t>(1, kRowsWindowM / G) <= kMaxSpan;
  const int64_t R = std::max<int64_t>(1, (span ? kRowsWindowM : kRowsM) / G), M = R * G;
  const int64_t Mp = (M + 15) / 16 * 16;  // columns of the transposed blocks (padding: no query)
  const int64_t bk = span ? window + R - 1 : BK;
  const auto tasks = make_tasks(cu, d.Hk, R);
  cpu::run_dynamic(static_cast<int64_t>(tasks.size()), [&](int64_t t) {
    const Task task = tasks[t];
    const int64_t hk = task.h, i0 = task.r0, i1 = std::min(i0 + R, task.s1), rows = (i1 - i0) * G;
    float *Qt = cpu::scratch<0>(D * Mp), *St = cpu::scratch<1>(bk * Mp), *O = cpu::scratch<2>(Mp * D),
          *m = cpu::scratch<3>(5 * Mp), *l = m + Mp, *mb = l + Mp, *ls = mb + Mp, *mu = ls + Mp;
    std::fill(O, O + Mp * D, 0.f);
    std::fill(m, m + Mp, -INFINITY);
    std::fill(l, l + Mp, 0.f);
    for (int64_t g = 0; g < G; ++g)  // Q^T pre-scaled; column c = query row c / G of head c % G
      pack_t(qp + (i0 * d.Hq + hk * G + g) * D, d.Hq * D, i1 - i0, D, scale, Qt + g, Mp, G);
    for (int64_t e = 0; e < D; ++e) std::fill(Qt + e * Mp + rows, Qt + (e + 1) * Mp, 0.f);
    for (int64_t j0 = first_key(i0, task.s0, window); j0 < i1; j0 += bk) {
      const int64_t cols = std::min(bk, i1 - j0);
      const float *K = kp + (j0 * d.Hk + hk) * D, *V = vp + (j0 * d.Hk + hk) * D;
      cpu::gemm_bcast_f32(cols, Mp, D, K, ldk, 1, Qt, Mp, St, Mp, false);  // S^T [cols, Mp]
      // Key j0 + j is seen by the query rows [j0 + j - i0, j0 + j + W - i0) of the block.
      auto visible = [&](int64_t j) {
        const int64_t lo = std::max<int64_t>(0, j0 + j - i0) * G,
                      hi = (window > 0 ? std::min(i1, j0 + j + window) - i0 : i1 - i0) * G;
        return std::pair<int64_t, int64_t>(lo, std::max(lo, hi));
      };
      std::fill(mb, mb + Mp, -INFINITY);
      for (int64_t j = 0; j < cols; ++j) {
        const auto [lo, hi] = visible(j);
        column_max(St + j * Mp, lo, hi, mb);
      }
      column_update(Mp, m, mb, mu);  // mb <- alpha
      std::fill(ls, ls + Mp, 0.f);
      for (int64_t j = 0; j < cols; ++j) {
        const auto [lo, hi] = visible(j);
        column_exp(St + j * Mp, Mp, lo, hi, mu, ls);
      }
      for (int64_t c = 0; c < Mp; ++c) l[c] = l[c] * mb[c] + ls[c];
      for (int64_t c = 0; c < rows; ++c)
        if (mb[c] != 1.f) cpu::scale_f32(O + c * D, D, mb[c]);
      cpu::gemm_bcast_f32(Mp, D, cols, St, 1, Mp, V, ldk, O, D, true);
    }
    for (int64_t c = 0; c < rows; ++c) {  // every query sees itself: l > 0
      const int64_t i = i0 + c / G, h = hk * G + c % G;
      cpu::scaled_copy_f32(O + c * D, op + (i * d.Hq + h) * D, D, 1.f / l[c]);
      lp[h * d.N + i] = m[c] + std::log(l[c]);
    }
  });
  return {out.to(q_in.scalar_type()), lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_bwd_cpu(const at::Tensor& dout_in, const at::Tensor& q_in,
                                                                 const at::Tensor& k_in, const at::Tensor& v_in,
                                                                 const at::Tensor& out_in, const at::Tensor& lse_in,
                                                                 const at::Tensor& cu_in, int64_t window,
                                                                 double scale_d) {
  const Dims d = check_inputs(q_in, k_in, v_in, cu_in, window);
  TORCH_CHECK(q_in.device().is_cpu(), "attention_backward: q must be a CPU tensor here, got ", q_in.device());
  TORCH_CHECK(dout_in.sizes() == q_in.sizes() && out_in.sizes() == q_in.sizes(),
              "attention_backward: grad and out must have q's shape ", q_in.sizes());
  TORCH_CHECK(lse_in.scalar_type() == at::kFloat && lse_in.sizes() == at::IntArrayRef({d.Hq, d.N}),
              "attention_backward: lse must be float32 [Hq, N]");
  const auto cu = host_offsets(cu_in, d.N);
  const at::Tensor q = q_in.to(at::kFloat).contiguous(), k = k_in.to(at::kFloat).contiguous(),
                   v = v_in.to(at::kFloat).contiguous(), dout = dout_in.to(at::kFloat).contiguous(),
                   lse = lse_in.contiguous();
  // delta_i = <dO_i, O_i> per (head, row): the softmax-backward correction.
  const at::Tensor delta = (dout * out_in.to(at::kFloat)).sum(-1).t().contiguous();  // (Hq, N)
  at::Tensor dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v);
  const float scale = static_cast<float>(scale_d);
  const int64_t G = d.Hq / d.Hk, D = d.D, ldq = d.Hq * D, ldk = d.Hk * D, N = d.N;
  const float *qp = q.const_data_ptr<float>(), *kp = k.const_data_ptr<float>(), *vp = v.const_data_ptr<float>(),
              *dop = dout.const_data_ptr<float>(), *lp = lse.const_data_ptr<float>(),
              *dp = delta.const_data_ptr<float>();
  float *dqp = dq.mutable_data_ptr<float>(), *dkp = dk.mutable_data_ptr<float>(), *dvp = dv.mutable_data_ptr<float>();

  // Pass 1: dK, dV for (kv head, key block), over the G query heads and the query rows that see it.
  const auto ktasks = make_tasks(cu, d.Hk, BK);
  cpu::run_dynamic(static_cast<int64_t>(ktasks.size()), [&](int64_t t) {
    const Task task = ktasks[t];
    const int64_t hk = task.h, j0 = task.r0, j1 = std::min(j0 + BK, task.s1), cols = j1 - j0;
    const int64_t i_end = window > 0 ? std::min(task.s1, j1 - 1 + window) : task.s1;
    const int64_t cp = (cols + 15) / 16 * 16;  // K^T, V^T columns (zero padding)
    float *P = cpu::scratch<0>(BQ * BK), *dP = cpu::scratch<1>(BQ * BK), *dK = cpu::scratch<2>(BK * D),
          *dV = cpu::scratch<3>(BK * D), *Kt = cpu::scratch<4>(D * cp), *Vt = cpu::scratch<5>(D * cp);
    std::fill(dK, dK + cols * D, 0.f);
    std::fill(dV, dV + cols * D, 0.f);
    const float *K = kp + (j0 * d.Hk + hk) * D, *V = vp + (j0 * d.Hk + hk) * D;
    std::fill(Kt, Kt + D * cp, 0.f);
    std::fill(Vt, Vt + D * cp, 0.f);
    pack_t(K, ldk, cols, D, scale, Kt, cp, 1);  // scale K^T once: P = Q (scale K)^T
    pack_t(V, ldk, cols, D, 1.f, Vt, cp, 1);
    for (int64_t h = hk * G; h < (hk + 1) * G; ++h) {
      for (int64_t i0 = j0; i0 < i_end; i0 += BQ) {
        const int64_t rows = std::min(BQ, i_end - i0);
        const float *Q = qp + (i0 * d.Hq + h) * D, *dO = dop + (i0 * d.Hq + h) * D;
        cpu::gemm_bcast_f32(rows, cp, D, Q, ldq, 1, Kt, cp, P, BK, false);
        probabilities(P, rows, cols, i0, j0, task.s0, window, lp + h * N + i0);
        cpu::gemm_bcast_f32(cols, D, rows, P, 1, BK, dO, ldq, dV, D, true);  // dV += P^T dO
        cpu::gemm_bcast_f32(rows, cp, D, dO, ldq, 1, Vt, cp, dP, BK, false);
        for (int64_t r = 0; r < rows; ++r) softmax_grad(P + r * BK, dP + r * BK, cols, dp[h * N + i0 + r]);
        cpu::gemm_bcast_f32(cols, D, rows, dP, 1, BK, Q, ldq, dK, D, true);  // dK += dS^T Q (scaled below)
      }
    }
    for (int64_t c = 0; c < cols; ++c) {
      cpu::scaled_copy_f32(dK + c * D, dkp + ((j0 + c) * d.Hk + hk) * D, D, scale);
      std::copy(dV + c * D, dV + (c + 1) * D, dvp + ((j0 + c) * d.Hk + hk) * D);
    }
  });

  // Pass 2: dQ for (head, query block), over the key blocks it sees, on transposed blocks
  // (P^T = K Q^T, dP^T = V dO^T: keys and values read in place, Q^T and dO^T packed once).
  const auto qtasks = make_tasks(cu, d.Hq, BQ);
  cpu::run_dynamic(static_cast<int64_t>(qtasks.size()), [&](int64_t t) {
    const Task task = qtasks[t];
    const int64_t h = task.h, hk = h / G, i0 = task.r0, i1 = std::min(i0 + BQ, task.s1), rows = i1 - i0;
    const int64_t rp = (rows + 15) / 16 * 16;
    float *Pt = cpu::scratch<0>(BK * rp), *dPt = cpu::scratch<1>(BK * rp), *dQ = cpu::scratch<2>(BQ * D),
          *Qt = cpu::scratch<4>(D * rp), *dOt = cpu::scratch<5>(D * rp);
    std::fill(dQ, dQ + rows * D, 0.f);
    std::fill(Qt, Qt + D * rp, 0.f);
    std::fill(dOt, dOt + D * rp, 0.f);
    pack_t(qp + (i0 * d.Hq + h) * D, ldq, rows, D, scale, Qt, rp, 1);
    pack_t(dop + (i0 * d.Hq + h) * D, ldq, rows, D, 1.f, dOt, rp, 1);
    const float *lse_rows = lp + h * N + i0, *delta_rows = dp + h * N + i0;
    for (int64_t j0 = first_key(i0, task.s0, window); j0 < i1; j0 += BK) {
      const int64_t cols = std::min(BK, i1 - j0);
      const float *K = kp + (j0 * d.Hk + hk) * D, *V = vp + (j0 * d.Hk + hk) * D;
      cpu::gemm_bcast_f32(cols, rp, D, K, ldk, 1, Qt, rp, Pt, rp, false);
      cpu::gemm_bcast_f32(cols, rp, D, V, ldk, 1, dOt, rp, dPt, rp, false);
      for (int64_t c = 0; c < cols; ++c) {  // key j0 + c is seen by query rows [lo, hi) of the block
        const int64_t lo = std::max<int64_t>(0, j0 + c - i0),
                      hi = std::max(lo, (window > 0 ? std::min(i1, j0 + c + window) : i1) - i0);
        exp_lse_row(Pt + c * rp, rp, lo, hi, lse_rows);
        softmax_grad_row(Pt + c * rp, dPt + c * rp, rows, delta_rows);
      }
      cpu::gemm_bcast_f32(rows, D, cols, dPt, 1, rp, K, ldk, dQ, D, true);  // dQ += dS K (scaled below)
    }
    for (int64_t r = 0; r < rows; ++r) cpu::scaled_copy_f32(dQ + r * D, dqp + ((i0 + r) * d.Hq + h) * D, D, scale);
  });
  const auto dtype = q_in.scalar_type();
  return {dq.to(dtype), dk.to(dtype), dv.to(dtype)};
}

constexpr int64_t kSplit = 2048;  // keys per decode task (flash-decoding split)

// Decode: (batch, kv head, cache split) tasks; the G query heads of a kv head share its keys
// (one [G, D] x [D, n] product per split). Splits are merged with their log-sum-exp.
at::Tensor decode_cpu(const at::Tensor& q_in, const at::Tensor& kc_in, const at::Tensor& vc_in,
                      const at::Tensor& lens_in, int64_t window, double scale_d) {
  check_decode(q_in, kc_in, vc_in, lens_in, window);
  TORCH_CHECK(q_in.device().is_cpu(), "decode_attention: q must be a CPU tensor here, got ", q_in.device());
  const int64_t B = q_in.size(0), Hq = q_in.size(1), D = q_in.size(2), S = kc_in.size(1), Hk = kc_in.size(2);
  const int64_t G = Hq / Hk, nsplit = std::max<int64_t>(1, (S + kSplit - 1) / kSplit);
  const at::Tensor lens = lens_in.to(at::kLong).contiguous();
  const int64_t* lp = lens.const_data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(lp[b] >= 1, "decode_attention: cache_seqlens[", b, "] must be >= 1 (the new token is in the "
                "cache), got ", lp[b]);
    TORCH_CHECK(lp[b] <= S || (window > 0 && window == S), "decode_attention: cache_seqlens[", b, "]=", lp[b],
                " exceeds the cache's ", S, " slots (only a ring buffer of exactly `window` slots may wrap)");
  }
  const at::Tensor q = q_in.to(at::kFloat).contiguous(), kc = kc_in.to(at::kFloat).contiguous(),
                   vc = vc_in.to(at::kFloat).contiguous();
  // Per split: unnormalised output, running max, sum.
  at::Tensor part_o = at::empty({B, Hq, nsplit, D}, q.options());
  at::Tensor part_m = at::full({B, Hq, nsplit}, -INFINITY, q.options()), part_l = at::zeros({B, Hq, nsplit}, q.options());
  const float scale = static_cast<float>(scale_d);
  const float *qp = q.const_data_ptr<float>(), *kp = kc.const_data_ptr<float>(), *vp = vc.const_data_ptr<float>();
  float *pop = part_o.mutable_data_ptr<float>(), *pmp = part_m.mutable_data_ptr<float>(),
        *plp = part_l.mutable_data_ptr<float>();
  cpu::run_dynamic(B * Hk * nsplit, [&](int64_t t) {
    const int64_t b = t / (Hk * nsplit), hk = t / nsplit % Hk, sp = t % nsplit;
    int64_t lo, hi;
    visible_slots(lp[b], S, window, lo, hi);
    const int64_t j0 = std::max(lo, sp * kSplit), j1 = std::min(hi, (sp + 1) * kSplit);
    float* O = pop + ((b * Hq + hk * G) * nsplit + sp) * D;  // row stride nsplit * D across heads
    if (j1 <= j0) {
      for (int64_t g = 0; g < G; ++g) std::fill(O + g * nsplit * D, O + g * nsplit * D + D, 0.f);
      return;
    }
    const int64_t n = j1 - j0, ld = Hk * D;
    std::vector<float> P(G * n);
    const float* K = kp + ((b * S + j0) * Hk + hk) * D;
    const float* V = vp + ((b * S + j0) * Hk + hk) * D;
    cpu::gemm_f32(false, true, G, n, D, scale, qp + (b * Hq + hk * G) * D, D, K, ld, 0.f, P.data(), n);
    for (int64_t g = 0; g < G; ++g) {
      const int64_t idx = (b * Hq + hk * G + g) * nsplit + sp;
      pmp[idx] = cpu::max_f32(P.data() + g * n, n);
      plp[idx] = cpu::exp_sub_sum(P.data() + g * n, n, pmp[idx]);
    }
    cpu::gemm_f32(false, false, G, D, n, 1.f, P.data(), n, V, ld, 0.f, O, nsplit * D);
    if (nsplit == 1)  // the only split: normalise here, nothing to merge
      for (int64_t g = 0; g < G; ++g) cpu::scale_f32(O + g * D, D, 1.f / plp[b * Hq + hk * G + g]);
  });
  if (nsplit == 1) return part_o.view({B, Hq, D}).to(q_in.scalar_type());
  return merge_splits(part_o, part_m, part_l).to(q_in.scalar_type());
}

at::Tensor rotary_cpu(const at::Tensor& x_in, const at::Tensor& pos_in, double base, bool inverse) {
  const auto [R, H, D] = check_rotary(x_in, pos_in, base);
  TORCH_CHECK(x_in.device().is_cpu(), "rotary: x must be a CPU tensor here, got ", x_in.device());
  const at::Tensor x = x_in.contiguous(), pos = pos_in.to(at::kLong).contiguous();
  at::Tensor out = at::empty_like(x);
  if (out.numel() == 0) return out;
  const int64_t half = D / 2;
  std::vector<float> inv(half);
  for (int64_t i = 0; i < half; ++i) inv[i] = rope_inv_freq(i, D, static_cast<float>(base));
  const int64_t* pp = pos.const_data_ptr<int64_t>();
  YL_DISPATCH_FLOAT(x.scalar_type(), "rotary_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, R, std::max<int64_t>(1, 4096 / (H * D)), [&](int64_t begin, int64_t end) {
      std::vector<float> c(half), s(half), row(D), o(D);
      for (int64_t r = begin; r < end; ++r) {
        for (int64_t i = 0; i < half; ++i) {  // the row's angles, shared by its H heads
          ::sincosf(static_cast<float>(pp[r]) * inv[i], &s[i], &c[i]);  // glibc: one range reduction for both
          if (inverse) s[i] = -s[i];
        }
        for (int64_t h = 0; h < H; ++h) {
          const int64_t at = (r * H + h) * D;
          const float* xr = cpu::load_f32(xp + at, row.data(), D);
          float* orow = cpu::out_f32(op + at, o.data());
          for (int64_t i = 0; i < half; ++i) rope_pair(xr[i], xr[i + half], c[i], s[i], orow[i], orow[i + half]);
          cpu::store_f32(orow, op + at, D);
        }
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CPU, m) {
  m.impl("attention", &attention_fwd_cpu);
  m.impl("attention_backward", &attention_bwd_cpu);
  m.impl("decode_attention", &decode_cpu);
  m.impl("rotary", &rotary_cpu);
}

}  // namespace yl::attention
