// The dispatch state the ATen calls inside our kernels run under.
#pragma once
#include <c10/core/DispatchKeySet.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

namespace yl {

// Below autograd (each op's gradient is registered by itself, so the ATen calls inside a kernel
// record nothing) and outside autocast (a kernel picks its compute dtypes itself: under
// torch.autocast("cpu", dtype=torch.float16) autocast re-cast grouped_gemm's inner fp32 at::mm
// to fp16, and the kernel then read the fp16 product as fp32).
struct KernelGuard {
  c10::impl::ExcludeDispatchKeyGuard guard{c10::autograd_dispatch_keyset_with_ADInplaceOrView |
                                           c10::autocast_dispatch_keyset};
};

}  // namespace yl
