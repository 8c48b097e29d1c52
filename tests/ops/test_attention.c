/*
 * test_attention.c: cdz_attention against a float64 two-pass reference (full score matrix,
 * max, exp, sum), CUDA (tiled and fallback kernels) against the CPU, strided views of a
 * fused QKV buffer against contiguous copies, large scores, S == 0 and error paths.
 */
#include <math.h>
#include <string.h>

#include "../harness.h"
#include "attention.h"
#include "families.h"
#include "half.h"

/* ------------------------------------------------------------------ helpers */

static double view_get(const cdz_tensor *t, int64_t b, int64_t h, int64_t i, int64_t d) {
    const int64_t off = b * t->stride[0] + h * t->stride[1] + i * t->stride[2] + d * t->stride[3];
    switch (t->dtype) {
    case CDZ_DTYPE_F16: return cdz_f16_to_f32(((const uint16_t *)t->data)[off]);
    case CDZ_DTYPE_BF16: return cdz_bf16_to_f32(((const uint16_t *)t->data)[off]);
    default: return ((const float *)t->data)[off];
    }
}

/* Float64 reference, [B, H, L, Dv] contiguous: the whole L x S score matrix of one head,
 * then a two-pass softmax (deliberately unlike the op's row-at-a-time code). */
static double *ref_attention(th_suite *s, const cdz_tensor *q, const cdz_tensor *k,
                             const cdz_tensor *v, double scale, bool causal) {
    const int64_t B = q->shape[0], H = q->shape[1], L = q->shape[2], D = q->shape[3];
    const int64_t S = k->shape[2], Dv = v->shape[3];
    double *out = th_alloc_f64(s, (size_t)(B * H * L * Dv) + 1);
    double *sc = th_alloc_f64(s, (size_t)(L * S) + 1);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            for (int64_t i = 0; i < L; i++)
                for (int64_t j = 0; j < S; j++) {
                    double dot = 0;
                    for (int64_t d = 0; d < D; d++) dot += view_get(q, b, h, i, d) * view_get(k, b, h, j, d);
                    sc[i * S + j] = causal && j > i ? -INFINITY : scale * dot;
                }
            for (int64_t i = 0; i < L; i++) {
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < S; j++) mx = fmax(mx, sc[i * S + j]);
                for (int64_t j = 0; j < S; j++) sum += (sc[i * S + j] = exp(sc[i * S + j] - mx));
                double *o = out + ((b * H + h) * L + i) * Dv;
                for (int64_t e = 0; e < Dv; e++) {
                    double acc = 0;
                    for (int64_t j = 0; j < S; j++) acc += sc[i * S + j] * view_get(v, b, h, j, e);
                    o[e] = S > 0 ? acc / sum : 0.0; /* no keys: PyTorch's math path gives 0 */
                }
            }
        }
    return out;
}

/* A [B, H, rows, cols] view into `buf` starting `off` elements in. */
static cdz_tensor make_view(const cdz_tensor *buf, int64_t off, const int64_t shape[4],
                            const int64_t stride[4]) {
    cdz_tensor t = *buf;
    t.data = (char *)buf->data + off * (int64_t)cdz_dtype_size(buf->dtype);
    t.ndim = 4;
    for (int i = 0; i < CDZ_MAX_DIMS; i++) {
        t.shape[i] = i < 4 ? shape[i] : 0;
        t.stride[i] = i < 4 ? stride[i] : 0;
    }
    return t;
}

/* Contiguous host copy of a strided host view (raw element bytes). */
static cdz_tensor gather(th_suite *s, const cdz_tensor *view) {
    cdz_tensor c = th_empty(s, view->dtype, 4, view->shape);
    const size_t es = cdz_dtype_size(view->dtype);
    int64_t n = 0;
    for (int64_t b = 0; b < view->shape[0]; b++)
        for (int64_t h = 0; h < view->shape[1]; h++)
            for (int64_t i = 0; i < view->shape[2]; i++)
                for (int64_t d = 0; d < view->shape[3]; d++, n++) {
                    const int64_t off = b * view->stride[0] + h * view->stride[1] +
                                        i * view->stride[2] + d * view->stride[3];
                    memcpy((char *)c.data + n * es, (const char *)view->data + off * es, es);
                }
    return c;
}

