#include "common/cpu_gemm.h"

#include "common/cpu_blas.h"
#include "common/cpu_transpose.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

// GCC's per-region target pragmas, as cpu_skinny.cpp (clang builds use the BLAS).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define YL_TILED_X86 1
#endif

namespace yl::cpu {
namespace {

// Register tile kMR x kNR; A blocks of kMC x kKC (about 340 KiB: the core's L2), B panels of
// kKC x kNC (4 MiB: L3). Measured on Zen 5: kKC 512 beats 256 by 5-10% (C is read and written
// half as often), 128 is 15% slower.
constexpr int64_t kMR = 14, kNR = 32, kKC = 512, kMC = 12 * kMR, kNC = 2048;

// A per-thread, 64-byte aligned buffer of at least n floats, kept across calls.
template <int slot>
float* packing_buffer(int64_t n) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < n + 16) buf.resize(n + 16);
  const auto p = reinterpret_cast<std::uintptr_t>(buf.data());
  return reinterpret_cast<float*>((p + 63) & ~std::uintptr_t{63});
}

#ifdef YL_TILED_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx2,fma,prfchw")
#define YL_TILED_INLINE __attribute__((always_inline)) inline

// The lanes of the first `cols` (<= 32) columns of a strip: (columns 0-15, columns 16-31).
YL_TILED_INLINE std::pair<__mmask16, __mmask16> column_masks(int64_t cols) {
  return {static_cast<__mmask16>((1u << std::min<int64_t>(cols, 16)) - 1),
          cols > 16 ? static_cast<__mmask16>((1u << (cols - 16)) - 1) : __mmask16{0}};
}

// The source lines of the next blocks to be packed, prefetched a line at a time by the tiles
// computing the current block, so that the packing loops read them from cache. Without it a
// product whose operands come from memory (as most of a training step's do) packs at the
// memory's latency: with its inputs out of cache a 2048 x 256 x 256 linear took 1.34-1.44 ms
// (medians) against 1.28-1.36 with this (1.25 with them in cache), its weight gradient
// 1.65-1.76 against 1.47-1.62; the training step 1.7-2% less.
class Prefetcher {
 public:
  // Floats [col, col + span) of stored rows [r0, r1) of op, after the regions added before.
  void add(const Operand& op, int64_t r0, int64_t r1, int64_t col, int64_t span) {
    if (r0 < r1 && span > 0 && count_ < 2) regions_[count_++] = {&op, r0, r1, col, span};
  }
  // Cache lines in the regions added (a row's span counted from its first line).
  int64_t lines() const {
    int64_t total = 0;
    for (int i = 0; i < count_; ++i) total += (regions_[i].r1 - regions_[i].r0) * ((regions_[i].span + 15) / 16 + 1);
    return total;
  }
  YL_TILED_INLINE void next() {
    if (cur_ >= end_ && !next_row()) return;
    _mm_prefetch(cur_, _MM_HINT_T1);
    cur_ += 64;
  }

 private:
  struct Region {
    const Operand* op;
    int64_t r0, r1, col, span;
  };
  __attribute__((noinline)) bool next_row() {
    while (index_ < count_ && regions_[index_].r0 >= regions_[index_].r1) ++index_;
    if (index_ == count_) return false;
    Region& g = regions_[index_];
    const float* first = g.op->row(g.r0++) + g.col;
    cur_ = reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(first) & ~std::uintptr_t{63});
    end_ = reinterpret_cast<const char*>(first + g.span);
    return true;
  }
  Region regions_[2];
  int count_ = 0, index_ = 0;
  const char *cur_ = nullptr, *end_ = nullptr;
};

