// bf16 GEMM on Intel's AMX tiles, for the MoE layer's expert products on CPUs that have them
// (Sapphire Rapids and later). Why our own: the products are many and small (one per expert,
// ~200 rows), and through at::mm each one paid ~15-20 us of ATen/oneDNN set-up and a scratchpad
// malloc on top of its kernel (13% of the fine bf16 layer's forward on a 2-core Xeon guest), and
// rounded its output to bf16 where the layer wants fp32 (SwiGLU, the kept pre-activations).
#pragma once
#include <c10/util/BFloat16.h>

#include <cstdint>

namespace yl::cpu {

// True when the CPU has AMX-BF16 and the OS lets this process use the tile registers (Linux:
// arch_prctl(ARCH_REQ_XCOMP_PERM), asked once). YL_CPU_AMX=0 turns it off (read on every call,
// so tests run both paths).
bool amx_enabled();
// Whether amx_gemm_bf16_nt takes a product with these n and k: multiples of 32.
bool amx_fits(int64_t n, int64_t k);

// The A operand: `rows` rows of bf16 values, row i at data + (index ? index[i] : i) * ld (read
// in place where gathered: the MoE layer's token rows).
struct BfRows {
  const c10::BFloat16* data;
  int64_t ld, rows;
  const int64_t* index = nullptr;
};

// C [a.rows, n] = A [a.rows, k] @ W [n, k]^T, bf16 operands (row-major, leading dimensions in
// elements), fp32 accumulation, C fp32 or bf16 (rounded once, from the fp32 sums), on the
// calling thread. Requires amx_enabled() and amx_fits(n, k). A is copied into tile order (16-row
// tiles of 1 KiB; rows past a.rows up to a multiple of 16 zero) in parts of at most 1 MiB, which
// stay in L2 while W passes; W is laid out for the tiles (pairs of k interleaved per column) 32
// columns at a time, again for each part, the next 32 rows read in while a panel computes. then_w (optional, [then_n, then_k] row-major, contiguous): the W of the calling
// thread's next product, whose first rows are read in during this one's last panel.
void amx_gemm_bf16_nt(const BfRows& a, int64_t n, int64_t k, const c10::BFloat16* w, int64_t ldw, float* c,
                      int64_t ldc, const c10::BFloat16* then_w = nullptr, int64_t then_n = 0, int64_t then_k = 0);
void amx_gemm_bf16_nt(const BfRows& a, int64_t n, int64_t k, const c10::BFloat16* w, int64_t ldw,
                      c10::BFloat16* c, int64_t ldc, const c10::BFloat16* then_w = nullptr, int64_t then_n = 0,
                      int64_t then_k = 0);

}  // namespace yl::cpu
