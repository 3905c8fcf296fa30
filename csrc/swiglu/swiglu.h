// SwiGLU: x = [gate | up] along the last dim, y = silu(gate) * up. fp32 math for every dtype.
#pragma once
#include <ATen/ATen.h>

#include "common/check.h"
#include "common/macros.h"

namespace yl::swiglu {

YL_HD float forward(float g, float u) { return g * sigmoid_f32(g) * u; }

// d/dg [g*s(g)] = s * (1 + g * (1 - s)),  d/du = silu(g).
YL_HD void backward(float dy, float g, float u, float& dg, float& du) {
  const float s = sigmoid_f32(g);
  du = dy * g * s;
  dg = dy * u * s * (1.0f + g * (1.0f - s));
}

// y[j] = forward(g[j], u[j]) for n floats (CPU, vectorised; y may alias g or u).
void forward_f32(const float* g, const float* u, float* y, int64_t n);
// dg[j], du[j] = backward(dy[j], g[j], u[j]) for n floats (CPU, vectorised).
void backward_f32(const float* dy, const float* g, const float* u, float* dg, float* du, int64_t n);

// Validates x and returns its output shape ([..., 2I] -> [..., I]).
inline std::vector<int64_t> check_input(const at::Tensor& x) {
  check_float(x, "swiglu: x");
  TORCH_CHECK(x.dim() >= 1, "swiglu: x must have at least one dimension, got a scalar");
  TORCH_CHECK(x.size(-1) % 2 == 0, "swiglu: x.shape[-1] must be even ([gate | up] halves), got ",
              x.size(-1));
  auto shape = x.sizes().vec();
  shape.back() /= 2;
  return shape;
}

inline void check_backward(const at::Tensor& grad, const at::Tensor& x) {
  auto shape = check_input(x);
  check_same_dtype_device(x, "swiglu_backward: x", grad, "swiglu_backward: grad");
  TORCH_CHECK(grad.sizes().vec() == shape, "swiglu_backward: grad must have shape ",
              at::IntArrayRef(shape), ", got ", grad.sizes());
}

}  // namespace yl::swiglu
