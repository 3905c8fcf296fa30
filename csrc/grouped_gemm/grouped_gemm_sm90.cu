// Hopper (sm_90a) grouped GEMM: CUTLASS 3.x pointer-array kernel with TMA loads and WGMMA,
// warp-specialised cooperative schedule, persistent over all groups' tiles. Problem shapes,
// pointers and strides live on the device (filled by a setup kernel from the row offsets), so
// the host never reads the group sizes; the kernel builds each group's TMA descriptors itself.
// Compiled for sm_90a only (its own CMake object library).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>

#include <cute/tensor.hpp>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/group_array_problem_shape.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/util/packed_stride.hpp>
#include <cutlass/detail/blockwise_scale_layout.hpp>

#include "grouped_gemm/grouped_gemm.h"

namespace yl::grouped_gemm {
namespace {

template <typename Element, bool TRANS_B>
struct Sm90Grouped {
  using ProblemShape = cutlass::gemm::GroupProblemShape<cute::Shape<int, int, int>>;  // (M, N, K)
  using LayoutA = cutlass::layout::RowMajor;
  // b[g] is [N, K] (K contiguous) with trans_b, else [K, N] (N contiguous).
  using LayoutB = std::conditional_t<TRANS_B, cutlass::layout::ColumnMajor, cutlass::layout::RowMajor>;
  using LayoutC = cutlass::layout::RowMajor;
  static constexpr int kAlign = 8;  // 16 bytes of 16-bit elements: TMA's requirement
  using TileShape = cute::Shape<cute::_128, cute::_128, cute::_64>;
  using ClusterShape = cute::Shape<cute::_1, cute::_1, cute::_1>;

  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float, Element, LayoutC*, kAlign, Element, LayoutC*,
      kAlign, cutlass::epilogue::PtrArrayTmaWarpSpecializedCooperative,
      cutlass::epilogue::fusion::LinearCombination<Element, float>>::CollectiveOp;
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Element, LayoutA*, kAlign, Element, LayoutB*, kAlign,
      float, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
      cutlass::gemm::KernelPtrArrayTmaWarpSpecializedCooperative>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<ProblemShape, Mainloop, Epilogue>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
  using StrideA = typename Kernel::InternalStrideA;
  using StrideB = typename Kernel::InternalStrideB;
  using StrideC = typename Kernel::InternalStrideC;
  using StrideD = typename Kernel::InternalStrideD;
};

// Device-side argument arrays, one entry per group, carved from one byte buffer (16-byte
// aligned each): first count the bytes with a null base, then carve a buffer of that size.
struct Carver {
  uint8_t* base;  // 16-byte aligned; null while counting
  int64_t E;
  size_t used = 0;
  template <typename T>
  void operator()(T*& ptr) {
    used = (used + 15) & ~size_t(15);
    ptr = base ? reinterpret_cast<T*>(base + used) : nullptr;
    used += E * sizeof(T);
  }
};

template <typename Arr>
Arr carve_arrays(const at::Tensor& like, int64_t E, at::Tensor& buf) {
  Arr arr;
  Carver count{nullptr, E};
  arr.carve(count);
  buf = at::empty({static_cast<int64_t>(count.used)}, like.options().dtype(at::kByte));  // allocator: 512-aligned
  Carver carver{buf.mutable_data_ptr<uint8_t>(), E};
  arr.carve(carver);
  return arr;
}

template <typename Cfg, typename Element>
struct Arrays {
  typename Cfg::ProblemShape::UnderlyingProblemShape* problems;
  const Element** pa;
  const Element** pb;
  const Element** pc;
  Element** pd;
  typename Cfg::StrideA* sa;
  typename Cfg::StrideB* sb;
  typename Cfg::StrideC* sc;
  typename Cfg::StrideD* sd;