// C [R, 32] = alpha * A [R, kc] @ B [kc, 32] + beta * C, columns under the masks m0 | m1 << 16.
// A is packed k-major (R values per k), B k-major (32 values per k, zero past the last column).
// The 2R cache lines of the C tile are prefetched for writing one at a time, spread over the
// depth loop (every 8th step where kc allows): C is usually not in cache (a fresh output, or one
// written long ago), and the stores of a tile missing all at once at its end cost 10% of the
// kernel's rate here (a 14 x 32 x 256 tile streaming C: 92-103 GFLOP/s on one core without the
// prefetches, 110-114 with them; with C in cache about the same either way). Every pf_every-th
// depth step (none when 0) also prefetches a line for the packing that comes next.
template <int R>
void tile(int64_t kc, const float* A, const float* B, float* C, int64_t ldc, float alpha, float beta, __mmask16 m0,
          __mmask16 m1, Prefetcher& pf, int64_t pf_every) {
  __m512 acc0[R], acc1[R];
#pragma GCC unroll 14
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  const int shift = kc >= 16 * R ? 3 : kc >= 8 * R ? 2 : kc >= 4 * R ? 1 : 0;  // steps per C line: 1 << shift
  const int64_t step_mask = (int64_t{1} << shift) - 1;
  int64_t countdown = pf_every;
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_load_ps(B), b1 = _mm512_load_ps(B + 16);
    _mm_prefetch(reinterpret_cast<const char*>(B + 8 * kNR), _MM_HINT_T0);
    if ((p & step_mask) == 0 && (p >> shift) < 2 * R) {
      const int64_t line = p >> shift;  // line 2r + h: row r of the tile, columns 16h to 16h + 15
      __builtin_prefetch(C + (line >> 1) * ldc + (line & 1) * 16, 1, 3);
    }
    if (--countdown == 0) {
      pf.next();
      countdown = pf_every;
    }
#pragma GCC unroll 14
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(A[r]);
      acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
    }
    A += R;
    B += kNR;
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
  for (int r = 0; r < R; ++r) {
    float* cr = C + r * ldc;
    __m512 x0 = _mm512_mul_ps(va, acc0[r]), x1 = _mm512_mul_ps(va, acc1[r]);
    if (beta != 0.f) {  // masked loads do not fault on the columns past the edge
      x0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), x0);
      x1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), x1);
    }
    _mm512_mask_storeu_ps(cr, m0, x0);
    _mm512_mask_storeu_ps(cr + 16, m1, x1);
  }
}

using TileFn = void (*)(int64_t, const float*, const float*, float*, int64_t, float, float, __mmask16, __mmask16,
                        Prefetcher&, int64_t);

template <std::size_t... R>
constexpr auto tile_table(std::index_sequence<R...>) {
  return std::array<TileFn, sizeof...(R)>{&tile<static_cast<int>(R) + 1>...};
}
constexpr auto kTiles = tile_table(std::make_index_sequence<kMR>{});  // kTiles[r - 1]: r rows

// Rows [i0, i0 + mc) x depth [p0, p0 + kc) of op(A) into strips of kMR rows (the last one has
// the rows left), each k-major: the strip of rows [s, s + kMR) starts at s * kc.
void pack_a(bool trans_a, const Operand& a, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  for (int64_t s = 0; s < mc; s += kMR) {
    const int64_t rows = std::min(kMR, mc - s);
    float* d = dst + s * kc;
    if (trans_a) {  // op(A)(i, p) = row p of a, column i: the strip's rows are contiguous per p
      const __mmask16 lanes = static_cast<__mmask16>((1u << rows) - 1);  // one masked copy per p
      for (int64_t p = 0; p < kc; ++p)
        _mm512_mask_storeu_ps(d + p * rows, lanes, _mm512_maskz_loadu_ps(lanes, a.row(p0 + p) + i0 + s));
    } else {  // a transpose of the strip's rows
      const float* src[16];
      for (int64_t i = 0; i < rows; ++i) src[i] = a.row(i0 + s + i);
      for (int64_t p = 0; p < kc; p += 16)
        transpose16(src, p0 + p, rows, std::min<int64_t>(16, kc - p), d + p * rows, rows,
                    static_cast<__mmask16>((1u << rows) - 1));
    }
  }
}

