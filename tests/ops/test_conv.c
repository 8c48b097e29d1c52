/*
 * test_conv.c: conv1d / conv2d / conv_transpose1d / conv_transpose2d.
 *
 * Each case: the CPU op against a float64 reference written here (direct gather for conv,
 * scatter from the input for transposed conv, so it shares no loop with kernels/conv.c),
 * in f32, f16 and bf16 (references on the same rounded inputs); then CUDA against the CPU op
 * for the cuDNN path and the own-kernel path, in STRICT, TF32 and half precision. Cases
 * cuDNN cannot do (asymmetric padding, output_padding >= stride) must be refused with
 * UNSUPPORTED when cuDNN is forced and still be right in AUTO (own-kernel fallback).
 */
#include <stdio.h>
#include <string.h>

#include "conv.h"
#include "families.h"
#include "half.h"

typedef struct conv_case {
    const char *op;
    int dims;        /* 1 or 2 */
    bool transposed;
    int64_t n, cin, cout;
    int64_t in[2], k[2]; /* [0] = H, [1] = W; 1-d: in[0] = k[0] = 1 */
    cdz_conv_params p;   /* as the op takes them: 1-d uses index 0 */
    bool bias;
} conv_case;

/* per-dimension parameters as the reference sees them ([0] = H, [1] = W) */
typedef struct dim_params {
    int64_t s[2], d[2], pb[2], pe[2], op[2];
} dim_params;

static dim_params dims_of(const conv_case *c) {
    dim_params q;
    memset(&q, 0, sizeof q);
    for (int i = 0; i < 2; i++) q.s[i] = q.d[i] = 1;
    for (int i = 0; i < c->dims; i++) {
        int j = c->dims == 1 ? 1 : i; /* 1-d: the length is the W dimension */
        q.s[j] = c->p.stride[i];
        q.d[j] = c->p.dilation[i];
        q.pb[j] = c->p.pad_begin[i];
        q.pe[j] = c->p.pad_end[i];
        q.op[j] = c->p.output_padding[i];
    }
    return q;
}

static int64_t out_dim(const conv_case *c, const dim_params *q, int j) {
    if (c->transposed)
        return (c->in[j] - 1) * q->s[j] - q->pb[j] - q->pe[j] + q->d[j] * (c->k[j] - 1) + q->op[j] + 1;
    return (c->in[j] + q->pb[j] + q->pe[j] - q->d[j] * (c->k[j] - 1) - 1) / q->s[j] + 1;
}

static double *to_f64(th_suite *s, const cdz_tensor *t) {
    int64_t n = cdz_tensor_numel(t);
    double *r = th_alloc_f64(s, (size_t)n);
    for (int64_t i = 0; i < n; i++) r[i] = th_get(t, i);
    return r;
}

