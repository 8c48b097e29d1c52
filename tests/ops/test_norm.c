/*
 * test_norm.c: groupnorm, layernorm, rmsnorm, batchnorm, batchnorm_fold.
 *
 * Each case: the CPU op against a float64 reference written here (on the already rounded
 * inputs), in f32, f16 and bf16; then CUDA against the CPU op, out of place and in place.
 * Shapes cover GroupNorm(1, C) over a long row (48 x 10007: many CUDA chunks per group),
 * groups == C, N = 1 and 3, D = 1, odd sizes, a D > 1024 row (block-per-row CUDA path), and
 * inputs with a large common offset (mean 1e3, spread 1e-2) that break naive fp32 statistics.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "families.h"
#include "norm.h"

/* ------------------------------------------------------------------ helpers */
static double *to_f64(th_suite *s, const cdz_tensor *t) {
    int64_t n = cdz_tensor_numel(t);
    double *r = th_alloc_f64(s, (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) r[i] = th_get(t, i);
    return r;
}

/* Tolerances of an output stored in dt, given the f32 one. */
static double tol_for(cdz_dtype dt, double f32_tol) {
    return dt == CDZ_DTYPE_F16 ? 1e-3 : dt == CDZ_DTYPE_BF16 ? 8e-3 : f32_tol;
}
static const char *why_for(cdz_dtype dt, const char *f32_why) {
    return dt == CDZ_DTYPE_F16    ? "output rounded to f16 (2^-11 relative per element)"
           : dt == CDZ_DTYPE_BF16 ? "output rounded to bf16 (2^-8 relative per element)"
                                  : f32_why;
}

/* Inputs: uniform with a mild DC offset, or (offset) mean 1e3 with a 1e-2 spread. */
static cdz_tensor make_x(th_suite *s, cdz_dtype dt, int32_t ndim, const int64_t *shape,
                         bool offset) {
    return offset ? th_rand(s, dt, ndim, shape, 1000.0f - 0.0173f, 1000.0f + 0.0173f)
                  : th_rand(s, dt, ndim, shape, -1.5f, 2.5f);
}

static cdz_tensor vec(th_suite *s, int64_t n, float lo, float hi) {
    return th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){n}, lo, hi);
}

static int64_t trailing(const int64_t *shape, int32_t ndim, int32_t from) {
    int64_t p = 1;
    for (int32_t d = from; d < ndim; d++) p *= shape[d];
    return p;
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

/* ------------------------------------------------------------------ float64 references */
static double *ref_groupnorm(th_suite *s, const cdz_tensor *x, const cdz_tensor *w,
                             const cdz_tensor *b, int64_t groups, double eps) {
    const double *xv = to_f64(s, x), *wv = w ? to_f64(s, w) : NULL, *bv = b ? to_f64(s, b) : NULL;
    const int64_t n = x->shape[0], c = x->shape[1], l = trailing(x->shape, x->ndim, 2);
    const int64_t per = c / groups * l; /* elements of one group, contiguous */
    double *y = th_alloc_f64(s, (size_t)(n * c * l));
    for (int64_t grp = 0; grp < n * groups; grp++) {
        const double *g = xv + grp * per;
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < per; i++) mean += g[i];
        mean /= (double)per;
        for (int64_t i = 0; i < per; i++) var += (g[i] - mean) * (g[i] - mean);
        var /= (double)per;
        for (int64_t i = 0; i < per; i++) {
            int64_t ch = (grp % groups) * (c / groups) + i / l;
            double v = (g[i] - mean) / sqrt(var + eps);
            y[grp * per + i] = v * (wv ? wv[ch] : 1.0) + (bv ? bv[ch] : 0.0);
        }
    }
    return y;
}

