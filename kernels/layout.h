/*
 * layout.h: ops that move elements (PyTorch semantics): permute / strided copy / slice /
 * concat, padding, bilinear resize, global average pooling.
 *
 * Common rules
 *  - y is always contiguous, on ctx's device, and must not overlap any input.
 *  - "x may be strided": any element strides >= 0 (a transposed, sliced or expanded view;
 *    torch.Tensor.stride()), up to 6 dims. Other inputs are contiguous.
 *  - permute / copy_strided / slice / concat copy bytes: any dtype, results are exact.
 *    pad: f32, f16, bf16 (exact too). upsample_bilinear / global_avg_pool: f32, f16, bf16,
 *    fp32 math, one rounding to the storage dtype.
 *
 * permute: y = x.permute(perm).contiguous(); perm is a permutation of 0..ndim-1 (negative
 *   entries count from the end); y.shape[i] = x.shape[perm[i]].
 * copy_strided: y = x.contiguous() (permute with the identity); y has x's shape.
 * slice: y = x.narrow / x[..., start:end:step, ...] along dim: start / end in [-size, size]
 *   (negative counts from the end, no clamping: out of range is an error), start <= end,
 *   step >= 1; y.shape[dim] = ceil((end - start) / step), other dims as x.
 * concat: y = torch.cat(xs, dim): n >= 1 inputs of y's dtype and ndim, equal shapes except
 *   along dim, sizes along dim summing to y's (empty inputs allowed).
 *
 * pad: F.pad(x, pad, mode, value) on the last npad dims. pad_begin[j] / pad_end[j] apply to
 *   dim ndim - npad + j (natural dim order: NOT F.pad's last-dim-first tuple; F.pad(x,
 *   (l, r, t, b)) is npad 2, pad_begin {t, l}, pad_end {b, r}).
 *     y.shape[d] = x.shape[d] + pad_begin + pad_end on those dims.
 *   CDZ_PAD_CONSTANT: any npad in 1..ndim; negative pads crop (as F.pad allows); new
 *     elements are `value` (rounded to the dtype).
 *   CDZ_PAD_REFLECT: npad 1..3 (torch: ReflectionPad1d/2d/3d), pads >= 0 and < the dim's
 *     size (torch's rule; HTDemucs' pad1d wrapper handles shorter inputs at the model level).
 *     Mirror without repeating the edge: x = [a b c d], pad 2 -> [c b | a b c d | c b].
 *   CDZ_PAD_REPLICATE: npad 1..3, pads >= 0, the dim non-empty; repeats the edge element.
 *   CDZ_PAD_CIRCULAR: npad 1..3, 0 <= pads <= the dim's size; wraps around.
 *   `value` is ignored by the non-constant modes.
 *
 * upsample_bilinear: F.interpolate(x, size=(Ho, Wo), mode='bilinear',
 *   align_corners=align_corners), x [N, C, H, W] contiguous, y [N, C, Ho, Wo]. Source index
 *   computed as PyTorch does, in fp32:
 *     align_corners:  src = dst * (in - 1) / (out - 1)          (0 when out == 1)
 *     otherwise:      src = max(0, fma(r, dst + 0.5, -0.5)),  r = in / out, or 1 / scale when
 *                     scale > 0 is given (F.interpolate(scale_factor=s) without
 *                     recompute_scale_factor passes s to the kernel: pass it here too;
 *                     scale <= 0: derive r from the sizes). scale is ignored with align_corners.
 *   i0 = floor(src), i1 = min(i0 + 1, in - 1), l1 = src - i0, l0 = 1 - l1;
 *   y = l0h * (l0w * x[i0h, i0w] + l1w * x[i0h, i1w]) + l1h * (l0w * x[i1h, i0w] + l1w * x[i1h, i1w])
 *   The fma (one rounding) is how PyTorch's compiled kernels evaluate the source index (checked
 *   against torch 2.11 CPU and CUDA: identical indices; the weighted sum may differ by an ulp).
 *   Every other product and sum is rounded separately: CPU and CUDA agree bit for bit.
 * global_avg_pool: F.adaptive_avg_pool2d(x, 1) / x.mean((2, 3)): x [N, C, H, W] contiguous,
 *   y [N, C] or [N, C, 1, 1]. Sums in double (CPU and CUDA).
 *
 * defines: cdz_pad_mode, cdz_permute, cdz_copy_strided, cdz_slice, cdz_concat, cdz_pad,
 *          cdz_upsample_bilinear, cdz_global_avg_pool (+ _cpu, _cuda),
 *          cdz_copy_plan, cdz_copy_plan_make, cdz_pad_plan, cdz_pad_plan_make,
 *          cdz_copy_job, cdz_permute_jobs, cdz_slice_jobs, cdz_concat_job, cdz_bilinear_scale
 */
#ifndef CDZ_KERNELS_LAYOUT_H
#define CDZ_KERNELS_LAYOUT_H

