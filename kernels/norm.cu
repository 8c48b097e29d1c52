/*
 * norm.cu: CUDA kernels of norm.h. Storage f32/f16/bf16, all math in fp32.
 *
 * Shifted statistics: every row/group is centred on one of its own elements p (the first),
 * so sums see x - p (exact for nearby values) and the output is ((x - p) - m) * rstd with m
 * the mean of x - p. A DC offset of 1e3 with a 1e-2 spread therefore loses nothing to fp32
 * cancellation, which a plain fp32 mean (ulp(1e3) = 6e-5) would.
 *
 * groupnorm: three launches, so one huge group (GroupNorm(1, C) on 48 x 300k samples) is
 *   spread over the whole GPU instead of one block:
 *     gn_partial  : grid = groups x chunks; per thread batches of 8 values merged Chan-style
 *                   (Welford for the tail), Chan merge per block
 *     gn_finalize : one warp per (n, c) row merges its group's chunks (fixed order, so every
 *                   row of a group gets bit-identical stats) -> per-row coefficients
 *     affine_apply: elementwise y = ((x - p) - m) * scale + shift
 * batchnorm: per-channel coefficients, then the same affine_apply.
 * layernorm / rmsnorm: one warp per row for short rows (D <= 1024 when D % 4 == 0, else 256),
 *   else one block per row; two passes over the row (sum, then squared deviations; the row is
 *   re-read from L1/L2), then write. 4 elements per access when the row allows it.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "ctx.h"
#include "norm.h"

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
 * aligned to that size. */
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

/* W = 4: load4/store4; W = 1: one element. */
template <int W, typename T>
static __device__ __forceinline__ void load_w(const T *p, int64_t i, float *v) {
    if (W == 4)
        load4(p, i, v);
    else
        v[0] = load_f(p, i);
}
template <int W, typename T>
static __device__ __forceinline__ void store_w(T *p, int64_t i, const float *v) {
    if (W == 4)
        store4(p, i, v);
    else
        store_f(p, i, v[0]);
}

/* Both pointers aligned for load4/store4 of T. */
template <typename T>
static bool vec4_ok(const void *a, const void *b) {
    return (((uintptr_t)a | (uintptr_t)b) % (4 * sizeof(T))) == 0;
}

/* ------------------------------------------------------------------ reductions */
struct wstat {
    float n, mean, m2; /* count, mean, sum of squared deviations */
};

/* Chan et al. merge; either side may be empty (n == 0). */
static __device__ __forceinline__ wstat wmerge(wstat a, wstat b) {
    wstat r;
    r.n = a.n + b.n;
    if (r.n == 0.0f) return a;
    float d = b.mean - a.mean, fb = b.n / r.n;
    r.mean = a.mean + d * fb;
    r.m2 = a.m2 + b.m2 + d * d * a.n * fb;
    return r;
}

/* Stats of K values held in registers (two-pass; exact enough for K <= 8). */
template <int K>
static __device__ __forceinline__ wstat batch_stat(const float *v) {
    float sum = 0.0f, q = 0.0f;
#pragma unroll
    for (int k = 0; k < K; k++) sum += v[k];
    const float m = sum * (1.0f / K);
#pragma unroll
    for (int k = 0; k < K; k++) q += (v[k] - m) * (v[k] - m);
    wstat r;
    r.n = (float)K, r.mean = m, r.m2 = q;
    return r;
}

/* Fixed-order tree to lane 0, then broadcast: every lane gets the same bits. */
static __device__ __forceinline__ wstat warp_wmerge(wstat v) {
    for (int off = 16; off > 0; off >>= 1) {
        wstat o;
        o.n = __shfl_down_sync(0xffffffffu, v.n, off);
        o.mean = __shfl_down_sync(0xffffffffu, v.mean, off);
        o.m2 = __shfl_down_sync(0xffffffffu, v.m2, off);
        v = wmerge(v, o);
    }
    v.n = __shfl_sync(0xffffffffu, v.n, 0);
    v.mean = __shfl_sync(0xffffffffu, v.mean, 0);
    v.m2 = __shfl_sync(0xffffffffu, v.m2, 0);
    return v;
}

