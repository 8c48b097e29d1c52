/*
 * activation.cu: CUDA kernels of activation.h. Storage f32/f16/bf16, math in fp32 with the
 * accurate libdevice functions (expf, erff, tanhf, sinf; no fast-math intrinsics), so
 * results agree with the CPU reference to a few fp32 ulps.
 *
 *  act_kernel   : grid-stride elementwise, one instantiation per (dtype, kind); 4 elements
 *                 per access (16 B f32, 8 B f16/bf16) when x and y are aligned for it.
 *  gated_kernel : glu / swiglu over y viewed as [outer, h, inner].
 *  snake_kernel : per-channel factors {a, 1/(b + 1e-9)} precomputed once per call into the
 *                 workspace (so exp and the division are not paid per element).
 * Channel / row indices come from a magic-number division when the tensor has < 2^31
 * elements, else from 64-bit division.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "activation.h"
#include "check.h"
#include "ctx.h"

/* ------------------------------------------------------------------ dtype helpers */
static __device__ __forceinline__ float load_f(const float *p, int64_t i) { return p[i]; }
static __device__ __forceinline__ float load_f(const __half *p, int64_t i) {
    return __half2float(p[i]);
}
static __device__ __forceinline__ float load_f(const __nv_bfloat16 *p, int64_t i) {
    return __bfloat162float(p[i]);
}
static __device__ __forceinline__ void store_f(float *p, int64_t i, float v) { p[i] = v; }
static __device__ __forceinline__ void store_f(__half *p, int64_t i, float v) {
    p[i] = __float2half_rn(v);
}
static __device__ __forceinline__ void store_f(__nv_bfloat16 *p, int64_t i, float v) {
    p[i] = __float2bfloat16_rn(v);
}

/* Four consecutive elements (16 bytes of f32, 8 of f16/bf16) in one access; p + i must be
 * aligned to that size. Fewer, wider memory instructions are what 2-byte types need to
 * approach the bandwidth of the GPU. */
static __device__ __forceinline__ void load4(const float *p, int64_t i, float v[4]) {
    const float4 f = *reinterpret_cast<const float4 *>(p + i);
    v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
}
static __device__ __forceinline__ void store4(float *p, int64_t i, const float v[4]) {
    *reinterpret_cast<float4 *>(p + i) = make_float4(v[0], v[1], v[2], v[3]);
}
static __device__ __forceinline__ void load4(const __half *p, int64_t i, float v[4]) {
    const uint2 u = *reinterpret_cast<const uint2 *>(p + i);
    __half2 a, b;
    memcpy(&a, &u.x, 4);
    memcpy(&b, &u.y, 4);
    const float2 fa = __half22float2(a), fb = __half22float2(b);
    v[0] = fa.x, v[1] = fa.y, v[2] = fb.x, v[3] = fb.y;
}
static __device__ __forceinline__ void store4(__half *p, int64_t i, const float v[4]) {
    const __half2 a = __floats2half2_rn(v[0], v[1]), b = __floats2half2_rn(v[2], v[3]);
    uint2 u;
    memcpy(&u.x, &a, 4);
    memcpy(&u.y, &b, 4);
    *reinterpret_cast<uint2 *>(p + i) = u;
}
static __device__ __forceinline__ void load4(const __nv_bfloat16 *p, int64_t i, float v[4]) {
    const uint2 u = *reinterpret_cast<const uint2 *>(p + i);
    __nv_bfloat162 a, b;
    memcpy(&a, &u.x, 4);
    memcpy(&b, &u.y, 4);
    const float2 fa = __bfloat1622float2(a), fb = __bfloat1622float2(b);
    v[0] = fa.x, v[1] = fa.y, v[2] = fb.x, v[3] = fb.y;
}
static __device__ __forceinline__ void store4(__nv_bfloat16 *p, int64_t i, const float v[4]) {
    const __nv_bfloat162 a = __floats2bfloat162_rn(v[0], v[1]);
    const __nv_bfloat162 b = __floats2bfloat162_rn(v[2], v[3]);
    uint2 u;
    memcpy(&u.x, &a, 4);
    memcpy(&u.y, &b, 4);
    *reinterpret_cast<uint2 *>(p + i) = u;
}

/* Both pointers aligned for load4/store4 of T. */
template <typename T>
static bool vec4_ok(const void *a, const void *b) {
    return (((uintptr_t)a | (uintptr_t)b) % (4 * sizeof(T))) == 0;
}

/* ------------------------------------------------------------------ index division */
/* Magic-number division (Granlund-Montgomery, as PyTorch's IntDivider): valid for n < 2^31. */
struct udiv32 {
    uint32_t d, m, s;
};

