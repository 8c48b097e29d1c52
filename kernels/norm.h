/*
 * norm.h: normalisation layers (PyTorch semantics, inference only).
 *
 * Common rules
 *  - x and y have the same shape and dtype: f32, f16 or bf16; contiguous; on ctx's device.
 *    weight / bias / mean / var are f32 vectors. y may be x itself (in place).
 *  - Statistics are computed in fp32 on CUDA (double in the CPU reference), never in the
 *    storage dtype. Variance is the biased one (divide by n), as PyTorch's norms use.
 *    Means are taken of x shifted by one element of the group/row, and the output is formed
 *    as ((x - shift) - mean_of_shifted) * rstd, so inputs with a large common offset (DC in
 *    audio: mean 1e3, std 1e-2) keep full precision instead of cancelling in fp32.
 *
 * groupnorm: nn.GroupNorm / F.group_norm. x [N, C, *] (trailing dims flattened to L),
 *   C % groups == 0. Each (n, g) group is the Cg*L elements of channels g*Cg..(g+1)*Cg-1:
 *     y[n,c,l] = (x[n,c,l] - mean[n,g]) / sqrt(var[n,g] + eps) * weight[c] + bias[c]
 *   weight / bias [C] or NULL (1 / 0). Long groups (GroupNorm(1, C) over minutes of audio)
 *   are split across many blocks on CUDA (partial Welford stats, merge, apply); CUDA uses
 *   ctx's workspace: 12 B per (group, chunk <= 1024) + 16 B per (n, c) row. Deterministic.
 *   batchnorm on CUDA uses 16 B per channel of the workspace.
 * layernorm: nn.LayerNorm(D) / F.layer_norm over the last dim. x [..., D]:
 *     y = (x - mean) / sqrt(var + eps) * weight + bias          weight / bias [D] or NULL.
 * rmsnorm: nn.RMSNorm(D) over the last dim. x [..., D]:
 *     y = x / sqrt(mean(x^2) + eps) * weight                    weight [D] or NULL.
 *   eps is added to the mean square inside the square root (torch.nn.RMSNorm, LlamaRMSNorm,
 *   T5LayerNorm), not to the RMS. Pass eps explicitly: torch's eps=None default means
 *   torch.finfo(x.dtype).eps. Computed in fp32 and rounded once (LlamaRMSNorm instead rounds
 *   x*rstd to the input dtype before the weight multiply: a <= 1 ulp difference in f16).
 * batchnorm: nn.BatchNorm1d/2d/3d in eval mode (running statistics). x [N, C, *]:
 *     y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]
 *   mean, var [C] required; weight / bias [C] or NULL. var + eps <= 0 gives NaN/inf, as torch.
 * batchnorm_fold: host-side (CPU, f32 tensors, double math), for loading weights. Folds an
 *   eval-mode BatchNorm that follows a convolution (or linear) into its weight [Cout, ...]:
 *     s[o]       = gamma[o] / sqrt(var[o] + eps)        (gamma = weight, 1 when NULL)
 *     w'[o, ...] = w[o, ...] * s[o]
 *     b'[o]      = (b[o] - mean[o]) * s[o] + beta[o]    (b = 0 when conv_bias is NULL,
 *                                                        beta = bias, 0 when NULL)
 *   conv_weight is rewritten in place; b' goes to bias_out [Cout] (caller-owned storage, which
 *   may be conv_bias itself; this is how a bias is "created" for a bias-free conv). Dim 0 of
 *   the weight must be the output channel: nn.Conv*d and nn.Linear, not ConvTranspose
 *   (whose weight is [Cin, Cout/groups, ...]). Nothing is written unless every check passes,
 *   including var[o] + eps > 0.
 *
 * defines: cdz_groupnorm, cdz_layernorm, cdz_rmsnorm, cdz_batchnorm (+ _cpu, _cuda),
 *          cdz_batchnorm_fold
 */
#ifndef CDZ_KERNELS_NORM_H
#define CDZ_KERNELS_NORM_H

#include "cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

cdz_status cdz_groupnorm(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                         const cdz_tensor *bias, cdz_tensor *y, int32_t groups, float eps);
cdz_status cdz_layernorm(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                         const cdz_tensor *bias, cdz_tensor *y, float eps);
cdz_status cdz_rmsnorm(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight, cdz_tensor *y,
                       float eps);
cdz_status cdz_batchnorm(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *mean,
                         const cdz_tensor *var, const cdz_tensor *weight, const cdz_tensor *bias,
                         cdz_tensor *y, float eps);

cdz_status cdz_batchnorm_fold(cdz_tensor *conv_weight, const cdz_tensor *conv_bias,
                              const cdz_tensor *mean, const cdz_tensor *var,
                              const cdz_tensor *weight, const cdz_tensor *bias, float eps,
                              cdz_tensor *bias_out);

/* Backends: same arguments, preconditions already checked by the entries above. */
cdz_status cdz_groupnorm_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                             const cdz_tensor *bias, cdz_tensor *y, int32_t groups, float eps);
cdz_status cdz_layernorm_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                             const cdz_tensor *bias, cdz_tensor *y, float eps);
cdz_status cdz_rmsnorm_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                           cdz_tensor *y, float eps);
cdz_status cdz_batchnorm_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *mean,
                             const cdz_tensor *var, const cdz_tensor *weight,
                             const cdz_tensor *bias, cdz_tensor *y, float eps);
#ifdef CDZ_HAVE_CUDA
cdz_status cdz_groupnorm_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                              const cdz_tensor *bias, cdz_tensor *y, int32_t groups, float eps);
cdz_status cdz_layernorm_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                              const cdz_tensor *bias, cdz_tensor *y, float eps);
cdz_status cdz_rmsnorm_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                            cdz_tensor *y, float eps);
cdz_status cdz_batchnorm_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *mean,
                              const cdz_tensor *var, const cdz_tensor *weight,
                              const cdz_tensor *bias, cdz_tensor *y, float eps);
#endif

#ifdef __cplusplus
}
#endif
#endif /* CDZ_KERNELS_NORM_H */
