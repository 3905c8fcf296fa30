// Vectorised fp32 row primitives shared by the CPU kernels (compiled once, in cpu_math.cpp,
// for AVX-512, AVX2 and baseline x86-64, picked at load time). Reductions keep 16 independent
// partial results so the compiler vectorises them without reassociation flags; the order is
// fixed, so results are deterministic.
#pragma once
#include <c10/util/BFloat16.h>

#include <cstdint>

namespace yl::cpu {

float max_f32(const float* x, int64_t n);                 // -inf for n == 0
float exp_sub_sum(float* x, int64_t n, float m);           // x <- exp(x - m); returns the sum
float dot_f32(const float* x, const float* y, int64_t n);
void scale_f32(float* x, int64_t n, float a);              // x <- a x
void scaled_copy_f32(const float* x, float* y, int64_t n, float a);  // y <- a x
void mul_scaled_f32(const float* a, const float* x, float s, float* y, int64_t n);  // y <- a * (x s)
// RMSNorm backward of one row (r its rsqrt): n <- x r, dw += g n, returns sum (g w) n; then
// dx <- (g w) r + c n
float rms_backward_pass_f32(const float* x, float r, const float* g, const float* w, float* n, float* dw,
                            int64_t len);
void rms_backward_dx_f32(const float* g, const float* w, float r, float c, const float* n, float* dx, int64_t len);
// Rotary embedding of one head: (o1, o2) = (x1 c - x2 s, x2 c + x1 s), x = (x1, x2) halves
void rotate_f32(const float* x, const float* c, const float* s, float* o, int64_t half);
void axpy_f32(float a, const float* x, float* y, int64_t n);         // y <- y + a x
// y <- sum_j w[j] x[j] over k rows, summed in j order (the k rows are read together)
void weighted_sum_f32(const float* const* x, const float* w, int64_t k, float* y, int64_t n);
void weighted_sum_f32(const at::BFloat16* const* x, const float* w, int64_t k, float* y, int64_t n);  // bf16 rows
void mul_f32(const float* a, const float* b, float* y, int64_t n);   // y <- a * b (elementwise)
void mul_add_f32(const float* a, const float* b, float* y, int64_t n);  // y <- y + a * b

}  // namespace yl::cpu
