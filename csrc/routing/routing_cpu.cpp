// Routing on the CPU: one token per iteration, parallel over tokens; fp32 throughout.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/cpu_convert.h"
#include "common/cpu_math.h"
#include "routing/routing.h"

namespace yl::routing {
namespace {

// Score loops (the sigmoid one vectorised in place; see cpu_convert.h for the clones).
void softmax_row(const float* logits, float* probs, int64_t E) {
  std::copy(logits, logits + E, probs);
  const float sum = cpu::exp_sub_sum(probs, E, cpu::max_f32(logits, E));
  cpu::scale_f32(probs, E, 1.f / sum);
}

YL_CPU_CLONES void sigmoid_row(const float* logits, float* probs, int64_t E) {
  for (int64_t e = 0; e < E; ++e) probs[e] = sigmoid_f32(logits[e]);
}

// Selection as one integer order: the key of expert e is its score's bits made monotonic (an
// int32 comparison orders them as the floats; -0 as +0, NaN below every number) in the high half
// and E - 1 - e in the low half, so the larger key is the better expert under `better`, an equal
// score going to the lower index. Keys are distinct, so k rounds of a vectorised max (8 int64
// lanes a step), each over the keys below the last winner, give the k best in order with no
// data-dependent branch and no store. A single pass keeping the k best
// in order mispredicted on most insertions: 750 ns a token at E=64, k=6 against 150 here.
// keys: scratch of E rounded up to 8.
YL_CPU_CLONES void top_k(const float* sel, int64_t E, int64_t k, int64_t* keys, int64_t* idx) {
  typedef int64_t vi8 __attribute__((vector_size(64)));
  constexpr int64_t kTaken = INT64_MIN, kLanes = 8;
  const int64_t padded = (E + kLanes - 1) / kLanes * kLanes;
  for (int64_t e = 0; e < E; ++e) {
    const float v = sel[e] + 0.f;  // -0 -> +0
    int32_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    bits = v != v ? INT32_MIN + 1 : bits < 0 ? bits ^ INT32_MAX : bits;
    keys[e] = static_cast<int64_t>(static_cast<uint64_t>(static_cast<int64_t>(bits)) << 32) | (E - 1 - e);
  }
  for (int64_t e = E; e < padded; ++e) keys[e] = kTaken;
  int64_t prev = INT64_MAX;  // keys are distinct: round j's winner is the largest key below round j-1's
  for (int64_t j = 0; j < k; ++j) {
    vi8 best0 = vi8{} + kTaken, best1 = best0;  // two chains: half the max latency on the path
    const vi8 below = vi8{} + prev;
    int64_t e = 0;
    for (; e + 2 * kLanes <= padded; e += 2 * kLanes) {
      vi8 v0, v1;
      std::memcpy(&v0, keys + e, sizeof(v0));
      std::memcpy(&v1, keys + e + kLanes, sizeof(v1));
      v0 = v0 < below ? v0 : kTaken;
      v1 = v1 < below ? v1 : kTaken;
      best0 = v0 > best0 ? v0 : best0;
      best1 = v1 > best1 ? v1 : best1;
    }
    if (e < padded) {
      vi8 v;
      std::memcpy(&v, keys + e, sizeof(v));
      v = v < below ? v : kTaken;
      best0 = v > best0 ? v : best0;
    }
    vi8 best = best1 > best0 ? best1 : best0;
    for (int step = kLanes / 2; step >= 1; step /= 2) {  // lanes i and i + step, then i + step / 2
      vi8 other = step == 4 ? __builtin_shufflevector(best, best, 4, 5, 6, 7, 0, 1, 2, 3)
                  : step == 2 ? __builtin_shufflevector(best, best, 2, 3, 0, 1, 6, 7, 4, 5)
                              : __builtin_shufflevector(best, best, 1, 0, 3, 2, 5, 4, 7, 6);
      best = other > best ? other : best;
    }
    prev = best[0];
    idx[j] = E - 1 - (prev & INT64_C(0xffffffff));
  }
}

// One token: probs[E] from logits, then top-k of (probs + bias) inside the kept groups.
// sel and gsel are scratch of E and n_groups floats, keys top_k's.
void route_token(const float* logits, const float* bias, int64_t E, const Params& p, float* probs,
                 float* w, int64_t* idx, float* sel, float* gsel, int64_t* keys) {
  if (p.score == kSoftmax) softmax_row(logits, probs, E); else sigmoid_row(logits, probs, E);
  for (int64_t e = 0; e < E; ++e) sel[e] = probs[e] + (bias ? bias[e] : 0.f);
  if (p.topk_groups < p.n_groups) {
    const int64_t gs = E / p.n_groups;
    for (int64_t g = 0; g < p.n_groups; ++g) gsel[g] = group_score(sel, g * gs, gs);
    // Group scores are finite; each kept group is marked -inf, which also takes it out of the
    // next rounds. Then every group not marked is masked out.
    for (int64_t r = 0; r < p.topk_groups; ++r) {
      int64_t best = 0;
      for (int64_t g = 1; g < p.n_groups; ++g)
        if (better(gsel[g], g, gsel[best], best)) best = g;
      gsel[best] = -INFINITY;
    }
    for (int64_t g = 0; g < p.n_groups; ++g)
      if (gsel[g] != -INFINITY)
        for (int64_t e = g * gs; e < (g + 1) * gs; ++e) sel[e] = -INFINITY;
  }
  const int64_t k = p.top_k;
  top_k(sel, E, k, keys, idx);
  for (int64_t j = 0; j < k; ++j) w[j] = probs[idx[j]];
  float sum = 0.f;
  for (int64_t j = 0; j < p.top_k; ++j) sum += w[j];
  const float f = weight_factor(sum, p.normalize, static_cast<float>(p.scale));
  for (int64_t j = 0; j < p.top_k; ++j) w[j] *= f;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> route_cpu(const at::Tensor& logits_in, int64_t top_k,
                                                         int64_t score, const c10::optional<at::Tensor>& bias_in,
                                                         int64_t n_groups, int64_t topk_groups,
                                                         bool normalize, double scale) {
  const Params p{top_k, n_groups, topk_groups, static_cast<Score>(score), normalize, scale};
  check_inputs(logits_in, bias_in, p);
  TORCH_CHECK(logits_in.device().is_cpu(), "route: logits must be a CPU tensor here, got ", logits_in.device());
  const at::Tensor logits = logits_in.contiguous();
  const int64_t T = logits.size(0), E = logits.size(1);
  auto [weights, indices, probs] = empty_outputs(logits, top_k);
  const at::Tensor bias = bias_in.has_value() ? bias_in->contiguous() : at::Tensor();
  const float* bp = bias.defined() ? bias.const_data_ptr<float>() : nullptr;
  YL_DISPATCH_FLOAT(logits.scalar_type(), "route_cpu", [&] {
    const scalar_t* lp = logits.const_data_ptr<scalar_t>();
    at::parallel_for(0, T, 64, [&](int64_t begin, int64_t end) {
      std::vector<float> buf(2 * E + n_groups);
      std::vector<int64_t> keys((E + 7) / 8 * 8);
      for (int64_t t = begin; t < end; ++t) {
        const float* row = cpu::load_f32(lp + t * E, buf.data() + E, E);
        route_token(row, bp, E, p, probs.mutable_data_ptr<float>() + t * E,
                    weights.mutable_data_ptr<float>() + t * top_k,
                    indices.mutable_data_ptr<int64_t>() + t * top_k, buf.data(), buf.data() + 2 * E,
                    keys.data());
      }
    });
  });
  return {weights, indices, probs};
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CPU, m) { m.impl("route", &route_cpu); }

}  // namespace yl::routing
