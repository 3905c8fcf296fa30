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

// The W operand: a row-major [n, k] bf16 weight (row stride ld), or one laid out for the tiles
// by amx_pack_b (`packed`: n / 32 panels of 32 columns, each k / 32 depth blocks of two 1 KiB
// tiles, n * k values in all; ld unused), which spares amx_gemm_bf16_nt laying it out again.
struct BfWeight {
  const c10::BFloat16* data = nullptr;
  int64_t ld = 0;
  bool packed = false;
};

// dst (n * k values) = W [n, k] (row stride ldw) laid out for the tiles, as
// amx_gemm_bf16_nt lays it out on every call: for inference, where the weights stay. Requires
// amx_enabled() and amx_fits(n, k).
void amx_pack_b(const c10::BFloat16* w, int64_t ldw, int64_t n, int64_t k, c10::BFloat16* dst);

// C [a.rows, n] = A [a.rows, k] @ W [n, k]^T, bf16 operands (row-major, leading dimensions in
// elements), fp32 accumulation, C fp32 or bf16 (rounded once, from the fp32 sums), on the
// calling thread. Requires amx_enabled() and amx_fits(n, k). A is copied into tile order (16-row
// tiles of 1 KiB; rows past a.rows up to a multiple of 16 zero) in parts of at most 1 MiB, which
// stay in L2 while W passes; a plain W is laid out for the tiles (pairs of k interleaved per
// column) 32 columns at a time, again for each part. The next 32 columns of W are read in while
// a panel computes. then (optional, [then_n, then_k]): the W of the calling thread's next
// product, whose first columns are read in during this one's last panel.
void amx_gemm_bf16_nt(const BfRows& a, int64_t n, int64_t k, const BfWeight& w, float* c, int64_t ldc,
                      const BfWeight& then = {}, int64_t then_n = 0, int64_t then_k = 0);
void amx_gemm_bf16_nt(const BfRows& a, int64_t n, int64_t k, const BfWeight& w, c10::BFloat16* c, int64_t ldc,
                      const BfWeight& then = {}, int64_t then_n = 0, int64_t then_k = 0);

}  // namespace yl::cpu