static udiv32 udiv32_make(uint32_t d) {
    udiv32 r;
    r.d = d;
    r.s = 0;
    while ((1ull << r.s) < d) r.s++;
    r.m = (uint32_t)(((1ull << 32) * ((1ull << r.s) - d)) / d + 1);
    return r;
}

static __device__ __forceinline__ uint32_t udiv32_div(udiv32 v, uint32_t n) {
    return (__umulhi(n, v.m) + n) >> v.s;
}

static int sm_count_of(const cdz_ctx *ctx) { return ctx->sm_count > 0 ? ctx->sm_count : 132; }

/* Grid for a grid-stride kernel of 256 threads. */
static unsigned int grid_for(const cdz_ctx *ctx, int64_t total) {
    int64_t blocks = (total + 255) / 256, cap = (int64_t)sm_count_of(ctx) * 32;
    return (unsigned int)(blocks < cap ? blocks : cap);
}

/* ------------------------------------------------------------------ pointwise */
template <int KIND>
static __device__ __forceinline__ float act_f(float v) {
    if (KIND == CDZ_ACT_RELU) return v <= 0.0f ? 0.0f : v; /* NaN propagates */
    if (KIND == CDZ_ACT_RELU6) return v <= 0.0f ? 0.0f : (v >= 6.0f ? 6.0f : v);
    if (KIND == CDZ_ACT_SIGMOID) return 1.0f / (1.0f + expf(-v));
    if (KIND == CDZ_ACT_TANH) return tanhf(v);
    if (KIND == CDZ_ACT_SILU) return v / (1.0f + expf(-v));
    if (KIND == CDZ_ACT_GELU) return v * 0.5f * (1.0f + erff(v * 0.70710678118654752440f));
    /* CDZ_ACT_GELU_TANH; the constant is sqrt(2 / pi) */
    const float inner = 0.79788456080286535588f * (v + 0.044715f * (v * v * v));
    return 0.5f * v * (1.0f + tanhf(inner));
}

/* vec: x, y aligned for load4/store4; then groups of 4, and the last n % 4 one by one. */
template <typename T, int KIND>
static __global__ void act_kernel(const T *x, T *y, int64_t n, bool vec) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t done = 0;
    if (vec) {
        const int64_t n4 = n / 4;
        for (int64_t q = t; q < n4; q += stride) {
            float v[4];
            load4(x, 4 * q, v);
#pragma unroll
            for (int k = 0; k < 4; k++) v[k] = act_f<KIND>(v[k]);
            store4(y, 4 * q, v);
        }
        done = 4 * n4;
    }
    for (int64_t i = done + t; i < n; i += stride) store_f(y, i, act_f<KIND>(load_f(x, i)));
}

template <typename T>
static cdz_status act_launch(cdz_ctx *ctx, cdz_act kind, const cdz_tensor *x, cdz_tensor *y) {
    const T *xp = (const T *)x->data;
    T *yp = (T *)y->data;
    const int64_t n = cdz_tensor_numel(x);
    const bool vec = vec4_ok<T>(xp, yp);
    const unsigned int blocks = grid_for(ctx, vec ? (n + 3) / 4 : n);
    cudaStream_t st = ctx->stream;
    switch (kind) {
    case CDZ_ACT_RELU: act_kernel<T, CDZ_ACT_RELU><<<blocks, 256, 0, st>>>(xp, yp, n, vec); break;
    case CDZ_ACT_RELU6:
        act_kernel<T, CDZ_ACT_RELU6><<<blocks, 256, 0, st>>>(xp, yp, n, vec);
        break;
    case CDZ_ACT_SIGMOID:
        act_kernel<T, CDZ_ACT_SIGMOID><<<blocks, 256, 0, st>>>(xp, yp, n, vec);
        break;
    case CDZ_ACT_TANH: act_kernel<T, CDZ_ACT_TANH><<<blocks, 256, 0, st>>>(xp, yp, n, vec); break;
    case CDZ_ACT_SILU: act_kernel<T, CDZ_ACT_SILU><<<blocks, 256, 0, st>>>(xp, yp, n, vec); break;
    case CDZ_ACT_GELU: act_kernel<T, CDZ_ACT_GELU><<<blocks, 256, 0, st>>>(xp, yp, n, vec); break;
    case CDZ_ACT_GELU_TANH:
        act_kernel<T, CDZ_ACT_GELU_TANH><<<blocks, 256, 0, st>>>(xp, yp, n, vec);
        break;
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "activation: unexpected kind %d", (int)kind);
    }
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

