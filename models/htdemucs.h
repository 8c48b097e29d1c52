/*
 * htdemucs.h: model-internal glue of the HTDemucs forward (models/htdemucs.c, htdemucs.cu).
 * The public API (cdz_htdemucs_*) is in cadenza.h; docs/models/htdemucs.md describes it.
 *
 * htd_normalize: the input normalisation of HTDemucs.forward, which divides by a tensor
 *   (no op in kernels/ divides):
 *     x [B, N] (any leading view of a contiguous [B, ...] tensor), mean / std f32 [B]
 *     y[b, i] = (x[b, i] - mean[b]) / (eps + std[b])
 *   in fp32 exactly as torch evaluates `(x - mean) / (1e-5 + std)`: one rounded subtraction,
 *   one rounded addition, one rounded division. y may be x (in place). Contiguous f32.
 * htd_copy_to_device: synchronous host -> device copy used once at load (no context exists
 *   then); the CPU build never calls it.
 *
 * defines: cdz_htd_normalize (+ _cpu, _cuda), cdz_htd_copy_to_device
 */
#ifndef CDZ_MODELS_HTDEMUCS_H
#define CDZ_MODELS_HTDEMUCS_H

#include "cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

cdz_status cdz_htd_normalize(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *mean,
                             const cdz_tensor *std, cdz_tensor *y, float eps);
cdz_status cdz_htd_normalize_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *mean,
                                 const cdz_tensor *std, cdz_tensor *y, float eps);
#ifdef CDZ_HAVE_CUDA
cdz_status cdz_htd_normalize_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *mean,
                                  const cdz_tensor *std, cdz_tensor *y, float eps);
cdz_status cdz_htd_copy_to_device(int device, void *dst, const void *src, size_t bytes);
#endif

#ifdef __cplusplus
}
#endif
#endif /* CDZ_MODELS_HTDEMUCS_H */
