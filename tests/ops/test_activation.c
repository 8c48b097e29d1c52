/*
 * test_activation.c: relu, relu6, sigmoid, tanh, silu, gelu (erf and tanh forms), glu,
 * swiglu, snake, snakebeta.
 *
 * Each case: the CPU op against a float64 reference written here (on the already rounded
 * inputs) in f32, f16 and bf16, over a range reaching |x| = 20 with exact zeros mixed in;
 * then CUDA against the CPU op, out of place and (pointwise ops) in place.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "activation.h"
#include "families.h"

/* ------------------------------------------------------------------ helpers */
static double *to_f64(th_suite *s, const cdz_tensor *t) {
    int64_t n = cdz_tensor_numel(t);
    double *r = th_alloc_f64(s, (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) r[i] = th_get(t, i);
    return r;
}

static double tol_for(cdz_dtype dt, double f32_tol) {
    return dt == CDZ_DTYPE_F16 ? 1e-3 : dt == CDZ_DTYPE_BF16 ? 8e-3 : f32_tol;
}
static const char *why_for(cdz_dtype dt, const char *f32_why) {
    return dt == CDZ_DTYPE_F16    ? "output rounded to f16 (2^-11 relative per element)"
           : dt == CDZ_DTYPE_BF16 ? "output rounded to bf16 (2^-8 relative per element)"
                                  : f32_why;
}

static void shape_str(char *buf, size_t size, int32_t ndim, const int64_t *shape) {
    int k = snprintf(buf, size, "[");
    for (int32_t d = 0; d < ndim && k > 0 && (size_t)k < size; d++)
        k += snprintf(buf + k, size - (size_t)k, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (k > 0 && (size_t)k < size) snprintf(buf + k, size - (size_t)k, "]");
}

/* Uniform in [-wide, wide], a third of it in [-4, 4] (where the curves bend), every 7th
 * element exactly 0, and the extremes +-wide present. */
static cdz_tensor make_x(th_suite *s, cdz_dtype dt, int32_t ndim, const int64_t *shape,
                         float wide) {
    cdz_tensor x = th_rand(s, dt, ndim, shape, -wide, wide);
    int64_t n = cdz_tensor_numel(&x);
    for (int64_t i = 0; i < n; i++) {
        if (i % 3 == 1) th_set(&x, i, th_rand_uniform(s, -4.0, 4.0));
        if (i % 7 == 3) th_set(&x, i, 0.0);
    }
    if (n > 2) th_set(&x, 2, wide);
    if (n > 5) th_set(&x, 5, -wide);
    if (n > 8) th_set(&x, 8, 6.0);
    /* A lone element: keep it off GELU's negative tail, where fp32 1 + erf(x) cancels (as
     * in torch) and a relative error of one tiny value says nothing about the shape path. */
    if (n == 1) th_set(&x, 0, 1.5);
    return x;
}

/* A CUDA tensor shaped like host tensor t, one element past an aligned address, so the kernels
 * must take their one-element-per-access path; holding t's values (copy) or NaN poison. */
static cdz_tensor cuda_misaligned(th_suite *s, const cdz_tensor *t, bool copy) {
    const int64_t n = cdz_tensor_numel(t);
    const size_t es = cdz_dtype_size(t->dtype);
    cdz_tensor big = th_empty(s, t->dtype, 1, (int64_t[]){n + 1});
    if (copy) memcpy((char *)big.data + es, t->data, (size_t)n * es);
    cdz_tensor d = th_to_cuda(s, &big), v = *t;
    v.data = (char *)d.data + es;
    v.device = d.device;
    return v;
}

/* ------------------------------------------------------------------ pointwise */
static double ref_act(cdz_act kind, double v) {
    switch (kind) {
    case CDZ_ACT_RELU: return v > 0.0 ? v : 0.0;
    case CDZ_ACT_RELU6: return v < 0.0 ? 0.0 : v > 6.0 ? 6.0 : v;
    case CDZ_ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    case CDZ_ACT_TANH: return tanh(v);
    case CDZ_ACT_SILU: return v / (1.0 + exp(-v));
    case CDZ_ACT_GELU: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    case CDZ_ACT_GELU_TANH:
        return 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    default: return NAN;
    }
}

/* Through the named wrappers, so they are covered too. */
static cdz_status run_act(cdz_ctx *ctx, cdz_act kind, const cdz_tensor *x, cdz_tensor *y) {
    switch (kind) {
    case CDZ_ACT_RELU: return cdz_relu(ctx, x, y);
    case CDZ_ACT_RELU6: return cdz_relu6(ctx, x, y);
    case CDZ_ACT_SIGMOID: return cdz_sigmoid(ctx, x, y);
    case CDZ_ACT_TANH: return cdz_tanh(ctx, x, y);
    case CDZ_ACT_SILU: return cdz_silu(ctx, x, y);
    case CDZ_ACT_GELU: return cdz_gelu(ctx, x, y, false);
    case CDZ_ACT_GELU_TANH: return cdz_gelu(ctx, x, y, true);
    default: return cdz_activation(ctx, kind, x, y);
    }
}

static void act_case(th_suite *s, cdz_act kind, cdz_dtype dt, int32_t ndim, const int64_t *shape) {
    char sh[64];
    shape_str(sh, sizeof sh, ndim, shape);
    if (!th_begin(s, cdz_act_name(kind), "%s x=%s", cdz_dtype_name(dt), sh)) return;
    cdz_tensor x = make_x(s, dt, ndim, shape, 20.0f);
    cdz_tensor y = th_empty(s, dt, ndim, shape);
    if (th_ok(s, "cpu", run_act(s->cpu, kind, &x, &y))) {
        const int64_t n = cdz_tensor_numel(&x);
        const double *xv = to_f64(s, &x);
        double *ref = th_alloc_f64(s, (size_t)n);
        for (int64_t i = 0; i < n; i++) ref[i] = ref_act(kind, xv[i]);
        th_compare_f64(s, "cpu-vs-f64", &y, ref, tol_for(dt, 1e-6),
                       why_for(dt, "fp32 expf/erff/tanhf, a few ulps per element"));
        cdz_tensor xi = th_to_host(s, &x);
        if (th_ok(s, "cpu-inplace", cdz_activation(s->cpu, kind, &xi, &xi)))
            th_compare_bytes(s, "cpu-inplace-vs-cpu", xi.data, y.data, cdz_tensor_nbytes(&y));
    }
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dx = th_to_cuda(s, &x), dy = th_cuda_like(s, &y);
        if (th_ok(s, "cuda", run_act(s->cuda, kind, &dx, &dy)))
            th_compare(s, "cuda-vs-cpu", &dy, &y, tol_for(dt, 1e-6),
                       why_for(dt, "libdevice vs glibc fp32 functions, a few ulps"));
        if (th_ok(s, "cuda-inplace", cdz_activation(s->cuda, kind, &dx, &dx))) {
            cdz_tensor h1 = th_to_host(s, &dy), h2 = th_to_host(s, &dx);
            th_compare_bytes(s, "cuda-inplace-vs-cuda", h2.data, h1.data, cdz_tensor_nbytes(&h1));
        }
        cdz_tensor mx = cuda_misaligned(s, &x, true), my = cuda_misaligned(s, &y, false);
        if (th_ok(s, "cuda-misaligned", run_act(s->cuda, kind, &mx, &my))) {
            cdz_tensor h1 = th_to_host(s, &dy), h2 = th_to_host(s, &my);
            th_compare_bytes(s, "cuda-misaligned-vs-cuda", h2.data, h1.data, cdz_tensor_nbytes(&h1));
        }
    }
    th_end(s);
}

/* relu / relu6 keep NaN (torch.relu(nan) is nan); compare_* rejects non-finite, so by hand. */
static void nan_case(th_suite *s) {
    if (!th_begin(s, "relu", "NaN propagation")) return;
    cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){4}, -1.0f, 1.0f);
    ((float *)x.data)[1] = NAN;
    for (int k = 0; k < 2; k++) {
        cdz_act kind = k ? CDZ_ACT_RELU6 : CDZ_ACT_RELU;
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 1, x.shape);
        ((float *)y.data)[1] = 0.0f;
        if (th_ok(s, "cpu", cdz_activation(s->cpu, kind, &x, &y)))
            th_check(s, k ? "relu6(nan) cpu" : "relu(nan) cpu", isnan(((float *)y.data)[1]),
                     "got %g", (double)((float *)y.data)[1]);
        if (th_gpu(s, "cuda nan")) {
            cdz_tensor dx = th_to_cuda(s, &x), dy = th_cuda_like(s, &x);
            if (th_ok(s, "cuda", cdz_activation(s->cuda, kind, &dx, &dy))) {
                cdz_tensor h = th_to_host(s, &dy);
                th_check(s, k ? "relu6(nan) cuda" : "relu(nan) cuda", isnan(((float *)h.data)[1]),
                         "got %g", (double)((float *)h.data)[1]);
            }
        }
    }
    th_end(s);
}

