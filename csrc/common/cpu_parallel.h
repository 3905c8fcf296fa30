// Dynamic work distribution for CPU kernels whose tasks differ in cost (skewed expert groups,
// causal attention blocks): each thread takes the next undone task.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <atomic>
#include <vector>

namespace yl::cpu {

// Runs task(i) for i in [0, n). Tasks may call ATen ops: autograd stays out of them on every
// worker (dispatch-key state is per thread and OpenMP workers do not inherit the caller's).
template <typename F>
void run_dynamic(int64_t n, const F& task) {
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(n, at::get_num_threads());
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    const at::AutoDispatchBelowADInplaceOrView no_autograd;
    for (int64_t i = next++; i < n; i = next++) task(i);
  });
}

// Per-thread scratch buffer number `slot` of at least n floats, uninitialised: it keeps its
// capacity across tasks and calls, so task loops neither allocate nor zero their work space.
template <int slot>
float* scratch(int64_t n) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(n);
  return buf.data();
}

// The same for bf16 values (buffers of their own: slot numbers do not collide with scratch's).
template <int slot>
c10::BFloat16* scratch_bf16(int64_t n) {
  thread_local std::vector<c10::BFloat16> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(n);
  return buf.data();
}

}  // namespace yl::cpu
