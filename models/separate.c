/*
 * separate.c: apply_model for whole tracks. The generic segment scheduler (cdz_segs_run,
 * semantics in separate.h) and its binding to HTDemucs plans (cdz_separator, cdz_separate).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cadenza.h"
#include "check.h"
#include "separate.h"

void cdz_separate_options_default(cdz_separate_options *o) {
    memset(o, 0, sizeof *o);
    o->shifts = 1;
    o->overlap = 0.25;
    o->transition_power = 1.0;
    o->normalize = true;
}

/* ------------------------------------------------------------------------------------
 * shift offsets: xoshiro256** seeded through splitmix64
 * ---------------------------------------------------------------------------------- */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    const uint64_t r = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

void cdz_segs_draw_offsets(uint64_t seed, int32_t members, int32_t shifts, int64_t max_shift,
                            int64_t *out) {
    uint64_t sm = seed, s[4];
    for (int i = 0; i < 4; i++) s[i] = splitmix64(&sm);
    const uint64_t range = (uint64_t)max_shift + 1;
    const uint64_t threshold = (0 - range) % range; /* rejection keeps the draw unbiased */
    for (int64_t i = 0; i < (int64_t)members * shifts; i++) {
        uint64_t r;
        do r = xoshiro_next(s);
        while (r < threshold);
        out[i] = (int64_t)(r % range);
    }
}

int64_t cdz_segs_chunk_count(int64_t length, int64_t stride) {
    return length <= 0 || stride <= 0 ? 0 : (length + stride - 1) / stride;
}

/* ------------------------------------------------------------------------------------
 * scheduler
 * ---------------------------------------------------------------------------------- */
typedef struct sched_view {
    int64_t start; /* track coordinate of view position 0 (<= 0) */
    int64_t len;
} sched_view;

typedef struct sched_job {
    int32_t track; /* index into the run's tracks */
    int32_t view;
    int64_t off; /* view coordinate of the chunk */
    int64_t n;   /* chunk length */
} sched_job;

typedef struct sched_slot {
    float *in;  /* pinned [batch, C, F] */
    float *out; /* pinned [batch, S, C, F] */
    sched_job *jobs;
    int32_t n;
} sched_slot;

typedef struct sched_state {
    const cdz_segs *cfg;
    const float *mix;
    int64_t L;
    float *const *stems;
    float mean, scale; /* normalisation: x' = (x - mean) / scale */
    /* current member */
    const cdz_segs_member *mem;
    int64_t seg, F, stride;
    float coef[CDZ_SCHED_MAX_SOURCES];
    float *w;     /* [seg] transition weight */
    float *sumw;  /* [seg] sum of weights under the current chunk */
    sched_view *views;
    int32_t nviews;
    int32_t cur_view;
    int64_t cur_off;
    int64_t done, total;
} sched_state;

/* Next chunk of the current member, false when all views are exhausted. */
static bool next_job(sched_state *st, sched_job *j) {
    while (st->cur_view < st->nviews) {
        const sched_view *v = &st->views[st->cur_view];
        if (st->cur_off < v->len) {
            j->view = st->cur_view;
            j->off = st->cur_off;
            j->n = v->len - st->cur_off < st->seg ? v->len - st->cur_off : st->seg;
            st->cur_off += st->stride;
            return true;
        }
        st->cur_view++;
        st->cur_off = 0;
    }
    return false;
}

/* TensorChunk.padded(seg) of the normalised track, right-padded with zeros to F. */
static void fill_window(const sched_state *st, const sched_job *j, float *dst) {
    const cdz_segs *cfg = st->cfg;
    const int64_t ws = st->views[j->view].start + j->off - (st->seg - j->n) / 2;
    int64_t lo = ws < 0 ? -ws : 0;
    int64_t hi = st->L - ws < st->seg ? st->L - ws : st->seg;
    if (lo > st->seg) lo = st->seg;
    if (hi < lo) hi = lo;
    for (int32_t c = 0; c < cfg->channels; c++) {
        float *row = dst + (size_t)c * (size_t)st->F;
        const float *x = st->mix + (size_t)c * (size_t)st->L; /* x[ws + i] is window sample i */
        memset(row, 0, (size_t)lo * sizeof(float));
        if (cfg->opt.normalize) {
            const float m = st->mean, d = st->scale;
            for (int64_t i = lo; i < hi; i++) row[i] = (x[ws + i] - m) / d;
        } else if (hi > lo) {
            memcpy(row + lo, x + (ws + lo), (size_t)(hi - lo) * sizeof(float));
        }
        memset(row + hi, 0, (size_t)(st->F - hi) * sizeof(float));
    }
}

