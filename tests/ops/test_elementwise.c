/*
 * test_elementwise.c: add / sub / mul with broadcasting, scale, residual (LayerScale), cast.
 * Each against a float64 reference written here (cpu-vs-f64) and CUDA against the CPU
 * (cuda-vs-cpu): the kernels use the same rounded fp32 ops as the CPU, so that comparison is
 * bit for bit. Also in place, odd and empty shapes, 0-dim and 6-dim operands, cast rounding
 * (ties, subnormals, overflow, inf/NaN), and error paths.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../harness.h"
#include "elementwise.h"
#include "families.h"
#include "half.h"

static const cdz_dtype kFloatTypes[] = {CDZ_DTYPE_F32, CDZ_DTYPE_F16, CDZ_DTYPE_BF16};

static const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
    int k = snprintf(buf, size, "[");
    for (int i = 0; i < ndim && (size_t)k < size; i++)
        k += snprintf(buf + k, size - (size_t)k, i ? ",%lld" : "%lld", (long long)shape[i]);
    if ((size_t)k < size) snprintf(buf + k, size - (size_t)k, "]");
    return buf;
}

/* Tolerance of a result rounded once from exact fp32 operands, vs float64. */
static double round_tol(cdz_dtype dt, const char **why) {
    switch (dt) {
    case CDZ_DTYPE_F16:
        *why = "fp32 math then one f16 rounding (<= 2^-11 relative)";
        return 1e-3;
    case CDZ_DTYPE_BF16:
        *why = "fp32 math then one bf16 rounding (<= 2^-8 relative)";
        return 8e-3;
    default:
        *why = "one fp32 rounding of the exact result of fp32 operands (<= 2^-24 relative)";
        return 1e-7;
    }
}

/* got (CPU or CUDA) and ref (host) hold the same bits, NaN matching any NaN. */
static bool same_bits(th_suite *s, const char *what, const cdz_tensor *got, const cdz_tensor *ref) {
    cdz_tensor g = got->device.kind == CDZ_DEVICE_CUDA ? th_to_host(s, got) : *got;
    int64_t n = cdz_tensor_numel(ref), bad = 0, first = -1;
    size_t es = cdz_dtype_size(ref->dtype);
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *a = (const uint8_t *)g.data + i * es, *b = (const uint8_t *)ref->data + i * es;
        if (memcmp(a, b, es) == 0 || (isnan(th_get(&g, i)) && isnan(th_get(ref, i)))) continue;
        if (bad++ == 0) first = i;
    }
    if (bad)
        th_check(s, what, false, "%lld of %lld elements differ, first [%lld] got=%.9g ref=%.9g",
                 (long long)bad, (long long)n, (long long)first, th_get(&g, first),
                 th_get(ref, first));
    else
        th_check(s, what, true, "%lld elements bit-identical (same rounded fp32 ops)", (long long)n);
    return bad == 0;
}

/* ---------------------------------------------------------------- add / sub / mul */

typedef cdz_status (*binary_fn)(cdz_ctx *, const cdz_tensor *, const cdz_tensor *, cdz_tensor *);

/* Row-major index into t for y coordinates (t right-aligned to y's ndim, size-1 dims fixed). */
static int64_t bcast_index(const cdz_tensor *t, const int64_t *coord, int ydim) {
    int64_t idx = 0;
    for (int d = 0; d < t->ndim; d++) {
        int64_t c = t->shape[d] == 1 ? 0 : coord[d + ydim - t->ndim];
        idx = idx * t->shape[d] + c;
    }
    return idx;
}

static double *ref_binary(th_suite *s, const cdz_tensor *a, const cdz_tensor *b, int ydim,
                          const int64_t *yshape, char op) {
    int64_t n = 1;
    for (int d = 0; d < ydim; d++) n *= yshape[d];
    double *ref = th_alloc_f64(s, (size_t)n + 1);
    int64_t coord[CDZ_MAX_DIMS];
    for (int64_t i = 0; i < n; i++) {
        int64_t rem = i;
        for (int d = ydim - 1; d >= 0; d--) {
            coord[d] = rem % yshape[d];
            rem /= yshape[d];
        }
        double u = th_get(a, bcast_index(a, coord, ydim)), v = th_get(b, bcast_index(b, coord, ydim));
        ref[i] = op == '+' ? u + v : op == '-' ? u - v : u * v;
    }
    return ref;
}

