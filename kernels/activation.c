/*
 * activation.c: entries (precondition checks + dispatch) and the CPU references of
 * activation.h. The scalar math is fp32 with the same formulas PyTorch's kernels use.
 */
#include <math.h>
#include <stdint.h>

#include "activation.h"
#include "check.h"
#include "ctx.h"
#include "half.h"

/* ------------------------------------------------------------------ element access */
static inline float ld(const void *p, cdz_dtype dt, int64_t i) {
    switch (dt) {
    case CDZ_DTYPE_F16: return cdz_f16_to_f32(((const uint16_t *)p)[i]);
    case CDZ_DTYPE_BF16: return cdz_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

static inline void st(void *p, cdz_dtype dt, int64_t i, float v) {
    switch (dt) {
    case CDZ_DTYPE_F16: ((uint16_t *)p)[i] = cdz_f32_to_f16(v); break;
    case CDZ_DTYPE_BF16: ((uint16_t *)p)[i] = cdz_f32_to_bf16(v); break;
    default: ((float *)p)[i] = v; break;
    }
}

/* ------------------------------------------------------------------ scalar math */
#define CDZ_SQRT1_2 0.70710678118654752440f
#define CDZ_GELU_BETA 0.79788456080286535588f /* sqrt(2 / pi) */
#define CDZ_GELU_KAPPA 0.044715f

static inline float sigmoid_f(float v) { return 1.0f / (1.0f + expf(-v)); }

static inline float act_f(cdz_act kind, float v) {
    switch (kind) {
    case CDZ_ACT_RELU: return v <= 0.0f ? 0.0f : v; /* NaN is not <= 0: propagates */
    case CDZ_ACT_RELU6: return v <= 0.0f ? 0.0f : (v >= 6.0f ? 6.0f : v);
    case CDZ_ACT_SIGMOID: return sigmoid_f(v);
    case CDZ_ACT_TANH: return tanhf(v);
    case CDZ_ACT_SILU: return v / (1.0f + expf(-v));
    case CDZ_ACT_GELU: return v * 0.5f * (1.0f + erff(v * CDZ_SQRT1_2));
    case CDZ_ACT_GELU_TANH: {
        float inner = CDZ_GELU_BETA * (v + CDZ_GELU_KAPPA * (v * v * v));
        return 0.5f * v * (1.0f + tanhf(inner));
    }
    default: return NAN;
    }
}

const char *cdz_act_name(cdz_act kind) {
    static const char *const names[CDZ_ACT_COUNT_] = {"relu", "relu6", "sigmoid", "tanh",
                                                      "silu", "gelu", "gelu_tanh"};
    return (unsigned)kind < CDZ_ACT_COUNT_ ? names[kind] : "?";
}

/* ------------------------------------------------------------------ checks */
static bool overlap(const cdz_tensor *a, const cdz_tensor *b) {
    uintptr_t a0 = (uintptr_t)a->data, a1 = a0 + cdz_tensor_nbytes(a);
    uintptr_t b0 = (uintptr_t)b->data, b1 = b0 + cdz_tensor_nbytes(b);
    return a0 < b1 && b0 < a1;
}

/* x, y tensors on ctx's device, float dtypes, y of x's dtype. Shapes are checked by callers. */
static cdz_status check_pair(const cdz_ctx *ctx, const char *op, const cdz_tensor *x,
                             const cdz_tensor *y, int32_t min_ndim, const char *layout) {
    char bx[96], by[96];
    CDZ_REQUIRE(ctx != NULL, "%s: ctx is NULL", op);
    CDZ_REQUIRE(x != NULL && y != NULL, "%s: x and y must not be NULL", op);
    CDZ_TRY(cdz_check_tensor(ctx, op, "x", x, CDZ_DTYPE_COUNT_, -1));
    CDZ_TRY(cdz_check_tensor(ctx, op, "y", y, CDZ_DTYPE_COUNT_, -1));
    CDZ_TRY(cdz_check_tensor_size(op, "x", x));
    CDZ_TRY(cdz_check_tensor_size(op, "y", y));
    CDZ_REQUIRE(cdz_dtype_is_float(x->dtype), "%s: x must be f32, f16 or bf16 (got %s)", op,
                cdz_tensor_str(x, bx, sizeof bx));
    CDZ_REQUIRE(y->dtype == x->dtype, "%s: y must have x's dtype %s (got %s)", op,
                cdz_dtype_name(x->dtype), cdz_tensor_str(y, by, sizeof by));
    CDZ_REQUIRE(x->ndim >= min_ndim, "%s: x must be %s (got %s)", op, layout,
                cdz_tensor_str(x, bx, sizeof bx));
    return CDZ_STATUS_OK;
}

/* Same shape; y == x allowed, any other overlap is not. */
static cdz_status check_same(const char *op, const cdz_tensor *x, const cdz_tensor *y) {
    char bx[96], by[96];
    CDZ_REQUIRE(cdz_tensor_same_shape(x, y), "%s: y %s must have the shape of x %s", op,
                cdz_tensor_str(y, by, sizeof by), cdz_tensor_str(x, bx, sizeof bx));
    CDZ_REQUIRE(x->data == y->data || !overlap(x, y),
                "%s: y overlaps x without being x (in place needs y == x)", op);
    return CDZ_STATUS_OK;
}

/* y must be x with dim halved; no overlap at all (y is read-after-write unsafe). */
static cdz_status check_halved(const char *op, const cdz_tensor *x, const cdz_tensor *y,
                               int32_t dim) {
    char bx[96], by[96];
    CDZ_REQUIRE(x->shape[dim] % 2 == 0, "%s: x %s has odd size %lld along dim %d", op,
                cdz_tensor_str(x, bx, sizeof bx), (long long)x->shape[dim], (int)dim);
    bool ok = y->ndim == x->ndim;
    for (int32_t d = 0; ok && d < x->ndim; d++)
        ok = y->shape[d] == (d == dim ? x->shape[d] / 2 : x->shape[d]);
    CDZ_REQUIRE(ok, "%s: y %s must be x %s with dim %d halved", op,
                cdz_tensor_str(y, by, sizeof by), cdz_tensor_str(x, bx, sizeof bx), (int)dim);
    CDZ_REQUIRE(cdz_tensor_numel(y) == 0 || !overlap(x, y), "%s: y must not overlap x", op);
    return CDZ_STATUS_OK;
}

static cdz_status check_channel_vec(const cdz_ctx *ctx, const char *op, const char *name,
                                    const cdz_tensor *t, int64_t c) {
    char bt[96];
    CDZ_REQUIRE(t != NULL, "%s: %s is required", op, name);
    CDZ_TRY(cdz_check_tensor(ctx, op, name, t, CDZ_DTYPE_F32, 1));
    CDZ_REQUIRE(t->shape[0] == c, "%s: %s must be f32[%lld] (one per channel of x), got %s", op,
                name, (long long)c, cdz_tensor_str(t, bt, sizeof bt));
    return CDZ_STATUS_OK;
}

#ifdef CDZ_HAVE_CUDA
#define CDZ_DISPATCH(call_cuda, call_cpu)                                                     \
    do {                                                                                      \
        if (cdz_ctx_is_cuda(ctx)) return call_cuda;                                           \
        return call_cpu;                                                                      \
    } while (0)
#else
#define CDZ_DISPATCH(call_cuda, call_cpu)                                                     \
    do {                                                                                      \
        if (cdz_ctx_is_cuda(ctx))                                                             \
            return cdz_error_set(CDZ_STATUS_UNSUPPORTED, "activation: this build has no CUDA"); \
        return call_cpu;                                                                      \
    } while (0)
#endif

static int64_t dims_product(const cdz_tensor *t, int32_t from, int32_t to) {
    int64_t p = 1;
    for (int32_t d = from; d < to; d++) p *= t->shape[d];
    return p;
}

/* ------------------------------------------------------------------ pointwise */
cdz_status cdz_activation(cdz_ctx *ctx, cdz_act kind, const cdz_tensor *x, cdz_tensor *y) {
    const char *op = cdz_act_name(kind);
    CDZ_REQUIRE((unsigned)kind < CDZ_ACT_COUNT_, "activation: unknown kind %d", (int)kind);
    CDZ_TRY(check_pair(ctx, op, x, y, 0, "any shape"));
    CDZ_TRY(check_same(op, x, y));
    if (cdz_tensor_numel(x) == 0) return CDZ_STATUS_OK;
    CDZ_DISPATCH(cdz_activation_cuda(ctx, kind, x, y), cdz_activation_cpu(ctx, kind, x, y));
}

cdz_status cdz_activation_cpu(cdz_ctx *ctx, cdz_act kind, const cdz_tensor *x, cdz_tensor *y) {
    const int64_t n = cdz_tensor_numel(x);
    for (int64_t i = 0; i < n; i++) st(y->data, y->dtype, i, act_f(kind, ld(x->data, x->dtype, i)));
    return CDZ_STATUS_OK;
}

cdz_status cdz_gelu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, bool tanh_approx) {
    return cdz_activation(ctx, tanh_approx ? CDZ_ACT_GELU_TANH : CDZ_ACT_GELU, x, y);
}
cdz_status cdz_silu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    return cdz_activation(ctx, CDZ_ACT_SILU, x, y);
}
cdz_status cdz_relu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    return cdz_activation(ctx, CDZ_ACT_RELU, x, y);
}
cdz_status cdz_relu6(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    return cdz_activation(ctx, CDZ_ACT_RELU6, x, y);
}
cdz_status cdz_sigmoid(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    return cdz_activation(ctx, CDZ_ACT_SIGMOID, x, y);
}
cdz_status cdz_tanh(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    return cdz_activation(ctx, CDZ_ACT_TANH, x, y);
}

