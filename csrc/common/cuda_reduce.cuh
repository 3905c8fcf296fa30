// Block-wide reductions for CUDA kernels that give one block to each row.
#pragma once

namespace yl::cuda {

// Reduces one float per thread of a kThreads-thread block (a multiple of 32) with max or +
// (warp shuffles, then one value per warp in shared memory); every thread gets the result.
template <int kThreads, bool kMax = false>
__device__ float block_reduce(float v) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "block_reduce: kThreads must be a multiple of 32");
  __shared__ float part[kThreads / 32];
  __shared__ float total;
  for (int off = 16; off > 0; off /= 2) {
    const float o = __shfl_down_sync(0xffffffffu, v, off);
    v = kMax ? fmaxf(v, o) : v + o;
  }
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = part[0];
    for (int i = 1; i < kThreads / 32; ++i) t = kMax ? fmaxf(t, part[i]) : t + part[i];
    total = t;
  }
  __syncthreads();
  const float out = total;
  __syncthreads();  // part/total are reused by the next call
  return out;
}

}  // namespace yl::cuda
