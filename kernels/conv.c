/*
 * conv.c: entries (validation + dispatch) and the CPU reference of the conv family.
 * The reference is a direct loop with double accumulation (no im2col, no FFT): slow but
 * obviously right, for every stride / dilation / padding / group combination.
 */
#include "conv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ctx.h"
#include "half.h"

/* ------------------------------------------------------------------------------------
 * Parameters and output sizes
 * ---------------------------------------------------------------------------------- */
cdz_conv_params cdz_conv_params_1d(int32_t stride, int32_t pad, int32_t dilation, int32_t groups) {
    return cdz_conv_params_2d(stride, 1, pad, 0, dilation, 1, groups);
}

cdz_conv_params cdz_conv_params_2d(int32_t stride_h, int32_t stride_w, int32_t pad_h,
                                   int32_t pad_w, int32_t dilation_h, int32_t dilation_w,
                                   int32_t groups) {
    cdz_conv_params p;
    memset(&p, 0, sizeof p);
    p.stride[0] = stride_h, p.stride[1] = stride_w;
    p.dilation[0] = dilation_h, p.dilation[1] = dilation_w;
    p.pad_begin[0] = p.pad_end[0] = pad_h;
    p.pad_begin[1] = p.pad_end[1] = pad_w;
    p.groups = groups;
    return p;
}

int64_t cdz_conv_out_len(int64_t in, int64_t k, int32_t stride, int32_t dilation,
                         int32_t pad_begin, int32_t pad_end) {
    if (stride < 1) return 0;
    int64_t span = in + pad_begin + pad_end - (int64_t)dilation * (k - 1) - 1;
    if (span < 0) return 0; /* C division truncates toward zero: floor by hand */
    return span / stride + 1;
}

int64_t cdz_conv_transpose_out_len(int64_t in, int64_t k, int32_t stride, int32_t dilation,
                                   int32_t pad_begin, int32_t pad_end, int32_t output_padding) {
    return (in - 1) * stride - pad_begin - pad_end + (int64_t)dilation * (k - 1) +
           output_padding + 1;
}

cdz_conv_impl cdz_conv_impl_resolve(const cdz_conv_params *p) {
    if (p->impl == CDZ_CONV_IMPL_CUDNN || p->impl == CDZ_CONV_IMPL_OWN) return (cdz_conv_impl)p->impl;
    const char *env = getenv("CADENZA_CONV_IMPL");
    if (env && strcmp(env, "own") == 0) return CDZ_CONV_IMPL_OWN;
    if (env && strcmp(env, "cudnn") == 0) return CDZ_CONV_IMPL_CUDNN;
    return CDZ_CONV_IMPL_AUTO;
}

void cdz_conv_geom_init(cdz_conv_geom *g, const cdz_tensor *x, const cdz_tensor *w,
                        const cdz_tensor *y, const cdz_conv_params *p, int dims, bool transposed) {
    memset(g, 0, sizeof *g);
    g->transposed = transposed;
    g->n = x->shape[0];
    g->cin = x->shape[1];
    g->cout = y->shape[1];
    g->groups = p->groups;
    g->cin_g = g->cin / g->groups;
    g->cout_g = g->cout / g->groups;
    /* 1-d: H is a unit dimension; params index 0 describes W */
    int a = dims == 2 ? 1 : 0; /* params index of the W dimension */
    g->ih = dims == 2 ? x->shape[2] : 1;
    g->kh = dims == 2 ? w->shape[2] : 1;
    g->oh = dims == 2 ? y->shape[2] : 1;
    g->iw = x->shape[dims + 1];
    g->kw = w->shape[dims + 1];
    g->ow = y->shape[dims + 1];
    g->sh = dims == 2 ? p->stride[0] : 1;
    g->dh = dims == 2 ? p->dilation[0] : 1;
    g->ph = dims == 2 ? p->pad_begin[0] : 0;
    g->ph_end = dims == 2 ? p->pad_end[0] : 0;
    g->oph = dims == 2 && transposed ? p->output_padding[0] : 0;
    g->sw = p->stride[a];
    g->dw = p->dilation[a];
    g->pw = p->pad_begin[a];
    g->pw_end = p->pad_end[a];
    g->opw = transposed ? p->output_padding[a] : 0;
}

