/*
 * elementwise.cu: CUDA backends of elementwise.h. Grid-stride loops, fp32 math with
 * explicitly rounded ops (__fadd_rn / __fmul_rn: no FMA contraction) so results match the
 * CPU reference bit for bit. 32-bit index math when every offset fits, 64-bit otherwise.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "check.h"
#include "ctx.h"
#include "elementwise.h"

static __device__ __forceinline__ float ld(const float *p) { return *p; }
static __device__ __forceinline__ float ld(const __half *p) { return __half2float(*p); }
static __device__ __forceinline__ float ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
static __device__ __forceinline__ void st(float *p, float v) { *p = v; }
static __device__ __forceinline__ void st(__half *p, float v) { *p = __float2half_rn(v); }
static __device__ __forceinline__ void st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

static const int kBlock = 256;

static unsigned grid_for(const cdz_ctx *ctx, int64_t n) {
    int64_t blocks = (n + kBlock - 1) / kBlock;
    int64_t cap = (int64_t)(ctx->sm_count > 0 ? ctx->sm_count : 80) * 16; /* grid-stride beyond */
    if (blocks > cap) blocks = cap;
    return (unsigned)(blocks > 0 ? blocks : 1);
}

/* ---------------------------------------------------------------- add / sub / mul */

enum { OP_ADD = 0, OP_SUB = 1, OP_MUL = 2 };

template <int OP> static __device__ __forceinline__ float apply(float u, float v) {
    return OP == OP_ADD ? __fadd_rn(u, v) : OP == OP_SUB ? __fsub_rn(u, v) : __fmul_rn(u, v);
}

struct bcast_args {
    int32_t ndim;
    int64_t shape[CDZ_MAX_DIMS];
    int64_t sa[CDZ_MAX_DIMS];
    int64_t sb[CDZ_MAX_DIMS];
};

/* Same shape: a, b and y walk together. */
template <typename T, int OP, typename I>
static __global__ void binary_same_kernel(const T *a, const T *b, T *y, I n) {
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x)
        st(y + i, apply<OP>(ld(a + i), ld(b + i)));
}

/* General broadcast: y is contiguous over p.shape; a/b offsets from per-dim strides. */
template <typename T, int OP, typename I>
static __global__ void binary_bcast_kernel(const T *a, const T *b, T *y, I n, bcast_args p) {
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I rem = i, oa = 0, ob = 0;
        for (int d = p.ndim - 1; d > 0; d--) {
            I sz = (I)p.shape[d];
            I c = rem % sz;
            rem /= sz;
            oa += c * (I)p.sa[d];
            ob += c * (I)p.sb[d];
        }
        oa += rem * (I)p.sa[0];
        ob += rem * (I)p.sb[0];
        st(y + i, apply<OP>(ld(a + oa), ld(b + ob)));
    }
}

template <typename T, int OP>
static cdz_status binary_launch(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b,
                                cdz_tensor *y) {
    int64_t n = cdz_tensor_numel(y);
    if (n == 0) return CDZ_STATUS_OK;
    cdz_bcast_plan plan;
    cdz_bcast_plan_make(a, b, y, &plan);
    const T *pa = (const T *)a->data, *pb = (const T *)b->data;
    T *py = (T *)y->data;
    unsigned grid = grid_for(ctx, n);
    bool small = n < INT32_MAX - (int64_t)grid * kBlock; /* i + grid stride must not wrap */
    if (plan.ndim == 1 && plan.sa[0] == 1 && plan.sb[0] == 1) {
        if (small)
            binary_same_kernel<T, OP, uint32_t><<<grid, kBlock, 0, ctx->stream>>>(pa, pb, py, (uint32_t)n);
        else
            binary_same_kernel<T, OP, int64_t><<<grid, kBlock, 0, ctx->stream>>>(pa, pb, py, n);
        CDZ_LAUNCH_CHECK(ctx);
        return CDZ_STATUS_OK;
    }
    bcast_args args;
    args.ndim = plan.ndim;
    for (int d = 0; d < CDZ_MAX_DIMS; d++) {
        args.shape[d] = plan.shape[d];
        args.sa[d] = plan.sa[d];
        args.sb[d] = plan.sb[d];
    }
    /* every a/b offset is below numel(a/b) <= n, so "small" covers them too */
    if (small)
        binary_bcast_kernel<T, OP, uint32_t><<<grid, kBlock, 0, ctx->stream>>>(pa, pb, py, (uint32_t)n, args);
    else
        binary_bcast_kernel<T, OP, int64_t><<<grid, kBlock, 0, ctx->stream>>>(pa, pb, py, n, args);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

template <int OP>
static cdz_status binary_dispatch(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b,
                                  cdz_tensor *y) {
    switch (y->dtype) {
    case CDZ_DTYPE_F32: return binary_launch<float, OP>(ctx, a, b, y);
    case CDZ_DTYPE_F16: return binary_launch<__half, OP>(ctx, a, b, y);
    case CDZ_DTYPE_BF16: return binary_launch<__nv_bfloat16, OP>(ctx, a, b, y);
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "elementwise: unexpected dtype %s",
                             cdz_dtype_name(y->dtype));
    }
}

extern "C" cdz_status cdz_add_cuda(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b,
                                   cdz_tensor *y) {
    return binary_dispatch<OP_ADD>(ctx, a, b, y);
}
extern "C" cdz_status cdz_sub_cuda(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b,
                                   cdz_tensor *y) {
    return binary_dispatch<OP_SUB>(ctx, a, b, y);
}
extern "C" cdz_status cdz_mul_cuda(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b,
                                   cdz_tensor *y) {
    return binary_dispatch<OP_MUL>(ctx, a, b, y);
}