/* ------------------------------------------------------------------ glu / swiglu */
/* Reference through full multi-indices of y (not the [outer, h, inner] view). */
static double *ref_gated(th_suite *s, const cdz_tensor *x, const int64_t *yshape, int32_t dim,
                         bool swiglu) {
    const double *xv = to_f64(s, x);
    int64_t ny = 1;
    for (int32_t d = 0; d < x->ndim; d++) ny *= yshape[d];
    double *y = th_alloc_f64(s, (size_t)ny);
    for (int64_t i = 0; i < ny; i++) {
        int64_t idx[CDZ_MAX_DIMS], rem = i;
        for (int32_t d = x->ndim - 1; d >= 0; d--) {
            idx[d] = rem % yshape[d];
            rem /= yshape[d];
        }
        int64_t ia = 0, ib = 0;
        for (int32_t d = 0; d < x->ndim; d++) {
            ia = ia * x->shape[d] + idx[d];
            ib = ib * x->shape[d] + idx[d] + (d == dim ? yshape[d] : 0);
        }
        const double a = xv[ia], b = xv[ib];
        y[i] = swiglu ? a / (1.0 + exp(-a)) * b : a / (1.0 + exp(-b));
    }
    return y;
}

static void gated_case(th_suite *s, bool swiglu, cdz_dtype dt, int32_t ndim, const int64_t *shape,
                       int32_t dim) {
    char sh[64];
    shape_str(sh, sizeof sh, ndim, shape);
    if (!th_begin(s, swiglu ? "swiglu" : "glu", "%s x=%s dim=%d", cdz_dtype_name(dt), sh,
                  swiglu ? -1 : (int)dim))
        return;
    const int32_t d = swiglu ? ndim - 1 : (dim < 0 ? dim + ndim : dim);
    int64_t yshape[CDZ_MAX_DIMS];
    for (int32_t k = 0; k < ndim; k++) yshape[k] = k == d ? shape[k] / 2 : shape[k];
    cdz_tensor x = make_x(s, dt, ndim, shape, 20.0f);
    cdz_tensor y = th_empty(s, dt, ndim, yshape);
    cdz_status st = swiglu ? cdz_swiglu(s->cpu, &x, &y) : cdz_glu(s->cpu, &x, &y, dim);
    if (th_ok(s, "cpu", st)) {
        double *ref = ref_gated(s, &x, yshape, d, swiglu);
        th_compare_f64(s, "cpu-vs-f64", &y, ref, tol_for(dt, 1e-6),
                       why_for(dt, "fp32 expf and a product, a few ulps"));
    }
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dx = th_to_cuda(s, &x), dy = th_cuda_like(s, &y);
        st = swiglu ? cdz_swiglu(s->cuda, &dx, &dy) : cdz_glu(s->cuda, &dx, &dy, dim);
        if (th_ok(s, "cuda", st))
            th_compare(s, "cuda-vs-cpu", &dy, &y, tol_for(dt, 1e-6),
                       why_for(dt, "libdevice vs glibc expf, a few ulps"));
        cdz_tensor mx = cuda_misaligned(s, &x, true), my = cuda_misaligned(s, &y, false);
        st = swiglu ? cdz_swiglu(s->cuda, &mx, &my) : cdz_glu(s->cuda, &mx, &my, dim);
        if (th_ok(s, "cuda-misaligned", st)) {
            cdz_tensor h1 = th_to_host(s, &dy), h2 = th_to_host(s, &my);
            th_compare_bytes(s, "cuda-misaligned-vs-cuda", h2.data, h1.data, cdz_tensor_nbytes(&h1));
        }
    }
    th_end(s);
}