/* ------------------------------------------------------------------------------------
 * Validation shared by the four entries
 * ---------------------------------------------------------------------------------- */
static cdz_status conv_validate(cdz_ctx *ctx, const char *op, int dims, bool transposed,
                                const cdz_tensor *x, const cdz_tensor *w, const cdz_tensor *bias,
                                const cdz_tensor *y, const cdz_conv_params *p) {
    CDZ_REQUIRE(ctx != NULL, "%s: ctx is NULL", op);
    CDZ_REQUIRE(x != NULL && w != NULL && y != NULL, "%s: x, weight and y must not be NULL", op);
    CDZ_REQUIRE(p != NULL, "%s: params is NULL", op);
    const int32_t nd = dims + 2;
    CDZ_TRY(cdz_check_tensor(ctx, op, "x", x, CDZ_DTYPE_COUNT_, nd));
    CDZ_TRY(cdz_check_tensor(ctx, op, "weight", w, CDZ_DTYPE_COUNT_, nd));
    CDZ_TRY(cdz_check_tensor(ctx, op, "y", y, CDZ_DTYPE_COUNT_, nd));
    CDZ_REQUIRE(cdz_dtype_is_float(x->dtype), "%s: x must be f32, f16 or bf16 (got %s)", op,
                cdz_dtype_name(x->dtype));
    CDZ_REQUIRE(w->dtype == x->dtype, "%s: weight is %s but x is %s (they must match)", op,
                cdz_dtype_name(w->dtype), cdz_dtype_name(x->dtype));
    CDZ_REQUIRE(y->dtype == x->dtype, "%s: y is %s but x is %s (they must match)", op,
                cdz_dtype_name(y->dtype), cdz_dtype_name(x->dtype));
    if (bias) {
        CDZ_TRY(cdz_check_tensor(ctx, op, "bias", bias, CDZ_DTYPE_COUNT_, 1));
        CDZ_REQUIRE(bias->dtype == CDZ_DTYPE_F32 || bias->dtype == x->dtype,
                    "%s: bias must be f32 or the dtype of x, %s (got %s)", op, cdz_dtype_name(x->dtype),
                    cdz_dtype_name(bias->dtype));
    }

    /* parameters */
    CDZ_REQUIRE(p->groups >= 1, "%s: groups must be >= 1 (got %d)", op, p->groups);
    CDZ_REQUIRE(p->impl >= CDZ_CONV_IMPL_AUTO && p->impl <= CDZ_CONV_IMPL_OWN,
                "%s: params.impl must be 0 (auto), 1 (cudnn) or 2 (own) (got %d)", op, p->impl);
    for (int i = 0; i < dims; i++) {
        CDZ_REQUIRE(p->stride[i] >= 1, "%s: stride[%d] must be >= 1 (got %d)", op, i, p->stride[i]);
        CDZ_REQUIRE(p->dilation[i] >= 1, "%s: dilation[%d] must be >= 1 (got %d)", op, i,
                    p->dilation[i]);
        CDZ_REQUIRE(p->pad_begin[i] >= 0 && p->pad_end[i] >= 0,
                    "%s: padding[%d] must be >= 0 (got begin %d, end %d)", op, i, p->pad_begin[i],
                    p->pad_end[i]);
        if (transposed) {
            int32_t lim = p->stride[i] > p->dilation[i] ? p->stride[i] : p->dilation[i];
            CDZ_REQUIRE(p->output_padding[i] >= 0 && p->output_padding[i] < lim,
                        "%s: output_padding[%d] must be in [0, max(stride, dilation) = %d) (got %d)",
                        op, i, lim, p->output_padding[i]);
        } else {
            CDZ_REQUIRE(p->output_padding[i] == 0,
                        "%s: output_padding[%d] is only for transposed convs (got %d)", op, i,
                        p->output_padding[i]);
        }
    }

    /* sizes: every dim fits int32 (cuDNN descriptors, kernel loops); N may be 0 */
    const cdz_tensor *ts[3] = {x, w, y};
    const char *names[3] = {"x", "weight", "y"};
    for (int t = 0; t < 3; t++) {
        for (int i = 0; i < nd; i++) {
            int64_t v = ts[t]->shape[i];
            bool batch = (t != 1 && i == 0);
            CDZ_REQUIRE(v <= INT32_MAX && (v >= 1 || (batch && v == 0)),
                        "%s: %s dimension %d is %lld (must be in [%d, 2^31))", op, names[t], i,
                        (long long)v, batch ? 0 : 1);
        }
    }
    const int64_t n = x->shape[0], cin = x->shape[1], groups = p->groups;
    CDZ_REQUIRE(cin % groups == 0, "%s: x has %lld channels, not divisible by groups=%lld", op,
                (long long)cin, (long long)groups);
    int64_t cout;
    if (!transposed) {
        cout = w->shape[0];
        CDZ_REQUIRE(w->shape[1] * groups == cin,
                    "%s: weight has %lld input channels per group, x has %lld channels / "
                    "groups=%lld", op, (long long)w->shape[1], (long long)cin, (long long)groups);
        CDZ_REQUIRE(cout % groups == 0,
                    "%s: weight has %lld output channels, not divisible by groups=%lld", op,
                    (long long)cout, (long long)groups);
    } else {
        CDZ_REQUIRE(w->shape[0] == cin,
                    "%s: weight [Cin, Cout/groups, ...] has %lld input channels, x has %lld", op,
                    (long long)w->shape[0], (long long)cin);
        cout = w->shape[1] * groups;
    }
    int64_t kprod = w->shape[1];
    for (int i = 0; i < dims; i++) kprod *= w->shape[2 + i];
    CDZ_REQUIRE(kprod <= INT32_MAX, "%s: weight has %lld elements per output channel (max 2^31)",
                op, (long long)kprod);
    if (bias)
        CDZ_REQUIRE(bias->shape[0] == cout, "%s: bias has %lld elements, expected Cout=%lld", op,
                    (long long)bias->shape[0], (long long)cout);

    /* y's shape against the formula */
    int64_t expect[2 + 2] = {n, cout, 0, 0};
    for (int i = 0; i < dims; i++) {
        int a = i; /* params index: 1-d uses index 0 */
        int64_t in = x->shape[2 + i], k = w->shape[2 + i];
        int64_t out = transposed
                          ? cdz_conv_transpose_out_len(in, k, p->stride[a], p->dilation[a],
                                                       p->pad_begin[a], p->pad_end[a],
                                                       p->output_padding[a])
                          : cdz_conv_out_len(in, k, p->stride[a], p->dilation[a],
                                             p->pad_begin[a], p->pad_end[a]);
        CDZ_REQUIRE(out >= 1,
                    "%s: output length along spatial dim %d is %lld < 1 (in=%lld K=%lld stride=%d "
                    "dilation=%d pad=%d+%d%s)", op, i, (long long)out, (long long)in, (long long)k,
                    p->stride[a], p->dilation[a], p->pad_begin[a], p->pad_end[a],
                    transposed ? " trimmed" : "");
        expect[2 + i] = out;
    }
    bool same = true;
    for (int i = 0; i < nd; i++) same = same && y->shape[i] == expect[i];
    if (!same) {
        char got[160], want[96];
        cdz_tensor_str(y, got, sizeof got);
        if (dims == 1)
            snprintf(want, sizeof want, "[%lld,%lld,%lld]", (long long)expect[0],
                     (long long)expect[1], (long long)expect[2]);
        else
            snprintf(want, sizeof want, "[%lld,%lld,%lld,%lld]", (long long)expect[0],
                     (long long)expect[1], (long long)expect[2], (long long)expect[3]);
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                             "%s: y is %s, expected shape %s from x [N=%lld, C=%lld, ...], "
                             "weight, stride/dilation/padding%s", op, got, want, (long long)n,
                             (long long)cin, transposed ? "/output_padding" : "");
    }
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------------------------
 * CPU reference
 * ---------------------------------------------------------------------------------- */