/* Butterfly sum: a + b == b + a, so every lane ends with the same bits. */
static __device__ __forceinline__ float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

/* Block-wide sum, result in every thread. blockDim.x a multiple of 32; sh holds 32 floats. */
static __device__ float block_sum(float v, float *sh) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* a previous call's readers are done with sh */
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    float r = 0.0f;
    for (int k = 0; k < nw; k++) r += sh[k];
    return r;
}

/* ------------------------------------------------------------------ x / d for 32-bit indices */
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

/* ------------------------------------------------------------------ affine apply */
/* y[i] = ((x[i] - c.x) - c.y) * c.z + c.w with c = coef[(i / inner) % outer_mod].
 * WIDE: 64-bit division for tensors of 2^31 elements or more. */
template <bool WIDE, bool MOD>
static __device__ __forceinline__ int64_t coef_index(int64_t i, int64_t inner, int64_t mod,
                                                     udiv32 div_inner, udiv32 div_mod) {
    if (WIDE) return MOD ? (i / inner) % mod : i / inner;
    uint32_t q = udiv32_div(div_inner, (uint32_t)i);
    if (MOD) q -= udiv32_div(div_mod, q) * div_mod.d;
    return q;
}

static __device__ __forceinline__ float affine_f(float v, float4 c) {
    return ((v - c.x) - c.y) * c.z + c.w;
}

/* vec: x, y aligned for load4/store4; groups of 4, then the last total % 4 one by one. */
template <typename T, bool WIDE, bool MOD>
static __global__ void affine_apply(const T *x, T *y, const float4 *__restrict__ coef,
                                    int64_t total, int64_t inner, int64_t mod, udiv32 div_inner,
                                    udiv32 div_mod, bool vec) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t done = 0;
    if (vec) {
        for (int64_t q = t; q < total / 4; q += stride) {
            float v[4];
            load4(x, 4 * q, v);
#pragma unroll
            for (int k = 0; k < 4; k++)
                v[k] = affine_f(v[k], coef[coef_index<WIDE, MOD>(4 * q + k, inner, mod, div_inner,
                                                                  div_mod)]);
            store4(y, 4 * q, v);
        }
        done = total / 4 * 4;
    }
    for (int64_t i = done + t; i < total; i += stride)
        store_f(y, i,
                affine_f(load_f(x, i),
                         coef[coef_index<WIDE, MOD>(i, inner, mod, div_inner, div_mod)]));
}

/* ------------------------------------------------------------------ groupnorm kernels */
/* grid = groups * chunks; block b handles chunk (b % chunks) of group (b / chunks).
 * Each thread takes its values 8 at a time (independent loads in flight), folds each batch
 * into its running stats with one Chan merge, and finishes with single Welford steps.
 * vec: x aligned for load4, group_size and chunk_len multiples of 4. */
template <typename T>
static __global__ void gn_partial(const T *__restrict__ x, int64_t group_size, int64_t chunks,
                                  int64_t chunk_len, wstat *__restrict__ part, bool vec) {
    __shared__ wstat sh[32];
    const int64_t b = blockIdx.x, group = b / chunks, chunk = b % chunks;
    const T *xg = x + group * group_size;
    const float p = load_f(xg, 0);
    const int64_t start = chunk * chunk_len, nb = blockDim.x;
    const int64_t end = start + chunk_len < group_size ? start + chunk_len : group_size;
    wstat w = {0.0f, 0.0f, 0.0f};
    if (vec) {
        int64_t j = start + 4 * (int64_t)threadIdx.x;
        for (; j + 4 * nb < end; j += 8 * nb) {
            float v[8];
            load4(xg, j, v);
            load4(xg, j + 4 * nb, v + 4);
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] -= p;
            w = wmerge(w, batch_stat<8>(v));
        }
        for (; j < end; j += 4 * nb) {
            float v[4];
            load4(xg, j, v);
#pragma unroll
            for (int k = 0; k < 4; k++) v[k] -= p;
            w = wmerge(w, batch_stat<4>(v));
        }
    } else {
        int64_t i = start + threadIdx.x;
        for (; i + 7 * nb < end; i += 8 * nb) {
            float v[8];
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = load_f(xg, i + k * nb) - p;
            w = wmerge(w, batch_stat<8>(v));
        }
        for (; i < end; i += nb) {
            const float v = load_f(xg, i) - p;
            w.n += 1.0f;
            const float d = v - w.mean;
            w.mean += d / w.n;
            w.m2 += d * (v - w.mean);
        }
    }
    w = warp_wmerge(w);
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) sh[wid] = w;
    __syncthreads();
    if (wid == 0) {
        wstat t = lane < nw ? sh[lane] : wstat{0.0f, 0.0f, 0.0f};
        t = warp_wmerge(t);
        if (lane == 0) part[b] = t;
    }
}