typedef struct bin_case {
    int an, bn, yn;
    int64_t as[6], bs[6], ys[6];
} bin_case;

static void run_binary(th_suite *s, const bin_case *c, cdz_dtype dt, char opc, bool in_place) {
    const char *name = opc == '+' ? "add" : opc == '-' ? "sub" : "mul";
    binary_fn fn = opc == '+' ? cdz_add : opc == '-' ? cdz_sub : cdz_mul;
    char sa[64], sb[64], sy[64];
    if (!th_begin(s, name, "%s a=%s b=%s y=%s%s", cdz_dtype_name(dt), shape_str(c->an, c->as, sa, 64),
                  shape_str(c->bn, c->bs, sb, 64), shape_str(c->yn, c->ys, sy, 64),
                  in_place ? " in-place y=a" : ""))
        return;
    cdz_tensor a = th_rand(s, dt, c->an, c->as, -2.f, 2.f);
    cdz_tensor b = th_rand(s, dt, c->bn, c->bs, -2.f, 2.f);
    double *ref = ref_binary(s, &a, &b, c->yn, c->ys, opc);
    cdz_tensor a0 = th_empty(s, dt, c->an, c->as); /* pristine copy of a for the GPU run */
    memcpy(a0.data, a.data, cdz_tensor_nbytes(&a));
    cdz_tensor y = in_place ? a : th_empty(s, dt, c->yn, c->ys);
    const char *why;
    double tol = round_tol(dt, &why);
    if (th_ok(s, "cpu", fn(s->cpu, &a, &b, &y))) th_compare_f64(s, "cpu-vs-f64", &y, ref, tol, why);
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor da = th_to_cuda(s, &a0), db = th_to_cuda(s, &b);
        cdz_tensor dy = in_place ? da : th_cuda_like(s, &y);
        if (th_ok(s, "cuda", fn(s->cuda, &da, &db, &dy))) same_bits(s, "cuda-vs-cpu", &dy, &y);
    }
    th_end(s);
}

