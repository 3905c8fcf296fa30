// Dynamic work distribution for CPU kernels whose tasks differ in cost (skewed expert groups,
// causal attention blocks): each thread takes the next undone task.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <vector>

#include "common/kernel_guard.h"

namespace yl::cpu {

// Runs task(i) for i in [0, n). Tasks may call ATen ops: autograd and autocast stay out of them
// on every worker (dispatch-key state is per thread and OpenMP workers do not inherit the caller's).
template <typename F>
void run_dynamic(int64_t n, const F& task) {
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(n, at::get_num_threads());
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    const KernelGuard kernel_guard;
    for (int64_t i = next++; i < n; i = next++) task(i);
  });
}

// Per-thread buffers of at least n values of T, uninitialised and 64-byte (cache-line)
// aligned: they keep their capacity across tasks and calls, so task loops neither allocate nor
// zero their work space. The alignment matters: oneDNN's bf16 GEMMs (AMX) ran 1.45x slower on
// operands 16 or 32 bytes off a cache line (a 256 x 1024 x 2816 product, one Xeon core: 5.0
// against 3.5 ms), where std::vector's storage would put them.
template <typename T, int slot>
T* aligned_scratch(int64_t n) {
  struct Buffer {
    T* data = nullptr;
    int64_t size = 0;
    ~Buffer() { std::free(data); }
  };
  thread_local Buffer buf;
  if (buf.size < n) {
    constexpr size_t kLine = 64;
    const size_t bytes = (static_cast<size_t>(n) * sizeof(T) + kLine - 1) / kLine * kLine;
    std::free(buf.data);
    buf.data = static_cast<T*>(std::aligned_alloc(kLine, bytes));
    buf.size = buf.data != nullptr ? n : 0;
    TORCH_CHECK(buf.data != nullptr, "yilightning: out of memory allocating ", bytes, " bytes of CPU scratch");
  }
  return buf.data;
}

// Scratch buffer number `slot` of at least n floats (aligned_scratch).
template <int slot>
float* scratch(int64_t n) {
  return aligned_scratch<float, slot>(n);
}

// The same for bf16 values (buffers of their own: slot numbers do not collide with scratch's).
template <int slot>
c10::BFloat16* scratch_bf16(int64_t n) {
  return aligned_scratch<c10::BFloat16, slot>(n);
}

}  // namespace yl::cpu