/* ------------------------------------------------------------------ snake / snakebeta */
static double *ref_snake(th_suite *s, const cdz_tensor *x, const cdz_tensor *alpha,
                         const cdz_tensor *beta, bool logscale) {
    const double *xv = to_f64(s, x), *av = to_f64(s, alpha), *bv = to_f64(s, beta);
    const int64_t c = x->shape[1], total = cdz_tensor_numel(x);
    const int64_t l = c > 0 && x->shape[0] > 0 ? total / (x->shape[0] * c) : 0;
    double *y = th_alloc_f64(s, (size_t)total);
    for (int64_t i = 0; i < total; i++) {
        const int64_t ch = (i / l) % c;
        const double a = logscale ? exp(av[ch]) : av[ch], b = logscale ? exp(bv[ch]) : bv[ch];
        const double sn = sin(a * xv[i]);
        y[i] = xv[i] + sn * sn / (b + 1e-9);
    }
    return y;
}

/* beta == NULL: cdz_snake (alpha only); else cdz_snakebeta. */
static cdz_status run_snake(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *alpha,
                            const cdz_tensor *beta, cdz_tensor *y, bool logscale) {
    return beta ? cdz_snakebeta(ctx, x, alpha, beta, y, logscale) : cdz_snake(ctx, x, alpha, y);
}

