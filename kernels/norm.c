/*
 * norm.c: entries (precondition checks + dispatch) and the CPU references of norm.h.
 * The references take statistics in double with two passes (mean, then squared deviations),
 * which is exact enough to judge the fp32 CUDA kernels on large-offset inputs.
 */
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "ctx.h"
#include "half.h"
#include "norm.h"

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

/* ------------------------------------------------------------------ checks */
/* y may be x itself; any other overlap would let one element's write clobber a later read. */
static bool partial_overlap(const cdz_tensor *a, const cdz_tensor *b) {
    if (a->data == b->data) return false;
    uintptr_t a0 = (uintptr_t)a->data, a1 = a0 + cdz_tensor_nbytes(a);
    uintptr_t b0 = (uintptr_t)b->data, b1 = b0 + cdz_tensor_nbytes(b);
    return a0 < b1 && b0 < a1;
}

static cdz_status check_xy(const cdz_ctx *ctx, const char *op, const cdz_tensor *x,
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
    CDZ_REQUIRE(cdz_tensor_same_shape(x, y), "%s: y %s must have the shape of x %s", op,
                cdz_tensor_str(y, by, sizeof by), cdz_tensor_str(x, bx, sizeof bx));
    CDZ_REQUIRE(!partial_overlap(x, y), "%s: y overlaps x without being x (in place needs y == x)",
                op);
    return CDZ_STATUS_OK;
}

/* An f32 [n] vector; NULL allowed when optional. */
static cdz_status check_vec(const cdz_ctx *ctx, const char *op, const char *name,
                            const cdz_tensor *t, int64_t n, bool optional, const char *what) {
    char bt[96];
    if (t == NULL) {
        CDZ_REQUIRE(optional, "%s: %s is required", op, name);
        return CDZ_STATUS_OK;
    }
    CDZ_TRY(cdz_check_tensor(ctx, op, name, t, CDZ_DTYPE_F32, 1));
    CDZ_REQUIRE(t->shape[0] == n, "%s: %s must be f32[%lld] (%s), got %s", op, name, (long long)n,
                what, cdz_tensor_str(t, bt, sizeof bt));
    return CDZ_STATUS_OK;
}

static cdz_status check_eps(const char *op, float eps) {
    CDZ_REQUIRE(isfinite(eps) && eps >= 0.0f, "%s: eps must be finite and >= 0 (got %g)", op,
                (double)eps);
    return CDZ_STATUS_OK;
}

/* Product of dims [from, ndim). */
static int64_t dims_product(const cdz_tensor *t, int32_t from) {
    int64_t p = 1;
    for (int32_t d = from; d < t->ndim; d++) p *= t->shape[d];
    return p;
}

#ifdef CDZ_HAVE_CUDA
#define CDZ_DISPATCH(call_cuda, call_cpu)                                                  \
    do {                                                                                   \
        if (cdz_ctx_is_cuda(ctx)) return call_cuda;                                        \
        return call_cpu;                                                                   \
    } while (0)
#else
#define CDZ_DISPATCH(call_cuda, call_cpu)                                                  \
    do {                                                                                   \
        if (cdz_ctx_is_cuda(ctx))                                                          \
            return cdz_error_set(CDZ_STATUS_UNSUPPORTED, "norm: this build has no CUDA");  \
        return call_cpu;                                                                   \
    } while (0)
#endif

/* ------------------------------------------------------------------ groupnorm */
cdz_status cdz_groupnorm(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                         const cdz_tensor *bias, cdz_tensor *y, int32_t groups, float eps) {
    const char *op = "groupnorm";
    CDZ_TRY(check_xy(ctx, op, x, y, 2, "[N, C, *]"));
    int64_t c = x->shape[1];
    CDZ_REQUIRE(groups > 0, "%s: groups must be > 0 (got %d)", op, (int)groups);
    CDZ_REQUIRE(c % groups == 0, "%s: x has %lld channels, not divisible by groups=%d", op,
                (long long)c, (int)groups);
    CDZ_TRY(check_vec(ctx, op, "weight", weight, c, true, "one per channel of x"));
    CDZ_TRY(check_vec(ctx, op, "bias", bias, c, true, "one per channel of x"));
    CDZ_TRY(check_eps(op, eps));
    if (cdz_tensor_numel(x) == 0) return CDZ_STATUS_OK;
    CDZ_DISPATCH(cdz_groupnorm_cuda(ctx, x, weight, bias, y, groups, eps),
                 cdz_groupnorm_cpu(ctx, x, weight, bias, y, groups, eps));
}