extern "C" cdz_status cdz_activation_cuda(cdz_ctx *ctx, cdz_act kind, const cdz_tensor *x,
                                          cdz_tensor *y) {
    switch (x->dtype) {
    case CDZ_DTYPE_F32: return act_launch<float>(ctx, kind, x, y);
    case CDZ_DTYPE_F16: return act_launch<__half>(ctx, kind, x, y);
    case CDZ_DTYPE_BF16: return act_launch<__nv_bfloat16>(ctx, kind, x, y);
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "%s: unexpected dtype %s", cdz_act_name(kind),
                             cdz_dtype_name(x->dtype));
    }
}

/* ------------------------------------------------------------------ glu / swiglu */
/* y viewed as [outer, h, inner] (hi = h * inner); x as [outer, 2h, inner]:
 * a = x[o, j, i], b = x[o, h + j, i]. SWIGLU: y = silu(a) * b; else (GLU) y = a * sigmoid(b). */
template <bool SWIGLU>
static __device__ __forceinline__ float gate_f(float a, float b) {
    return SWIGLU ? a / (1.0f + expf(-a)) * b : a * (1.0f / (1.0f + expf(-b)));
}

/* vec (hi % 4 == 0, x and y aligned): 4 consecutive y elements share o and map to 4
 * consecutive elements of each half of x. */
template <typename T, bool SWIGLU, bool WIDE>
static __global__ void gated_kernel(const T *__restrict__ x, T *__restrict__ y, int64_t total,
                                    int64_t hi, udiv32 div_hi, bool vec) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (vec) {
        for (int64_t q = t; q < total / 4; q += stride) {
            const int64_t i = 4 * q;
            const int64_t o = WIDE ? i / hi : (int64_t)udiv32_div(div_hi, (uint32_t)i);
            const int64_t ia = i + o * hi;
            float a[4], b[4];
            load4(x, ia, a);
            load4(x, ia + hi, b);
#pragma unroll
            for (int k = 0; k < 4; k++) a[k] = gate_f<SWIGLU>(a[k], b[k]);
            store4(y, i, a);
        }
        return; /* total is a multiple of hi, hence of 4 */
    }
    for (int64_t i = t; i < total; i += stride) {
        const int64_t o = WIDE ? i / hi : (int64_t)udiv32_div(div_hi, (uint32_t)i);
        const int64_t ia = i + o * hi; /* o * 2hi + (i - o * hi) */
        store_f(y, i, gate_f<SWIGLU>(load_f(x, ia), load_f(x, ia + hi)));
    }
}

template <typename T, bool SWIGLU>
static cdz_status gated_launch(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim) {
    int64_t inner = 1;
    for (int32_t d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
    const int64_t hi = x->shape[dim] / 2 * inner, total = cdz_tensor_numel(y);
    const T *xp = (const T *)x->data;
    T *yp = (T *)y->data;
    const bool vec = hi % 4 == 0 && vec4_ok<T>(xp, yp);
    const unsigned int blocks = grid_for(ctx, vec ? total / 4 : total);
    /* x has 2 * total elements: the narrow path needs every x index below 2^31 */
    if (2 * total <= INT32_MAX)
        gated_kernel<T, SWIGLU, false><<<blocks, 256, 0, ctx->stream>>>(
            xp, yp, total, hi, udiv32_make((uint32_t)hi), vec);
    else
        gated_kernel<T, SWIGLU, true><<<blocks, 256, 0, ctx->stream>>>(xp, yp, total, hi,
                                                                       udiv32_make(1), vec);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

template <bool SWIGLU>
static cdz_status gated_dispatch(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim) {
    switch (x->dtype) {
    case CDZ_DTYPE_F32: return gated_launch<float, SWIGLU>(ctx, x, y, dim);
    case CDZ_DTYPE_F16: return gated_launch<__half, SWIGLU>(ctx, x, y, dim);
    case CDZ_DTYPE_BF16: return gated_launch<__nv_bfloat16, SWIGLU>(ctx, x, y, dim);
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "%s: unexpected dtype %s",
                             SWIGLU ? "swiglu" : "glu", cdz_dtype_name(x->dtype));
    }
}

extern "C" cdz_status cdz_glu_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim) {
    return gated_dispatch<false>(ctx, x, y, dim);
}

extern "C" cdz_status cdz_swiglu_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    return gated_dispatch<true>(ctx, x, y, x->ndim - 1);
}

/* ------------------------------------------------------------------ snake / snakebeta */
/* coef[c] = {a, 1 / (b + 1e-9)}, exp'd first when logscale (SnakeBeta checkpoints). */
static __global__ void snake_coef(const float *__restrict__ alpha, const float *__restrict__ beta,
                                  int64_t channels, bool logscale, float2 *__restrict__ coef) {
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    float a = alpha[c], b = beta[c];
    if (logscale) {
        a = expf(a);
        b = expf(b);
    }
    coef[c] = make_float2(a, 1.0f / (b + 1e-9f));
}

