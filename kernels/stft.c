/*
 * stft.c: plan creation (window, NOLA verdict, chunking, FFTW plans), the op entries and
 * the CPU reference (FFTW single precision; plain loops for padding, windowing, overlap-add).
 */
#include "stft.h"

#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ctx.h"

#define STFT_MAX_N_FFT (INT64_C(1) << 24)   /* keeps N*F products and int FFT sizes safe */
#define STFT_CPU_DEFAULT_CHUNK 64           /* frames per FFTW batch: stays in cache */
#define STFT_CPU_ALIGN 64
#define STFT_NOLA_MIN 1e-11f                /* torch.istft's threshold */

/* FFTW's planner (create and destroy) is not thread-safe; execution with new arrays is. */
static pthread_mutex_t g_fftw_mutex = PTHREAD_MUTEX_INITIALIZER;

static size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

int64_t cdz_stft_num_frames(int64_t n_fft, int64_t hop_length, int64_t length, bool center) {
    if (n_fft < 1 || hop_length < 1 || length < 1) return 0;
    int64_t padded = length;
    if (center) {
        if (n_fft / 2 >= length) return 0; /* reflect padding needs pad < length */
        padded = length + 2 * (n_fft / 2);
    }
    if (padded < n_fft) return 0;
    return 1 + (padded - n_fft) / hop_length;
}

/* torch.hann_window(wl, periodic=True) in fp32: cos((float)n * (float)(2*pi/wl)) * -0.5 + 0.5. */
static void hann_periodic(float *w, int64_t wl) {
    const float step = (float)(2.0 * M_PI / (double)wl);
    for (int64_t n = 0; n < wl; n++) w[n] = 0.5f - 0.5f * cosf((float)n * step);
}

/* First frame covering padded position p (frames cover [t*H, t*H + N)). */
static inline int64_t first_frame(int64_t p, int64_t n_fft, int64_t hop) {
    return p < n_fft ? 0 : (p - n_fft) / hop + 1;
}

/* torch's window envelope at padded position p: sum of w^2 over covering frames, fp32. */
static float envelope_at(const cdz_stft_plan *pl, int64_t p) {
    int64_t ta = first_frame(p, pl->n_fft, pl->hop);
    int64_t tb = p / pl->hop < pl->frames - 1 ? p / pl->hop : pl->frames - 1;
    float env = 0.f;
    for (int64_t t = ta; t <= tb; t++) {
        float wk = pl->window[p - t * pl->hop];
        env += wk * wk;
    }
    return env;
}

/* NOLA over the range istft keeps, [pad, min(pad + L, ola_len)), as torch checks it. */
static void evaluate_nola(cdz_stft_plan *pl) {
    int64_t end = pl->pad + pl->length < pl->ola_len ? pl->pad + pl->length : pl->ola_len;
    pl->istft_ok = true;
    for (int64_t p = pl->pad; p < end; p++) {
        float env = envelope_at(pl, p);
        if (!(fabsf(env) >= STFT_NOLA_MIN)) {
            pl->istft_ok = false;
            snprintf(pl->nola_msg, sizeof pl->nola_msg,
                     "window envelope (sum of squared windows) is %g < 1e-11 at output sample %lld "
                     "(n_fft=%lld hop=%lld center=%d): the window fails NOLA, as torch.istft reports",
                     (double)env, (long long)(p - pl->pad), (long long)pl->n_fft, (long long)pl->hop,
                     (int)pl->center);
            return;
        }
    }
}