/* Overlap-add of one chunk's output y [S, C, F] into the stems. */
static void accumulate(sched_state *st, const sched_job *j, const float *y) {
    const cdz_segs *cfg = st->cfg;
    const sched_view *v = &st->views[j->view];
    const int64_t n = j->n, d2 = (st->seg - n) / 2, base = v->start + j->off;
    const int64_t j0 = base < 0 ? (-base < n ? -base : n) : 0; /* shifted views start before 0 */
    for (int64_t i = j0; i < n; i++) {
        /* apply_model's sum_weight at view position p: the chunks covering it, in order */
        const int64_t p = j->off + i;
        const int64_t kmin = p >= st->seg ? (p - st->seg) / st->stride + 1 : 0, kmax = p / st->stride;
        float sw = 0.f;
        for (int64_t k = kmin; k <= kmax; k++) sw += st->w[p - k * st->stride];
        st->sumw[i] = sw;
    }
    for (int32_t s = 0; s < cfg->sources; s++) {
        if (!st->stems[s] || st->coef[s] == 0.f) continue;
        const float coef = st->coef[s];
        for (int32_t c = 0; c < cfg->channels; c++) {
            float *dst = st->stems[s] + (size_t)c * (size_t)st->L; /* dst[base + i] is chunk sample i */
            const float *src = y + ((size_t)s * (size_t)cfg->channels + (size_t)c) * (size_t)st->F + d2;
            for (int64_t i = j0; i < n; i++) dst[base + i] += coef * ((st->w[i] * src[i]) / st->sumw[i]);
        }
    }
}

/* ------------------------------------------------------------------------------------
 * multi-track runs: the chunks of every live track of one member share batches
 * ---------------------------------------------------------------------------------- */
/* One track of a run: its own configuration copy (options, per-member segment), its
 * apply_model state, and whether it still contributes chunks. */
typedef struct track_run {
    cdz_segs cfg;
    cdz_segs_member mem[CDZ_SCHED_MAX_MEMBERS];
    cdz_segs_track *t;
    sched_state st;
    int64_t *offsets;
    float totals[CDZ_SCHED_MAX_SOURCES];
    bool run[CDZ_SCHED_MAX_MEMBERS];
    bool live;
} track_run;

typedef struct multi_state {
    const cdz_segs *cfg;
    track_run *tr;
    int32_t n;
    int32_t m;   /* current member */
    int32_t cur; /* track being split into chunks */
    int64_t F;
    bool cuda;
    void *dev_in, *dev_out;
    cdz_segs_check_fn check;
    void *check_user;
} multi_state;

static void track_drop(track_run *r, cdz_status st) {
    r->live = false;
    r->t->status = st;
    r->t->error = *cdz_last_error();
    if (r->t->error.code != st) {
        r->t->error.code = st;
        r->t->error.retryable = cdz_status_retryable(st);
        snprintf(r->t->error.message, sizeof r->t->error.message, "%s", cdz_status_name(st));
    }
}

/* Between batches: tracks whose check fails (cancelled, past their deadline) stop here. */
static void poll_tracks(multi_state *ms) {
    if (!ms->check) return;
    for (int32_t i = 0; i < ms->n; i++) {
        if (!ms->tr[i].live) continue;
        cdz_error_clear();
        const cdz_status st = ms->check(ms->check_user, i);
        if (st != CDZ_STATUS_OK) track_drop(&ms->tr[i], st);
    }
}

static cdz_status queue_batch(multi_state *ms, sched_slot *slot) {
    const cdz_segs *cfg = ms->cfg;
    const cdz_segs_member *mem = &cfg->member[ms->m];
    const size_t in_bytes = (size_t)slot->n * (size_t)cfg->channels * (size_t)ms->F * sizeof(float);
    const size_t out_bytes = in_bytes * (size_t)cfg->sources;
    if (!ms->cuda) return mem->forward(mem->user, slot->in, slot->out, slot->n);
    CDZ_TRY(cdz_copy_to_device(cfg->ctx, ms->dev_in, slot->in, in_bytes));
    CDZ_TRY(mem->forward(mem->user, ms->dev_in, ms->dev_out, slot->n));
    return cdz_copy_to_host(cfg->ctx, slot->out, ms->dev_out, out_bytes);
}

/* The next chunks of the current member, track after track (each track's own chunk order). */
static void fill_slot(multi_state *ms, sched_slot *slot) {
    const cdz_segs *cfg = ms->cfg;
    poll_tracks(ms);
    slot->n = 0;
    while (slot->n < cfg->batch && ms->cur < ms->n) {
        track_run *r = &ms->tr[ms->cur];
        sched_job *j = &slot->jobs[slot->n];
        if (!r->live || !r->run[ms->m] || !next_job(&r->st, j)) {
            ms->cur++;
            continue;
        }
        j->track = ms->cur;
        fill_window(&r->st, j, slot->in + (size_t)slot->n * (size_t)cfg->channels * (size_t)ms->F);
        slot->n++;
    }
}

static void drain_slot(multi_state *ms, const sched_slot *slot) {
    const cdz_segs *cfg = ms->cfg;
    const size_t item = (size_t)cfg->sources * (size_t)cfg->channels * (size_t)ms->F;
    for (int32_t i = 0; i < slot->n; i++) {
        track_run *r = &ms->tr[slot->jobs[i].track];
        if (!r->live) continue; /* dropped while this batch ran */
        accumulate(&r->st, &slot->jobs[i], slot->out + (size_t)i * item);
        r->st.done++;
        /* a track's chunks are contiguous in a slot: report once per slot and track */
        if (r->cfg.opt.progress && (i + 1 == slot->n || slot->jobs[i + 1].track != slot->jobs[i].track))
            r->cfg.opt.progress(r->cfg.opt.progress_user, r->st.done, r->st.total);
    }
}

/* All chunks of the current member through its forward, two slots in flight:
 * while the device runs one batch, the host drains the previous one and fills the next. */