cdz_status cdz_groupnorm_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                             const cdz_tensor *bias, cdz_tensor *y, int32_t groups, float eps) {
    const int64_t n_batch = x->shape[0], c = x->shape[1], l = dims_product(x, 2);
    const int64_t cg = c / groups, size = cg * l;
    const float *w = weight ? (const float *)weight->data : NULL;
    const float *b = bias ? (const float *)bias->data : NULL;
    for (int64_t n = 0; n < n_batch; n++) {
        for (int64_t g = 0; g < groups; g++) {
            const int64_t base = (n * c + g * cg) * l;
            double sum = 0.0, sq = 0.0;
            for (int64_t i = 0; i < size; i++) sum += ld(x->data, x->dtype, base + i);
            const double mean = sum / (double)size;
            for (int64_t i = 0; i < size; i++) {
                double d = ld(x->data, x->dtype, base + i) - mean;
                sq += d * d;
            }
            const double rstd = 1.0 / sqrt(sq / (double)size + (double)eps);
            for (int64_t k = 0; k < cg; k++) {
                const int64_t ch = g * cg + k;
                const double wc = w ? w[ch] : 1.0, bc = b ? b[ch] : 0.0;
                for (int64_t j = 0; j < l; j++) {
                    int64_t i = base + k * l + j;
                    double v = (ld(x->data, x->dtype, i) - mean) * rstd * wc + bc;
                    st(y->data, y->dtype, i, (float)v);
                }
            }
        }
    }
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------ layernorm / rmsnorm */
static cdz_status check_last_dim(const char *op, const cdz_tensor *x) {
    CDZ_REQUIRE(x->shape[x->ndim - 1] <= INT32_MAX, "%s: last dim %lld exceeds 2^31-1", op,
                (long long)x->shape[x->ndim - 1]);
    return CDZ_STATUS_OK;
}

cdz_status cdz_layernorm(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                         const cdz_tensor *bias, cdz_tensor *y, float eps) {
    const char *op = "layernorm";
    CDZ_TRY(check_xy(ctx, op, x, y, 1, "[..., D]"));
    CDZ_TRY(check_last_dim(op, x));
    int64_t d = x->shape[x->ndim - 1];
    CDZ_TRY(check_vec(ctx, op, "weight", weight, d, true, "the last dim of x"));
    CDZ_TRY(check_vec(ctx, op, "bias", bias, d, true, "the last dim of x"));
    CDZ_TRY(check_eps(op, eps));
    if (cdz_tensor_numel(x) == 0) return CDZ_STATUS_OK;
    CDZ_DISPATCH(cdz_layernorm_cuda(ctx, x, weight, bias, y, eps),
                 cdz_layernorm_cpu(ctx, x, weight, bias, y, eps));
}

cdz_status cdz_layernorm_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                             const cdz_tensor *bias, cdz_tensor *y, float eps) {
    const int64_t d = x->shape[x->ndim - 1], rows = cdz_tensor_numel(x) / d;
    const float *w = weight ? (const float *)weight->data : NULL;
    const float *b = bias ? (const float *)bias->data : NULL;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t base = r * d;
        double sum = 0.0, sq = 0.0;
        for (int64_t j = 0; j < d; j++) sum += ld(x->data, x->dtype, base + j);
        const double mean = sum / (double)d;
        for (int64_t j = 0; j < d; j++) {
            double t = ld(x->data, x->dtype, base + j) - mean;
            sq += t * t;
        }
        const double rstd = 1.0 / sqrt(sq / (double)d + (double)eps);
        for (int64_t j = 0; j < d; j++) {
            double v = (ld(x->data, x->dtype, base + j) - mean) * rstd;
            v = v * (w ? w[j] : 1.0) + (b ? b[j] : 0.0);
            st(y->data, y->dtype, base + j, (float)v);
        }
    }
    return CDZ_STATUS_OK;
}