  void carve(Carver& c) { c(problems); c(pa); c(pb); c(pc); c(pd); c(sa); c(sb); c(sc); c(sd); }
};

template <typename Cfg, typename Element>
__global__ void setup_sm90(const int64_t* __restrict__ off, int64_t E, int64_t K, int64_t N, const Element* a,
                           const Element* b, Element* c, Arrays<Cfg, Element> arr) {
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < E; g += int64_t(gridDim.x) * blockDim.x) {
    const int m = static_cast<int>(off[g + 1] - off[g]);
    arr.problems[g] = {m, static_cast<int>(N), static_cast<int>(K)};
    arr.pa[g] = a + off[g] * K;
    arr.pb[g] = b + g * K * N;
    arr.pc[g] = c + off[g] * N;
    arr.pd[g] = c + off[g] * N;
    arr.sa[g] = cutlass::make_cute_packed_stride(typename Cfg::StrideA{}, {m, static_cast<int>(K), 1});
    arr.sb[g] = cutlass::make_cute_packed_stride(typename Cfg::StrideB{}, {static_cast<int>(N), static_cast<int>(K), 1});
    arr.sc[g] = cutlass::make_cute_packed_stride(typename Cfg::StrideC{}, {m, static_cast<int>(N), 1});
    arr.sd[g] = cutlass::make_cute_packed_stride(typename Cfg::StrideD{}, {m, static_cast<int>(N), 1});
  }
}

// Runs a grouped CUTLASS 3.x GEMM on `stream` (alpha 1, beta 0: C is never read); `op` names the
// caller in errors.
template <typename Gemm>
void launch(typename Gemm::Arguments args, const at::Tensor& like, const char* op, const Dims& d,
            cudaStream_t stream) {
  args.epilogue.thread.alpha = 1.f;
  args.epilogue.thread.beta = 0.f;
  Gemm gemm;
  // CUTLASS's own reason in each error: what the first GPU run needs to see
  cutlass::Status status = gemm.can_implement(args);
  TORCH_CHECK(status == cutlass::Status::kSuccess, op, ": the sm90 kernel cannot run these shapes (K=", d.K,
              ", N=", d.N, "): ", cutlass::cutlassGetStatusString(status));
  at::Tensor workspace = at::empty({static_cast<int64_t>(Gemm::get_workspace_size(args)) + 1},
                                   like.options().dtype(at::kByte));
  status = gemm.initialize(args, workspace.mutable_data_ptr(), stream);
  TORCH_CHECK(status == cutlass::Status::kSuccess, op, ": sm90 initialisation failed: ",
              cutlass::cutlassGetStatusString(status));
  status = gemm.run(stream);
  TORCH_CHECK(status == cutlass::Status::kSuccess, op, ": sm90 launch failed: ",
              cutlass::cutlassGetStatusString(status), " (", cudaGetErrorString(cudaGetLastError()), ")");
}

cutlass::KernelHardwareInfo hardware(const at::Tensor& t) {
  cutlass::KernelHardwareInfo hw;
  hw.device_id = t.device().index();
  hw.sm_count = cutlass::KernelHardwareInfo::query_device_multiprocessor_count(hw.device_id);
  return hw;
}

template <typename Element, bool TRANS_B>
void run_sm90(const at::Tensor& a, const at::Tensor& b, at::Tensor& c, const at::Tensor& offs, const Dims& d,
              cudaStream_t stream) {
  using Cfg = Sm90Grouped<Element, TRANS_B>;
  using Gemm = typename Cfg::Gemm;
  const int64_t E = d.E;
  at::Tensor buf;
  const auto arr = carve_arrays<Arrays<Cfg, Element>>(a, E, buf);
  setup_sm90<Cfg, Element><<<(E + 127) / 128, 128, 0, stream>>>(
      offs.const_data_ptr<int64_t>(), E, d.K, d.N, reinterpret_cast<const Element*>(a.const_data_ptr()),
      reinterpret_cast<const Element*>(b.const_data_ptr()), reinterpret_cast<Element*>(c.mutable_data_ptr()), arr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  launch<Gemm>({cutlass::gemm::GemmUniversalMode::kGrouped,
                {static_cast<int>(E), arr.problems, nullptr},
                {arr.pa, arr.sa, arr.pb, arr.sb},
                {{}, arr.pc, arr.sc, arr.pd, arr.sd},
                hardware(a)},
               a, "grouped_gemm", d, stream);
}


// FP8 (e4m3) grouped GEMM with block scales, DeepSeek-V3's recipe: a [M, K] with one fp32 scale
// per row and 128 columns, b [E, N, K] with one per 128 x 128 block, fp32 accumulation in which
// each 128-deep slice of K is scaled as it is promoted, bf16 output. CUTLASS's pointer-array
// blockwise-scaling mainloop (TMA + FP8 WGMMA, K-major operands only: b in the [E, N, K] layout).
struct Sm90Fp8 {
  using ProblemShape = cutlass::gemm::GroupProblemShape<cute::Shape<int, int, int>>;
  using ElementAB = cutlass::float_e4m3_t;
  using ElementD = cutlass::bfloat16_t;
  using LayoutA = cutlass::layout::RowMajor;
  using LayoutB = cutlass::layout::ColumnMajor;  // b[g] is [N, K], K contiguous
  using LayoutC = cutlass::layout::RowMajor;
  static constexpr int kAlignAB = 16, kAlignD = 8;  // 16 bytes
  using TileShape = cute::Shape<cute::_128, cute::_128, cute::_128>;
  using ClusterShape = cute::Shape<cute::_1, cute::_1, cute::_1>;
  // Scales M-major within a group (CUTLASS's Hopper layout): [K/128, m_g] for a's group, and
  // [K/128, N/128] for b[g]; the launcher lays the user's row-major scales out this way.
  using ScaleConfig = cutlass::detail::Sm90BlockwiseScaleConfig<1, 128, 128>;
  using LayoutSFA = decltype(ScaleConfig::deduce_layoutSFA());
  using LayoutSFB = decltype(ScaleConfig::deduce_layoutSFB());

  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float, ElementD, LayoutC*, kAlignD, ElementD, LayoutC*,
      kAlignD, cutlass::epilogue::PtrArrayTmaWarpSpecializedCooperative,
      cutlass::epilogue::fusion::LinearCombination<ElementD, float>>::CollectiveOp;
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, ElementAB, cute::tuple<LayoutA*, LayoutSFA*>, kAlignAB,
      ElementAB, cute::tuple<LayoutB*, LayoutSFB*>, kAlignAB, float, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
      cutlass::gemm::KernelPtrArrayTmaWarpSpecializedCooperativeFP8Blockwise>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<ProblemShape, Mainloop, Epilogue>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
  using StrideA = typename Kernel::InternalStrideA;
  using StrideB = typename Kernel::InternalStrideB;
  using StrideC = typename Kernel::InternalStrideC;
  using StrideD = typename Kernel::InternalStrideD;
};

struct Fp8Arrays {
  Sm90Fp8::ProblemShape::UnderlyingProblemShape* problems;
  const Sm90Fp8::ElementAB** pa;
  const Sm90Fp8::ElementAB** pb;
  const Sm90Fp8::ElementD** pc;
  Sm90Fp8::ElementD** pd;
  const float** psfa;
  const float** psfb;
  Sm90Fp8::StrideA* sa;
  Sm90Fp8::StrideB* sb;
  Sm90Fp8::StrideC* sc;
  Sm90Fp8::StrideD* sd;
  Sm90Fp8::LayoutSFA* lsfa;
  Sm90Fp8::LayoutSFB* lsfb;

  void carve(Carver& c) {
    c(problems); c(pa); c(pb); c(pc); c(pd); c(psfa); c(psfb); c(sa); c(sb); c(sc); c(sd); c(lsfa); c(lsfb);
  }
};

// Per-group arguments from the row offsets. sfa_t holds a's scales regrouped (see below):
// group g's [KB, m_g] block starts at off[g] * KB; sfb_t is b_scale as [E, KB, NB].
__global__ void setup_fp8(const int64_t* __restrict__ off, int64_t E, int64_t K, int64_t N, int64_t KB, int64_t NB,
                          const Sm90Fp8::ElementAB* a, const Sm90Fp8::ElementAB* b, Sm90Fp8::ElementD* c,
                          const float* sfa_t, const float* sfb_t, Fp8Arrays arr) {
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < E; g += int64_t(gridDim.x) * blockDim.x) {
    const int m = static_cast<int>(off[g + 1] - off[g]), n = static_cast<int>(N), k = static_cast<int>(K);
    arr.problems[g] = {m, n, k};
    arr.pa[g] = a + off[g] * K;
    arr.pb[g] = b + g * N * K;
    arr.pc[g] = c + off[g] * N;
    arr.pd[g] = c + off[g] * N;
    arr.psfa[g] = sfa_t + off[g] * KB;
    arr.psfb[g] = sfb_t + g * KB * NB;
    arr.sa[g] = cutlass::make_cute_packed_stride(Sm90Fp8::StrideA{}, {m, k, 1});
    arr.sb[g] = cutlass::make_cute_packed_stride(Sm90Fp8::StrideB{}, {n, k, 1});
    arr.sc[g] = cutlass::make_cute_packed_stride(Sm90Fp8::StrideC{}, {m, n, 1});
    arr.sd[g] = cutlass::make_cute_packed_stride(Sm90Fp8::StrideD{}, {m, n, 1});
    arr.lsfa[g] = Sm90Fp8::ScaleConfig::tile_atom_to_shape_SFA(cute::make_shape(m, n, k, 1));
    arr.lsfb[g] = Sm90Fp8::ScaleConfig::tile_atom_to_shape_SFB(cute::make_shape(m, n, k, 1));
  }
}

// a_scale [M, KB] (row-major, as the user gives it) -> per group g an M-major [KB, m_g] block at
// off[g] * KB: sfa_t[off[g] * KB + kb * m_g + (r - off[g])] = a_scale[r, kb].
__global__ void regroup_a_scales(const float* __restrict__ a_scale, const int64_t* __restrict__ off, int64_t E,
                                 int64_t M, int64_t KB, float* __restrict__ sfa_t) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < M * KB; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / KB, kb = i % KB;
    if (r >= off[E]) continue;  // rows past the clamped groups are not multiplied
    int64_t lo = 0, hi = E;     // the group of row r: the largest g with off[g] <= r
    while (hi - lo > 1) {
      const int64_t mid = (lo + hi) / 2;
      if (off[mid] <= r) lo = mid; else hi = mid;
    }
    const int64_t m = off[lo + 1] - off[lo];
    sfa_t[off[lo] * KB + kb * m + (r - off[lo])] = a_scale[i];
  }
}
}  // namespace

