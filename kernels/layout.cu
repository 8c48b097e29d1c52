/*
 * layout.cu: CUDA backends of layout.h.
 *
 * Copies (permute, copy_strided, slice, concat) run the plans of layout.c:
 *  - one contiguous run on both sides: cudaMemcpyAsync;
 *  - a transpose (the destination's fastest dim is strided in the source, and another dim is
 *    the source's fastest): 32x32 tiles through shared memory, coalesced on both sides;
 *  - otherwise a gather: one thread per element, offsets from div/mod over the plan's dims.
 * Kernels move elements as 1/2/4/8-byte integers: exact for every dtype.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "ctx.h"
#include "half.h"
#include "layout.h"

static const int kBlock = 256;

static unsigned grid_for(const cdz_ctx *ctx, int64_t n) {
    int64_t blocks = (n + kBlock - 1) / kBlock;
    int64_t cap = (int64_t)(ctx->sm_count > 0 ? ctx->sm_count : 80) * 16; /* grid-stride beyond */
    if (blocks > cap) blocks = cap;
    return (unsigned)(blocks > 0 ? blocks : 1);
}

/* ---------------------------------------------------------------- strided copy */

struct copy_args {
    int32_t ndim;
    int64_t shape[CDZ_MAX_DIMS];
    int64_t ss[CDZ_MAX_DIMS];
    int64_t ds[CDZ_MAX_DIMS];
};

template <typename T, typename I>
static __global__ void gather_kernel(const T *__restrict__ src, T *__restrict__ dst, I n,
                                     copy_args a) {
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I rem = i, so = 0, dof = 0;
        for (int d = a.ndim - 1; d > 0; d--) {
            I sz = (I)a.shape[d];
            I c = rem % sz;
            rem /= sz;
            so += c * (I)a.ss[d];
            dof += c * (I)a.ds[d];
        }
        so += rem * (I)a.ss[0];
        dof += rem * (I)a.ds[0];
        dst[dof] = src[so];
    }
}

#define TILE 32
#define TILE_ROWS 8

/* dst[.., j, .., l] = src[...] where l (dst stride 1) has src stride sls and j (src stride 1)
 * has dst stride sjd; the remaining "batch" dims come from div/mod. */
struct tile_args {
    int32_t nb;
    int64_t bshape[CDZ_MAX_DIMS];
    int64_t bss[CDZ_MAX_DIMS];
    int64_t bds[CDZ_MAX_DIMS];
    int64_t nj, nl, sjd, sls, tiles_j, tiles_l;
};

template <typename T>
static __global__ void transpose_kernel(const T *__restrict__ src, T *__restrict__ dst,
                                        tile_args a) {
    __shared__ T tile[TILE][TILE + 1]; /* [l][j]; +1 avoids bank conflicts on the column read */
    int64_t b = blockIdx.x;
    int64_t tl = b % a.tiles_l;
    b /= a.tiles_l;
    int64_t tj = b % a.tiles_j;
    b /= a.tiles_j;
    int64_t so = 0, dof = 0;
    for (int d = a.nb - 1; d >= 0; d--) {
        int64_t c = b % a.bshape[d];
        b /= a.bshape[d];
        so += c * a.bss[d];
        dof += c * a.bds[d];
    }
    int64_t j0 = tj * TILE, l0 = tl * TILE;
    int tx = threadIdx.x, ty = threadIdx.y;
#pragma unroll
    for (int r = 0; r < TILE; r += TILE_ROWS) {
        int64_t j = j0 + tx, l = l0 + ty + r;
        if (j < a.nj && l < a.nl) tile[ty + r][tx] = src[so + j + l * a.sls];
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < TILE; r += TILE_ROWS) {
        int64_t l = l0 + tx, j = j0 + ty + r;
        if (j < a.nj && l < a.nl) dst[dof + l + j * a.sjd] = tile[tx][ty + r];
    }
}

