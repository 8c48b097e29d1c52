/*
 * elementwise.h: element-by-element arithmetic and dtype conversion (PyTorch semantics).
 *
 * Common rules
 *  - Every tensor of one call has the same dtype: f32, f16 or bf16 (cdz_cast: any two of
 *    them). All are contiguous and on ctx's device. Math is fp32; f16/bf16 results are
 *    rounded once, to nearest even. The CUDA kernels use IEEE ops in the CPU's order
 *    (no FMA contraction), so CUDA and CPU results are identical.
 *  - y may be an input itself (in place) when it has that input's shape; any other overlap
 *    between y and an input is refused.
 *
 * add / sub / mul: torch.add / torch.sub / torch.mul (a + b, a - b, a * b) with NumPy /
 *   PyTorch broadcasting: shapes are aligned on their last dims, and each dim of a and b
 *   is 1 or equal to y's. y's shape must be exactly the broadcast shape (up to 6 dims),
 *   e.g. a [N, C, L] with b [C, 1], [1, C, 1], [L] or [1].
 * scale: y = alpha * x + beta (x * alpha, then + beta, rounded after each op like torch).
 * residual: LayerScale + residual as in HTDemucs' DConv / transformer layers:
 *     y = x + scale[c] * r      c = the index along channel_dim (negative counts from the end)
 *   x, r, y same shape; scale holds C = x.shape[channel_dim] values ([C], or x's rank with
 *   every dim 1 except channel_dim); scale NULL gives y = x + r.
 * cast: x.to(dtype) among f32, f16, bf16, same shape: round to nearest even, overflow to
 *   +-inf, NaN stays NaN; f16 <-> bf16 goes through f32 (exact, then one rounding).
 *   Same dtype is a copy.
 *
 * defines: cdz_add, cdz_sub, cdz_mul, cdz_scale, cdz_residual, cdz_cast (+ _cpu, _cuda),
 *          cdz_bcast_plan, cdz_bcast_plan_make
 */
#ifndef CDZ_KERNELS_ELEMENTWISE_H
#define CDZ_KERNELS_ELEMENTWISE_H

#include "cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

cdz_status cdz_add(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y);
cdz_status cdz_sub(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y);
cdz_status cdz_mul(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y);
cdz_status cdz_scale(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, float alpha, float beta);
cdz_status cdz_residual(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *r,
                        const cdz_tensor *scale, cdz_tensor *y, int32_t channel_dim);
cdz_status cdz_cast(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);

/* Backends: same arguments, preconditions already checked by the entries above. */
cdz_status cdz_add_cpu(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y);
cdz_status cdz_sub_cpu(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y);
cdz_status cdz_mul_cpu(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y);
cdz_status cdz_scale_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, float alpha,
                         float beta);
cdz_status cdz_residual_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *r,
                            const cdz_tensor *scale, cdz_tensor *y, int32_t channel_dim);
cdz_status cdz_cast_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);
#ifdef CDZ_HAVE_CUDA
cdz_status cdz_add_cuda(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y);
cdz_status cdz_sub_cuda(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y);
cdz_status cdz_mul_cuda(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y);
cdz_status cdz_scale_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, float alpha,
                          float beta);
cdz_status cdz_residual_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *r,
                             const cdz_tensor *scale, cdz_tensor *y, int32_t channel_dim);
cdz_status cdz_cast_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);
#endif

/* Internal (shared by the CPU and CUDA backends): a and b broadcast to y's shape, as element
 * strides over y's dims (0 where broadcast), with size-1 dims dropped and adjacent dims
 * merged where both inputs allow. ndim >= 1; y is contiguous over `shape`. */
typedef struct cdz_bcast_plan {
    int32_t ndim;
    int64_t shape[CDZ_MAX_DIMS];
    int64_t sa[CDZ_MAX_DIMS];
    int64_t sb[CDZ_MAX_DIMS];
} cdz_bcast_plan;
void cdz_bcast_plan_make(const cdz_tensor *a, const cdz_tensor *b, const cdz_tensor *y,
                         cdz_bcast_plan *out);

#ifdef __cplusplus
}
#endif
#endif /* CDZ_KERNELS_ELEMENTWISE_H */