// Columns [j0, j0 + nc) x depth [p0, p0 + kc) of op(B) into strips of kNR columns, k-major,
// zero-padded to kNR: strip s starts at s * kc (s a multiple of kNR).
void pack_b(bool trans_b, const Operand& b, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  for (int64_t s = 0; s < nc; s += kNR) {
    const int64_t cols = std::min(kNR, nc - s);
    float* d = dst + s * kc;
    if (!trans_b) {  // op(B)(p, j) = row p of b, column j: rows of the strip are contiguous
      const auto [m0, m1] = column_masks(cols);
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = b.row(p0 + p) + j0 + s;
        _mm512_store_ps(d + p * kNR, _mm512_maskz_loadu_ps(m0, src));
        _mm512_store_ps(d + p * kNR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
      }
    } else {  // op(B)(p, j) = row j of b, column p: a transpose, 16 columns at a time
      for (int64_t h = 0; h < kNR; h += 16) {
        const int64_t rows = std::max<int64_t>(0, std::min<int64_t>(16, cols - h));
        const float* src[16];
        for (int64_t i = 0; i < rows; ++i) src[i] = b.row(j0 + s + h + i);
        for (int64_t p = 0; p < kc; p += 16)
          transpose16(src, p0 + p, rows, std::min<int64_t>(16, kc - p), d + p * kNR + h, kNR, 0xFFFF);
      }
    }
  }
}

// The source of pack_a's block (rows [i0, i0 + mc) x depth [p0, p0 + kc) of op(A)) into pf.
void add_a(Prefetcher& pf, bool trans_a, const Operand& a, int64_t i0, int64_t mc, int64_t p0, int64_t kc) {
  if (trans_a) pf.add(a, p0, p0 + kc, i0, mc); else pf.add(a, i0, i0 + mc, p0, kc);
}

// What prefetch_with_next_gemm named, for the calling thread's next product (which clears it).
struct Then {
  Operand op{nullptr, 0};
  int64_t rows = 0, span = 0;
};
thread_local Then g_then;

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const Operand& a,
          const Operand& b, float beta, float* c, int64_t ldc) {
  const Then then = std::exchange(g_then, Then{});
  float* Bp = packing_buffer<0>(kKC * kNC);
  float* Ap = packing_buffer<1>(kMC * kKC);
  for (int64_t j0 = 0; j0 < n; j0 += kNC) {
    const int64_t nc = std::min(kNC, n - j0);
    for (int64_t p0 = 0; p0 < k; p0 += kKC) {
      const int64_t kc = std::min(kKC, k - p0);
      const float beta_p = p0 == 0 ? beta : 1.f;  // later depth blocks add to the first's result
      pack_b(trans_b, b, p0, kc, j0, nc, Bp);
      for (int64_t i0 = 0; i0 < m; i0 += kMC) {
        const int64_t mc = std::min(kMC, m - i0);
        pack_a(trans_a, a, i0, mc, p0, kc, Ap);
        Prefetcher pf;  // what is packed next: A's next block, or B's next panel and its first A block
        if (i0 + kMC < m) {
          add_a(pf, trans_a, a, i0 + kMC, std::min(kMC, m - i0 - kMC), p0, kc);
        } else if (p0 + kKC < k || j0 + kNC < n) {
          const int64_t q0 = p0 + kKC < k ? p0 + kKC : 0, qc = std::min(kKC, k - q0);
          const int64_t l0 = p0 + kKC < k ? j0 : j0 + kNC, lc = std::min(kNC, n - l0);
          if (trans_b) pf.add(b, l0, l0 + lc, q0, qc); else pf.add(b, q0, q0 + qc, l0, lc);
          add_a(pf, trans_a, a, 0, std::min(kMC, m), q0, qc);
        } else {  // the last block: what the caller multiplies next, if it said
          pf.add(then.op, 0, then.rows, 0, then.span);
        }
        const int64_t tiles = (nc + kNR - 1) / kNR * ((mc + kMR - 1) / kMR);
        const int64_t per_tile = (pf.lines() + tiles - 1) / tiles;
        const int64_t pf_every = per_tile == 0 ? 0 : std::max<int64_t>(1, kc / per_tile);
        for (int64_t jr = 0; jr < nc; jr += kNR) {  // a B strip stays in L1 across the A strips
          const int64_t cols = std::min(kNR, nc - jr);
          const auto [m0, m1] = column_masks(cols);
          for (int64_t ir = 0; ir < mc; ir += kMR) {
            const int64_t rows = std::min(kMR, mc - ir);
            kTiles[rows - 1](kc, Ap + ir * kc, Bp + jr * kc, c + (i0 + ir) * ldc + j0 + jr, ldc, alpha, beta_p, m0,
                             m1, pf, pf_every);
          }
        }
      }
    }
  }
}

