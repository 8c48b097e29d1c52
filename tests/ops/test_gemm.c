/*
 * test_gemm.c: cdz_linear and cdz_matmul against a float64 reference written here (one
 * th_get per operand element, broadcasting by coordinates), CUDA against the CPU in each
 * precision mode, exact small-integer products (every fp32 sum exact, tolerance 0), a
 * TF32-off proof, K == 0, broadcast batches and error paths.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../harness.h"
#include "families.h"
#include "gemm.h"
#include "half.h"

/* ------------------------------------------------------------------ helpers */

static const char *shape_str(char *buf, size_t size, int ndim, const int64_t *shape) {
    int k = snprintf(buf, size, "[");
    for (int i = 0; i < ndim && k > 0 && (size_t)k < size; i++)
        k += snprintf(buf + k, size - (size_t)k, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (k > 0 && (size_t)k < size) snprintf(buf + k, size - (size_t)k, "]");
    return buf;
}

/* ival > 0: integers in [-ival, ival]; 0: uniform [-1, 1). */
static cdz_tensor make_input(th_suite *s, cdz_dtype dt, int ndim, const int64_t *shape, int ival) {
    cdz_tensor t = th_rand(s, dt, ndim, shape, -1.f, 1.f);
    if (ival > 0)
        for (int64_t i = 0; i < cdz_tensor_numel(&t); i++) th_set(&t, i, th_rand_int(s, -ival, ival));
    return t;
}

/* A CUDA copy of `host` starting `off` elements into its buffer (off > 0: pointers that are
 * not 256-byte aligned, so cuBLASLt must pick kernels for the real alignment). `poison`:
 * NaN contents instead of a copy. */
static cdz_tensor cuda_at(th_suite *s, const cdz_tensor *host, int64_t off, bool poison) {
    int64_t n = cdz_tensor_numel(host);
    cdz_tensor flat = th_empty(s, host->dtype, 1, (int64_t[]){n + off});
    size_t es = cdz_dtype_size(host->dtype);
    if (!poison) memcpy((char *)flat.data + (size_t)off * es, host->data, (size_t)n * es);
    cdz_tensor d = poison ? th_cuda_like(s, &flat) : th_to_cuda(s, &flat);
    cdz_tensor v = d;
    v.data = (char *)d.data + (size_t)off * es;
    v.ndim = host->ndim;
    memcpy(v.shape, host->shape, sizeof v.shape);
    memcpy(v.stride, host->stride, sizeof v.stride);
    return v;
}

/* Matrix index of an operand with `tnb` batch dims for c's batch coordinates. */
static int64_t bcast_matrix(const int64_t *tshape, int tnb, const int64_t *coord, int cnb) {
    int64_t idx = 0;
    for (int i = 0; i < tnb; i++) {
        int ci = i + (cnb - tnb);
        idx = idx * tshape[i] + (tshape[i] == 1 ? 0 : coord[ci]);
    }
    return idx;
}

/* alpha * op(a) op(b) + beta * c0 in float64 (c0 read only when beta != 0). */
static double *ref_matmul(th_suite *s, const cdz_tensor *a, const cdz_tensor *b,
                          const cdz_tensor *c0, const cdz_tensor *c, bool ta, bool tb,
                          double alpha, double beta) {
    int cnb = c->ndim - 2;
    int64_t m = c->shape[cnb], n = c->shape[cnb + 1];
    int64_t k = a->shape[a->ndim - (ta ? 2 : 1)];
    int64_t nbatch = 1;
    for (int i = 0; i < cnb; i++) nbatch *= c->shape[i];
    double *ref = th_alloc_f64(s, (size_t)(nbatch * m * n) + 1);
    int64_t coord[CDZ_MAX_DIMS];
    for (int64_t bi = 0; bi < nbatch; bi++) {
        int64_t rem = bi;
        for (int i = cnb - 1; i >= 0; i--) {
            coord[i] = rem % c->shape[i];
            rem /= c->shape[i];
        }
        int64_t ia = bcast_matrix(a->shape, a->ndim - 2, coord, cnb) * m * k;
        int64_t ib = bcast_matrix(b->shape, b->ndim - 2, coord, cnb) * k * n;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double acc = 0;
                for (int64_t kk = 0; kk < k; kk++)
                    acc += th_get(a, ia + (ta ? kk * m + i : i * k + kk)) *
                           th_get(b, ib + (tb ? j * k + kk : kk * n + j));
                int64_t o = (bi * m + i) * n + j;
                ref[o] = alpha * acc + (beta != 0 ? beta * th_get(c0, o) : 0.0);
            }
    }
    return ref;
}