cdz_status cdz_rmsnorm(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight, cdz_tensor *y,
                       float eps) {
    const char *op = "rmsnorm";
    CDZ_TRY(check_xy(ctx, op, x, y, 1, "[..., D]"));
    CDZ_TRY(check_last_dim(op, x));
    int64_t d = x->shape[x->ndim - 1];
    CDZ_TRY(check_vec(ctx, op, "weight", weight, d, true, "the last dim of x"));
    CDZ_TRY(check_eps(op, eps));
    if (cdz_tensor_numel(x) == 0) return CDZ_STATUS_OK;
    CDZ_DISPATCH(cdz_rmsnorm_cuda(ctx, x, weight, y, eps), cdz_rmsnorm_cpu(ctx, x, weight, y, eps));
}

cdz_status cdz_rmsnorm_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *weight,
                           cdz_tensor *y, float eps) {
    const int64_t d = x->shape[x->ndim - 1], rows = cdz_tensor_numel(x) / d;
    const float *w = weight ? (const float *)weight->data : NULL;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t base = r * d;
        double sq = 0.0;
        for (int64_t j = 0; j < d; j++) {
            double t = ld(x->data, x->dtype, base + j);
            sq += t * t;
        }
        const double rstd = 1.0 / sqrt(sq / (double)d + (double)eps);
        for (int64_t j = 0; j < d; j++) {
            double v = ld(x->data, x->dtype, base + j) * rstd * (w ? w[j] : 1.0);
            st(y->data, y->dtype, base + j, (float)v);
        }
    }
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------ batchnorm */
cdz_status cdz_batchnorm(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *mean,
                         const cdz_tensor *var, const cdz_tensor *weight, const cdz_tensor *bias,
                         cdz_tensor *y, float eps) {
    const char *op = "batchnorm";
    CDZ_TRY(check_xy(ctx, op, x, y, 2, "[N, C, *]"));
    int64_t c = x->shape[1];
    CDZ_TRY(check_vec(ctx, op, "mean", mean, c, false, "one per channel of x"));
    CDZ_TRY(check_vec(ctx, op, "var", var, c, false, "one per channel of x"));
    CDZ_TRY(check_vec(ctx, op, "weight", weight, c, true, "one per channel of x"));
    CDZ_TRY(check_vec(ctx, op, "bias", bias, c, true, "one per channel of x"));
    CDZ_TRY(check_eps(op, eps));
    if (cdz_tensor_numel(x) == 0) return CDZ_STATUS_OK;
    CDZ_DISPATCH(cdz_batchnorm_cuda(ctx, x, mean, var, weight, bias, y, eps),
                 cdz_batchnorm_cpu(ctx, x, mean, var, weight, bias, y, eps));
}