/* float64 reference on the (already rounded) values of x, w, bias. */
static double *reference(th_suite *s, const conv_case *c, const dim_params *q, const cdz_tensor *xt,
                         const cdz_tensor *wt, const cdz_tensor *bt, int64_t oh, int64_t ow) {
    const double *x = to_f64(s, xt), *w = to_f64(s, wt), *b = bt ? to_f64(s, bt) : NULL;
    const int64_t g = c->p.groups, cin_g = c->cin / g, cout_g = c->cout / g;
    const int64_t ih = c->in[0], iw = c->in[1], kh = c->k[0], kw = c->k[1];
    double *y = th_alloc_f64(s, (size_t)(c->n * c->cout * oh * ow));
    for (int64_t n = 0; n < c->n; n++)
        for (int64_t co = 0; co < c->cout; co++)
            for (int64_t i = 0; i < oh * ow; i++) y[(n * c->cout + co) * oh * ow + i] = b ? b[co] : 0.0;
    if (!c->transposed) {
        for (int64_t n = 0; n < c->n; n++)
            for (int64_t co = 0; co < c->cout; co++)
                for (int64_t oy = 0; oy < oh; oy++)
                    for (int64_t ox = 0; ox < ow; ox++) {
                        double acc = 0.0;
                        for (int64_t ci = 0; ci < cin_g; ci++)
                            for (int64_t ky = 0; ky < kh; ky++)
                                for (int64_t kx = 0; kx < kw; kx++) {
                                    int64_t yy = oy * q->s[0] + ky * q->d[0] - q->pb[0];
                                    int64_t xx = ox * q->s[1] + kx * q->d[1] - q->pb[1];
                                    if (yy < 0 || yy >= ih || xx < 0 || xx >= iw) continue;
                                    int64_t cx = (co / cout_g) * cin_g + ci;
                                    acc += x[((n * c->cin + cx) * ih + yy) * iw + xx] *
                                           w[((co * cin_g + ci) * kh + ky) * kw + kx];
                                }
                        y[((n * c->cout + co) * oh + oy) * ow + ox] += acc;
                    }
    } else {
        /* scatter each input element through the kernel, then the window [pb, pb + out) */
        for (int64_t n = 0; n < c->n; n++)
            for (int64_t ci = 0; ci < c->cin; ci++)
                for (int64_t iy = 0; iy < ih; iy++)
                    for (int64_t ix = 0; ix < iw; ix++) {
                        double xv = x[((n * c->cin + ci) * ih + iy) * iw + ix];
                        for (int64_t j = 0; j < cout_g; j++)
                            for (int64_t ky = 0; ky < kh; ky++)
                                for (int64_t kx = 0; kx < kw; kx++) {
                                    int64_t oy = iy * q->s[0] + ky * q->d[0] - q->pb[0];
                                    int64_t ox = ix * q->s[1] + kx * q->d[1] - q->pb[1];
                                    if (oy < 0 || oy >= oh || ox < 0 || ox >= ow) continue;
                                    int64_t co = (ci / cin_g) * cout_g + j;
                                    y[((n * c->cout + co) * oh + oy) * ow + ox] +=
                                        xv * w[((ci * cout_g + j) * kh + ky) * kw + kx];
                                }
                    }
    }
    return y;
}

static cdz_status run_op(const conv_case *c, cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                         const cdz_tensor *b, cdz_tensor *y, const cdz_conv_params *p) {
    if (c->dims == 1)
        return c->transposed ? cdz_conv_transpose1d(ctx, x, w, b, y, p) : cdz_conv1d(ctx, x, w, b, y, p);
    return c->transposed ? cdz_conv_transpose2d(ctx, x, w, b, y, p) : cdz_conv2d(ctx, x, w, b, y, p);
}

/* f32 rounded to TF32 (10 mantissa bits, nearest even): what tensor cores read exactly */
static void round_tf32(cdz_tensor *t) {
    float *v = (float *)t->data;
    for (int64_t i = 0; i < cdz_tensor_numel(t); i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        u += 0xfffu + ((u >> 13) & 1u);
        u &= ~0x1fffu;
        memcpy(&v[i], &u, 4);
    }
}

static const char *impl_name(int impl) {
    return impl == CDZ_CONV_IMPL_CUDNN ? "cudnn" : impl == CDZ_CONV_IMPL_OWN ? "own" : "auto";
}

