// Every op schema of the `yilightning` namespace, declared once. Kernels register per backend
// in csrc/<op>/<op>_{cpu.cpp,cuda.cu}; fake (meta) kernels and autograd rules live in
// yilightning/ops/<op>.py.
#include <torch/library.h>

TORCH_LIBRARY(yilightning, m) {
  const std::vector<at::Tag> tags = {at::Tag::pt2_compliant_tag};
  m.def("swiglu(Tensor x) -> Tensor", tags);
  m.def("swiglu_backward(Tensor grad, Tensor x) -> Tensor", tags);
}