static cdz_status plan_init_cpu(cdz_ctx *ctx, cdz_stft_plan *pl, int64_t max_chunk) {
    const int64_t n = pl->n_fft, f = pl->bins, total = pl->batch * pl->frames;
    const size_t per_frame = (size_t)n * sizeof(float) + (size_t)f * 2 * sizeof(float);
    const size_t slack = 3 * STFT_CPU_ALIGN; /* base alignment + two rounded sections */
    int64_t chunk = max_chunk > 0 ? max_chunk : STFT_CPU_DEFAULT_CHUNK;
    if (chunk > total) chunk = total;
    if (ctx->workspace_bytes < slack + per_frame)
        return cdz_error_set(CDZ_STATUS_TOO_LARGE,
                             "stft plan: one frame of n_fft=%lld needs %zu bytes of workspace, "
                             "the context has %zu (raise cdz_ctx_options.workspace_bytes)",
                             (long long)n, slack + per_frame, ctx->workspace_bytes);
    int64_t fit = (int64_t)((ctx->workspace_bytes - slack) / per_frame);
    if (chunk > fit) chunk = fit;
    if (chunk > INT32_MAX) chunk = INT32_MAX;
    pl->chunk = chunk;
    pl->off_spec = align_up((size_t)chunk * (size_t)n * sizeof(float), STFT_CPU_ALIGN);
    pl->off_work = align_up(pl->off_spec + (size_t)chunk * (size_t)f * 2 * sizeof(float), STFT_CPU_ALIGN);
    pl->workspace_bytes = pl->off_work + STFT_CPU_ALIGN; /* + base alignment */

    /* Planning arrays only fix the alignment (FFTW_ESTIMATE does not touch them); calls
     * execute on 64-byte-aligned workspace arrays with the same strides. */
    float *re = fftwf_malloc((size_t)chunk * (size_t)n * sizeof(float));
    fftwf_complex *cx = fftwf_malloc((size_t)chunk * (size_t)f * sizeof(fftwf_complex));
    cdz_status st = CDZ_STATUS_OK;
    if (!re || !cx) {
        st = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "stft plan: no host memory for FFTW planning arrays");
    } else {
        int ni = (int)n;
        pthread_mutex_lock(&g_fftw_mutex);
        pl->fftw_r2c = fftwf_plan_many_dft_r2c(1, &ni, (int)chunk, re, NULL, 1, ni, cx, NULL, 1,
                                               (int)f, FFTW_ESTIMATE);
        pl->fftw_c2r = fftwf_plan_many_dft_c2r(1, &ni, (int)chunk, cx, NULL, 1, (int)f, re, NULL, 1,
                                               ni, FFTW_ESTIMATE);
        pthread_mutex_unlock(&g_fftw_mutex);
        if (!pl->fftw_r2c || !pl->fftw_c2r)
            st = cdz_error_set(CDZ_STATUS_INTERNAL, "stft plan: FFTW could not plan n_fft=%lld x %lld",
                               (long long)n, (long long)chunk);
    }
    fftwf_free(re);
    fftwf_free(cx);
    return st;
}