/* One warp per (n, c) row: merge the group's chunk stats, emit {p, m, rstd*w, b}. */
template <typename T>
static __global__ void gn_finalize(const T *__restrict__ x, const wstat *__restrict__ part,
                                   const float *__restrict__ weight, const float *__restrict__ bias,
                                   int64_t rows, int64_t channels, int64_t cg, int64_t groups,
                                   int64_t group_size, int64_t chunks, float eps,
                                   float4 *__restrict__ coef) {
    const int lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= rows) return; /* whole warps leave together */
    const int64_t n = r / channels, c = r % channels;
    const int64_t group = n * groups + c / cg;
    const wstat *pg = part + group * chunks;
    wstat w = {0.0f, 0.0f, 0.0f};
    for (int64_t k = lane; k < chunks; k += 32) w = wmerge(w, pg[k]);
    w = warp_wmerge(w);
    if (lane == 0) {
        float var = w.m2 / w.n;
        float rstd = 1.0f / sqrtf(var + eps);
        float4 o;
        o.x = load_f(x, group * group_size);
        o.y = w.mean;
        o.z = rstd * (weight ? weight[c] : 1.0f);
        o.w = bias ? bias[c] : 0.0f;
        coef[r] = o;
    }
}

static int sm_count_of(const cdz_ctx *ctx) { return ctx->sm_count > 0 ? ctx->sm_count : 132; }

static size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

/* Grid for a grid-stride elementwise kernel of 256 threads. */
static unsigned int elementwise_blocks(const cdz_ctx *ctx, int64_t total) {
    int64_t blocks = (total + 255) / 256, cap = (int64_t)sm_count_of(ctx) * 32;
    return (unsigned int)(blocks < cap ? blocks : cap);
}