template <typename T>
static cdz_status run_copy_typed(cdz_ctx *ctx, const cdz_copy_job *job) {
    const cdz_copy_plan *p = &job->plan;
    const T *src = (const T *)job->src;
    T *dst = (T *)job->dst;
    int last = p->ndim - 1;
    /* transpose: tiles when both the dst-fastest and the src-fastest dims are long enough */
    int j = -1;
    if (p->ndim >= 2 && p->ds[last] == 1 && p->ss[last] != 1 && p->shape[last] >= 16)
        for (int d = 0; d < last; d++)
            if (p->ss[d] == 1 && p->shape[d] >= 16) j = d;
    if (j >= 0) {
        tile_args a;
        memset(&a, 0, sizeof a);
        for (int d = 0; d < last; d++) {
            if (d == j) continue;
            a.bshape[a.nb] = p->shape[d];
            a.bss[a.nb] = p->ss[d];
            a.bds[a.nb] = p->ds[d];
            a.nb++;
        }
        a.nj = p->shape[j];
        a.nl = p->shape[last];
        a.sjd = p->ds[j];
        a.sls = p->ss[last];
        a.tiles_j = (a.nj + TILE - 1) / TILE;
        a.tiles_l = (a.nl + TILE - 1) / TILE;
        int64_t blocks = a.tiles_j * a.tiles_l * (p->numel / (a.nj * a.nl));
        if (blocks <= INT32_MAX) {
            transpose_kernel<T><<<(unsigned)blocks, dim3(TILE, TILE_ROWS), 0, ctx->stream>>>(src, dst, a);
            CDZ_LAUNCH_CHECK(ctx);
            return CDZ_STATUS_OK;
        }
    }
    copy_args a;
    a.ndim = p->ndim;
    int64_t smax = 0, dmax = 0;
    for (int d = 0; d < CDZ_MAX_DIMS; d++) {
        a.shape[d] = p->shape[d];
        a.ss[d] = p->ss[d];
        a.ds[d] = p->ds[d];
        if (d < p->ndim) {
            smax += p->ss[d] * (p->shape[d] - 1);
            dmax += p->ds[d] * (p->shape[d] - 1);
        }
    }
    unsigned grid = grid_for(ctx, p->numel);
    int64_t lim = INT32_MAX - (int64_t)grid * kBlock; /* i + grid stride must not wrap */
    if (p->numel < lim && smax < lim && dmax < lim)
        gather_kernel<T, uint32_t><<<grid, kBlock, 0, ctx->stream>>>(src, dst, (uint32_t)p->numel, a);
    else
        gather_kernel<T, int64_t><<<grid, kBlock, 0, ctx->stream>>>(src, dst, p->numel, a);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

static cdz_status run_copy(cdz_ctx *ctx, const cdz_copy_job *job) {
    const cdz_copy_plan *p = &job->plan;
    if (p->ndim == 1 && (p->shape[0] == 1 || (p->ss[0] == 1 && p->ds[0] == 1))) {
        CDZ_CUDA_CHECK(cudaMemcpyAsync(job->dst, job->src, (size_t)p->numel * p->elem,
                                       cudaMemcpyDeviceToDevice, ctx->stream));
        return CDZ_STATUS_OK;
    }
    switch (p->elem) {
    case 1: return run_copy_typed<uint8_t>(ctx, job);
    case 2: return run_copy_typed<uint16_t>(ctx, job);
    case 4: return run_copy_typed<uint32_t>(ctx, job);
    case 8: return run_copy_typed<uint64_t>(ctx, job);
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "layout: unexpected element size %zu", p->elem);
    }
}

extern "C" cdz_status cdz_permute_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y,
                                       const int32_t *perm) {
    cdz_copy_job job;
    if (cdz_permute_jobs(x, y, perm, &job)) return run_copy(ctx, &job);
    return CDZ_STATUS_OK;
}

extern "C" cdz_status cdz_copy_strided_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    return cdz_permute_cuda(ctx, x, y, NULL);
}

extern "C" cdz_status cdz_slice_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y,
                                     int32_t dim, int64_t start, int64_t end, int64_t step) {
    cdz_copy_job job;
    if (cdz_slice_jobs(x, y, dim, start, step, &job)) return run_copy(ctx, &job);
    return CDZ_STATUS_OK;
}

extern "C" cdz_status cdz_concat_cuda(cdz_ctx *ctx, const cdz_tensor *const *xs, int n,
                                      int32_t dim, cdz_tensor *y) {
    for (int k = 0; k < n; k++) {
        cdz_copy_job job;
        if (cdz_concat_job(xs, k, dim, y, &job)) CDZ_TRY(run_copy(ctx, &job));
    }
    return CDZ_STATUS_OK;
}

/* ---------------------------------------------------------------- pad */

struct pad_args {
    int32_t ndim;
    int32_t mode;
    int64_t ny[CDZ_MAX_DIMS];
    int64_t nx[CDZ_MAX_DIMS];
    int64_t sx[CDZ_MAX_DIMS];
    int64_t begin[CDZ_MAX_DIMS];
};