/* layernorm (rms = false) or rmsnorm (rms = true) over the last dim. */
static double *ref_rownorm(th_suite *s, const cdz_tensor *x, const cdz_tensor *w,
                           const cdz_tensor *b, double eps, bool rms) {
    const double *xv = to_f64(s, x), *wv = w ? to_f64(s, w) : NULL, *bv = b ? to_f64(s, b) : NULL;
    const int64_t d = x->shape[x->ndim - 1], rows = cdz_tensor_numel(x) / d;
    double *y = th_alloc_f64(s, (size_t)(rows * d));
    for (int64_t r = 0; r < rows; r++) {
        const double *row = xv + r * d;
        double mean = 0.0, ms = 0.0;
        if (!rms) {
            for (int64_t j = 0; j < d; j++) mean += row[j] / (double)d;
        }
        for (int64_t j = 0; j < d; j++) ms += (row[j] - mean) * (row[j] - mean) / (double)d;
        for (int64_t j = 0; j < d; j++) {
            double v = (row[j] - mean) / sqrt(ms + eps) * (wv ? wv[j] : 1.0);
            y[r * d + j] = v + (bv ? bv[j] : 0.0);
        }
    }
    return y;
}

static double *ref_batchnorm(th_suite *s, const cdz_tensor *x, const cdz_tensor *mean,
                             const cdz_tensor *var, const cdz_tensor *w, const cdz_tensor *b,
                             double eps) {
    const double *xv = to_f64(s, x), *mv = to_f64(s, mean), *vv = to_f64(s, var);
    const double *wv = w ? to_f64(s, w) : NULL, *bv = b ? to_f64(s, b) : NULL;
    const int64_t c = x->shape[1], l = trailing(x->shape, x->ndim, 2), total = cdz_tensor_numel(x);
    double *y = th_alloc_f64(s, (size_t)total);
    for (int64_t i = 0; i < total; i++) {
        int64_t ch = (i / l) % c;
        y[i] = (xv[i] - mv[ch]) / sqrt(vv[ch] + eps) * (wv ? wv[ch] : 1.0) + (bv ? bv[ch] : 0.0);
    }
    return y;
}

/* ------------------------------------------------------------------ groupnorm */
static const char *dt_name(cdz_dtype dt) { return cdz_dtype_name(dt); }

