/*
 * rope.cu: rotate-half rotary embedding. A thread owns one (position l, pair i) or one
 * pass-through dim, computes cos/sin once and applies them to every (b, h) row it is
 * given (blockIdx.y strides over the B*H rows), so the angle math is amortised.
 * Angles: same fp32 steps as the CPU reference (see rope.h); pow/cos/sin in double and
 * rounded to fp32, so both back ends see identical cos/sin.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

#include "check.h"
#include "ctx.h"
#include "rope.h"

#define ROPE_THREADS 256

typedef struct rope_args {
    const void *x;
    void *y;
    long long L, BH, H;
    long long sb, sl, sh; /* element strides of a (b, l, h) row */
    long long width;      /* work items per position: half pairs + pass-through dims */
    int D, rot_dim, half;
    float theta;
    long long pos_offset;
} rope_args;

template <typename T> __device__ __forceinline__ float rope_ld(const T *p);
template <> __device__ __forceinline__ float rope_ld<float>(const float *p) { return *p; }
template <> __device__ __forceinline__ float rope_ld<__half>(const __half *p) {
    return __half2float(*p);
}
template <> __device__ __forceinline__ float rope_ld<__nv_bfloat16>(const __nv_bfloat16 *p) {
    return __bfloat162float(*p);
}

template <typename T> __device__ __forceinline__ void rope_st(T *p, float v);
template <> __device__ __forceinline__ void rope_st<float>(float *p, float v) { *p = v; }
template <> __device__ __forceinline__ void rope_st<__half>(__half *p, float v) {
    *p = __float2half_rn(v);
}
template <> __device__ __forceinline__ void rope_st<__nv_bfloat16>(__nv_bfloat16 *p, float v) {
    *p = __float2bfloat16_rn(v);
}

template <typename T>
static __global__ void rope_kernel(rope_args a) {
    const T *x = (const T *)a.x;
    T *y = (T *)a.y;
    const long long items = a.L * a.width;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < items;
         t += (long long)gridDim.x * blockDim.x) {
        const long long l = t / a.width;
        const int k = (int)(t - l * a.width);
        if (k < a.half) {
            /* the fp32 steps of rope.h, written out so nothing is contracted or reordered */
            const float e = __fdiv_rn((float)(2 * k), (float)a.rot_dim);
            const float pw = (float)pow((double)a.theta, (double)e);
            const float inv_freq = __fdiv_rn(1.0f, pw);
            const float angle = __fmul_rn((float)(a.pos_offset + l), inv_freq);
            double sd, cd;
            sincos((double)angle, &sd, &cd);
            const float c = (float)cd, s = (float)sd;
            for (long long bh = blockIdx.y; bh < a.BH; bh += gridDim.y) {
                const long long b = bh / a.H, h = bh - b * a.H;
                const long long row = b * a.sb + l * a.sl + h * a.sh;
                const float x1 = rope_ld(x + row + k), x2 = rope_ld(x + row + k + a.half);
                rope_st(y + row + k, x1 * c - x2 * s);
                rope_st(y + row + k + a.half, x2 * c + x1 * s);
            }
        } else { /* only when y != x: copy dims rot_dim.. unchanged */
            const int d = a.rot_dim + (k - a.half);
            for (long long bh = blockIdx.y; bh < a.BH; bh += gridDim.y) {
                const long long b = bh / a.H, h = bh - b * a.H;
                const long long row = b * a.sb + l * a.sl + h * a.sh;
                y[row + d] = x[row + d];
            }
        }
    }
}

extern "C" cdz_status cdz_rope_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y,
                                    int32_t rot_dim, float theta, int64_t pos_offset,
                                    bool heads_first) {
    const long long B = x->shape[0], D = x->shape[3];
    const long long L = heads_first ? x->shape[2] : x->shape[1];
    const long long H = heads_first ? x->shape[1] : x->shape[2];
    if (B * L * H * D == 0) return CDZ_STATUS_OK;
    const bool in_place = x->data == y->data;
    rope_args a;
    a.x = x->data;
    a.y = y->data;
    a.L = L;
    a.H = H;
    a.BH = B * H;
    a.sb = L * H * D;
    a.sl = heads_first ? D : H * D;
    a.sh = heads_first ? L * D : D;
    a.D = (int)D;
    a.rot_dim = rot_dim;
    a.half = rot_dim / 2;
    a.width = a.half + (in_place ? 0 : D - rot_dim);
    a.theta = theta;
    a.pos_offset = pos_offset;
    if (D > INT32_MAX)
        return cdz_error_set(CDZ_STATUS_TOO_LARGE, "rope: D = %lld exceeds 2^31", D);

    const long long items = L * a.width;
    long long gx = (items + ROPE_THREADS - 1) / ROPE_THREADS;
    const long long gx_max = (long long)ctx->sm_count * 32;
    if (gx > gx_max) gx = gx_max;
    if (gx < 1) gx = 1;
    /* few positions but many rows: spread the rows over blockIdx.y */
    long long gy = ((long long)ctx->sm_count * 8 + gx - 1) / gx;
    if (gy > a.BH) gy = a.BH;
    if (gy > 65535) gy = 65535;
    if (gy < 1) gy = 1;
    const dim3 grid((unsigned)gx, (unsigned)gy);
    switch (x->dtype) {
    case CDZ_DTYPE_F32: rope_kernel<float><<<grid, ROPE_THREADS, 0, ctx->stream>>>(a); break;
    case CDZ_DTYPE_F16: rope_kernel<__half><<<grid, ROPE_THREADS, 0, ctx->stream>>>(a); break;
    case CDZ_DTYPE_BF16:
        rope_kernel<__nv_bfloat16><<<grid, ROPE_THREADS, 0, ctx->stream>>>(a);
        break;
    default:
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "rope: dtype %s is not supported",
                             cdz_dtype_name(x->dtype));
    }
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}