static void snake_case(th_suite *s, bool with_beta, bool logscale, cdz_dtype dt, int32_t ndim,
                       const int64_t *shape) {
    char sh[64];
    shape_str(sh, sizeof sh, ndim, shape);
    if (!th_begin(s, with_beta ? "snakebeta" : "snake", "%s x=%s logscale=%d", cdz_dtype_name(dt),
                  sh, (int)logscale))
        return;
    const int64_t c = shape[1];
    cdz_tensor x = make_x(s, dt, ndim, shape, 20.0f);
    cdz_tensor alpha = logscale ? th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){c}, -1.0f, 1.0f)
                                : th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){c}, 0.2f, 3.0f);
    cdz_tensor beta = logscale ? th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){c}, -1.0f, 1.0f)
                               : th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){c}, 0.2f, 3.0f);
    const cdz_tensor *bp = with_beta ? &beta : NULL;
    cdz_tensor y = th_empty(s, dt, ndim, shape);
    if (th_ok(s, "cpu", run_snake(s->cpu, &x, &alpha, bp, &y, logscale))) {
        double *ref = ref_snake(s, &x, &alpha, with_beta ? &beta : &alpha, logscale);
        th_compare_f64(s, "cpu-vs-f64", &y, ref, tol_for(dt, 1e-5),
                       why_for(dt, "alpha*x rounded to fp32 before sinf (as torch): |arg| <= 60"));
        cdz_tensor xi = th_to_host(s, &x);
        if (th_ok(s, "cpu-inplace", run_snake(s->cpu, &xi, &alpha, bp, &xi, logscale)))
            th_compare_bytes(s, "cpu-inplace-vs-cpu", xi.data, y.data, cdz_tensor_nbytes(&y));
    }
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dx = th_to_cuda(s, &x), dy = th_cuda_like(s, &y);
        cdz_tensor da = th_to_cuda(s, &alpha), db = th_to_cuda(s, &beta);
        const cdz_tensor *dbp = with_beta ? &db : NULL;
        if (th_ok(s, "cuda", run_snake(s->cuda, &dx, &da, dbp, &dy, logscale)))
            th_compare(s, "cuda-vs-cpu", &dy, &y, tol_for(dt, 2e-6),
                       why_for(dt, "libdevice vs glibc sinf/expf, a few ulps"));
        if (th_ok(s, "cuda-inplace", run_snake(s->cuda, &dx, &da, dbp, &dx, logscale))) {
            cdz_tensor h1 = th_to_host(s, &dy), h2 = th_to_host(s, &dx);
            th_compare_bytes(s, "cuda-inplace-vs-cuda", h2.data, h1.data, cdz_tensor_nbytes(&h1));
        }
        cdz_tensor mx = cuda_misaligned(s, &x, true), my = cuda_misaligned(s, &y, false);
        if (th_ok(s, "cuda-misaligned", run_snake(s->cuda, &mx, &da, dbp, &my, logscale))) {
            cdz_tensor h1 = th_to_host(s, &dy), h2 = th_to_host(s, &my);
            th_compare_bytes(s, "cuda-misaligned-vs-cuda", h2.data, h1.data, cdz_tensor_nbytes(&h1));
        }
    }
    th_end(s);
}