/* ---------------------------------------------------------------- scale */

template <typename T>
static __global__ void scale_kernel(const T *x, T *y, int64_t n, float alpha, float beta) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        st(y + i, __fadd_rn(__fmul_rn(alpha, ld(x + i)), beta));
}

template <typename T>
static cdz_status scale_launch(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, float alpha,
                               float beta) {
    int64_t n = cdz_tensor_numel(x);
    if (n == 0) return CDZ_STATUS_OK;
    scale_kernel<T><<<grid_for(ctx, n), kBlock, 0, ctx->stream>>>((const T *)x->data, (T *)y->data,
                                                                   n, alpha, beta);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

extern "C" cdz_status cdz_scale_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y,
                                     float alpha, float beta) {
    switch (x->dtype) {
    case CDZ_DTYPE_F32: return scale_launch<float>(ctx, x, y, alpha, beta);
    case CDZ_DTYPE_F16: return scale_launch<__half>(ctx, x, y, alpha, beta);
    case CDZ_DTYPE_BF16: return scale_launch<__nv_bfloat16>(ctx, x, y, alpha, beta);
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "scale: unexpected dtype %s",
                             cdz_dtype_name(x->dtype));
    }
}

/* ---------------------------------------------------------------- residual */

/* scale == NULL: plain x + r. Otherwise channel c = (i / inner) % channels. */
template <typename T, typename I>
static __global__ void residual_kernel(const T *x, const T *r, const T *scale, T *y, I n,
                                       I channels, I inner) {
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        float v = ld(r + i);
        if (scale) v = __fmul_rn(ld(scale + (i / inner) % channels), v);
        st(y + i, __fadd_rn(ld(x + i), v));
    }
}

template <typename T>
static cdz_status residual_launch(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *r,
                                  const cdz_tensor *scale, cdz_tensor *y, int32_t channel_dim) {
    int64_t n = cdz_tensor_numel(x);
    if (n == 0) return CDZ_STATUS_OK;
    int64_t channels = 1, inner = 1;
    if (scale) {
        int d = channel_dim < 0 ? channel_dim + x->ndim : channel_dim;
        channels = x->shape[d];
        for (int i = d + 1; i < x->ndim; i++) inner *= x->shape[i];
    }
    unsigned grid = grid_for(ctx, n);
    const T *px = (const T *)x->data, *pr = (const T *)r->data;
    const T *ps = scale ? (const T *)scale->data : (const T *)0;
    if (n < INT32_MAX - (int64_t)grid * kBlock) /* 32-bit division is much cheaper */
        residual_kernel<T, uint32_t><<<grid, kBlock, 0, ctx->stream>>>(
            px, pr, ps, (T *)y->data, (uint32_t)n, (uint32_t)channels, (uint32_t)inner);
    else
        residual_kernel<T, int64_t><<<grid, kBlock, 0, ctx->stream>>>(px, pr, ps, (T *)y->data, n,
                                                                      channels, inner);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

extern "C" cdz_status cdz_residual_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *r,
                                        const cdz_tensor *scale, cdz_tensor *y,
                                        int32_t channel_dim) {
    switch (x->dtype) {
    case CDZ_DTYPE_F32: return residual_launch<float>(ctx, x, r, scale, y, channel_dim);
    case CDZ_DTYPE_F16: return residual_launch<__half>(ctx, x, r, scale, y, channel_dim);
    case CDZ_DTYPE_BF16: return residual_launch<__nv_bfloat16>(ctx, x, r, scale, y, channel_dim);
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "residual: unexpected dtype %s",
                             cdz_dtype_name(x->dtype));
    }
}

/* ---------------------------------------------------------------- cast */

template <typename TI, typename TO>
static __global__ void cast_kernel(const TI *x, TO *y, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        st(y + i, ld(x + i));
}

template <typename TI, typename TO>
static cdz_status cast_launch(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    int64_t n = cdz_tensor_numel(x);
    if (n == 0) return CDZ_STATUS_OK;
    cast_kernel<TI, TO><<<grid_for(ctx, n), kBlock, 0, ctx->stream>>>((const TI *)x->data,
                                                                       (TO *)y->data, n);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

template <typename TI>
static cdz_status cast_to(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    switch (y->dtype) {
    case CDZ_DTYPE_F32: return cast_launch<TI, float>(ctx, x, y);
    case CDZ_DTYPE_F16: return cast_launch<TI, __half>(ctx, x, y);
    case CDZ_DTYPE_BF16: return cast_launch<TI, __nv_bfloat16>(ctx, x, y);
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "cast: unexpected dtype %s",
                             cdz_dtype_name(y->dtype));
    }
}

extern "C" cdz_status cdz_cast_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    if (x->dtype == y->dtype) {
        size_t bytes = cdz_tensor_nbytes(x);
        if (bytes > 0 && x->data != y->data)
            CDZ_CUDA_CHECK(cudaMemcpyAsync(y->data, x->data, bytes, cudaMemcpyDeviceToDevice,
                                           ctx->stream));
        return CDZ_STATUS_OK;
    }
    switch (x->dtype) {
    case CDZ_DTYPE_F32: return cast_to<float>(ctx, x, y);
    case CDZ_DTYPE_F16: return cast_to<__half>(ctx, x, y);
    case CDZ_DTYPE_BF16: return cast_to<__nv_bfloat16>(ctx, x, y);
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "cast: unexpected dtype %s",
                             cdz_dtype_name(x->dtype));
    }
}
