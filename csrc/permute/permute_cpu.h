// CPU helpers shared by the permutation kernels and the fused expert path (moe_ffn).
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

#include "common/cpu_convert.h"
#include "common/cpu_math.h"

namespace yl::permute {

// The stable counting sort of the (token, slot) pairs by expert: (group_sizes [E], row_map
// [T*k]) with row_map[t*k + j] the sorted row of token t's j-th copy (tokens keep their order
// inside an expert).
inline std::tuple<at::Tensor, at::Tensor> sort_by_expert(const at::Tensor& indices, int64_t num_experts, const char* op) {
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
// fp32 and bf16 rows are read in place (weighted_sum_f32 widens bf16 in registers); fp16 rows
// are converted first.
template <typename Y, typename O>
void combine(const Y* yp, const int64_t* rm, const float* w, O* op, int64_t T, int64_t k, int64_t H) {
  constexpr bool in_place = std::is_same_v<Y, float> || std::is_same_v<Y, at::BFloat16>;
  using R = std::conditional_t<in_place, Y, float>;
  at::parallel_for(0, T, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> accbuf(H), rowbuf(in_place ? 0 : k * H);
    std::vector<const R*> rows(k);
    for (int64_t t = begin; t < end; ++t) {
      float* acc = cpu::out_f32(op + t * H, accbuf.data());  // fp32 output: sum in place
      for (int64_t j = 0; j < k; ++j) {
        if constexpr (in_place) rows[j] = yp + rm[t * k + j] * H;
        else rows[j] = cpu::load_f32(yp + rm[t * k + j] * H, rowbuf.data() + j * H, H);
      }
      cpu::weighted_sum_f32(rows.data(), w + t * k, k, acc, H);
      cpu::store_f32(acc, op + t * H, H);
    }
  });
}

}  // namespace yl::permute