static cdz_status run_member(multi_state *ms, sched_slot slots[2]) {
    cdz_ctx *ctx = ms->cfg->ctx;
    fill_slot(ms, &slots[0]);
    if (slots[0].n == 0) return CDZ_STATUS_OK;
    CDZ_TRY(queue_batch(ms, &slots[0]));
    fill_slot(ms, &slots[1]);
    for (int a = 0;; a ^= 1) {
        sched_slot *done = &slots[a], *next = &slots[a ^ 1];
        if (ms->cuda) CDZ_TRY(cdz_ctx_sync(ctx));
        if (next->n > 0) CDZ_TRY(queue_batch(ms, next));
        drain_slot(ms, done);
        if (next->n == 0) return CDZ_STATUS_OK;
        fill_slot(ms, done);
    }
}

/* Track statistics of api.Separator: ref = wav.mean(0) (f32), mean and unbiased std of
 * ref (accumulated in double, rounded to f32 as torch returns them). */
void cdz_segs_track_stats(const float *x, int32_t C, int64_t L, float *mean, float *std) {
    double sum = 0.0;
    for (int64_t t = 0; t < L; t++) {
        float acc = 0.f;
        for (int32_t c = 0; c < C; c++) acc += x[(size_t)c * (size_t)L + (size_t)t];
        sum += (double)(acc / (float)C);
    }
    const double m = sum / (double)L;
    double ss = 0.0;
    for (int64_t t = 0; t < L; t++) {
        float acc = 0.f;
        for (int32_t c = 0; c < C; c++) acc += x[(size_t)c * (size_t)L + (size_t)t];
        const double d = (double)(acc / (float)C) - m;
        ss += d * d;
    }
    *mean = (float)m;
    *std = L > 1 ? (float)sqrt(ss / (double)(L - 1)) : 0.f; /* torch: NaN for one sample */
}

static cdz_status check_config(const cdz_segs *cfg, const float *mix, int64_t length, float *const *stems) {
    const cdz_separate_options *o = &cfg->opt;
    CDZ_REQUIRE(cfg->channels >= 1, "separate: %d channels", cfg->channels);
    CDZ_REQUIRE(cfg->sources >= 1 && cfg->sources <= CDZ_SCHED_MAX_SOURCES, "separate: %d sources (1..%d)",
                cfg->sources, CDZ_SCHED_MAX_SOURCES);
    CDZ_REQUIRE(cfg->samplerate >= 1, "separate: sample rate %d", cfg->samplerate);
    CDZ_REQUIRE(cfg->members >= 1 && cfg->members <= CDZ_SCHED_MAX_MEMBERS && cfg->member,
                "separate: %d bag members (1..%d)", cfg->members, CDZ_SCHED_MAX_MEMBERS);
    CDZ_REQUIRE(cfg->batch >= 1, "separate: batch %d (at least 1)", cfg->batch);
    CDZ_REQUIRE(o->shifts >= 0 && o->shifts <= 1000, "separate: shifts %d (0..1000)", o->shifts);
    CDZ_REQUIRE(isfinite(o->overlap) && o->overlap >= 0.0 && o->overlap < 1.0,
                "separate: overlap %g is not in [0, 1)", o->overlap);
    CDZ_REQUIRE(isfinite(o->transition_power) && o->transition_power >= 1.0,
                "separate: transition power %g (must be >= 1)", o->transition_power);
    CDZ_REQUIRE(mix, "separate: the mix is NULL");
    CDZ_REQUIRE(length >= 1, "separate: the track has %lld samples (at least 1)", (long long)length);
    CDZ_REQUIRE(stems, "separate: the stem array is NULL");
    const int64_t max_shift = cfg->samplerate / 2;
    for (int32_t m = 0; m < cfg->members; m++) {
        const cdz_segs_member *mm = &cfg->member[m];
        CDZ_REQUIRE(mm->forward, "separate: member %d has no forward", m);
        CDZ_REQUIRE(mm->segment >= 1, "separate: member %d: segment of %lld samples", m, (long long)mm->segment);
        CDZ_REQUIRE(mm->forward_length == 0 || mm->forward_length >= mm->segment,
                    "separate: member %d: forward length %lld is shorter than the segment %lld", m,
                    (long long)mm->forward_length, (long long)mm->segment);
        const int64_t stride = (int64_t)((1.0 - o->overlap) * (double)mm->segment);
        CDZ_REQUIRE(stride >= 1, "separate: overlap %g leaves a stride of 0 samples for a %lld-sample segment",
                    o->overlap, (long long)mm->segment);
        for (int32_t s = 0; mm->weights && s < cfg->sources; s++)
            CDZ_REQUIRE(isfinite(mm->weights[s]), "separate: member %d: weight of source %d is not finite", m, s);
        for (int32_t i = 0; o->shift_offsets && i < o->shifts; i++) {
            const int64_t v = o->shift_offsets[(size_t)m * (size_t)o->shifts + (size_t)i];
            CDZ_REQUIRE(v >= 0 && v <= max_shift, "separate: shift offset %lld of member %d is not in [0, %lld]",
                        (long long)v, m, (long long)max_shift);
        }
    }
    bool any = false;
    for (int32_t s = 0; s < cfg->sources; s++) {
        if (!stems[s]) continue;
        any = true;
        double total = 0.0;
        for (int32_t m = 0; m < cfg->members; m++) total += cfg->member[m].weights ? cfg->member[m].weights[s] : 1.0;
        CDZ_REQUIRE(total != 0.0, "separate: source %d has a total bag weight of 0", s);
    }
    CDZ_REQUIRE(any, "separate: no stem requested (every stems[k] is NULL)");
    for (int32_t c = 0; c < cfg->channels; c++)
        for (int64_t t = 0; t < length; t++)
            CDZ_REQUIRE(isfinite(mix[(size_t)c * (size_t)length + (size_t)t]),
                        "separate: sample %lld of channel %d of the mix is not finite", (long long)t, c);
    return CDZ_STATUS_OK;
}

