// Grouped GEMM on the GPU, with group sizes that never leave the device.
//
// A setup kernel turns group_sizes into row offsets and per-group tile offsets (clamping sizes
// that would run past M, so bad sizes cannot cause out-of-bounds access). The launch grid is an
// upper bound known on the host without a sync, ceil(M / BM) + E row tiles; surplus blocks exit.
//   * bf16/fp16 with K and N multiples of 8 (16-byte aligned rows), tensor cores:
//     on Hopper the CUTLASS 3.x TMA/WGMMA pointer-array kernel (grouped_gemm_sm90.cu), elsewhere
//     a CUTLASS 2.x grouped GEMM (sm_80 code; on Hopper too with YL_CUDA_SM90=0). Both read
//     problem sizes and pointers from device memory; empty groups are zero-tile problems, never
//     launched work.
//   * everything else (fp32, odd sizes, the K-grouped weight gradient): our tiled
//     shared-memory kernel with fp32 accumulation.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>

#include "grouped_gemm/grouped_gemm.h"

#ifdef YL_HAVE_CUTLASS
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/thread/linear_combination.h>
#include <cutlass/gemm/device/gemm_grouped.h>
#include <cutlass/gemm/kernel/default_gemm_grouped.h>
#endif

namespace yl::grouped_gemm {
namespace {

constexpr int BM = 64, BN = 64, BK = 16, TM = 4, TN = 4;
constexpr int kThreads = (BM / TM) * (BN / TN);  // 256

// off[g] = first row of group g (off[E] = rows covered), tile_off[g] = first BM-row tile of g.
__global__ void setup_offsets(const int64_t* __restrict__ sizes, int64_t E, int64_t M,
                              int64_t* __restrict__ off, int64_t* __restrict__ tile_off) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  int64_t o = 0, t = 0;
  off[0] = tile_off[0] = 0;
  for (int64_t g = 0; g < E; ++g) {
    int64_t s = sizes[g] < M - o ? sizes[g] : M - o;
    s = s < 0 ? 0 : s;
    o += s;
    t += (s + BM - 1) / BM;
    off[g + 1] = o;
    tile_off[g + 1] = t;
  }
}

// The group that owns row tile `tile`: the largest g with tile_off[g] <= tile (empty groups
// share their offset with the next group and are skipped by taking the largest).
__device__ int64_t group_of_tile(const int64_t* tile_off, int64_t E, int64_t tile) {
  int64_t lo = 0, hi = E;
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (tile_off[mid] <= tile) lo = mid; else hi = mid;
  }
  return lo;
}

// c[rows of g, :] = a[rows of g, :] @ B_g, B_g(k, n) = TRANS_B ? b[g][n][k] : b[g][k][n].
template <typename T, bool TRANS_B>
__global__ void __launch_bounds__(kThreads)
forward_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ c,
               const int64_t* __restrict__ off, const int64_t* __restrict__ tile_off, int64_t E,
               int64_t K, int64_t N) {
  const int64_t tile = blockIdx.x;
  if (tile >= tile_off[E]) return;
  const int64_t g = group_of_tile(tile_off, E, tile);
  const int64_t row0 = off[g] + (tile - tile_off[g]) * BM, row_end = off[g + 1];
  const int64_t col0 = int64_t(blockIdx.y) * BN;
  const T* bg = b + g * K * N;
  __shared__ float As[BK][BM + 4];
  __shared__ float Bs[BK][BN + 4];
  const int ty = threadIdx.x / (BN / TN), tx = threadIdx.x % (BN / TN);
  float acc[TM][TN] = {};
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    for (int i = threadIdx.x; i < BM * BK; i += kThreads) {
      const int r = i / BK, kk = i % BK;
      const int64_t row = row0 + r, k = k0 + kk;
      As[kk][r] = (row < row_end && k < K) ? static_cast<float>(a[row * K + k]) : 0.f;
    }
    for (int i = threadIdx.x; i < BN * BK; i += kThreads) {
      const int kk = TRANS_B ? i % BK : i / BN, n = TRANS_B ? i / BK : i % BN;
      const int64_t k = k0 + kk, col = col0 + n;
      Bs[kk][n] = (k < K && col < N) ? static_cast<float>(TRANS_B ? bg[col * K + k] : bg[k * N + col]) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float af[TM], bf[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) af[i] = As[kk][ty * TM + i];
#pragma unroll
      for (int j = 0; j < TN; ++j) bf[j] = Bs[kk][tx * TN + j];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += af[i] * bf[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t row = row0 + ty * TM + i;
    if (row >= row_end) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t col = col0 + tx * TN + j;
      if (col < N) c[row * N + col] = static_cast<T>(acc[i][j]);
    }
  }
}

