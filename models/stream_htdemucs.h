/*
 * stream_htdemucs.h: apply_model, incrementally -- feed chunks of a track, get back the stems'
 * finished samples while the track is still arriving (streaming separation; docs/serving.md
 * "Streams").
 *
 * It is the split + overlap-add of models/separate.h (demucs.apply.apply_model with shifts = 0)
 * over a track whose length is known only at the end:
 *   seg = the chunk length, stride = int((1 - overlap) * seg), chunk offsets o = 0, stride, ...
 *   < L; a chunk with o + seg <= (samples received) is a full window [o, o + seg) and runs as
 *   soon as those samples are here; the chunks with o + seg > L run when the input ends, with
 *   apply_model's centred zero-padded window (TensorChunk.padded) and center_trim.
 *   Overlap-add: out[o + j] += w[j] y[j], sum_w[o + j] += w[j], out /= sum_w, with apply_model's
 *   triangular weight ^ transition_power.
 * Output at position p is final once every chunk covering p has been added: the stems come out
 * one stride at a time, at most seg + stride samples (about segment + overlap) behind the input.
 *
 * Normalisation: none at track level. api.Separator's (x - mean) / std uses the whole track's
 * statistics, which a stream does not have; HTDemucs.forward normalises every segment by its
 * own mean/std anyway. So the streamed stems equal cdz_separate with normalize = false and
 * shifts = 0 (tests/test_stream.c checks rel-L2 <= 1e-6). Shifts are refused (each shift
 * would need samples from the future of the track's end); bags (several members with their own
 * segments) are the caller's business: one cdz_stream_sep per member.
 *
 * Memory is bounded: the input held is at most seg + max_push samples per channel (the
 * history the tail windows may need plus one push); the accumulators hold seg + max_push +
 * stride samples per source and channel when the caller takes the output as it becomes ready
 * (take grows nothing; an untaken output keeps growing the accumulator -- take it).
 *
 * The model is not called here: the caller asks for the next ready window (next_window copies
 * it out, so windows may be in flight on a worker), runs the forward on it, and hands the
 * output back in the same order (add). cdz_stream_sep_drive does all of that synchronously
 * with a cdz_segment_fn (batch 1).
 *
 * defines: cdz_stream_sep, cdz_stream_sep_config, cdz_stream_sep_create, cdz_stream_sep_destroy,
 *          cdz_stream_sep_push, cdz_stream_sep_end, cdz_stream_sep_next_window,
 *          cdz_stream_sep_add, cdz_stream_sep_ready, cdz_stream_sep_take, cdz_stream_sep_taken,
 *          cdz_stream_sep_finished, cdz_stream_sep_buffered, cdz_stream_sep_drive
 */
#ifndef CDZ_MODELS_STREAM_HTDEMUCS_H
#define CDZ_MODELS_STREAM_HTDEMUCS_H

#include <stdbool.h>
#include <stdint.h>

#include "cadenza.h"
#include "separate.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cdz_stream_sep cdz_stream_sep;

typedef struct cdz_stream_sep_config {
    int32_t channels, sources;
    int64_t segment;          /* chunk length in samples (>= 2) */
    int64_t forward_length;   /* samples per window the forward reads/writes; 0 = segment */
    double overlap;           /* [0, 1) */
    double transition_power;  /* >= 1 */
    int32_t shifts;           /* must be 0 (streams cannot use the shift trick) */
    int64_t max_push;         /* largest push in samples (bounds the input buffer), >= 1 */
} cdz_stream_sep_config;

cdz_status cdz_stream_sep_create(const cdz_stream_sep_config *cfg, cdz_stream_sep **out);
void cdz_stream_sep_destroy(cdz_stream_sep *s);

/* Append x [channels][n] (planar, row stride ld >= n). n > max_push, or a push after end, is
 * INVALID_ARGUMENT. */
cdz_status cdz_stream_sep_push(cdz_stream_sep *s, const float *x, int64_t n, int64_t ld);
/* The input is complete (an empty stream is INVALID_ARGUMENT). */
cdz_status cdz_stream_sep_end(cdz_stream_sep *s);
/* The next window that can run, written to win [channels][forward_length] (zero padded):
 * true, or false when none is ready yet. */
bool cdz_stream_sep_next_window(cdz_stream_sep *s, float *win);
/* The forward's output y [sources][channels][forward_length] for the oldest window handed
 * out and not yet added. */
cdz_status cdz_stream_sep_add(cdz_stream_sep *s, const float *y);
/* Finished samples not yet taken. */
int64_t cdz_stream_sep_ready(const cdz_stream_sep *s);
/* Move n <= ready finished samples into dst[k] [channels][ld] (dst[k] NULL: dropped), from
 * dst[k][0]; the caller places them at track position cdz_stream_sep_taken() (before the call). */
cdz_status cdz_stream_sep_take(cdz_stream_sep *s, float *const *dst, int64_t ld, int64_t n);
int64_t cdz_stream_sep_taken(const cdz_stream_sep *s);
/* Input ended, every window added and every sample taken. */
bool cdz_stream_sep_finished(const cdz_stream_sep *s);
/* Input samples held now (per channel): the bound tests look at. */
int64_t cdz_stream_sep_buffered(const cdz_stream_sep *s);

/* Run every ready window through fwd (batch 1; host buffers) and add it. */
cdz_status cdz_stream_sep_drive(cdz_stream_sep *s, cdz_segment_fn fwd, void *user);

#ifdef __cplusplus
}
#endif
#endif /* CDZ_MODELS_STREAM_HTDEMUCS_H */
