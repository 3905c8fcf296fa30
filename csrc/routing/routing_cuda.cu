// Routing on the GPU: one warp per token. Lanes read the logits row coalesced, reduce the
// softmax max/sum with shuffles, keep the row's selection scores in shared memory, and pick the
// top-k with k rounds of a warp-wide arg-max that uses the shared ordering rule.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "routing/routing.h"

namespace yl::routing {
namespace {

constexpr int kWarps = 4;          // tokens per block
constexpr int64_t kMaxExperts = 1024;  // shared memory: 2 rows of E floats per warp
constexpr unsigned kFull = 0xffffffffu;

__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
// Arg-max over the warp under `better`; every lane gets the winner.
__device__ void warp_best(float& v, int64_t& i) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFull, v, o);
    const int64_t oi = __shfl_xor_sync(kFull, i, o);
    if (oi >= 0 && (i < 0 || better(ov, oi, v, i))) { v = ov; i = oi; }
  }
}
// Best (value, index) among vals[lane], vals[lane + 32], ... of n entries, warp-wide.
__device__ void best_of(const float* vals, int64_t n, int lane, float& v, int64_t& i) {
  v = -INFINITY;
  i = -1;
  for (int64_t e = lane; e < n; e += 32)
    if (i < 0 || better(vals[e], e, v, i)) { v = vals[e]; i = e; }
  warp_best(v, i);
}

template <typename T>
__global__ void route_kernel(const T* __restrict__ logits, const float* __restrict__ bias, int64_t T_,
                             int64_t E, Params p, float* __restrict__ probs, float* __restrict__ weights,
                             int64_t* __restrict__ indices) {
  extern __shared__ float smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t t = int64_t(blockIdx.x) * kWarps + warp;
  if (t >= T_) return;  // whole warps exit together
  float* prob = smem + warp * (2 * E + p.n_groups);
  float* sel = prob + E;
  float* gsel = sel + E;
  const T* row = logits + t * E;

  float mx = -INFINITY;
  if (p.score == kSoftmax) {
    for (int64_t e = lane; e < E; e += 32) mx = fmaxf(mx, static_cast<float>(row[e]));
    mx = warp_max(mx);
  }
  float sum = 0.f;
  for (int64_t e = lane; e < E; e += 32) {
    const float l = static_cast<float>(row[e]);
    const float v = p.score == kSoftmax ? exp_f32(l - mx) : sigmoid_f32(l);
    prob[e] = v;
    sum += v;
  }
  const float inv = p.score == kSoftmax ? 1.f / warp_sum(sum) : 1.f;
  for (int64_t e = lane; e < E; e += 32) {
    const float v = prob[e] * inv;
    prob[e] = v;
    probs[t * E + e] = v;
    sel[e] = v + (bias ? bias[e] : 0.f);
  }
  __syncwarp();

  if (p.topk_groups < p.n_groups) {  // same marking scheme as the CPU kernel
    const int64_t gs = E / p.n_groups;
    for (int64_t g = lane; g < p.n_groups; g += 32) gsel[g] = group_score(sel, g * gs, gs);
    __syncwarp();
    for (int64_t r = 0; r < p.topk_groups; ++r) {
      float v;
      int64_t g;
      best_of(gsel, p.n_groups, lane, v, g);
      if (lane == 0) gsel[g] = -INFINITY;
      __syncwarp();
    }
    for (int64_t e = lane; e < E; e += 32)
      if (gsel[e / gs] != -INFINITY) sel[e] = -INFINITY;
    __syncwarp();
  }

  float* w = weights + t * p.top_k;
  int64_t* idx = indices + t * p.top_k;
  for (int64_t j = 0; j < p.top_k; ++j) {
    float v;
    int64_t e;
    best_of(sel, E, lane, v, e);
    if (lane == 0) {
      idx[j] = e;
      w[j] = prob[e];
      sel[e] = -INFINITY;
    }
    __syncwarp();
  }
  float chosen = 0.f;
  for (int64_t j = lane; j < p.top_k; j += 32) chosen += w[j];
  const float f = weight_factor(warp_sum(chosen), p.normalize, static_cast<float>(p.scale));
  for (int64_t j = lane; j < p.top_k; j += 32) w[j] *= f;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> route_cuda(const at::Tensor& logits_in, int64_t top_k,
                                                          int64_t score, const c10::optional<at::Tensor>& bias_in,
                                                          int64_t n_groups, int64_t topk_groups,
                                                          bool normalize, double scale) {
  const Params p{top_k, n_groups, topk_groups, static_cast<Score>(score), normalize, scale};
  check_inputs(logits_in, bias_in, p);
  TORCH_CHECK(logits_in.is_cuda(), "route: logits must be a CUDA tensor here, got ", logits_in.device());
  TORCH_CHECK(logits_in.size(1) <= kMaxExperts, "route: the CUDA kernel supports up to ", kMaxExperts,
              " experts, got E = ", logits_in.size(1));
  const c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor logits = logits_in.contiguous();
  const int64_t T = logits.size(0), E = logits.size(1);
  auto [weights, indices, probs] = empty_outputs(logits, top_k);
  if (T == 0) return {weights, indices, probs};
  const at::Tensor bias = bias_in.has_value() ? bias_in->contiguous() : at::Tensor();
  const size_t smem = kWarps * (2 * E + n_groups) * sizeof(float);
  const unsigned grid = static_cast<unsigned>((T + kWarps - 1) / kWarps);
  auto stream = c10::cuda::getCurrentCUDAStream();
  YL_DISPATCH_FLOAT(logits.scalar_type(), "route_cuda", [&] {
    route_kernel<scalar_t><<<grid, kWarps * 32, smem, stream>>>(
        logits.const_data_ptr<scalar_t>(), bias.defined() ? bias.const_data_ptr<float>() : nullptr, T,
        E, p, probs.mutable_data_ptr<float>(), weights.mutable_data_ptr<float>(),
        indices.mutable_data_ptr<int64_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {weights, indices, probs};
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CUDA, m) { m.impl("route", &route_cuda); }

}  // namespace yl::routing
