/*
 * activation.h: pointwise activations and gated/periodic activations (PyTorch semantics).
 *
 * Storage f32, f16 or bf16 (x and y the same dtype), contiguous, on ctx's device; the math is
 * fp32 (as PyTorch's opmath for half types) and rounds once to the output dtype.
 *
 * cdz_activation(kind): y = f(x) elementwise, y the shape of x; y == x (in place) allowed.
 *   RELU       max(x, 0)                                      F.relu (NaN stays NaN)
 *   RELU6      min(max(x, 0), 6)                              F.relu6 (NaN stays NaN)
 *   SIGMOID    1 / (1 + exp(-x))                              torch.sigmoid
 *   TANH       tanh(x)                                        torch.tanh
 *   SILU       x / (1 + exp(-x))                              F.silu
 *   GELU       0.5 x (1 + erf(x / sqrt 2))                    F.gelu(approximate='none')
 *   GELU_TANH  0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  F.gelu(approximate='tanh')
 *   cdz_gelu / cdz_silu / cdz_relu / cdz_relu6 / cdz_sigmoid / cdz_tanh are thin wrappers.
 * cdz_glu: F.glu(x, dim). x is split along `dim` (negative counts from the end) into halves
 *   a = x[..., :H, ...] and b = x[..., H:, ...]; y = a * sigmoid(b), y has H along dim.
 *   HTDemucs: dim=1 on [N, 2C, L].
 * cdz_swiglu: over the last dim, x [..., 2H] -> y [..., H]: x1 = first half, x2 = second half,
 *   y = silu(x1) * x2, i.e. `x1, x2 = x.chunk(2, -1); F.silu(x1) * x2` (the gate is the
 *   FIRST half). For glu / swiglu, y must not overlap x.
 * cdz_snake: x [N, C, *], alpha f32 [C]: y = x + 1/(alpha + 1e-9) * sin(alpha x)^2
 *   (DAC / descript-audio-codec Snake1d; 1/(alpha + 1e-9) is taken in fp32 as torch does).
 * cdz_snakebeta: x [N, C, *], alpha, beta f32 [C] (stable-audio-tools SnakeBeta, Oobleck
 *   decoder, models/blocks.py): if logscale, alpha = exp(alpha), beta = exp(beta); then
 *   y = x + 1/(beta + 1e-9) * sin(x alpha)^2. Checkpoints store log-scale parameters
 *   (alpha_logscale=True is the upstream default).
 *   For both snakes y == x (in place) is allowed. On CUDA the per-channel factors are
 *   precomputed into ctx's workspace (C x 8 bytes).
 *
 * defines: cdz_act, cdz_act_name, cdz_activation, cdz_gelu, cdz_silu, cdz_relu, cdz_relu6,
 *          cdz_sigmoid, cdz_tanh, cdz_glu, cdz_swiglu, cdz_snake, cdz_snakebeta
 *          (+ _cpu, _cuda for cdz_activation, cdz_glu, cdz_swiglu, cdz_snake, cdz_snakebeta)
 */
#ifndef CDZ_KERNELS_ACTIVATION_H
#define CDZ_KERNELS_ACTIVATION_H

#include "cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cdz_act {
    CDZ_ACT_RELU = 0,
    CDZ_ACT_RELU6,
    CDZ_ACT_SIGMOID,
    CDZ_ACT_TANH,
    CDZ_ACT_SILU,
    CDZ_ACT_GELU,
    CDZ_ACT_GELU_TANH,
    CDZ_ACT_COUNT_
} cdz_act;

/* "relu", "relu6", "sigmoid", "tanh", "silu", "gelu", "gelu_tanh"; "?" if out of range. */
const char *cdz_act_name(cdz_act kind);

cdz_status cdz_activation(cdz_ctx *ctx, cdz_act kind, const cdz_tensor *x, cdz_tensor *y);
cdz_status cdz_gelu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, bool tanh_approx);
cdz_status cdz_silu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);
cdz_status cdz_relu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);
cdz_status cdz_relu6(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);
cdz_status cdz_sigmoid(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);
cdz_status cdz_tanh(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);

cdz_status cdz_glu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim);
cdz_status cdz_swiglu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);
cdz_status cdz_snake(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *alpha, cdz_tensor *y);
cdz_status cdz_snakebeta(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *alpha,
                         const cdz_tensor *beta, cdz_tensor *y, bool logscale);

/* Backends: same arguments, preconditions already checked by the entries above
 * (glu's dim is already made non-negative). */
cdz_status cdz_activation_cpu(cdz_ctx *ctx, cdz_act kind, const cdz_tensor *x, cdz_tensor *y);
cdz_status cdz_glu_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim);
cdz_status cdz_swiglu_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);
cdz_status cdz_snake_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *alpha,
                         cdz_tensor *y);
cdz_status cdz_snakebeta_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *alpha,
                             const cdz_tensor *beta, cdz_tensor *y, bool logscale);
#ifdef CDZ_HAVE_CUDA
cdz_status cdz_activation_cuda(cdz_ctx *ctx, cdz_act kind, const cdz_tensor *x, cdz_tensor *y);
cdz_status cdz_glu_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim);
cdz_status cdz_swiglu_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);
cdz_status cdz_snake_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *alpha,
                          cdz_tensor *y);
cdz_status cdz_snakebeta_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *alpha,
                              const cdz_tensor *beta, cdz_tensor *y, bool logscale);
#endif

#ifdef __cplusplus
}
#endif
#endif /* CDZ_KERNELS_ACTIVATION_H */
