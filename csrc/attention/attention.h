// Causal attention over packed variable-length sequences (block-causal: a token never sees
// another sequence), optional sliding window, GQA. A query at position i of a sequence that
// starts at s0 sees keys max(s0, i - W + 1) .. i (window W; W <= 0 means no window).
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/check.h"
#include "common/macros.h"

namespace yl::attention {

struct Dims {
  int64_t N, Hq, Hk, D, B;
};

// First key position visible to the query at absolute row i of a sequence starting at s0.
YL_HD int64_t first_key(int64_t i, int64_t s0, int64_t window) {
  const int64_t lo = i - window + 1;
  return window > 0 && lo > s0 ? lo : s0;
}

inline Dims check_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& cu,
                         int64_t window) {
  check_float(q, "attention: q");
  check_same_dtype_device(q, "attention: q", k, "attention: k");
  check_same_dtype_device(q, "attention: q", v, "attention: v");
  TORCH_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3, "attention: q, k, v must be [N, H, D], got ",
              q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK(k.sizes() == v.sizes(), "attention: k and v must have one shape, got ", k.sizes(), " and ", v.sizes());
  TORCH_CHECK(k.size(0) == q.size(0) && k.size(2) == q.size(2), "attention: k must be [N=", q.size(0),
              ", Hk, D=", q.size(2), "], got ", k.sizes());
  TORCH_CHECK(k.size(1) >= 1 && q.size(1) >= 1 && q.size(1) % k.size(1) == 0, "attention: the query heads (",
              q.size(1), ") must be a positive multiple of the key/value heads (", k.size(1), ")");
  TORCH_CHECK(q.size(2) >= 1, "attention: the head dim D must be >= 1, got ", q.size(2));
  TORCH_CHECK(cu.scalar_type() == at::kInt && cu.dim() == 1 && cu.numel() >= 2,
              "attention: cu_seqlens must be int32 [B + 1] with B >= 1, got ", cu.scalar_type(), " ", cu.sizes());
  TORCH_CHECK(window >= 0, "attention: window must be >= 1 (or 0 for none), got ", window);
  return {q.size(0), q.size(1), k.size(1), q.size(2), cu.numel() - 1};
}

// cu_seqlens on the host as int64, validated: starts at 0, never decreases, ends at N.
inline std::vector<int64_t> host_offsets(const at::Tensor& cu, int64_t N) {
  const at::Tensor c = cu.to(at::kCPU).to(at::kLong).contiguous();
  const int64_t* p = c.const_data_ptr<int64_t>();
  std::vector<int64_t> out(p, p + c.numel());
  TORCH_CHECK(out.front() == 0, "attention: cu_seqlens[0] must be 0, got ", out.front());
  for (size_t b = 1; b < out.size(); ++b)
    TORCH_CHECK(out[b] >= out[b - 1], "attention: cu_seqlens must not decrease, got ", out[b - 1], " then ",
                out[b], " at index ", b);
  TORCH_CHECK(out.back() == N, "attention: cu_seqlens[-1] must equal the number of tokens N=", N, ", got ",
              out.back());
  return out;
}

}  // namespace yl::attention