static double tol_vs_f64(cdz_dtype dt) {
    return dt == CDZ_DTYPE_F32 ? 1e-6 : dt == CDZ_DTYPE_F16 ? 2e-3 : 1e-2;
}
static const char *why_vs_f64(cdz_dtype dt) {
    return dt == CDZ_DTYPE_F32 ? "double math on the same inputs; only the fp32 output rounding"
           : dt == CDZ_DTYPE_F16 ? "same f16 inputs, double math; output rounded to f16 (2^-11)"
                                 : "same bf16 inputs, double math; output rounded to bf16 (2^-8)";
}
static double tol_cuda(cdz_dtype dt, bool large) {
    if (dt == CDZ_DTYPE_F32) return large ? 1e-4 : 1e-5;
    return dt == CDZ_DTYPE_F16 ? 2e-3 : 1e-2;
}
static const char *why_cuda(cdz_dtype dt, bool large) {
    if (dt == CDZ_DTYPE_F32)
        return large ? "fp32 scores of magnitude ~100: absolute score error ~1e-5 moves the weights"
                     : "fp32 dot products and online softmax vs double";
    return dt == CDZ_DTYPE_F16 ? "fp32 vs double math, then both rounded to f16: 1-ulp flips"
                               : "fp32 vs double math, then both rounded to bf16: 1-ulp flips";
}

/* ------------------------------------------------------------------ contiguous cases */

typedef struct att_case {
    int B, H, L, S, D, Dv;
    bool causal;
    cdz_dtype dt;
    float qk_range;   /* q and k uniform in [-r, r] */
    float scale_mul;  /* scale = scale_mul / sqrt(D) */
} att_case;

static void run_case(th_suite *s, const att_case *c) {
    if (!th_begin(s, "attention", "%s B=%d H=%d L=%d S=%d D=%d Dv=%d causal=%d qk=+-%g scale=%g/sqrt(D)",
                  cdz_dtype_name(c->dt), c->B, c->H, c->L, c->S, c->D, c->Dv, c->causal,
                  (double)c->qk_range, (double)c->scale_mul))
        return;
    const bool large = c->qk_range > 4.f;
    const float scale = c->scale_mul / sqrtf((float)c->D);
    cdz_tensor q = th_rand(s, c->dt, 4, (int64_t[]){c->B, c->H, c->L, c->D}, -c->qk_range, c->qk_range);
    cdz_tensor k = th_rand(s, c->dt, 4, (int64_t[]){c->B, c->H, c->S, c->D}, -c->qk_range, c->qk_range);
    cdz_tensor v = th_rand(s, c->dt, 4, (int64_t[]){c->B, c->H, c->S, c->Dv}, -1.f, 1.f);
    cdz_tensor out = th_empty(s, c->dt, 4, (int64_t[]){c->B, c->H, c->L, c->Dv});
    th_ok(s, "cpu", cdz_attention(s->cpu, &q, &k, &v, &out, scale, c->causal));
    const double *ref = ref_attention(s, &q, &k, &v, scale, c->causal);
    th_compare_f64(s, "cpu-vs-f64", &out, ref, tol_vs_f64(c->dt), why_vs_f64(c->dt));

    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dq = th_to_cuda(s, &q), dk = th_to_cuda(s, &k), dv = th_to_cuda(s, &v);
        cdz_tensor d1 = th_cuda_like(s, &out), d2 = th_cuda_like(s, &out);
        th_ok(s, "cuda", cdz_attention(s->cuda, &dq, &dk, &dv, &d1, scale, c->causal));
        th_compare(s, "cuda-vs-cpu", &d1, &out, tol_cuda(c->dt, large), why_cuda(c->dt, large));
        th_ok(s, "cuda again", cdz_attention(s->cuda, &dq, &dk, &dv, &d2, scale, c->causal));
        cdz_tensor h1 = th_to_host(s, &d1), h2 = th_to_host(s, &d2);
        th_compare_bytes(s, "cuda deterministic", h1.data, h2.data, cdz_tensor_nbytes(&h1));
#ifdef CDZ_HAVE_CUDA
        cdz_tensor d3 = th_cuda_like(s, &out);
        cdz_attention_force_fallback(true);
        th_ok(s, "cuda fallback", cdz_attention(s->cuda, &dq, &dk, &dv, &d3, scale, c->causal));
        cdz_attention_force_fallback(false);
        th_compare(s, "cuda-fallback-vs-cpu", &d3, &out, tol_cuda(c->dt, large), why_cuda(c->dt, large));
#endif
    }
    th_end(s);
}

