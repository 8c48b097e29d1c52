/*
 * separate.h: the segment scheduler behind cdz_separate (models/separate.c), generic over
 * the model so it can be tested with fake ones. docs/separate.md has the long version.
 *
 * It is demucs.apply.apply_model (facebookresearch/demucs, apply.py) with the track
 * normalisation of demucs.api.Separator.separate_tensor, for a track x [C, L] (host):
 *
 *   normalise   ref = mean over channels of x (f32); m = mean(ref), d = std(ref, unbiased) + 1e-8
 *               x' = (x - m) / d                        (normalize=false: x' = x, d = 1, m = 0)
 *   per member  (BagOfModels: every member runs apply_model on its own)
 *     shifts    shifts = 0: one view of x', start 0, length L.
 *               shifts = N: M = samplerate / 2; N offsets s_i in [0, M] (seeded generator,
 *               member by member, or given); view i starts at s_i - M (track coordinates,
 *               zeros outside [0, L)) and has length L + M - s_i; its output at track
 *               position t >= 0 is kept (shifted_out[..., M - s:]) and the N views averaged.
 *     split     per view: seg = int(segment_seconds * samplerate) (default: the member's
 *               training segment), stride = int((1 - overlap) * seg), chunk offsets
 *               o = 0, stride, ... < view length, chunk length n = min(view_len - o, seg).
 *     leaf      TensorChunk.padded(seg): the window of seg samples centred on the chunk
 *               (start o - (seg - n) / 2), real neighbouring samples where they exist, zeros
 *               outside the track; the forward sees it right-padded with zeros to
 *               forward_length (HTDemucs.forward's own padding), and center_trim keeps
 *               out[(seg - n) / 2 ...][n].
 *     overlap-  w = cat(arange(1, seg//2 + 1), arange(seg - seg//2, 0, -1)), w = (w / max w)
 *     add       ^ transition_power (f32); out[o + j] += w[j] y[j]; sum_w[o + j] += w[j];
 *               out /= sum_w.
 *   bag         est[k] = sum_m weight[m][k] out_m[k] / sum_m weight[m][k]
 *   denormalise stems = est * d + m
 *
 * Accumulation: the stems are the only accumulators. Each chunk adds
 *   weight[m][k] / (total[k] * shifts) * (w[j] y[j]) / sum_w(view, o + j)
 * directly to stems[k], where sum_w at a position is recomputed from the (few) chunks that
 * cover it in chunk order, the same f32 sum apply_model builds. Host memory is therefore
 * the input, the requested stems, two pinned batches (inputs [batch, C, F] and outputs
 * [batch, S, C, F], F = forward_length; kept in cdz_segs_buffers across runs when the
 * caller gives them) and one sum-weight row of seg floats. Device memory (a CUDA context):
 * one batch of inputs and outputs from the context's arena, whatever the track length.
 *
 * Batching: all chunks of all shifts of a member go through the forward in batches of up to
 * `batch`; with a CUDA context the next batch is staged while the device runs the current
 * one (two pinned buffers, one stream).
 *
 * Several tracks (cdz_segs_run_tracks, cdz_separate_tracks): member by member, the chunks of
 * every track (track after track, each in its own view/chunk order) fill the same batches, so
 * a batch mixes segments of different tracks. Each output is accumulated into its own track in
 * that track's chunk order with the arithmetic above: every track's stems are bit-identical
 * to a run of that track alone (given a forward whose items do not depend on their batch
 * neighbours). Before each batch is filled a check callback may drop a track (cancelled, past
 * its deadline): it contributes no further chunks and reports the callback's status.
 *
 * defines: cdz_segment_fn, cdz_segs_member, cdz_segs_buffers, cdz_segs_buffers_free, cdz_segs,
 *          cdz_segs_run, cdz_segs_draw_offsets, cdz_segs_chunk_count, cdz_segs_track_stats,
 *          cdz_segs_track, cdz_segs_check_fn, cdz_segs_run_tracks, cdz_separate_track,
 *          cdz_separate_tracks, CDZ_SCHED_MAX_MEMBERS, CDZ_SCHED_MAX_SOURCES
 */
#ifndef CDZ_MODELS_SEPARATE_H
#define CDZ_MODELS_SEPARATE_H

#include "cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CDZ_SCHED_MAX_MEMBERS 64
#define CDZ_SCHED_MAX_SOURCES 64

/* Runs the model on b <= batch windows: in [b, C, F] -> out [b, S, C, F], F the member's
 * forward_length, f32 contiguous. With a CUDA context both live on its device and the call
 * queues work on its stream (it must not wait); otherwise both are host memory. */