/* x [M, K] w [N, K] (+ bias) in float64. */
static double *ref_linear(th_suite *s, const cdz_tensor *x, const cdz_tensor *w,
                          const cdz_tensor *bias) {
    int64_t k = w->shape[1], n = w->shape[0], m = 1;
    for (int i = 0; i < x->ndim - 1; i++) m *= x->shape[i];
    double *ref = th_alloc_f64(s, (size_t)(m * n) + 1);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = bias ? th_get(bias, j) : 0.0;
            for (int64_t kk = 0; kk < k; kk++) acc += th_get(x, i * k + kk) * th_get(w, j * k + kk);
            ref[i * n + j] = acc;
        }
    return ref;
}

/* Rounding of the output dtype against an exact reference. */
static double out_tol(cdz_dtype dt, const char **reason) {
    switch (dt) {
    case CDZ_DTYPE_F16: *reason = "one f16 rounding of the output (<= 2^-11 relative)"; return 1e-3;
    case CDZ_DTYPE_BF16: *reason = "one bf16 rounding of the output (<= 2^-9 relative)"; return 5e-3;
    default: *reason = "double accumulation, one f32 rounding of the output"; return 1e-6;
    }
}

/* CUDA against the CPU (which accumulates in double). */
static double cuda_tol(cdz_dtype ab, cdz_dtype out, cdz_precision p, int ival, const char **reason) {
    if (ival > 0) {
        *reason = "small integers: every product and partial sum is exact in fp32, TF32 and half";
        return 0.0;
    }
    if (out == CDZ_DTYPE_F16) {
        *reason = "fp32 accumulation, then f16 outputs rounded on both sides (1 ulp = 2^-10)";
        return 1e-3;
    }
    if (out == CDZ_DTYPE_BF16) {
        *reason = "fp32 accumulation, then bf16 outputs rounded on both sides (1 ulp = 2^-7)";
        return 1e-2;
    }
    if (ab != CDZ_DTYPE_F32) {
        *reason = "half operands: exact products, fp32 accumulation over K vs double";
        return 1e-6;
    }
    if (p == CDZ_PRECISION_STRICT) {
        *reason = "fp32 (no TF32) accumulation over K vs double: ~sqrt(K) 2^-24";
        return 1e-6;
    }
    *reason = "TF32 operands keep 10 mantissa bits (~2^-11 each), fp32 accumulation";
    return 1e-3;
}

static const cdz_precision k_f32_modes[] = {CDZ_PRECISION_STRICT, CDZ_PRECISION_TF32,
                                            CDZ_PRECISION_BF16};

/* ------------------------------------------------------------------ matmul cases */

typedef struct mm_case {
    int na, nb, nc;              /* batch dims of a, b, c */
    int64_t ba[4], bb[4], bc[4]; /* their sizes */
    int64_t m, n, k;
    bool ta, tb;
    float alpha, beta;
    cdz_dtype ab, out;
    int ival;                    /* > 0: integer inputs in [-ival, ival] (exact) */
    bool gpu_only;               /* large: the CPU reference runs only where a GPU checks it */
    int64_t offset;              /* CUDA tensors start this many elements into their buffer */
} mm_case;