template <typename T>
static cdz_status launch_affine(cdz_ctx *ctx, const T *x, T *y, const float4 *coef, int64_t total,
                                int64_t inner, int64_t mod, bool use_mod) {
    const bool vec = vec4_ok<T>(x, y);
    const unsigned int blocks = elementwise_blocks(ctx, vec ? (total + 3) / 4 : total);
    cudaStream_t st = ctx->stream;
    if (total <= INT32_MAX) {
        udiv32 di = udiv32_make((uint32_t)inner), dm = udiv32_make((uint32_t)(mod > 0 ? mod : 1));
        if (use_mod)
            affine_apply<T, false, true><<<blocks, 256, 0, st>>>(x, y, coef, total, inner, mod, di,
                                                                 dm, vec);
        else
            affine_apply<T, false, false><<<blocks, 256, 0, st>>>(x, y, coef, total, inner, mod,
                                                                  di, dm, vec);
    } else {
        udiv32 one = udiv32_make(1);
        if (use_mod)
            affine_apply<T, true, true><<<blocks, 256, 0, st>>>(x, y, coef, total, inner, mod, one,
                                                                one, vec);
        else
            affine_apply<T, true, false><<<blocks, 256, 0, st>>>(x, y, coef, total, inner, mod,
                                                                 one, one, vec);
    }
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

template <typename T>
static cdz_status groupnorm_launch(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                                   const cdz_tensor *bias, cdz_tensor *y, int32_t groups,
                                   float eps) {
    const T *xp = (const T *)x->data;
    T *yp = (T *)y->data;
    int64_t l = 1;
    for (int32_t d = 2; d < x->ndim; d++) l *= x->shape[d];
    const int64_t n_batch = x->shape[0], c = x->shape[1], cg = c / groups;
    const int64_t group_size = cg * l, n_groups = n_batch * groups, rows = n_batch * c;

    /* Chunks per group: 8 blocks per SM (full occupancy), each chunk >= 2048 elements. */
    const int64_t target = 8 * (int64_t)sm_count_of(ctx);
    int64_t chunks = n_groups < target ? (target + n_groups - 1) / n_groups : 1;
    const int64_t max_by_size = (group_size + 2047) / 2048;
    if (chunks > max_by_size) chunks = max_by_size;
    if (chunks > 1024) chunks = 1024;
    if (chunks < 1) chunks = 1;
    const bool vec = group_size % 4 == 0 && vec4_ok<T>(xp, xp);
    int64_t chunk_len = (group_size + chunks - 1) / chunks;
    if (vec) chunk_len = (chunk_len + 3) / 4 * 4;
    chunks = (group_size + chunk_len - 1) / chunk_len; /* no empty chunk */
    CDZ_REQUIRE(n_groups * chunks <= INT32_MAX, "groupnorm: %lld groups is too many for one grid",
                (long long)n_groups);

    const size_t part_bytes = align_up((size_t)(n_groups * chunks) * sizeof(wstat), 256);
    const size_t coef_bytes = (size_t)rows * sizeof(float4);
    void *ws = NULL;
    CDZ_TRY(cdz_ctx_workspace(ctx, part_bytes + coef_bytes, "groupnorm", &ws));
    wstat *part = (wstat *)ws;
    float4 *coef = (float4 *)((char *)ws + part_bytes);
    const float *wp = weight ? (const float *)weight->data : NULL;
    const float *bp = bias ? (const float *)bias->data : NULL;

    gn_partial<T><<<(unsigned int)(n_groups * chunks), 256, 0, ctx->stream>>>(
        xp, group_size, chunks, chunk_len, part, vec);
    CDZ_LAUNCH_CHECK(ctx);
    const int64_t fin_blocks = (rows + 7) / 8;
    CDZ_REQUIRE(fin_blocks <= INT32_MAX, "groupnorm: %lld rows is too many", (long long)rows);
    gn_finalize<T><<<(unsigned int)fin_blocks, 256, 0, ctx->stream>>>(
        xp, part, wp, bp, rows, c, cg, groups, group_size, chunks, eps, coef);
    CDZ_LAUNCH_CHECK(ctx);
    return launch_affine<T>(ctx, xp, yp, coef, rows * l, l, 0, false);
}

extern "C" cdz_status cdz_groupnorm_cuda(cdz_ctx *ctx, const cdz_tensor *x,
                                         const cdz_tensor *weight, const cdz_tensor *bias,
                                         cdz_tensor *y, int32_t groups, float eps) {
    switch (x->dtype) {
    case CDZ_DTYPE_F32: return groupnorm_launch<float>(ctx, x, weight, bias, y, groups, eps);
    case CDZ_DTYPE_F16: return groupnorm_launch<__half>(ctx, x, weight, bias, y, groups, eps);
    case CDZ_DTYPE_BF16:
        return groupnorm_launch<__nv_bfloat16>(ctx, x, weight, bias, y, groups, eps);
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "groupnorm: unexpected dtype %s",
                             cdz_dtype_name(x->dtype));
    }
}

/* ------------------------------------------------------------------ batchnorm */
static __global__ void bn_coef(const float *__restrict__ mean, const float *__restrict__ var,
                               const float *__restrict__ weight, const float *__restrict__ bias,
                               int64_t channels, float eps, float4 *__restrict__ coef) {
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    float4 o;
    o.x = mean[c];
    o.y = 0.0f;
    o.z = (weight ? weight[c] : 1.0f) / sqrtf(var[c] + eps);
    o.w = bias ? bias[c] : 0.0f;
    coef[c] = o;
}

