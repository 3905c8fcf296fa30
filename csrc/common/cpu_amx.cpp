#include "common/cpu_amx.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "common/cpu_parallel.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cpu_transpose.h"
#define YL_AMX_X86 1
#endif

namespace yl::cpu {
namespace {

#ifdef YL_AMX_X86
bool amx_usable() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool tile = d & (1u << 24), bf16 = d & (1u << 22);  // CPUID.(7,0):EDX AMX-TILE, AMX-BF16
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return tile && bf16 && syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
}
#else
bool amx_usable() { return false; }
#endif

}  // namespace

bool amx_enabled() {
  static const bool usable = amx_usable();
  const char* env = std::getenv("YL_CPU_AMX");
  return usable && (env == nullptr || std::strcmp(env, "0") != 0);
}

bool amx_fits(int64_t n, int64_t k) { return n > 0 && k > 0 && n % 32 == 0 && k % 32 == 0; }

#ifdef YL_AMX_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bf16,avx2,fma,amx-tile,amx-bf16")

namespace {

// The palette-1 tile configuration (64 bytes, as LDTILECFG reads it): eight tiles of 16 rows of
// 64 bytes (16 fp32 or 32 bf16).
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

// Columns [n0, n0 + 32) of W^T (depth k) as AMX B tiles: for depth block p (32 values) and
// half h, tile p * 2 + h is 16 rows of k-pairs, each the pairs (w[2q], w[2q + 1]) of the half's
// 16 columns: a transpose of the 32-bit pairs of 16 rows of W.
void pack_w(const c10::BFloat16* w, int64_t ldw, int64_t n0, int64_t k, uint32_t* dst) {
  for (int h = 0; h < 2; ++h) {
    const float* src[16];  // the rows as 32-bit pairs (only moved, never computed on)
    for (int i = 0; i < 16; ++i) src[i] = reinterpret_cast<const float*>(w + (n0 + 16 * h + i) * ldw);
    for (int64_t p = 0; p < k / 32; ++p)
      transpose16(src, p * 16, 16, 16, reinterpret_cast<float*>(dst + (p * 2 + h) * 256), 16, 0xFFFF);
  }
}

// A's rows in tile order: tile (i, p), rows [16i, 16i + 16) x depth [32p, 32p + 32), is 1 KiB
// at (i * blocks + p) * 512; rows past a.rows up to m are zero.
void pack_a(const BfRows& a, int64_t m, int64_t blocks, c10::BFloat16* dst) {
  for (int64_t i = 0; i < m; ++i) {
    c10::BFloat16* d = dst + (i / 16 * blocks) * 512 + i % 16 * 32;
    if (i < a.rows) {
      const c10::BFloat16* src = a.data + (a.index ? a.index[i] : i) * a.ld;
      for (int64_t p = 0; p < blocks; ++p) _mm512_storeu_si512(d + p * 512, _mm512_loadu_si512(src + p * 32));
    } else {
      for (int64_t p = 0; p < blocks; ++p) _mm512_storeu_si512(d + p * 512, _mm512_setzero_si512());
    }
  }
}

// Rows [0, m) of a 32-column panel accumulated in cb (rows of 32 floats) into C: fp32 as they
// are, bf16 rounded to nearest even (as c10::BFloat16).
void store_rows(const float* cb, int64_t m, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) std::memcpy(c + i * ldc, cb + i * 32, 32 * sizeof(float));
}
void store_rows(const float* cb, int64_t m, c10::BFloat16* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_load_ps(cb + i * 32 + 16), _mm512_load_ps(cb + i * 32));
    _mm512_storeu_si512(c + i * ldc, reinterpret_cast<__m512i>(v));
  }
}

// The cache lines of W's panel at columns [n0, n0 + 32): `rows` runs of `per_row` lines, `stride`
// bytes apart (plain W: its rows; packed: one contiguous run). None past n or without W.
struct Lines {
  const char* base = nullptr;
  int64_t rows = 0, stride = 0, per_row = 0;
};
Lines panel_lines(const BfWeight& w, int64_t n, int64_t k, int64_t n0) {
  if (w.data == nullptr || n0 >= n) return {};
  if (w.packed) return {reinterpret_cast<const char*>(w.data + n0 * k), 1, 0, k * 32 * 2 / 64};
  return {reinterpret_cast<const char*>(w.data + n0 * w.ld), std::min<int64_t>(32, n - n0), w.ld * 2,
          (k * 2 + 63) / 64};
}