/* CUDA vs the CPU op output `ref` for each implementation; inputs on the host. */
static void gpu_compare(th_suite *s, const conv_case *c, bool cudnn_can, const char *tag,
                        cdz_precision prec, const cdz_tensor *x, const cdz_tensor *w,
                        const cdz_tensor *b, const cdz_tensor *ref, double tol, const char *why) {
    cdz_precision saved = cdz_ctx_precision(s->cuda);
    cdz_ctx_set_precision(s->cuda, prec);
    cdz_tensor dx = th_to_cuda(s, x), dw = th_to_cuda(s, w), db;
    memset(&db, 0, sizeof db);
    if (b) db = th_to_cuda(s, b);
    static const int impls[3] = {CDZ_CONV_IMPL_CUDNN, CDZ_CONV_IMPL_OWN, CDZ_CONV_IMPL_AUTO};
    for (int k = 0; k < 3; k++) {
        char what[96];
        snprintf(what, sizeof what, "cuda-vs-cpu %s %s", tag, impl_name(impls[k]));
        cdz_conv_params p = c->p;
        p.impl = impls[k];
        cdz_tensor dy = th_cuda_like(s, ref);
        cdz_status st = run_op(c, s->cuda, &dx, &dw, b ? &db : NULL, &dy, &p);
        if (impls[k] == CDZ_CONV_IMPL_CUDNN && !cudnn_can) {
            th_expect_status(s, what, st, CDZ_STATUS_UNSUPPORTED);
            continue;
        }
        if (th_ok(s, what, st) && th_ok(s, "sync", cdz_ctx_sync(s->cuda)))
            th_compare(s, what, &dy, ref, tol, why);
    }
    cdz_ctx_set_precision(s->cuda, saved);
}