cdz_status cdz_stft_plan_create(cdz_ctx *ctx, const cdz_stft_config *cfg, int64_t batch,
                                int64_t length, cdz_stft_plan **out) {
    CDZ_REQUIRE(out != NULL, "stft plan: out is NULL");
    *out = NULL;
    CDZ_REQUIRE(ctx != NULL && cfg != NULL, "stft plan: ctx and cfg must not be NULL");
    const int64_t n = cfg->n_fft, hop = cfg->hop_length;
    const int64_t wl = cfg->win_length ? cfg->win_length : n;
    CDZ_REQUIRE(n >= 1 && n <= STFT_MAX_N_FFT, "stft plan: n_fft must be in [1, %lld] (got %lld)",
                (long long)STFT_MAX_N_FFT, (long long)n);
    CDZ_REQUIRE(hop >= 1 && hop <= n, "stft plan: hop_length must be in [1, n_fft=%lld] (got %lld)",
                (long long)n, (long long)hop);
    CDZ_REQUIRE(wl >= 1 && wl <= n, "stft plan: win_length must be in [1, n_fft=%lld] (got %lld)",
                (long long)n, (long long)wl);
    CDZ_REQUIRE(cfg->max_chunk_frames >= 0, "stft plan: max_chunk_frames must be >= 0 (got %lld)",
                (long long)cfg->max_chunk_frames);
    CDZ_REQUIRE(batch >= 1, "stft plan: batch must be >= 1 (got %lld)", (long long)batch);
    CDZ_REQUIRE(length >= 1, "stft plan: length must be >= 1 (got %lld)", (long long)length);
    if (cfg->center)
        CDZ_REQUIRE(n / 2 < length,
                    "stft plan: center=true reflect-pads n_fft/2=%lld samples, which needs length > "
                    "%lld (got %lld), as torch's reflect padding does",
                    (long long)(n / 2), (long long)(n / 2), (long long)length);
    else
        CDZ_REQUIRE(length >= n, "stft plan: center=false needs length >= n_fft=%lld (got %lld)",
                    (long long)n, (long long)length);
    CDZ_REQUIRE(length <= (INT64_C(1) << 40) && batch <= (INT64_C(1) << 40) / length,
                "stft plan: batch*length = %lld*%lld is too large", (long long)batch, (long long)length);
    const int64_t frames = cdz_stft_num_frames(n, hop, length, cfg->center);
    const int64_t bins = n / 2 + 1;
    CDZ_REQUIRE(frames >= 1 && batch * frames <= (INT64_C(1) << 40) / bins,
                "stft plan: batch*bins*frames = %lld*%lld*%lld is too large", (long long)batch,
                (long long)bins, (long long)frames);

    cdz_stft_plan *pl = calloc(1, sizeof *pl);
    if (!pl) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "stft plan: out of host memory");
    pl->device = ctx->device;
    pl->n_fft = n;
    pl->hop = hop;
    pl->win_length = wl;
    pl->batch = batch;
    pl->length = length;
    pl->bins = bins;
    pl->frames = frames;
    pl->center = cfg->center;
    pl->normalized = cfg->normalized;
    pl->pad = cfg->center ? n / 2 : 0;
    pl->ola_len = n + hop * (frames - 1);

    pl->window = calloc((size_t)n, sizeof(float));
    if (!pl->window) {
        free(pl);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "stft plan: out of host memory for the window");
    }
    /* torch centres a short window: zeros at [0, (N - Wl)/2) and after. */
    float *wdst = pl->window + (n - wl) / 2;
    if (cfg->window) {
        for (int64_t i = 0; i < wl; i++) {
            if (!isfinite(cfg->window[i])) {
                free(pl->window);
                free(pl);
                return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                                     "stft plan: window[%lld] is not finite", (long long)i);
            }
            wdst[i] = cfg->window[i];
        }
    } else {
        hann_periodic(wdst, wl);
    }
    evaluate_nola(pl);

    cdz_status st;
    if (cdz_ctx_is_cuda(ctx)) {
#ifdef CDZ_HAVE_CUDA
        st = cdz_stft_plan_init_cuda(ctx, pl, cfg->max_chunk_frames);
#else
        st = cdz_error_set(CDZ_STATUS_UNSUPPORTED, "stft plan: this build has no CUDA support");
#endif
    } else {
        st = plan_init_cpu(ctx, pl, cfg->max_chunk_frames);
    }
    if (st != CDZ_STATUS_OK) {
        cdz_stft_plan_destroy(pl); /* does not touch the error record */
        return st;
    }
    *out = pl;
    return CDZ_STATUS_OK;
}

void cdz_stft_plan_destroy(cdz_stft_plan *plan) {
    if (!plan) return;
    if (plan->fftw_r2c || plan->fftw_c2r) {
        pthread_mutex_lock(&g_fftw_mutex);
        if (plan->fftw_r2c) fftwf_destroy_plan((fftwf_plan)plan->fftw_r2c);
        if (plan->fftw_c2r) fftwf_destroy_plan((fftwf_plan)plan->fftw_c2r);
        pthread_mutex_unlock(&g_fftw_mutex);
    }
#ifdef CDZ_HAVE_CUDA
    cdz_stft_plan_fini_cuda(plan);
#endif
    free(plan->window);
    free(plan);
}

void cdz_stft_plan_get_info(const cdz_stft_plan *plan, cdz_stft_info *out) {
    memset(out, 0, sizeof *out);
    if (!plan) return;
    out->n_fft = plan->n_fft;
    out->hop_length = plan->hop;
    out->win_length = plan->win_length;
    out->batch = plan->batch;
    out->length = plan->length;
    out->bins = plan->bins;
    out->frames = plan->frames;
    out->chunk_frames = plan->chunk;
    out->workspace_bytes = plan->workspace_bytes;
    out->istft_ok = plan->istft_ok;
}