/* ------------------------------------------------------------------ glu / swiglu */
cdz_status cdz_glu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim) {
    const char *op = "glu";
    char bx[96];
    CDZ_TRY(check_pair(ctx, op, x, y, 1, "at least 1-D"));
    CDZ_REQUIRE(dim >= -x->ndim && dim < x->ndim, "glu: dim %d out of range for x %s", (int)dim,
                cdz_tensor_str(x, bx, sizeof bx));
    const int32_t d = dim < 0 ? dim + x->ndim : dim;
    CDZ_TRY(check_halved(op, x, y, d));
    if (cdz_tensor_numel(y) == 0) return CDZ_STATUS_OK;
    CDZ_DISPATCH(cdz_glu_cuda(ctx, x, y, d), cdz_glu_cpu(ctx, x, y, d));
}

/* y[o, j, i] = g(x[o, j, i], x[o, h + j, i]) over [outer, h, inner]. */
static void gated_cpu(const cdz_tensor *x, cdz_tensor *y, int32_t dim, bool swiglu) {
    const int64_t outer = dims_product(x, 0, dim), h = x->shape[dim] / 2;
    const int64_t inner = dims_product(x, dim + 1, x->ndim);
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t j = 0; j < h; j++) {
            const int64_t ia = (o * 2 * h + j) * inner, ib = ia + h * inner;
            const int64_t iy = (o * h + j) * inner;
            for (int64_t i = 0; i < inner; i++) {
                float a = ld(x->data, x->dtype, ia + i), b = ld(x->data, x->dtype, ib + i);
                float v = swiglu ? a / (1.0f + expf(-a)) * b : a * sigmoid_f(b);
                st(y->data, y->dtype, iy + i, v);
            }
        }
    }
}

