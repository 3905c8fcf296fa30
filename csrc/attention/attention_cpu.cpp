// Attention on the CPU: the tiled online-softmax (flash-attention) algorithm. Work is split into
// (sequence, head, block) tasks taken dynamically by the threads; each task multiplies blocks
// with single-threaded fp32 BLAS calls (cpu::gemm_f32) and keeps the softmax state of its query
// rows, so memory is O(N) and never an N x N matrix, and a sliding-window layer only visits the
// key blocks inside the window: work O(N * W).
// Backward recomputes the probabilities from the saved log-sum-exp. With many sequences (packed
// training batches) a task owns a (sequence, kv head) and accumulates its dK, dV and dQ in one
// pass; otherwise pass 1 owns (kv head, key block) and accumulates dK, dV over all query heads
// of its group, and pass 2 owns (head, query block) and accumulates dQ. Every output row has one
// writer that sums in a fixed order: deterministic for a given thread count, no atomics.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "attention/attention.h"
#include "common/cpu_alloc.h"
#include "common/cpu_blas.h"
#include "common/cpu_convert.h"
#include "common/cpu_math.h"
#include "common/cpu_parallel.h"

namespace yl::attention {
namespace {

// Backward query blocks of 64 rows: a causal block on the diagonal computes a square of scores
// of which about half are masked, so smaller blocks waste less. Against 128 rows: fwd+bwd of a
// packed batch of 256-token sequences 6-8% faster on the 2-core Zen 5 guest, a 4096-token one
// with a 512-token window 5-10% faster, one 4096-token causal sequence 1-3% slower.
constexpr int64_t BQ = 64, BK = 256;
// Forward tasks stack the G query heads that share a kv head: a block of R query rows becomes
// one [R * G, D] product with the shared keys (row r * G + g is query row r of head g), so the
// keys are packed once per block and the GEMMs keep about kRowsM rows even when R is small.
// A sliding-window block sees at most W + R - 1 keys; when that span is at most kMaxSpan it is
// one key block (a single softmax pass, no rescaling) and R is small so that only
// (R - 1) / (W + R - 1) of the scores are masked.
constexpr int64_t kRowsM = 128, kRowsWindowM = 64, kMaxSpan = 2048;

// ds <- p * (dp - delta)
YL_CPU_CLONES void softmax_grad(const float* p, float* dp, int64_t n, float delta) {
  for (int64_t i = 0; i < n; ++i) dp[i] = p[i] * (dp[i] - delta);
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
  at::Tensor out = cpu::empty_cached({d.N, d.Hq, d.D}, q.options());
  at::Tensor lse = at::empty({d.Hq, d.N}, q.options());
  const float scale = static_cast<float>(scale_d);
  const int64_t G = d.Hq / d.Hk, D = d.D, ldk = d.Hk * D;
  const float *qp = q.const_data_ptr<float>(), *kp = k.const_data_ptr<float>(), *vp = v.const_data_ptr<float>();
  float *op = out.mutable_data_ptr<float>(), *lp = lse.mutable_data_ptr<float>();
  const bool span = window > 0 && window - 1 + std::max<int64_t>(1, kRowsWindowM / G) <= kMaxSpan;
  const int64_t R = std::max<int64_t>(1, (span ? kRowsWindowM : kRowsM) / G), M = R * G;
  const int64_t bk = span ? window + R - 1 : BK;
  const auto tasks = make_tasks(cu, d.Hk, R);
  cpu::run_dynamic(static_cast<int64_t>(tasks.size()), [&](int64_t t) {
    const Task task = tasks[t];
    const int64_t hk = task.h, i0 = task.r0, i1 = std::min(i0 + R, task.s1), rows = (i1 - i0) * G;
    float *Q = cpu::scratch<0>(M * D), *S = cpu::scratch<1>(M * bk), *O = cpu::scratch<2>(M * D);
    std::fill(O, O + rows * D, 0.f);
    std::vector<float> m(M, -INFINITY), l(M, 0.f);
    for (int64_t i = i0; i < i1; ++i)  // the G heads of one token are contiguous
      std::copy_n(qp + (i * d.Hq + hk * G) * D, G * D, Q + (i - i0) * G * D);
    for (int64_t j0 = first_key(i0, task.s0, window); j0 < i1; j0 += bk) {
      const int64_t cols = std::min(bk, i1 - j0);
      cpu::gemm_f32(false, true, rows, cols, D, scale, Q, D, kp + (j0 * d.Hk + hk) * D, ldk, 0.f, S,
                    bk);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = i0 + r / G;
        const int64_t c_lo = std::max<int64_t>(0, first_key(i, task.s0, window) - j0);
        const int64_t c_hi = std::min<int64_t>(cols, i - j0 + 1);
        float* s = S + r * bk;
        if (c_hi <= c_lo) {  // no visible key of this block for this row
          std::fill(s, s + cols, 0.f);
          continue;
        }
        const float m_new = std::max(m[r], cpu::max_f32(s + c_lo, c_hi - c_lo));
        const float alpha = m[r] == -INFINITY ? 0.f : exp_f32(m[r] - m_new);
        std::fill(s, s + c_lo, 0.f);
        const float sum = cpu::exp_sub_sum(s + c_lo, c_hi - c_lo, m_new);
        std::fill(s + c_hi, s + cols, 0.f);
        l[r] = l[r] * alpha + sum;
        m[r] = m_new;
        if (alpha != 1.f) cpu::scale_f32(O + r * D, D, alpha);
      }
      cpu::gemm_f32(false, false, rows, D, cols, 1.f, S, bk, vp + (j0 * d.Hk + hk) * D, ldk, 1.f, O,
                    D);
    }
    for (int64_t r = 0; r < rows; ++r) {  // every query sees itself: l > 0
      const int64_t i = i0 + r / G, h = hk * G + r % G;
      cpu::scaled_copy_f32(O + r * D, op + (i * d.Hq + h) * D, D, 1.f / l[r]);
      lp[h * d.N + i] = m[r] + std::log(l[r]);
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
  check_backward(dout_in, q_in, out_in, lse_in, d);
  const auto cu = host_offsets(cu_in, d.N);
  const at::Tensor q = q_in.to(at::kFloat).contiguous(), k = k_in.to(at::kFloat).contiguous(),
                   v = v_in.to(at::kFloat).contiguous(), dout = dout_in.to(at::kFloat).contiguous(),
                   lse = lse_in.contiguous();
  const at::Tensor out = out_in.to(at::kFloat).contiguous();
  at::Tensor delta = at::empty({d.Hq, d.N}, q.options());  // filled below, once the pointers are out
  // One task per (sequence, kv head) when there are enough of them to keep every thread busy and
  // none is more than a thread's share of the work (packed training batches): it owns its dQ rows
  // too, so each block's dS also gives its dQ term at once (5 block GEMMs instead of 7: no second
  // pass recomputing P and dP). Otherwise (a few long sequences, or one long one among short
  // ones) pass 1 and pass 2 below split the work finer.
  const auto seq_tasks = make_tasks(cu, d.Hk, std::max<int64_t>(d.N, 1));
  const int64_t threads = at::get_num_threads();
  double work = 0, largest = 0;  // a sequence of L tokens: ~L * min(L, window) scores per head
  for (const Task& t : seq_tasks) {
    const double L = static_cast<double>(t.s1 - t.s0), w = window > 0 ? std::min<double>(L, window) : L;
    work += L * w;
    largest = std::max(largest, L * w);
  }
  const bool fused = static_cast<int64_t>(seq_tasks.size()) >= 2 * threads && largest * threads <= work;
  at::Tensor dq = cpu::empty_cached(q.sizes(), q.options()), dk = cpu::empty_cached(k.sizes(), k.options()),
             dv = cpu::empty_cached(v.sizes(), v.options());
  const float scale = static_cast<float>(scale_d);
  const int64_t G = d.Hq / d.Hk, D = d.D, ldq = d.Hq * D, ldk = d.Hk * D, N = d.N;
  const float *qp = q.const_data_ptr<float>(), *kp = k.const_data_ptr<float>(), *vp = v.const_data_ptr<float>(),
              *dop = dout.const_data_ptr<float>(), *lp = lse.const_data_ptr<float>(),
              *dp = delta.const_data_ptr<float>();
  float *dqp = dq.mutable_data_ptr<float>(), *dkp = dk.mutable_data_ptr<float>(), *dvp = dv.mutable_data_ptr<float>();
  // delta_i = <dO_i, O_i> per (head, row), (Hq, N): the softmax-backward correction, in one pass
  // over dO and O (no [N, Hq, D] product, no transposed copy).
  {
    const float* op = out.const_data_ptr<float>();
    float* deltap = delta.mutable_data_ptr<float>();
    at::parallel_for(0, N, std::max<int64_t>(1, 16384 / std::max<int64_t>(ldq, 1)), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        for (int64_t h = 0; h < d.Hq; ++h)
          deltap[h * N + i] = cpu::dot_f32(dop + i * ldq + h * D, op + i * ldq + h * D, D);
    });
  }

  // dK, dV of the key block [j0, j0 + BK) of sequence [s0, s1) and kv head hk, over the G query
  // heads and the query rows that see it; with_dq: also add each block's dS K to dQ (its rows
  // zeroed first by the caller).
  auto key_block = [&](int64_t s0, int64_t s1, int64_t hk, int64_t j0, bool with_dq) {
    const int64_t j1 = std::min(j0 + BK, s1), cols = j1 - j0;
    const int64_t i_end = window > 0 ? std::min(s1, j1 - 1 + window) : s1;
    float *P = cpu::scratch<0>(BQ * BK), *dP = cpu::scratch<1>(BQ * BK), *dK = cpu::scratch<2>(BK * D),
          *dV = cpu::scratch<3>(BK * D);
    std::fill(dK, dK + cols * D, 0.f);
    std::fill(dV, dV + cols * D, 0.f);
    const float *K = kp + (j0 * d.Hk + hk) * D, *V = vp + (j0 * d.Hk + hk) * D;
    for (int64_t h = hk * G; h < (hk + 1) * G; ++h) {
      for (int64_t i0 = j0; i0 < i_end; i0 += BQ) {
        const int64_t rows = std::min(BQ, i_end - i0);
        // Only the key columns some row of this query block sees: up to its last row (causal:
        // the block on the diagonal sees half of them) and inside the window of its first.
        const int64_t c0 = std::max<int64_t>(0, first_key(i0, s0, window) - j0);
        const int64_t nc = std::min(cols, i0 + rows - j0) - c0;
        if (nc <= 0) continue;
        const float *Q = qp + (i0 * d.Hq + h) * D, *dO = dop + (i0 * d.Hq + h) * D;
        cpu::gemm_f32(false, true, rows, nc, D, scale, Q, ldq, K + c0 * ldk, ldk, 0.f, P, BK);
        probabilities(P, rows, nc, i0, j0 + c0, s0, window, lp + h * N + i0);
        cpu::gemm_f32(true, false, nc, D, rows, 1.f, P, BK, dO, ldq, 1.f, dV + c0 * D, D);
        cpu::gemm_f32(false, true, rows, nc, D, 1.f, dO, ldq, V + c0 * ldk, ldk, 0.f, dP, BK);
        for (int64_t r = 0; r < rows; ++r) softmax_grad(P + r * BK, dP + r * BK, nc, dp[h * N + i0 + r]);
        cpu::gemm_f32(true, false, nc, D, rows, scale, dP, BK, Q, ldq, 1.f, dK + c0 * D, D);
        // Key blocks come in order: a fixed summation order per dQ row. (Letting the first block
        // a query block sees write its rows instead of adding left the rows past a window's
        // reach, which that block's truncated query block does not cover, unwritten.)
        if (with_dq)
          cpu::gemm_f32(false, false, rows, D, nc, scale, dP, BK, K + c0 * ldk, ldk, 1.f,
                        dqp + (i0 * d.Hq + h) * D, ldq);
      }
    }
    for (int64_t c = 0; c < cols; ++c) {
      std::copy(dK + c * D, dK + (c + 1) * D, dkp + ((j0 + c) * d.Hk + hk) * D);
      std::copy(dV + c * D, dV + (c + 1) * D, dvp + ((j0 + c) * d.Hk + hk) * D);
    }
  };

  if (fused) {
    std::vector<Task> order = seq_tasks;  // longest sequences first: the schedule ends evenly
    std::stable_sort(order.begin(), order.end(),
                     [](const Task& a, const Task& b) { return a.s1 - a.s0 > b.s1 - b.s0; });
    cpu::run_dynamic(static_cast<int64_t>(order.size()), [&](int64_t t) {
      const Task task = order[t];
      for (int64_t i = task.s0; i < task.s1; ++i)  // the task's dQ rows: its kv head's G query heads
        std::fill_n(dqp + (i * d.Hq + task.h * G) * D, G * D, 0.f);
      for (int64_t j0 = task.s0; j0 < task.s1; j0 += BK) key_block(task.s0, task.s1, task.h, j0, true);
    });
  } else {
    // Pass 1: dK, dV for (kv head, key block).
    const auto ktasks = make_tasks(cu, d.Hk, BK);
    cpu::run_dynamic(static_cast<int64_t>(ktasks.size()), [&](int64_t t) {
      const Task task = ktasks[t];
      key_block(task.s0, task.s1, task.h, task.r0, false);
    });
    // Pass 2: dQ for (head, query block), over the key blocks it sees, recomputing P and dP.
    const auto qtasks = make_tasks(cu, d.Hq, BQ);
    cpu::run_dynamic(static_cast<int64_t>(qtasks.size()), [&](int64_t t) {
      const Task task = qtasks[t];
      const int64_t h = task.h, hk = h / G, i0 = task.r0, i1 = std::min(i0 + BQ, task.s1), rows = i1 - i0;
      float *P = cpu::scratch<0>(BQ * BK), *dP = cpu::scratch<1>(BQ * BK), *dQ = cpu::scratch<2>(BQ * D);
      std::fill(dQ, dQ + rows * D, 0.f);
      const float *Q = qp + (i0 * d.Hq + h) * D, *dO = dop + (i0 * d.Hq + h) * D;
      for (int64_t j0 = first_key(i0, task.s0, window); j0 < i1; j0 += BK) {
        const int64_t cols = std::min(BK, i1 - j0);
        const float *K = kp + (j0 * d.Hk + hk) * D, *V = vp + (j0 * d.Hk + hk) * D;
        cpu::gemm_f32(false, true, rows, cols, D, scale, Q, ldq, K, ldk, 0.f, P, BK);
        probabilities(P, rows, cols, i0, j0, task.s0, window, lp + h * N + i0);
        cpu::gemm_f32(false, true, rows, cols, D, 1.f, dO, ldq, V, ldk, 0.f, dP, BK);
        for (int64_t r = 0; r < rows; ++r) softmax_grad(P + r * BK, dP + r * BK, cols, dp[h * N + i0 + r]);
        cpu::gemm_f32(false, false, rows, D, cols, scale, dP, BK, K, ldk, 1.f, dQ, D);
      }
      for (int64_t r = 0; r < rows; ++r)
        std::copy(dQ + r * D, dQ + (r + 1) * D, dqp + ((i0 + r) * d.Hq + h) * D);
    });
  }
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

// cos and sin [R, D/2] of each row's angles, float(pos) * inv_freq (the product the reference
// forms), by ATen's vectorised sin/cos (glibc's scalar sincosf per angle was most of this op's
// time). A model rotates q and k of every layer, forward and backward, at the same positions:
// the calling thread keeps its last table with a copy of the positions it was made for, and
// reuses it while the positions' values (compared in full: a memcmp of R int64s), base and D
// are the same.
std::pair<at::Tensor, at::Tensor> rope_table(const at::Tensor& pos_in, int64_t D, double base) {
  struct Kept { at::Tensor pos, cos, sin; int64_t D = 0; double base = 0; };
  thread_local Kept kept;
  const at::Tensor pos = pos_in.to(at::kLong).contiguous();
  const int64_t bytes = pos.numel() * static_cast<int64_t>(sizeof(int64_t));
  if (kept.pos.defined() && kept.D == D && kept.base == base && kept.pos.numel() == pos.numel() &&
      std::memcmp(kept.pos.const_data_ptr<int64_t>(), pos.const_data_ptr<int64_t>(), bytes) == 0)
    return {kept.cos, kept.sin};
  const int64_t half = D / 2;
  std::vector<float> inv(half);
  for (int64_t i = 0; i < half; ++i) inv[i] = rope_inv_freq(i, D, static_cast<float>(base));
  const at::Tensor angles = pos.to(at::kFloat).reshape({-1, 1}) * at::from_blob(inv.data(), {1, half}, at::kFloat);
  kept = {pos.clone(), angles.cos(), angles.sin(), D, base};
  return {kept.cos, kept.sin};
}

at::Tensor rotary_cpu(const at::Tensor& x_in, const at::Tensor& pos_in, double base, bool inverse) {
  const auto [R, H, D] = check_rotary(x_in, pos_in, base);
  TORCH_CHECK(x_in.device().is_cpu(), "rotary: x must be a CPU tensor here, got ", x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = cpu::empty_cached(x.sizes(), x.options());
  if (out.numel() == 0) return out;
  const auto [cos_t, sin_t] = rope_table(pos_in, D, base);
  const int64_t half = D / 2;
  const float *cp = cos_t.const_data_ptr<float>(), *sp = sin_t.const_data_ptr<float>(), sign = inverse ? -1.f : 1.f;
  YL_DISPATCH_FLOAT(x.scalar_type(), "rotary_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, R, std::max<int64_t>(1, 4096 / (H * D)), [&](int64_t begin, int64_t end) {
      std::vector<float> row(D), o(D), s(half);
      for (int64_t r = begin; r < end; ++r) {
        const float* c = cp + r * half;  // the row's angles, shared by its H heads
        for (int64_t i = 0; i < half; ++i) s[i] = sign * sp[r * half + i];
        for (int64_t h = 0; h < H; ++h) {
          const int64_t at = (r * H + h) * D;
          const float* xr = cpu::load_f32(xp + at, row.data(), D);
          float* orow = cpu::out_f32(op + at, o.data());
          cpu::rotate_f32(xr, c, s.data(), orow, half);  // (x1 c - x2 s, x2 c + x1 s)
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
