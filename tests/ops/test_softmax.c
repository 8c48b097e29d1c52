/*
 * test_softmax.c: cdz_softmax against a float64 reference written here, CUDA (warp-per-row
 * and block-per-row kernels) against the CPU, large magnitudes, masked (-inf) entries and
 * fully masked rows (NaN, as torch.softmax), mixed dtypes, in place, error paths.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../harness.h"
#include "families.h"
#include "softmax.h"

/* float64 softmax(scale * x) per row; a row with no finite maximum is all NaN. */
static double *ref_softmax(th_suite *s, const cdz_tensor *x, double scale) {
    int64_t len = x->shape[x->ndim - 1], n = cdz_tensor_numel(x);
    double *ref = th_alloc_f64(s, (size_t)n + 1);
    for (int64_t r = 0; r * len < n; r++) {
        const int64_t o = r * len;
        double mx = -INFINITY;
        for (int64_t j = 0; j < len; j++) mx = fmax(mx, scale * th_get(x, o + j));
        double sum = 0;
        for (int64_t j = 0; j < len; j++) sum += (ref[o + j] = exp(scale * th_get(x, o + j) - mx));
        for (int64_t j = 0; j < len; j++) ref[o + j] = isinf(mx) ? NAN : ref[o + j] / sum;
    }
    return ref;
}

static double out_tol(cdz_dtype dt, const char **why) {
    switch (dt) {
    case CDZ_DTYPE_F16: *why = "one f16 rounding of the output (<= 2^-11 relative)"; return 1e-3;
    case CDZ_DTYPE_BF16: *why = "one bf16 rounding of the output (<= 2^-9 relative)"; return 5e-3;
    default: *why = "double math, one f32 rounding of the output"; return 1e-6;
    }
}

static double cuda_tol(cdz_dtype dt, const char **why) {
    switch (dt) {
    case CDZ_DTYPE_F16: *why = "fp32 math, f16 outputs rounded on both sides (1 ulp = 2^-10)"; return 1e-3;
    case CDZ_DTYPE_BF16: *why = "fp32 math, bf16 outputs rounded on both sides (1 ulp = 2^-7)"; return 1e-2;
    default:
        *why = "fp32 scale*x, x-max, expf (<= 2 ulp) and fp32 row sum vs double";
        return 1e-6;
    }
}

/* A view of the first `rows` rows of a [R, L]-shaped tensor (to compare around a NaN row). */
static cdz_tensor first_rows(const cdz_tensor *t, int64_t rows) {
    cdz_tensor v;
    int64_t len = t->shape[t->ndim - 1];
    cdz_tensor_init(&v, t->data, t->dtype, t->device, 2, (int64_t[]){rows, len});
    return v;
}

/* How many of the last row's entries are NaN. */
static int64_t nan_count_last_row(th_suite *s, const cdz_tensor *t) {
    cdz_tensor h = t->device.kind == CDZ_DEVICE_CUDA ? th_to_host(s, t) : *t;
    int64_t len = h.shape[h.ndim - 1], n = cdz_tensor_numel(&h), c = 0;
    for (int64_t i = n - len; i < n; i++) c += isnan(th_get(&h, i));
    return c;
}

typedef struct sm_case {
    int ndim;
    int64_t shape[4];
    cdz_dtype xdt, ydt;
    float scale;
    float mag;        /* inputs uniform in [-mag, mag) */
    double masked;    /* fraction of entries set to -inf */
    bool masked_row;  /* the last row entirely -inf (expects NaN there) */
    bool in_place;
} sm_case;

