// Every op schema of the `yilightning` namespace, declared once. Kernels register per backend
// in csrc/<op>/<op>_{cpu.cpp,cuda.cu}; fake (meta) kernels and autograd rules live in
// yilightning/ops/<op>.py.
#include <torch/library.h>

TORCH_LIBRARY(yilightning, m) {
  const std::vector<at::Tag> tags = {at::Tag::pt2_compliant_tag};
  m.def("swiglu(Tensor x) -> Tensor", tags);
  m.def("swiglu_backward(Tensor grad, Tensor x) -> Tensor", tags);
  // weight * round_to_x_dtype(x * rsqrt(mean(x^2, -1) + eps)), fp32 math; weight [C] of x [..., C].
  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor", tags);
  // Per-row cross-entropy of logits [N, V] against int64 targets [N] (ignore_index rows: 0).
  // Returns (loss [N] fp32, lse [N] fp32); backward: g * (softmax - onehot), from logits and lse.
  m.def("cross_entropy(Tensor logits, Tensor targets, int ignore_index) -> (Tensor, Tensor)", tags);
  m.def("cross_entropy_backward(Tensor grad, Tensor logits, Tensor targets, Tensor lse, int ignore_index) -> Tensor",
        tags);
  // LM head + cross-entropy fused (CPU, fp32): (sum of the labelled rows' losses, dx, dweight of
  // that sum; dx, dweight empty unless with_grad).
  m.def("lm_head_loss(Tensor x, Tensor weight, Tensor targets, int ignore_index, bool with_grad) -> "
        "(Tensor, Tensor, Tensor)", tags);
  // Returns (dx, dweight).
  m.def("rms_norm_backward(Tensor grad, Tensor x, Tensor weight, float eps) -> (Tensor, Tensor)", tags);
  // score: 0 softmax, 1 sigmoid. Returns (weights [T,k] fp32, indices [T,k] int64, probs [T,E] fp32).
  m.def(
      "route(Tensor logits, int top_k, int score, Tensor? expert_bias, int n_groups, int topk_groups, "
      "bool normalize, float scale) -> (Tensor, Tensor, Tensor)",
      tags);
  // c[rows of g] = a[rows of g] @ (trans_b ? b[g]^T : b[g]); wgrad: per-group a_g^T @ dc_g.
  m.def("grouped_gemm(Tensor a, Tensor b, Tensor group_sizes, bool trans_b) -> Tensor", tags);
  m.def("grouped_gemm_wgrad(Tensor a, Tensor dc, Tensor group_sizes, bool trans_b) -> Tensor", tags);
  // FP8 (e4m3) forward, b [E, N, K], block scales a_scale [M, K/128], b_scale [E, N/128, K/128]
  // (ceil); bf16 out. A kernel only for Hopper (CUDA); yilightning.ops.grouped_gemm_fp8 runs
  // the same product elsewhere.
  m.def("grouped_gemm_fp8(Tensor a, Tensor a_scale, Tensor b, Tensor b_scale, Tensor group_sizes) -> Tensor", tags);
  // x [M, K] -> (q [M, K] float8_e4m3fn, scale [M, ceil(K/128)] fp32): one scale per row and 128 columns.
  m.def("quantize_fp8_rows(Tensor x) -> (Tensor, Tensor)", tags);
  // q [..., R, C] float8_e4m3fn * scale [..., ceil(R/block_rows), ceil(C/block_cols)] -> fp32 (CPU).
  m.def("dequantize_fp8(Tensor q, Tensor scale, int block_rows, int block_cols) -> Tensor", tags);
  // Returns (x_sorted [T*k, H], group_sizes [E] int64, row_map [T*k] int64).
  m.def("permute(Tensor x, Tensor indices, int num_experts) -> (Tensor, Tensor, Tensor)", tags);
  m.def("unpermute(Tensor y_sorted, Tensor row_map, Tensor weights) -> Tensor", tags);
  // Returns (d y_sorted, d weights).
  m.def("unpermute_backward(Tensor grad, Tensor y_sorted, Tensor row_map, Tensor weights) -> (Tensor, Tensor)",
        tags);
  // The expert path: unpermute(experts(permute(x))) with SwiGLU experts w_gate_up [E, 2I, H],
  // w_down [E, H, I] (CPU kernels only). moe_ffn (inference) returns (out [T, H], group_sizes [E]);
  // moe_ffn_train also the fp32 pre-activations h [T*k, 2I]; moe_ffn_backward returns
  // (dx, dweights, dw_gate_up, dw_down). moe_ffn's optional *_tiles: pack_experts of the two
  // weights (bf16 [E, N/32, K/32, 2, 16, 32], laid out for AMX tiles once, for inference).
  m.def("pack_experts(Tensor w) -> Tensor", tags);
  m.def("moe_ffn(Tensor x, Tensor indices, Tensor weights, Tensor w_gate_up, Tensor w_down, "
        "Tensor? gate_up_tiles=None, Tensor? down_tiles=None) -> (Tensor, Tensor)",
        tags);
  m.def("moe_ffn_train(Tensor x, Tensor indices, Tensor weights, Tensor w_gate_up, Tensor w_down) "
        "-> (Tensor, Tensor, Tensor)",
        tags);
  m.def("moe_ffn_backward(Tensor grad, Tensor x, Tensor indices, Tensor weights, Tensor h, Tensor w_gate_up, "
        "Tensor w_down) -> (Tensor, Tensor, Tensor, Tensor)",
        tags);
  // Causal varlen attention (window 0 = none). Returns (out [N, Hq, D], lse [Hq, N] fp32).
  m.def("attention(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens, int window, float scale) -> (Tensor, Tensor)",
        tags);
  m.def(
      "attention_backward(Tensor grad, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, Tensor cu_seqlens, "
      "int window, float scale) -> (Tensor, Tensor, Tensor)",
      tags);
  // One new query per sequence over its KV cache [B, S, Hk, D] (contiguous, or a ring buffer of
  // `window` slots). cache_seqlens counts the cached tokens, the new one included.
  m.def("decode_attention(Tensor q, Tensor k_cache, Tensor v_cache, Tensor cache_seqlens, int window, float scale) "
        "-> Tensor",
        tags);
  // Rotary embedding of x [..., T, H, D] at positions [..., T] (rotate-half); inverse = -angle.
  m.def("rotary(Tensor x, Tensor positions, float base, bool inverse) -> Tensor", tags);
  // x [..., K] @ weight [N, K]^T (+ bias [N]), as F.linear: CPU kernels for few rows (decode) and fp32.
  m.def("linear(Tensor x, Tensor weight, Tensor? bias) -> Tensor", tags);
}
