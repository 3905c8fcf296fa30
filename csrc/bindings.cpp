// The one file that includes torch/extension.h (pybind11): build information for
// yilightning.build_info(). Importing the module also runs the static registrations of every
// op schema and kernel compiled into this library.
#include <torch/extension.h>

#include "common/cpu_amx.h"
#include "common/cpu_blas.h"
#include "common/cpu_gemm.h"
#include "common/cpu_skinny.h"

#ifdef YL_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

pybind11::dict build_info() {
  pybind11::dict d;
  d["version"] = YL_VERSION;
  d["torch_version"] = YL_TORCH_VERSION;
  d["compiler"] = "gcc " __VERSION__;
  d["cxx_standard"] = static_cast<long>(__cplusplus);
#ifdef YL_WITH_CUDA
  d["with_cuda"] = true;
  d["cuda_version"] = std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10);
  d["cuda_archs"] = YL_CUDA_ARCH_LIST;
#else
  d["with_cuda"] = false;
  d["cuda_version"] = pybind11::none();
  d["cuda_archs"] = "";
#endif
  d["cutlass_version"] = YL_CUTLASS_VERSION;
  d["cpu_direct_blas"] = yl::cpu::direct_blas();  // CPU kernels call sgemm_ without the dispatcher
  d["cpu_native_bf16"] = yl::cpu::native_bf16();  // bf16 CPU kernels multiply in bf16 (AVX512-BF16)
  d["cpu_amx"] = yl::cpu::native_bf16() && yl::cpu::amx_enabled();  // MoE experts' bf16 forward on AMX tiles
  d["cpu_gemm"] = yl::cpu::gemm_kernel();  // fp32 GEMMs: "avx512" (our tiled kernel) or "blas"
  d["cpu_skinny"] = yl::cpu::skinny_isa();  // few-row products: "avx512", "avx2" or "none" (the BLAS)
#ifdef YL_HAVE_SM90
  d["sm90_kernels"] = true;  // Hopper TMA/WGMMA grouped GEMM compiled
#else
  d["sm90_kernels"] = false;
#endif
  return d;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "yilightning compiled kernels (ops are registered under torch.ops.yilightning)";
  m.def("build_info", &build_info, "How this extension was built.");
}