void cdz_segs_buffers_free(cdz_segs_buffers *b) {
    if (!b) return;
    for (int i = 0; i < 2; i++) {
        cdz_host_pinned_free(b->in[i]);
        cdz_host_pinned_free(b->out[i]);
    }
    if (b->dev_arena) {
        cdz_arena_free(b->dev_arena, b->dev_in);
        cdz_arena_free(b->dev_arena, b->dev_out);
    }
    memset(b, 0, sizeof *b);
}

/* Grow the staging buffers to one batch of in/out elements (never shrinks them). */
static cdz_status ensure_buffers(cdz_segs_buffers *b, size_t in_elems, size_t out_elems, cdz_arena *arena) {
    if (!b->in[0] || b->in_elems < in_elems || b->out_elems < out_elems) {
        for (int i = 0; i < 2; i++) {
            cdz_host_pinned_free(b->in[i]);
            cdz_host_pinned_free(b->out[i]);
            b->in[i] = b->out[i] = NULL;
        }
        b->in_elems = b->out_elems = 0;
        for (int i = 0; i < 2; i++) {
            CDZ_TRY(cdz_host_pinned_alloc(in_elems * sizeof(float), (void **)&b->in[i]));
            CDZ_TRY(cdz_host_pinned_alloc(out_elems * sizeof(float), (void **)&b->out[i]));
        }
        b->in_elems = in_elems;
        b->out_elems = out_elems;
    }
    if (arena && (b->dev_arena != arena || b->dev_in_elems < in_elems || b->dev_out_elems < out_elems)) {
        if (b->dev_arena) {
            cdz_arena_free(b->dev_arena, b->dev_in);
            cdz_arena_free(b->dev_arena, b->dev_out);
        }
        b->dev_in = b->dev_out = NULL;
        b->dev_in_elems = b->dev_out_elems = 0;
        b->dev_arena = arena;
        CDZ_TRY(cdz_arena_alloc(arena, in_elems * sizeof(float), CDZ_ARENA_ALIGN, "separate: batch input", &b->dev_in));
        CDZ_TRY(cdz_arena_alloc(arena, out_elems * sizeof(float), CDZ_ARENA_ALIGN, "separate: batch output",
                                &b->dev_out));
        b->dev_in_elems = in_elems;
        b->dev_out_elems = out_elems;
    }
    return CDZ_STATUS_OK;
}

/* A track's configuration and apply_model state before its first chunk (offsets member-major
 * as apply_model's recursion draws them, per-member bag totals, chunk count). */
static cdz_status track_setup(const cdz_segs *cfg, track_run *r, bool checked, int64_t *max_F) {
    cdz_segs_track *t = r->t;
    const cdz_separate_options *o = &t->opt;
    const int32_t S = cfg->sources, M = cfg->members;
    const int64_t max_shift = cfg->samplerate / 2;
    const int32_t nviews = o->shifts > 0 ? o->shifts : 1;
    r->cfg = *cfg;
    r->cfg.opt = *o;
    r->cfg.member = r->mem;
    for (int32_t m = 0; m < M; m++) {
        const cdz_segs_member *mm = &cfg->member[m];
        r->mem[m] = *mm;
        /* every track of a member shares its batches: one forward length for all of them */
        r->mem[m].forward_length = mm->forward_length ? mm->forward_length : mm->segment;
        if (t->segment) r->mem[m].segment = t->segment[m];
    }
    if (!checked) CDZ_TRY(check_config(&r->cfg, t->mix, t->length, t->stems));
    sched_state *st = &r->st;
    st->cfg = &r->cfg;
    st->mix = t->mix;
    st->L = t->length;
    st->stems = t->stems;
    st->mean = 0.f;
    st->scale = 1.f;
    if (o->normalize) {
        float sd;
        cdz_segs_track_stats(t->mix, cfg->channels, t->length, &st->mean, &sd);
        st->scale = sd + 1e-8f;
    }
    if (o->shifts > 0) {
        r->offsets = malloc((size_t)M * (size_t)o->shifts * sizeof *r->offsets);
        if (!r->offsets) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "separate: no host memory");
        if (o->shift_offsets) memcpy(r->offsets, o->shift_offsets, (size_t)M * (size_t)o->shifts * sizeof *r->offsets);
        else cdz_segs_draw_offsets(o->seed, M, o->shifts, max_shift, r->offsets);
    }
    for (int32_t s = 0; s < S; s++) {
        r->totals[s] = 0.f;
        for (int32_t m = 0; m < M; m++) r->totals[s] += r->mem[m].weights ? r->mem[m].weights[s] : 1.f;
    }
    /* a member whose weights are 0 for every requested stem cannot change the result */
    int64_t max_seg = 0;
    for (int32_t m = 0; m < M; m++) {
        const cdz_segs_member *mm = &r->mem[m];
        r->run[m] = false;
        for (int32_t s = 0; s < S; s++)
            if (t->stems[s] && (mm->weights ? mm->weights[s] : 1.f) != 0.f) r->run[m] = true;
        if (!r->run[m]) continue;
        const int64_t stride = (int64_t)((1.0 - o->overlap) * (double)mm->segment);
        if (mm->forward_length > *max_F) *max_F = mm->forward_length;
        if (mm->segment > max_seg) max_seg = mm->segment;
        for (int32_t v = 0; v < nviews; v++) {
            const int64_t len = o->shifts > 0
                                    ? t->length + max_shift - r->offsets[(size_t)m * (size_t)o->shifts + (size_t)v]
                                    : t->length;
            st->total += cdz_segs_chunk_count(len, stride);
        }
    }
    st->views = malloc((size_t)nviews * sizeof *st->views);
    st->w = malloc((size_t)(max_seg > 0 ? max_seg : 1) * sizeof(float));
    st->sumw = malloc((size_t)(max_seg > 0 ? max_seg : 1) * sizeof(float));
    if (!st->views || !st->w || !st->sumw)
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "separate: no host memory for the scheduler");
    return CDZ_STATUS_OK;
}