/* f32 view of a tensor: the data itself for f32, else a converted copy in *owned. */
static cdz_status as_f32(const cdz_tensor *t, const float **out, float **owned) {
    *owned = NULL;
    if (t->dtype == CDZ_DTYPE_F32) {
        *out = (const float *)t->data;
        return CDZ_STATUS_OK;
    }
    int64_t n = cdz_tensor_numel(t);
    float *buf = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!buf) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "conv: host copy of %lld elements",
                                   (long long)n);
    const uint16_t *src = (const uint16_t *)t->data;
    for (int64_t i = 0; i < n; i++)
        buf[i] = t->dtype == CDZ_DTYPE_F16 ? cdz_f16_to_f32(src[i]) : cdz_bf16_to_f32(src[i]);
    *out = buf;
    *owned = buf;
    return CDZ_STATUS_OK;
}

static void store(const cdz_tensor *y, int64_t i, double v) {
    switch (y->dtype) {
    case CDZ_DTYPE_F16: ((uint16_t *)y->data)[i] = cdz_f32_to_f16((float)v); break;
    case CDZ_DTYPE_BF16: ((uint16_t *)y->data)[i] = cdz_f32_to_bf16((float)v); break;
    default: ((float *)y->data)[i] = (float)v; break;
    }
}

/* y[n, co, oy, ox] for one output element, direct (gather) form for both directions. */
static double conv_point(const cdz_conv_geom *g, const float *x, const float *w, int64_t n,
                         int64_t co, int64_t oy, int64_t ox) {
    const int64_t grp = co / g->cout_g;
    double acc = 0.0;
    for (int64_t ci = 0; ci < g->cin_g; ci++) {
        const int64_t c = grp * g->cin_g + ci; /* channel of x */
        const float *xc = x + (n * g->cin + c) * g->ih * g->iw;
        const float *wc = g->transposed
                              ? w + (c * g->cout_g + (co - grp * g->cout_g)) * g->kh * g->kw
                              : w + (co * g->cin_g + ci) * g->kh * g->kw;
        for (int64_t ky = 0; ky < g->kh; ky++) {
            int64_t iy;
            if (g->transposed) {
                /* oy = iy*s - pb + ky*d  =>  iy = (oy + pb - ky*d) / s when exact */
                int64_t t = oy + g->ph - ky * g->dh;
                if (t < 0 || t % g->sh) continue;
                iy = t / g->sh;
            } else {
                iy = oy * g->sh - g->ph + ky * g->dh;
            }
            if (iy < 0 || iy >= g->ih) continue;
            for (int64_t kx = 0; kx < g->kw; kx++) {
                int64_t ix;
                if (g->transposed) {
                    int64_t t = ox + g->pw - kx * g->dw;
                    if (t < 0 || t % g->sw) continue;
                    ix = t / g->sw;
                } else {
                    ix = ox * g->sw - g->pw + kx * g->dw;
                }
                if (ix < 0 || ix >= g->iw) continue;
                acc += (double)xc[iy * g->iw + ix] * (double)wc[ky * g->kw + kx];
            }
        }
    }
    return acc;
}