static void mm_run(th_suite *s, const mm_case *cs) {
    int64_t as[6], bs[6], csh[6];
    int na = cs->na, nb = cs->nb, nc = cs->nc;
    memcpy(as, cs->ba, sizeof(int64_t) * (size_t)na);
    memcpy(bs, cs->bb, sizeof(int64_t) * (size_t)nb);
    memcpy(csh, cs->bc, sizeof(int64_t) * (size_t)nc);
    as[na] = cs->ta ? cs->k : cs->m;
    as[na + 1] = cs->ta ? cs->m : cs->k;
    bs[nb] = cs->tb ? cs->n : cs->k;
    bs[nb + 1] = cs->tb ? cs->k : cs->n;
    csh[nc] = cs->m;
    csh[nc + 1] = cs->n;
    char sa[64], sb[64], sc[64];
    if (!th_begin(s, "matmul", "a=%s%s b=%s%s c=%s %s->%s alpha=%g beta=%g%s%s",
                  shape_str(sa, sizeof sa, na + 2, as), cs->ta ? "^T" : "",
                  shape_str(sb, sizeof sb, nb + 2, bs), cs->tb ? "^T" : "",
                  shape_str(sc, sizeof sc, nc + 2, csh), cdz_dtype_name(cs->ab),
                  cdz_dtype_name(cs->out), (double)cs->alpha, (double)cs->beta,
                  cs->ival ? " integers" : "", cs->offset ? " misaligned" : ""))
        return;
    if (cs->gpu_only && !th_gpu(s, "cuda-vs-cpu")) {
        th_end(s);
        return;
    }
    cdz_tensor a = make_input(s, cs->ab, na + 2, as, cs->ival);
    cdz_tensor b = make_input(s, cs->ab, nb + 2, bs, cs->ival);
    /* beta != 0: c starts with values (kept in c0); else NaN poison must not leak */
    cdz_tensor c0 = cs->beta != 0 ? make_input(s, cs->out, nc + 2, csh, cs->ival)
                                  : th_empty(s, cs->out, nc + 2, csh);
    cdz_tensor c = th_to_host(s, &c0);
    th_ok(s, "cpu", cdz_matmul(s->cpu, &a, &b, &c, cs->ta, cs->tb, cs->alpha, cs->beta));
    if (!cs->gpu_only) {
        const char *why;
        double tol = out_tol(cs->out, &why);
        if (cs->ival) {
            tol = 0;
            why = "small integers: exact in double and in the output dtype";
        }
        double *ref = ref_matmul(s, &a, &b, &c0, &c, cs->ta, cs->tb, cs->alpha, cs->beta);
        th_compare_f64(s, "cpu-vs-f64", &c, ref, tol, why);
    }
    if (cs->gpu_only || th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor da = cuda_at(s, &a, cs->offset, false), db = cuda_at(s, &b, cs->offset, false);
        cdz_precision saved = cdz_ctx_precision(s->cuda);
        int nmodes = cs->ab == CDZ_DTYPE_F32 ? 3 : 1;
        for (int i = 0; i < nmodes; i++) {
            cdz_precision p = cs->ab == CDZ_DTYPE_F32 ? k_f32_modes[i] : CDZ_PRECISION_STRICT;
            cdz_ctx_set_precision(s->cuda, p);
            cdz_tensor dc = cuda_at(s, &c0, cs->offset, cs->beta == 0);
            char what[64];
            snprintf(what, sizeof what, "cuda-vs-cpu %s", cdz_precision_name(p));
            if (th_ok(s, "cuda", cdz_matmul(s->cuda, &da, &db, &dc, cs->ta, cs->tb, cs->alpha,
                                            cs->beta))) {
                const char *why;
                double tol = cuda_tol(cs->ab, cs->out, p, cs->ival, &why);
                th_compare(s, what, &dc, &c, tol, why);
            }
        }
        cdz_ctx_set_precision(s->cuda, saved);
    }
    th_end(s);
}