// db[g] = a_g^T @ dc_g ([K, N]; stored [N, K] when TRANS_B); zero for an empty group.
template <typename T, bool TRANS_B>
__global__ void __launch_bounds__(kThreads)
wgrad_kernel(const T* __restrict__ a, const T* __restrict__ dc, T* __restrict__ db,
             const int64_t* __restrict__ off, int64_t K, int64_t N) {
  const int64_t g = blockIdx.z, k0 = int64_t(blockIdx.x) * BM, n0 = int64_t(blockIdx.y) * BN;
  const int64_t r_begin = off[g], r_end = off[g + 1];
  __shared__ float As[BK][BM + 4];
  __shared__ float Bs[BK][BN + 4];
  const int ty = threadIdx.x / (BN / TN), tx = threadIdx.x % (BN / TN);
  float acc[TM][TN] = {};
  for (int64_t r0 = r_begin; r0 < r_end; r0 += BK) {
    for (int i = threadIdx.x; i < BM * BK; i += kThreads) {
      const int rr = i / BM, kk = i % BM;
      const int64_t r = r0 + rr, k = k0 + kk;
      As[rr][kk] = (r < r_end && k < K) ? static_cast<float>(a[r * K + k]) : 0.f;
    }
    for (int i = threadIdx.x; i < BN * BK; i += kThreads) {
      const int rr = i / BN, n = i % BN;
      const int64_t r = r0 + rr, col = n0 + n;
      Bs[rr][n] = (r < r_end && col < N) ? static_cast<float>(dc[r * N + col]) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < BK; ++rr) {
      float af[TM], bf[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) af[i] = As[rr][ty * TM + i];
#pragma unroll
      for (int j = 0; j < TN; ++j) bf[j] = Bs[rr][tx * TN + j];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += af[i] * bf[j];
    }
    __syncthreads();
  }
  T* out = db + g * K * N;
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t k = k0 + ty * TM + i;
    if (k >= K) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t n = n0 + tx * TN + j;
      if (n < N) out[TRANS_B ? n * K + k : k * N + n] = static_cast<T>(acc[i][j]);
    }
  }
}

// Row offsets and tile offsets on the device: int64 [2, E + 1].
at::Tensor device_offsets(const at::Tensor& group_sizes, int64_t M, cudaStream_t stream) {
  const int64_t E = group_sizes.numel();
  at::Tensor offs = at::empty({2, E + 1}, group_sizes.options());
  setup_offsets<<<1, 1, 0, stream>>>(group_sizes.const_data_ptr<int64_t>(), E, M,
                                     offs.mutable_data_ptr<int64_t>(), offs.mutable_data_ptr<int64_t>() + E + 1);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return offs;
}

#ifdef YL_HAVE_CUTLASS
template <typename T> struct CutlassType;
template <> struct CutlassType<at::BFloat16> { using type = cutlass::bfloat16_t; };
template <> struct CutlassType<at::Half> { using type = cutlass::half_t; };

