// Routing on the CPU: one token per iteration, parallel over tokens; fp32 throughout.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

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

// One token: probs[E] from logits, then top-k of (probs + bias) inside the kept groups.
// sel and gsel are scratch of E and n_groups floats.
void route_token(const float* logits, const float* bias, int64_t E, const Params& p, float* probs,
                 float* w, int64_t* idx, float* sel, float* gsel) {
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
  // One pass keeping the k best so far sorted (idx); most experts fail the first comparison.
  // Scanning in index order, an equal score never displaces a lower index.
  int64_t n = 0;
  const int64_t k = p.top_k;
  for (int64_t e = 0; e < E; ++e) {
    const float v = sel[e];
    if (n == k && !better(v, e, sel[idx[k - 1]], idx[k - 1])) continue;
    int64_t pos = n < k ? n++ : k - 1;
    for (; pos > 0 && better(v, e, sel[idx[pos - 1]], idx[pos - 1]); --pos) idx[pos] = idx[pos - 1];
    idx[pos] = e;
  }
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
      for (int64_t t = begin; t < end; ++t) {
        const float* row = cpu::load_f32(lp + t * E, buf.data() + E, E);
        route_token(row, bp, E, p, probs.mutable_data_ptr<float>() + t * E,
                    weights.mutable_data_ptr<float>() + t * top_k,
                    indices.mutable_data_ptr<int64_t>() + t * top_k, buf.data(), buf.data() + 2 * E);
      }
    });
  });
  return {weights, indices, probs};
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CPU, m) { m.impl("route", &route_cpu); }

}  // namespace yl::routing