void forward_sm90(const at::Tensor& a, const at::Tensor& b, at::Tensor& c, const at::Tensor& offs, const Dims& d,
                  bool trans_b, cudaStream_t stream) {
  const bool bf16 = a.scalar_type() == at::kBFloat16;
  if (bf16 && trans_b) run_sm90<cutlass::bfloat16_t, true>(a, b, c, offs, d, stream);
  else if (bf16) run_sm90<cutlass::bfloat16_t, false>(a, b, c, offs, d, stream);
  else if (trans_b) run_sm90<cutlass::half_t, true>(a, b, c, offs, d, stream);
  else run_sm90<cutlass::half_t, false>(a, b, c, offs, d, stream);
}

at::Tensor forward_fp8_sm90(const at::Tensor& a, const at::Tensor& a_scale, const at::Tensor& b,
                            const at::Tensor& b_scale, const at::Tensor& offs, const Dims& d, cudaStream_t stream) {
  using Gemm = Sm90Fp8::Gemm;
  const int64_t E = d.E, KB = a_scale.size(1), NB = b_scale.size(1);
  // Rows past the clamped groups (only with sizes that do not sum to M) read as zeros.
  at::Tensor c = at::zeros({d.M, d.N}, a.options().dtype(at::kBFloat16));
  at::Tensor sfa_t = at::empty_like(a_scale);
  const at::Tensor sfb_t = b_scale.transpose(1, 2).contiguous();  // [E, KB, NB]
  const int64_t n_scales = d.M * KB;
  if (n_scales > 0) {
    const int blocks = static_cast<int>(std::min<int64_t>((n_scales + 255) / 256, 4096));
    regroup_a_scales<<<blocks, 256, 0, stream>>>(a_scale.const_data_ptr<float>(), offs.const_data_ptr<int64_t>(), E,
                                                 d.M, KB, sfa_t.mutable_data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  at::Tensor buf;
  const auto arr = carve_arrays<Fp8Arrays>(a, E, buf);
  setup_fp8<<<(E + 127) / 128, 128, 0, stream>>>(
      offs.const_data_ptr<int64_t>(), E, d.K, d.N, KB, NB,
      reinterpret_cast<const Sm90Fp8::ElementAB*>(a.const_data_ptr()),
      reinterpret_cast<const Sm90Fp8::ElementAB*>(b.const_data_ptr()),
      reinterpret_cast<Sm90Fp8::ElementD*>(c.mutable_data_ptr()), sfa_t.const_data_ptr<float>(),
      sfb_t.const_data_ptr<float>(), arr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  launch<Gemm>({cutlass::gemm::GemmUniversalMode::kGrouped,
                {static_cast<int>(E), arr.problems, nullptr},
                {arr.pa, arr.sa, arr.pb, arr.sb, arr.psfa, arr.lsfa, arr.psfb, arr.lsfb},
                {{}, arr.pc, arr.sc, arr.pd, arr.sd},
                hardware(a)},
               a, "grouped_gemm_fp8", d, stream);
  return c;
}

}  // namespace yl::grouped_gemm