/* Member m's transition weights, bag coefficients and shifted views for one track. */
static void member_setup(const cdz_segs *cfg, track_run *r, int32_t m) {
    const cdz_separate_options *o = &r->cfg.opt;
    sched_state *st = &r->st;
    const cdz_segs_member *mm = &r->mem[m];
    const int64_t max_shift = cfg->samplerate / 2, length = st->L;
    const int32_t nviews = o->shifts > 0 ? o->shifts : 1;
    st->mem = mm;
    st->seg = mm->segment;
    st->F = mm->forward_length;
    st->stride = (int64_t)((1.0 - o->overlap) * (double)mm->segment);
    /* weight = cat(arange(1, seg//2 + 1), arange(seg - seg//2, 0, -1)) / max, ^ power (f32) */
    const int64_t half = st->seg / 2, wmax = st->seg - half;
    for (int64_t i = 0; i < st->seg; i++) {
        const int64_t a = i < half ? i + 1 : st->seg - i;
        float w = (float)a / (float)wmax;
        st->w[i] = o->transition_power == 1.0 ? w : powf(w, (float)o->transition_power);
    }
    for (int32_t s = 0; s < cfg->sources; s++) {
        const float wk = mm->weights ? mm->weights[s] : 1.f;
        st->coef[s] = wk / r->totals[s] / (float)nviews;
    }
    st->nviews = nviews;
    for (int32_t v = 0; v < nviews; v++) {
        if (o->shifts > 0) {
            const int64_t off = r->offsets[(size_t)m * (size_t)o->shifts + (size_t)v];
            st->views[v].start = off - max_shift;
            st->views[v].len = length + max_shift - off;
        } else {
            st->views[v].start = 0;
            st->views[v].len = length;
        }
    }
    st->cur_view = 0;
    st->cur_off = 0;
}