static void test_binary(th_suite *s) {
    static const bin_case cases[] = {
        {3, 2, 3, {2, 3, 5}, {3, 1}, {2, 3, 5}},                 /* brief's case */
        {1, 3, 3, {1}, {4, 1, 7}, {4, 1, 7}},                    /* [1] + [4,1,7] */
        {3, 1, 3, {3, 7, 33}, {33}, {3, 7, 33}},                  /* bias along L */
        {3, 3, 3, {3, 7, 33}, {1, 7, 1}, {3, 7, 33}},             /* [N,C,L] + [1,C,1] */
        {3, 1, 3, {2, 5, 3}, {1}, {2, 5, 3}},                     /* scalar-like [1] */
        {2, 0, 2, {3, 7}, {0}, {3, 7}},                           /* 0-dim b */
        {3, 3, 3, {5, 1, 3}, {1, 4, 1}, {5, 4, 3}},               /* both broadcast */
        {1, 1, 1, {257}, {257}, {257}},                           /* same shape */
        {6, 6, 6, {2, 1, 3, 1, 2, 3}, {1, 2, 1, 2, 1, 3}, {2, 2, 3, 2, 2, 3}}, /* 6 dims */
        {2, 1, 2, {0, 3}, {3}, {0, 3}},                           /* empty */
        {1, 1, 1, {1}, {1}, {1}},
    };
    const char ops[] = {'+', '-', '*'};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int o = 0; o < 3; o++)
            for (int t = 0; t < 3; t++) run_binary(s, &cases[i], kFloatTypes[t], ops[o], false);
    /* in place y == a (a has y's shape) */
    run_binary(s, &cases[0], CDZ_DTYPE_F32, '+', true);
    run_binary(s, &cases[3], CDZ_DTYPE_BF16, '*', true);
    run_binary(s, &cases[2], CDZ_DTYPE_F16, '-', true);

    if (th_begin(s, "add", "error paths")) {
        cdz_tensor a = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 3, 5}, -1, 1);
        cdz_tensor b = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){4, 1}, -1, 1);
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 3, 5});
        th_expect_status(s, "a [2,3,5] + b [4,1]: dim -2 does not broadcast",
                         cdz_add(s->cpu, &a, &b, &y), CDZ_STATUS_INVALID_ARGUMENT);
        th_check(s, "message names the dim", strstr(cdz_last_message(), "dim -2") != NULL, "%s",
                 cdz_last_message());
        cdz_tensor b2 = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){3, 1}, -1, 1);
        cdz_tensor y_bad = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 3, 4});
        th_expect_status(s, "y of the wrong shape", cdz_add(s->cpu, &a, &b2, &y_bad),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor y4 = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 3, 5});
        th_expect_status(s, "y with an extra leading dim", cdz_add(s->cpu, &a, &b2, &y4),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor bh = th_rand(s, CDZ_DTYPE_F16, 2, (int64_t[]){3, 1}, -1, 1);
        th_expect_status(s, "mixed dtypes", cdz_mul(s->cpu, &a, &bh, &y), CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor ai = th_rand(s, CDZ_DTYPE_I32, 3, (int64_t[]){2, 3, 5}, -1, 1);
        cdz_tensor yi = th_empty(s, CDZ_DTYPE_I32, 3, (int64_t[]){2, 3, 5});
        th_expect_status(s, "i32 operands", cdz_add(s->cpu, &ai, &ai, &yi), CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor at = a;
        at.stride[1] = 1;
        at.stride[2] = 3; /* a transposed view */
        th_expect_status(s, "non-contiguous a", cdz_sub(s->cpu, &at, &b2, &y),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor yo = y;
        yo.data = (float *)a.data + 1; /* overlaps a, shifted by one element */
        th_expect_status(s, "y partially overlapping a", cdz_add(s->cpu, &a, &b2, &yo),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor yb = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 3, 5});
        cdz_tensor bb = yb;
        bb.ndim = 2;
        bb.shape[0] = 3;
        bb.shape[1] = 1;
        bb.stride[0] = 1;
        bb.stride[1] = 1; /* b lives inside y's buffer and is broadcast: not in place */
        th_expect_status(s, "y overlapping a broadcast b", cdz_add(s->cpu, &a, &bb, &yb),
                         CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "NULL b", cdz_add(s->cpu, &a, NULL, &y), CDZ_STATUS_INVALID_ARGUMENT);
        th_end(s);
    }
}

/* ---------------------------------------------------------------- scale */

static void test_scale(th_suite *s) {
    static const int64_t shapes[][3] = {{3, 7, 33}, {1, 1, 1}, {2, 1, 257}};
    for (int i = 0; i < 3; i++) {
        for (int t = 0; t < 3; t++) {
            for (int ip = 0; ip < 2; ip++) {
                cdz_dtype dt = kFloatTypes[t];
                float alpha = 1.7f, beta = -0.3f;
                if (!th_begin(s, "scale", "%s [%lld,%lld,%lld] alpha=%g beta=%g%s", cdz_dtype_name(dt),
                              (long long)shapes[i][0], (long long)shapes[i][1], (long long)shapes[i][2],
                              alpha, beta, ip ? " in-place" : ""))
                    continue;
                cdz_tensor x = th_rand(s, dt, 3, shapes[i], -2.f, 2.f);
                int64_t n = cdz_tensor_numel(&x);
                double *ref = th_alloc_f64(s, (size_t)n);
                /* torch's x * alpha + beta: the product is rounded to fp32 first (which can
                 * cancel against beta), so the reference models it; the sum is exact here */
                for (int64_t k = 0; k < n; k++) ref[k] = (double)(float)(alpha * (float)th_get(&x, k)) + beta;
                cdz_tensor dx = s->cuda ? th_to_cuda(s, &x) : x; /* before an in-place CPU run */
                cdz_tensor y = ip ? x : th_empty(s, dt, 3, shapes[i]);
                const char *why;
                double tol = round_tol(dt, &why);
                if (th_ok(s, "cpu", cdz_scale(s->cpu, &x, &y, alpha, beta)))
                    th_compare_f64(s, "cpu-vs-f64", &y, ref, tol, why);
                if (th_gpu(s, "cuda-vs-cpu")) {
                    cdz_tensor dy = ip ? dx : th_cuda_like(s, &y);
                    if (th_ok(s, "cuda", cdz_scale(s->cuda, &dx, &dy, alpha, beta)))
                        same_bits(s, "cuda-vs-cpu", &dy, &y);
                }
                th_end(s);
            }
        }
    }
    if (th_begin(s, "scale", "error paths")) {
        cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){3, 4}, -1, 1);
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){4, 3});
        th_expect_status(s, "y of another shape", cdz_scale(s->cpu, &x, &y, 2, 0),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor yh = th_empty(s, CDZ_DTYPE_F16, 2, (int64_t[]){3, 4});
        th_expect_status(s, "y of another dtype", cdz_scale(s->cpu, &x, &yh, 2, 0),
                         CDZ_STATUS_INVALID_ARGUMENT);
        th_end(s);
    }
}