static void run_case(th_suite *s, const conv_case *c) {
    const dim_params q = dims_of(c);
    const int64_t oh = out_dim(c, &q, 0), ow = out_dim(c, &q, 1);
    if (!th_begin(s, c->op,
                  "N=%lld Cin=%lld Cout=%lld in=%lldx%lld K=%lldx%lld stride=%lldx%lld "
                  "dil=%lldx%lld pad=(%lld,%lld)-(%lld,%lld) outpad=%lldx%lld groups=%d bias=%d",
                  (long long)c->n, (long long)c->cin, (long long)c->cout, (long long)c->in[0],
                  (long long)c->in[1], (long long)c->k[0], (long long)c->k[1], (long long)q.s[0],
                  (long long)q.s[1], (long long)q.d[0], (long long)q.d[1], (long long)q.pb[0],
                  (long long)q.pb[1], (long long)q.pe[0], (long long)q.pe[1], (long long)q.op[0],
                  (long long)q.op[1], c->p.groups, c->bias))
        return;
    const int nd = c->dims + 2;
    const int64_t g = c->p.groups;
    int64_t xs[4] = {c->n, c->cin, c->in[0], c->in[1]};
    int64_t ws[4] = {c->transposed ? c->cin : c->cout, c->transposed ? c->cout / g : c->cin / g,
                     c->k[0], c->k[1]};
    int64_t ys[4] = {c->n, c->cout, oh, ow};
    if (c->dims == 1) xs[2] = xs[3], ws[2] = ws[3], ys[2] = ys[3];
    int64_t bs[1] = {c->cout};

    /* the public size helper agrees with the formula here */
    const int a = c->dims - 1; /* params index of W */
    int64_t lib_ow = c->transposed
                         ? cdz_conv_transpose_out_len(c->in[1], c->k[1], c->p.stride[a], c->p.dilation[a],
                                                      c->p.pad_begin[a], c->p.pad_end[a],
                                                      c->p.output_padding[a])
                         : cdz_conv_out_len(c->in[1], c->k[1], c->p.stride[a], c->p.dilation[a],
                                            c->p.pad_begin[a], c->p.pad_end[a]);
    th_check(s, "out-len", lib_ow == ow, "helper says %lld, formula %lld", (long long)lib_ow,
             (long long)ow);

    /* cuDNN takes symmetric pads only, and a transposed output it can map back exactly */
    bool cudnn_can = q.pb[0] == q.pe[0] && q.pb[1] == q.pe[1] && q.op[0] < q.s[0] && q.op[1] < q.s[1];

    /* ---- f32 ---- */
    cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, nd, xs, -1.f, 1.f);
    cdz_tensor w = th_rand(s, CDZ_DTYPE_F32, nd, ws, -0.5f, 0.5f);
    cdz_tensor b = th_rand(s, CDZ_DTYPE_F32, 1, bs, -0.5f, 0.5f);
    const cdz_tensor *bp = c->bias ? &b : NULL;
    cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, nd, ys);
    double *ref = reference(s, c, &q, &x, &w, bp, oh, ow);
    if (th_ok(s, "cpu f32", run_op(c, s->cpu, &x, &w, bp, &y, &c->p)))
        th_compare_f64(s, "cpu-vs-f64 f32", &y, ref, 1e-6,
                       "double accumulation; only the f32 output rounding (2^-24) differs");

    /* ---- f16 / bf16 (bias f16 for f16, f32 for bf16: both bias dtypes covered) ---- */
    cdz_tensor xh[2], wh[2], bh[2], yh[2];
    const cdz_dtype hdt[2] = {CDZ_DTYPE_F16, CDZ_DTYPE_BF16};
    for (int k = 0; k < 2; k++) {
        xh[k] = th_rand(s, hdt[k], nd, xs, -1.f, 1.f);
        wh[k] = th_rand(s, hdt[k], nd, ws, -0.5f, 0.5f);
        bh[k] = th_rand(s, k == 0 ? CDZ_DTYPE_F16 : CDZ_DTYPE_F32, 1, bs, -0.5f, 0.5f);
        yh[k] = th_empty(s, hdt[k], nd, ys);
        const cdz_tensor *bhp = c->bias ? &bh[k] : NULL;
        double *rh = reference(s, c, &q, &xh[k], &wh[k], bhp, oh, ow);
        if (th_ok(s, k == 0 ? "cpu f16" : "cpu bf16", run_op(c, s->cpu, &xh[k], &wh[k], bhp, &yh[k], &c->p)))
            th_compare_f64(s, k == 0 ? "cpu-vs-f64 f16" : "cpu-vs-f64 bf16", &yh[k], rh,
                           k == 0 ? 1e-3 : 5e-3,
                           k == 0 ? "exact inputs, output rounded to f16 (<= 2^-11 relative)"
                                  : "exact inputs, output rounded to bf16 (<= 2^-8 relative)");
    }

    if (th_gpu(s, "cuda-vs-cpu")) {
        gpu_compare(s, c, cudnn_can, "strict", CDZ_PRECISION_STRICT, &x, &w, bp, &y, 1e-5,
                    "fp32 FMA (TF32 off), other summation order");

        /* TF32 on raw inputs: x and w lose 13 mantissa bits each (2^-11 relative) */
        gpu_compare(s, c, cudnn_can, "tf32-raw", CDZ_PRECISION_TF32, &x, &w, bp, &y, 3e-3,
                    "TF32 rounds x and w to 10-bit mantissas (<= 2^-11 relative each)");
        /* TF32: inputs pre-rounded so the tensor cores read them exactly */
        cdz_tensor xt = th_rand(s, CDZ_DTYPE_F32, nd, xs, -1.f, 1.f);
        cdz_tensor wt = th_rand(s, CDZ_DTYPE_F32, nd, ws, -0.5f, 0.5f);
        round_tf32(&xt);
        round_tf32(&wt);
        cdz_tensor yt = th_empty(s, CDZ_DTYPE_F32, nd, ys);
        if (th_ok(s, "cpu tf32-rounded", run_op(c, s->cpu, &xt, &wt, bp, &yt, &c->p)))
            gpu_compare(s, c, cudnn_can, "tf32", CDZ_PRECISION_TF32, &xt, &wt, bp, &yt, 1e-3,
                        "TF32-exact inputs; tensor-core algorithms may round intermediates to TF32");

        gpu_compare(s, c, cudnn_can, "f16", CDZ_PRECISION_FP16, &xh[0], &wh[0],
                    c->bias ? &bh[0] : NULL, &yh[0], 2e-3,
                    "both outputs rounded to f16 (2^-11) + fp32 sum order + bias added after");
        gpu_compare(s, c, cudnn_can, "bf16", CDZ_PRECISION_BF16, &xh[1], &wh[1],
                    c->bias ? &bh[1] : NULL, &yh[1], 1e-2,
                    "both outputs rounded to bf16 (2^-8) + fp32 sum order + bias added after");
    }
    th_end(s);
}

