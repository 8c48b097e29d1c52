/*
 * conv.cu: CUDA backend of the conv family.
 *
 * Two paths (conv.h says when each is taken):
 *  - cuDNN legacy API: cudnnConvolutionForward for conv, cudnnConvolutionBackwardData for
 *    the transposed conv (the data gradient of the conv that maps y-space to x-space, whose
 *    filter layout is exactly PyTorch's [Cin, Cout/groups, K...]). 1-d ops are 2-d with
 *    H = 1. Descriptors are made per call and destroyed on every path. The algorithm is the
 *    first _v7 heuristic result that succeeded, fits the context's workspace and honours the
 *    precision (STRICT f32: FMA math only, so TF32 is off), remembered per shape in a
 *    process-wide cache (the heuristic query alone costs 0.3-5 ms of host time). The bias
 *    is added by our kernel after cuDNN.
 *  - Own direct convolution: one thread per output element, fp32 FMA accumulation, 64-bit
 *    indexing; handles asymmetric padding, any output_padding and sizes past int32.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <pthread.h>
#include <string.h>

#include "check.h"
#include "conv.h"
#include "ctx.h"

/* ------------------------------------------------------------------------------------
 * dtype helpers
 * ---------------------------------------------------------------------------------- */
static __device__ __forceinline__ float to_f32(float v) { return v; }
static __device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
static __device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> static __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

/* bias[c] as f32: the bias is either f32 or the data dtype T */
template <typename T>
static __device__ __forceinline__ float load_bias(const void *bias, int bias_f32, int64_t c) {
    if (!bias) return 0.f;
    return bias_f32 ? ((const float *)bias)[c] : to_f32(((const T *)bias)[c]);
}

/* ------------------------------------------------------------------------------------
 * Own direct convolution (both directions, gather form)
 * ---------------------------------------------------------------------------------- */
template <typename T>
static __global__ void conv_direct_kernel(cdz_conv_geom g, const T *__restrict__ x,
                                          const T *__restrict__ w, const void *__restrict__ bias,
                                          int bias_f32, T *__restrict__ y, int64_t total) {
    const int64_t plane = g.ih * g.iw;
    const int64_t ktaps = g.kh * g.kw;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i;
        const int64_t ox = t % g.ow;
        t /= g.ow;
        const int64_t oy = t % g.oh;
        t /= g.oh;
        const int64_t co = t % g.cout;
        const int64_t n = t / g.cout;
        const int64_t grp = co / g.cout_g;
        /* x[n, grp*Cin_g + ci] is xg + ci*plane */
        const T *xg = x + (n * g.cin + grp * g.cin_g) * plane;
        /* w tap (ci, ky, kx) is wg[ci*wstride + ky*kw + kx] */
        const T *wg;
        int64_t wstride;
        if (g.transposed) {
            wg = w + ((grp * g.cin_g) * g.cout_g + (co - grp * g.cout_g)) * ktaps;
            wstride = g.cout_g * ktaps;
        } else {
            wg = w + co * g.cin_g * ktaps;
            wstride = ktaps;
        }
        float acc = 0.f;
        /* taps outside, channels inside: the bounds and divisibility tests run once per tap */
        for (int64_t ky = 0; ky < g.kh; ky++) {
            int64_t iy;
            if (g.transposed) {
                const int64_t ty = oy + g.ph - ky * g.dh; /* == iy*sh when a tap lands here */
                if (ty < 0 || ty % g.sh) continue;
                iy = ty / g.sh;
            } else {
                iy = oy * g.sh - g.ph + ky * g.dh;
            }
            if (iy < 0 || iy >= g.ih) continue;
            for (int64_t kx = 0; kx < g.kw; kx++) {
                int64_t ix;
                if (g.transposed) {
                    const int64_t tx = ox + g.pw - kx * g.dw;
                    if (tx < 0 || tx % g.sw) continue;
                    ix = tx / g.sw;
                } else {
                    ix = ox * g.sw - g.pw + kx * g.dw;
                }
                if (ix < 0 || ix >= g.iw) continue;
                const T *xp = xg + iy * g.iw + ix;
                const T *wp = wg + ky * g.kw + kx;
                for (int64_t ci = 0; ci < g.cin_g; ci++)
                    acc = fmaf(to_f32(xp[ci * plane]), to_f32(wp[ci * wstride]), acc);
            }
        }
        y[i] = from_f32<T>(acc + load_bias<T>(bias, bias_f32, co));
    }
}