/* ------------------------------------------------------------------ error paths */
static void error_cases(th_suite *s) {
    if (!th_begin(s, "activation_errors", "bad dtypes, shapes and parameters")) return;
    const cdz_status inv = CDZ_STATUS_INVALID_ARGUMENT;
    cdz_ctx *c = s->cpu;
    cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 6, 5}, -1.0f, 1.0f);
    cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 3, x.shape);
    cdz_tensor yh = th_empty(s, CDZ_DTYPE_F16, 3, x.shape);
    cdz_tensor ybad = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 6, 4});
    cdz_tensor xi = th_rand(s, CDZ_DTYPE_I32, 3, x.shape, 0.0f, 5.0f);
    cdz_tensor yi = th_empty(s, CDZ_DTYPE_I32, 3, x.shape);
    cdz_tensor yg = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 3, 5}); /* glu dim 1 */
    cdz_tensor a6 = th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){6}, 0.5f, 1.5f);
    cdz_tensor a5 = th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){5}, 0.5f, 1.5f);
    cdz_tensor ah = th_rand(s, CDZ_DTYPE_F16, 1, (int64_t[]){6}, 0.5f, 1.5f);
    cdz_tensor x1 = th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){6}, -1.0f, 1.0f);
    cdz_tensor y1 = th_empty(s, CDZ_DTYPE_F32, 1, x1.shape);

    th_expect_status(s, "activation kind 99", cdz_activation(c, (cdz_act)99, &x, &y), inv);
    th_expect_status(s, "gelu y f16 for x f32", cdz_gelu(c, &x, &yh, false), inv);
    th_expect_status(s, "silu y shape", cdz_silu(c, &x, &ybad), inv);
    th_expect_status(s, "relu x i32", cdz_relu(c, &xi, &yi), inv);
    th_expect_status(s, "tanh x NULL", cdz_tanh(c, NULL, &y), inv);
    cdz_tensor ys = x;
    ys.data = (float *)x.data + 3;
    th_expect_status(s, "sigmoid y = x + 3 elements", cdz_sigmoid(c, &x, &ys), inv);

    th_expect_status(s, "glu odd dim (5)", cdz_glu(c, &x, &y, 2), inv);
    th_expect_status(s, "glu dim 3 of 3-D", cdz_glu(c, &x, &yg, 3), inv);
    th_expect_status(s, "glu dim -4 of 3-D", cdz_glu(c, &x, &yg, -4), inv);
    th_expect_status(s, "glu y not halved", cdz_glu(c, &x, &y, 1), inv);
    th_expect_status(s, "glu y halved on the wrong dim", cdz_glu(c, &x, &yg, 0), inv);
    th_expect_status(s, "glu dim -2 ok", cdz_glu(c, &x, &yg, -2), CDZ_STATUS_OK);
    cdz_tensor yo = yg;
    yo.data = x.data;
    th_expect_status(s, "glu y overlaps x", cdz_glu(c, &x, &yo, 1), inv);
    th_expect_status(s, "swiglu odd last dim", cdz_swiglu(c, &x, &ybad), inv);
    cdz_tensor x8 = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){3, 8}, -1.0f, 1.0f);
    cdz_tensor y8 = th_empty(s, CDZ_DTYPE_F16, 2, (int64_t[]){3, 4});
    th_expect_status(s, "swiglu y f16 for x f32", cdz_swiglu(c, &x8, &y8), inv);

    th_expect_status(s, "snake alpha [5] for C=6", cdz_snake(c, &x, &a5, &y), inv);
    th_expect_status(s, "snake alpha f16", cdz_snake(c, &x, &ah, &y), inv);
    th_expect_status(s, "snake alpha NULL", cdz_snake(c, &x, NULL, &y), inv);
    th_expect_status(s, "snake 1-D x", cdz_snake(c, &x1, &a6, &y1), inv);
    th_expect_status(s, "snakebeta beta NULL", cdz_snakebeta(c, &x, &a6, NULL, &y, true), inv);
    th_expect_status(s, "snakebeta beta [5]", cdz_snakebeta(c, &x, &a6, &a5, &y, true), inv);
    th_expect_status(s, "snakebeta y f16", cdz_snakebeta(c, &x, &a6, &a6, &yh, false), inv);
    th_end(s);
}

