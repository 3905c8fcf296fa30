// Input validation shared by all kernels. Every message names the argument, what was expected
// and what was given, so a user can act on it without reading the kernel.
#pragma once
#include <ATen/ATen.h>

namespace yl {

inline bool is_float_type(at::ScalarType t) {
  return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf;
}

inline void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(is_float_type(t.scalar_type()), name, " must be float32, bfloat16 or float16, got ",
              t.scalar_type());
}

inline void check_same_dtype_device(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                                    const char* b_name) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), b_name, " must have the dtype of ", a_name, " (",
              a.scalar_type(), "), got ", b.scalar_type());
  TORCH_CHECK(a.device() == b.device(), b_name, " must be on the device of ", a_name, " (",
              a.device(), "), got ", b.device());
}

inline void check_same_shape(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                             const char* b_name) {
  TORCH_CHECK(a.sizes() == b.sizes(), b_name, " must have the shape of ", a_name, " ", a.sizes(),
              ", got ", b.sizes());
}

}  // namespace yl

// Dispatches on the three float dtypes the kernels accept (no double: it is refused above and
// instantiating it would only cost compile time).
#define YL_DISPATCH_FLOAT(TYPE, NAME, ...)                  \
  AT_DISPATCH_SWITCH(TYPE, NAME,                            \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)    \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__))