/* Index into x for output coordinate o along a dim, or -1 for the constant value. */
template <typename I>
static __device__ __forceinline__ I pad_source(I o, I begin, I n, int mode) {
    I i = o - begin;
    if (i >= 0 && i < n) return i;
    switch (mode) {
    case CDZ_PAD_REFLECT: return i < 0 ? -i : 2 * (n - 1) - i;
    case CDZ_PAD_REPLICATE: return i < 0 ? 0 : n - 1;
    case CDZ_PAD_CIRCULAR: return i < 0 ? i + n : i - n;
    default: return -1;
    }
}

/* I is signed: begin pads may be negative (cropping). */
template <typename T, typename I>
static __global__ void pad_kernel(const T *__restrict__ src, T *__restrict__ dst, I total,
                                  pad_args a, T fill) {
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (I)gridDim.x * blockDim.x) {
        I rem = e, off = 0;
        bool constant = false;
        for (int d = a.ndim - 1; d >= 0; d--) {
            I sz = (I)a.ny[d];
            I o = d > 0 ? rem % sz : rem;
            rem /= sz;
            I i = pad_source<I>(o, (I)a.begin[d], (I)a.nx[d], a.mode);
            if (i < 0) constant = true;
            else off += i * (I)a.sx[d];
        }
        dst[e] = constant ? fill : src[off];
    }
}

template <typename T>
static cdz_status pad_launch(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, const pad_args &a,
                             T fill) {
    int64_t total = cdz_tensor_numel(y);
    unsigned grid = grid_for(ctx, total);
    int64_t lim = INT32_MAX - (int64_t)grid * kBlock;
    bool small = total < lim;
    int64_t xmax = 0;
    for (int d = 0; d < a.ndim; d++) {
        xmax += a.sx[d] * (a.nx[d] > 0 ? a.nx[d] - 1 : 0);
        small = small && a.ny[d] < lim && a.begin[d] < lim && a.begin[d] > -lim;
    }
    if (small && xmax < lim)
        pad_kernel<T, int32_t><<<grid, kBlock, 0, ctx->stream>>>((const T *)x->data, (T *)y->data,
                                                                (int32_t)total, a, fill);
    else
        pad_kernel<T, int64_t><<<grid, kBlock, 0, ctx->stream>>>((const T *)x->data, (T *)y->data,
                                                                total, a, fill);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

extern "C" cdz_status cdz_pad_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y,
                                   int32_t npad, const int64_t *pad_begin,
                                   const int64_t *pad_end, cdz_pad_mode mode, float value) {
    if (cdz_tensor_numel(y) == 0) return CDZ_STATUS_OK;
    cdz_pad_plan p;
    cdz_pad_plan_make(x, y, npad, pad_begin, &p);
    pad_args a;
    memset(&a, 0, sizeof a);
    a.ndim = p.ndim;
    a.mode = (int32_t)mode;
    for (int d = 0; d < CDZ_MAX_DIMS; d++) {
        a.ny[d] = p.ny[d];
        a.nx[d] = p.nx[d];
        a.sx[d] = p.sx[d];
        a.begin[d] = p.begin[d];
    }
    if (x->dtype == CDZ_DTYPE_F32) {
        uint32_t bits;
        memcpy(&bits, &value, 4);
        return pad_launch<uint32_t>(ctx, x, y, a, bits);
    }
    /* the host rounding of half.h: the same bits as the CPU reference */
    uint16_t h = x->dtype == CDZ_DTYPE_F16 ? cdz_f32_to_f16(value) : cdz_f32_to_bf16(value);
    return pad_launch<uint16_t>(ctx, x, y, a, h);
}

/* ---------------------------------------------------------------- bilinear */

static __device__ __forceinline__ float ld(const float *p) { return *p; }
static __device__ __forceinline__ float ld(const __half *p) { return __half2float(*p); }
static __device__ __forceinline__ float ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
static __device__ __forceinline__ void st(float *p, float v) { *p = v; }
static __device__ __forceinline__ void st(__half *p, float v) { *p = __float2half_rn(v); }
static __device__ __forceinline__ void st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

/* PyTorch's area_pixel_compute_source_index, each op rounded like the CPU reference
 * (explicit _rn intrinsics: nvcc may not contract them differently). */
static __device__ __forceinline__ void bilinear_index(float scale, int64_t dst, int64_t in,
                                                      bool align_corners, int64_t &i0,
                                                      int64_t &i1, float &l0, float &l1) {
    float src;
    if (align_corners) {
        src = __fmul_rn(scale, (float)dst);
    } else {
        src = __fmaf_rn(scale, __fadd_rn((float)dst, 0.5f), -0.5f); /* fused, as PyTorch */
        if (src < 0) src = 0;
    }
    i0 = (int64_t)src;
    i1 = i0 + (i0 < in - 1 ? 1 : 0);
    l1 = __fsub_rn(src, (float)i0);
    l0 = __fsub_rn(1.0f, l1);
}