static void shape_str(char *buf, size_t size, int32_t ndim, const int64_t *shape) {
    int k = snprintf(buf, size, "[");
    for (int32_t d = 0; d < ndim && k > 0 && (size_t)k < size; d++)
        k += snprintf(buf + k, size - (size_t)k, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (k > 0 && (size_t)k < size) snprintf(buf + k, size - (size_t)k, "]");
}

static void groupnorm_case(th_suite *s, cdz_dtype dt, int32_t ndim, const int64_t *shape,
                           int32_t groups, bool affine, bool offset) {
    char sh[64];
    shape_str(sh, sizeof sh, ndim, shape);
    if (!th_begin(s, "groupnorm", "%s x=%s groups=%d affine=%d offset=%d", dt_name(dt), sh,
                  (int)groups, (int)affine, (int)offset))
        return;
    const float eps = 1e-5f;
    const int64_t c = shape[1];
    cdz_tensor x = make_x(s, dt, ndim, shape, offset);
    cdz_tensor w = vec(s, c, 0.5f, 1.5f), b = vec(s, c, -0.5f, 0.5f);
    const cdz_tensor *wp = affine ? &w : NULL, *bp = affine ? &b : NULL;
    cdz_tensor y = th_empty(s, dt, ndim, shape);
    if (th_ok(s, "cpu", cdz_groupnorm(s->cpu, &x, wp, bp, &y, groups, eps))) {
        double *ref = ref_groupnorm(s, &x, wp, bp, groups, eps);
        th_compare_f64(s, "cpu-vs-f64", &y, ref, tol_for(dt, 1e-6),
                       why_for(dt, "double statistics, one fp32 rounding of the output"));
        cdz_tensor xi = th_to_host(s, &x); /* in place gives the same bytes */
        if (th_ok(s, "cpu-inplace", cdz_groupnorm(s->cpu, &xi, wp, bp, &xi, groups, eps)))
            th_compare_bytes(s, "cpu-inplace-vs-cpu", xi.data, y.data, cdz_tensor_nbytes(&y));
    }
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dx = th_to_cuda(s, &x), dy = th_cuda_like(s, &y);
        cdz_tensor dw = th_to_cuda(s, &w), db = th_to_cuda(s, &b);
        const cdz_tensor *dwp = affine ? &dw : NULL, *dbp = affine ? &db : NULL;
        const double tol = tol_for(dt, offset ? 2e-5 : 1e-5);
        const char *why = why_for(dt, offset ? "fp32 shifted Welford stats vs double; 1e3 offset"
                                             : "fp32 Welford stats over up to 480k elements");
        if (th_ok(s, "cuda", cdz_groupnorm(s->cuda, &dx, dwp, dbp, &dy, groups, eps)))
            th_compare(s, "cuda-vs-cpu", &dy, &y, tol, why);
        /* fixed-order reductions: a second run gives the same bytes */
        cdz_tensor dy2 = th_cuda_like(s, &y);
        if (th_ok(s, "cuda-rerun", cdz_groupnorm(s->cuda, &dx, dwp, dbp, &dy2, groups, eps))) {
            cdz_tensor h1 = th_to_host(s, &dy), h2 = th_to_host(s, &dy2);
            th_compare_bytes(s, "cuda-deterministic", h1.data, h2.data, cdz_tensor_nbytes(&h1));
        }
        if (th_ok(s, "cuda-inplace", cdz_groupnorm(s->cuda, &dx, dwp, dbp, &dx, groups, eps))) {
            cdz_tensor h1 = th_to_host(s, &dy), h2 = th_to_host(s, &dx);
            th_compare_bytes(s, "cuda-inplace-vs-cuda", h2.data, h1.data, cdz_tensor_nbytes(&h1));
        }
        /* one element per access instead of four: other order inside each thread's batch */
        cdz_tensor mx = cuda_misaligned(s, &x, true), my = cuda_misaligned(s, &y, false);
        if (th_ok(s, "cuda-misaligned", cdz_groupnorm(s->cuda, &mx, dwp, dbp, &my, groups, eps)))
            th_compare(s, "cuda-misaligned-vs-cpu", &my, &y, tol, why);
    }
    th_end(s);
}

/* ------------------------------------------------------------------ layernorm / rmsnorm */
static void rownorm_case(th_suite *s, bool rms, cdz_dtype dt, int32_t ndim, const int64_t *shape,
                         bool affine, bool offset) {
    char sh[64];
    shape_str(sh, sizeof sh, ndim, shape);
    const char *op = rms ? "rmsnorm" : "layernorm";
    if (!th_begin(s, op, "%s x=%s affine=%d offset=%d", dt_name(dt), sh, (int)affine, (int)offset))
        return;
    const float eps = rms ? 1e-6f : 1e-5f;
    const int64_t d = shape[ndim - 1];
    cdz_tensor x = make_x(s, dt, ndim, shape, offset);
    cdz_tensor w = vec(s, d, 0.5f, 1.5f), b = vec(s, d, -0.5f, 0.5f);
    /* layernorm with D = 1 is exactly the bias: keep it so the reference is not all zeros */
    const cdz_tensor *wp = affine ? &w : NULL, *bp = (affine || d == 1) ? &b : NULL;
    cdz_tensor y = th_empty(s, dt, ndim, shape);
    cdz_status st = rms ? cdz_rmsnorm(s->cpu, &x, wp, &y, eps)
                        : cdz_layernorm(s->cpu, &x, wp, bp, &y, eps);
    if (th_ok(s, "cpu", st)) {
        double *ref = ref_rownorm(s, &x, wp, rms ? NULL : bp, eps, rms);
        th_compare_f64(s, "cpu-vs-f64", &y, ref, tol_for(dt, 1e-6),
                       why_for(dt, "double statistics, one fp32 rounding of the output"));
        cdz_tensor xi = th_to_host(s, &x);
        st = rms ? cdz_rmsnorm(s->cpu, &xi, wp, &xi, eps)
                 : cdz_layernorm(s->cpu, &xi, wp, bp, &xi, eps);
        if (th_ok(s, "cpu-inplace", st))
            th_compare_bytes(s, "cpu-inplace-vs-cpu", xi.data, y.data, cdz_tensor_nbytes(&y));
    }
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dx = th_to_cuda(s, &x), dy = th_cuda_like(s, &y);
        cdz_tensor dw = th_to_cuda(s, &w), db = th_to_cuda(s, &b);
        const cdz_tensor *dwp = wp ? &dw : NULL, *dbp = bp ? &db : NULL;
        const double tol = tol_for(dt, 1e-5);
        const char *why = why_for(dt, "fp32 shifted two-pass stats vs double statistics");
        st = rms ? cdz_rmsnorm(s->cuda, &dx, dwp, &dy, eps)
                 : cdz_layernorm(s->cuda, &dx, dwp, dbp, &dy, eps);
        if (th_ok(s, "cuda", st)) th_compare(s, "cuda-vs-cpu", &dy, &y, tol, why);
        st = rms ? cdz_rmsnorm(s->cuda, &dx, dwp, &dx, eps)
                 : cdz_layernorm(s->cuda, &dx, dwp, dbp, &dx, eps);
        if (th_ok(s, "cuda-inplace", st)) {
            cdz_tensor h1 = th_to_host(s, &dy), h2 = th_to_host(s, &dx);
            th_compare_bytes(s, "cuda-inplace-vs-cuda", h2.data, h1.data, cdz_tensor_nbytes(&h1));
        }
        cdz_tensor mx = cuda_misaligned(s, &x, true), my = cuda_misaligned(s, &y, false);
        st = rms ? cdz_rmsnorm(s->cuda, &mx, dwp, &my, eps)
                 : cdz_layernorm(s->cuda, &mx, dwp, dbp, &my, eps);
        if (th_ok(s, "cuda-misaligned", st)) th_compare(s, "cuda-misaligned-vs-cpu", &my, &y, tol, why);
    }
    th_end(s);
}