static void sm_run(th_suite *s, const sm_case *cs) {
    char shp[80];
    int k = snprintf(shp, sizeof shp, "[");
    for (int i = 0; i < cs->ndim; i++)
        k += snprintf(shp + k, sizeof shp - (size_t)k, i ? ",%lld" : "%lld", (long long)cs->shape[i]);
    snprintf(shp + k, sizeof shp - (size_t)k, "]");
    if (!th_begin(s, "softmax", "x=%s%s y=%s scale=%g mag=%g masked=%g%s%s", cdz_dtype_name(cs->xdt),
                  shp, cdz_dtype_name(cs->ydt), (double)cs->scale, (double)cs->mag, cs->masked,
                  cs->masked_row ? " last-row-masked" : "", cs->in_place ? " in-place" : ""))
        return;
    cdz_tensor x = th_rand(s, cs->xdt, cs->ndim, cs->shape, -cs->mag, cs->mag);
    int64_t n = cdz_tensor_numel(&x), len = cs->shape[cs->ndim - 1], rows = n / len;
    for (int64_t i = 0; i < n; i++)
        if (cs->masked > 0 && th_rand_uniform(s, 0, 1) < cs->masked) th_set(&x, i, -INFINITY);
    if (cs->masked_row)
        for (int64_t i = n - len; i < n; i++) th_set(&x, i, -INFINITY);
    double *ref = ref_softmax(s, &x, cs->scale);

    cdz_tensor y = cs->in_place ? th_to_host(s, &x) : th_empty(s, cs->ydt, cs->ndim, cs->shape);
    th_ok(s, "cpu", cdz_softmax(s->cpu, cs->in_place ? &y : &x, &y, cs->scale));
    const char *why;
    double tol = out_tol(cs->ydt, &why);
    int64_t ok_rows = cs->masked_row ? rows - 1 : rows;
    cdz_tensor yv = first_rows(&y, ok_rows);
    th_compare_f64(s, "cpu-vs-f64", &yv, ref, tol, why);
    if (cs->masked_row)
        th_check(s, "cpu masked row is NaN", nan_count_last_row(s, &y) == len,
                 "%lld of %lld NaN (torch.softmax of an all -inf row)",
                 (long long)nan_count_last_row(s, &y), (long long)len);

    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dx = th_to_cuda(s, &x);
        cdz_tensor dy = cs->in_place ? dx : th_cuda_like(s, &y);
        if (th_ok(s, "cuda", cdz_softmax(s->cuda, &dx, &dy, cs->scale))) {
            double ct = cuda_tol(cs->ydt, &why);
            cdz_tensor dyv = first_rows(&dy, ok_rows);
            th_compare(s, "cuda-vs-cpu", &dyv, &yv, ct, why);
            if (cs->masked_row)
                th_check(s, "cuda masked row is NaN", nan_count_last_row(s, &dy) == len,
                         "%lld of %lld NaN", (long long)nan_count_last_row(s, &dy), (long long)len);
        }
    }
    th_end(s);
}

static void error_cases(th_suite *s) {
    if (!th_begin(s, "softmax", "error paths")) return;
    const cdz_status BAD = CDZ_STATUS_INVALID_ARGUMENT;
    cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){4, 6}, -1, 1);
    cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){4, 6});
    cdz_tensor y5 = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){4, 5});
    cdz_tensor yi = th_empty(s, CDZ_DTYPE_I32, 2, (int64_t[]){4, 6});
    cdz_tensor xs = th_rand(s, CDZ_DTYPE_F32, 0, NULL, -1, 1);
    th_ok(s, "valid call", cdz_softmax(s->cpu, &x, &y, 1.f));
    th_ok(s, "in place", cdz_softmax(s->cpu, &x, &x, 1.f));
    th_expect_status(s, "shape mismatch", cdz_softmax(s->cpu, &x, &y5, 1.f), BAD);
    th_expect_status(s, "i32 y", cdz_softmax(s->cpu, &x, &yi, 1.f), BAD);
    th_expect_status(s, "NaN scale", cdz_softmax(s->cpu, &x, &y, NAN), BAD);
    th_expect_status(s, "inf scale", cdz_softmax(s->cpu, &x, &y, INFINITY), BAD);
    th_expect_status(s, "scalar x", cdz_softmax(s->cpu, &xs, &xs, 1.f), BAD);
    cdz_tensor shifted = x;
    shifted.data = (float *)x.data + 1; /* overlaps x, not exactly in place */
    th_expect_status(s, "partial overlap", cdz_softmax(s->cpu, &x, &shifted, 1.f), BAD);
    cdz_tensor half_alias = th_rand(s, CDZ_DTYPE_F16, 2, (int64_t[]){4, 6}, -1, 1);
    half_alias.data = x.data; /* same buffer, other dtype */
    th_expect_status(s, "in place, other dtype", cdz_softmax(s->cpu, &x, &half_alias, 1.f), BAD);
    th_expect_status(s, "NULL x", cdz_softmax(s->cpu, NULL, &y, 1.f), BAD);
    cdz_tensor e0 = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){0, 5});
    cdz_tensor e1 = th_empty(s, CDZ_DTYPE_F16, 2, (int64_t[]){4, 0});
    th_ok(s, "empty rows", cdz_softmax(s->cpu, &e0, &e0, 1.f));
    th_ok(s, "empty row length", cdz_softmax(s->cpu, &e1, &e1, 1.f));
    if (th_gpu(s, "cuda empty")) {
        cdz_tensor d0 = th_to_cuda(s, &e0), d1 = th_to_cuda(s, &e1);
        th_ok(s, "cuda empty rows", cdz_softmax(s->cuda, &d0, &d0, 1.f));
        th_ok(s, "cuda empty row length", cdz_softmax(s->cuda, &d1, &d1, 1.f));
    }
    th_end(s);
}