static cdz_status run_tracks(const cdz_segs *cfg, cdz_segs_track *tracks, int32_t n, cdz_segs_check_fn check,
                             void *check_user, bool checked) {
    const int32_t C = cfg->channels, S = cfg->sources, M = cfg->members;
    cdz_status status = CDZ_STATUS_OK;
    sched_slot slots[2];
    memset(slots, 0, sizeof slots);
    cdz_segs_buffers local = {0}, *bufs = cfg->buffers ? cfg->buffers : &local;
    multi_state ms;
    memset(&ms, 0, sizeof ms);
    ms.cfg = cfg;
    ms.n = n;
    ms.check = check;
    ms.check_user = check_user;
    ms.cuda = cfg->ctx && cdz_ctx_device(cfg->ctx).kind == CDZ_DEVICE_CUDA;
    ms.tr = calloc((size_t)n, sizeof *ms.tr);
    if (!ms.tr) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "separate: no host memory for %d tracks", n);

    int64_t max_F = 0;
    int32_t live = 0;
    for (int32_t i = 0; i < n; i++) {
        track_run *r = &ms.tr[i];
        r->t = &tracks[i];
        r->live = true;
        tracks[i].status = CDZ_STATUS_OK;
        memset(&tracks[i].error, 0, sizeof tracks[i].error);
        cdz_error_clear();
        cdz_status st = track_setup(cfg, r, checked, &max_F);
        if (st != CDZ_STATUS_OK) {
            if (!checked) cdz_error_prefix("separate: track %d: ", i);
            track_drop(r, st);
        } else {
            live++;
        }
    }
    if (!live) goto done;

    cdz_arena *arena = ms.cuda ? cdz_ctx_arena(cfg->ctx) : NULL;
    const size_t in_elems = (size_t)cfg->batch * (size_t)C * (size_t)max_F;
    const size_t out_elems = in_elems * (size_t)S;
    if ((uint64_t)max_F > ((uint64_t)1 << 40) / (uint64_t)cfg->batch / (uint64_t)C / (uint64_t)S) {
        status = cdz_error_set(CDZ_STATUS_TOO_LARGE, "separate: a batch of %d x %lld-sample segments is too large",
                               cfg->batch, (long long)max_F);
        goto done;
    }
    for (int i = 0; i < 2; i++) slots[i].jobs = malloc((size_t)cfg->batch * sizeof(sched_job));
    if (!slots[0].jobs || !slots[1].jobs) {
        status = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "separate: no host memory for the scheduler");
        goto done;
    }
    if (ms.cuda && !arena) {
        status = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "separate: the CUDA context has no arena");
        goto done;
    }
    status = ensure_buffers(bufs, in_elems, out_elems, arena);
    if (status != CDZ_STATUS_OK) goto done;
    for (int i = 0; i < 2; i++) {
        slots[i].in = bufs->in[i];
        slots[i].out = bufs->out[i];
    }
    ms.dev_in = bufs->dev_in;
    ms.dev_out = bufs->dev_out;

    for (int32_t i = 0; i < n; i++) {
        const cdz_segs_track *t = &tracks[i];
        if (!ms.tr[i].live) continue;
        for (int32_t s = 0; s < S; s++)
            if (t->stems[s]) memset(t->stems[s], 0, (size_t)C * (size_t)t->length * sizeof(float));
    }
    for (int32_t m = 0; m < M; m++) {
        bool any = false;
        for (int32_t i = 0; i < n; i++) {
            track_run *r = &ms.tr[i];
            if (!r->live || !r->run[m]) continue;
            member_setup(cfg, r, m);
            any = true;
        }
        if (!any) continue;
        ms.m = m;
        ms.F = cfg->member[m].forward_length ? cfg->member[m].forward_length : cfg->member[m].segment;
        ms.cur = 0;
        status = run_member(&ms, slots);
        if (status != CDZ_STATUS_OK) {
            cdz_error_prefix("separate: bag member %d", m);
            goto done;
        }
    }
    poll_tracks(&ms); /* a track cancelled during the last batch finishes as cancelled */
    for (int32_t i = 0; i < n; i++) {
        const track_run *r = &ms.tr[i];
        if (!r->live || !r->cfg.opt.normalize) continue;
        for (int32_t s = 0; s < S; s++) {
            if (!r->t->stems[s]) continue;
            float *y = r->t->stems[s];
            for (size_t k = 0; k < (size_t)C * (size_t)r->t->length; k++) y[k] = y[k] * r->st.scale + r->st.mean;
        }
    }

done:
    if (status != CDZ_STATUS_OK) {
        if (ms.cuda) {
            /* work may still be queued on the buffers about to be freed */
            cdz_error saved = *cdz_last_error();
            cdz_ctx_sync(cfg->ctx);
            cdz_error_set(saved.code, "%s", saved.message);
        }
        for (int32_t i = 0; i < n; i++)
            if (ms.tr[i].live) track_drop(&ms.tr[i], status);
    }
    if (bufs == &local) cdz_segs_buffers_free(&local);
    for (int i = 0; i < 2; i++) free(slots[i].jobs);
    for (int32_t i = 0; i < n; i++) {
        free(ms.tr[i].st.views);
        free(ms.tr[i].st.w);
        free(ms.tr[i].st.sumw);
        free(ms.tr[i].offsets);
    }
    free(ms.tr);
    return status;
}

cdz_status cdz_segs_run(const cdz_segs *cfg, const float *mix, int64_t length, float *const *stems) {
    CDZ_REQUIRE(cfg, "separate: no configuration");
    CDZ_TRY(check_config(cfg, mix, length, stems));
    cdz_segs_track t = {.mix = mix, .length = length, .stems = stems, .opt = cfg->opt};
    const cdz_status st = run_tracks(cfg, &t, 1, NULL, NULL, true);
    if (st == CDZ_STATUS_OK && t.status != CDZ_STATUS_OK)
        return cdz_error_set(t.status, "%s", t.error.message);
    return st;
}

cdz_status cdz_segs_run_tracks(const cdz_segs *cfg, cdz_segs_track *tracks, int32_t n, cdz_segs_check_fn check,
                               void *check_user) {
    CDZ_REQUIRE(cfg, "separate: no configuration");
    CDZ_REQUIRE(n >= 0 && (n == 0 || tracks), "separate: %d tracks", n);
    CDZ_REQUIRE(cfg->channels >= 1 && cfg->sources >= 1 && cfg->sources <= CDZ_SCHED_MAX_SOURCES &&
                    cfg->members >= 1 && cfg->members <= CDZ_SCHED_MAX_MEMBERS && cfg->member && cfg->batch >= 1 &&
                    cfg->samplerate >= 1,
                "separate: %d channels, %d sources, %d members, batch %d, %d Hz", cfg->channels, cfg->sources,
                cfg->members, cfg->batch, cfg->samplerate);
    if (n == 0) return CDZ_STATUS_OK;
    return run_tracks(cfg, tracks, n, check, check_user, false);
}

/* ------------------------------------------------------------------------------------
 * HTDemucs binding
 * ---------------------------------------------------------------------------------- */
typedef struct member_binding {
    cdz_separator *sep;
    int32_t member;
} member_binding;