/* x, y [N, C, L] (may alias: in place); channel = (i / L) % C. */
template <bool WIDE>
static __device__ __forceinline__ int64_t channel_of(int64_t i, int64_t l, int64_t c, udiv32 div_l,
                                                     udiv32 div_c) {
    if (WIDE) return (i / l) % c;
    const uint32_t r = udiv32_div(div_l, (uint32_t)i);
    return r - udiv32_div(div_c, r) * div_c.d;
}

static __device__ __forceinline__ float snake_f(float v, float2 k) {
    const float s = sinf(v * k.x);
    return v + k.y * (s * s);
}

template <typename T, bool WIDE>
static __global__ void snake_kernel(const T *x, T *y, const float2 *__restrict__ coef,
                                    int64_t total, int64_t l, int64_t c, udiv32 div_l,
                                    udiv32 div_c, bool vec) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t done = 0;
    if (vec) {
        for (int64_t q = t; q < total / 4; q += stride) {
            float v[4];
            load4(x, 4 * q, v);
#pragma unroll
            for (int k = 0; k < 4; k++)
                v[k] = snake_f(v[k], coef[channel_of<WIDE>(4 * q + k, l, c, div_l, div_c)]);
            store4(y, 4 * q, v);
        }
        done = total / 4 * 4;
    }
    for (int64_t i = done + t; i < total; i += stride)
        store_f(y, i, snake_f(load_f(x, i), coef[channel_of<WIDE>(i, l, c, div_l, div_c)]));
}

template <typename T>
static cdz_status snake_launch(cdz_ctx *ctx, const cdz_tensor *x, const float *alpha,
                               const float *beta, cdz_tensor *y, bool logscale, const char *op) {
    int64_t l = 1;
    for (int32_t d = 2; d < x->ndim; d++) l *= x->shape[d];
    const int64_t c = x->shape[1], total = cdz_tensor_numel(x);
    void *ws = NULL;
    CDZ_TRY(cdz_ctx_workspace(ctx, (size_t)c * sizeof(float2), op, &ws));
    float2 *coef = (float2 *)ws;
    const int64_t cblocks = (c + 255) / 256;
    CDZ_REQUIRE(cblocks <= INT32_MAX, "%s: %lld channels is too many", op, (long long)c);
    snake_coef<<<(unsigned int)cblocks, 256, 0, ctx->stream>>>(alpha, beta, c, logscale, coef);
    CDZ_LAUNCH_CHECK(ctx);
    const T *xp = (const T *)x->data;
    T *yp = (T *)y->data;
    const bool vec = vec4_ok<T>(xp, yp);
    const unsigned int blocks = grid_for(ctx, vec ? (total + 3) / 4 : total);
    if (total <= INT32_MAX)
        snake_kernel<T, false><<<blocks, 256, 0, ctx->stream>>>(
            xp, yp, coef, total, l, c, udiv32_make((uint32_t)l), udiv32_make((uint32_t)c), vec);
    else
        snake_kernel<T, true><<<blocks, 256, 0, ctx->stream>>>(
            xp, yp, coef, total, l, c, udiv32_make(1), udiv32_make(1), vec);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

static cdz_status snake_dispatch(cdz_ctx *ctx, const cdz_tensor *x, const float *alpha,
                                 const float *beta, cdz_tensor *y, bool logscale,
                                 const char *op) {
    switch (x->dtype) {
    case CDZ_DTYPE_F32: return snake_launch<float>(ctx, x, alpha, beta, y, logscale, op);
    case CDZ_DTYPE_F16: return snake_launch<__half>(ctx, x, alpha, beta, y, logscale, op);
    case CDZ_DTYPE_BF16: return snake_launch<__nv_bfloat16>(ctx, x, alpha, beta, y, logscale, op);
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "%s: unexpected dtype %s", op,
                             cdz_dtype_name(x->dtype));
    }
}

extern "C" cdz_status cdz_snake_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *alpha,
                                     cdz_tensor *y) {
    const float *a = (const float *)alpha->data;
    /* Snake == SnakeBeta with beta = alpha, linear scale */
    return snake_dispatch(ctx, x, a, a, y, false, "snake");
}

extern "C" cdz_status cdz_snakebeta_cuda(cdz_ctx *ctx, const cdz_tensor *x,
                                         const cdz_tensor *alpha, const cdz_tensor *beta,
                                         cdz_tensor *y, bool logscale) {
    return snake_dispatch(ctx, x, (const float *)alpha->data, (const float *)beta->data, y,
                          logscale, "snakebeta");
}