/* ------------------------------------------------------------------ entry */
void test_ops_activation(th_suite *s) {
    static const cdz_dtype dts[] = {CDZ_DTYPE_F32, CDZ_DTYPE_F16, CDZ_DTYPE_BF16};
    for (int k = 0; k < (int)CDZ_ACT_COUNT_; k++) {
        for (int j = 0; j < 3; j++) act_case(s, (cdz_act)k, dts[j], 2, (int64_t[]){3, 257});
        act_case(s, (cdz_act)k, CDZ_DTYPE_F32, 1, (int64_t[]){1});
        act_case(s, (cdz_act)k, CDZ_DTYPE_F32, 4, (int64_t[]){2, 3, 5, 7});
    }
    nan_case(s);
    for (int j = 0; j < 3; j++) {
        gated_case(s, false, dts[j], 3, (int64_t[]){2, 6, 33}, 1); /* HTDemucs [N, 2C, L] */
        gated_case(s, false, dts[j], 3, (int64_t[]){2, 8, 12}, 1);  /* half = 48: 4 per access */
        gated_case(s, true, dts[j], 2, (int64_t[]){3, 66}, -1);
        gated_case(s, true, dts[j], 2, (int64_t[]){3, 128}, -1);
        snake_case(s, false, false, dts[j], 3, (int64_t[]){2, 5, 37});
        snake_case(s, true, true, dts[j], 3, (int64_t[]){2, 5, 37});
    }
    gated_case(s, false, CDZ_DTYPE_F32, 3, (int64_t[]){3, 4, 8}, -1);
    gated_case(s, false, CDZ_DTYPE_F32, 2, (int64_t[]){4, 3}, 0);
    gated_case(s, false, CDZ_DTYPE_F32, 3, (int64_t[]){1, 2, 1}, 1);
    gated_case(s, true, CDZ_DTYPE_F32, 3, (int64_t[]){2, 5, 14}, -1);
    gated_case(s, true, CDZ_DTYPE_F32, 1, (int64_t[]){2}, -1);
    snake_case(s, false, false, CDZ_DTYPE_F32, 3, (int64_t[]){1, 3, 1001});
    snake_case(s, false, false, CDZ_DTYPE_F32, 2, (int64_t[]){3, 4}); /* L = 1 */
    snake_case(s, true, false, CDZ_DTYPE_F32, 3, (int64_t[]){3, 7, 33});
    snake_case(s, true, true, CDZ_DTYPE_F32, 4, (int64_t[]){2, 3, 4, 5});
    error_cases(s);
}
