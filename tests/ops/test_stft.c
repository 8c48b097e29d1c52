/*
 * test_stft.c: cdz_stft / cdz_istft against a naive O(N^2) float64 DFT written here
 * (independent of FFTW), the round trip istft(stft(x)) == x, CUDA vs CPU, and error paths.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "families.h"
#include "stft.h"

typedef enum { WIN_HANN = 0, WIN_RANDOM } win_kind;

typedef struct stft_case {
    int64_t n_fft, hop, win; /* win 0 = n_fft */
    bool center, normalized;
    win_kind window;
    int64_t batch, len, chunk;
} stft_case;

typedef struct stft_setup {
    cdz_stft_config cfg;
    float *win_f32;     /* the caller window (WIN_RANDOM) */
    double *w;          /* reference window, zero-padded to n_fft */
    int64_t frames, bins;
} stft_setup;

static const double TWO_PI = 6.283185307179586476925287;

static void setup_case(th_suite *s, const stft_case *c, stft_setup *st) {
    memset(st, 0, sizeof *st);
    const int64_t n = c->n_fft, wl = c->win ? c->win : n;
    st->cfg.n_fft = n;
    st->cfg.hop_length = c->hop;
    st->cfg.win_length = c->win;
    st->cfg.center = c->center;
    st->cfg.normalized = c->normalized;
    st->cfg.max_chunk_frames = c->chunk;
    st->w = th_alloc_f64(s, (size_t)n);
    const int64_t left = (n - wl) / 2;
    if (c->window == WIN_RANDOM) {
        /* strictly positive so non-centred configurations satisfy NOLA */
        st->win_f32 = th_alloc(s, (size_t)wl * sizeof(float));
        for (int64_t i = 0; i < wl; i++) st->win_f32[i] = (float)th_rand_uniform(s, 0.2, 1.0);
        st->cfg.window = st->win_f32;
        for (int64_t i = 0; i < wl; i++) st->w[left + i] = st->win_f32[i];
    } else {
        for (int64_t i = 0; i < wl; i++) st->w[left + i] = 0.5 - 0.5 * cos(TWO_PI * (double)i / (double)wl);
    }
    st->bins = n / 2 + 1;
    /* frames from the definition, not from the library */
    const int64_t padded = c->center ? c->len + 2 * (n / 2) : c->len;
    st->frames = 1 + (padded - n) / c->hop;
}

/* x padded like torch's F.pad(mode='reflect') by P = n/2 (or not at all). */
static double *ref_padded(th_suite *s, const float *x, int64_t len, int64_t pad) {
    double *xp = th_alloc_f64(s, (size_t)(len + 2 * pad));
    for (int64_t i = 0; i < len; i++) xp[pad + i] = x[i];
    for (int64_t j = 1; j <= pad; j++) {
        xp[pad - j] = x[j];
        xp[pad + len - 1 + j] = x[len - 1 - j];
    }
    return xp;
}

static void ref_trig(th_suite *s, int64_t n, double **cs, double **sn) {
    *cs = th_alloc_f64(s, (size_t)n);
    *sn = th_alloc_f64(s, (size_t)n);
    for (int64_t m = 0; m < n; m++) {
        (*cs)[m] = cos(TWO_PI * (double)m / (double)n);
        (*sn)[m] = sin(TWO_PI * (double)m / (double)n);
    }
}

/* z[b][f][t][re,im] = s * sum_k xp[t*H + k] w[k] e^{-2 pi i f k / N} */
static double *ref_stft(th_suite *s, const stft_case *c, const stft_setup *st, const float *x) {
    const int64_t n = c->n_fft, f_n = st->bins, t_n = st->frames, pad = c->center ? n / 2 : 0;
    double *cs, *sn;
    ref_trig(s, n, &cs, &sn);
    double *z = th_alloc_f64(s, (size_t)(c->batch * f_n * t_n * 2));
    double *fr = th_alloc_f64(s, (size_t)n);
    const double scale = c->normalized ? 1.0 / sqrt((double)n) : 1.0;
    for (int64_t b = 0; b < c->batch; b++) {
        double *xp = ref_padded(s, x + b * c->len, c->len, pad);
        for (int64_t t = 0; t < t_n; t++) {
            for (int64_t k = 0; k < n; k++) fr[k] = xp[t * c->hop + k] * st->w[k];
            for (int64_t f = 0; f < f_n; f++) {
                double re = 0, im = 0;
                int64_t m = 0; /* (f*k) mod n */
                for (int64_t k = 0; k < n; k++) {
                    re += fr[k] * cs[m];
                    im -= fr[k] * sn[m];
                    m += f;
                    if (m >= n) m -= n;
                }
                double *dst = z + ((b * f_n + f) * t_n + t) * 2;
                dst[0] = re * scale;
                dst[1] = im * scale;
            }
        }
    }
    return z;
}

