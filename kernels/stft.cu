/*
 * stft.cu: CUDA STFT / iSTFT. cuFFT does the batched R2C / C2R transforms; own kernels do
 * reflect padding + windowing into frames, the [frame, bin] <-> [bin, frame] transposes with
 * scaling, and the overlap-add as a gather (no atomics) followed by the envelope division.
 * All scratch (frames, spectra, cuFFT work area) lives in the context workspace.
 */
#include <cufft.h>
#include <math.h>
#include <stdio.h>

#include "check.h"
#include "ctx.h"
#include "stft.h"

#define STFT_ALIGN 256
#define STFT_TILE 32
#define STFT_TILE_ROWS 8
#define STFT_MAX_CHUNK (INT64_C(1) << 20) /* keeps the transpose grid's y dim < 65536 */

static size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static unsigned grid_for(int64_t n, int threads, int sm_count) {
    int64_t blocks = ceil_div(n, threads);
    int64_t cap = (int64_t)(sm_count > 0 ? sm_count : 132) * 32;
    if (blocks > cap) blocks = cap; /* grid-stride beyond that */
    return (unsigned)(blocks < 1 ? 1 : blocks);
}

/* ---------------------------------------------------------------- plans */

static void destroy_cufft(cdz_stft_plan *pl) {
    if (pl->have_cufft_r2c) cufftDestroy(pl->cufft_r2c);
    if (pl->have_cufft_c2r) cufftDestroy(pl->cufft_c2r);
    pl->have_cufft_r2c = pl->have_cufft_c2r = false;
}

static cdz_status make_cufft(cdz_stft_plan *pl, int64_t chunk, size_t *work) {
    long long n = (long long)pl->n_fft, f = (long long)pl->bins, c = (long long)chunk;
    size_t w_r2c = 0, w_c2r = 0;
    cufftHandle h;
    CDZ_CUFFT_CHECK(cufftCreate(&h));
    pl->cufft_r2c = h;
    pl->have_cufft_r2c = true;
    CDZ_CUFFT_CHECK(cufftSetAutoAllocation(pl->cufft_r2c, 0));
    CDZ_CUFFT_CHECK(cufftMakePlanMany64(pl->cufft_r2c, 1, &n, NULL, 1, n, NULL, 1, f, CUFFT_R2C, c,
                                        &w_r2c));
    CDZ_CUFFT_CHECK(cufftCreate(&h));
    pl->cufft_c2r = h;
    pl->have_cufft_c2r = true;
    CDZ_CUFFT_CHECK(cufftSetAutoAllocation(pl->cufft_c2r, 0));
    CDZ_CUFFT_CHECK(cufftMakePlanMany64(pl->cufft_c2r, 1, &n, NULL, 1, f, NULL, 1, n, CUFFT_C2R, c,
                                        &w_c2r));
    *work = w_r2c > w_c2r ? w_r2c : w_c2r;
    return CDZ_STATUS_OK;
}

extern "C" cdz_status cdz_stft_plan_init_cuda(cdz_ctx *ctx, cdz_stft_plan *pl, int64_t max_chunk) {
    CDZ_CUDA_CHECK(cudaSetDevice(ctx->device.index)); /* cuFFT plans bind the current device */
    if (!ctx->arena)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "stft plan: the CUDA context has no arena");
    pl->arena = ctx->arena;
    void *wd = NULL;
    CDZ_TRY(cdz_arena_alloc(ctx->arena, (size_t)pl->n_fft * sizeof(float), STFT_ALIGN, "stft window", &wd));
    pl->window_dev = (float *)wd;
    CDZ_TRY(cdz_copy_to_device(ctx, pl->window_dev, pl->window, (size_t)pl->n_fft * sizeof(float)));
    CDZ_TRY(cdz_ctx_sync(ctx));

    const int64_t total = pl->batch * pl->frames;
    const size_t per_frame = (size_t)pl->n_fft * sizeof(float) + (size_t)pl->bins * sizeof(cufftComplex);
    int64_t chunk = max_chunk > 0 && max_chunk < total ? max_chunk : total;
    if (chunk > STFT_MAX_CHUNK) chunk = STFT_MAX_CHUNK;
    int64_t fit = (int64_t)(ctx->workspace_bytes / per_frame);
    if (chunk > fit) chunk = fit;
    /* Shrink until frames + spectra + cuFFT's work area fit the workspace. */
    while (chunk >= 1) {
        size_t work = 0;
        CDZ_TRY(make_cufft(pl, chunk, &work));
        size_t off_spec = align_up((size_t)chunk * (size_t)pl->n_fft * sizeof(float), STFT_ALIGN);
        size_t off_work = align_up(off_spec + (size_t)chunk * (size_t)pl->bins * sizeof(cufftComplex),
                                   STFT_ALIGN);
        size_t need = off_work + work;
        if (need <= ctx->workspace_bytes) {
            pl->chunk = chunk;
            pl->off_spec = off_spec;
            pl->off_work = off_work;
            pl->workspace_bytes = need;
            return CDZ_STATUS_OK;
        }
        destroy_cufft(pl);
        int64_t next = (int64_t)((double)chunk * (double)ctx->workspace_bytes / (double)need);
        chunk = next < chunk ? next : chunk - 1;
    }
    return cdz_error_set(CDZ_STATUS_TOO_LARGE,
                         "stft plan: one frame of n_fft=%lld with its cuFFT work area does not fit "
                         "the context's %zu-byte workspace (raise cdz_ctx_options.workspace_bytes)",
                         (long long)pl->n_fft, ctx->workspace_bytes);
}