template <typename T>
static cdz_status batchnorm_launch(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *mean,
                                   const cdz_tensor *var, const cdz_tensor *weight,
                                   const cdz_tensor *bias, cdz_tensor *y, float eps) {
    int64_t l = 1;
    for (int32_t d = 2; d < x->ndim; d++) l *= x->shape[d];
    const int64_t c = x->shape[1], total = x->shape[0] * c * l;
    void *ws = NULL;
    CDZ_TRY(cdz_ctx_workspace(ctx, (size_t)c * sizeof(float4), "batchnorm", &ws));
    float4 *coef = (float4 *)ws;
    const int64_t blocks = (c + 255) / 256;
    CDZ_REQUIRE(blocks <= INT32_MAX, "batchnorm: %lld channels is too many", (long long)c);
    bn_coef<<<(unsigned int)blocks, 256, 0, ctx->stream>>>(
        (const float *)mean->data, (const float *)var->data,
        weight ? (const float *)weight->data : NULL, bias ? (const float *)bias->data : NULL, c,
        eps, coef);
    CDZ_LAUNCH_CHECK(ctx);
    return launch_affine<T>(ctx, (const T *)x->data, (T *)y->data, coef, total, l, c, true);
}

extern "C" cdz_status cdz_batchnorm_cuda(cdz_ctx *ctx, const cdz_tensor *x,
                                         const cdz_tensor *mean, const cdz_tensor *var,
                                         const cdz_tensor *weight, const cdz_tensor *bias,
                                         cdz_tensor *y, float eps) {
    switch (x->dtype) {
    case CDZ_DTYPE_F32: return batchnorm_launch<float>(ctx, x, mean, var, weight, bias, y, eps);
    case CDZ_DTYPE_F16: return batchnorm_launch<__half>(ctx, x, mean, var, weight, bias, y, eps);
    case CDZ_DTYPE_BF16:
        return batchnorm_launch<__nv_bfloat16>(ctx, x, mean, var, weight, bias, y, eps);
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "batchnorm: unexpected dtype %s",
                             cdz_dtype_name(x->dtype));
    }
}

/* ------------------------------------------------------------------ layernorm / rmsnorm */
/* ROW_WARP: one warp per row (blockDim/32 rows per block); else one block per row.
 * W = 4: rows are read and written 4 elements per access (d % 4 == 0, x and y aligned). */
template <typename T, bool RMS, bool ROW_WARP, int W>
static __global__ void row_norm(const T *x, T *y, const float *__restrict__ weight,
                                const float *__restrict__ bias, int64_t rows, int d, float eps) {
    /* x and y may alias (in place): no __restrict__ on them. */
    __shared__ float sh[32];
    int64_t r;
    int t0, step;
    if (ROW_WARP) {
        r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
        if (r >= rows) return; /* whole warps; no block barrier below in this mode */
        t0 = threadIdx.x & 31;
        step = 32;
    } else {
        r = blockIdx.x;
        t0 = threadIdx.x;
        step = blockDim.x;
    }
    t0 *= W;
    step *= W;
    const T *xr = x + r * d;
    T *yr = y + r * d;
    const float inv_d = 1.0f / (float)d;
    float v[W];
    if (RMS) {
        float q = 0.0f;
        for (int j = t0; j < d; j += step) {
            load_w<W>(xr, j, v);
#pragma unroll
            for (int k = 0; k < W; k++) q += v[k] * v[k];
        }
        q = ROW_WARP ? warp_sum(q) : block_sum(q, sh);
        const float rstd = 1.0f / sqrtf(q * inv_d + eps);
        for (int j = t0; j < d; j += step) {
            load_w<W>(xr, j, v);
#pragma unroll
            for (int k = 0; k < W; k++) v[k] = weight ? v[k] * rstd * weight[j + k] : v[k] * rstd;
            store_w<W>(yr, j, v);
        }
    } else {
        const float p = load_f(xr, 0);
        float s = 0.0f;
        for (int j = t0; j < d; j += step) {
            load_w<W>(xr, j, v);
#pragma unroll
            for (int k = 0; k < W; k++) s += v[k] - p;
        }
        s = ROW_WARP ? warp_sum(s) : block_sum(s, sh);
        const float m = s * inv_d;
        float q = 0.0f;
        for (int j = t0; j < d; j += step) {
            load_w<W>(xr, j, v);
#pragma unroll
            for (int k = 0; k < W; k++) q += ((v[k] - p) - m) * ((v[k] - p) - m);
        }
        q = ROW_WARP ? warp_sum(q) : block_sum(q, sh);
        const float rstd = 1.0f / sqrtf(q * inv_d + eps);
        for (int j = t0; j < d; j += step) {
            load_w<W>(xr, j, v);
#pragma unroll
            for (int k = 0; k < W; k++) {
                float o = ((v[k] - p) - m) * rstd;
                if (weight) o *= weight[j + k];
                if (bias) o += bias[j + k];
                v[k] = o;
            }
            store_w<W>(yr, j, v);
        }
    }
}