// Depth blocks (of 32) per pass over the m blocks: the pass's 8 x 2 B tiles (16 KiB) stay in L1
// while every m block uses them, and only A comes from L2.
constexpr int64_t kDepthBlocks = 8;

// Rows of A in one pass over W: A's tile copy of at most 1 MiB stays in the core's L2 (2 MiB on
// Sapphire Rapids and later) while every panel of W reads it. Larger row blocks are split and W
// laid out again for each part: at 1024 rows of depth 1024 or 1408 (the coarse MoE layer's tasks)
// A streamed from L3 for every panel, and one Xeon core ran the product at 586 and 624 GFLOP/s;
// in parts of at most 1 MiB, 834 and 842 (the 192-row products of the fine layer are unchanged);
// the coarse layer's bf16 forward 61.4 -> 56.5 ms, alternated in one process.
constexpr int64_t kRowBlockBytes = int64_t(1) << 20;

// C = A @ W^T for rows of A whose tile copy fits kRowBlockBytes, under a loaded tile config.
template <typename Out>
void gemm_rows(const BfRows& a, int64_t n, int64_t k, const BfWeight& w, Out* c, int64_t ldc, const BfWeight& then,
               int64_t then_n, int64_t then_k) {
  const int64_t m = (a.rows + 15) / 16 * 16, blocks = k / 32, m_blocks = (m + 31) / 32;
  uint32_t* laid_out = w.packed ? nullptr : reinterpret_cast<uint32_t*>(scratch<15>(blocks * 512));
  auto* pa = reinterpret_cast<c10::BFloat16*>(scratch<13>(m * k / 2));
  float* cb = scratch<14>(m * 32);  // the panel's fp32 sums between passes, rows of 32
  pack_a(a, m, blocks, pa);
  for (int64_t n0 = 0; n0 < n; n0 += 32) {
    const uint32_t* pw = laid_out;
    if (w.packed)
      pw = reinterpret_cast<const uint32_t*>(w.data + n0 * k);
    else
      pack_w(w.data, w.ld, n0, k, laid_out);
    // The next panel of W (after the last, then's first) is read in while this one computes, a
    // few lines a depth step: W comes from memory, and laying it out at the memory's latency
    // took 18% of the fine MoE layer's bf16 forward under perf (9% with this).
    const Lines next = n0 + 32 < n ? panel_lines(w, n, k, n0 + 32) : panel_lines(then, then_n, then_k, 0);
    const int64_t lines = next.rows * next.per_row;
    const int64_t per_step = (lines + m_blocks * blocks - 1) / (m_blocks * blocks);
    int64_t line = 0;
    for (int64_t p0 = 0; p0 < blocks; p0 += kDepthBlocks) {
      const int64_t p1 = std::min(blocks, p0 + kDepthBlocks);
      for (int64_t m0 = 0; m0 < m; m0 += 32) {  // tiles: sums 0-3, A 4-5, B 6-7
        const bool two_m = m0 + 16 < m;  // m is in 16s: a block of 32 rows or the last 16
        const c10::BFloat16 *a0 = pa + m0 / 16 * blocks * 512, *a1 = a0 + blocks * 512;
        float *c0 = cb + m0 * 32, *c1 = c0 + 16 * 32;
        if (p0 == 0) {
          _tile_zero(0);
          _tile_zero(1);
          _tile_zero(2);
          _tile_zero(3);
        } else {
          _tile_loadd(0, c0, 128);
          _tile_loadd(1, c0 + 16, 128);
          if (two_m) {
            _tile_loadd(2, c1, 128);
            _tile_loadd(3, c1 + 16, 128);
          }
        }
        for (int64_t p = p0; p < p1; ++p) {
          for (int64_t q = 0; q < per_step && line < lines; ++q, ++line)
            _mm_prefetch(next.base + line / next.per_row * next.stride + line % next.per_row * 64, _MM_HINT_T0);
          _tile_loadd(4, a0 + p * 512, 64);
          _tile_loadd(6, pw + p * 512, 64);
          _tile_dpbf16ps(0, 4, 6);
          _tile_loadd(7, pw + p * 512 + 256, 64);
          _tile_dpbf16ps(1, 4, 7);
          if (two_m) {
            _tile_loadd(5, a1 + p * 512, 64);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
          }
        }
        _tile_stored(0, c0, 128);
        _tile_stored(1, c0 + 16, 128);
        if (two_m) {
          _tile_stored(2, c1, 128);
          _tile_stored(3, c1 + 16, 128);
        }
      }
    }
    store_rows(cb, a.rows, c + n0, ldc);
  }
}