template <typename Element, bool TRANS_B>
struct CutlassGrouped {
  using LayoutB = std::conditional_t<TRANS_B, cutlass::layout::ColumnMajor, cutlass::layout::RowMajor>;
  using Kernel = typename cutlass::gemm::kernel::DefaultGemmGrouped<
      Element, cutlass::layout::RowMajor, cutlass::ComplexTransform::kNone, 8,
      Element, LayoutB, cutlass::ComplexTransform::kNone, 8,
      Element, cutlass::layout::RowMajor, float,
      cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80,
      cutlass::gemm::GemmShape<128, 128, 32>, cutlass::gemm::GemmShape<64, 64, 32>,
      cutlass::gemm::GemmShape<16, 8, 16>,
      cutlass::epilogue::thread::LinearCombination<Element, 8, float, float>,
      cutlass::gemm::threadblock::GemmBatchedIdentityThreadblockSwizzle, 4,
      cutlass::gemm::kernel::GroupScheduleMode::kDeviceOnly>::GemmKernel;
  using Gemm = cutlass::gemm::device::GemmGrouped<Kernel>;
};

// Per-group problem sizes, pointers and leading dimensions for CUTLASS, from the offsets.
template <typename Element, bool TRANS_B>
__global__ void setup_cutlass(const int64_t* __restrict__ off, int64_t E, int64_t K, int64_t N,
                              const Element* a, const Element* b, Element* c,
                              cutlass::gemm::GemmCoord* problems, Element** pa, Element** pb, Element** pc,
                              int64_t* lda, int64_t* ldb, int64_t* ldc) {
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < E; g += int64_t(gridDim.x) * blockDim.x) {
    const int64_t rows = off[g + 1] - off[g];
    problems[g] = cutlass::gemm::GemmCoord(static_cast<int>(rows), static_cast<int>(N), static_cast<int>(K));
    pa[g] = const_cast<Element*>(a) + off[g] * K;
    pb[g] = const_cast<Element*>(b) + g * K * N;
    pc[g] = c + off[g] * N;
    lda[g] = K;
    ldb[g] = TRANS_B ? K : N;
    ldc[g] = N;
  }
}

template <typename T, bool TRANS_B>
void forward_cutlass(const at::Tensor& a, const at::Tensor& b, at::Tensor& c, const at::Tensor& offs,
                     const Dims& d, cudaStream_t stream) {
  using Element = typename CutlassType<T>::type;
  using Gemm = typename CutlassGrouped<Element, TRANS_B>::Gemm;
  const int64_t E = d.E;
  // One device buffer: problems (3 ints each), then 3 pointer arrays and 3 stride arrays.
  const int64_t bytes = E * (sizeof(cutlass::gemm::GemmCoord) + 3 * sizeof(void*) + 3 * sizeof(int64_t)) + 64;
  at::Tensor buf = at::empty({bytes}, a.options().dtype(at::kByte));
  auto* base = buf.mutable_data_ptr<uint8_t>();
  auto* pa = reinterpret_cast<Element**>(base);
  auto* pb = pa + E;
  auto* pc = pb + E;
  auto* lda = reinterpret_cast<int64_t*>(pc + E);
  auto* ldb = lda + E;
  auto* ldc = ldb + E;
  auto* problems = reinterpret_cast<cutlass::gemm::GemmCoord*>(ldc + E);
  setup_cutlass<Element, TRANS_B><<<(E + 127) / 128, 128, 0, stream>>>(
      offs.const_data_ptr<int64_t>(), E, d.K, d.N, reinterpret_cast<const Element*>(a.const_data_ptr()),
      reinterpret_cast<const Element*>(b.const_data_ptr()), reinterpret_cast<Element*>(c.mutable_data_ptr()),
      problems, pa, pb, pc, lda, ldb, ldc);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  typename Gemm::Arguments args(problems, static_cast<int>(E), Gemm::sufficient(), {1.f, 0.f}, pa, pb, pc, pc,
                                lda, ldb, ldc, ldc);
  Gemm gemm;
  TORCH_CHECK(gemm.initialize(args, nullptr, stream) == cutlass::Status::kSuccess,
              "grouped_gemm: CUTLASS initialisation failed");
  TORCH_CHECK(gemm.run(stream) == cutlass::Status::kSuccess, "grouped_gemm: CUTLASS launch failed");
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}
#endif

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

#ifdef YL_HAVE_SM90
bool is_hopper(int device) {
  int major = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major == 9;
}