cdz_status cdz_glu_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim) {
    gated_cpu(x, y, dim, false);
    return CDZ_STATUS_OK;
}

cdz_status cdz_swiglu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    const char *op = "swiglu";
    CDZ_TRY(check_pair(ctx, op, x, y, 1, "[..., 2H]"));
    CDZ_TRY(check_halved(op, x, y, x->ndim - 1));
    if (cdz_tensor_numel(y) == 0) return CDZ_STATUS_OK;
    CDZ_DISPATCH(cdz_swiglu_cuda(ctx, x, y), cdz_swiglu_cpu(ctx, x, y));
}

cdz_status cdz_swiglu_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    gated_cpu(x, y, x->ndim - 1, true);
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------ snake / snakebeta */
cdz_status cdz_snake(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *alpha, cdz_tensor *y) {
    const char *op = "snake";
    CDZ_TRY(check_pair(ctx, op, x, y, 2, "[N, C, *]"));
    CDZ_TRY(check_same(op, x, y));
    CDZ_TRY(check_channel_vec(ctx, op, "alpha", alpha, x->shape[1]));
    if (cdz_tensor_numel(x) == 0) return CDZ_STATUS_OK;
    CDZ_DISPATCH(cdz_snake_cuda(ctx, x, alpha, y), cdz_snake_cpu(ctx, x, alpha, y));
}

/* y = x + inv_b[c] * sin(a[c] x)^2 with per-channel a, inv_b computed by the caller's rule. */
static void snake_apply_cpu(const cdz_tensor *x, cdz_tensor *y, const float *alpha,
                            const float *beta, bool logscale) {
    const int64_t n_batch = x->shape[0], c = x->shape[1], l = dims_product(x, 2, x->ndim);
    for (int64_t ch = 0; ch < c; ch++) {
        const float a = logscale ? expf(alpha[ch]) : alpha[ch];
        const float b = logscale ? expf(beta[ch]) : beta[ch];
        const float inv_b = 1.0f / (b + 1e-9f);
        for (int64_t n = 0; n < n_batch; n++) {
            const int64_t base = (n * c + ch) * l;
            for (int64_t j = 0; j < l; j++) {
                float v = ld(x->data, x->dtype, base + j), s = sinf(v * a);
                st(y->data, y->dtype, base + j, v + inv_b * (s * s));
            }
        }
    }
}

cdz_status cdz_snake_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *alpha,
                         cdz_tensor *y) {
    const float *a = (const float *)alpha->data;
    snake_apply_cpu(x, y, a, a, false); /* Snake == SnakeBeta with beta = alpha, linear scale */
    return CDZ_STATUS_OK;
}

cdz_status cdz_snakebeta(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *alpha,
                         const cdz_tensor *beta, cdz_tensor *y, bool logscale) {
    const char *op = "snakebeta";
    CDZ_TRY(check_pair(ctx, op, x, y, 2, "[N, C, *]"));
    CDZ_TRY(check_same(op, x, y));
    CDZ_TRY(check_channel_vec(ctx, op, "alpha", alpha, x->shape[1]));
    CDZ_TRY(check_channel_vec(ctx, op, "beta", beta, x->shape[1]));
    if (cdz_tensor_numel(x) == 0) return CDZ_STATUS_OK;
    CDZ_DISPATCH(cdz_snakebeta_cuda(ctx, x, alpha, beta, y, logscale),
                 cdz_snakebeta_cpu(ctx, x, alpha, beta, y, logscale));
}

cdz_status cdz_snakebeta_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *alpha,
                             const cdz_tensor *beta, cdz_tensor *y, bool logscale) {
    snake_apply_cpu(x, y, (const float *)alpha->data, (const float *)beta->data, logscale);
    return CDZ_STATUS_OK;
}
