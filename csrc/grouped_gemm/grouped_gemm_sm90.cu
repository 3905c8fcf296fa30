// Hopper (sm_90a) grouped GEMM: CUTLASS 3.x pointer-array kernel with TMA loads and WGMMA,
// warp-specialised cooperative schedule, persistent over all groups' tiles. Problem shapes,
// pointers and strides live on the device (filled by a setup kernel from the row offsets), so
// the host never reads the group sizes; the kernel builds each group's TMA descriptors itself.
// Compiled for sm_90a only (its own CMake object library).
#include <ATen/ATen.h>

#include <cute/tensor.hpp>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/group_array_problem_shape.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/util/packed_stride.hpp>

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

// Device-side argument arrays, one entry per group, carved from one byte buffer.
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

  static int64_t bytes(int64_t E) {
    return E * (sizeof(*problems) + 4 * sizeof(void*) + sizeof(*sa) + sizeof(*sb) + sizeof(*sc) + sizeof(*sd)) +
           16 * 9;
  }
  explicit Arrays(uint8_t* base, int64_t E) {
    auto carve = [&](auto*& ptr) {
      base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(base) + 15) & ~uintptr_t(15));
      ptr = reinterpret_cast<std::remove_reference_t<decltype(ptr)>>(base);
      base += E * sizeof(*ptr);
    };
    carve(problems); carve(pa); carve(pb); carve(pc); carve(pd); carve(sa); carve(sb); carve(sc); carve(sd);
  }
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

template <typename Element, bool TRANS_B>
void run_sm90(const at::Tensor& a, const at::Tensor& b, at::Tensor& c, const at::Tensor& offs, const Dims& d,
              cudaStream_t stream) {
  using Cfg = Sm90Grouped<Element, TRANS_B>;
  using Gemm = typename Cfg::Gemm;
  const int64_t E = d.E;
  at::Tensor buf = at::empty({Arrays<Cfg, Element>::bytes(E)}, a.options().dtype(at::kByte));
  Arrays<Cfg, Element> arr(buf.mutable_data_ptr<uint8_t>(), E);
  setup_sm90<Cfg, Element><<<(E + 127) / 128, 128, 0, stream>>>(
      offs.const_data_ptr<int64_t>(), E, d.K, d.N, reinterpret_cast<const Element*>(a.const_data_ptr()),
      reinterpret_cast<const Element*>(b.const_data_ptr()), reinterpret_cast<Element*>(c.mutable_data_ptr()), arr);
  TORCH_CHECK(cudaGetLastError() == cudaSuccess, "grouped_gemm: sm90 setup launch failed");

  cutlass::KernelHardwareInfo hw;
  hw.device_id = a.device().index();
  hw.sm_count = cutlass::KernelHardwareInfo::query_device_multiprocessor_count(hw.device_id);
  typename Gemm::Arguments args{cutlass::gemm::GemmUniversalMode::kGrouped,
                                {static_cast<int>(E), arr.problems, nullptr},
                                {arr.pa, arr.sa, arr.pb, arr.sb},
                                {{}, arr.pc, arr.sc, arr.pd, arr.sd},
                                hw};
  args.epilogue.thread.alpha = 1.f;  // beta = 0: C is never read
  args.epilogue.thread.beta = 0.f;
  Gemm gemm;
  TORCH_CHECK(gemm.can_implement(args) == cutlass::Status::kSuccess, "grouped_gemm: the sm90 kernel cannot run "
              "these shapes (K=", d.K, ", N=", d.N, ")");
  at::Tensor workspace = at::empty({static_cast<int64_t>(Gemm::get_workspace_size(args)) + 1},
                                   a.options().dtype(at::kByte));
  TORCH_CHECK(gemm.initialize(args, workspace.mutable_data_ptr(), stream) == cutlass::Status::kSuccess,
              "grouped_gemm: sm90 initialisation failed");
  TORCH_CHECK(gemm.run(stream) == cutlass::Status::kSuccess, "grouped_gemm: sm90 launch failed");
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

}  // namespace yl::grouped_gemm