/* ---------------------------------------------------------------- entry checks */

static cdz_status check_plan(const cdz_ctx *ctx, const cdz_stft_plan *pl, const char *op) {
    CDZ_REQUIRE(ctx != NULL, "%s: ctx is NULL", op);
    CDZ_REQUIRE(pl != NULL, "%s: plan is NULL", op);
    if (pl->device.kind != ctx->device.kind ||
        (pl->device.kind == CDZ_DEVICE_CUDA && pl->device.index != ctx->device.index)) {
        char a[32], b[32];
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: plan was made for %s, the context is %s",
                             op, cdz_device_str(pl->device, a, sizeof a),
                             cdz_device_str(ctx->device, b, sizeof b));
    }
    return CDZ_STATUS_OK;
}

/* x / y: [..., L] with the leading dims multiplying to B. */
static cdz_status check_signal(const cdz_ctx *ctx, const cdz_stft_plan *pl, const char *op,
                               const char *name, const cdz_tensor *t) {
    CDZ_TRY(cdz_check_tensor(ctx, op, name, t, CDZ_DTYPE_F32, -1));
    char got[160];
    cdz_tensor_str(t, got, sizeof got);
    CDZ_REQUIRE(t->ndim >= 1, "%s: %s must have at least 1 dim (got %s)", op, name, got);
    int64_t lead = 1;
    for (int i = 0; i < t->ndim - 1; i++) lead *= t->shape[i];
    CDZ_REQUIRE(t->shape[t->ndim - 1] == pl->length,
                "%s: %s has length %lld (last dim), the plan was made for %lld (got %s)", op, name,
                (long long)t->shape[t->ndim - 1], (long long)pl->length, got);
    CDZ_REQUIRE(lead == pl->batch, "%s: %s holds %lld signals (leading dims), the plan was made for "
                "batch=%lld (got %s)", op, name, (long long)lead, (long long)pl->batch, got);
    return CDZ_STATUS_OK;
}

/* z: [..., F, T, 2] with the leading dims multiplying to B. */
static cdz_status check_spec(const cdz_ctx *ctx, const cdz_stft_plan *pl, const char *op,
                             const cdz_tensor *z) {
    CDZ_TRY(cdz_check_tensor(ctx, op, "z", z, CDZ_DTYPE_F32, -1));
    char got[160];
    cdz_tensor_str(z, got, sizeof got);
    CDZ_REQUIRE(z->ndim >= 3, "%s: z must be [..., F, T, 2] (got %s)", op, got);
    const int nd = z->ndim;
    CDZ_REQUIRE(z->shape[nd - 1] == 2, "%s: z's last dim must be 2 (re, im) (got %s)", op, got);
    CDZ_REQUIRE(z->shape[nd - 3] == pl->bins,
                "%s: z has %lld frequency bins (dim -3), n_fft=%lld gives n_fft/2+1 = %lld (got %s)",
                op, (long long)z->shape[nd - 3], (long long)pl->n_fft, (long long)pl->bins, got);
    CDZ_REQUIRE(z->shape[nd - 2] == pl->frames,
                "%s: z has %lld frames (dim -2), length=%lld with n_fft=%lld hop=%lld center=%d gives "
                "%lld (got %s)", op, (long long)z->shape[nd - 2], (long long)pl->length,
                (long long)pl->n_fft, (long long)pl->hop, (int)pl->center, (long long)pl->frames, got);
    int64_t lead = 1;
    for (int i = 0; i < nd - 3; i++) lead *= z->shape[i];
    CDZ_REQUIRE(lead == pl->batch, "%s: z holds %lld spectrograms (leading dims), the plan was made "
                "for batch=%lld (got %s)", op, (long long)lead, (long long)pl->batch, got);
    return CDZ_STATUS_OK;
}