#pragma GCC pop_options

bool hw_supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
}

bool hw_default() { return hw_supported() && !__builtin_cpu_is("intel"); }
#else
bool hw_supported() { return false; }
bool hw_default() { return false; }
#endif

}  // namespace

void prefetch_with_next_gemm(const float* p, int64_t rows, int64_t span, int64_t ld) {
#ifdef YL_TILED_X86
  g_then = Then{Operand{p, ld}, rows, span};
#endif
}

bool tiled_enabled() {
  static const bool supported = hw_supported(), by_default = hw_default();
  const char* env = std::getenv("YL_CPU_GEMM");
  if (env == nullptr || *env == '\0') return by_default;
  if (std::strcmp(env, "blas") == 0) return false;
  if (std::strcmp(env, "avx512") == 0) return supported;
  return by_default;
}

bool tiled_pays(int64_t n, int64_t k) { return n >= 16 && k >= 16 && tiled_enabled(); }

const char* gemm_kernel() { return tiled_enabled() ? "avx512" : "blas"; }

void tiled_gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const Operand& a,
                    const Operand& b, float beta, float* c, int64_t ldc) {
  TORCH_CHECK(tiled_enabled(), "tiled_gemm_f32: needs an x86-64 CPU with AVX-512 (and YL_CPU_GEMM != blas)");
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.f) {  // C = beta * C (as the BLAS: A and B are not read)
    for (int64_t i = 0; i < m; ++i) {
      float* row = c + i * ldc;
      if (beta == 0.f) std::fill(row, row + n, 0.f); else for (int64_t j = 0; j < n; ++j) row[j] *= beta;
    }
    return;
  }
#ifdef YL_TILED_X86
  gemm(trans_a, trans_b, m, n, k, alpha, a, b, beta, c, ldc);
#endif
}

void tiled_gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  tiled_gemm_f32(trans_a, trans_b, m, n, k, alpha, Operand{a, lda}, Operand{b, ldb}, beta, c, ldc);
}

void parallel_gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                       int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (!tiled_pays(n, k))  // outside a parallel region the BLAS threads itself
    return gemm_f32(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  // One part per thread, of whole strips. A split by rows packs all of B in every part, one by
  // columns all of A: split the longer side (so the smaller operand is the one packed twice).
  const int64_t threads = at::get_num_threads();
  const int64_t row_strips = (m + kMR - 1) / kMR, col_strips = (n + kNR - 1) / kNR;
  const bool by_rows = row_strips >= threads && (m >= n || col_strips < threads);
  const int64_t strips = by_rows ? row_strips : col_strips, parts = std::min(threads, strips);
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t s0 = strips * t / parts, s1 = strips * (t + 1) / parts;
      const int64_t r0 = by_rows ? s0 * kMR : 0, r1 = by_rows ? std::min(m, s1 * kMR) : m;
      const int64_t c0 = by_rows ? 0 : s0 * kNR, c1 = by_rows ? n : std::min(n, s1 * kNR);
      tiled_gemm_f32(trans_a, trans_b, r1 - r0, c1 - c0, k, alpha, trans_a ? a + r0 : a + r0 * lda, lda,
                     trans_b ? b + c0 * ldb : b + c0, ldb, beta, c + r0 * ldc + c0, ldc);
    }
  });
}

}  // namespace yl::cpu