extern "C" void cdz_stft_plan_fini_cuda(cdz_stft_plan *pl) {
    destroy_cufft(pl);
    if (pl->window_dev && pl->arena) cdz_arena_free(pl->arena, pl->window_dev);
    pl->window_dev = NULL;
}

/* ---------------------------------------------------------------- kernels */

struct stft_geom {
    int64_t n, hop, bins, frames, len, pad, ola_len;
};

static stft_geom geom_of(const cdz_stft_plan *pl) {
    stft_geom g;
    g.n = pl->n_fft;
    g.hop = pl->hop;
    g.bins = pl->bins;
    g.frames = pl->frames;
    g.len = pl->length;
    g.pad = pl->pad;
    g.ola_len = pl->ola_len;
    return g;
}

/* frames[c][k] = x[b][reflect(t*H + k - pad)] * w[k] for chunk slot c (frame g0 + c); slots
 * past the last frame are zero (the FFT batch has a fixed size). */
static __global__ void stft_frames_kernel(const float *__restrict__ x, const float *__restrict__ w,
                                          float *__restrict__ frames, stft_geom g, int64_t g0,
                                          int64_t nvalid, int64_t count) {
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < count;
         idx += (int64_t)gridDim.x * blockDim.x) {
        const int64_t c = idx / g.n, k = idx - c * g.n;
        float v = 0.f;
        if (c < nvalid) {
            const int64_t fr = g0 + c, b = fr / g.frames, t = fr - b * g.frames;
            int64_t i = t * g.hop + k - g.pad;
            if (i < 0) i = -i;
            if (i >= g.len) i = 2 * (g.len - 1) - i;
            v = x[b * g.len + i] * w[k];
        }
        frames[idx] = v;
    }
}

/* spec [slot][bin] -> z [b][bin][t] (x scale), through a shared tile so both sides are
 * coalesced. blockIdx.x: bin tile, blockIdx.y: slot tile. */
static __global__ void stft_scatter_kernel(const float2 *__restrict__ spec, float2 *__restrict__ z,
                                           stft_geom g, int64_t g0, int64_t nvalid, float scale) {
    __shared__ float2 tile[STFT_TILE][STFT_TILE + 1];
    const int64_t f0 = (int64_t)blockIdx.x * STFT_TILE, c0 = (int64_t)blockIdx.y * STFT_TILE;
    for (int j = threadIdx.y; j < STFT_TILE; j += STFT_TILE_ROWS) {
        const int64_t c = c0 + j, f = f0 + threadIdx.x;
        if (c < nvalid && f < g.bins) tile[j][threadIdx.x] = spec[c * g.bins + f];
    }
    __syncthreads();
    for (int j = threadIdx.y; j < STFT_TILE; j += STFT_TILE_ROWS) {
        const int64_t c = c0 + threadIdx.x, f = f0 + j;
        if (c < nvalid && f < g.bins) {
            const int64_t fr = g0 + c, b = fr / g.frames, t = fr - b * g.frames;
            float2 v = tile[threadIdx.x][j];
            v.x *= scale;
            v.y *= scale;
            z[(b * g.bins + f) * g.frames + t] = v;
        }
    }
}

/* z [b][bin][t] -> spec [slot][bin] (x scale), zeroing the imaginary parts of DC and the
 * Nyquist bin (C2R ignores them; explicit zeros make that independent of the library) and
 * the slots past the last frame. blockIdx.x: bin tile, blockIdx.y: slot tile. */