#include "cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cdz_pad_mode {
    CDZ_PAD_CONSTANT = 0,
    CDZ_PAD_REFLECT,
    CDZ_PAD_REPLICATE,
    CDZ_PAD_CIRCULAR,
} cdz_pad_mode;

cdz_status cdz_permute(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, const int32_t *perm);
cdz_status cdz_copy_strided(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);
cdz_status cdz_slice(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim,
                     int64_t start, int64_t end, int64_t step);
cdz_status cdz_concat(cdz_ctx *ctx, const cdz_tensor *const *xs, int n, int32_t dim,
                      cdz_tensor *y);
cdz_status cdz_pad(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t npad,
                   const int64_t *pad_begin, const int64_t *pad_end, cdz_pad_mode mode,
                   float value);
cdz_status cdz_upsample_bilinear(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y,
                                 bool align_corners, double scale_h, double scale_w);
cdz_status cdz_global_avg_pool(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);

/* Backends: same arguments, preconditions already checked by the entries above. */
cdz_status cdz_permute_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, const int32_t *perm);
cdz_status cdz_copy_strided_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);
cdz_status cdz_slice_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim,
                         int64_t start, int64_t end, int64_t step);
cdz_status cdz_concat_cpu(cdz_ctx *ctx, const cdz_tensor *const *xs, int n, int32_t dim,
                          cdz_tensor *y);
cdz_status cdz_pad_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t npad,
                       const int64_t *pad_begin, const int64_t *pad_end, cdz_pad_mode mode,
                       float value);
cdz_status cdz_upsample_bilinear_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y,
                                     bool align_corners, double scale_h, double scale_w);
cdz_status cdz_global_avg_pool_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);
#ifdef CDZ_HAVE_CUDA
cdz_status cdz_permute_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, const int32_t *perm);
cdz_status cdz_copy_strided_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);
cdz_status cdz_slice_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim,
                          int64_t start, int64_t end, int64_t step);
cdz_status cdz_concat_cuda(cdz_ctx *ctx, const cdz_tensor *const *xs, int n, int32_t dim,
                           cdz_tensor *y);
cdz_status cdz_pad_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t npad,
                        const int64_t *pad_begin, const int64_t *pad_end, cdz_pad_mode mode,
                        float value);
cdz_status cdz_upsample_bilinear_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y,
                                      bool align_corners, double scale_h, double scale_w);
cdz_status cdz_global_avg_pool_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y);
#endif

/* ---- internal, shared by the CPU and CUDA backends ---- */

/* A copy of `shape` elements from src (element strides ss) to dst (strides ds), size-1 dims
 * dropped and mergeable neighbours merged; ndim >= 1. */
typedef struct cdz_copy_plan {
    int32_t ndim;
    size_t elem;
    int64_t numel;
    int64_t shape[CDZ_MAX_DIMS];
    int64_t ss[CDZ_MAX_DIMS];
    int64_t ds[CDZ_MAX_DIMS];
} cdz_copy_plan;
void cdz_copy_plan_make(int32_t ndim, const int64_t *shape, const int64_t *src_stride,
                        const int64_t *dst_stride, size_t elem, cdz_copy_plan *out);

/* The copy an op performs (src / dst point at the views' first elements): permute
 * (perm NULL: identity, i.e. copy_strided) and slice make one, concat one per input k.
 * Each returns 0 when there is nothing to copy (no elements), else 1. */
typedef struct cdz_copy_job {
    const void *src;
    void *dst;
    cdz_copy_plan plan;
} cdz_copy_job;
int cdz_permute_jobs(const cdz_tensor *x, cdz_tensor *y, const int32_t *perm, cdz_copy_job *job);
int cdz_slice_jobs(const cdz_tensor *x, cdz_tensor *y, int32_t dim, int64_t start, int64_t step,
                   cdz_copy_job *job);
int cdz_concat_job(const cdz_tensor *const *xs, int k, int32_t dim, cdz_tensor *y,
                   cdz_copy_job *job);

/* pad: y (contiguous) dims with x's strides and per-dim begin pads / x sizes; dims that are
 * not padded are merged where x's strides allow. */
typedef struct cdz_pad_plan {
    int32_t ndim;
    int64_t ny[CDZ_MAX_DIMS];   /* y sizes */
    int64_t nx[CDZ_MAX_DIMS];   /* x sizes */
    int64_t sx[CDZ_MAX_DIMS];   /* x strides */
    int64_t begin[CDZ_MAX_DIMS];
} cdz_pad_plan;
void cdz_pad_plan_make(const cdz_tensor *x, const cdz_tensor *y, int32_t npad,
                       const int64_t *pad_begin, cdz_pad_plan *out);

/* PyTorch's area_pixel_compute_scale in fp32. */
float cdz_bilinear_scale(int64_t in, int64_t out, bool align_corners, double scale);

#ifdef __cplusplus
}
#endif
#endif /* CDZ_KERNELS_LAYOUT_H */