/* ------------------------------------------------------------------ strided views */

/* Self-attention straight from a fused projection qkv [B, L, 3, H, D]; the output goes
 * into [B, L, H, D] (the layout the output projection wants). With share_kv_heads, k and v
 * use stride 0 over H (one KV head broadcast to all query heads). */
static void run_strided(th_suite *s, cdz_dtype dt, int B, int H, int L, int D, bool causal,
                        bool share_kv_heads) {
    if (!th_begin(s, "attention", "%s strided qkv[B=%d,L=%d,3,H=%d,D=%d] causal=%d kv_head_stride0=%d",
                  cdz_dtype_name(dt), B, L, H, D, causal, share_kv_heads))
        return;
    const float scale = 1.f / sqrtf((float)D);
    cdz_tensor qkv = th_rand(s, dt, 5, (int64_t[]){B, L, 3, H, D}, -1.5f, 1.5f);
    cdz_tensor obuf = th_empty(s, dt, 4, (int64_t[]){B, L, H, D});
    const int64_t shp[4] = {B, H, L, D};
    const int64_t sqkv[4] = {(int64_t)L * 3 * H * D, share_kv_heads ? 0 : D, 3 * H * D, 1};
    const int64_t sq[4] = {(int64_t)L * 3 * H * D, D, 3 * H * D, 1};
    const int64_t so[4] = {(int64_t)L * H * D, D, H * D, 1};
    cdz_tensor q = make_view(&qkv, 0, shp, sq);
    cdz_tensor k = make_view(&qkv, (int64_t)H * D, shp, sqkv);
    cdz_tensor v = make_view(&qkv, 2 * (int64_t)H * D, shp, sqkv);
    cdz_tensor out = make_view(&obuf, 0, shp, so);
    th_ok(s, "cpu strided", cdz_attention(s->cpu, &q, &k, &v, &out, scale, causal));

    cdz_tensor qc = gather(s, &q), kc = gather(s, &k), vc = gather(s, &v);
    cdz_tensor oc = th_empty(s, dt, 4, shp);
    th_ok(s, "cpu contiguous", cdz_attention(s->cpu, &qc, &kc, &vc, &oc, scale, causal));
    cdz_tensor og = gather(s, &out);
    th_compare_bytes(s, "cpu strided-vs-contiguous", og.data, oc.data, cdz_tensor_nbytes(&oc));
    const double *ref = ref_attention(s, &q, &k, &v, scale, causal);
    th_compare_f64(s, "cpu-vs-f64", &og, ref, tol_vs_f64(dt), why_vs_f64(dt));

    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dqkv = th_to_cuda(s, &qkv), dobuf = th_cuda_like(s, &obuf);
        cdz_tensor dq = make_view(&dqkv, 0, shp, sq);
        cdz_tensor dk = make_view(&dqkv, (int64_t)H * D, shp, sqkv);
        cdz_tensor dv = make_view(&dqkv, 2 * (int64_t)H * D, shp, sqkv);
        cdz_tensor dout = make_view(&dobuf, 0, shp, so);
        th_ok(s, "cuda strided", cdz_attention(s->cuda, &dq, &dk, &dv, &dout, scale, causal));
        cdz_tensor hbuf = th_to_host(s, &dobuf);
        cdz_tensor hview = make_view(&hbuf, 0, shp, so);
        cdz_tensor hg = gather(s, &hview);
        th_compare(s, "cuda-vs-cpu", &hg, &og, tol_cuda(dt, false), why_cuda(dt, false));

        cdz_tensor dqc = th_to_cuda(s, &qc), dkc = th_to_cuda(s, &kc), dvc = th_to_cuda(s, &vc);
        cdz_tensor doc = th_cuda_like(s, &oc);
        th_ok(s, "cuda contiguous", cdz_attention(s->cuda, &dqc, &dkc, &dvc, &doc, scale, causal));
        cdz_tensor hoc = th_to_host(s, &doc);
        th_compare_bytes(s, "cuda strided-vs-contiguous", hg.data, hoc.data, cdz_tensor_nbytes(&hoc));
#ifdef CDZ_HAVE_CUDA
        cdz_tensor dobuf2 = th_cuda_like(s, &obuf);
        cdz_tensor dout2 = make_view(&dobuf2, 0, shp, so);
        cdz_attention_force_fallback(true);
        th_ok(s, "cuda fallback strided", cdz_attention(s->cuda, &dq, &dk, &dv, &dout2, scale, causal));
        cdz_attention_force_fallback(false);
        cdz_tensor hbuf2 = th_to_host(s, &dobuf2);
        cdz_tensor hview2 = make_view(&hbuf2, 0, shp, so);
        cdz_tensor hg2 = gather(s, &hview2);
        th_compare(s, "cuda-fallback-vs-cpu", &hg2, &og, tol_cuda(dt, false), why_cuda(dt, false));
#endif
    }
    th_end(s);
}