typedef cdz_status (*cdz_segment_fn)(void *user, const float *in, float *out, int32_t b);

typedef struct cdz_segs_member {
    cdz_segment_fn forward;
    void *user;
    int64_t segment;        /* chunk length in samples, >= 1 */
    int64_t forward_length; /* samples per item the forward reads/writes; 0: = segment; >= segment */
    const float *weights;   /* [sources] bag weights; NULL: all 1 */
} cdz_segs_member;

/* Staging buffers a caller keeps between runs (a worker reuses them for every track, so a
 * run allocates nothing once they are large enough). Zero-initialise; free when the
 * context's device is idle. */
typedef struct cdz_segs_buffers {
    float *in[2], *out[2]; /* pinned host: two batches of inputs and outputs */
    size_t in_elems, out_elems;
    void *dev_in, *dev_out; /* one batch on the device (CUDA contexts only) */
    size_t dev_in_elems, dev_out_elems;
    cdz_arena *dev_arena;
} cdz_segs_buffers;

void cdz_segs_buffers_free(cdz_segs_buffers *b);

typedef struct cdz_segs {
    int32_t channels, sources, samplerate;
    int32_t members;
    const cdz_segs_member *member;
    int32_t batch;                 /* >= 1 */
    cdz_ctx *ctx;                  /* NULL or CPU: host buffers; CUDA: staged to its device */
    cdz_segs_buffers *buffers;    /* NULL: allocated and freed by this run */
    cdz_separate_options opt;      /* shifts, overlap, transition power, seed, offsets,
                                      normalize, progress (segment_seconds is not used here:
                                      each member's `segment` is) */
} cdz_segs;

/* mix [C, length] host planar; stems[k] [C, length] host or NULL (skipped). */
cdz_status cdz_segs_run(const cdz_segs *cfg, const float *mix, int64_t length, float *const *stems);

/* One track of a multi-track run. */
typedef struct cdz_segs_track {
    const float *mix;        /* [C, length] host planar */
    int64_t length;
    float *const *stems;     /* [sources]: [C, length] host or NULL (skipped) */
    cdz_separate_options opt;
    const int64_t *segment;  /* [members] chunk lengths (<= each member's forward length);
                                NULL: each member's segment */
    cdz_status status;       /* out: OK, the check's status, or this track's own error */
    cdz_error error;         /* out: the message when status != OK */
} cdz_segs_track;

/* Called between batches for every track still running; non-OK (with the thread's error set)
 * drops the track with that status. */
typedef cdz_status (*cdz_segs_check_fn)(void *user, int32_t track);

/* Runs tracks[0..n) with shared batches (cfg->opt is not used: each track's opt is). A track
 * with an invalid configuration fails alone (its status). Returns non-OK when the forward or a
 * copy fails or nothing can be allocated: then every track still running has that status. */
cdz_status cdz_segs_run_tracks(const cdz_segs *cfg, cdz_segs_track *tracks, int32_t n, cdz_segs_check_fn check,
                               void *check_user);

/* cdz_separate for several tracks through one separator: the same checks per track (a track
 * that fails them fails alone), then cdz_segs_run_tracks. */
typedef struct cdz_separate_track {
    cdz_audio mix;
    cdz_separate_options opt;
    float *stems[CDZ_SCHED_MAX_SOURCES]; /* by source index; NULL: not requested */
    cdz_status status;                   /* out */
    cdz_error error;                     /* out */
} cdz_separate_track;

cdz_status cdz_separate_tracks(cdz_separator *s, cdz_separate_track *tracks, int32_t n, cdz_segs_check_fn check,
                               void *check_user);

/* The shift offsets cdz_segs_run draws for `seed`: out[m * shifts + i] in [0, max_shift],
 * member-major like apply_model's recursion (xoshiro256** seeded by splitmix64, unbiased). */
void cdz_segs_draw_offsets(uint64_t seed, int32_t members, int32_t shifts, int64_t max_shift,
                            int64_t *out);

/* api.Separator's statistics of x [C, L]: ref = x.mean(0) in f32, then mean(ref) and
 * std(ref) (unbiased; 0 for L = 1 where torch gives NaN), accumulated in double. */
void cdz_segs_track_stats(const float *x, int32_t C, int64_t L, float *mean, float *std);

/* Chunks of one view of `length` samples: ceil(length / stride). */
int64_t cdz_segs_chunk_count(int64_t length, int64_t stride);

#ifdef __cplusplus
}
#endif
#endif /* CDZ_MODELS_SEPARATE_H */