template <typename T, bool RMS, int W>
static void row_norm_go(cdz_ctx *ctx, const T *xp, T *yp, const float *wp, const float *bp,
                        int64_t rows, int d, float eps) {
    if (d <= 256 * W) {
        const int64_t blocks = (rows + 7) / 8;
        row_norm<T, RMS, true, W><<<(unsigned int)blocks, 256, 0, ctx->stream>>>(xp, yp, wp, bp,
                                                                                 rows, d, eps);
    } else {
        int threads = ((d / W + 7) / 8 + 31) / 32 * 32; /* ~8 accesses per thread */
        if (threads < 128) threads = 128;
        if (threads > 1024) threads = 1024;
        row_norm<T, RMS, false, W><<<(unsigned int)rows, threads, 0, ctx->stream>>>(xp, yp, wp,
                                                                                    bp, rows, d,
                                                                                    eps);
    }
}

template <typename T, bool RMS>
static cdz_status row_norm_launch(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                                  const cdz_tensor *bias, cdz_tensor *y, float eps) {
    const int d = (int)x->shape[x->ndim - 1];
    const int64_t rows = cdz_tensor_numel(x) / d;
    const T *xp = (const T *)x->data;
    T *yp = (T *)y->data;
    const float *wp = weight ? (const float *)weight->data : NULL;
    const float *bp = bias ? (const float *)bias->data : NULL;
    CDZ_REQUIRE(rows <= INT32_MAX, "%s: %lld rows is too many", RMS ? "rmsnorm" : "layernorm",
                (long long)rows);
    /* one warp per row up to 1024 elements (4 per access) or 256 (one per access) */
    if (d % 4 == 0 && vec4_ok<T>(xp, yp))
        row_norm_go<T, RMS, 4>(ctx, xp, yp, wp, bp, rows, d, eps);
    else
        row_norm_go<T, RMS, 1>(ctx, xp, yp, wp, bp, rows, d, eps);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

extern "C" cdz_status cdz_layernorm_cuda(cdz_ctx *ctx, const cdz_tensor *x,
                                         const cdz_tensor *weight, const cdz_tensor *bias,
                                         cdz_tensor *y, float eps) {
    switch (x->dtype) {
    case CDZ_DTYPE_F32: return row_norm_launch<float, false>(ctx, x, weight, bias, y, eps);
    case CDZ_DTYPE_F16: return row_norm_launch<__half, false>(ctx, x, weight, bias, y, eps);
    case CDZ_DTYPE_BF16: return row_norm_launch<__nv_bfloat16, false>(ctx, x, weight, bias, y, eps);
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "layernorm: unexpected dtype %s",
                             cdz_dtype_name(x->dtype));
    }
}

extern "C" cdz_status cdz_rmsnorm_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                                       cdz_tensor *y, float eps) {
    switch (x->dtype) {
    case CDZ_DTYPE_F32: return row_norm_launch<float, true>(ctx, x, weight, NULL, y, eps);
    case CDZ_DTYPE_F16: return row_norm_launch<__half, true>(ctx, x, weight, NULL, y, eps);
    case CDZ_DTYPE_BF16: return row_norm_launch<__nv_bfloat16, true>(ctx, x, weight, NULL, y, eps);
    default:
        return cdz_error_set(CDZ_STATUS_INTERNAL, "rmsnorm: unexpected dtype %s",
                             cdz_dtype_name(x->dtype));
    }
}
