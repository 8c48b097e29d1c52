/*
 * stft.h: short-time Fourier transform and its inverse, matching torch.stft / torch.istft
 * as HTDemucs uses them (demucs/spec.py: n_fft 4096, hop 1024, periodic Hann, center,
 * reflect padding, normalized, onesided).
 *
 * Notation: N = n_fft, H = hop_length, Wl = win_length <= N, F = N/2 + 1 bins (onesided),
 * L = signal length, B = batch (independent signals), P = N/2 (integer division).
 *
 * Window: w[k] for k < N is the caller's window (or periodic Hann of Wl points) placed at
 *   offset (N - Wl)/2 and zero elsewhere, as torch pads a short window. Hann is computed
 *   in fp32 the way torch.hann_window(Wl) does: 0.5 - 0.5*cos((float)n * (float)(2*pi/Wl)).
 *
 * cdz_stft  = torch.view_as_real(torch.stft(x, N, H, Wl, window, center, pad_mode='reflect',
 *             normalized, onesided=True, return_complex=True)):
 *   x [B, L] f32  ->  z [B, F, T, 2] f32 (re, im interleaved)
 *   center: xp = reflect_pad(x, P, P) (torch F.pad 'reflect': needs P < L), else xp = x.
 *   T = 1 + (len(xp) - N) / H  (floor; cdz_stft_num_frames).
 *   z[b, f, t] = s * sum_{k<N} xp[b, t*H + k] * w[k] * exp(-2*pi*i*f*k/N),
 *   s = N^-1/2 when normalized (torch: frame_length^-0.5), else 1.
 *
 * cdz_istft = torch.istft(z, N, H, Wl, window, center, normalized, onesided=True, length=L):
 *   z [B, F, T, 2] f32  ->  y [B, L] f32, with T the plan's frame count for L.
 *   frame[t][k] = irfft_N(z[b, :, t])[k] * si * w[k], si = N^-1/2 (normalized) or 1/N, where
 *     the inverse treats the spectrum as Hermitian: the imaginary parts of bin 0 and (N even)
 *     bin N/2 are ignored (set to zero), as torch/pocketfft/cuFFT C2R do.
 *   ola[p]  = sum_t frame[t][p - t*H],  env[p] = sum_t w[p - t*H]^2   (fp32, ascending t)
 *   y[b, n] = ola[n + start] / env[n + start], start = P if center else 0, for
 *     n + start < N + H*(T-1); samples past that end are 0 (torch pads the tail with zeros).
 *   NOLA: torch raises when min |env| < 1e-11 over the kept range. The plan evaluates env on
 *   the host when it is created; cdz_istft then fails with INVALID_ARGUMENT naming the
 *   position (e.g. non-centred Hann, whose w[0] = 0; or H > Wl). cdz_stft is unaffected.
 *
 * Plans: made once (model load) for one context's device, a config, B and L; they hold the
 *   FFTW (CPU) or cuFFT (CUDA) plans, the window, and the frame-chunk size. Frames are
 *   transformed `chunk` at a time through the context's workspace (frames + spectra + cuFFT
 *   work area), so scratch use is bounded and known at creation (TOO_LARGE if even one frame
 *   does not fit). A CPU plan may be shared by threads with their own contexts; a CUDA plan
 *   is used with one context (stream) at a time, like the context itself.
 *   Creation plans FFTW under a process-wide mutex (its planner is not thread-safe) with
 *   FFTW_ESTIMATE; CUDA plans keep the padded window in arena memory of the context and use
 *   cuFFT without auto-allocation (its work area lives in the context workspace).
 *
 * Numerics: fp32 only (the separation research keeps STFT fp32 in every precision mode).
 *   Overlap-add is a gather (each output sample sums its frames in ascending order; with
 *   chunking, per-chunk partial sums are added in chunk order): deterministic, no atomics.
 *
 * x, y: any ndim >= 1 with the last dim L and the product of the others B (e.g. [B, C, L]).
 * z: ndim >= 3, last dims [F, T, 2], product of the leading dims B. All contiguous.
 *
 * defines: cdz_stft_config, cdz_stft_plan, cdz_stft_info, cdz_stft_num_frames,
 *          cdz_stft_plan_create, cdz_stft_plan_destroy, cdz_stft_plan_get_info,
 *          cdz_stft, cdz_istft (+ _cpu, _cuda), struct cdz_stft_plan (internal),
 *          cdz_stft_plan_init_cuda, cdz_stft_plan_fini_cuda (internal, for stft.cu)
 */
#ifndef CDZ_KERNELS_STFT_H
#define CDZ_KERNELS_STFT_H