cdz_status cdz_stft(cdz_ctx *ctx, const cdz_stft_plan *plan, const cdz_tensor *x, cdz_tensor *z) {
    CDZ_TRY(check_plan(ctx, plan, "stft"));
    CDZ_TRY(check_signal(ctx, plan, "stft", "x", x));
    CDZ_TRY(check_spec(ctx, plan, "stft", z));
    if (cdz_ctx_is_cuda(ctx)) {
#ifdef CDZ_HAVE_CUDA
        return cdz_stft_cuda(ctx, plan, x, z);
#else
        return cdz_error_set(CDZ_STATUS_UNSUPPORTED, "stft: this build has no CUDA support");
#endif
    }
    return cdz_stft_cpu(ctx, plan, x, z);
}

cdz_status cdz_istft(cdz_ctx *ctx, const cdz_stft_plan *plan, const cdz_tensor *z, cdz_tensor *y) {
    CDZ_TRY(check_plan(ctx, plan, "istft"));
    CDZ_REQUIRE(plan->istft_ok, "istft: %s", plan->nola_msg);
    CDZ_TRY(check_spec(ctx, plan, "istft", z));
    CDZ_TRY(check_signal(ctx, plan, "istft", "y", y));
    if (cdz_ctx_is_cuda(ctx)) {
#ifdef CDZ_HAVE_CUDA
        return cdz_istft_cuda(ctx, plan, z, y);
#else
        return cdz_error_set(CDZ_STATUS_UNSUPPORTED, "istft: this build has no CUDA support");
#endif
    }
    return cdz_istft_cpu(ctx, plan, z, y);
}

/* ---------------------------------------------------------------- CPU reference */

static cdz_status cpu_workspace(cdz_ctx *ctx, const cdz_stft_plan *pl, const char *op,
                                float **frames, fftwf_complex **spec) {
    void *ws;
    CDZ_TRY(cdz_ctx_workspace(ctx, pl->workspace_bytes, op, &ws));
    uint8_t *base = (uint8_t *)align_up((size_t)(uintptr_t)ws, STFT_CPU_ALIGN);
    *frames = (float *)base;
    *spec = (fftwf_complex *)(base + pl->off_spec);
    return CDZ_STATUS_OK;
}

static float forward_scale(const cdz_stft_plan *pl) {
    return pl->normalized ? (float)(1.0 / sqrt((double)pl->n_fft)) : 1.0f;
}

/* irfft scaling: torch uses norm "ortho" (normalized) or "backward" (1/N). */
static float inverse_scale(const cdz_stft_plan *pl) {
    return pl->normalized ? (float)(1.0 / sqrt((double)pl->n_fft)) : (float)(1.0 / (double)pl->n_fft);
}

cdz_status cdz_stft_cpu(cdz_ctx *ctx, const cdz_stft_plan *pl, const cdz_tensor *x, cdz_tensor *z) {
    float *frames;
    fftwf_complex *spec;
    CDZ_TRY(cpu_workspace(ctx, pl, "stft", &frames, &spec));
    const int64_t n = pl->n_fft, hop = pl->hop, f_n = pl->bins, t_n = pl->frames, len = pl->length;
    const int64_t total = pl->batch * t_n;
    const float *xs = (const float *)x->data;
    float *zs = (float *)z->data;
    const float *w = pl->window;
    const float scale = forward_scale(pl);

    for (int64_t g0 = 0; g0 < total; g0 += pl->chunk) {
        const int64_t g1 = g0 + pl->chunk < total ? g0 + pl->chunk : total;
        for (int64_t c = 0; c < pl->chunk; c++) {
            float *fr = frames + c * n;
            const int64_t g = g0 + c;
            if (g >= g1) { /* the fixed-size FFT batch runs past the last frame */
                memset(fr, 0, (size_t)n * sizeof(float));
                continue;
            }
            const float *xb = xs + (g / t_n) * len;
            const int64_t t = g % t_n;
            for (int64_t k = 0; k < n; k++) {
                int64_t i = t * hop + k - pl->pad; /* index into x, reflected at both ends */
                if (i < 0) i = -i;
                if (i >= len) i = 2 * (len - 1) - i;
                fr[k] = xb[i] * w[k];
            }
        }
        fftwf_execute_dft_r2c((fftwf_plan)pl->fftw_r2c, frames, spec);
        for (int64_t g = g0; g < g1; g++) {
            const int64_t b = g / t_n, t = g % t_n;
            const fftwf_complex *sp = spec + (g - g0) * f_n;
            for (int64_t f = 0; f < f_n; f++) {
                float *dst = zs + ((b * f_n + f) * t_n + t) * 2;
                dst[0] = sp[f][0] * scale;
                dst[1] = sp[f][1] * scale;
            }
        }
    }
    return CDZ_STATUS_OK;
}