struct cdz_separator {
    const cdz_htdemucs *model;
    cdz_ctx *ctx;
    int32_t batch;
    cdz_htdemucs_info info;
    cdz_htdemucs_plan *plan[CDZ_HTDEMUCS_MAX_MEMBERS];
    member_binding bind[CDZ_HTDEMUCS_MAX_MEMBERS];
    cdz_segs_buffers buffers; /* staging, reused by every track */
};

cdz_status cdz_separator_create(const cdz_htdemucs *m, cdz_ctx *ctx, int32_t batch, cdz_separator **out) {
    CDZ_REQUIRE(out, "separator: output is NULL");
    *out = NULL;
    CDZ_REQUIRE(m && ctx, "separator: model and context are required");
    CDZ_REQUIRE(batch >= 1 && batch <= 4096, "separator: batch %d (1..4096)", batch);
    cdz_separator *s = calloc(1, sizeof *s);
    if (!s) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "separator: no host memory");
    s->model = m;
    s->ctx = ctx;
    s->batch = batch;
    cdz_htdemucs_get_info(m, &s->info);
    if (s->info.members < 1 || s->info.members > CDZ_HTDEMUCS_MAX_MEMBERS || s->info.sources < 1 ||
        s->info.sources > CDZ_HTDEMUCS_MAX_SOURCES || s->info.audio_channels < 1 || s->info.samplerate < 1) {
        cdz_status st = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                                      "separator: the model reports %d members, %d sources, %d channels, %d Hz",
                                      s->info.members, s->info.sources, s->info.audio_channels,
                                      s->info.samplerate);
        free(s);
        return st;
    }
    for (int32_t i = 0; i < s->info.members; i++) s->bind[i] = (member_binding){s, i};
    *out = s;
    return CDZ_STATUS_OK;
}

void cdz_separator_destroy(cdz_separator *s) {
    if (!s) return;
    bool any = false;
    for (int32_t i = 0; i < CDZ_HTDEMUCS_MAX_MEMBERS; i++) any |= s->plan[i] != NULL;
    if (any || s->buffers.dev_in) cdz_ctx_sync(s->ctx);
    for (int32_t i = 0; i < CDZ_HTDEMUCS_MAX_MEMBERS; i++) cdz_htdemucs_plan_destroy(s->plan[i]);
    cdz_segs_buffers_free(&s->buffers);
    free(s);
}

/* The member's plan, made on first use. When the arena cannot hold it next to the plans of
 * other members, those are dropped and it is tried once more (bags larger than memory run
 * member by member). */
static cdz_status member_plan(cdz_separator *s, int32_t m, cdz_htdemucs_plan **out) {
    if (!s->plan[m]) {
        cdz_status st = cdz_htdemucs_plan_create(s->model, m, s->ctx, s->batch, &s->plan[m]);
        if (st == CDZ_STATUS_OUT_OF_MEMORY) {
            bool dropped = false;
            for (int32_t i = 0; i < CDZ_HTDEMUCS_MAX_MEMBERS; i++) {
                if (i == m || !s->plan[i]) continue;
                if (!dropped) CDZ_TRY(cdz_ctx_sync(s->ctx));
                cdz_htdemucs_plan_destroy(s->plan[i]);
                s->plan[i] = NULL;
                dropped = true;
            }
            if (dropped) st = cdz_htdemucs_plan_create(s->model, m, s->ctx, s->batch, &s->plan[m]);
        }
        if (st != CDZ_STATUS_OK) {
            s->plan[m] = NULL;
            if (st == CDZ_STATUS_OUT_OF_MEMORY)
                cdz_error_prefix("a plan for %d segments does not fit (try a smaller --batch)", s->batch);
            return st;
        }
    }
    *out = s->plan[m];
    return CDZ_STATUS_OK;
}

static cdz_status htdemucs_segment(void *user, const float *in, float *out, int32_t b) {
    member_binding *mb = user;
    cdz_separator *s = mb->sep;
    cdz_htdemucs_plan *plan;
    CDZ_TRY(member_plan(s, mb->member, &plan));
    const int64_t F = s->info.member_segment[mb->member];
    const cdz_device dev = cdz_ctx_device(s->ctx);
    cdz_tensor x, y;
    CDZ_TRY(cdz_tensor_init(&x, (void *)in, CDZ_DTYPE_F32, dev, 3, (int64_t[]){b, s->info.audio_channels, F}));
    CDZ_TRY(cdz_tensor_init(&y, out, CDZ_DTYPE_F32, dev, 4,
                            (int64_t[]){b, s->info.sources, s->info.audio_channels, F}));
    return cdz_htdemucs_forward(plan, &x, &y);
}

/* The caller's check sees its own track numbers (failed tracks are not in the run). */
typedef struct sep_check_ctx {
    cdz_segs_check_fn fn;
    void *user;
    const int32_t *idx;
} sep_check_ctx;

static cdz_status sep_check(void *user, int32_t track) {
    const sep_check_ctx *c = user;
    return c->fn(c->user, c->idx[track]);
}