static __global__ void istft_gather_kernel(const float2 *__restrict__ z, float2 *__restrict__ spec,
                                           stft_geom g, int64_t g0, int64_t nvalid, int64_t chunk,
                                           float scale) {
    __shared__ float2 tile[STFT_TILE][STFT_TILE + 1];
    const int64_t f0 = (int64_t)blockIdx.x * STFT_TILE, c0 = (int64_t)blockIdx.y * STFT_TILE;
    const int64_t nyquist = g.n % 2 == 0 ? g.n / 2 : -1;
    for (int j = threadIdx.y; j < STFT_TILE; j += STFT_TILE_ROWS) {
        const int64_t c = c0 + threadIdx.x, f = f0 + j;
        float2 v = make_float2(0.f, 0.f);
        if (c < nvalid && f < g.bins) {
            const int64_t fr = g0 + c, b = fr / g.frames, t = fr - b * g.frames;
            v = z[(b * g.bins + f) * g.frames + t];
            v.x *= scale;
            v.y = (f == 0 || f == nyquist) ? 0.f : v.y * scale;
        }
        tile[threadIdx.x][j] = v;
    }
    __syncthreads();
    for (int j = threadIdx.y; j < STFT_TILE; j += STFT_TILE_ROWS) {
        const int64_t c = c0 + j, f = f0 + threadIdx.x;
        if (c < chunk && f < g.bins) spec[c * g.bins + f] = tile[j][threadIdx.x];
    }
}

/* y[b][i] += sum over this chunk's frames t of row b covering p = i + pad of
 * frames[slot(b, t)][p - t*H] * w[p - t*H], ascending t. Threads cover the flat range
 * [q_lo, q_hi) of b*L + i touched by the chunk. */
static __global__ void istft_ola_kernel(const float *__restrict__ frames, const float *__restrict__ w,
                                        float *__restrict__ y, stft_geom g, int64_t g0, int64_t g1,
                                        int64_t q_lo, int64_t q_hi) {
    for (int64_t q = q_lo + (int64_t)blockIdx.x * blockDim.x + threadIdx.x; q < q_hi;
         q += (int64_t)gridDim.x * blockDim.x) {
        const int64_t b = q / g.len, i = q - b * g.len, p = i + g.pad;
        const int64_t row = b * g.frames - g0;             /* chunk slot of frame 0 of row b */
        const int64_t tl = row < 0 ? -row : 0;              /* this chunk's frames of row b */
        const int64_t th = g1 - b * g.frames < g.frames ? g1 - b * g.frames : g.frames;
        int64_t ta = p < g.n ? 0 : (p - g.n) / g.hop + 1, tb = p / g.hop;
        if (ta < tl) ta = tl;
        if (tb > th - 1) tb = th - 1;
        if (ta > tb) continue;
        float acc = 0.f;
        for (int64_t t = ta; t <= tb; t++) {
            const int64_t k = p - t * g.hop;
            acc += frames[(row + t) * g.n + k] * w[k];
        }
        y[q] += acc;
    }
}

/* y /= window envelope (sum of w^2 over all covering frames, ascending t, fp32, as the host
 * NOLA check computes it); zero past the frames' reach. */
static __global__ void istft_env_kernel(const float *__restrict__ w, float *__restrict__ y,
                                        stft_geom g, int64_t count) {
    for (int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; q < count;
         q += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = q % g.len, p = i + g.pad;
        if (p >= g.ola_len) {
            y[q] = 0.f;
            continue;
        }
        const int64_t ta = p < g.n ? 0 : (p - g.n) / g.hop + 1;
        const int64_t tb = p / g.hop < g.frames - 1 ? p / g.hop : g.frames - 1;
        float env = 0.f;
        for (int64_t t = ta; t <= tb; t++) {
            const float wk = w[p - t * g.hop];
            env += wk * wk;
        }
        y[q] = y[q] / env;
    }
}

/* ---------------------------------------------------------------- launchers */

struct stft_scratch {
    float *frames;
    cufftComplex *spec;
    void *work;
};

static cdz_status get_scratch(cdz_ctx *ctx, const cdz_stft_plan *pl, const char *op, stft_scratch *s) {
    void *ws;
    CDZ_TRY(cdz_ctx_workspace(ctx, pl->workspace_bytes, op, &ws));
    if ((uintptr_t)ws % STFT_ALIGN != 0)
        return cdz_error_set(CDZ_STATUS_INTERNAL, "%s: context workspace is not %d-byte aligned", op,
                             STFT_ALIGN);
    s->frames = (float *)ws;
    s->spec = (cufftComplex *)((char *)ws + pl->off_spec);
    s->work = (char *)ws + pl->off_work;
    return CDZ_STATUS_OK;
}