cdz_status cdz_istft_cpu(cdz_ctx *ctx, const cdz_stft_plan *pl, const cdz_tensor *z, cdz_tensor *y) {
    float *frames;
    fftwf_complex *spec;
    CDZ_TRY(cpu_workspace(ctx, pl, "istft", &frames, &spec));
    const int64_t n = pl->n_fft, hop = pl->hop, f_n = pl->bins, t_n = pl->frames, len = pl->length;
    const int64_t total = pl->batch * t_n;
    const float *zs = (const float *)z->data;
    float *ys = (float *)y->data;
    const float *w = pl->window;
    const float scale = inverse_scale(pl);
    const int64_t nyquist = n % 2 == 0 ? n / 2 : -1;

    memset(ys, 0, (size_t)(pl->batch * len) * sizeof(float));
    for (int64_t g0 = 0; g0 < total; g0 += pl->chunk) {
        const int64_t g1 = g0 + pl->chunk < total ? g0 + pl->chunk : total;
        for (int64_t c = 0; c < pl->chunk; c++) {
            fftwf_complex *sp = spec + c * f_n;
            const int64_t g = g0 + c;
            if (g >= g1) {
                memset(sp, 0, (size_t)f_n * sizeof(fftwf_complex));
                continue;
            }
            const int64_t b = g / t_n, t = g % t_n;
            for (int64_t f = 0; f < f_n; f++) {
                const float *src = zs + ((b * f_n + f) * t_n + t) * 2;
                sp[f][0] = src[0] * scale;
                /* a real signal has no imaginary part at DC / Nyquist: C2R ignores it */
                sp[f][1] = (f == 0 || f == nyquist) ? 0.f : src[1] * scale;
            }
        }
        fftwf_execute_dft_c2r((fftwf_plan)pl->fftw_c2r, spec, frames);

        /* Overlap-add as a gather over this chunk's frames of each touched row. */
        for (int64_t b = g0 / t_n; b <= (g1 - 1) / t_n; b++) {
            const int64_t tl = g0 - b * t_n > 0 ? g0 - b * t_n : 0;
            const int64_t th = g1 - b * t_n < t_n ? g1 - b * t_n : t_n;
            int64_t n_lo = tl * hop - pl->pad, n_hi = (th - 1) * hop + n - pl->pad;
            if (n_lo < 0) n_lo = 0;
            if (n_hi > len) n_hi = len;
            const int64_t row = b * t_n - g0; /* frame t of row b is chunk slot row + t */
            for (int64_t i = n_lo; i < n_hi; i++) {
                const int64_t p = i + pl->pad;
                int64_t ta = first_frame(p, n, hop), tb = p / hop;
                if (ta < tl) ta = tl;
                if (tb > th - 1) tb = th - 1;
                if (ta > tb) continue;
                float acc = 0.f;
                for (int64_t t = ta; t <= tb; t++) {
                    const int64_t k = p - t * hop;
                    acc += frames[(row + t) * n + k] * w[k];
                }
                ys[b * len + i] += acc;
            }
        }
    }
    /* Divide by the window envelope; past the frames' reach torch pads with zeros. */
    for (int64_t i = 0; i < len; i++) {
        const int64_t p = i + pl->pad;
        if (p >= pl->ola_len) {
            for (int64_t b = 0; b < pl->batch; b++) ys[b * len + i] = 0.f;
            continue;
        }
        const float env = envelope_at(pl, p);
        for (int64_t b = 0; b < pl->batch; b++) ys[b * len + i] /= env;
    }
    return CDZ_STATUS_OK;
}