static cdz_status conv_cpu(const cdz_tensor *x, const cdz_tensor *w, const cdz_tensor *bias,
                           cdz_tensor *y, const cdz_conv_params *p, int dims, bool transposed) {
    cdz_conv_geom g;
    cdz_conv_geom_init(&g, x, w, y, p, dims, transposed);
    const float *xf, *wf, *bf = NULL;
    float *xo = NULL, *wo = NULL, *bo = NULL;
    cdz_status st = as_f32(x, &xf, &xo);
    if (st == CDZ_STATUS_OK) st = as_f32(w, &wf, &wo);
    if (st == CDZ_STATUS_OK && bias) st = as_f32(bias, &bf, &bo);
    if (st == CDZ_STATUS_OK) {
        int64_t i = 0;
        for (int64_t n = 0; n < g.n; n++)
            for (int64_t co = 0; co < g.cout; co++) {
                const double b = bf ? (double)bf[co] : 0.0;
                for (int64_t oy = 0; oy < g.oh; oy++)
                    for (int64_t ox = 0; ox < g.ow; ox++, i++)
                        store(y, i, b + conv_point(&g, xf, wf, n, co, oy, ox));
            }
    }
    free(xo);
    free(wo);
    free(bo);
    return st;
}

cdz_status cdz_conv1d_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                          const cdz_tensor *bias, cdz_tensor *y, const cdz_conv_params *p) {
    return conv_cpu(x, w, bias, y, p, 1, false);
}

