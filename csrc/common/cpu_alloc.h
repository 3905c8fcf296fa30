// CPU outputs from kCachedFromBytes up from a small cache of blocks. glibc maps large
// allocations afresh (its mmap threshold starts at 128 KiB and never rises past 32 MiB) and
// returns freed heap tops to the OS, and Linux faults the memory in 4 KiB at a time, zeroing each
// page, on first touch: a fresh 128 MiB tensor took 45 ms to fill on a 2-core Zen 5 guest
// against 6 ms for one already touched, and the fine MoE layer's backward (192 MiB of expert
// weight gradients) spent 15% of its time in the kernel. So a freed block is kept for the next
// allocation of the same size (the same shapes come back every step); the kept ones total at
// most kCachedBytes, the blocks freed longest ago going back to the OS first. Blocks from
// kHugeBytes up are 2 MiB-aligned with transparent huge pages advised (THP "madvise" mode, the
// usual default: 512x fewer faults); elsewhere (THP off, other OSes) the advice is a no-op and
// the cache still saves the faults. Caching from 256 KiB rather than from 32 MiB (the
// activations, their gradients and the attention outputs of a tiny-preset training step are
// 0.5-8 MiB) made that step 3-10% faster on a 2-core Xeon (median of 14 alternated steps:
// 730 -> 657 ms).
#pragma once
#include <ATen/ATen.h>

namespace yl::cpu {

// Outputs from this size up come from the cache (smaller ones from glibc's heap, already mapped).
constexpr int64_t kCachedFromBytes = int64_t{256} << 10;
// Blocks from this size up are whole huge pages, advised as such.
constexpr int64_t kHugeBytes = int64_t{2} << 20;
// Freed blocks kept for reuse, in total at most this many bytes.
constexpr int64_t kCachedBytes = int64_t{512} << 20;

// at::empty(sizes, options) for a CPU tensor: from the block cache when it is at least
// kCachedFromBytes (uninitialised either way, as at::empty).
at::Tensor empty_cached(at::IntArrayRef sizes, const at::TensorOptions& options);

}  // namespace yl::cpu