static void matmul_cases(th_suite *s) {
    const cdz_dtype F32 = CDZ_DTYPE_F32, F16 = CDZ_DTYPE_F16, BF16 = CDZ_DTYPE_BF16;
    /* plain 2-D, every transpose combination, odd sizes */
    const int64_t mnk[][3] = {{1, 1, 1}, {33, 17, 65}, {257, 3, 129}, {3, 40, 1}};
    for (size_t i = 0; i < sizeof mnk / sizeof mnk[0]; i++)
        for (int t = 0; t < 4; t++) {
            mm_case c = {.m = mnk[i][0], .n = mnk[i][1], .k = mnk[i][2], .ta = t & 1,
                         .tb = (t >> 1) & 1, .alpha = 1, .beta = 0, .ab = F32, .out = F32};
            mm_run(s, &c);
        }
    /* batched, all transposes (attention-like: scores = q k^T, out = p v) */
    for (int t = 0; t < 4; t++) {
        mm_case c = {.na = 1, .nb = 1, .nc = 1, .ba = {3}, .bb = {3}, .bc = {3}, .m = 33, .n = 17,
                     .k = 65, .ta = t & 1, .tb = (t >> 1) & 1, .alpha = 1, .beta = 0, .ab = F32,
                     .out = F32};
        mm_run(s, &c);
    }
    /* broadcasting: b shared by every batch (folded into one GEMM on CUDA) */
    mm_case fold = {.na = 2, .nb = 0, .nc = 2, .ba = {2, 3}, .bc = {2, 3}, .m = 7, .n = 5, .k = 9,
                    .alpha = 1, .ab = F32, .out = F32};
    mm_run(s, &fold);
    /* the same with a transposed: no fold, b's batch stride 0 */
    mm_case nofold = fold;
    nofold.ta = true;
    mm_run(s, &nofold);
    /* a shared by every batch (stride 0 on a) */
    mm_case abc = {.na = 1, .nb = 1, .nc = 1, .ba = {1}, .bb = {4}, .bc = {4}, .m = 6, .n = 11,
                   .k = 13, .ta = true, .alpha = 1, .ab = F32, .out = F32};
    mm_run(s, &abc);
    mm_case amiss = {.na = 0, .nb = 2, .nc = 2, .bb = {2, 3}, .bc = {2, 3}, .m = 5, .n = 3, .k = 4,
                     .tb = true, .alpha = 1, .ab = F32, .out = F32};
    mm_run(s, &amiss);
    /* mixed broadcast: a [2,1], b [1,3] -> c [2,3] (a loop of batched calls on CUDA) */
    mm_case mixed = {.na = 2, .nb = 2, .nc = 2, .ba = {2, 1}, .bb = {1, 3}, .bc = {2, 3}, .m = 9,
                     .n = 10, .k = 11, .tb = true, .alpha = 1, .ab = F32, .out = F32};
    mm_run(s, &mixed);
    mm_case mixed2 = {.na = 3, .nb = 2, .nc = 3, .ba = {2, 3, 1}, .bb = {1, 4}, .bc = {2, 3, 4},
                      .m = 3, .n = 5, .k = 7, .alpha = 1, .ab = F32, .out = F32};
    mm_run(s, &mixed2);
    /* alpha and beta (c read and scaled) */
    mm_case ab = {.na = 1, .nb = 1, .nc = 1, .ba = {2}, .bb = {2}, .bc = {2}, .m = 19, .n = 23,
                  .k = 31, .tb = true, .alpha = 0.5f, .beta = 0.25f, .ab = F32, .out = F32};
    mm_run(s, &ab);
    mm_case ab16 = ab;
    ab16.ab = F16;
    ab16.out = F16;
    mm_run(s, &ab16);
    /* misaligned pointers, batched with strides that break 16-byte alignment too */
    mm_case mis = {.na = 1, .nb = 1, .nc = 1, .ba = {3}, .bb = {3}, .bc = {3}, .m = 9, .n = 7,
                   .k = 5, .tb = true, .alpha = 1, .beta = 0.5f, .ab = F32, .out = F32, .offset = 1};
    mm_run(s, &mis);
    mm_case mis16 = {.na = 1, .nb = 1, .nc = 1, .ba = {2}, .bb = {2}, .bc = {2}, .m = 16, .n = 24,
                     .k = 32, .alpha = 1, .ab = F16, .out = F16, .offset = 1};
    mm_run(s, &mis16);
    /* K == 0: c = beta c */
    mm_case k0 = {.m = 3, .n = 4, .k = 0, .alpha = 1, .beta = 0.5f, .ab = F32, .out = F32};
    mm_run(s, &k0);
    mm_case k0b = {.na = 1, .nb = 1, .nc = 1, .ba = {2}, .bb = {2}, .bc = {2}, .m = 3, .n = 4,
                   .k = 0, .alpha = 1, .beta = 0, .ab = BF16, .out = BF16};
    mm_run(s, &k0b);
    /* half operands with half and f32 outputs, with transposes */
    const cdz_dtype halves[] = {F16, BF16};
    for (int h = 0; h < 2; h++)
        for (int o = 0; o < 2; o++)
            for (int t = 0; t < 4; t += 3) {
                mm_case c = {.na = 1, .nb = 1, .nc = 1, .ba = {2}, .bb = {2}, .bc = {2}, .m = 33,
                             .n = 17, .k = 65, .ta = t & 1, .tb = (t >> 1) & 1, .alpha = 1,
                             .ab = halves[h], .out = o ? F32 : halves[h]};
                mm_run(s, &c);
            }
    /* exactness (CUTLASS trick): integers in [-8, 8], K <= 129: sums < 2^14, exact in fp32
     * whatever the order, and exact in TF32 / f16 / bf16 operands */
    const cdz_dtype ex[] = {F32, F16, BF16};
    for (int e = 0; e < 3; e++) {
        mm_case c = {.na = 1, .nb = 1, .nc = 1, .ba = {3}, .bb = {3}, .bc = {3}, .m = 37, .n = 29,
                     .k = 129, .tb = true, .alpha = 1, .ab = ex[e], .out = F32, .ival = 8};
        mm_run(s, &c);
    }
    /* integer outputs in half: |sum| <= 4*4*64 = 1024 (f16 integers exact to 2048);
     * bf16 with K = 16: |sum| <= 256 (bf16 integers exact to 256); alpha 2, beta -1 exact */
    mm_case e16 = {.m = 31, .n = 33, .k = 64, .ta = true, .alpha = 1, .ab = F16, .out = F16,
                   .ival = 4};
    mm_run(s, &e16);
    mm_case eb16 = {.m = 31, .n = 33, .k = 16, .alpha = 2, .beta = -1, .ab = BF16, .out = BF16,
                    .ival = 2};
    mm_run(s, &eb16);
    /* GPU only: attention-like sizes (HTDemucs: 8 heads, head dim 64) */
    mm_case att = {.na = 1, .nb = 1, .nc = 1, .ba = {8}, .bb = {8}, .bc = {8}, .m = 256,
                   .n = 256, .k = 64, .tb = true, .alpha = 0.125f, .ab = F16, .out = F16,
                   .gpu_only = true};
    mm_run(s, &att);
    mm_case att32 = att;
    att32.ab = F32;
    att32.out = F32;
    mm_run(s, &att32);
}

