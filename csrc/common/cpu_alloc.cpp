#include "common/cpu_alloc.h"

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace yl::cpu {

at::Tensor empty_huge(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = at::empty(sizes, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const int64_t bytes = t.numel() * t.element_size();
  if (bytes >= kHugeBytes) {
    constexpr uintptr_t kPage = 4096;  // madvise wants a page-aligned start: advise the interior
    const auto p = reinterpret_cast<uintptr_t>(t.data_ptr());
    const uintptr_t first = (p + kPage - 1) / kPage * kPage, last = (p + bytes) / kPage * kPage;
    if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);  // advice only
  }
#endif
  return t;
}

}  // namespace yl::cpu
