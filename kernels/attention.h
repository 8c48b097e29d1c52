/*
 * attention.h: fused scaled-dot-product attention (flash style: online softmax, the L x S
 * score matrix is never stored in device memory).
 *
 * Matches torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal,
 * scale=scale) without dropout or attn_mask:
 *
 *   q [B, H, L, D]   k [B, H, S, D]   v [B, H, S, Dv]   out [B, H, L, Dv]
 *   s[i, j]   = scale * sum_d q[b, h, i, d] * k[b, h, j, d]
 *   causal    : s[i, j] = -inf for j > i (torch.ones(L, S).tril(0): top-left aligned, also
 *               when L != S). Key 0 is never masked, so no row is fully masked when S >= 1.
 *   p[i, :]   = softmax_j(s[i, :])
 *   out[i, e] = sum_j p[i, j] * v[b, h, j, e]
 *
 * S == 0 (no keys at all) writes zeros, as PyTorch's math path does (an empty softmax
 * times an empty V is a zero matrix). `scale` is explicit; PyTorch's default is 1/sqrt(D).
 *
 * Layout: the B, H and L dims of q, k, v and out may have any non-negative element strides
 * (e.g. views of a fused QKV projection stored [B, L, 3, H, D], or an output written
 * straight into [B, L, H, Dv]); the last dim must have stride 1. out must not overlap
 * itself (checked) nor the inputs (not checked). 1 <= D, Dv <= 256. All four tensors share
 * one dtype: f32, f16 or bf16. Scores, softmax and the weighted sum are computed in fp32 on
 * CUDA (CUDA cores, no TF32: full fp32 in every precision mode) and in double on the CPU;
 * f16/bf16 outputs are rounded once at the end.
 *
 * defines: cdz_attention, cdz_attention_cpu, cdz_attention_cuda,
 *          cdz_attention_force_fallback
 */
#ifndef CDZ_KERNELS_ATTENTION_H
#define CDZ_KERNELS_ATTENTION_H

#include "cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CDZ_ATTENTION_MAX_HEAD_DIM 256

cdz_status cdz_attention(cdz_ctx *ctx, const cdz_tensor *q, const cdz_tensor *k,
                         const cdz_tensor *v, cdz_tensor *out, float scale, bool causal);

/* Unchecked back ends: call through cdz_attention. */
cdz_status cdz_attention_cpu(cdz_ctx *ctx, const cdz_tensor *q, const cdz_tensor *k,
                             const cdz_tensor *v, cdz_tensor *out, float scale, bool causal);
#ifdef CDZ_HAVE_CUDA
cdz_status cdz_attention_cuda(cdz_ctx *ctx, const cdz_tensor *q, const cdz_tensor *k,
                              const cdz_tensor *v, cdz_tensor *out, float scale, bool causal);
/* Test hook: route every CUDA call to the simple fallback kernel (the one used when the
 * tiled kernel's shared memory does not fit the device). Not thread-safe; tests only. */
void cdz_attention_force_fallback(bool on);
#endif

#ifdef __cplusplus
}
#endif
#endif /* CDZ_KERNELS_ATTENTION_H */