/* ------------------------------------------------------------------ linear cases */

typedef struct lin_case {
    int nlead;
    int64_t lead[4];
    int64_t n, k;
    int bias;        /* 0: none, 1: f32, 2: operands' dtype */
    cdz_dtype ab, out;
    int ival;
    bool gpu_only;
    int64_t offset; /* CUDA tensors start this many elements into their buffer */
} lin_case;

static void lin_run(th_suite *s, const lin_case *cs) {
    int64_t xs[6], ys[6], ws[2] = {cs->n, cs->k};
    memcpy(xs, cs->lead, sizeof(int64_t) * (size_t)cs->nlead);
    memcpy(ys, cs->lead, sizeof(int64_t) * (size_t)cs->nlead);
    xs[cs->nlead] = cs->k;
    ys[cs->nlead] = cs->n;
    cdz_dtype bdt = cs->bias == 1 ? CDZ_DTYPE_F32 : cs->ab;
    char sx[64];
    if (!th_begin(s, "linear", "x=%s%s w=[%lld,%lld] bias=%s y=%s%s%s", cdz_dtype_name(cs->ab),
                  shape_str(sx, sizeof sx, cs->nlead + 1, xs), (long long)cs->n, (long long)cs->k,
                  cs->bias ? cdz_dtype_name(bdt) : "none", cdz_dtype_name(cs->out),
                  cs->ival ? " integers" : "", cs->offset ? " misaligned" : ""))
        return;
    if (cs->gpu_only && !th_gpu(s, "cuda-vs-cpu")) {
        th_end(s);
        return;
    }
    cdz_tensor x = make_input(s, cs->ab, cs->nlead + 1, xs, cs->ival);
    cdz_tensor w = make_input(s, cs->ab, 2, ws, cs->ival);
    cdz_tensor bias = make_input(s, bdt, 1, &cs->n, cs->ival);
    cdz_tensor *bp = cs->bias ? &bias : NULL;
    cdz_tensor y = th_empty(s, cs->out, cs->nlead + 1, ys);
    th_ok(s, "cpu", cdz_linear(s->cpu, &x, &w, bp, &y));
    if (!cs->gpu_only) {
        const char *why;
        double tol = out_tol(cs->out, &why);
        if (cs->ival) {
            tol = 0;
            why = "small integers: exact in double and in the output dtype";
        }
        th_compare_f64(s, "cpu-vs-f64", &y, ref_linear(s, &x, &w, bp), tol, why);
    }
    if (cs->gpu_only || th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dx = cuda_at(s, &x, cs->offset, false), dw = cuda_at(s, &w, cs->offset, false);
        cdz_tensor db = cuda_at(s, &bias, cs->offset, false);
        cdz_precision saved = cdz_ctx_precision(s->cuda);
        int nmodes = cs->ab == CDZ_DTYPE_F32 ? 3 : 1;
        for (int i = 0; i < nmodes; i++) {
            cdz_precision p = cs->ab == CDZ_DTYPE_F32 ? k_f32_modes[i] : CDZ_PRECISION_STRICT;
            cdz_ctx_set_precision(s->cuda, p);
            cdz_tensor dy = cuda_at(s, &y, cs->offset, true);
            char what[64];
            snprintf(what, sizeof what, "cuda-vs-cpu %s", cdz_precision_name(p));
            if (th_ok(s, "cuda", cdz_linear(s->cuda, &dx, &dw, cs->bias ? &db : NULL, &dy))) {
                const char *why;
                double tol = cuda_tol(cs->ab, cs->out, p, cs->ival, &why);
                th_compare(s, what, &dy, &y, tol, why);
            }
        }
        cdz_ctx_set_precision(s->cuda, saved);
    }
    th_end(s);
}