#include "cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cdz_stft_config {
    int64_t n_fft;            /* N >= 1 */
    int64_t hop_length;       /* 1 <= H <= N */
    int64_t win_length;       /* 0 = N; else 1 <= Wl <= N */
    const float *window;      /* host, Wl values, copied; NULL = periodic Hann(Wl). Note:
                                 torch's window=None is rectangular: pass ones for that. */
    bool center;              /* reflect-pad P = N/2 samples on both sides */
    bool normalized;          /* scale by N^-1/2 both ways (torch normalized=True) */
    int64_t max_chunk_frames; /* frames per FFT batch; 0 = as many as the workspace holds
                                 (CUDA) or up to 64 (CPU, for cache locality) */
} cdz_stft_config;

typedef struct cdz_stft_plan cdz_stft_plan;

typedef struct cdz_stft_info {
    int64_t n_fft, hop_length, win_length, batch, length;
    int64_t bins;            /* F = N/2 + 1 */
    int64_t frames;          /* T */
    int64_t chunk_frames;    /* frames per FFT batch */
    size_t workspace_bytes;  /* context workspace used by one call (<= ctx workspace) */
    bool istft_ok;           /* false when the window envelope fails NOLA for istft */
} cdz_stft_info;

/* Frames of torch.stft for a signal of `length`; 0 when the signal is too short (center:
 * reflect padding needs length > n_fft/2; else length >= n_fft) or arguments are invalid. */
int64_t cdz_stft_num_frames(int64_t n_fft, int64_t hop_length, int64_t length, bool center);

/* Validate cfg / batch / length (INVALID_ARGUMENT naming the field), compute the window,
 * the NOLA verdict and the chunk size, plan the FFTs for ctx's device. Synchronous. */
cdz_status cdz_stft_plan_create(cdz_ctx *ctx, const cdz_stft_config *cfg, int64_t batch,
                                int64_t length, cdz_stft_plan **out);
/* Frees everything the plan holds; NULL is ignored. Work queued with it must be finished
 * (call cdz_ctx_sync first on CUDA). */
void cdz_stft_plan_destroy(cdz_stft_plan *plan);
void cdz_stft_plan_get_info(const cdz_stft_plan *plan, cdz_stft_info *out);

/* Entries: check the plan belongs to ctx's device kind, shapes against the plan, dtype f32,
 * contiguity; then dispatch. Asynchronous on CUDA (stream-ordered use of the workspace). */
cdz_status cdz_stft(cdz_ctx *ctx, const cdz_stft_plan *plan, const cdz_tensor *x, cdz_tensor *z);
cdz_status cdz_istft(cdz_ctx *ctx, const cdz_stft_plan *plan, const cdz_tensor *z, cdz_tensor *y);

cdz_status cdz_stft_cpu(cdz_ctx *ctx, const cdz_stft_plan *plan, const cdz_tensor *x, cdz_tensor *z);
cdz_status cdz_istft_cpu(cdz_ctx *ctx, const cdz_stft_plan *plan, const cdz_tensor *z, cdz_tensor *y);
#ifdef CDZ_HAVE_CUDA
cdz_status cdz_stft_cuda(cdz_ctx *ctx, const cdz_stft_plan *plan, const cdz_tensor *x, cdz_tensor *z);
cdz_status cdz_istft_cuda(cdz_ctx *ctx, const cdz_stft_plan *plan, const cdz_tensor *z, cdz_tensor *y);
#endif

/* ---- internal: shared by stft.c and stft.cu; callers treat the plan as opaque ---- */
struct cdz_stft_plan {
    cdz_device device;
    int64_t n_fft, hop, win_length, batch, length;
    int64_t bins, frames;     /* F, T */
    int64_t pad;              /* P when center, else 0 (also istft's start) */
    int64_t ola_len;          /* N + H*(T-1): samples the frames cover (padded signal) */
    bool center, normalized;
    bool istft_ok;
    char nola_msg[192];       /* why istft is refused, when !istft_ok */
    int64_t chunk;            /* frames per FFT batch */
    size_t off_spec;          /* workspace layout: frames [chunk*N] f32 at 0, spectra */
    size_t off_work;          /*   [chunk*F] complex at off_spec, cuFFT work at off_work */
    size_t workspace_bytes;   /* total, including alignment slack */
    float *window;            /* host, N values (zero-padded window) */
    void *fftw_r2c, *fftw_c2r;/* fftwf_plan (CPU plans) */
    cdz_arena *arena;         /* CUDA: where window_dev lives */
    float *window_dev;        /* CUDA: N values */
    int cufft_r2c, cufft_c2r; /* cufftHandle (CUDA plans) */
    bool have_cufft_r2c, have_cufft_c2r;
};

#ifdef CDZ_HAVE_CUDA
/* Uploads the window, makes the cuFFT plans and settles chunk / offsets / workspace_bytes
 * (shrinking chunk until everything fits ctx's workspace, else TOO_LARGE). */
cdz_status cdz_stft_plan_init_cuda(cdz_ctx *ctx, cdz_stft_plan *plan, int64_t max_chunk);
void cdz_stft_plan_fini_cuda(cdz_stft_plan *plan);
#endif

#ifdef __cplusplus
}
#endif
#endif /* CDZ_KERNELS_STFT_H */