/* params: 1-d ops read index 0 */
static cdz_conv_params p1(int32_t s, int32_t d, int32_t pb, int32_t pe, int32_t op, int32_t g) {
    cdz_conv_params p = cdz_conv_params_1d(s, 0, d, g);
    p.pad_begin[0] = pb, p.pad_end[0] = pe, p.output_padding[0] = op;
    return p;
}

static cdz_conv_params p2(int32_t sh, int32_t sw, int32_t dh, int32_t dw, int32_t pbh, int32_t pbw,
                          int32_t peh, int32_t pew, int32_t oph, int32_t opw, int32_t g) {
    cdz_conv_params p = cdz_conv_params_2d(sh, sw, 0, 0, dh, dw, g);
    p.pad_begin[0] = pbh, p.pad_begin[1] = pbw, p.pad_end[0] = peh, p.pad_end[1] = pew;
    p.output_padding[0] = oph, p.output_padding[1] = opw;
    return p;
}

static conv_case c1(const char *op, bool tr, int64_t n, int64_t cin, int64_t cout, int64_t l,
                    int64_t k, cdz_conv_params p, bool bias) {
    conv_case c = {op, 1, tr, n, cin, cout, {1, l}, {1, k}, p, bias};
    return c;
}

static conv_case c2(const char *op, bool tr, int64_t n, int64_t cin, int64_t cout, int64_t h,
                    int64_t w, int64_t kh, int64_t kw, cdz_conv_params p, bool bias) {
    conv_case c = {op, 2, tr, n, cin, cout, {h, w}, {kh, kw}, p, bias};
    return c;
}