/* ------------------------------------------------------------------ no keys, empty */

static void run_no_keys(th_suite *s) {
    if (!th_begin(s, "attention", "f32 S=0 (no keys) -> zeros, B=0 -> no-op")) return;
    cdz_tensor q = th_rand(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 5, 8}, -1.f, 1.f);
    cdz_tensor k = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 0, 8});
    cdz_tensor v = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 0, 3});
    cdz_tensor out = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 5, 3});
    double *zeros = th_alloc_f64(s, 30);
    th_ok(s, "cpu S=0", cdz_attention(s->cpu, &q, &k, &v, &out, 0.5f, false));
    th_compare_f64(s, "cpu S=0 gives zeros", &out, zeros, 0.0, "empty weighted sum is exactly 0");
    th_ok(s, "cpu S=0 causal", cdz_attention(s->cpu, &q, &k, &v, &out, 0.5f, true));
    th_compare_f64(s, "cpu S=0 causal gives zeros", &out, zeros, 0.0, "empty weighted sum is exactly 0");
    cdz_tensor q0 = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){0, 2, 5, 8});
    cdz_tensor k0 = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){0, 2, 4, 8});
    cdz_tensor v0 = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){0, 2, 4, 3});
    cdz_tensor o0 = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){0, 2, 5, 3});
    th_ok(s, "cpu B=0", cdz_attention(s->cpu, &q0, &k0, &v0, &o0, 0.5f, false));
    if (th_gpu(s, "cuda S=0")) {
        /* th_cuda_like: k and v hold no elements (th_to_cuda rejects them as non-contiguous) */
        cdz_tensor dq = th_to_cuda(s, &q), dk = th_cuda_like(s, &k), dv = th_cuda_like(s, &v);
        cdz_tensor dout = th_cuda_like(s, &out);
        th_ok(s, "cuda S=0", cdz_attention(s->cuda, &dq, &dk, &dv, &dout, 0.5f, true));
        th_compare_f64(s, "cuda S=0 gives zeros", &dout, zeros, 0.0, "empty weighted sum is exactly 0");
#ifdef CDZ_HAVE_CUDA
        cdz_tensor dout2 = th_cuda_like(s, &out);
        cdz_attention_force_fallback(true);
        th_ok(s, "cuda fallback S=0", cdz_attention(s->cuda, &dq, &dk, &dv, &dout2, 0.5f, false));
        cdz_attention_force_fallback(false);
        th_compare_f64(s, "cuda fallback S=0 gives zeros", &dout2, zeros, 0.0,
                       "empty weighted sum is exactly 0");
#endif
    }
    th_end(s);
}