/* ---------------------------------------------------------------- residual */

typedef struct res_case {
    int ndim;
    int64_t shape[4];
    int channel_dim;
    int scale_kind; /* 0: NULL, 1: [C], 2: x's rank with 1s */
    int in_place;   /* 0: no, 1: y = x, 2: y = r */
} res_case;

static void run_residual(th_suite *s, const res_case *c, cdz_dtype dt) {
    char sx[64];
    if (!th_begin(s, "residual", "%s x=%s channel_dim=%d scale=%s%s", cdz_dtype_name(dt),
                  shape_str(c->ndim, c->shape, sx, 64), c->channel_dim,
                  c->scale_kind == 0 ? "NULL" : c->scale_kind == 1 ? "[C]" : "broadcast-shaped",
                  c->in_place == 1 ? " in-place y=x" : c->in_place == 2 ? " in-place y=r" : ""))
        return;
    cdz_tensor x = th_rand(s, dt, c->ndim, c->shape, -2.f, 2.f);
    cdz_tensor r = th_rand(s, dt, c->ndim, c->shape, -2.f, 2.f);
    int cd = c->channel_dim < 0 ? c->channel_dim + c->ndim : c->channel_dim;
    int64_t channels = c->shape[cd], inner = 1;
    for (int i = cd + 1; i < c->ndim; i++) inner *= c->shape[i];
    cdz_tensor sc, *scp = NULL;
    if (c->scale_kind == 1) {
        sc = th_rand(s, dt, 1, &channels, -1.f, 1.f);
        scp = &sc;
    } else if (c->scale_kind == 2) {
        int64_t ss[4];
        for (int i = 0; i < c->ndim; i++) ss[i] = i == cd ? channels : 1;
        sc = th_rand(s, dt, c->ndim, ss, -1.f, 1.f);
        scp = &sc;
    }
    int64_t n = cdz_tensor_numel(&x);
    double *ref = th_alloc_f64(s, (size_t)n + 1);
    for (int64_t i = 0; i < n; i++) {
        /* torch's x + scale * r rounds the product to fp32 first (it may cancel against x) */
        double g = scp ? th_get(scp, (i / inner) % channels) : 1.0;
        ref[i] = th_get(&x, i) + (double)(float)((float)g * (float)th_get(&r, i));
    }
    cdz_tensor dx = x, dr = r, ds = scp ? *scp : x;
    if (s->cuda) { /* uploaded before an in-place CPU run */
        dx = th_to_cuda(s, &x);
        dr = th_to_cuda(s, &r);
        if (scp) ds = th_to_cuda(s, scp);
    }
    cdz_tensor y = c->in_place == 1 ? x : c->in_place == 2 ? r : th_empty(s, dt, c->ndim, c->shape);
    const char *why;
    double tol = round_tol(dt, &why);
    if (th_ok(s, "cpu", cdz_residual(s->cpu, &x, &r, scp, &y, c->channel_dim)))
        th_compare_f64(s, "cpu-vs-f64", &y, ref, tol, why);
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dy = c->in_place == 1 ? dx : c->in_place == 2 ? dr : th_cuda_like(s, &y);
        if (th_ok(s, "cuda", cdz_residual(s->cuda, &dx, &dr, scp ? &ds : NULL, &dy, c->channel_dim)))
            same_bits(s, "cuda-vs-cpu", &dy, &y);
    }
    th_end(s);
}