/* y[n, c, :] += bias[c] after cuDNN (which writes y without bias) */
template <typename T>
static __global__ void bias_add_kernel(T *__restrict__ y, const void *__restrict__ bias,
                                       int bias_f32, int64_t channels, int64_t spatial,
                                       int64_t total) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t c = (i / spatial) % channels;
        y[i] = from_f32<T>(to_f32(y[i]) + load_bias<T>(bias, bias_f32, c));
    }
}

static unsigned grid_for(const cdz_ctx *ctx, int64_t total, int threads) {
    const int64_t want = (total + threads - 1) / threads;
    const int64_t cap = (int64_t)(ctx->sm_count > 0 ? ctx->sm_count : 1) * 64; /* grid-stride */
    const int64_t b = want < cap ? want : cap;
    return (unsigned)(b > 0 ? b : 1);
}

template <typename T>
static cdz_status launch_own(cdz_ctx *ctx, const cdz_conv_geom *g, const cdz_tensor *x,
                             const cdz_tensor *w, const cdz_tensor *bias, cdz_tensor *y) {
    const int64_t total = cdz_tensor_numel(y);
    const int threads = 256;
    conv_direct_kernel<T><<<grid_for(ctx, total, threads), threads, 0, ctx->stream>>>(
        *g, (const T *)x->data, (const T *)w->data, bias ? bias->data : NULL,
        bias && bias->dtype == CDZ_DTYPE_F32, (T *)y->data, total);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

template <typename T>
static cdz_status launch_bias(cdz_ctx *ctx, const cdz_conv_geom *g, const cdz_tensor *bias,
                              cdz_tensor *y) {
    const int64_t total = cdz_tensor_numel(y);
    const int threads = 256;
    bias_add_kernel<T><<<grid_for(ctx, total, threads), threads, 0, ctx->stream>>>(
        (T *)y->data, bias->data, bias->dtype == CDZ_DTYPE_F32, g->cout, g->oh * g->ow, total);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

static cdz_status conv_own(cdz_ctx *ctx, const cdz_conv_geom *g, const cdz_tensor *x,
                           const cdz_tensor *w, const cdz_tensor *bias, cdz_tensor *y) {
    switch (x->dtype) {
    case CDZ_DTYPE_F16: return launch_own<__half>(ctx, g, x, w, bias, y);
    case CDZ_DTYPE_BF16: return launch_own<__nv_bfloat16>(ctx, g, x, w, bias, y);
    default: return launch_own<float>(ctx, g, x, w, bias, y);
    }
}

static cdz_status add_bias(cdz_ctx *ctx, const cdz_conv_geom *g, const cdz_tensor *bias,
                           cdz_tensor *y) {
    switch (y->dtype) {
    case CDZ_DTYPE_F16: return launch_bias<__half>(ctx, g, bias, y);
    case CDZ_DTYPE_BF16: return launch_bias<__nv_bfloat16>(ctx, g, bias, y);
    default: return launch_bias<float>(ctx, g, bias, y);
    }
}

/* ------------------------------------------------------------------------------------
 * cuDNN path
 * ---------------------------------------------------------------------------------- */

/* Like CDZ_CUDNN_CHECK, but a NOT_SUPPORTED family status becomes CDZ_STATUS_UNSUPPORTED so
 * the caller can fall back to the own kernel. */
#define CONV_CUDNN(op, stmt)                                                                \
    do {                                                                                    \
        cudnnStatus_t cs_ = (stmt);                                                         \
        if (CUDNN_STATUS_CATEGORY((int)cs_) == (int)CUDNN_STATUS_NOT_SUPPORTED)             \
            return cdz_error_set(CDZ_STATUS_UNSUPPORTED, "%s: cuDNN cannot do this case: %s in `%s`", \
                                 op, cudnnGetErrorString(cs_), #stmt);                      \
        if (cs_ != CUDNN_STATUS_SUCCESS)                                                    \
            return cdz_check_fail("cuDNN", (int)cs_, cudnnGetErrorString(cs_),             \
                                  cs_ == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED || \
                                      cs_ == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED, \
                                  #stmt, __func__, __FILE__, __LINE__);                     \
    } while (0)

typedef struct conv_descs {
    cudnnTensorDescriptor_t x, y; /* the op's x and y (for transposed: dy and dx) */
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
} conv_descs;

static void descs_destroy(conv_descs *d) {
    /* destroy status ignored: nothing useful to do on a failing destroy */
    if (d->x) (void)cudnnDestroyTensorDescriptor(d->x);
    if (d->y) (void)cudnnDestroyTensorDescriptor(d->y);
    if (d->w) (void)cudnnDestroyFilterDescriptor(d->w);
    if (d->conv) (void)cudnnDestroyConvolutionDescriptor(d->conv);
}

/* May the chosen algorithm's math type run at this precision? */
static bool math_allowed(cudnnMathType_t m, cdz_dtype dt, cdz_precision prec) {
    if (dt == CDZ_DTYPE_F32) {
        if (prec == CDZ_PRECISION_STRICT) return m == CUDNN_FMA_MATH; /* TF32 off */
        return m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;           /* TF32, never fp16 */
    }
    return true; /* f16/bf16 data: any math, fp32 compute type */
}

static cudnnDataType_t cudnn_dtype(cdz_dtype dt) {
    switch (dt) {
    case CDZ_DTYPE_F16: return CUDNN_DATA_HALF;
    case CDZ_DTYPE_BF16: return CUDNN_DATA_BFLOAT16;
    default: return CUDNN_DATA_FLOAT;
    }
}

static int64_t numel4(int64_t a, int64_t b, int64_t c, int64_t d) { return a * b * c * d; }

/* ---- algorithm cache ----
 * cudnnGet*Algorithm_v7 costs 0.3 to 5 ms of host time per call (measured on an H100 with
 * cuDNN 9), far more than the convolutions of a model layer, so the choice is remembered per
 * (shape, dtype, precision, device, workspace size). Process-wide: contexts on several
 * threads share it under a mutex. A small table with round-robin replacement. */
typedef struct algo_key {
    int64_t v[25]; /* every geometry field, dtype, precision, device, workspace: no padding */
} algo_key;

static void algo_key_init(algo_key *k, const cdz_conv_geom *g, const cdz_ctx *ctx, cdz_dtype dt) {
    const int64_t v[25] = {g->transposed, g->n,  g->cin, g->cout, g->groups, g->ih, g->iw,
                           g->kh,         g->kw, g->oh,  g->ow,   g->sh,     g->sw, g->dh,
                           g->dw,         g->ph, g->pw,  g->ph_end, g->pw_end, g->oph, g->opw,
                           (int64_t)dt, (int64_t)ctx->precision, (int64_t)ctx->device.index,
                           (int64_t)ctx->workspace_bytes};
    memcpy(k->v, v, sizeof v);
}

typedef struct algo_choice {
    int algo; /* cudnnConvolutionFwdAlgo_t or cudnnConvolutionBwdDataAlgo_t */
    cudnnMathType_t math;
    size_t memory;
} algo_choice;

#define ALGO_CACHE_SIZE 512
static struct {
    pthread_mutex_t lock;
    int count, next;
    algo_key keys[ALGO_CACHE_SIZE];
    algo_choice choices[ALGO_CACHE_SIZE];
} g_algo_cache = {PTHREAD_MUTEX_INITIALIZER, 0, 0, {}, {}};

static bool algo_cache_get(const algo_key *k, algo_choice *out) {
    bool hit = false;
    pthread_mutex_lock(&g_algo_cache.lock);
    for (int i = 0; i < g_algo_cache.count && !hit; i++) {
        if (memcmp(&g_algo_cache.keys[i], k, sizeof *k) == 0) {
            *out = g_algo_cache.choices[i];
            hit = true;
        }
    }
    pthread_mutex_unlock(&g_algo_cache.lock);
    return hit;
}

static void algo_cache_put(const algo_key *k, const algo_choice *c) {
    pthread_mutex_lock(&g_algo_cache.lock);
    int i = -1;
    for (int j = 0; j < g_algo_cache.count && i < 0; j++)
        if (memcmp(&g_algo_cache.keys[j], k, sizeof *k) == 0) i = j;
    if (i < 0 && g_algo_cache.count < ALGO_CACHE_SIZE) i = g_algo_cache.count++;
    if (i < 0) i = g_algo_cache.next, g_algo_cache.next = (g_algo_cache.next + 1) % ALGO_CACHE_SIZE;
    g_algo_cache.keys[i] = *k;
    g_algo_cache.choices[i] = *c;
    pthread_mutex_unlock(&g_algo_cache.lock);
}

/* Run one algorithm. *unsupported is set (and OK returned) when cuDNN refuses it. */
static cdz_status run_choice(cdz_ctx *ctx, const char *op, const cdz_conv_geom *g,
                             const conv_descs *d, const algo_choice *c, const cdz_tensor *x,
                             const cdz_tensor *w, cdz_tensor *y, bool *unsupported) {
    *unsupported = false;
    void *ws = NULL;
    if (c->memory > 0) CDZ_TRY(cdz_ctx_workspace(ctx, c->memory, op, &ws));
    /* the math type of the chosen result decides whether tensor cores run */
    CONV_CUDNN(op, cudnnSetConvolutionMathType(d->conv, c->math));
    const float one = 1.f, zero = 0.f; /* float scaling for the float compute type */
    cudnnStatus_t cs;
    if (!g->transposed)
        cs = cudnnConvolutionForward(ctx->cudnn, &one, d->x, x->data, d->w, w->data, d->conv,
                                     (cudnnConvolutionFwdAlgo_t)c->algo, ws, c->memory, &zero,
                                     d->y, y->data);
    else
        cs = cudnnConvolutionBackwardData(ctx->cudnn, &one, d->w, w->data, d->x, x->data, d->conv,
                                          (cudnnConvolutionBwdDataAlgo_t)c->algo, ws, c->memory,
                                          &zero, d->y, y->data);
    if (CUDNN_STATUS_CATEGORY((int)cs) == (int)CUDNN_STATUS_NOT_SUPPORTED) {
        *unsupported = true;
        return CDZ_STATUS_OK;
    }
    CONV_CUDNN(op, cs);
    return CDZ_STATUS_OK;
}

/* The _v7 heuristic results in order, as algo_choice, filtered by status, workspace and
 * precision. Returns how many were kept in out[0..max). */
static cdz_status query_choices(cdz_ctx *ctx, const char *op, const cdz_conv_geom *g,
                                const conv_descs *d, cdz_dtype dt, algo_choice *out, int max,
                                int *kept) {
    *kept = 0;
    int count = 0;
    if (!g->transposed) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        CONV_CUDNN(op, cudnnGetConvolutionForwardAlgorithm_v7(
                           ctx->cudnn, d->x, d->w, d->conv, d->y,
                           CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf));
        for (int i = 0; i < count && *kept < max; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= ctx->workspace_bytes &&
                math_allowed(perf[i].mathType, dt, ctx->precision))
                out[(*kept)++] = algo_choice{(int)perf[i].algo, perf[i].mathType, perf[i].memory};
    } else {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        CONV_CUDNN(op, cudnnGetConvolutionBackwardDataAlgorithm_v7(
                           ctx->cudnn, d->w, d->x, d->conv, d->y,
                           CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, perf));
        for (int i = 0; i < count && *kept < max; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= ctx->workspace_bytes &&
                math_allowed(perf[i].mathType, dt, ctx->precision))
                out[(*kept)++] = algo_choice{(int)perf[i].algo, perf[i].mathType, perf[i].memory};
    }
    return CDZ_STATUS_OK;
}

/* Runs the conv with cuDNN into y (no bias). UNSUPPORTED when cuDNN cannot do the case;
 * descriptors are left in *d for the caller to destroy. */
static cdz_status conv_cudnn(cdz_ctx *ctx, const char *op, const cdz_conv_geom *g,
                             const cdz_tensor *x, const cdz_tensor *w, cdz_tensor *y,
                             conv_descs *d) {
    if (g->ph != g->ph_end || g->pw != g->pw_end)
        return cdz_error_set(CDZ_STATUS_UNSUPPORTED,
                             "%s: cuDNN cannot do asymmetric padding ((H,W) begin %d,%d end %d,%d)",
                             op, g->ph, g->pw, g->ph_end, g->pw_end);
    if (g->transposed &&
        (cdz_conv_out_len(g->oh, g->kh, g->sh, g->dh, g->ph, g->ph) != g->ih ||
         cdz_conv_out_len(g->ow, g->kw, g->sw, g->dw, g->pw, g->pw) != g->iw))
        return cdz_error_set(CDZ_STATUS_UNSUPPORTED,
                             "%s: cuDNN cannot do output_padding (%d,%d) >= stride (%d,%d)", op,
                             g->oph, g->opw, g->sh, g->sw);
    const int64_t lim = INT32_MAX;
    const int64_t wk = g->transposed ? g->cin : g->cout, wc = g->transposed ? g->cout_g : g->cin_g;
    if (numel4(g->n, g->cin, g->ih, g->iw) > lim || numel4(g->n, g->cout, g->oh, g->ow) > lim ||
        numel4(wk, wc, g->kh, g->kw) > lim)
        return cdz_error_set(CDZ_STATUS_UNSUPPORTED, "%s: cuDNN cannot index 2^31 elements", op);

    const cudnnDataType_t dt = cudnn_dtype(x->dtype);
    const bool strict = x->dtype == CDZ_DTYPE_F32 && ctx->precision == CDZ_PRECISION_STRICT;
    CONV_CUDNN(op, cudnnCreateTensorDescriptor(&d->x));
    CONV_CUDNN(op, cudnnCreateTensorDescriptor(&d->y));
    CONV_CUDNN(op, cudnnCreateFilterDescriptor(&d->w));
    CONV_CUDNN(op, cudnnCreateConvolutionDescriptor(&d->conv));
    CONV_CUDNN(op, cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, dt, (int)g->n, (int)g->cin,
                                              (int)g->ih, (int)g->iw));
    CONV_CUDNN(op, cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, dt, (int)g->n, (int)g->cout,
                                              (int)g->oh, (int)g->ow));
    /* conv: [Cout, Cin_g, KH, KW]; transposed: the y->x conv's filter [Cin, Cout_g, KH, KW] */
    CONV_CUDNN(op, cudnnSetFilter4dDescriptor(d->w, dt, CUDNN_TENSOR_NCHW, (int)wk, (int)wc,
                                              (int)g->kh, (int)g->kw));
    CONV_CUDNN(op, cudnnSetConvolution2dDescriptor(d->conv, g->ph, g->pw, g->sh, g->sw, g->dh,
                                                   g->dw, CUDNN_CROSS_CORRELATION,
                                                   CUDNN_DATA_FLOAT));
    CONV_CUDNN(op, cudnnSetConvolutionGroupCount(d->conv, (int)g->groups));
    CONV_CUDNN(op, cudnnSetConvolutionMathType(d->conv, strict ? CUDNN_FMA_MATH
                                                               : CUDNN_TENSOR_OP_MATH));

    algo_key key;
    algo_key_init(&key, g, ctx, x->dtype);
    bool unsupported = false;
    algo_choice cached;
    if (algo_cache_get(&key, &cached)) {
        CDZ_TRY(run_choice(ctx, op, g, d, &cached, x, w, y, &unsupported));
        if (!unsupported) return CDZ_STATUS_OK;
    }
    algo_choice choices[(int)CUDNN_CONVOLUTION_FWD_ALGO_COUNT + (int)CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int kept = 0;
    CDZ_TRY(query_choices(ctx, op, g, d, x->dtype, choices,
                          (int)(sizeof choices / sizeof choices[0]), &kept));
    for (int i = 0; i < kept; i++) {
        CDZ_TRY(run_choice(ctx, op, g, d, &choices[i], x, w, y, &unsupported));
        if (unsupported) continue;
        cdz_log(CDZ_LOG_LEVEL_DEBUG, "conv", "%s: cuDNN %s algo %d math %d workspace %zu", op,
                g->transposed ? "backward-data" : "forward", choices[i].algo,
                (int)choices[i].math, choices[i].memory);
        algo_cache_put(&key, &choices[i]);
        return CDZ_STATUS_OK;
    }
    return cdz_error_set(CDZ_STATUS_UNSUPPORTED,
                         "%s: no cuDNN algorithm for this case fits the %zu-byte workspace%s", op,
                         ctx->workspace_bytes, strict ? " with FMA math (STRICT)" : "");
}

/* ------------------------------------------------------------------------------------
 * Dispatch
 * ---------------------------------------------------------------------------------- */
static cdz_status conv_cuda(cdz_ctx *ctx, const char *op, const cdz_tensor *x,
                            const cdz_tensor *w, const cdz_tensor *bias, cdz_tensor *y,
                            const cdz_conv_params *p, int dims, bool transposed) {
    cdz_conv_geom g;
    cdz_conv_geom_init(&g, x, w, y, p, dims, transposed);
    const cdz_conv_impl impl = cdz_conv_impl_resolve(p);
    if (impl != CDZ_CONV_IMPL_OWN) {
        conv_descs d = {NULL, NULL, NULL, NULL};
        cdz_status st = conv_cudnn(ctx, op, &g, x, w, y, &d);
        descs_destroy(&d);
        if (st == CDZ_STATUS_OK) return bias ? add_bias(ctx, &g, bias, y) : CDZ_STATUS_OK;
        if (st != CDZ_STATUS_UNSUPPORTED || impl == CDZ_CONV_IMPL_CUDNN) return st;
        cdz_error_clear(); /* AUTO: the own kernel does what cuDNN cannot */
    }
    return conv_own(ctx, &g, x, w, bias, y);
}

extern "C" cdz_status cdz_conv1d_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                                      const cdz_tensor *bias, cdz_tensor *y,
                                      const cdz_conv_params *p) {
    return conv_cuda(ctx, "conv1d", x, w, bias, y, p, 1, false);
}

extern "C" cdz_status cdz_conv2d_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                                      const cdz_tensor *bias, cdz_tensor *y,
                                      const cdz_conv_params *p) {
    return conv_cuda(ctx, "conv2d", x, w, bias, y, p, 2, false);
}

extern "C" cdz_status cdz_conv_transpose1d_cuda(cdz_ctx *ctx, const cdz_tensor *x,
                                                const cdz_tensor *w, const cdz_tensor *bias,
                                                cdz_tensor *y, const cdz_conv_params *p) {
    return conv_cuda(ctx, "conv_transpose1d", x, w, bias, y, p, 1, true);
}

extern "C" cdz_status cdz_conv_transpose2d_cuda(cdz_ctx *ctx, const cdz_tensor *x,
                                                const cdz_tensor *w, const cdz_tensor *bias,
                                                cdz_tensor *y, const cdz_conv_params *p) {
    return conv_cuda(ctx, "conv_transpose2d", x, w, bias, y, p, 2, true);
}
