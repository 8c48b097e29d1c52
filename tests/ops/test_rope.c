/*
 * test_rope.c: cdz_rope against a float64 reference built from the same fp32 angles
 * (PyTorch's inv_freq / position product), CUDA against the CPU, in place against out of
 * place, both layouts, partial rot_dim, and error paths.
 */
#include <math.h>
#include <string.h>

#include "../harness.h"
#include "families.h"
#include "rope.h"

/* angle as PyTorch forms it: inv_freq = 1.0 / (theta ** (arange(0, rot, 2).float() / rot)),
 * freqs = t.float() * inv_freq, all fp32 (pow rounded once to fp32). */
static float torch_angle(int64_t pos, int i, int rot_dim, float theta) {
    const float expo = (float)(2 * i) / (float)rot_dim;
    const float inv_freq = 1.0f / (float)pow((double)theta, (double)expo);
    return (float)pos * inv_freq;
}

/* y in x's layout, double math and double cos/sin of the fp32 angle. */
static double *ref_rope(th_suite *s, const cdz_tensor *x, int rot_dim, float theta, int64_t pos0,
                        bool heads_first) {
    const int64_t B = x->shape[0], D = x->shape[3];
    const int64_t L = heads_first ? x->shape[2] : x->shape[1];
    const int64_t H = heads_first ? x->shape[1] : x->shape[2];
    double *y = th_alloc_f64(s, (size_t)cdz_tensor_numel(x) + 1);
    const int half = rot_dim / 2;
    for (int64_t b = 0; b < B; b++)
        for (int64_t l = 0; l < L; l++)
            for (int64_t h = 0; h < H; h++) {
                const int64_t row = heads_first ? ((b * H + h) * L + l) * D : ((b * L + l) * H + h) * D;
                for (int64_t d = 0; d < D; d++) {
                    const double xv = th_get(x, row + d);
                    if (d >= rot_dim) {
                        y[row + d] = xv;
                        continue;
                    }
                    const int i = (int)(d < half ? d : d - half);
                    const double a = torch_angle(pos0 + l, i, rot_dim, theta);
                    const double partner = th_get(x, row + (d < half ? d + half : d - half));
                    /* rotate_half(x) = cat(-x2, x1) */
                    y[row + d] = xv * cos(a) + (d < half ? -partner : partner) * sin(a);
                }
            }
    return y;
}

typedef struct rope_case {
    int B, L, H, D, rot_dim;
    bool heads_first;
    cdz_dtype dt;
    int64_t pos0;
    float theta;
} rope_case;

static double tol_vs_f64(cdz_dtype dt) {
    return dt == CDZ_DTYPE_F32 ? 1e-6 : dt == CDZ_DTYPE_F16 ? 2e-3 : 1e-2;
}
static const char *why_vs_f64(cdz_dtype dt) {
    return dt == CDZ_DTYPE_F32 ? "cos/sin rounded to fp32 (2^-24), output rounded to fp32"
           : dt == CDZ_DTYPE_F16 ? "same f16 inputs; output rounded to f16 (2^-11)"
                                 : "same bf16 inputs; output rounded to bf16 (2^-8)";
}
static double tol_cuda(cdz_dtype dt) {
    return dt == CDZ_DTYPE_F32 ? 1e-6 : dt == CDZ_DTYPE_F16 ? 2e-3 : 1e-2;
}
static const char *why_cuda(cdz_dtype dt) {
    return dt == CDZ_DTYPE_F32 ? "identical cos/sin; fp32 fma rotation vs double"
           : dt == CDZ_DTYPE_F16 ? "fp32 vs double rotation, both rounded to f16: 1-ulp flips"
                                 : "fp32 vs double rotation, both rounded to bf16: 1-ulp flips";
}

static void run_case(th_suite *s, const rope_case *c) {
    if (!th_begin(s, "rope", "%s %s B=%d L=%d H=%d D=%d rot_dim=%d pos0=%lld theta=%g",
                  cdz_dtype_name(c->dt), c->heads_first ? "[B,H,L,D]" : "[B,L,H,D]", c->B, c->L,
                  c->H, c->D, c->rot_dim, (long long)c->pos0, (double)c->theta))
        return;
    const int64_t shape[4] = {c->B, c->heads_first ? c->H : c->L, c->heads_first ? c->L : c->H, c->D};
    cdz_tensor x = th_rand(s, c->dt, 4, shape, -2.f, 2.f);
    cdz_tensor y = th_empty(s, c->dt, 4, shape);
    th_ok(s, "cpu", cdz_rope(s->cpu, &x, &y, c->rot_dim, c->theta, c->pos0, c->heads_first));
    const double *ref = ref_rope(s, &x, c->rot_dim, c->theta, c->pos0, c->heads_first);
    th_compare_f64(s, "cpu-vs-f64", &y, ref, tol_vs_f64(c->dt), why_vs_f64(c->dt));

    cdz_tensor yi = th_empty(s, c->dt, 4, shape);
    memcpy(yi.data, x.data, cdz_tensor_nbytes(&x));
    th_ok(s, "cpu in place", cdz_rope(s->cpu, &yi, &yi, c->rot_dim, c->theta, c->pos0, c->heads_first));
    th_compare_bytes(s, "cpu in-place-vs-out-of-place", yi.data, y.data, cdz_tensor_nbytes(&y));

    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dx = th_to_cuda(s, &x), dy = th_cuda_like(s, &y);
        th_ok(s, "cuda", cdz_rope(s->cuda, &dx, &dy, c->rot_dim, c->theta, c->pos0, c->heads_first));
        th_compare(s, "cuda-vs-cpu", &dy, &y, tol_cuda(c->dt), why_cuda(c->dt));
        th_ok(s, "cuda in place", cdz_rope(s->cuda, &dx, &dx, c->rot_dim, c->theta, c->pos0, c->heads_first));
        cdz_tensor h1 = th_to_host(s, &dy), h2 = th_to_host(s, &dx);
        th_compare_bytes(s, "cuda in-place-vs-out-of-place", h2.data, h1.data, cdz_tensor_nbytes(&h1));
    }
    th_end(s);
}