static void error_cases(th_suite *s) {
    if (!th_begin(s, "conv_errors", "invalid arguments on the CPU context")) return;
    const cdz_status INV = CDZ_STATUS_INVALID_ARGUMENT;
    cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 6, 10}, -1.f, 1.f);
    cdz_tensor w = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){4, 6, 3}, -1.f, 1.f);
    cdz_tensor b = th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){4}, -1.f, 1.f);
    cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 4, 8});
    cdz_conv_params p = cdz_conv_params_1d(1, 0, 1, 1);
    th_ok(s, "valid baseline", cdz_conv1d(s->cpu, &x, &w, &b, &y, &p));

    cdz_tensor w5 = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){4, 5, 3}, -1.f, 1.f);
    th_expect_status(s, "weight Cin/groups mismatch", cdz_conv1d(s->cpu, &x, &w5, &b, &y, &p), INV);
    cdz_conv_params pg = p;
    pg.groups = 4;
    th_expect_status(s, "groups does not divide Cin", cdz_conv1d(s->cpu, &x, &w, &b, &y, &pg), INV);
    cdz_tensor w3 = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){3, 3, 3}, -1.f, 1.f);
    cdz_tensor b3 = th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){3}, -1.f, 1.f);
    cdz_tensor y3 = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 3, 8});
    pg.groups = 2;
    th_expect_status(s, "groups does not divide Cout", cdz_conv1d(s->cpu, &x, &w3, &b3, &y3, &pg), INV);
    pg.groups = 0;
    th_expect_status(s, "groups 0", cdz_conv1d(s->cpu, &x, &w, &b, &y, &pg), INV);

    cdz_tensor ybad = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 4, 9});
    th_expect_status(s, "wrong y length", cdz_conv1d(s->cpu, &x, &w, &b, &ybad, &p), INV);
    th_check(s, "message names expected shape", strstr(cdz_last_message(), "[2,4,8]") != NULL,
             "got: %s", cdz_last_message());
    cdz_tensor yc = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 5, 8});
    th_expect_status(s, "wrong y channels", cdz_conv1d(s->cpu, &x, &w, &b, &yc, &p), INV);
    cdz_tensor yn = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){1, 4, 8});
    th_expect_status(s, "wrong y batch", cdz_conv1d(s->cpu, &x, &w, &b, &yn, &p), INV);

    cdz_conv_params pb = p;
    pb.stride[0] = 0;
    th_expect_status(s, "stride 0", cdz_conv1d(s->cpu, &x, &w, &b, &y, &pb), INV);
    pb = p;
    pb.dilation[0] = 0;
    th_expect_status(s, "dilation 0", cdz_conv1d(s->cpu, &x, &w, &b, &y, &pb), INV);
    pb = p;
    pb.pad_begin[0] = -1;
    th_expect_status(s, "negative pad_begin", cdz_conv1d(s->cpu, &x, &w, &b, &y, &pb), INV);
    pb = p;
    pb.pad_end[0] = -2;
    th_expect_status(s, "negative pad_end", cdz_conv1d(s->cpu, &x, &w, &b, &y, &pb), INV);
    pb = p;
    pb.output_padding[0] = 1;
    th_expect_status(s, "output_padding on conv", cdz_conv1d(s->cpu, &x, &w, &b, &y, &pb), INV);
    pb = p;
    pb.impl = 9;
    th_expect_status(s, "bad impl", cdz_conv1d(s->cpu, &x, &w, &b, &y, &pb), INV);
    th_expect_status(s, "NULL params", cdz_conv1d(s->cpu, &x, &w, &b, &y, NULL), INV);

    cdz_tensor wh = th_rand(s, CDZ_DTYPE_F16, 3, (int64_t[]){4, 6, 3}, -1.f, 1.f);
    th_expect_status(s, "weight dtype mismatch", cdz_conv1d(s->cpu, &x, &wh, &b, &y, &p), INV);
    cdz_tensor yh = th_empty(s, CDZ_DTYPE_F16, 3, (int64_t[]){2, 4, 8});
    th_expect_status(s, "y dtype mismatch", cdz_conv1d(s->cpu, &x, &w, &b, &yh, &p), INV);
    cdz_tensor bh = th_rand(s, CDZ_DTYPE_F16, 1, (int64_t[]){4}, -1.f, 1.f);
    th_expect_status(s, "f16 bias with f32 x", cdz_conv1d(s->cpu, &x, &w, &bh, &y, &p), INV);
    th_expect_status(s, "bias length", cdz_conv1d(s->cpu, &x, &w, &b3, &y, &p), INV);
    cdz_tensor xi = th_empty(s, CDZ_DTYPE_I32, 3, (int64_t[]){2, 6, 10});
    cdz_tensor wi = th_empty(s, CDZ_DTYPE_I32, 3, (int64_t[]){4, 6, 3});
    cdz_tensor yi = th_empty(s, CDZ_DTYPE_I32, 3, (int64_t[]){2, 4, 8});
    th_expect_status(s, "i32 dtype", cdz_conv1d(s->cpu, &xi, &wi, NULL, &yi, &p), INV);
    th_expect_status(s, "conv2d with 3-d x", cdz_conv2d(s->cpu, &x, &w, &b, &y, &p), INV);

    cdz_tensor xs = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 6, 2}, -1.f, 1.f);
    cdz_tensor y0 = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 4, 1});
    th_expect_status(s, "kernel longer than padded input", cdz_conv1d(s->cpu, &xs, &w, &b, &y0, &p), INV);

    /* transposed: weight [Cin, Cout/groups, K] */
    cdz_tensor tw = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){6, 2, 4}, -1.f, 1.f);
    cdz_tensor tb = th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){2}, -1.f, 1.f);
    cdz_conv_params tp = cdz_conv_params_1d(2, 0, 1, 1);
    cdz_tensor ty = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 2, 22}); /* (10-1)*2 + 3 + 1 */
    th_ok(s, "transposed baseline", cdz_conv_transpose1d(s->cpu, &x, &tw, &tb, &ty, &tp));
    tp.output_padding[0] = 2;
    th_expect_status(s, "output_padding >= stride", cdz_conv_transpose1d(s->cpu, &x, &tw, &tb, &ty, &tp), INV);
    tp.output_padding[0] = 1;
    th_expect_status(s, "y ignores output_padding", cdz_conv_transpose1d(s->cpu, &x, &tw, &tb, &ty, &tp), INV);
    tp.output_padding[0] = 0;
    th_expect_status(s, "transposed weight [Cout, Cin]", cdz_conv_transpose1d(s->cpu, &x, &w, &b, &y, &tp), INV);
    tp.pad_begin[0] = 12, tp.pad_end[0] = 12;
    cdz_tensor ty0 = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 2, 1});
    th_expect_status(s, "trim longer than output", cdz_conv_transpose1d(s->cpu, &x, &tw, &tb, &ty0, &tp), INV);

    /* empty batch is fine and writes nothing */
    cdz_tensor xe = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){0, 6, 10});
    cdz_tensor ye = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){0, 4, 8});
    th_ok(s, "N=0", cdz_conv1d(s->cpu, &xe, &w, &b, &ye, &p));

    /* 2-d: wrong W of y names the mismatch */
    cdz_tensor x2 = th_rand(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 3, 9, 7}, -1.f, 1.f);
    cdz_tensor w2 = th_rand(s, CDZ_DTYPE_F32, 4, (int64_t[]){4, 3, 3, 3}, -1.f, 1.f);
    cdz_tensor y2 = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 4, 5, 5});
    cdz_conv_params q = cdz_conv_params_2d(2, 2, 1, 1, 1, 1, 1);
    th_expect_status(s, "conv2d wrong y W", cdz_conv2d(s->cpu, &x2, &w2, NULL, &y2, &q), INV);
    th_check(s, "message names expected shape", strstr(cdz_last_message(), "[1,4,5,4]") != NULL,
             "got: %s", cdz_last_message());
    q.stride[1] = 0;
    th_expect_status(s, "conv2d stride W 0", cdz_conv2d(s->cpu, &x2, &w2, NULL, &y2, &q), INV);
    th_end(s);
}

