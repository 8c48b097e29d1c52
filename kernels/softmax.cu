/*
 * softmax.cu: cdz_softmax on CUDA (see softmax.h for the math and special values).
 *
 * The max uses fmaxf, which skips NaN; a NaN entry still makes its row's sum NaN, hence the
 * whole row NaN, as in PyTorch. x and y are not __restrict__: in place is allowed, and
 * every element is read (all passes of its row done) before it is written.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "check.h"   // defines: CDZ_CUDA_CHECK, CDZ_LAUNCH_CHECK, CDZ_TRY
#include "ctx.h"     // defines: struct cdz_ctx
#include "softmax.h" // defines: cdz_softmax_cuda

#define SOFTMAX_WARP_MAX 2048 /* longest row one warp holds in registers (64 per lane) */
#define SOFTMAX_BLOCK 512      /* threads per row for longer rows */
#define SOFTMAX_SMEM_DEFAULT (48 << 10) /* dynamic shared memory without an opt-in */

static __device__ __forceinline__ float ld_f(const float *p, int64_t i) { return p[i]; }
static __device__ __forceinline__ float ld_f(const __half *p, int64_t i) { return __half2float(p[i]); }
static __device__ __forceinline__ float ld_f(const __nv_bfloat16 *p, int64_t i) {
    return __bfloat162float(p[i]);
}
static __device__ __forceinline__ void st_f(float *p, int64_t i, float v) { p[i] = v; }
static __device__ __forceinline__ void st_f(__half *p, int64_t i, float v) { p[i] = __float2half_rn(v); }
static __device__ __forceinline__ void st_f(__nv_bfloat16 *p, int64_t i, float v) {
    p[i] = __float2bfloat16_rn(v);
}

static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One warp per row, V values per lane (len <= 32 * V), the row kept in registers. */
template <typename TX, typename TY, int V>
static __global__ void softmax_warp_kernel(const TX *x, TY *y, int64_t rows, int len,
                                           float scale) {
    int lane = threadIdx.x & 31;
    int64_t warps_per_block = blockDim.x >> 5;
    int64_t step = (int64_t)gridDim.x * warps_per_block;
    /* every lane of a warp runs the same rows, so full-mask shuffles are safe */
    for (int64_t r = (int64_t)blockIdx.x * warps_per_block + (threadIdx.x >> 5); r < rows;
         r += step) {
        const int64_t base = r * len;
        float v[V];
        float m = -INFINITY;
#pragma unroll
        for (int i = 0; i < V; i++) {
            int j = lane + 32 * i;
            v[i] = j < len ? scale * ld_f(x, base + j) : -INFINITY;
            m = fmaxf(m, v[i]);
        }
        m = warp_max(m);
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < V; i++) {
            int j = lane + 32 * i;
            if (j < len) { /* padding skipped: exp(-inf - -inf) would be NaN */
                v[i] = expf(v[i] - m);
                s += v[i];
            }
        }
        s = warp_sum(s);
#pragma unroll
        for (int i = 0; i < V; i++) {
            int j = lane + 32 * i;
            if (j < len) st_f(y, base + j, v[i] / s);
        }
    }
}

/* Block-wide reduction; every thread gets the result. The leading barrier keeps a previous
 * reduction's readers ahead of this one's writers. */
template <bool MAX>
static __device__ __forceinline__ float block_reduce(float v, float *sh) {
    v = MAX ? warp_max(v) : warp_sum(v);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : (MAX ? -INFINITY : 0.0f);
    return MAX ? warp_max(v) : warp_sum(v);
}

/* One block per row. CACHE: the row (scaled, then exponentiated) is kept in dynamic shared
 * memory, so x is read once; otherwise three passes over global memory (max, sum, write),
 * the re-reads served from L2. Each thread touches the same indices in every pass, so the
 * cache needs no barriers beyond the reductions'. */
template <typename TX, typename TY, bool CACHE>
static __global__ void softmax_block_kernel(const TX *x, TY *y, int64_t rows, int64_t len,
                                            float scale) {
    extern __shared__ float row_cache[]; /* len floats when CACHE */
    __shared__ float sh[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const int64_t base = r * len;
        float m = -INFINITY;
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
            float v = scale * ld_f(x, base + j);
            if (CACHE) row_cache[j] = v;
            m = fmaxf(m, v);
        }
        m = block_reduce<true>(m, sh);
        float s = 0.0f;
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
            float e = expf((CACHE ? row_cache[j] : scale * ld_f(x, base + j)) - m);
            if (CACHE) row_cache[j] = e;
            s += e;
        }
        s = block_reduce<false>(s, sh); /* its barriers end every thread's reads of the row */
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x)
            st_f(y, base + j, (CACHE ? row_cache[j] : expf(scale * ld_f(x, base + j) - m)) / s);
    }
}