/* Hermitian inverse (imaginary parts of DC / Nyquist dropped), window, overlap-add, divide by
 * the envelope, trim; zeros past the frames' reach. */
static double *ref_istft(th_suite *s, const stft_case *c, const stft_setup *st, const float *z) {
    const int64_t n = c->n_fft, f_n = st->bins, t_n = st->frames, pad = c->center ? n / 2 : 0;
    const int64_t ola_len = n + c->hop * (t_n - 1);
    double *cs, *sn;
    ref_trig(s, n, &cs, &sn);
    const double scale = c->normalized ? 1.0 / sqrt((double)n) : 1.0 / (double)n;
    double *y = th_alloc_f64(s, (size_t)(c->batch * c->len));
    double *ola = th_alloc_f64(s, (size_t)ola_len), *env = th_alloc_f64(s, (size_t)ola_len);
    double *fr = th_alloc_f64(s, (size_t)n);
    for (int64_t b = 0; b < c->batch; b++) {
        memset(ola, 0, (size_t)ola_len * sizeof(double));
        memset(env, 0, (size_t)ola_len * sizeof(double));
        for (int64_t t = 0; t < t_n; t++) {
            for (int64_t k = 0; k < n; k++) {
                double acc = 0;
                int64_t m = 0; /* (f*k) mod n */
                for (int64_t f = 0; f < f_n; f++) {
                    const float *src = z + ((b * f_n + f) * t_n + t) * 2;
                    const bool single = f == 0 || (n % 2 == 0 && f == n / 2);
                    if (single) acc += (double)src[0] * cs[m];
                    else acc += 2.0 * ((double)src[0] * cs[m] - (double)src[1] * sn[m]);
                    m += k;
                    if (m >= n) m -= n;
                }
                fr[k] = acc * scale;
            }
            for (int64_t k = 0; k < n; k++) {
                ola[t * c->hop + k] += fr[k] * st->w[k];
                env[t * c->hop + k] += st->w[k] * st->w[k];
            }
        }
        for (int64_t i = 0; i < c->len; i++) {
            const int64_t p = i + pad;
            y[b * c->len + i] = p < ola_len ? ola[p] / env[p] : 0.0;
        }
    }
    return y;
}

static const char *case_params(const stft_case *c, char *buf, size_t size) {
    snprintf(buf, size, "n_fft=%lld hop=%lld win=%lld%s center=%d norm=%d B=%lld L=%lld chunk=%lld",
             (long long)c->n_fft, (long long)c->hop, (long long)(c->win ? c->win : c->n_fft),
             c->window == WIN_RANDOM ? "(random)" : "(hann)", (int)c->center, (int)c->normalized,
             (long long)c->batch, (long long)c->len, (long long)c->chunk);
    return buf;
}

/* z [B, F, T, 2] */
static cdz_tensor spec_empty(th_suite *s, const stft_case *c, const stft_setup *st) {
    return th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){c->batch, st->bins, st->frames, 2});
}

/* ---------------------------------------------------------------- stft */

