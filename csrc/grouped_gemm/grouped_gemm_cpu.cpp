// Grouped GEMM on the CPU. Our part is the grouping: validation, offsets, a work list of
// (group, row tile) tasks handed out dynamically to the threads (group sizes are skewed), and
// fp32 staging of bf16/fp16 operands where the CPU has no bf16 units (there bf16 math is
// 50-150x slower than fp32; with AVX512-BF16, bf16 tiles multiply as bf16, see
// cpu::native_bf16). Each task's tile product is one single-threaded GEMM from the libraries
// that torch ships (MKL/oneDNN): a fine-grained layer runs 64+ small GEMMs at once instead of
// one multi-threaded GEMM after another, and skips empty experts without a launch.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "common/cpu_alloc.h"
#include "common/cpu_blas.h"
#include "common/cpu_convert.h"
#include "common/cpu_parallel.h"
#include "common/kernel_guard.h"
#include "grouped_gemm/grouped_gemm.h"

namespace yl::grouped_gemm {
namespace {

constexpr int64_t kRowTile = 256;  // rows per task: a 256 x K fp32 tile stays cache-friendly

// Group offsets from group_sizes, checked: no negative size, and they sum to M.
std::vector<int64_t> offsets_of(const at::Tensor& group_sizes, int64_t M, const char* op) {
  const at::Tensor gs = group_sizes.contiguous();
  const int64_t* s = gs.const_data_ptr<int64_t>();
  std::vector<int64_t> off(gs.numel() + 1, 0);
  for (int64_t g = 0; g < gs.numel(); ++g) {
    TORCH_CHECK(s[g] >= 0, op, ": group_sizes[", g, "] is negative (", s[g], ")");
    // compared before adding: sizes near INT64_MAX must not wrap round to a sum of M
    TORCH_CHECK(s[g] <= M - off[g], op, ": group_sizes must sum to the number of rows M=", M,
                ", but the first ", g + 1, " already sum to more");
    off[g + 1] = off[g] + s[g];
  }
  TORCH_CHECK(off.back() == M, op, ": group_sizes must sum to the number of rows M=", M, ", got ",
              off.back());
  return off;
}

// Whether tiles of this dtype go to the GEMM as they are (fp32; bf16 on a CPU with bf16
// units) rather than converted to fp32 first.
bool multiplies_directly(at::ScalarType dtype) {
  return dtype == at::kFloat || (dtype == at::kBFloat16 && cpu::native_bf16());
}

// A tensor's values as contiguous fp32: itself for fp32, else a converted copy.
at::Tensor as_f32(const at::Tensor& t) {
  if (t.scalar_type() == at::kFloat) return t.contiguous();
  at::Tensor src = t.contiguous();
  at::Tensor out = cpu::empty_cached(src.sizes(), src.options().dtype(at::kFloat));
  YL_DISPATCH_FLOAT(src.scalar_type(), "as_f32", [&] {
    cpu::copy_to_f32(src.const_data_ptr<scalar_t>(), out.mutable_data_ptr<float>(), src.numel());
  });
  return out;
}

// bf16 products (oneDNN) multiply row counts in whole multiples of cpu::kBf16RowQuantum, the
// rows past the last one through a zero-padded copy of that many rows: group sizes change at
// every training step, and each new size would be a new oneDNN kernel (cpu_blas.h). fp32 goes
// to the BLAS as it is.
constexpr int64_t kRowQuantum = cpu::kBf16RowQuantum;

int64_t whole_rows(const at::Tensor& t, int64_t rows) {
  return t.scalar_type() == at::kBFloat16 ? rows / kRowQuantum * kRowQuantum : rows;
}

// out [rows, N] = a [rows, K] @ b [K, N].
void mm_rows(at::Tensor out, const at::Tensor& a, const at::Tensor& b) {
  const int64_t rows = a.size(0), main = whole_rows(a, rows), rest = rows - main;
  if (main > 0) {
    at::Tensor head = out.narrow(0, 0, main);
    at::mm_out(head, a.narrow(0, 0, main), b);
  }
  if (rest == 0) return;
  at::Tensor pad = at::zeros({kRowQuantum, a.size(1)}, a.options());
  pad.narrow(0, 0, rest).copy_(a.narrow(0, main, rest));
  out.narrow(0, main, rest).copy_(at::mm(pad, b).narrow(0, 0, rest));
}

// out [K, N] = lhs [K, rows] @ rhs [rows, N], a sum over the rows (the last ones added to the
// whole multiples' bf16 result: one more rounding, as a second chunk of a sum would have).
void mm_sum_rows(at::Tensor out, const at::Tensor& lhs, const at::Tensor& rhs) {
  const int64_t rows = rhs.size(0), main = whole_rows(rhs, rows), rest = rows - main;
  if (main > 0) at::mm_out(out, lhs.narrow(1, 0, main), rhs.narrow(0, 0, main));
  if (rest == 0) return;
  at::Tensor lp = at::zeros({lhs.size(0), kRowQuantum}, lhs.options()), rp = at::zeros({kRowQuantum, rhs.size(1)}, rhs.options());
  lp.narrow(1, 0, rest).copy_(lhs.narrow(1, main, rest));
  rp.narrow(0, 0, rest).copy_(rhs.narrow(0, main, rest));
  if (main > 0) out.addmm_(lp, rp); else at::mm_out(out, lp, rp);
}

// Writes the fp32 tile into dst (a contiguous slice of dst's dtype).
void store_tile(const at::Tensor& tile, at::Tensor dst) {
  if (dst.scalar_type() == at::kFloat) return;  // the GEMM wrote dst directly
  YL_DISPATCH_FLOAT(dst.scalar_type(), "store_tile", [&] {
    cpu::store_f32(tile.const_data_ptr<float>(), dst.mutable_data_ptr<scalar_t>(), tile.numel());
  });
}

at::Tensor grouped_gemm_cpu(const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& group_sizes,
                            bool trans_b) {
  const Dims d = check_forward(a_in, b_in, group_sizes, trans_b);
  // This op's gradient is registered in Python: the ATen calls inside stay out of autograd.
  const KernelGuard kernel_guard;
  TORCH_CHECK(a_in.device().is_cpu(), "grouped_gemm: a must be a CPU tensor here, got ", a_in.device());
  const auto off = offsets_of(group_sizes, d.M, "grouped_gemm");
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  at::Tensor c = cpu::empty_cached({d.M, d.N}, a.options());
  if (d.M == 0 || d.N == 0) return c;
  if (d.K == 0) return c.zero_();
  const bool direct = multiplies_directly(a.scalar_type());

  // Groups of a reasonable size: one multi-threaded BLAS GEMM per group beats one
  // single-threaded GEMM per thread (measured: 224 vs 192 GFLOP/s on 2 cores at 192 x 1024 x 512).
  if (direct && d.M >= 64 * d.E) {
    for (int64_t g = 0; g < d.E; ++g) {
      if (off[g + 1] == off[g]) continue;
      at::Tensor bg = trans_b ? b[g].t() : b[g];
      at::Tensor out = c.narrow(0, off[g], off[g + 1] - off[g]);
      mm_rows(out, a.narrow(0, off[g], off[g + 1] - off[g]), bg);
    }
    return c;
  }

  struct Task { int64_t g, row0, rows; };
  std::vector<Task> tasks;
  for (int64_t g = 0; g < d.E; ++g)
    for (int64_t r = off[g]; r < off[g + 1]; r += kRowTile)
      tasks.push_back({g, r, std::min(kRowTile, off[g + 1] - r)});

  cpu::run_dynamic(static_cast<int64_t>(tasks.size()), [&](int64_t i) {
    const Task t = tasks[i];
    at::Tensor bg = direct ? b[t.g] : as_f32(b[t.g]);
    if (trans_b) bg = bg.t();
    at::Tensor out = c.narrow(0, t.row0, t.rows);
    at::Tensor a_tile = a.narrow(0, t.row0, t.rows);
    if (direct) {
      mm_rows(out, a_tile, bg);
    } else {
      store_tile(at::mm(as_f32(a_tile), bg), out);
    }
  });
  return c;
}

at::Tensor grouped_gemm_wgrad_cpu(const at::Tensor& a_in, const at::Tensor& dc_in, const at::Tensor& group_sizes,
                                  bool trans_b) {
  const Dims d = check_wgrad(a_in, dc_in, group_sizes);
  const KernelGuard kernel_guard;
  TORCH_CHECK(a_in.device().is_cpu(), "grouped_gemm_wgrad: a must be a CPU tensor here, got ", a_in.device());
  const auto off = offsets_of(group_sizes, d.M, "grouped_gemm_wgrad");
  const at::Tensor a = a_in.contiguous(), dc = dc_in.contiguous();
  at::Tensor db = trans_b ? cpu::empty_cached({d.E, d.N, d.K}, a.options()) : cpu::empty_cached({d.E, d.K, d.N}, a.options());
  const bool direct = multiplies_directly(a.scalar_type());
  cpu::run_dynamic(d.E, [&](int64_t g) {
    at::Tensor out = db[g];
    const int64_t rows = off[g + 1] - off[g];
    if (rows == 0) {  // an expert that got no token has a zero gradient
      out.zero_();
      return;
    }
    at::Tensor ag = a.narrow(0, off[g], rows), dcg = dc.narrow(0, off[g], rows);
    if (!direct) {
      ag = as_f32(ag);
      dcg = as_f32(dcg);
    }
    at::Tensor lhs = trans_b ? dcg.t() : ag.t(), rhs = trans_b ? ag : dcg;
    if (direct) mm_sum_rows(out, lhs, rhs); else store_tile(at::mm(lhs, rhs), out);
  });
  return db;
}

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CPU, m) {
  m.impl("grouped_gemm", &grouped_gemm_cpu);
  m.impl("grouped_gemm_wgrad", &grouped_gemm_wgrad_cpu);
}

}  // namespace yl::grouped_gemm