template <typename TX, typename TY, int V>
static void launch_warp(cdz_ctx *ctx, const TX *x, TY *y, int64_t rows, int len, float scale) {
    const int threads = 128, rows_per_block = threads / 32;
    int64_t want = (rows + rows_per_block - 1) / rows_per_block;
    int64_t cap = (int64_t)ctx->sm_count * 64;
    unsigned blocks = (unsigned)(want < cap ? want : cap);
    softmax_warp_kernel<TX, TY, V><<<blocks, threads, 0, ctx->stream>>>(x, y, rows, len, scale);
}

template <typename TX, typename TY>
static cdz_status softmax_launch(cdz_ctx *ctx, const TX *x, TY *y, int64_t rows, int64_t len,
                                 float scale) {
    if (len <= SOFTMAX_WARP_MAX) {
        int l = (int)len;
        if (l <= 32) launch_warp<TX, TY, 1>(ctx, x, y, rows, l, scale);
        else if (l <= 64) launch_warp<TX, TY, 2>(ctx, x, y, rows, l, scale);
        else if (l <= 128) launch_warp<TX, TY, 4>(ctx, x, y, rows, l, scale);
        else if (l <= 256) launch_warp<TX, TY, 8>(ctx, x, y, rows, l, scale);
        else if (l <= 512) launch_warp<TX, TY, 16>(ctx, x, y, rows, l, scale);
        else if (l <= 1024) launch_warp<TX, TY, 32>(ctx, x, y, rows, l, scale);
        else launch_warp<TX, TY, 64>(ctx, x, y, rows, l, scale);
    } else {
        int64_t cap = (int64_t)ctx->sm_count * 8;
        unsigned blocks = (unsigned)(rows < cap ? rows : cap);
        size_t smem = (size_t)len * sizeof(float);
        size_t limit = ctx->smem_optin > SOFTMAX_SMEM_DEFAULT ? ctx->smem_optin : SOFTMAX_SMEM_DEFAULT;
        /* leave room for the reduction's static 128 bytes */
        if (smem + 256 <= limit) {
            if (smem > SOFTMAX_SMEM_DEFAULT)
                CDZ_CUDA_CHECK(cudaFuncSetAttribute(softmax_block_kernel<TX, TY, true>,
                                                    cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                    (int)smem));
            softmax_block_kernel<TX, TY, true><<<blocks, SOFTMAX_BLOCK, smem, ctx->stream>>>(
                x, y, rows, len, scale);
        } else {
            softmax_block_kernel<TX, TY, false><<<blocks, SOFTMAX_BLOCK, 0, ctx->stream>>>(
                x, y, rows, len, scale);
        }
    }
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

template <typename TX>
static cdz_status softmax_dispatch_y(cdz_ctx *ctx, const TX *x, cdz_tensor *y, int64_t rows,
                                     int64_t len, float scale) {
    switch (y->dtype) {
    case CDZ_DTYPE_F16: return softmax_launch(ctx, x, (__half *)y->data, rows, len, scale);
    case CDZ_DTYPE_BF16: return softmax_launch(ctx, x, (__nv_bfloat16 *)y->data, rows, len, scale);
    default: return softmax_launch(ctx, x, (float *)y->data, rows, len, scale);
    }
}

extern "C" cdz_status cdz_softmax_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y,
                                       float scale) {
    int64_t len = x->shape[x->ndim - 1];
    int64_t rows = len > 0 ? cdz_tensor_numel(x) / len : 0;
    if (rows == 0) return CDZ_STATUS_OK;
    CDZ_CUDA_CHECK(cudaSetDevice(ctx->device.index));
    switch (x->dtype) {
    case CDZ_DTYPE_F16:
        return softmax_dispatch_y(ctx, (const __half *)x->data, y, rows, len, scale);
    case CDZ_DTYPE_BF16:
        return softmax_dispatch_y(ctx, (const __nv_bfloat16 *)x->data, y, rows, len, scale);
    default: return softmax_dispatch_y(ctx, (const float *)x->data, y, rows, len, scale);
    }
}