/* ------------------------------------------------------------------ batchnorm */
static void batchnorm_case(th_suite *s, cdz_dtype dt, int32_t ndim, const int64_t *shape,
                           bool affine) {
    char sh[64];
    shape_str(sh, sizeof sh, ndim, shape);
    if (!th_begin(s, "batchnorm", "%s x=%s affine=%d", dt_name(dt), sh, (int)affine)) return;
    const float eps = 1e-5f;
    const int64_t c = shape[1];
    cdz_tensor x = make_x(s, dt, ndim, shape, false);
    cdz_tensor mean = vec(s, c, -1.0f, 2.0f), var = vec(s, c, 0.05f, 3.0f);
    cdz_tensor w = vec(s, c, 0.5f, 1.5f), b = vec(s, c, -0.5f, 0.5f);
    const cdz_tensor *wp = affine ? &w : NULL, *bp = affine ? &b : NULL;
    cdz_tensor y = th_empty(s, dt, ndim, shape);
    if (th_ok(s, "cpu", cdz_batchnorm(s->cpu, &x, &mean, &var, wp, bp, &y, eps))) {
        double *ref = ref_batchnorm(s, &x, &mean, &var, wp, bp, eps);
        th_compare_f64(s, "cpu-vs-f64", &y, ref, tol_for(dt, 1e-6),
                       why_for(dt, "double math, one fp32 rounding of the output"));
        cdz_tensor xi = th_to_host(s, &x);
        if (th_ok(s, "cpu-inplace", cdz_batchnorm(s->cpu, &xi, &mean, &var, wp, bp, &xi, eps)))
            th_compare_bytes(s, "cpu-inplace-vs-cpu", xi.data, y.data, cdz_tensor_nbytes(&y));
    }
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dx = th_to_cuda(s, &x), dy = th_cuda_like(s, &y);
        cdz_tensor dm = th_to_cuda(s, &mean), dv = th_to_cuda(s, &var);
        cdz_tensor dw = th_to_cuda(s, &w), db = th_to_cuda(s, &b);
        const cdz_tensor *dwp = affine ? &dw : NULL, *dbp = affine ? &db : NULL;
        if (th_ok(s, "cuda", cdz_batchnorm(s->cuda, &dx, &dm, &dv, dwp, dbp, &dy, eps)))
            th_compare(s, "cuda-vs-cpu", &dy, &y, tol_for(dt, 2e-6),
                       why_for(dt, "fp32 scale w/sqrt(var+eps) vs double, a few ulps"));
        cdz_tensor mx = cuda_misaligned(s, &x, true), my = cuda_misaligned(s, &y, false);
        if (th_ok(s, "cuda-misaligned", cdz_batchnorm(s->cuda, &mx, &dm, &dv, dwp, dbp, &my, eps))) {
            cdz_tensor h1 = th_to_host(s, &dy), h2 = th_to_host(s, &my);
            th_compare_bytes(s, "cuda-misaligned-vs-cuda", h2.data, h1.data, cdz_tensor_nbytes(&h1));
        }
    }
    th_end(s);
}