static void test_residual(th_suite *s) {
    static const res_case cases[] = {
        {3, {2, 5, 33}, 1, 1, 0},   /* DConv: [B, C, T], scale[:, None] */
        {3, {2, 33, 5}, -1, 1, 0},  /* transformer: channel last */
        {3, {2, 5, 33}, 1, 2, 0},   /* scale [1, C, 1] */
        {3, {3, 7, 17}, 0, 0, 0},   /* no scale */
        {4, {2, 3, 5, 7}, 2, 1, 1}, /* in place y = x */
        {2, {7, 3}, 1, 1, 2},       /* in place y = r */
        {1, {1}, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int t = 0; t < 3; t++) run_residual(s, &cases[i], kFloatTypes[t]);
    if (th_begin(s, "residual", "error paths")) {
        cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 5, 7}, -1, 1);
        cdz_tensor r = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 5, 7}, -1, 1);
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 5, 7});
        cdz_tensor sc = th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){7}, -1, 1);
        th_expect_status(s, "scale of 7 for 5 channels", cdz_residual(s->cpu, &x, &r, &sc, &y, 1),
                         CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "channel_dim 3 of 3 dims", cdz_residual(s->cpu, &x, &r, &sc, &y, 3),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor r2 = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 5, 6}, -1, 1);
        th_expect_status(s, "r of another shape", cdz_residual(s->cpu, &x, &r2, NULL, &y, 1),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor sh = th_rand(s, CDZ_DTYPE_F16, 1, (int64_t[]){5}, -1, 1);
        th_expect_status(s, "f16 scale for f32 x", cdz_residual(s->cpu, &x, &r, &sh, &y, 1),
                         CDZ_STATUS_INVALID_ARGUMENT);
        th_end(s);
    }
}

/* ---------------------------------------------------------------- cast */

/* Round v to a binary format with `mant` fraction bits, minimum normal exponent emin and
 * largest finite value maxv: ties to even (rint), subnormals by a fixed spacing, overflow
 * to inf. Written independently of half.h. */
static double round_format(double v, int mant, int emin, double maxv) {
    if (isnan(v) || isinf(v) || v == 0) return v;
    double a = fabs(v);
    int e;
    frexp(a, &e); /* a = f * 2^e, f in [0.5, 1): the leading bit is 2^(e-1) */
    int lead = e - 1 < emin ? emin : e - 1;
    double ulp = ldexp(1.0, lead - mant);
    double q = rint(a / ulp) * ulp;
    if (q > maxv) q = INFINITY;
    return copysign(q, v);
}

static double round_to(cdz_dtype dt, double v) {
    switch (dt) {
    case CDZ_DTYPE_F16: return round_format(v, 10, -14, 65504.0);
    case CDZ_DTYPE_BF16: return round_format(v, 7, -126, ldexp(255.0, 120));
    default: return (double)(float)v; /* inputs here are exact in f32 */
    }
}