static void linear_cases(th_suite *s) {
    const cdz_dtype F32 = CDZ_DTYPE_F32, F16 = CDZ_DTYPE_F16, BF16 = CDZ_DTYPE_BF16;
    const lin_case cases[] = {
        {.nlead = 1, .lead = {1}, .n = 1, .k = 1, .bias = 1, .ab = F32, .out = F32},
        {.nlead = 1, .lead = {33}, .n = 17, .k = 65, .bias = 0, .ab = F32, .out = F32},
        {.nlead = 1, .lead = {33}, .n = 17, .k = 65, .bias = 1, .ab = F32, .out = F32},
        {.nlead = 1, .lead = {257}, .n = 3, .k = 129, .bias = 1, .ab = F32, .out = F32},
        {.nlead = 3, .lead = {2, 3, 7}, .n = 5, .k = 33, .bias = 1, .ab = F32, .out = F32},
        {.nlead = 2, .lead = {4, 16}, .n = 96, .k = 48, .bias = 0, .ab = F32, .out = F32},
        /* x with no leading dims: a single vector */
        {.nlead = 0, .n = 7, .k = 9, .bias = 1, .ab = F32, .out = F32},
        /* K == 0: y = bias */
        {.nlead = 1, .lead = {3}, .n = 5, .k = 0, .bias = 1, .ab = F32, .out = F32},
        /* half operands: every output and bias dtype */
        {.nlead = 2, .lead = {3, 11}, .n = 24, .k = 40, .bias = 1, .ab = F16, .out = F16},
        {.nlead = 2, .lead = {3, 11}, .n = 24, .k = 40, .bias = 2, .ab = F16, .out = F16},
        {.nlead = 2, .lead = {3, 11}, .n = 24, .k = 40, .bias = 1, .ab = F16, .out = F32},
        {.nlead = 2, .lead = {3, 11}, .n = 24, .k = 40, .bias = 2, .ab = F16, .out = F32},
        {.nlead = 1, .lead = {33}, .n = 17, .k = 65, .bias = 0, .ab = F16, .out = F16},
        {.nlead = 2, .lead = {3, 11}, .n = 24, .k = 40, .bias = 1, .ab = BF16, .out = BF16},
        {.nlead = 2, .lead = {3, 11}, .n = 24, .k = 40, .bias = 2, .ab = BF16, .out = BF16},
        {.nlead = 2, .lead = {3, 11}, .n = 24, .k = 40, .bias = 1, .ab = BF16, .out = F32},
        {.nlead = 2, .lead = {3, 11}, .n = 24, .k = 40, .bias = 2, .ab = BF16, .out = F32},
        {.nlead = 1, .lead = {33}, .n = 17, .k = 65, .bias = 0, .ab = BF16, .out = F32},
        /* pointers 4 / 2 bytes past 256-byte alignment (bias epilogue may be refused) */
        {.nlead = 1, .lead = {33}, .n = 17, .k = 65, .bias = 1, .ab = F32, .out = F32, .offset = 1},
        {.nlead = 1, .lead = {40}, .n = 24, .k = 64, .bias = 2, .ab = F16, .out = F16, .offset = 1},
        {.nlead = 1, .lead = {40}, .n = 24, .k = 64, .bias = 1, .ab = BF16, .out = F32, .offset = 3},
        /* exact integer products, with bias */
        {.nlead = 1, .lead = {45}, .n = 21, .k = 100, .bias = 1, .ab = F32, .out = F32, .ival = 8},
        {.nlead = 1, .lead = {45}, .n = 21, .k = 100, .bias = 2, .ab = BF16, .out = F32, .ival = 8},
        /* GPU only: HTDemucs transformer shapes (d=384, FFN 4x) */
        {.nlead = 2, .lead = {2, 256}, .n = 1536, .k = 384, .bias = 1, .ab = F32, .out = F32,
         .gpu_only = true},
        {.nlead = 2, .lead = {2, 256}, .n = 384, .k = 1536, .bias = 1, .ab = F32, .out = F32,
         .gpu_only = true},
        {.nlead = 2, .lead = {2, 256}, .n = 1536, .k = 384, .bias = 2, .ab = F16, .out = F16,
         .gpu_only = true},
        {.nlead = 2, .lead = {2, 256}, .n = 1536, .k = 384, .bias = 1, .ab = BF16, .out = BF16,
         .gpu_only = true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) lin_run(s, &cases[i]);
}

/* ------------------------------------------------------------------ TF32 is off in strict */

/* a = 1 + r 2^-16 (r in 0..15) carries bits TF32 (10 mantissa bits) drops; b integers in
 * [-4, 4]; K = 64: every product and partial sum (< 256) fits 24 bits, so true fp32 is
 * exact and any TF32 rounding of a shows. */
static void tf32_off_case(th_suite *s) {
    const int64_t m = 128, n = 96, k = 64;
    if (!th_begin(s, "matmul", "tf32-off m=%lld n=%lld k=%lld", (long long)m, (long long)n,
                  (long long)k))
        return;
    cdz_tensor a = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){m, k});
    for (int64_t i = 0; i < m * k; i++) th_set(&a, i, 1.0 + th_rand_int(s, 0, 15) * 0x1p-16);
    cdz_tensor b = make_input(s, CDZ_DTYPE_F32, 2, (int64_t[]){k, n}, 4);
    cdz_tensor c = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){m, n});
    th_ok(s, "cpu", cdz_matmul(s->cpu, &a, &b, &c, false, false, 1.f, 0.f));
    th_compare_f64(s, "cpu-vs-f64", &c, ref_matmul(s, &a, &b, NULL, &c, false, false, 1, 0), 0,
                   "every product and partial sum is exact in fp32");
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_precision saved = cdz_ctx_precision(s->cuda);
        cdz_tensor da = th_to_cuda(s, &a), db = th_to_cuda(s, &b);
        cdz_ctx_set_precision(s->cuda, CDZ_PRECISION_STRICT);
        cdz_tensor dc = th_cuda_like(s, &c);
        if (th_ok(s, "cuda strict", cdz_matmul(s->cuda, &da, &db, &dc, false, false, 1.f, 0.f)))
            th_compare(s, "cuda-vs-cpu strict", &dc, &c, 0,
                       "strict is true fp32: exact here, TF32 would be off by ~1e-4");
        /* the same through linear (w = b^T) */
        cdz_tensor bt = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){n, k});
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < n; j++) th_set(&bt, j * k + i, th_get(&b, i * n + j));
        cdz_tensor dbt = th_to_cuda(s, &bt), dy = th_cuda_like(s, &c);
        if (th_ok(s, "cuda linear strict", cdz_linear(s->cuda, &da, &dbt, NULL, &dy)))
            th_compare(s, "cuda-vs-cpu linear strict", &dy, &c, 0,
                       "strict is true fp32: exact here");
        /* TF32 must lose those bits: shows the exact checks above can see TF32 */
        cdz_ctx_set_precision(s->cuda, CDZ_PRECISION_TF32);
        cdz_tensor dt = th_cuda_like(s, &c);
        if (th_ok(s, "cuda tf32", cdz_matmul(s->cuda, &da, &db, &dt, false, false, 1.f, 0.f))) {
            cdz_tensor ht = th_to_host(s, &dt);
            double num = 0, den = 0;
            for (int64_t i = 0; i < m * n; i++) {
                double d = th_get(&ht, i) - th_get(&c, i);
                num += d * d;
                den += th_get(&c, i) * th_get(&c, i);
            }
            double rel = sqrt(num / den);
            th_check(s, "tf32-differs", rel > 0 && rel < 1e-3,
                     "tf32 rel_l2=%.3g vs exact (expected > 0: TF32 drops the 2^-16 bits)", rel);
        }
        cdz_ctx_set_precision(s->cuda, saved);
    }
    th_end(s);
}