static void run_stft_case(th_suite *s, const stft_case *c, bool check_f64) {
    char params[200];
    if (!th_begin(s, "stft", "%s", case_params(c, params, sizeof params))) return;
    stft_setup st;
    setup_case(s, c, &st);
    cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){c->batch, c->len}, -1.f, 1.f);
    cdz_tensor z = spec_empty(s, c, &st);
    cdz_stft_plan *plan = NULL;
    if (!th_ok(s, "plan", cdz_stft_plan_create(s->cpu, &st.cfg, c->batch, c->len, &plan))) return;
    cdz_stft_info info;
    cdz_stft_plan_get_info(plan, &info);
    th_check(s, "frames", info.frames == st.frames && info.bins == st.bins,
             "plan T=%lld F=%lld, expected T=%lld F=%lld", (long long)info.frames, (long long)info.bins,
             (long long)st.frames, (long long)st.bins);
    th_ok(s, "cpu", cdz_stft(s->cpu, plan, &x, &z));
    if (check_f64) {
        double *ref = ref_stft(s, c, &st, (const float *)x.data);
        th_compare_f64(s, "cpu-vs-f64", &z, ref, 2e-6,
                       "fp32 FFT (FFTW) vs float64 DFT: ~log2(N) roundings of unit-size terms");
    } else {
        th_skip(s, "cpu-vs-f64", "O(N^2) reference too slow for this size");
    }
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_stft_plan *gplan = NULL;
        if (th_ok(s, "cuda plan", cdz_stft_plan_create(s->cuda, &st.cfg, c->batch, c->len, &gplan))) {
            cdz_tensor dx = th_to_cuda(s, &x), dz = th_cuda_like(s, &z), dz2 = th_cuda_like(s, &z);
            th_ok(s, "cuda", cdz_stft(s->cuda, gplan, &dx, &dz));
            th_compare(s, "cuda-vs-cpu", &dz, &z, 2e-6, "cuFFT vs FFTW: different fp32 FFT algorithms");
            th_ok(s, "cuda again", cdz_stft(s->cuda, gplan, &dx, &dz2));
            cdz_tensor h1 = th_to_host(s, &dz), h2 = th_to_host(s, &dz2);
            th_compare_bytes(s, "cuda deterministic", h1.data, h2.data, cdz_tensor_nbytes(&h1));
            cdz_ctx_sync(s->cuda);
        }
        cdz_stft_plan_destroy(gplan);
    }
    cdz_stft_plan_destroy(plan);
    th_end(s);
}

/* ---------------------------------------------------------------- istft */

static void run_istft_case(th_suite *s, const stft_case *c, bool check_f64) {
    char params[200];
    if (!th_begin(s, "istft", "%s", case_params(c, params, sizeof params))) return;
    stft_setup st;
    setup_case(s, c, &st);
    /* Random spectra (not Hermitian-consistent at DC/Nyquist: their imaginary parts must be
     * ignored, as torch does). */
    cdz_tensor z = th_rand(s, CDZ_DTYPE_F32, 4, (int64_t[]){c->batch, st.bins, st.frames, 2}, -1.f, 1.f);
    cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){c->batch, c->len});
    cdz_stft_plan *plan = NULL;
    if (!th_ok(s, "plan", cdz_stft_plan_create(s->cpu, &st.cfg, c->batch, c->len, &plan))) return;
    th_ok(s, "cpu", cdz_istft(s->cpu, plan, &z, &y));
    if (check_f64) {
        double *ref = ref_istft(s, c, &st, (const float *)z.data);
        th_compare_f64(s, "cpu-vs-f64", &y, ref, 2e-6,
                       "fp32 inverse FFT + overlap-add of <= N/H frames vs float64");
    } else {
        th_skip(s, "cpu-vs-f64", "O(N^2) reference too slow for this size");
    }
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_stft_plan *gplan = NULL;
        if (th_ok(s, "cuda plan", cdz_stft_plan_create(s->cuda, &st.cfg, c->batch, c->len, &gplan))) {
            cdz_tensor dz = th_to_cuda(s, &z), dy = th_cuda_like(s, &y), dy2 = th_cuda_like(s, &y);
            th_ok(s, "cuda", cdz_istft(s->cuda, gplan, &dz, &dy));
            th_compare(s, "cuda-vs-cpu", &dy, &y, 2e-6, "cuFFT vs FFTW: different fp32 FFT algorithms");
            th_ok(s, "cuda again", cdz_istft(s->cuda, gplan, &dz, &dy2));
            cdz_tensor h1 = th_to_host(s, &dy), h2 = th_to_host(s, &dy2);
            th_compare_bytes(s, "cuda deterministic", h1.data, h2.data, cdz_tensor_nbytes(&h1));
            cdz_ctx_sync(s->cuda);
        }
        cdz_stft_plan_destroy(gplan);
    }
    cdz_stft_plan_destroy(plan);
    th_end(s);
}

/* ---------------------------------------------------------------- round trip */