static void run_cast(th_suite *s, cdz_dtype xt, cdz_dtype yt) {
    if (!th_begin(s, "cast", "%s -> %s [3,67] with specials", cdz_dtype_name(xt), cdz_dtype_name(yt)))
        return;
    const double specials[] = {
        1.0 + ldexp(1, -11),     /* f16 tie: rounds down to even 1.0 */
        1.0 + 3 * ldexp(1, -11), /* f16 tie: rounds up to even */
        1.0 + ldexp(1, -8),      /* bf16 tie down */
        1.0 + 3 * ldexp(1, -8),  /* bf16 tie up */
        65504.0, 65519.0, 65520.0, -70000.0, 1e30, /* f16 max, last below tie, tie -> inf, overflow */
        3e38, 3.39e38,           /* near the bf16 max */
        ldexp(1, -24), ldexp(3, -26), 5.96e-8, 1e-6, ldexp(1, -14), /* f16 subnormals */
        1e-40, 1e-39,            /* f32 / bf16 subnormals */
        0.0, -0.0, INFINITY, -INFINITY, NAN, -2.5, 0.1, 1.0 / 3.0,
    };
    const int nsp = (int)(sizeof specials / sizeof specials[0]);
    cdz_tensor x = th_rand(s, xt, 2, (int64_t[]){3, 67}, -300.f, 300.f);
    for (int i = 0; i < nsp; i++) th_set(&x, i, specials[i]); /* stored rounded to xt */
    int64_t n = cdz_tensor_numel(&x);
    cdz_tensor y = th_empty(s, yt, 2, x.shape);
    int64_t bad = 0, first = -1;
    double got_first = 0, ref_first = 0;
    if (th_ok(s, "cpu", cdz_cast(s->cpu, &x, &y))) {
        for (int64_t i = 0; i < n; i++) {
            double r = round_to(yt, th_get(&x, i)), g = th_get(&y, i);
            bool ok = isnan(r) ? isnan(g) : (g == r && signbit(g) == signbit(r));
            if (!ok && bad++ == 0) {
                first = i;
                got_first = g;
                ref_first = r;
            }
        }
        th_check(s, "cpu-vs-f64", bad == 0,
                 "%lld of %lld differ from round-to-nearest-even (exact, tol 0)", (long long)bad,
                 (long long)n);
        if (bad) printf("        first [%lld] got=%.9g ref=%.9g\n", (long long)first, got_first, ref_first);
    }
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dx = th_to_cuda(s, &x), dy = th_cuda_like(s, &y);
        if (th_ok(s, "cuda", cdz_cast(s->cuda, &dx, &dy))) same_bits(s, "cuda-vs-cpu", &dy, &y);
    }
    th_end(s);
}

static void test_cast(th_suite *s) {
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) run_cast(s, kFloatTypes[a], kFloatTypes[b]);
    if (th_begin(s, "cast", "in place f16 -> bf16 and error paths")) {
        cdz_tensor x = th_rand(s, CDZ_DTYPE_F16, 1, (int64_t[]){33}, -4, 4);
        double ref[33];
        for (int i = 0; i < 33; i++) ref[i] = round_to(CDZ_DTYPE_BF16, th_get(&x, i));
        cdz_tensor y = x;
        y.dtype = CDZ_DTYPE_BF16; /* same buffer, same element size */
        if (th_ok(s, "cpu in place", cdz_cast(s->cpu, &x, &y)))
            th_compare_f64(s, "cpu-vs-f64", &y, ref, 0, "exact rounding");
        cdz_tensor x32 = th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){33}, -4, 4);
        cdz_tensor y16 = x32;
        y16.dtype = CDZ_DTYPE_F16; /* overlapping buffers with other element sizes */
        th_expect_status(s, "f32 -> f16 in place", cdz_cast(s->cpu, &x32, &y16),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor yb = th_empty(s, CDZ_DTYPE_F16, 1, (int64_t[]){32});
        th_expect_status(s, "shape mismatch", cdz_cast(s->cpu, &x32, &yb), CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor yi = th_empty(s, CDZ_DTYPE_I32, 1, (int64_t[]){33});
        th_expect_status(s, "to i32", cdz_cast(s->cpu, &x32, &yi), CDZ_STATUS_INVALID_ARGUMENT);
        th_end(s);
    }
}

void test_ops_elementwise(th_suite *s) {
    test_binary(s);
    test_scale(s);
    test_residual(s);
    test_cast(s);
}
