#include "common/cpu_alloc.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <list>
#include <map>
#include <mutex>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace yl::cpu {
namespace {

constexpr size_t kPage = size_t{4} << 10;
constexpr size_t kHugePage = size_t{2} << 20;

struct Block {
  void* data;
  size_t bytes;
};

// The allocator behind empty_cached: blocks of whole pages (whole huge pages from kHugeBytes
// up, aligned to one and advised as such), kept by size when freed.
class BlockCache final : public c10::Allocator {
 public:
  static BlockCache& instance() {
    static auto* cache = new BlockCache();  // never destroyed: tensors may outlive static destructors
    return *cache;
  }

  c10::DataPtr allocate(size_t n) override {
    const bool huge = n >= static_cast<size_t>(kHugeBytes);
    const size_t align = huge ? kHugePage : kPage;
    const size_t bytes = std::max<size_t>((n + align - 1) / align * align, align);
    void* data = take(bytes);
    if (data == nullptr) {
      data = std::aligned_alloc(align, bytes);
      TORCH_CHECK(data != nullptr, "yilightning: out of memory allocating ", bytes, " bytes on the CPU");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
      if (huge) madvise(data, bytes, MADV_HUGEPAGE);  // advice only: ignored where THP is off
#endif
    }
    return {data, new Block{data, bytes}, &release, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

 private:
  static void release(void* ctx) {
    const Block* b = static_cast<Block*>(ctx);
    instance().keep_or_free(b->data, b->bytes);
    delete b;
  }

  void* take(size_t bytes) {  // the block of this size freed last (the one most likely still cached)
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto [first, last] = by_size_.equal_range(bytes);
    if (first == last) return nullptr;
    const auto it = std::prev(last);  // blocks of one size are in the order they were freed
    void* data = it->second->data;
    kept_.erase(it->second);
    by_size_.erase(it);
    held_ -= bytes;
    return data;
  }

  // Keeps a freed block, giving back the blocks freed longest ago where the total would pass
  // kCachedBytes: sizes that stopped coming back (an earlier model's, a finished phase's) must
  // not hold the room that the current step's sizes need.
  void keep_or_free(void* data, size_t bytes) {
    if (bytes > static_cast<size_t>(kCachedBytes)) {
      std::free(data);
      return;
    }
    std::vector<void*> surplus;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      while (held_ + bytes > static_cast<size_t>(kCachedBytes)) {
        const Block oldest = kept_.front();
        by_size_.erase(by_size_.lower_bound(oldest.bytes));  // the first of its size is the oldest of them
        kept_.pop_front();
        held_ -= oldest.bytes;
        surplus.push_back(oldest.data);
      }
      kept_.push_back({data, bytes});
      by_size_.emplace(bytes, std::prev(kept_.end()));
      held_ += bytes;
    }
    for (void* p : surplus) std::free(p);
  }

  std::mutex mutex_;
  std::list<Block> kept_;                                     // kept blocks, freed longest ago first
  std::multimap<size_t, std::list<Block>::iterator> by_size_;  // the same blocks by size
  size_t held_ = 0;
};

}  // namespace

at::Tensor empty_cached(at::IntArrayRef sizes, const at::TensorOptions& options) {
  TORCH_CHECK(options.device().is_cpu(), "empty_cached: a CPU tensor only, got ", options.device());
  int64_t numel = 1;
  for (const int64_t s : sizes) numel *= s;
  const int64_t bytes = numel * static_cast<int64_t>(c10::elementSize(options.dtype().toScalarType()));
  if (bytes < kCachedFromBytes) return at::empty(sizes, options);
  return at::detail::empty_generic(sizes, &BlockCache::instance(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   options.dtype().toScalarType(), options.memory_format_opt());
}

}  // namespace yl::cpu
