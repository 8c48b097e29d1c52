/*
 * reduce.h: sum / mean / standard deviation over one dim or over the whole tensor
 * (torch.sum, torch.mean, torch.std with keepdim=True, and their dim=None forms).
 *
 *   sum[o, i]  = sum_k x[o, k, i]                       x viewed as [outer, n, inner],
 *   mean[o, i] = sum[o, i] / n                          n = x.shape[dim]
 *   std[o, i]  = sqrt(sum_k (x[o, k, i] - mean)^2 / (n - correction))
 *                correction = 1 when unbiased (torch.std's default), 0 otherwise.
 *
 *  - x is f32, contiguous, on ctx's device; outputs are f32 and contiguous.
 *  - dim in [-ndim, ndim) reduces that dim: y has x's shape with that dim set to 1
 *    (keepdim=True), or x's shape with that dim removed (keepdim=False); both are accepted.
 *  - dim = CDZ_REDUCE_ALL reduces every element (x.sum(), x.mean(), x.std()); y holds one
 *    element (any shape of numel 1: [], [1], [1, 1], ...). HTDemucs normalises a whole track
 *    this way (mono = mix.mean(0); mono.mean(); mono.std()), millions of samples.
 *  - Edge cases as PyTorch: n = 0 gives sum 0, mean NaN, std NaN; n = 1 with unbiased gives
 *    std NaN (0 / 0; torch warns and returns nan), n = 1 biased gives 0. NaN inputs give NaN;
 *    inputs holding +-inf give NaN or +-inf (torch's sum of [inf, inf] is inf, ours may be NaN).
 *
 * Accuracy. Audio can carry a large DC offset (mean 100, std 0.01): a naive fp32 sum of
 * squares would cancel. The CPU reference accumulates in double, two passes (mean, then the
 * corrected sum of squared deviations). CUDA: each thread takes chunks of 16 values, computes
 * their mean in fp32 and the deviations from it (small numbers, so fp32 is exact enough),
 * turns them into (count, mean, M2) in double, and merges chunks, threads, blocks with
 * Chan et al.'s pairwise update; one memory pass. Long rows and whole tensors are split
 * over many blocks (partial (count, mean, M2) in the ctx workspace, then a second kernel);
 * results are deterministic (fixed merge order). CUDA error: std within ~1e-7 relative;
 * sum / mean within ~eps * sum|x| (a cancelling sum near 0 is not relatively exact, as with
 * any fp32 kernel). Measured on an H100 SXM: whole-tensor mean_std of
 * 16M floats 43 us (1.5 TB/s), std over rows of 64 / 4096: 2.0-2.3 TB/s, stereo mean(0) of
 * [2, 8M]: 2.6 TB/s.
 *
 * defines: CDZ_REDUCE_ALL, cdz_sum, cdz_mean, cdz_std, cdz_mean_std (+ _cpu, _cuda)
 */
#ifndef CDZ_KERNELS_REDUCE_H
#define CDZ_KERNELS_REDUCE_H

#include "cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dim value meaning "every element" (dim=None in torch). */
#define CDZ_REDUCE_ALL INT32_MIN

cdz_status cdz_sum(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim);
cdz_status cdz_mean(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim);
cdz_status cdz_std(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim, bool unbiased);
/* Both from one pass over x; mean and std have the same shape and must not overlap. */
cdz_status cdz_mean_std(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *mean, cdz_tensor *std,
                        int32_t dim, bool unbiased);

/* Backends: same arguments, preconditions already checked by the entries above. */
cdz_status cdz_sum_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim);
cdz_status cdz_mean_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim);
cdz_status cdz_std_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim,
                       bool unbiased);
cdz_status cdz_mean_std_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *mean,
                            cdz_tensor *std, int32_t dim, bool unbiased);
#ifdef CDZ_HAVE_CUDA
cdz_status cdz_sum_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim);
cdz_status cdz_mean_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim);
cdz_status cdz_std_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim,
                        bool unbiased);
cdz_status cdz_mean_std_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *mean,
                             cdz_tensor *std, int32_t dim, bool unbiased);
#endif

#ifdef __cplusplus
}
#endif
#endif /* CDZ_KERNELS_REDUCE_H */