static void run_roundtrip_case(th_suite *s, const stft_case *c) {
    char params[200];
    if (!th_begin(s, "stft-roundtrip", "%s", case_params(c, params, sizeof params))) return;
    stft_setup st;
    setup_case(s, c, &st);
    cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){c->batch, c->len}, -1.f, 1.f);
    cdz_tensor z = spec_empty(s, c, &st);
    cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){c->batch, c->len});
    cdz_stft_plan *plan = NULL;
    if (!th_ok(s, "plan", cdz_stft_plan_create(s->cpu, &st.cfg, c->batch, c->len, &plan))) return;
    th_ok(s, "cpu stft", cdz_stft(s->cpu, plan, &x, &z));
    th_ok(s, "cpu istft", cdz_istft(s->cpu, plan, &z, &y));
    th_compare(s, "cpu istft(stft(x))", &y, &x, 1e-6, "exact inverse under NOLA; fp32 FFT pair");
    if (th_gpu(s, "cuda roundtrip")) {
        cdz_stft_plan *gplan = NULL;
        if (th_ok(s, "cuda plan", cdz_stft_plan_create(s->cuda, &st.cfg, c->batch, c->len, &gplan))) {
            cdz_tensor dx = th_to_cuda(s, &x), dz = th_cuda_like(s, &z), dy = th_cuda_like(s, &y);
            th_ok(s, "cuda stft", cdz_stft(s->cuda, gplan, &dx, &dz));
            th_ok(s, "cuda istft", cdz_istft(s->cuda, gplan, &dz, &dy));
            th_compare(s, "cuda istft(stft(x))", &dy, &x, 1e-6, "exact inverse under NOLA; fp32 FFT pair");
            cdz_ctx_sync(s->cuda);
        }
        cdz_stft_plan_destroy(gplan);
    }
    cdz_stft_plan_destroy(plan);
    th_end(s);
}

/* HTDemucs' real size (B*C = 4*2 signals of 347136 samples, 340 frames): CUDA vs CPU only,
 * so the CPU run is paid only where a GPU exists. */
static void run_htdemucs_case(th_suite *s) {
    const stft_case c = {4096, 1024, 0, true, true, WIN_HANN, 8, 347136, 0};
    char params[200];
    if (!th_begin(s, "stft-htdemucs", "%s", case_params(&c, params, sizeof params))) return;
    if (th_gpu(s, "cuda-vs-cpu")) {
        stft_setup st;
        setup_case(s, &c, &st);
        cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){4, 2, c.len}, -1.f, 1.f);
        cdz_tensor z = th_empty(s, CDZ_DTYPE_F32, 5, (int64_t[]){4, 2, st.bins, st.frames, 2});
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){4, 2, c.len});
        cdz_stft_plan *plan = NULL, *gplan = NULL;
        if (th_ok(s, "plan", cdz_stft_plan_create(s->cpu, &st.cfg, c.batch, c.len, &plan)) &&
            th_ok(s, "cuda plan", cdz_stft_plan_create(s->cuda, &st.cfg, c.batch, c.len, &gplan))) {
            cdz_stft_info info;
            cdz_stft_plan_get_info(gplan, &info);
            th_check(s, "cuda plan info", info.frames == 340 && info.bins == 2049,
                     "T=%lld F=%lld chunk=%lld workspace=%zu bytes", (long long)info.frames,
                     (long long)info.bins, (long long)info.chunk_frames, info.workspace_bytes);
            th_ok(s, "cpu stft", cdz_stft(s->cpu, plan, &x, &z));
            th_ok(s, "cpu istft", cdz_istft(s->cpu, plan, &z, &y));
            cdz_tensor dx = th_to_cuda(s, &x), dz = th_cuda_like(s, &z), dy = th_cuda_like(s, &y);
            th_ok(s, "cuda stft", cdz_stft(s->cuda, gplan, &dx, &dz));
            th_compare(s, "stft cuda-vs-cpu", &dz, &z, 2e-6, "cuFFT vs FFTW: different fp32 FFT algorithms");
            th_ok(s, "cuda istft", cdz_istft(s->cuda, gplan, &dz, &dy));
            th_compare(s, "istft cuda-vs-cpu", &dy, &y, 2e-6, "cuFFT vs FFTW: different fp32 FFT algorithms");
            th_compare(s, "cuda istft(stft(x))", &dy, &x, 1e-6, "exact inverse under NOLA; fp32 FFT pair");
            cdz_ctx_sync(s->cuda);
        }
        cdz_stft_plan_destroy(plan);
        cdz_stft_plan_destroy(gplan);
    }
    th_end(s);
}

/* ---------------------------------------------------------------- errors */