static void run_errors(th_suite *s) {
    if (!th_begin(s, "rope", "error paths")) return;
    const cdz_status BAD = CDZ_STATUS_INVALID_ARGUMENT;
    cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 3, 2, 8}, -1.f, 1.f);
    cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 4, x.shape);
    th_ok(s, "valid call", cdz_rope(s->cpu, &x, &y, 8, 10000.f, 0, false));
    th_expect_status(s, "odd rot_dim", cdz_rope(s->cpu, &x, &y, 5, 10000.f, 0, false), BAD);
    th_expect_status(s, "rot_dim > D", cdz_rope(s->cpu, &x, &y, 10, 10000.f, 0, false), BAD);
    th_expect_status(s, "rot_dim 0", cdz_rope(s->cpu, &x, &y, 0, 10000.f, 0, false), BAD);
    th_expect_status(s, "theta 0", cdz_rope(s->cpu, &x, &y, 8, 0.f, 0, false), BAD);
    th_expect_status(s, "theta NaN", cdz_rope(s->cpu, &x, &y, 8, NAN, 0, false), BAD);
    th_expect_status(s, "negative pos_offset", cdz_rope(s->cpu, &x, &y, 8, 10000.f, -1, false), BAD);
    th_expect_status(s, "positions past 2^24", cdz_rope(s->cpu, &x, &y, 8, 10000.f, (1 << 24) - 2, false), BAD);
    th_ok(s, "last exact positions", cdz_rope(s->cpu, &x, &y, 8, 10000.f, (1 << 24) - 3, false));
    cdz_tensor t = x;
    t.dtype = CDZ_DTYPE_I32;
    th_expect_status(s, "x i32", cdz_rope(s->cpu, &t, &t, 8, 10000.f, 0, false), BAD);
    cdz_tensor yh = th_empty(s, CDZ_DTYPE_F16, 4, x.shape);
    th_expect_status(s, "y f16, x f32", cdz_rope(s->cpu, &x, &yh, 8, 10000.f, 0, false), BAD);
    cdz_tensor y2 = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 3, 2, 6});
    th_expect_status(s, "y shape", cdz_rope(s->cpu, &x, &y2, 6, 10000.f, 0, false), BAD);
    t = x, t.ndim = 3;
    th_expect_status(s, "x 3 dims", cdz_rope(s->cpu, &t, &t, 2, 10000.f, 0, false), BAD);
    t = x, t.stride[1] = 32;
    th_expect_status(s, "x not contiguous", cdz_rope(s->cpu, &t, &y, 8, 10000.f, 0, false), BAD);
    t = x, t.data = (float *)x.data + 1;
    th_expect_status(s, "y partially overlaps x", cdz_rope(s->cpu, &x, &t, 8, 10000.f, 0, false), BAD);
    th_expect_status(s, "NULL y", cdz_rope(s->cpu, &x, NULL, 8, 10000.f, 0, false), BAD);
    th_end(s);
}

void test_ops_rope(th_suite *s) {
    const cdz_dtype F32 = CDZ_DTYPE_F32, F16 = CDZ_DTYPE_F16, BF16 = CDZ_DTYPE_BF16;
    const rope_case cases[] = {
        {1, 1, 1, 2, 2, false, F32, 0, 10000.f},        /* smallest */
        {2, 7, 3, 64, 64, false, F32, 0, 10000.f},      /* full rotation, DiT head dim */
        {1, 33, 4, 64, 32, false, F32, 5, 10000.f},     /* partial rot_dim: dims 32.. pass */
        {2, 5, 3, 48, 16, true, F32, 1000, 10000.f},    /* heads first, offset */
        {1, 257, 2, 10, 6, false, F32, 4000, 500.f},    /* odd L, odd-ish D, other theta */
        {1, 3, 2, 8, 8, true, F32, 100000, 10000.f},    /* large positions: angles ~1e5 rad */
        {2, 31, 3, 64, 64, false, F16, 7, 10000.f},
        {1, 19, 5, 48, 24, true, BF16, 0, 10000.f},
        {1, 9, 2, 34, 30, false, F16, 300, 10000.f},
        {3, 4, 1, 12, 12, false, BF16, 0, 10.f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(s, &cases[i]);
    run_errors(s);
}