/* ------------------------------------------------------------------ batchnorm_fold */
static void fold_case(th_suite *s, int64_t cout, int64_t per, bool conv_bias, bool affine) {
    if (!th_begin(s, "batchnorm_fold", "Cout=%lld per=%lld conv_bias=%d affine=%d",
                  (long long)cout, (long long)per, (int)conv_bias, (int)affine))
        return;
    const float eps = 1e-3f;
    cdz_tensor w = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){cout, per, 1}, -1.0f, 1.0f);
    cdz_tensor cb = vec(s, cout, -1.0f, 1.0f);
    cdz_tensor mean = vec(s, cout, -1.0f, 1.0f), var = vec(s, cout, 0.01f, 2.0f);
    cdz_tensor g = vec(s, cout, 0.5f, 1.5f), be = vec(s, cout, -0.5f, 0.5f);
    cdz_tensor w_orig = th_to_host(s, &w);
    cdz_tensor b_out = th_empty(s, CDZ_DTYPE_F32, 1, (int64_t[]){cout});
    const double *w0 = to_f64(s, &w_orig), *cb0 = to_f64(s, &cb), *m0 = to_f64(s, &mean);
    const double *v0 = to_f64(s, &var), *g0 = to_f64(s, &g), *be0 = to_f64(s, &be);
    if (th_ok(s, "fold", cdz_batchnorm_fold(&w, conv_bias ? &cb : NULL, &mean, &var,
                                            affine ? &g : NULL, affine ? &be : NULL, eps,
                                            &b_out))) {
        /* the formula, in f64 */
        double *w_ref = th_alloc_f64(s, (size_t)(cout * per)), *b_ref = th_alloc_f64(s, (size_t)cout);
        for (int64_t o = 0; o < cout; o++) {
            double sc = (affine ? g0[o] : 1.0) / sqrt(v0[o] + (double)eps);
            for (int64_t k = 0; k < per; k++) w_ref[o * per + k] = w0[o * per + k] * sc;
            b_ref[o] = ((conv_bias ? cb0[o] : 0.0) - m0[o]) * sc + (affine ? be0[o] : 0.0);
        }
        th_compare_f64(s, "weight-vs-f64", &w, w_ref, 2e-7, "double math, one f32 rounding");
        th_compare_f64(s, "bias-vs-f64", &b_out, b_ref, 2e-7, "double math, one f32 rounding");
        /* BN(x.w + b) == x.w' + b' for a random x, per output channel */
        double *x = th_alloc_f64(s, (size_t)per), *bn = th_alloc_f64(s, (size_t)cout);
        float *folded = th_alloc(s, (size_t)cout * sizeof(float));
        for (int64_t k = 0; k < per; k++) x[k] = th_rand_uniform(s, -1.0, 1.0);
        const float *wf = (const float *)w.data, *bf = (const float *)b_out.data;
        for (int64_t o = 0; o < cout; o++) {
            double z = conv_bias ? cb0[o] : 0.0, zf = bf[o];
            for (int64_t k = 0; k < per; k++) {
                z += x[k] * w0[o * per + k];
                zf += x[k] * (double)wf[o * per + k];
            }
            bn[o] = (z - m0[o]) / sqrt(v0[o] + (double)eps) * (affine ? g0[o] : 1.0) +
                    (affine ? be0[o] : 0.0);
            folded[o] = (float)zf;
        }
        th_compare_arrays(s, "folded-dot-vs-bn", folded, bn, (size_t)cout, 1e-5,
                          "w', b' rounded to f32 (sums in double may cancel)");
    }
    /* in place into the conv's own bias */
    if (conv_bias) {
        cdz_tensor w2 = th_to_host(s, &w_orig), cb2 = th_to_host(s, &cb);
        if (th_ok(s, "fold-inplace-bias",
                  cdz_batchnorm_fold(&w2, &cb2, &mean, &var, affine ? &g : NULL,
                                     affine ? &be : NULL, eps, &cb2)))
            th_compare_bytes(s, "inplace-bias-vs-out", cb2.data, b_out.data, (size_t)cout * 4);
    }
    th_end(s);
}

