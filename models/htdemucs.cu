/*
 * htdemucs.cu: CUDA side of the HTDemucs glue (models/htdemucs.h): the input
 * normalisation kernel and the load-time upload. The CPU references are in htdemucs.c.
 */
#include <cuda_runtime_api.h>

#include "check.h"
#include "ctx.h"
#include "htdemucs.h"

/* y[b, i] = (x[b, i] - mean[b]) / (eps + std[b]); IEEE sub / add / div, no contraction
 * possible (no multiply), so the result equals the CPU reference bit for bit. */
static __global__ void htd_normalize_kernel(const float *x, const float *mean, const float *std,
                                            float *y, long long rows, long long n, float eps) {
    const long long total = rows * n;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long b = i / n;
        const float d = eps + std[b];
        y[i] = (x[i] - mean[b]) / d;
    }
}

extern "C" cdz_status cdz_htd_normalize_cuda(cdz_ctx *ctx, const cdz_tensor *x,
                                             const cdz_tensor *mean, const cdz_tensor *std,
                                             cdz_tensor *y, float eps) {
    const long long rows = (long long)x->shape[0];
    const long long total = (long long)cdz_tensor_numel(x);
    if (total == 0) return CDZ_STATUS_OK;
    const long long n = total / rows;
    const int block = 256;
    long long grid = (total + block - 1) / block;
    const long long max_grid = (long long)(ctx->sm_count > 0 ? ctx->sm_count : 1) * 32;
    if (grid > max_grid) grid = max_grid;
    htd_normalize_kernel<<<(unsigned)grid, block, 0, ctx->stream>>>(
        (const float *)x->data, (const float *)mean->data, (const float *)std->data,
        (float *)y->data, rows, n, eps);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

extern "C" cdz_status cdz_htd_copy_to_device(int device, void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return CDZ_STATUS_OK;
    int prev = 0;
    CDZ_CUDA_CHECK(cudaGetDevice(&prev));
    CDZ_CUDA_CHECK(cudaSetDevice(device));
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
    cudaSetDevice(prev);
    CDZ_CUDA_CHECK(e);
    return CDZ_STATUS_OK;
}
