// Top-k routing: scores (softmax or sigmoid of the router logits), optional expert bias that
// only steers selection (DeepSeek-V3), optional group-limited selection, weight normalisation.
// The ordering rule and the small per-token formulas live here, shared by CPU and CUDA.
#pragma once
#include <ATen/ATen.h>

#include <cmath>

#include "common/check.h"
#include "common/macros.h"

namespace yl::routing {

enum Score : int64_t { kSoftmax = 0, kSigmoid = 1 };

// Selection order: higher score first; on a tie the lower expert (or group) index wins.
YL_HD bool better(float va, int64_t ia, float vb, int64_t ib) {
  return va > vb || (va == vb && ia < ib);
}

// A group's score: the sum of its two best selection scores (one for single-expert groups),
// as in DeepSeek-V3's group-limited routing.
YL_HD float group_score(const float* sel, int64_t begin, int64_t size) {
  float a = -INFINITY, b = -INFINITY;
  for (int64_t e = begin; e < begin + size; ++e) {
    const float v = sel[e];
    if (v > a) { b = a; a = v; } else if (v > b) { b = v; }
  }
  return size > 1 ? a + b : a;
}

// The chosen experts' weights are their probabilities times this factor: 1/sum (so that they
// sum to 1) when normalising, then the scale.
YL_HD float weight_factor(float sum_of_chosen, bool normalize, float scale) {
  return normalize ? scale / (sum_of_chosen + 1e-20f) : scale;
}

struct Params {
  int64_t top_k, n_groups, topk_groups;
  Score score;
  bool normalize;
  double scale;
};

inline void check_inputs(const at::Tensor& logits, const c10::optional<at::Tensor>& bias,
                         const Params& p) {
  check_float(logits, "route: logits");
  TORCH_CHECK(logits.dim() == 2, "route: logits must be [T, E], got shape ", logits.sizes());
  const int64_t E = logits.size(1);
  TORCH_CHECK(E >= 1, "route: logits needs at least one expert column, got E = 0");
  TORCH_CHECK(p.top_k >= 1 && p.top_k <= E, "route: top_k must be in [1, E=", E, "], got ", p.top_k);
  TORCH_CHECK(p.score == kSoftmax || p.score == kSigmoid, "route: unknown score id ", int64_t(p.score));
  TORCH_CHECK(p.n_groups >= 1 && E % p.n_groups == 0, "route: n_groups must divide E=", E, ", got ",
              p.n_groups);
  TORCH_CHECK(p.topk_groups >= 1 && p.topk_groups <= p.n_groups, "route: topk_groups must be in [1, n_groups=",
              p.n_groups, "], got ", p.topk_groups);
  TORCH_CHECK(p.topk_groups * (E / p.n_groups) >= p.top_k, "route: the ", p.topk_groups,
              " kept groups hold ", p.topk_groups * (E / p.n_groups), " experts, fewer than top_k=", p.top_k);
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == at::kFloat, "route: expert_bias must be float32, got ",
                bias->scalar_type());
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == E, "route: expert_bias must be [E=", E, "], got ",
                bias->sizes());
    TORCH_CHECK(bias->device() == logits.device(), "route: expert_bias must be on ", logits.device(),
                ", got ", bias->device());
  }
}

// (weights [T,k] fp32, indices [T,k] int64, probs [T,E] fp32), uninitialised, on logits' device.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> empty_outputs(const at::Tensor& logits,
                                                                    int64_t top_k) {
  const int64_t T = logits.size(0), E = logits.size(1);
  const auto f32 = logits.options().dtype(at::kFloat);
  return {at::empty({T, top_k}, f32), at::empty({T, top_k}, logits.options().dtype(at::kLong)),
          at::empty({T, E}, f32)};
}

}  // namespace yl::routing