cdz_status cdz_conv2d_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                          const cdz_tensor *bias, cdz_tensor *y, const cdz_conv_params *p) {
    return conv_cpu(x, w, bias, y, p, 2, false);
}

cdz_status cdz_conv_transpose1d_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                                    const cdz_tensor *bias, cdz_tensor *y,
                                    const cdz_conv_params *p) {
    return conv_cpu(x, w, bias, y, p, 1, true);
}

cdz_status cdz_conv_transpose2d_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                                    const cdz_tensor *bias, cdz_tensor *y,
                                    const cdz_conv_params *p) {
    return conv_cpu(x, w, bias, y, p, 2, true);
}

/* ------------------------------------------------------------------------------------
 * Entries
 * ---------------------------------------------------------------------------------- */
#ifdef CDZ_HAVE_CUDA
#define CONV_DISPATCH(name, ...)                                      \
    do {                                                              \
        if (cdz_ctx_is_cuda(ctx)) return cdz_##name##_cuda(__VA_ARGS__); \
        return cdz_##name##_cpu(__VA_ARGS__);                         \
    } while (0)
#else
#define CONV_DISPATCH(name, ...)                                                      \
    do {                                                                              \
        if (cdz_ctx_is_cuda(ctx))                                                     \
            return cdz_error_set(CDZ_STATUS_UNSUPPORTED, #name ": built without CUDA"); \
        return cdz_##name##_cpu(__VA_ARGS__);                                         \
    } while (0)
#endif

cdz_status cdz_conv1d(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                      const cdz_tensor *bias, cdz_tensor *y, const cdz_conv_params *p) {
    CDZ_TRY(conv_validate(ctx, "conv1d", 1, false, x, w, bias, y, p));
    if (cdz_tensor_numel(y) == 0) return CDZ_STATUS_OK;
    CONV_DISPATCH(conv1d, ctx, x, w, bias, y, p);
}

cdz_status cdz_conv2d(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                      const cdz_tensor *bias, cdz_tensor *y, const cdz_conv_params *p) {
    CDZ_TRY(conv_validate(ctx, "conv2d", 2, false, x, w, bias, y, p));
    if (cdz_tensor_numel(y) == 0) return CDZ_STATUS_OK;
    CONV_DISPATCH(conv2d, ctx, x, w, bias, y, p);
}

cdz_status cdz_conv_transpose1d(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                                const cdz_tensor *bias, cdz_tensor *y, const cdz_conv_params *p) {
    CDZ_TRY(conv_validate(ctx, "conv_transpose1d", 1, true, x, w, bias, y, p));
    if (cdz_tensor_numel(y) == 0) return CDZ_STATUS_OK;
    CONV_DISPATCH(conv_transpose1d, ctx, x, w, bias, y, p);
}

cdz_status cdz_conv_transpose2d(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                                const cdz_tensor *bias, cdz_tensor *y, const cdz_conv_params *p) {
    CDZ_TRY(conv_validate(ctx, "conv_transpose2d", 2, true, x, w, bias, y, p));
    if (cdz_tensor_numel(y) == 0) return CDZ_STATUS_OK;
    CONV_DISPATCH(conv_transpose2d, ctx, x, w, bias, y, p);
}