cdz_status cdz_batchnorm_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *mean,
                             const cdz_tensor *var, const cdz_tensor *weight,
                             const cdz_tensor *bias, cdz_tensor *y, float eps) {
    const int64_t n_batch = x->shape[0], c = x->shape[1], l = dims_product(x, 2);
    const float *mu = (const float *)mean->data, *va = (const float *)var->data;
    const float *w = weight ? (const float *)weight->data : NULL;
    const float *b = bias ? (const float *)bias->data : NULL;
    for (int64_t n = 0; n < n_batch; n++) {
        for (int64_t ch = 0; ch < c; ch++) {
            const double scale = (w ? w[ch] : 1.0) / sqrt((double)va[ch] + (double)eps);
            const double shift = b ? b[ch] : 0.0;
            const int64_t base = (n * c + ch) * l;
            for (int64_t j = 0; j < l; j++) {
                double v = (ld(x->data, x->dtype, base + j) - (double)mu[ch]) * scale + shift;
                st(y->data, y->dtype, base + j, (float)v);
            }
        }
    }
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------ batchnorm_fold (host) */
static cdz_status check_host_f32(const char *name, const cdz_tensor *t, int64_t n) {
    const char *op = "batchnorm_fold";
    char bt[96];
    CDZ_REQUIRE(t->device.kind == CDZ_DEVICE_CPU && t->dtype == CDZ_DTYPE_F32 &&
                    cdz_tensor_is_contiguous(t) && (t->data != NULL || cdz_tensor_numel(t) == 0),
                "%s: %s must be a contiguous f32 host tensor (got %s)", op, name,
                cdz_tensor_str(t, bt, sizeof bt));
    if (n >= 0)
        CDZ_REQUIRE(t->ndim == 1 && t->shape[0] == n,
                    "%s: %s must be f32[%lld] (one per output channel), got %s", op, name,
                    (long long)n, cdz_tensor_str(t, bt, sizeof bt));
    return CDZ_STATUS_OK;
}

cdz_status cdz_batchnorm_fold(cdz_tensor *conv_weight, const cdz_tensor *conv_bias,
                              const cdz_tensor *mean, const cdz_tensor *var,
                              const cdz_tensor *weight, const cdz_tensor *bias, float eps,
                              cdz_tensor *bias_out) {
    const char *op = "batchnorm_fold";
    CDZ_REQUIRE(conv_weight && mean && var && bias_out,
                "%s: conv_weight, mean, var and bias_out are required", op);
    CDZ_TRY(check_host_f32("conv_weight", conv_weight, -1));
    CDZ_REQUIRE(conv_weight->ndim >= 1, "%s: conv_weight must be [Cout, ...]", op);
    const int64_t cout = conv_weight->shape[0];
    const int64_t per = cout > 0 ? cdz_tensor_numel(conv_weight) / cout : 0;
    if (conv_bias) CDZ_TRY(check_host_f32("conv_bias", conv_bias, cout));
    CDZ_TRY(check_host_f32("mean", mean, cout));
    CDZ_TRY(check_host_f32("var", var, cout));
    if (weight) CDZ_TRY(check_host_f32("weight", weight, cout));
    if (bias) CDZ_TRY(check_host_f32("bias", bias, cout));
    CDZ_TRY(check_host_f32("bias_out", bias_out, cout));
    CDZ_TRY(check_eps(op, eps));
    CDZ_REQUIRE(!partial_overlap(bias_out, conv_weight) && bias_out->data != conv_weight->data,
                "%s: bias_out overlaps conv_weight", op);
    const float *mu = (const float *)mean->data, *va = (const float *)var->data;
    const float *g = weight ? (const float *)weight->data : NULL;
    const float *be = bias ? (const float *)bias->data : NULL;
    const float *cb = conv_bias ? (const float *)conv_bias->data : NULL;
    /* Check every channel before writing anything: a failed fold leaves the weights intact. */
    for (int64_t o = 0; o < cout; o++) {
        double den = (double)va[o] + (double)eps;
        CDZ_REQUIRE(isfinite(den) && den > 0.0 && isfinite(mu[o]),
                    "%s: channel %lld has var + eps = %g and mean %g (need a finite var + eps > 0)",
                    op, (long long)o, den, (double)mu[o]);
    }
    float *w = (float *)conv_weight->data, *bo = (float *)bias_out->data;
    for (int64_t o = 0; o < cout; o++) {
        double s = (g ? (double)g[o] : 1.0) / sqrt((double)va[o] + (double)eps);
        for (int64_t k = 0; k < per; k++) w[o * per + k] = (float)((double)w[o * per + k] * s);
        double b0 = cb ? (double)cb[o] : 0.0;
        bo[o] = (float)((b0 - (double)mu[o]) * s + (be ? (double)be[o] : 0.0));
    }
    return CDZ_STATUS_OK;
}
