// Large CPU outputs (from kHugeBytes up) from a small cache of huge-page blocks. glibc maps every
// allocation above 32 MiB afresh (its mmap threshold never rises past that) and Linux faults it
// in 4 KiB at a time, zeroing each page, on first touch: a fresh 128 MiB tensor took 45 ms to
// fill on the development machine against 6 ms for one already touched, and the fine MoE layer's
// backward (192 MiB of expert weight gradients) spent 15% of its time in the kernel. So blocks
// are allocated 2 MiB-aligned with transparent huge pages advised (THP "madvise" mode, the usual
// default: 512x fewer faults), and a freed block is kept for the next allocation of the same
// size (the same shapes come back every step) while the kept ones total at most kCachedBytes;
// larger or surplus blocks go back to the OS. Elsewhere (THP off, other OSes) the advice is a
// no-op and the cache still saves the faults.
#pragma once
#include <ATen/ATen.h>

namespace yl::cpu {

// Outputs from this size up come from the cache (smaller ones from glibc's heap, already mapped).
constexpr int64_t kHugeBytes = int64_t{32} << 20;
// Freed blocks kept for reuse, in total at most this many bytes.
constexpr int64_t kCachedBytes = int64_t{512} << 20;

// at::empty(sizes, options) for a CPU tensor: from the cache of huge-page blocks when it is at
// least kHugeBytes (uninitialised either way, as at::empty).
at::Tensor empty_huge(at::IntArrayRef sizes, const at::TensorOptions& options);

}  // namespace yl::cpu