static void run_error_cases(th_suite *s) {
    if (!th_begin(s, "stft-errors", "plan, shape, dtype, NOLA, workspace")) return;
    const cdz_status INVALID = CDZ_STATUS_INVALID_ARGUMENT;
    cdz_stft_plan *p = NULL;
    cdz_stft_config base = {16, 4, 0, NULL, true, true, 0};
    cdz_stft_config cfg;

    cfg = base; cfg.n_fft = 0;
    th_expect_status(s, "n_fft 0", cdz_stft_plan_create(s->cpu, &cfg, 1, 64, &p), INVALID);
    cfg = base; cfg.hop_length = 0;
    th_expect_status(s, "hop 0", cdz_stft_plan_create(s->cpu, &cfg, 1, 64, &p), INVALID);
    cfg = base; cfg.hop_length = 17;
    th_expect_status(s, "hop > n_fft", cdz_stft_plan_create(s->cpu, &cfg, 1, 64, &p), INVALID);
    cfg = base; cfg.win_length = 17;
    th_expect_status(s, "window longer than n_fft", cdz_stft_plan_create(s->cpu, &cfg, 1, 64, &p), INVALID);
    cfg = base;
    th_expect_status(s, "center: length == n_fft/2 (reflect pad impossible)",
                     cdz_stft_plan_create(s->cpu, &cfg, 1, 8, &p), INVALID);
    cfg = base; cfg.center = false;
    th_expect_status(s, "no center: length < n_fft", cdz_stft_plan_create(s->cpu, &cfg, 1, 15, &p), INVALID);
    cfg = base;
    th_expect_status(s, "batch 0", cdz_stft_plan_create(s->cpu, &cfg, 0, 64, &p), INVALID);
    th_expect_status(s, "length 0", cdz_stft_plan_create(s->cpu, &cfg, 1, 0, &p), INVALID);
    cfg = base; cfg.max_chunk_frames = -1;
    th_expect_status(s, "negative chunk", cdz_stft_plan_create(s->cpu, &cfg, 1, 64, &p), INVALID);
    th_check(s, "no plan on failure", p == NULL, "out stays NULL");
    th_check(s, "num_frames too short", cdz_stft_num_frames(16, 4, 8, true) == 0 &&
             cdz_stft_num_frames(16, 4, 9, true) == 3 && cdz_stft_num_frames(16, 4, 15, false) == 0,
             "reflect padding needs length > n_fft/2");

    /* a 9-sample signal is shorter than n_fft but reflect padding (8) still works */
    cfg = base;
    if (th_ok(s, "plan B=3 L=9", cdz_stft_plan_create(s->cpu, &cfg, 3, 9, &p))) {
        cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){3, 9}, -1.f, 1.f);
        cdz_tensor z = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){3, 9, 3, 2});
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){3, 9});
        th_ok(s, "stft ok", cdz_stft(s->cpu, p, &x, &z));
        cdz_tensor xl = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){3, 10}, -1.f, 1.f);
        th_expect_status(s, "x wrong length", cdz_stft(s->cpu, p, &xl, &z), INVALID);
        cdz_tensor xb = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){2, 9}, -1.f, 1.f);
        th_expect_status(s, "x wrong batch", cdz_stft(s->cpu, p, &xb, &z), INVALID);
        cdz_tensor xh = th_rand(s, CDZ_DTYPE_F16, 2, (int64_t[]){3, 9}, -1.f, 1.f);
        th_expect_status(s, "x f16", cdz_stft(s->cpu, p, &xh, &z), INVALID);
        cdz_tensor zf = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){3, 8, 3, 2});
        th_expect_status(s, "z wrong F", cdz_stft(s->cpu, p, &x, &zf), INVALID);
        th_expect_status(s, "istft z wrong F", cdz_istft(s->cpu, p, &zf, &y), INVALID);
        cdz_tensor zt = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){3, 9, 4, 2});
        th_expect_status(s, "z wrong T", cdz_stft(s->cpu, p, &x, &zt), INVALID);
        th_expect_status(s, "istft z wrong T", cdz_istft(s->cpu, p, &zt, &y), INVALID);
        cdz_tensor zc = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){3, 9, 3});
        th_expect_status(s, "z without re/im dim", cdz_stft(s->cpu, p, &x, &zc), INVALID);
        cdz_tensor yl = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){3, 8});
        th_expect_status(s, "istft y wrong length", cdz_istft(s->cpu, p, &z, &yl), INVALID);
        th_expect_status(s, "istft null plan", cdz_istft(s->cpu, NULL, &z, &y), INVALID);
        if (th_gpu(s, "plan of another device")) {
            cdz_tensor dx = th_to_cuda(s, &x), dz = th_to_cuda(s, &z);
            th_expect_status(s, "cpu plan on the cuda context", cdz_stft(s->cuda, p, &dx, &dz), INVALID);
        }
        cdz_stft_plan_destroy(p);
        p = NULL;
    }

    /* NOLA: a non-centred periodic Hann starts at w[0] = 0, so sample 0 cannot be rebuilt */
    cfg = base; cfg.center = false;
    if (th_ok(s, "plan non-centred hann", cdz_stft_plan_create(s->cpu, &cfg, 1, 32, &p))) {
        cdz_stft_info info;
        cdz_stft_plan_get_info(p, &info);
        th_check(s, "info says NOLA fails", !info.istft_ok, "istft_ok=%d", (int)info.istft_ok);
        cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){1, 32}, -1.f, 1.f);
        cdz_tensor z = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 9, info.frames, 2});
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){1, 32});
        th_ok(s, "stft still fine", cdz_stft(s->cpu, p, &x, &z));
        th_expect_status(s, "istft refuses NOLA violation", cdz_istft(s->cpu, p, &z, &y), INVALID);
        cdz_stft_plan_destroy(p);
        p = NULL;
    }
    /* hop > win_length leaves gaps covered by no window */
    cfg = base; cfg.win_length = 4; cfg.hop_length = 8;
    if (th_ok(s, "plan hop > win", cdz_stft_plan_create(s->cpu, &cfg, 1, 64, &p))) {
        cdz_stft_info info;
        cdz_stft_plan_get_info(p, &info);
        th_check(s, "gaps fail NOLA", !info.istft_ok, "istft_ok=%d", (int)info.istft_ok);
        cdz_stft_plan_destroy(p);
        p = NULL;
    }

    /* workspace too small for one 4096-point frame */
    cdz_ctx *tiny = NULL;
    cdz_ctx_options opt = {CDZ_PRECISION_STRICT, 4096};
    if (th_ok(s, "tiny ctx", cdz_ctx_create((cdz_device){CDZ_DEVICE_CPU, 0}, NULL, &opt, &tiny))) {
        cfg = base; cfg.n_fft = 4096; cfg.hop_length = 1024;
        th_expect_status(s, "workspace too small", cdz_stft_plan_create(tiny, &cfg, 1, 5000, &p),
                         CDZ_STATUS_TOO_LARGE);
        cdz_ctx_destroy(tiny);
    }
    th_end(s);
}