extern "C" cdz_status cdz_stft_cuda(cdz_ctx *ctx, const cdz_stft_plan *pl, const cdz_tensor *x,
                                    cdz_tensor *z) {
    stft_scratch s = {NULL, NULL, NULL};
    CDZ_TRY(get_scratch(ctx, pl, "stft", &s));
    CDZ_CUFFT_CHECK(cufftSetStream(pl->cufft_r2c, ctx->stream));
    CDZ_CUFFT_CHECK(cufftSetWorkArea(pl->cufft_r2c, s.work));
    const stft_geom g = geom_of(pl);
    const int64_t total = pl->batch * pl->frames, chunk = pl->chunk;
    const float scale = pl->normalized ? (float)(1.0 / sqrt((double)pl->n_fft)) : 1.0f;
    const dim3 tblock(STFT_TILE, STFT_TILE_ROWS);
    for (int64_t g0 = 0; g0 < total; g0 += chunk) {
        const int64_t nvalid = total - g0 < chunk ? total - g0 : chunk;
        const int64_t count = chunk * pl->n_fft;
        stft_frames_kernel<<<grid_for(count, 256, ctx->sm_count), 256, 0, ctx->stream>>>(
            (const float *)x->data, pl->window_dev, s.frames, g, g0, nvalid, count);
        CDZ_LAUNCH_CHECK(ctx);
        CDZ_CUFFT_CHECK(cufftExecR2C(pl->cufft_r2c, s.frames, s.spec));
        const dim3 tgrid((unsigned)ceil_div(pl->bins, STFT_TILE), (unsigned)ceil_div(nvalid, STFT_TILE));
        stft_scatter_kernel<<<tgrid, tblock, 0, ctx->stream>>>((const float2 *)s.spec, (float2 *)z->data,
                                                              g, g0, nvalid, scale);
        CDZ_LAUNCH_CHECK(ctx);
    }
    return CDZ_STATUS_OK;
}

extern "C" cdz_status cdz_istft_cuda(cdz_ctx *ctx, const cdz_stft_plan *pl, const cdz_tensor *z,
                                     cdz_tensor *y) {
    stft_scratch s = {NULL, NULL, NULL};
    CDZ_TRY(get_scratch(ctx, pl, "istft", &s));
    CDZ_CUFFT_CHECK(cufftSetStream(pl->cufft_c2r, ctx->stream));
    CDZ_CUFFT_CHECK(cufftSetWorkArea(pl->cufft_c2r, s.work));
    const stft_geom g = geom_of(pl);
    const int64_t total = pl->batch * pl->frames, chunk = pl->chunk, len = pl->length;
    const int64_t ysize = pl->batch * len;
    const float scale = pl->normalized ? (float)(1.0 / sqrt((double)pl->n_fft))
                                       : (float)(1.0 / (double)pl->n_fft);
    const dim3 tblock(STFT_TILE, STFT_TILE_ROWS);
    float *yd = (float *)y->data;
    CDZ_CUDA_CHECK(cudaMemsetAsync(yd, 0, (size_t)ysize * sizeof(float), ctx->stream));
    for (int64_t g0 = 0; g0 < total; g0 += chunk) {
        const int64_t g1 = total - g0 < chunk ? total : g0 + chunk, nvalid = g1 - g0;
        const dim3 tgrid((unsigned)ceil_div(pl->bins, STFT_TILE), (unsigned)ceil_div(chunk, STFT_TILE));
        istft_gather_kernel<<<tgrid, tblock, 0, ctx->stream>>>((const float2 *)z->data, (float2 *)s.spec,
                                                              g, g0, nvalid, chunk, scale);
        CDZ_LAUNCH_CHECK(ctx);
        CDZ_CUFFT_CHECK(cufftExecC2R(pl->cufft_c2r, s.spec, s.frames));
        /* Output samples this chunk touches: from the first frame's start in its row to the
         * last frame's end in its row, clipped to [0, L) (flat over b*L + i). */
        const int64_t b_lo = g0 / pl->frames, b_hi = (g1 - 1) / pl->frames;
        int64_t i_lo = (g0 - b_lo * pl->frames) * pl->hop - pl->pad;
        int64_t i_hi = (g1 - 1 - b_hi * pl->frames) * pl->hop + pl->n_fft - pl->pad;
        i_lo = i_lo < 0 ? 0 : (i_lo > len ? len : i_lo);
        i_hi = i_hi > len ? len : i_hi;
        const int64_t q_lo = b_lo * len + i_lo, q_hi = b_hi * len + i_hi;
        if (q_hi > q_lo) {
            istft_ola_kernel<<<grid_for(q_hi - q_lo, 256, ctx->sm_count), 256, 0, ctx->stream>>>(
                s.frames, pl->window_dev, yd, g, g0, g1, q_lo, q_hi);
            CDZ_LAUNCH_CHECK(ctx);
        }
    }
    istft_env_kernel<<<grid_for(ysize, 256, ctx->sm_count), 256, 0, ctx->stream>>>(pl->window_dev, yd,
                                                                                  g, ysize);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}