/* ------------------------------------------------------------------ error paths */

static void error_cases(th_suite *s) {
    if (!th_begin(s, "linear", "error paths")) return;
    const cdz_status BAD = CDZ_STATUS_INVALID_ARGUMENT;
    cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){4, 8}, -1, 1);
    cdz_tensor w = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){5, 8}, -1, 1);
    cdz_tensor w7 = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){5, 7}, -1, 1);
    cdz_tensor w16 = th_rand(s, CDZ_DTYPE_F16, 2, (int64_t[]){5, 8}, -1, 1);
    cdz_tensor b = th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){5}, -1, 1);
    cdz_tensor b6 = th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){6}, -1, 1);
    cdz_tensor b16 = th_rand(s, CDZ_DTYPE_F16, 1, (int64_t[]){5}, -1, 1);
    cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){4, 5});
    cdz_tensor y6 = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){4, 6});
    cdz_tensor y3 = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){3, 5});
    cdz_tensor y16 = th_empty(s, CDZ_DTYPE_F16, 2, (int64_t[]){4, 5});
    cdz_tensor xi = th_empty(s, CDZ_DTYPE_I32, 2, (int64_t[]){4, 8});
    th_ok(s, "valid call", cdz_linear(s->cpu, &x, &w, &b, &y));
    th_expect_status(s, "K mismatch", cdz_linear(s->cpu, &x, &w7, &b, &y), BAD);
    th_expect_status(s, "bias length", cdz_linear(s->cpu, &x, &w, &b6, &y), BAD);
    th_expect_status(s, "y features", cdz_linear(s->cpu, &x, &w, &b, &y6), BAD);
    th_expect_status(s, "y rows", cdz_linear(s->cpu, &x, &w, &b, &y3), BAD);
    th_expect_status(s, "x f32, w f16", cdz_linear(s->cpu, &x, &w16, &b, &y), BAD);
    th_expect_status(s, "f32 operands, f16 y", cdz_linear(s->cpu, &x, &w, &b, &y16), BAD);
    th_expect_status(s, "f32 operands, f16 bias", cdz_linear(s->cpu, &x, &w, &b16, &y), BAD);
    th_expect_status(s, "i32 x", cdz_linear(s->cpu, &xi, &w, &b, &y), BAD);
    cdz_tensor alias = y;
    alias.dtype = CDZ_DTYPE_F32;
    alias.data = x.data; /* y written over x */
    th_expect_status(s, "y overlaps x", cdz_linear(s->cpu, &x, &w, &b, &alias), BAD);
    th_expect_status(s, "NULL weight", cdz_linear(s->cpu, &x, NULL, &b, &y), BAD);
    th_end(s);

    if (!th_begin(s, "matmul", "error paths")) return;
    cdz_tensor a = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){3, 4, 6}, -1, 1);
    cdz_tensor bm = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){3, 6, 5}, -1, 1);
    cdz_tensor b4 = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){4, 6, 5}, -1, 1);
    cdz_tensor bk = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){3, 7, 5}, -1, 1);
    cdz_tensor b1 = th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){6}, -1, 1);
    cdz_tensor c = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){3, 4, 5});
    cdz_tensor c2 = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 4, 5});
    cdz_tensor cn = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){3, 4, 6});
    cdz_tensor a16 = th_rand(s, CDZ_DTYPE_F16, 3, (int64_t[]){3, 4, 6}, -1, 1);
    cdz_tensor b16m = th_rand(s, CDZ_DTYPE_F16, 3, (int64_t[]){3, 6, 5}, -1, 1);
    cdz_tensor cb16 = th_empty(s, CDZ_DTYPE_BF16, 3, (int64_t[]){3, 4, 5});
    th_ok(s, "valid call", cdz_matmul(s->cpu, &a, &bm, &c, false, false, 1, 0));
    th_expect_status(s, "K mismatch", cdz_matmul(s->cpu, &a, &bk, &c, false, false, 1, 0), BAD);
    th_expect_status(s, "K mismatch (trans_a)", cdz_matmul(s->cpu, &a, &bm, &c, true, false, 1, 0), BAD);
    th_expect_status(s, "batch 3 vs 4", cdz_matmul(s->cpu, &a, &b4, &c, false, false, 1, 0), BAD);
    th_expect_status(s, "c batch", cdz_matmul(s->cpu, &a, &bm, &c2, false, false, 1, 0), BAD);
    th_expect_status(s, "c columns", cdz_matmul(s->cpu, &a, &bm, &cn, false, false, 1, 0), BAD);
    th_expect_status(s, "b 1-D", cdz_matmul(s->cpu, &a, &b1, &c, false, false, 1, 0), BAD);
    th_expect_status(s, "NaN alpha", cdz_matmul(s->cpu, &a, &bm, &c, false, false, NAN, 0), BAD);
    th_expect_status(s, "inf beta", cdz_matmul(s->cpu, &a, &bm, &c, false, false, 1, INFINITY), BAD);
    th_expect_status(s, "a f16, b f32", cdz_matmul(s->cpu, &a16, &bm, &c, false, false, 1, 0), BAD);
    th_expect_status(s, "f16 operands, bf16 c",
                     cdz_matmul(s->cpu, &a16, &b16m, &cb16, false, false, 1, 0), BAD);
    cdz_tensor calias = c;
    calias.data = bm.data;
    th_expect_status(s, "c overlaps b", cdz_matmul(s->cpu, &a, &bm, &calias, false, false, 1, 0), BAD);
    th_end(s);
}

void test_ops_gemm(th_suite *s) {
    matmul_cases(s);
    linear_cases(s);
    tf32_off_case(s);
    error_cases(s);
}