void test_ops_conv(th_suite *s) {
    const conv_case cases[] = {
        /* conv1d */
        c1("conv1d", false, 1, 2, 8, 257, 8, p1(4, 1, 2, 2, 0, 1), true),  /* HTDemucs encoder */
        c1("conv1d", false, 3, 4, 6, 33, 8, p1(4, 1, 0, 0, 0, 1), false),
        c1("conv1d", false, 3, 7, 5, 33, 1, p1(1, 1, 0, 0, 0, 1), true),  /* K=1 */
        c1("conv1d", false, 1, 8, 8, 257, 3, p1(1, 2, 2, 2, 0, 1), true), /* DConv d=2 */
        c1("conv1d", false, 1, 4, 6, 33, 3, p1(1, 4, 4, 4, 0, 1), true),  /* DConv d=4 */
        c1("conv1d", false, 3, 6, 6, 33, 5, p1(1, 1, 2, 2, 0, 6), true),  /* depthwise */
        c1("conv1d", false, 1, 4, 8, 7, 3, p1(2, 1, 1, 1, 0, 4), false),  /* depthwise x2 */
        c1("conv1d", false, 1, 4, 6, 7, 3, p1(1, 1, 1, 1, 0, 2), true),   /* groups=2 */
        c1("conv1d", false, 3, 3, 4, 33, 4, p1(1, 1, 3, 0, 0, 1), true),  /* causal 3+0 */
        c1("conv1d", false, 1, 4, 4, 7, 3, p1(2, 1, 0, 1, 0, 2), true),   /* 'same' s2 0+1 */
        c1("conv1d", false, 1, 3, 2, 1, 1, p1(1, 1, 0, 0, 0, 1), true),   /* L=1 */
        c1("conv1d", false, 3, 3, 2, 1, 3, p1(1, 1, 1, 1, 0, 1), true),   /* L=1, padded */
        /* conv2d */
        c2("conv2d", false, 1, 5, 3, 7, 9, 1, 1, p2(1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1), true), /* 1x1 */
        c2("conv2d", false, 3, 3, 4, 9, 7, 3, 3, p2(2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 1), true), /* 3x3 s2 */
        c2("conv2d", false, 1, 4, 4, 8, 8, 3, 3, p2(2, 2, 1, 1, 0, 0, 1, 1, 0, 0, 1), true), /* TF same */
        c2("conv2d", false, 1, 8, 8, 7, 7, 3, 3, p2(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 8), true), /* dw */
        c2("conv2d", false, 3, 6, 6, 7, 9, 3, 3, p2(2, 2, 1, 1, 0, 0, 1, 1, 0, 0, 6), false), /* dw s2 asym */
        c2("conv2d", false, 1, 4, 8, 33, 5, 8, 1, p2(4, 1, 1, 1, 2, 0, 2, 0, 0, 0, 1), true), /* freq enc */
        c2("conv2d", false, 1, 4, 6, 9, 11, 3, 2, p2(1, 2, 2, 3, 1, 2, 2, 0, 0, 0, 2), true), /* mix */
        c2("conv2d", false, 1, 3, 2, 1, 1, 1, 1, p2(1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1), true), /* 1x1 px */
        /* conv_transpose1d */
        c1("conv_transpose1d", true, 1, 8, 4, 33, 8, p1(4, 1, 0, 0, 0, 1), true), /* HTDemucs dec */
        c1("conv_transpose1d", true, 3, 6, 2, 7, 8, p1(4, 1, 2, 2, 0, 1), true),  /* trimmed by 2 */
        c1("conv_transpose1d", true, 1, 4, 3, 7, 3, p1(2, 1, 1, 1, 1, 1), true),  /* output_padding */
        c1("conv_transpose1d", true, 1, 4, 6, 33, 3, p1(2, 2, 1, 1, 0, 2), false), /* groups, dil */
        c1("conv_transpose1d", true, 3, 4, 4, 7, 4, p1(2, 1, 1, 1, 0, 4), true),  /* depthwise */
        c1("conv_transpose1d", true, 1, 3, 4, 7, 8, p1(4, 1, 3, 1, 0, 1), true),  /* asym trim */
        c1("conv_transpose1d", true, 1, 2, 3, 7, 3, p1(2, 3, 1, 1, 2, 1), true),  /* outpad >= s */
        c1("conv_transpose1d", true, 1, 3, 2, 1, 3, p1(1, 1, 0, 0, 0, 1), true),  /* L=1 */
        /* conv_transpose2d */
        c2("conv_transpose2d", true, 1, 8, 4, 9, 5, 8, 1, p2(4, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1), true),
        c2("conv_transpose2d", true, 1, 6, 4, 7, 3, 8, 1, p2(4, 1, 1, 1, 2, 0, 2, 0, 0, 0, 1), false),
        c2("conv_transpose2d", true, 3, 4, 3, 7, 5, 4, 4, p2(2, 2, 1, 1, 1, 1, 1, 1, 0, 0, 1), true),
        c2("conv_transpose2d", true, 1, 4, 2, 5, 7, 3, 3, p2(2, 2, 1, 1, 1, 1, 1, 1, 1, 0, 1), true),
        c2("conv_transpose2d", true, 1, 4, 6, 5, 4, 3, 2, p2(2, 1, 1, 2, 1, 0, 0, 2, 0, 0, 2), true),
        /* wider channels, so cuDNN picks tensor-core / GEMM algorithms (about 1 s on CPU) */
        c1("conv1d", false, 2, 48, 96, 1031, 8, p1(4, 1, 2, 2, 0, 1), true),
        c2("conv2d", false, 1, 32, 64, 33, 17, 3, 3, p2(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1), true),
        c2("conv_transpose2d", true, 1, 64, 32, 33, 8, 8, 1, p2(4, 1, 1, 1, 2, 0, 2, 0, 0, 0, 1), true),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(s, &cases[i]);
    error_cases(s);
}