// The Hopper kernel for the bf16/fp16 product, unless YL_CUDA_SM90=0 (read on every call, so the
// tests also run the A100's sm80 kernel on a Hopper GPU).
bool use_sm90(int device) {
  const char* env = std::getenv("YL_CUDA_SM90");
  return (env == nullptr || std::strcmp(env, "0") != 0) && is_hopper(device);
}
#endif

at::Tensor grouped_gemm_cuda(const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& group_sizes,
                             bool trans_b) {
  const Dims d = check_forward(a_in, b_in, group_sizes, trans_b);
  TORCH_CHECK(a_in.is_cuda(), "grouped_gemm: a must be a CUDA tensor here, got ", a_in.device());
  const c10::cuda::CUDAGuard guard(a_in.device());
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous(), gs = group_sizes.contiguous();
  // Rows past the clamped groups (only with sizes that do not sum to M) read as zeros.
  at::Tensor c = at::zeros({d.M, d.N}, a.options());
  if (d.M == 0 || d.N == 0 || d.K == 0 || d.E == 0) return c;
  auto stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor offs = device_offsets(gs, d.M, stream);
#ifdef YL_HAVE_CUTLASS
  const bool tensor_cores = a.scalar_type() != at::kFloat && d.K % 8 == 0 && d.N % 8 == 0 &&
                            aligned16(a.const_data_ptr()) && aligned16(b.const_data_ptr()) &&
                            aligned16(c.const_data_ptr());
  if (tensor_cores) {
#ifdef YL_HAVE_SM90
    if (use_sm90(a.device().index())) {
      forward_sm90(a, b, c, offs, d, trans_b, stream);
      return c;
    }
#endif
    AT_DISPATCH_SWITCH(a.scalar_type(), "grouped_gemm_cutlass",
      AT_DISPATCH_CASE(at::kBFloat16, [&] {
        if (trans_b) forward_cutlass<scalar_t, true>(a, b, c, offs, d, stream);
        else forward_cutlass<scalar_t, false>(a, b, c, offs, d, stream);
      })
      AT_DISPATCH_CASE(at::kHalf, [&] {
        if (trans_b) forward_cutlass<scalar_t, true>(a, b, c, offs, d, stream);
        else forward_cutlass<scalar_t, false>(a, b, c, offs, d, stream);
      }));
    return c;
  }
#endif
  TORCH_CHECK((d.N + BN - 1) / BN <= 65535, "grouped_gemm: N must be at most ", 65535 * BN, " on CUDA, got ", d.N);
  const dim3 grid(static_cast<unsigned>((d.M + BM - 1) / BM + d.E), static_cast<unsigned>((d.N + BN - 1) / BN));
  YL_DISPATCH_FLOAT(a.scalar_type(), "grouped_gemm_cuda", [&] {
    const int64_t* o = offs.const_data_ptr<int64_t>();
    if (trans_b)
      forward_kernel<scalar_t, true><<<grid, kThreads, 0, stream>>>(
          a.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(), c.mutable_data_ptr<scalar_t>(), o,
          o + d.E + 1, d.E, d.K, d.N);
    else
      forward_kernel<scalar_t, false><<<grid, kThreads, 0, stream>>>(
          a.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(), c.mutable_data_ptr<scalar_t>(), o,
          o + d.E + 1, d.E, d.K, d.N);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return c;
}

at::Tensor grouped_gemm_wgrad_cuda(const at::Tensor& a_in, const at::Tensor& dc_in, const at::Tensor& group_sizes,
                                   bool trans_b) {
  const Dims d = check_wgrad(a_in, dc_in, group_sizes);
  TORCH_CHECK(a_in.is_cuda(), "grouped_gemm_wgrad: a must be a CUDA tensor here, got ", a_in.device());
  const c10::cuda::CUDAGuard guard(a_in.device());
  const at::Tensor a = a_in.contiguous(), dc = dc_in.contiguous(), gs = group_sizes.contiguous();
  at::Tensor db = trans_b ? at::empty({d.E, d.N, d.K}, a.options()) : at::empty({d.E, d.K, d.N}, a.options());
  if (db.numel() == 0) return db;
  auto stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor offs = device_offsets(gs, d.M, stream);
  const dim3 grid(static_cast<unsigned>((d.K + BM - 1) / BM), static_cast<unsigned>((d.N + BN - 1) / BN),
                  static_cast<unsigned>(d.E));
  TORCH_CHECK(d.E <= 65535 && (d.N + BN - 1) / BN <= 65535, "grouped_gemm_wgrad: at most 65535 groups and N <= ",
              65535 * BN, " on CUDA, got ", d.E, " groups, N = ", d.N);
  YL_DISPATCH_FLOAT(a.scalar_type(), "grouped_gemm_wgrad_cuda", [&] {
    if (trans_b)
      wgrad_kernel<scalar_t, true><<<grid, kThreads, 0, stream>>>(
          a.const_data_ptr<scalar_t>(), dc.const_data_ptr<scalar_t>(), db.mutable_data_ptr<scalar_t>(),
          offs.const_data_ptr<int64_t>(), d.K, d.N);
    else
      wgrad_kernel<scalar_t, false><<<grid, kThreads, 0, stream>>>(
          a.const_data_ptr<scalar_t>(), dc.const_data_ptr<scalar_t>(), db.mutable_data_ptr<scalar_t>(),
          offs.const_data_ptr<int64_t>(), d.K, d.N);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return db;
}

#ifdef YL_HAVE_SM90
at::Tensor grouped_gemm_fp8_cuda(const at::Tensor& a_in, const at::Tensor& a_scale_in, const at::Tensor& b_in,
                                 const at::Tensor& b_scale_in, const at::Tensor& group_sizes) {
  const Dims d = check_fp8(a_in, a_scale_in, b_in, b_scale_in, group_sizes);
  TORCH_CHECK(a_in.is_cuda(), "grouped_gemm_fp8: a must be a CUDA tensor here, got ", a_in.device());
  const c10::cuda::CUDAGuard guard(a_in.device());
  TORCH_CHECK(is_hopper(a_in.device().index()), "grouped_gemm_fp8: the FP8 kernel needs a Hopper GPU (sm_90); "
              "yilightning.ops.grouped_gemm_fp8 computes the same product elsewhere");
  TORCH_CHECK(d.K % 128 == 0 && d.N % 128 == 0, "grouped_gemm_fp8: the FP8 kernel needs K and N multiples of 128, "
              "got K=", d.K, ", N=", d.N, "; yilightning.ops.grouped_gemm_fp8 computes other shapes");
  // TMA needs 16-byte aligned operands: a view at an odd offset is copied (rows stay aligned, as
  // K is a multiple of 128).
  auto aligned = [](const at::Tensor& t) {
    at::Tensor c = t.contiguous();
    return aligned16(c.const_data_ptr()) ? c : c.clone();
  };
  const at::Tensor a = aligned(a_in), b = aligned(b_in), gs = group_sizes.contiguous();
  const at::Tensor a_scale = a_scale_in.contiguous(), b_scale = b_scale_in.contiguous();
  // K = 0 would store accumulators the mainloop never cleared: the product is zero
  if (d.M == 0 || d.E == 0 || d.K == 0 || d.N == 0) return at::zeros({d.M, d.N}, a.options().dtype(at::kBFloat16));
  auto stream = c10::cuda::getCurrentCUDAStream();
  return forward_fp8_sm90(a, a_scale, b, b_scale, device_offsets(gs, d.M, stream), d, stream);
}
#endif

}  // namespace

TORCH_LIBRARY_IMPL(yilightning, CUDA, m) {
  m.impl("grouped_gemm", &grouped_gemm_cuda);
  m.impl("grouped_gemm_wgrad", &grouped_gemm_wgrad_cuda);
#ifdef YL_HAVE_SM90
  m.impl("grouped_gemm_fp8", &grouped_gemm_fp8_cuda);
#endif
}

}  // namespace yl::grouped_gemm
