// Every op schema of the `yilightning` namespace, declared once. Kernels register per backend
// in csrc/<op>/<op>_{cpu.cpp,cuda.cu}; fake (meta) kernels and autograd rules live in
// yilightning/ops/<op>.py.
#include <torch/library.h>

TORCH_LIBRARY(yilightning, m) {
  const std::vector<at::Tag> tags = {at::Tag::pt2_compliant_tag};
  m.def("swiglu(Tensor x) -> Tensor", tags);
  m.def("swiglu_backward(Tensor grad, Tensor x) -> Tensor", tags);
  // score: 0 softmax, 1 sigmoid. Returns (weights [T,k] fp32, indices [T,k] int64, probs [T,E] fp32).
  m.def(
      "route(Tensor logits, int top_k, int score, Tensor? expert_bias, int n_groups, int topk_groups, "
      "bool normalize, float scale) -> (Tensor, Tensor, Tensor)",
      tags);
}