namespace yl::attention {

// Decode: the visible cache slots of a sequence whose cache holds `len` tokens (the new one
// included) in `slots` slots. A contiguous cache (len <= slots) shows [len - W, len) (all of
// [0, len) without a window); a ring buffer of W slots (slot = position mod W) that has wrapped
// (len > slots) shows every slot.
YL_HD void visible_slots(int64_t len, int64_t slots, int64_t window, int64_t& lo, int64_t& hi) {
  if (len > slots) {
    lo = 0;
    hi = slots;
  } else {
    hi = len;
    lo = window > 0 && len - window > 0 ? len - window : 0;
  }
}

inline void check_decode(const at::Tensor& q, const at::Tensor& kc, const at::Tensor& vc, const at::Tensor& lens,
                         int64_t window) {
  check_float(q, "decode_attention: q");
  check_same_dtype_device(q, "decode_attention: q", kc, "decode_attention: k_cache");
  check_same_dtype_device(q, "decode_attention: q", vc, "decode_attention: v_cache");
  TORCH_CHECK(q.dim() == 3, "decode_attention: q must be [B, Hq, D], got ", q.sizes());
  TORCH_CHECK(kc.dim() == 4 && kc.sizes() == vc.sizes(), "decode_attention: k_cache and v_cache must be one "
              "[B, S, Hk, D] shape, got ", kc.sizes(), " and ", vc.sizes());
  TORCH_CHECK(kc.size(0) == q.size(0) && kc.size(3) == q.size(2), "decode_attention: caches must be [B=", q.size(0),
              ", S, Hk, D=", q.size(2), "], got ", kc.sizes());
  TORCH_CHECK(kc.size(2) >= 1 && q.size(1) >= 1 && q.size(1) % kc.size(2) == 0, "decode_attention: query heads (",
              q.size(1), ") must be a positive multiple of cache heads (", kc.size(2), ")");
  TORCH_CHECK(q.size(2) >= 1, "decode_attention: the head dim D must be >= 1, got ", q.size(2));
  TORCH_CHECK(kc.size(1) >= 1, "decode_attention: the cache must have at least one slot, got ", kc.sizes());
  TORCH_CHECK((lens.scalar_type() == at::kInt || lens.scalar_type() == at::kLong) && lens.dim() == 1 &&
                  lens.size(0) == q.size(0),
              "decode_attention: cache_seqlens must be int32/int64 [B=", q.size(0), "], got ", lens.scalar_type(), " ",
              lens.sizes());
  TORCH_CHECK(window >= 0, "decode_attention: window must be >= 1 (or 0 for none), got ", window);
}

// The extra inputs of attention_backward: grad and out shaped like q, lse float32 [Hq, N], all on q's device.
inline void check_backward(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& out, const at::Tensor& lse,
                           const Dims& d) {
  TORCH_CHECK(dout.sizes() == q.sizes() && out.sizes() == q.sizes(),
              "attention_backward: grad and out must have q's shape ", q.sizes());
  TORCH_CHECK(lse.scalar_type() == at::kFloat && lse.sizes() == at::IntArrayRef({d.Hq, d.N}),
              "attention_backward: lse must be float32 [Hq, N]");
  TORCH_CHECK(dout.device() == q.device() && out.device() == q.device() && lse.device() == q.device(),
              "attention_backward: grad, out and lse must be on ", q.device());
}

struct Task {
  int64_t s0, s1, h, r0;  // sequence [s0, s1), head, first row of the block
};

// Blocks of `block` rows over every sequence, for heads [0, heads).
inline std::vector<Task> make_tasks(const std::vector<int64_t>& cu, int64_t heads, int64_t block) {
  std::vector<Task> tasks;
  for (size_t b = 0; b + 1 < cu.size(); ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t r = cu[b]; r < cu[b + 1]; r += block) tasks.push_back({cu[b], cu[b + 1], h, r});
  // Longest first (causal blocks late in long sequences) so the dynamic schedule ends evenly.
  std::stable_sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) {
    return (a.r0 - a.s0) > (b.r0 - b.s0);
  });
  return tasks;
}

// Flash-decoding merge of per-split partial results: part_o [B, Hq, splits, D] (unnormalised),
// part_m / part_l [B, Hq, splits] (running max / sum, -inf / 0 for an empty split):
// out = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s, as [B, Hq, D] fp32.
inline at::Tensor merge_splits(const at::Tensor& part_o, const at::Tensor& part_m, const at::Tensor& part_l) {
  const at::Tensor M = std::get<0>(part_m.max(-1, /*keepdim=*/true));
  const at::Tensor w = (part_m - M).exp();
  return (part_o * w.unsqueeze(-1)).sum(2) / (part_l * w).sum(-1, /*keepdim=*/true);
}

}  // namespace yl::attention

namespace yl::attention {

// Rotary embedding, rotate-half convention (Llama/Qwen/Mistral): for i < D/2 and
// theta_i = position * base^(-2i/D),
//   out[i] = x[i] cos - x[i + D/2] sin,   out[i + D/2] = x[i + D/2] cos + x[i] sin.
// `inverse` rotates by -theta: the backward. Angles in fp32, computed as the Python reference
// does (inv_freq = 1 / base^(float(2i) / D), angle = float(position) * inv_freq).
YL_HD float rope_inv_freq(int64_t i, int64_t D, float base) {
  return 1.0f / powf(base, static_cast<float>(2 * i) / static_cast<float>(D));
}

YL_HD void rope_pair(float x1, float x2, float c, float s, float& o1, float& o2) {
  o1 = x1 * c - x2 * s;
  o2 = x2 * c + x1 * s;
}

// x [..., T, H, D] with positions [..., T] (int32/int64 on x's device). Returns (rows, H, D).
inline std::tuple<int64_t, int64_t, int64_t> check_rotary(const at::Tensor& x, const at::Tensor& positions,
                                                          double base) {
  check_float(x, "rotary: x");
  TORCH_CHECK(x.dim() >= 2 && x.size(-1) % 2 == 0, "rotary: x must be [..., H, D] with D even, got ", x.sizes());
  TORCH_CHECK(positions.scalar_type() == at::kLong || positions.scalar_type() == at::kInt,
              "rotary: positions must be int32 or int64, got ", positions.scalar_type());
  TORCH_CHECK(positions.sizes() == x.sizes().slice(0, x.dim() - 2), "rotary: positions must have shape ",
              x.sizes().slice(0, x.dim() - 2), " (x without its last two dims), got ", positions.sizes());
  TORCH_CHECK(positions.device() == x.device(), "rotary: positions must be on ", x.device(), ", got ",
              positions.device());
  TORCH_CHECK(base > 1.0, "rotary: base must be > 1, got ", base);
  return {positions.numel(), x.size(-2), x.size(-1)};
}

}  // namespace yl::attention