/* cdz_separate's checks of one track; seg[m]: each member's chunk length for its options. */
static cdz_status separate_check(const cdz_separator *s, const cdz_separate_options *opt, const cdz_audio *mix,
                                 int64_t *seg) {
    const cdz_htdemucs_info *info = &s->info;
    CDZ_REQUIRE(mix->data && mix->frames >= 1, "separate: the track is empty");
    CDZ_REQUIRE(mix->channels == info->audio_channels,
                "separate: the track has %d channels, the model takes %d (convert it first: "
                "cdz_audio_to_channels)", mix->channels, info->audio_channels);
    CDZ_REQUIRE(mix->samplerate == info->samplerate,
                "separate: the track is at %d Hz, the model at %d Hz (resample it first: cdz_audio_resample)",
                mix->samplerate, info->samplerate);
    CDZ_REQUIRE(opt->segment_seconds == 0.0 || (isfinite(opt->segment_seconds) && opt->segment_seconds > 0.0),
                "separate: segment of %g s (must be > 0; 0 for the model's)", opt->segment_seconds);
    for (int32_t m = 0; m < info->members; m++) {
        const int64_t train = info->member_segment[m];
        seg[m] = train;
        if (opt->segment_seconds > 0.0) {
            /* apply_model: int(samplerate * segment) */
            const double v = (double)info->samplerate * opt->segment_seconds;
            seg[m] = v >= 9.2e18 ? INT64_MAX : (int64_t)v;
            CDZ_REQUIRE(seg[m] >= 1, "separate: a segment of %g s is less than one sample", opt->segment_seconds);
            CDZ_REQUIRE(seg[m] <= train,
                        "separate: segment %g s (%lld samples) is longer than bag member %d was trained on "
                        "(%.4g s, %lld samples); a Transformer model cannot run longer segments",
                        opt->segment_seconds, (long long)seg[m], m, (double)train / info->samplerate,
                        (long long)train);
        }
    }
    return CDZ_STATUS_OK;
}

/* The scheduler's view of the separator's members (chunk lengths: seg, or the trained ones). */
static cdz_segs separator_cfg(cdz_separator *s, const int64_t *seg, cdz_segs_member *members) {
    const cdz_htdemucs_info *info = &s->info;
    for (int32_t m = 0; m < info->members; m++)
        members[m] = (cdz_segs_member){
            .forward = htdemucs_segment,
            .user = &s->bind[m],
            .segment = seg ? seg[m] : info->member_segment[m],
            .forward_length = info->member_segment[m],
            .weights = info->weights[m],
        };
    return (cdz_segs){
        .channels = info->audio_channels,
        .sources = info->sources,
        .samplerate = info->samplerate,
        .members = info->members,
        .member = members,
        .batch = s->batch,
        .ctx = s->ctx,
        .buffers = &s->buffers,
    };
}

cdz_status cdz_separate(cdz_separator *s, const cdz_separate_options *opt, const cdz_audio *mix,
                        float *const *stems) {
    CDZ_REQUIRE(s && opt && mix && stems, "separate: separator, options, mix and stems are required");
    int64_t seg[CDZ_HTDEMUCS_MAX_MEMBERS];
    CDZ_TRY(separate_check(s, opt, mix, seg));
    cdz_segs_member members[CDZ_HTDEMUCS_MAX_MEMBERS];
    cdz_segs cfg = separator_cfg(s, seg, members);
    cfg.opt = *opt;
    return cdz_segs_run(&cfg, mix->data, mix->frames, stems);
}

cdz_status cdz_separate_tracks(cdz_separator *s, cdz_separate_track *tracks, int32_t n, cdz_segs_check_fn check,
                               void *check_user) {
    CDZ_REQUIRE(s && n >= 0 && (n == 0 || tracks), "separate: separator and tracks are required");
    if (n == 0) return CDZ_STATUS_OK;
    const int32_t M = s->info.members;
    cdz_segs_track *st = calloc((size_t)n, sizeof *st);
    int64_t *seg = calloc((size_t)n * (size_t)M, sizeof *seg);
    if (!st || !seg) {
        free(st);
        free(seg);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "separate: no host memory for %d tracks", n);
    }
    /* tracks that fail cdz_separate's checks are left out of the run */
    int32_t k = 0;
    int32_t *idx = malloc((size_t)n * sizeof *idx);
    if (!idx) {
        free(st);
        free(seg);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "separate: no host memory for %d tracks", n);
    }
    for (int32_t i = 0; i < n; i++) {
        cdz_separate_track *t = &tracks[i];
        t->status = CDZ_STATUS_OK;
        memset(&t->error, 0, sizeof t->error);
        cdz_error_clear();
        int64_t *sg = seg + (size_t)k * (size_t)M;
        if (separate_check(s, &t->opt, &t->mix, sg) != CDZ_STATUS_OK) {
            t->error = *cdz_last_error();
            t->status = t->error.code;
            continue;
        }
        st[k] = (cdz_segs_track){.mix = t->mix.data, .length = t->mix.frames, .stems = t->stems, .opt = t->opt,
                                 .segment = sg};
        idx[k++] = i;
    }
    cdz_segs_member members[CDZ_HTDEMUCS_MAX_MEMBERS];
    cdz_segs cfg = separator_cfg(s, NULL, members);
    cdz_separate_options_default(&cfg.opt);
    sep_check_ctx cc = {check, check_user, idx};
    cdz_status status = k ? cdz_segs_run_tracks(&cfg, st, k, check ? sep_check : NULL, &cc) : CDZ_STATUS_OK;
    for (int32_t j = 0; j < k; j++) {
        tracks[idx[j]].status = st[j].status;
        tracks[idx[j]].error = st[j].error;
    }
    free(idx);
    free(st);
    free(seg);
    return status;
}
