/*
 * softmax.h: numerically stable softmax over the last dim.
 *
 * Matches torch.softmax(scale * x, dim=-1):
 *
 *   x [..., L]   y [..., L]   (same shape; any number of rows R = numel / L, L >= 1)
 *   v[j]  = scale * x[r, j]
 *   y[r, j] = exp(v[j] - max_j v) / sum_j exp(v[j] - max_j v)
 *
 * Special values follow PyTorch's formula: a -inf entry (a masked score) gets exactly 0; a
 * row whose entries are all -inf has no defined softmax and gives NaN in every entry (as
 * torch.softmax does; attention code that can mask a whole row must handle that itself);
 * a NaN anywhere in a row makes the whole row NaN. `scale` must be finite (checked); with
 * scale == 0 every finite row is uniform.
 *
 * Dtypes: x and y are each f32, f16 or bf16 (they may differ, e.g. f16 scores to f32
 * probabilities); all math is fp32 on CUDA (expf, no fast-math) and double on the CPU,
 * with one rounding to y's dtype. In place (y->data == x->data, same dtype) is allowed;
 * any other overlap is refused. Contiguous tensors on ctx's device.
 *
 * CUDA: rows of up to 2048 elements take one warp each and stay in registers; longer rows
 * take one block each and stay in shared memory (up to the device's opt-in limit, about
 * 56K elements on an H100): one read, one write. Still longer rows make three passes over
 * global memory (max, sum, write), the re-reads served from L2.
 *
 * defines: cdz_softmax, cdz_softmax_cpu, cdz_softmax_cuda
 */
#ifndef CDZ_KERNELS_SOFTMAX_H
#define CDZ_KERNELS_SOFTMAX_H

#include "cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

cdz_status cdz_softmax(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, float scale);

/* Unchecked back ends: call through cdz_softmax. */
cdz_status cdz_softmax_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, float scale);
#ifdef CDZ_HAVE_CUDA
cdz_status cdz_softmax_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, float scale);
#endif

#ifdef __cplusplus
}
#endif
#endif /* CDZ_KERNELS_SOFTMAX_H */
