/*
 * rope.h: rotary position embedding, rotate-half form (GPT-NeoX; x-transformers'
 * RotaryEmbedding + apply_rotary_pos_emb as used by DiffRhythm's DiT).
 *
 *   x, y [B, L, H, D] contiguous (heads_first: [B, H, L, D]); y may be x (in place).
 *   half = rot_dim / 2, position p = pos_offset + l, for i in [0, half):
 *     inv_freq_i = 1 / theta^(2i / rot_dim)
 *     angle      = p * inv_freq_i
 *     x1 = x[..., i], x2 = x[..., i + half]
 *     y[..., i]        = x1 * cos(angle) - x2 * sin(angle)
 *     y[..., i + half] = x2 * cos(angle) + x1 * sin(angle)
 *   dims rot_dim..D-1 are copied unchanged. rot_dim even, 2 <= rot_dim <= D.
 *
 * Angles follow PyTorch's fp32 arithmetic, identically on CPU and CUDA:
 *   e_i      = fp32(2i) / fp32(rot_dim)                 (fp32 division, like arange().float()/rot_dim)
 *   pw_i     = fp32(theta ** e_i)                       (pow in double, rounded once to fp32)
 *   inv_freq = 1.0f / pw_i                              (fp32 division, like 1.0 / tensor)
 *   angle    = fp32(p) * inv_freq                       (fp32 product, like einsum(t, inv_freq))
 *   cos, sin = cos/sin of that fp32 angle, computed in double, rounded to fp32
 * so both back ends use bit-identical cos/sin (positions are exact in fp32 below 2^24).
 * The rotation itself is fp32 on CUDA and double on the CPU; f16/bf16 are rounded once.
 *
 * defines: cdz_rope, cdz_rope_cpu, cdz_rope_cuda, cdz_rope_inv_freq
 */
#ifndef CDZ_KERNELS_ROPE_H
#define CDZ_KERNELS_ROPE_H

#include "cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

cdz_status cdz_rope(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t rot_dim,
                    float theta, int64_t pos_offset, bool heads_first);

/* Unchecked back ends: call through cdz_rope. */
cdz_status cdz_rope_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t rot_dim,
                        float theta, int64_t pos_offset, bool heads_first);
#ifdef CDZ_HAVE_CUDA
cdz_status cdz_rope_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t rot_dim,
                         float theta, int64_t pos_offset, bool heads_first);
#endif

/* inv_freq_i as defined above (shared by the CPU reference and model code). */
float cdz_rope_inv_freq(int32_t i, int32_t rot_dim, float theta);

#ifdef __cplusplus
}
#endif
#endif /* CDZ_KERNELS_ROPE_H */