void test_ops_softmax(th_suite *s) {
    const cdz_dtype F32 = CDZ_DTYPE_F32, F16 = CDZ_DTYPE_F16, BF16 = CDZ_DTYPE_BF16;
    const sm_case cases[] = {
        /* row lengths around the warp (<= 2048) / block switch, the per-lane counts and the
         * shared-memory limits of the block kernel */
        {1, {1}, F32, F32, 1.f, 2.f, 0, false, false},
        {2, {3, 3}, F32, F32, 1.f, 2.f, 0, false, false},
        {2, {4, 32}, F32, F32, 1.f, 4.f, 0, false, false},
        {2, {4, 33}, F32, F32, 0.3f, 4.f, 0, false, false},
        {3, {2, 3, 129}, F32, F32, 0.125f, 8.f, 0, false, false},
        {2, {33, 257}, F32, F32, 1.f, 4.f, 0, false, false},
        {2, {5, 1024}, F32, F32, 1.f, 4.f, 0, false, false},
        {2, {5, 1025}, F32, F32, 1.f, 4.f, 0, false, false},
        {2, {3, 2048}, F32, F32, 1.f, 4.f, 0, false, false},
        {2, {3, 2049}, BF16, BF16, 1.f, 4.f, 0, false, false},
        {3, {2, 3, 4097}, F32, F32, -0.5f, 4.f, 0, false, false},
        {2, {3, 20000}, F32, F32, 1.f, 4.f, 0, false, false}, /* shared memory past 48 KiB */
        {2, {2, 100000}, F32, F32, 1.f, 4.f, 0, false, false}, /* past the opt-in: 3 passes */
        {2, {300, 7}, F32, F32, 1.f, 4.f, 0, false, false},
        /* stability: magnitudes up to 80 (exp would overflow without the max) */
        {2, {6, 1000}, F32, F32, 1.f, 80.f, 0, false, false},
        {2, {3, 5000}, F32, F32, 1.f, 80.f, 0, false, false},
        {2, {6, 100}, F16, F16, 1.f, 80.f, 0, false, false},
        /* masked entries; the last row fully masked */
        {2, {9, 33}, F32, F32, 1.f, 4.f, 0.3, true, false},
        {2, {4, 2000}, F32, F32, 1.f, 4.f, 0.5, true, false},
        {2, {5, 64}, F16, F16, 0.125f, 8.f, 0.3, true, false},
        /* half dtypes, mixed in/out */
        {2, {7, 100}, F16, F16, 1.f, 4.f, 0, false, false},
        {2, {7, 3000}, BF16, BF16, 1.f, 4.f, 0, false, false},
        {2, {7, 100}, F16, F32, 1.f, 4.f, 0, false, false},
        {2, {7, 100}, F32, BF16, 1.f, 4.f, 0, false, false},
        {2, {3, 1500}, BF16, F32, 0.5f, 4.f, 0, false, false},
        /* in place */
        {2, {6, 77}, F32, F32, 1.f, 4.f, 0, false, true},
        {2, {3, 2049}, F16, F16, 1.f, 4.f, 0.2, false, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) sm_run(s, &cases[i]);
    error_cases(s);
}