template <typename T>
static __global__ void bilinear_kernel(const T *__restrict__ x, T *__restrict__ y, int64_t total,
                                       int64_t h, int64_t w, int64_t ho, int64_t wo, float rh,
                                       float rw, bool align_corners) {
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t ow = e % wo, t = e / wo;
        int64_t oh = t % ho, p = t / ho;
        int64_t h0, h1, w0, w1;
        float lh0, lh1, lw0, lw1;
        bilinear_index(rh, oh, h, align_corners, h0, h1, lh0, lh1);
        bilinear_index(rw, ow, w, align_corners, w0, w1, lw0, lw1);
        const T *b = x + p * h * w;
        float top = __fadd_rn(__fmul_rn(lw0, ld(b + h0 * w + w0)), __fmul_rn(lw1, ld(b + h0 * w + w1)));
        float bot = __fadd_rn(__fmul_rn(lw0, ld(b + h1 * w + w0)), __fmul_rn(lw1, ld(b + h1 * w + w1)));
        st(y + e, __fadd_rn(__fmul_rn(lh0, top), __fmul_rn(lh1, bot)));
    }
}

template <typename T>
static cdz_status bilinear_launch(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y,
                                  bool align_corners, double scale_h, double scale_w) {
    int64_t total = cdz_tensor_numel(y);
    if (total == 0) return CDZ_STATUS_OK;
    int64_t h = x->shape[2], w = x->shape[3], ho = y->shape[2], wo = y->shape[3];
    float rh = cdz_bilinear_scale(h, ho, align_corners, scale_h);
    float rw = cdz_bilinear_scale(w, wo, align_corners, scale_w);
    bilinear_kernel<T><<<grid_for(ctx, total), kBlock, 0, ctx->stream>>>(
        (const T *)x->data, (T *)y->data, total, h, w, ho, wo, rh, rw, align_corners);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

extern "C" cdz_status cdz_upsample_bilinear_cuda(cdz_ctx *ctx, const cdz_tensor *x,
                                                 cdz_tensor *y, bool align_corners,
                                                 double scale_h, double scale_w) {
    switch (x->dtype) {
    case CDZ_DTYPE_F32: return bilinear_launch<float>(ctx, x, y, align_corners, scale_h, scale_w);
    case CDZ_DTYPE_F16: return bilinear_launch<__half>(ctx, x, y, align_corners, scale_h, scale_w);
    case CDZ_DTYPE_BF16:
        return bilinear_launch<__nv_bfloat16>(ctx, x, y, align_corners, scale_h, scale_w);
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "upsample_bilinear: unexpected dtype %s",
                             cdz_dtype_name(x->dtype));
    }
}

/* ---------------------------------------------------------------- global average pool */

/* One warp per (n, c) plane; double sums so the result matches the CPU reference. */
template <typename T>
static __global__ void avg_pool_kernel(const T *__restrict__ x, T *__restrict__ y, int64_t planes,
                                       int64_t hw) {
    int64_t p = (int64_t)blockIdx.x * (kBlock / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    double s = 0;
    if (p < planes)
        for (int64_t i = lane; i < hw; i += 32) s += ld(x + p * hw + i);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
    if (lane == 0 && p < planes) st(y + p, (float)(s / (double)hw));
}

template <typename T>
static cdz_status avg_pool_launch(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    int64_t planes = x->shape[0] * x->shape[1], hw = x->shape[2] * x->shape[3];
    if (planes == 0) return CDZ_STATUS_OK;
    int64_t blocks = (planes + kBlock / 32 - 1) / (kBlock / 32);
    if (blocks > INT32_MAX)
        return cdz_error_set(CDZ_STATUS_TOO_LARGE, "global_avg_pool: %lld planes are too many",
                             (long long)planes);
    avg_pool_kernel<T><<<(unsigned)blocks, kBlock, 0, ctx->stream>>>((const T *)x->data,
                                                                     (T *)y->data, planes, hw);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

extern "C" cdz_status cdz_global_avg_pool_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    switch (x->dtype) {
    case CDZ_DTYPE_F32: return avg_pool_launch<float>(ctx, x, y);
    case CDZ_DTYPE_F16: return avg_pool_launch<__half>(ctx, x, y);
    case CDZ_DTYPE_BF16: return avg_pool_launch<__nv_bfloat16>(ctx, x, y);
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "global_avg_pool: unexpected dtype %s",
                             cdz_dtype_name(x->dtype));
    }
}