/* ------------------------------------------------------------------ error paths */
static void error_cases(th_suite *s) {
    if (!th_begin(s, "norm_errors", "bad dtypes, shapes and parameters")) return;
    const cdz_status inv = CDZ_STATUS_INVALID_ARGUMENT;
    cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 6, 5}, -1.0f, 1.0f);
    cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 3, x.shape);
    cdz_tensor yh = th_empty(s, CDZ_DTYPE_F16, 3, x.shape);
    cdz_tensor ybad = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 6, 4});
    cdz_tensor xi = th_rand(s, CDZ_DTYPE_I32, 3, x.shape, 0.0f, 5.0f);
    cdz_tensor w6 = vec(s, 6, 0.5f, 1.5f), w5 = vec(s, 5, 0.5f, 1.5f), w4 = vec(s, 4, 0.5f, 1.5f);
    cdz_tensor wh = th_rand(s, CDZ_DTYPE_F16, 1, (int64_t[]){6}, 0.5f, 1.5f);
    cdz_tensor x1 = th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){6}, -1.0f, 1.0f);
    cdz_tensor y1 = th_empty(s, CDZ_DTYPE_F32, 1, x1.shape);
    cdz_ctx *c = s->cpu;

    th_expect_status(s, "groupnorm groups=4 with C=6", cdz_groupnorm(c, &x, &w6, NULL, &y, 4, 1e-5f), inv);
    th_expect_status(s, "groupnorm groups=0", cdz_groupnorm(c, &x, NULL, NULL, &y, 0, 1e-5f), inv);
    th_expect_status(s, "groupnorm groups=-2", cdz_groupnorm(c, &x, NULL, NULL, &y, -2, 1e-5f), inv);
    th_expect_status(s, "groupnorm weight [5] for C=6", cdz_groupnorm(c, &x, &w5, NULL, &y, 2, 1e-5f), inv);
    th_expect_status(s, "groupnorm bias [5] for C=6", cdz_groupnorm(c, &x, NULL, &w5, &y, 2, 1e-5f), inv);
    th_expect_status(s, "groupnorm f16 weight", cdz_groupnorm(c, &x, &wh, NULL, &y, 2, 1e-5f), inv);
    th_expect_status(s, "groupnorm y f16 for x f32", cdz_groupnorm(c, &x, NULL, NULL, &yh, 2, 1e-5f), inv);
    th_expect_status(s, "groupnorm y shape", cdz_groupnorm(c, &x, NULL, NULL, &ybad, 2, 1e-5f), inv);
    th_expect_status(s, "groupnorm x i32", cdz_groupnorm(c, &xi, NULL, NULL, &y, 2, 1e-5f), inv);
    th_expect_status(s, "groupnorm 1-D x", cdz_groupnorm(c, &x1, NULL, NULL, &y1, 1, 1e-5f), inv);
    th_expect_status(s, "groupnorm eps < 0", cdz_groupnorm(c, &x, NULL, NULL, &y, 2, -1e-5f), inv);
    th_expect_status(s, "groupnorm eps NaN", cdz_groupnorm(c, &x, NULL, NULL, &y, 2, NAN), inv);
    th_expect_status(s, "groupnorm x NULL", cdz_groupnorm(c, NULL, NULL, NULL, &y, 2, 1e-5f), inv);
    /* y overlapping x at an offset (not in place): refused */
    cdz_tensor xs = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 6, 6}, -1.0f, 1.0f);
    cdz_tensor ys = x;
    ys.data = (float *)xs.data + 1;
    th_expect_status(s, "groupnorm y in another buffer", cdz_groupnorm(c, &x, NULL, NULL, &ys, 2, 1e-5f), CDZ_STATUS_OK);
    ys.data = (float *)x.data + 1;
    th_expect_status(s, "groupnorm y = x + 1", cdz_groupnorm(c, &x, NULL, NULL, &ys, 2, 1e-5f), inv);

    th_expect_status(s, "layernorm weight [6] for D=5", cdz_layernorm(c, &x, &w6, NULL, &y, 1e-5f), inv);
    th_expect_status(s, "layernorm bias [4] for D=5", cdz_layernorm(c, &x, NULL, &w4, &y, 1e-5f), inv);
    th_expect_status(s, "layernorm y f16", cdz_layernorm(c, &x, NULL, NULL, &yh, 1e-5f), inv);
    th_expect_status(s, "layernorm x i32", cdz_layernorm(c, &xi, NULL, NULL, &y, 1e-5f), inv);
    th_expect_status(s, "layernorm eps inf", cdz_layernorm(c, &x, NULL, NULL, &y, INFINITY), inv);
    th_expect_status(s, "rmsnorm weight [6] for D=5", cdz_rmsnorm(c, &x, &w6, &y, 1e-6f), inv);
    th_expect_status(s, "rmsnorm y shape", cdz_rmsnorm(c, &x, &w5, &ybad, 1e-6f), inv);
    th_expect_status(s, "rmsnorm eps < 0", cdz_rmsnorm(c, &x, &w5, &y, -1.0f), inv);

    th_expect_status(s, "batchnorm mean NULL", cdz_batchnorm(c, &x, NULL, &w6, NULL, NULL, &y, 1e-5f), inv);
    th_expect_status(s, "batchnorm var NULL", cdz_batchnorm(c, &x, &w6, NULL, NULL, NULL, &y, 1e-5f), inv);
    th_expect_status(s, "batchnorm var [5] for C=6", cdz_batchnorm(c, &x, &w6, &w5, NULL, NULL, &y, 1e-5f), inv);
    th_expect_status(s, "batchnorm weight [4]", cdz_batchnorm(c, &x, &w6, &w6, &w4, NULL, &y, 1e-5f), inv);
    th_expect_status(s, "batchnorm 1-D x", cdz_batchnorm(c, &x1, &w6, &w6, NULL, NULL, &y1, 1e-5f), inv);

    /* fold: a bad channel leaves the weights untouched */
    cdz_tensor fw = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){6, 3}, -1.0f, 1.0f);
    cdz_tensor fw0 = th_to_host(s, &fw);
    cdz_tensor fvar = vec(s, 6, 0.1f, 1.0f), fb = th_empty(s, CDZ_DTYPE_F32, 1, (int64_t[]){6});
    ((float *)fvar.data)[4] = -1.0f;
    th_expect_status(s, "fold var + eps < 0", cdz_batchnorm_fold(&fw, NULL, &w6, &fvar, NULL, NULL, 1e-5f, &fb), inv);
    th_compare_bytes(s, "fold failure leaves weights", fw.data, fw0.data, cdz_tensor_nbytes(&fw));
    ((float *)fvar.data)[4] = 0.5f;
    th_expect_status(s, "fold bias_out [5]", cdz_batchnorm_fold(&fw, NULL, &w6, &fvar, NULL, NULL, 1e-5f, &w5), inv);
    th_expect_status(s, "fold mean [5]", cdz_batchnorm_fold(&fw, NULL, &w5, &fvar, NULL, NULL, 1e-5f, &fb), inv);
    th_expect_status(s, "fold f16 gamma", cdz_batchnorm_fold(&fw, NULL, &w6, &fvar, &wh, NULL, 1e-5f, &fb), inv);
    th_expect_status(s, "fold bias_out NULL", cdz_batchnorm_fold(&fw, NULL, &w6, &fvar, NULL, NULL, 1e-5f, NULL), inv);
    th_end(s);
}

