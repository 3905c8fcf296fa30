// Large CPU outputs backed by transparent huge pages. glibc maps every allocation above 32 MiB
// afresh (its mmap threshold never rises past that) and Linux faults it in 4 KiB at a time on
// first touch: a 128 MiB LM-head output (4096 tokens x 8192 vocabulary, fp32) costs 32K page
// faults, ~30 ms on the development machine, a quarter of its GEMM. Advising huge pages before
// the first write (THP "madvise" mode, the usual default) makes that 64 faults: the tiny
// preset's LM head over 8 x 512 tokens went from 116 to 84 ms. Elsewhere (THP off, other OSes)
// the advice is a no-op.
#pragma once
#include <ATen/ATen.h>

namespace yl::cpu {

// Outputs from this size up get the advice (smaller ones come from glibc's heap, already mapped).
constexpr int64_t kHugeBytes = int64_t{32} << 20;

// at::empty(sizes, options) on the CPU, advised to use huge pages when it is >= kHugeBytes.
at::Tensor empty_huge(at::IntArrayRef sizes, const at::TensorOptions& options);

}  // namespace yl::cpu