template <typename Out>
void gemm(const BfRows& a, int64_t n, int64_t k, const BfWeight& w, Out* c, int64_t ldc, const BfWeight& then,
          int64_t then_n, int64_t then_k) {
  TORCH_CHECK(amx_enabled() && amx_fits(n, k), "amx_gemm_bf16_nt: needs AMX, n and k in 32s; got n=", n, ", k=", k);
  if (a.rows <= 0) return;
  static const TileConfig config;
  _tile_loadconfig(&config);
  // equal parts of whole 16-row tiles, each at most kRowBlockBytes of A
  const int64_t most = std::max<int64_t>(16, kRowBlockBytes / (k * 2) / 16 * 16);
  const int64_t parts = (a.rows + most - 1) / most, size = ((a.rows + parts - 1) / parts + 15) / 16 * 16;
  for (int64_t r0 = 0; r0 < a.rows; r0 += size) {
    const bool last = r0 + size >= a.rows;  // before the last part, W's own first rows come next
    const BfRows part{a.index ? a.data : a.data + r0 * a.ld, a.ld, std::min(size, a.rows - r0),
                      a.index ? a.index + r0 : nullptr};
    gemm_rows(part, n, k, w, c + r0 * ldc, ldc, last ? then : w, last ? then_n : n, last ? then_k : k);
  }
  _tile_release();  // the tile state back to its initial one (oneDNN configures its own)
}

}  // namespace

void amx_pack_b(const c10::BFloat16* w, int64_t ldw, int64_t n, int64_t k, c10::BFloat16* dst) {
  TORCH_CHECK(amx_enabled() && amx_fits(n, k), "amx_pack_b: needs AMX, n and k in 32s; got n=", n, ", k=", k);
  for (int64_t n0 = 0; n0 < n; n0 += 32) pack_w(w, ldw, n0, k, reinterpret_cast<uint32_t*>(dst + n0 * k));
}

void amx_gemm_bf16_nt(const BfRows& a, int64_t n, int64_t k, const BfWeight& w, float* c, int64_t ldc,
                      const BfWeight& then, int64_t then_n, int64_t then_k) {
  gemm(a, n, k, w, c, ldc, then, then_n, then_k);
}

void amx_gemm_bf16_nt(const BfRows& a, int64_t n, int64_t k, const BfWeight& w, c10::BFloat16* c, int64_t ldc,
                      const BfWeight& then, int64_t then_n, int64_t then_k) {
  gemm(a, n, k, w, c, ldc, then, then_n, then_k);
}

#pragma GCC pop_options
#else
void amx_pack_b(const c10::BFloat16*, int64_t, int64_t, int64_t, c10::BFloat16*) {
  TORCH_CHECK(false, "amx_pack_b: AMX needs an x86-64 Linux build with GCC");
}
void amx_gemm_bf16_nt(const BfRows&, int64_t, int64_t, const BfWeight&, float*, int64_t, const BfWeight&, int64_t,
                      int64_t) {
  TORCH_CHECK(false, "amx_gemm_bf16_nt: AMX needs an x86-64 Linux build with GCC");
}
void amx_gemm_bf16_nt(const BfRows&, int64_t, int64_t, const BfWeight&, c10::BFloat16*, int64_t, const BfWeight&,
                      int64_t, int64_t) {
  TORCH_CHECK(false, "amx_gemm_bf16_nt: AMX needs an x86-64 Linux build with GCC");
}
#endif

}  // namespace yl::cpu