/* ------------------------------------------------------------------ entry */
void test_ops_norm(th_suite *s) {
    static const cdz_dtype dts[] = {CDZ_DTYPE_F32, CDZ_DTYPE_F16, CDZ_DTYPE_BF16};
    for (int k = 0; k < 3; k++) {
        cdz_dtype dt = dts[k];
        /* GroupNorm(1, 48) over a long row: HTDemucs; many CUDA chunks in one group */
        groupnorm_case(s, dt, 3, (int64_t[]){1, 48, 10007}, 1, true, false);
        groupnorm_case(s, dt, 3, (int64_t[]){3, 6, 33}, 3, true, false);
        groupnorm_case(s, dt, 3, (int64_t[]){3, 8, 7}, 8, false, false); /* groups == C */
        groupnorm_case(s, dt, 4, (int64_t[]){2, 4, 5, 3}, 2, true, false);
        groupnorm_case(s, dt, 2, (int64_t[]){3, 6}, 2, true, false); /* L = 1 */
        rownorm_case(s, false, dt, 3, (int64_t[]){4, 7, 33}, true, false);
        rownorm_case(s, false, dt, 2, (int64_t[]){3, 1}, true, false); /* D = 1 */
        rownorm_case(s, false, dt, 2, (int64_t[]){5, 257}, false, false);
        rownorm_case(s, false, dt, 2, (int64_t[]){3, 1536}, true, false); /* block per row */
        rownorm_case(s, false, dt, 2, (int64_t[]){6, 1024}, true, false); /* warp, 4 per access */
        rownorm_case(s, true, dt, 3, (int64_t[]){2, 5, 64}, true, false);
        rownorm_case(s, true, dt, 3, (int64_t[]){4, 7, 33}, true, false);
        rownorm_case(s, true, dt, 2, (int64_t[]){3, 1}, true, false);
        rownorm_case(s, true, dt, 2, (int64_t[]){5, 257}, false, false);
        rownorm_case(s, true, dt, 2, (int64_t[]){2, 4099}, true, false);
        batchnorm_case(s, dt, 3, (int64_t[]){3, 5, 7}, true);
        batchnorm_case(s, dt, 4, (int64_t[]){2, 3, 4, 5}, false);
    }
    /* many small groups: one CUDA chunk per group */
    groupnorm_case(s, CDZ_DTYPE_F32, 3, (int64_t[]){3, 256, 9}, 256, true, false);
    groupnorm_case(s, CDZ_DTYPE_F32, 3, (int64_t[]){1, 3, 1}, 1, true, false);
    batchnorm_case(s, CDZ_DTYPE_F32, 2, (int64_t[]){4, 6}, true); /* L = 1 */
    /* DC offset 1e3, spread 1e-2 (f32 only: f16/bf16 cannot even store the spread at 1e3) */
    groupnorm_case(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 4, 4099}, 1, true, true);
    groupnorm_case(s, CDZ_DTYPE_F32, 3, (int64_t[]){1, 48, 10007}, 1, false, true);
    rownorm_case(s, false, CDZ_DTYPE_F32, 2, (int64_t[]){16, 512}, true, true);
    rownorm_case(s, false, CDZ_DTYPE_F32, 2, (int64_t[]){3, 3001}, true, true);
    rownorm_case(s, true, CDZ_DTYPE_F32, 2, (int64_t[]){16, 512}, true, true);
    fold_case(s, 5, 9, true, true);
    fold_case(s, 7, 4, false, true);
    fold_case(s, 3, 1, true, false);
    fold_case(s, 4, 33, false, false);
    error_cases(s);
}
