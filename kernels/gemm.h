/*
 * gemm.h: dense matrix products (cuBLASLt on CUDA, plain loops on the CPU).
 *
 * cdz_linear matches torch.nn.functional.linear(x, w, bias):
 *
 *   x [..., K]   w [N, K]   bias [N] or NULL   y [..., N]
 *   y[r, n] = sum_k x[r, k] * w[n, k] + bias[n]          (r runs over the M = numel(x)/K rows)
 *
 * cdz_matmul is a batched GEMM with BLAS scaling, like torch.baddbmm / torch.matmul:
 *
 *   a [..., M, K] (trans_a: [..., K, M])   b [..., K, N] (trans_b: [..., N, K])   c [..., M, N]
 *   c[i, j] = alpha * sum_k op(a)[i, k] * op(b)[k, j] + beta * c[i, j]
 *
 * The batch dims ("...") of a and b broadcast as in torch.matmul (right-aligned; a dim of 1,
 * or a missing one, is repeated) and c's batch dims must equal the broadcast shape. With
 * beta == 0, c is not read (NaN or garbage in c does not propagate), as in BLAS.
 *
 * Tensors are contiguous, row-major, on ctx's device; outputs must not overlap inputs.
 * Dtypes (checked): the two operands share one dtype, f32, f16 or bf16; the output is f32
 * or the operands' dtype; a bias is f32 or the operands' dtype. K == 0 gives
 * c = beta * c (+ bias); an empty M, N or batch does nothing.
 *
 * Numerics:
 *  - CPU: operands converted to float, products accumulated in double, rounded once to
 *    the output dtype (the reference the CUDA results are compared with).
 *  - CUDA, f16/bf16 operands: tensor cores with fp32 accumulation (CUBLAS_COMPUTE_32F) in
 *    every precision mode; a half output is rounded once after alpha/beta/bias.
 *  - CUDA, f32 operands: CDZ_PRECISION_STRICT uses CUBLAS_COMPUTE_32F (true fp32, never
 *    TF32, whatever the environment asks: NVIDIA_TF32_OVERRIDE can only disable TF32).
 *    TF32 uses CUBLAS_COMPUTE_32F_FAST_TF32. FP16/BF16 with f32 tensors also use
 *    FAST_TF32: the operands stay f32 (a model that wants half operands converts its
 *    weights and activations to f16/bf16 itself), and TF32 is no less accurate than the
 *    half precision the mode asked for.
 *  - The bias is added by the cuBLASLt BIAS epilogue (fp32, before the output rounding).
 *    The epilogue takes a bias of the output's dtype, so another bias is first converted
 *    into the workspace (f16/bf16 -> f32 exactly; f32 -> f16/bf16 rounds the bias once).
 *    Where cuBLASLt refuses the epilogue (a bias pointer it cannot align to), a small
 *    kernel adds the bias after the GEMM (a half output is then rounded twice).
 *
 * cuBLASLt heuristic results are cached per process (128 entries, keyed by the problem's
 * shape, dtypes, compute type, pointer alignments and workspace limit, guarded by a
 * mutex); descriptors are rebuilt on each call on the stack (no allocation). The workspace
 * is the context's (up to 32 MiB of it).
 *
 * defines: cdz_linear, cdz_linear_cpu, cdz_linear_cuda,
 *          cdz_matmul, cdz_matmul_cpu, cdz_matmul_cuda
 */
#ifndef CDZ_KERNELS_GEMM_H
#define CDZ_KERNELS_GEMM_H

#include "cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

cdz_status cdz_linear(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                      const cdz_tensor *bias, cdz_tensor *y);
cdz_status cdz_matmul(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *c,
                      bool trans_a, bool trans_b, float alpha, float beta);

/* Unchecked back ends: call through cdz_linear / cdz_matmul. */
cdz_status cdz_linear_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                          const cdz_tensor *bias, cdz_tensor *y);
cdz_status cdz_matmul_cpu(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *c,
                          bool trans_a, bool trans_b, float alpha, float beta);
#ifdef CDZ_HAVE_CUDA
cdz_status cdz_linear_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                           const cdz_tensor *bias, cdz_tensor *y);
cdz_status cdz_matmul_cuda(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *c,
                           bool trans_a, bool trans_b, float alpha, float beta);
#endif

#ifdef __cplusplus
}
#endif
#endif /* CDZ_KERNELS_GEMM_H */