/* ------------------------------------------------------------------ error paths */

static void run_errors(th_suite *s) {
    if (!th_begin(s, "attention", "error paths")) return;
    const cdz_status BAD = CDZ_STATUS_INVALID_ARGUMENT;
    cdz_tensor q = th_rand(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 3, 4}, -1.f, 1.f);
    cdz_tensor k = th_rand(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 5, 4}, -1.f, 1.f);
    cdz_tensor v = th_rand(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 5, 6}, -1.f, 1.f);
    cdz_tensor out = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 3, 6});
    th_ok(s, "valid call", cdz_attention(s->cpu, &q, &k, &v, &out, 0.5f, true));
    cdz_tensor t;

    th_expect_status(s, "NULL q", cdz_attention(s->cpu, NULL, &k, &v, &out, 0.5f, false), BAD);
    th_expect_status(s, "NULL out", cdz_attention(s->cpu, &q, &k, &v, NULL, 0.5f, false), BAD);
    t = q, t.dtype = CDZ_DTYPE_I32;
    th_expect_status(s, "q i32", cdz_attention(s->cpu, &t, &k, &v, &out, 0.5f, false), BAD);
    cdz_tensor kh = th_rand(s, CDZ_DTYPE_F16, 4, k.shape, -1.f, 1.f);
    th_expect_status(s, "k f16, q f32", cdz_attention(s->cpu, &q, &kh, &v, &out, 0.5f, false), BAD);
    t = q, t.ndim = 3;
    th_expect_status(s, "q 3 dims", cdz_attention(s->cpu, &t, &k, &v, &out, 0.5f, false), BAD);
    t = k, t.shape[3] = 3;
    th_expect_status(s, "k D != q D", cdz_attention(s->cpu, &q, &t, &v, &out, 0.5f, false), BAD);
    t = k, t.shape[1] = 1;
    th_expect_status(s, "k H != q H", cdz_attention(s->cpu, &q, &t, &v, &out, 0.5f, false), BAD);
    t = v, t.shape[2] = 4;
    th_expect_status(s, "v S != k S", cdz_attention(s->cpu, &q, &k, &t, &out, 0.5f, false), BAD);
    t = out, t.shape[3] = 5;
    th_expect_status(s, "out Dv != v Dv", cdz_attention(s->cpu, &q, &k, &v, &t, 0.5f, false), BAD);
    t = out, t.shape[2] = 4;
    th_expect_status(s, "out L != q L", cdz_attention(s->cpu, &q, &k, &v, &t, 0.5f, false), BAD);
    cdz_tensor q257 = th_rand(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 1, 1, 257}, -1.f, 1.f);
    cdz_tensor k257 = th_rand(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 1, 1, 257}, -1.f, 1.f);
    cdz_tensor v1 = th_rand(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 1, 1, 4}, -1.f, 1.f);
    cdz_tensor o1 = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 1, 1, 4});
    th_expect_status(s, "D = 257", cdz_attention(s->cpu, &q257, &k257, &v1, &o1, 0.5f, false), BAD);
    cdz_tensor v257 = th_rand(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 5, 257}, -1.f, 1.f);
    cdz_tensor o257 = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 3, 257});
    th_expect_status(s, "Dv = 257", cdz_attention(s->cpu, &q, &k, &v257, &o257, 0.5f, false), BAD);
    cdz_tensor q0 = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 3, 0});
    cdz_tensor k0 = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 5, 0});
    th_expect_status(s, "D = 0", cdz_attention(s->cpu, &q0, &k0, &v, &out, 0.5f, false), BAD);
    t = q, t.stride[3] = 2, t.stride[2] = 8, t.stride[1] = 24, t.stride[0] = 48;
    th_expect_status(s, "q last-dim stride 2", cdz_attention(s->cpu, &t, &k, &v, &out, 0.5f, false), BAD);
    t = k, t.stride[2] = -4, t.data = (float *)k.data + 16;
    th_expect_status(s, "k negative stride", cdz_attention(s->cpu, &q, &t, &v, &out, 0.5f, false), BAD);
    t = out, t.stride[2] = 0;
    th_expect_status(s, "out stride 0 over L (overlap)", cdz_attention(s->cpu, &q, &k, &v, &t, 0.5f, false), BAD);
    t = out, t.stride[1] = 6; /* heads 0 and 1 overlap rows 1..2 */
    th_expect_status(s, "out heads overlap", cdz_attention(s->cpu, &q, &k, &v, &t, 0.5f, false), BAD);
    th_expect_status(s, "NaN scale", cdz_attention(s->cpu, &q, &k, &v, &out, NAN, false), BAD);
    th_expect_status(s, "inf scale", cdz_attention(s->cpu, &q, &k, &v, &out, INFINITY, false), BAD);
    t = q, t.data = NULL;
    th_expect_status(s, "q without data", cdz_attention(s->cpu, &t, &k, &v, &out, 0.5f, false), BAD);
    t = v, t.device.kind = CDZ_DEVICE_CUDA;
    th_expect_status(s, "v on cuda, ctx on cpu", cdz_attention(s->cpu, &q, &k, &t, &out, 0.5f, false), BAD);
    th_end(s);
}