void test_ops_stft(th_suite *s) {
    /* n_fft, hop, win, center, normalized, window, batch, len, chunk */
    static const stft_case cases[] = {
        {16, 4, 0, true, true, WIN_HANN, 3, 50, 0},      /* small, 3 signals */
        {16, 4, 0, true, true, WIN_HANN, 1, 9, 0},       /* length < n_fft, reflect still valid */
        {30, 7, 0, true, true, WIN_HANN, 1, 61, 0},      /* odd hop, length % hop != 0 */
        {15, 4, 0, true, false, WIN_HANN, 2, 23, 0},     /* odd n_fft: no Nyquist bin */
        {64, 16, 0, true, false, WIN_HANN, 3, 300, 5},   /* chunks of 5 frames cross rows */
        {32, 8, 20, true, true, WIN_RANDOM, 2, 97, 0},   /* caller window, centred in n_fft */
        {33, 5, 0, false, true, WIN_RANDOM, 2, 101, 4},  /* no center, odd sizes, chunked */
        {16, 14, 0, true, true, WIN_HANN, 1, 52, 0},     /* hop > n_fft/2: istft zero tail */
        {4096, 1024, 0, true, true, WIN_HANN, 1, 5000, 0}, /* HTDemucs parameters, 5 frames */
    };
    const size_t n_cases = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n_cases; i++) run_stft_case(s, &cases[i], true);
    for (size_t i = 0; i < n_cases; i++) run_istft_case(s, &cases[i], true);

    static const stft_case trips[] = {
        {16, 4, 0, true, true, WIN_HANN, 3, 50, 0},
        {30, 7, 0, true, true, WIN_HANN, 1, 61, 3},
        {15, 4, 0, true, false, WIN_HANN, 2, 23, 0},
        {33, 5, 0, false, true, WIN_RANDOM, 2, 33 + 5 * 13, 4}, /* L = N + k*H: frames reach the end */
        {32, 8, 20, true, true, WIN_RANDOM, 1, 97, 0},
        {4096, 1024, 0, true, true, WIN_HANN, 2, 12000, 7},
    };
    for (size_t i = 0; i < sizeof trips / sizeof trips[0]; i++) run_roundtrip_case(s, &trips[i]);
    run_htdemucs_case(s);
    run_error_cases(s);
}