/* ------------------------------------------------------------------ entry */

void test_ops_attention(th_suite *s) {
    const cdz_dtype F32 = CDZ_DTYPE_F32, F16 = CDZ_DTYPE_F16, BF16 = CDZ_DTYPE_BF16;
    static const struct { int B, H, L, S, D, Dv; } shapes[] = {
        {1, 1, 1, 1, 1, 1},      /* smallest */
        {1, 1, 7, 33, 7, 7},     /* L < S, odd D */
        {2, 3, 33, 7, 48, 48},   /* L > S: causal rows beyond S see every key; HTDemucs D */
        {1, 2, 65, 65, 64, 64},  /* two query tiles, three key tiles; DiT D */
        {1, 1, 5, 9, 129, 33},   /* D != Dv, D over 128 */
        {1, 1, 3, 40, 256, 256}, /* largest head dim */
        {1, 1, 70, 3, 1, 5},     /* D = 1 */
        {1, 2, 100, 257, 33, 64},/* odd D 33, S not a multiple of the key tile */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int causal = 0; causal < 2; causal++) {
            att_case c = {shapes[i].B, shapes[i].H, shapes[i].L, shapes[i].S, shapes[i].D,
                          shapes[i].Dv, causal, F32, 1.f, 2.f};
            run_case(s, &c);
        }
    /* half types: the CPU reference reads the same rounded inputs */
    const att_case half_cases[] = {
        {1, 2, 33, 47, 64, 64, true, F16, 1.f, 2.f},  {1, 2, 33, 47, 64, 64, false, BF16, 1.f, 2.f},
        {2, 1, 9, 70, 48, 48, false, F16, 1.f, 2.f},  {2, 1, 70, 9, 48, 48, true, BF16, 1.f, 2.f},
        {1, 1, 4, 5, 256, 7, false, F16, 1.f, 2.f},   {1, 1, 4, 5, 3, 256, true, BF16, 1.f, 2.f},
    };
    for (size_t i = 0; i < sizeof half_cases / sizeof half_cases[0]; i++) run_case(s, &half_cases[i]);
    /* large scores (|s| up to ~1000): the online softmax must rescale without overflow */
    const att_case large_cases[] = {
        {1, 2, 33, 77, 64, 64, false, F32, 30.f, 1.f}, {1, 2, 33, 77, 64, 64, true, F32, 30.f, 1.f},
        {1, 1, 40, 40, 48, 48, true, F16, 20.f, 1.f},
    };
    for (size_t i = 0; i < sizeof large_cases / sizeof large_cases[0]; i++) run_case(s, &large_cases[i]);

    run_strided(s, F32, 2, 3, 37, 48, false, false);
    run_strided(s, F32, 2, 3, 37, 48, true, false);
    run_strided(s, BF16, 1, 4, 70, 64, true, false);
    run_strided(s, F32, 1, 3, 20, 33, false, true);
    run_no_keys(s);
    run_errors(s);
}
