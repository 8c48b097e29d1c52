/*
 * separate.c: apply_model for whole tracks. The generic segment scheduler (cdz_segs_run,
 * semantics in separate.h) and its binding to HTDemucs plans (cdz_separator, cdz_separate).
 */
#include <math.h>
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
    bool cuda;
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
    void *dev_in, *dev_out;
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

static cdz_status queue_batch(sched_state *st, sched_slot *slot) {
    const cdz_segs *cfg = st->cfg;
    const size_t in_bytes = (size_t)slot->n * (size_t)cfg->channels * (size_t)st->F * sizeof(float);
    const size_t out_bytes = in_bytes * (size_t)cfg->sources;
    if (!st->cuda) return st->mem->forward(st->mem->user, slot->in, slot->out, slot->n);
    CDZ_TRY(cdz_copy_to_device(cfg->ctx, st->dev_in, slot->in, in_bytes));
    CDZ_TRY(st->mem->forward(st->mem->user, st->dev_in, st->dev_out, slot->n));
    return cdz_copy_to_host(cfg->ctx, slot->out, st->dev_out, out_bytes);
}

static void fill_slot(sched_state *st, sched_slot *slot) {
    const cdz_segs *cfg = st->cfg;
    slot->n = 0;
    while (slot->n < cfg->batch && next_job(st, &slot->jobs[slot->n])) {
        fill_window(st, &slot->jobs[slot->n],
                    slot->in + (size_t)slot->n * (size_t)cfg->channels * (size_t)st->F);
        slot->n++;
    }
}

static void drain_slot(sched_state *st, const sched_slot *slot) {
    const cdz_segs *cfg = st->cfg;
    const size_t item = (size_t)cfg->sources * (size_t)cfg->channels * (size_t)st->F;
    for (int32_t i = 0; i < slot->n; i++) accumulate(st, &slot->jobs[i], slot->out + (size_t)i * item);
    st->done += slot->n;
    if (cfg->opt.progress) cfg->opt.progress(cfg->opt.progress_user, st->done, st->total);
}

/* All chunks of the current member through its forward, two slots in flight:
 * while the device runs one batch, the host drains the previous one and fills the next. */
static cdz_status run_member(sched_state *st, sched_slot slots[2]) {
    cdz_ctx *ctx = st->cfg->ctx;
    fill_slot(st, &slots[0]);
    if (slots[0].n == 0) return CDZ_STATUS_OK;
    CDZ_TRY(queue_batch(st, &slots[0]));
    fill_slot(st, &slots[1]);
    for (int a = 0;; a ^= 1) {
        sched_slot *done = &slots[a], *next = &slots[a ^ 1];
        if (st->cuda) CDZ_TRY(cdz_ctx_sync(ctx));
        if (next->n > 0) CDZ_TRY(queue_batch(st, next));
        drain_slot(st, done);
        if (next->n == 0) return CDZ_STATUS_OK;
        fill_slot(st, done);
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

cdz_status cdz_segs_run(const cdz_segs *cfg, const float *mix, int64_t length, float *const *stems) {
    CDZ_REQUIRE(cfg, "separate: no configuration");
    CDZ_TRY(check_config(cfg, mix, length, stems));
    const cdz_separate_options *o = &cfg->opt;
    const int32_t C = cfg->channels, S = cfg->sources, M = cfg->members;
    const int64_t max_shift = cfg->samplerate / 2;
    const int32_t nviews = o->shifts > 0 ? o->shifts : 1;

    sched_state st;
    memset(&st, 0, sizeof st);
    st.cfg = cfg;
    st.mix = mix;
    st.L = length;
    st.stems = stems;
    st.cuda = cfg->ctx && cdz_ctx_device(cfg->ctx).kind == CDZ_DEVICE_CUDA;
    st.mean = 0.f;
    st.scale = 1.f;
    if (o->normalize) {
        float sd;
        cdz_segs_track_stats(mix, C, length, &st.mean, &sd);
        st.scale = sd + 1e-8f;
    }

    /* offsets (member-major, as apply_model's recursion draws them) and per-member totals */
    int64_t *offsets = NULL;
    float totals[CDZ_SCHED_MAX_SOURCES];
    bool run[CDZ_SCHED_MAX_MEMBERS];
    if (o->shifts > 0) {
        offsets = malloc((size_t)M * (size_t)o->shifts * sizeof *offsets);
        if (!offsets) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "separate: no host memory");
        if (o->shift_offsets) memcpy(offsets, o->shift_offsets, (size_t)M * (size_t)o->shifts * sizeof *offsets);
        else cdz_segs_draw_offsets(o->seed, M, o->shifts, max_shift, offsets);
    }
    for (int32_t s = 0; s < S; s++) {
        totals[s] = 0.f;
        for (int32_t m = 0; m < M; m++) totals[s] += cfg->member[m].weights ? cfg->member[m].weights[s] : 1.f;
    }
    /* a member whose weights are 0 for every requested stem cannot change the result */
    int64_t max_F = 0, max_seg = 0;
    for (int32_t m = 0; m < M; m++) {
        const cdz_segs_member *mm = &cfg->member[m];
        run[m] = false;
        for (int32_t s = 0; s < S; s++)
            if (stems[s] && (mm->weights ? mm->weights[s] : 1.f) != 0.f) run[m] = true;
        if (!run[m]) continue;
        const int64_t F = mm->forward_length ? mm->forward_length : mm->segment;
        const int64_t stride = (int64_t)((1.0 - o->overlap) * (double)mm->segment);
        if (F > max_F) max_F = F;
        if (mm->segment > max_seg) max_seg = mm->segment;
        for (int32_t v = 0; v < nviews; v++) {
            const int64_t len = o->shifts > 0 ? length + max_shift - offsets[(size_t)m * (size_t)o->shifts + (size_t)v]
                                              : length;
            st.total += cdz_segs_chunk_count(len, stride);
        }
    }

    cdz_status status = CDZ_STATUS_OK;
    sched_slot slots[2];
    memset(slots, 0, sizeof slots);
    cdz_segs_buffers local = {0}, *bufs = cfg->buffers ? cfg->buffers : &local;
    cdz_arena *arena = st.cuda ? cdz_ctx_arena(cfg->ctx) : NULL;
    const size_t in_elems = (size_t)cfg->batch * (size_t)C * (size_t)max_F;
    const size_t out_elems = in_elems * (size_t)S;
    if ((uint64_t)max_F > ((uint64_t)1 << 40) / (uint64_t)cfg->batch / (uint64_t)C / (uint64_t)S) {
        status = cdz_error_set(CDZ_STATUS_TOO_LARGE, "separate: a batch of %d x %lld-sample segments is too large",
                               cfg->batch, (long long)max_F);
        goto done;
    }
    st.views = malloc((size_t)nviews * sizeof *st.views);
    st.w = malloc((size_t)max_seg * sizeof(float));
    st.sumw = malloc((size_t)max_seg * sizeof(float));
    for (int i = 0; i < 2; i++) slots[i].jobs = malloc((size_t)cfg->batch * sizeof(sched_job));
    if (!st.views || !st.w || !st.sumw || !slots[0].jobs || !slots[1].jobs) {
        status = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "separate: no host memory for the scheduler");
        goto done;
    }
    if (st.cuda && !arena) {
        status = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "separate: the CUDA context has no arena");
        goto done;
    }
    status = ensure_buffers(bufs, in_elems, out_elems, arena);
    if (status != CDZ_STATUS_OK) goto done;
    for (int i = 0; i < 2; i++) {
        slots[i].in = bufs->in[i];
        slots[i].out = bufs->out[i];
    }
    st.dev_in = bufs->dev_in;
    st.dev_out = bufs->dev_out;

    for (int32_t s = 0; s < S; s++)
        if (stems[s]) memset(stems[s], 0, (size_t)C * (size_t)length * sizeof(float));
    for (int32_t m = 0; m < M; m++) {
        if (!run[m]) continue;
        const cdz_segs_member *mm = &cfg->member[m];
        st.mem = mm;
        st.seg = mm->segment;
        st.F = mm->forward_length ? mm->forward_length : mm->segment;
        st.stride = (int64_t)((1.0 - o->overlap) * (double)mm->segment);
        /* weight = cat(arange(1, seg//2 + 1), arange(seg - seg//2, 0, -1)) / max, ^ power (f32) */
        const int64_t half = st.seg / 2, wmax = st.seg - half;
        for (int64_t i = 0; i < st.seg; i++) {
            const int64_t a = i < half ? i + 1 : st.seg - i;
            float w = (float)a / (float)wmax;
            st.w[i] = o->transition_power == 1.0 ? w : powf(w, (float)o->transition_power);
        }
        for (int32_t s = 0; s < S; s++) {
            const float wk = mm->weights ? mm->weights[s] : 1.f;
            st.coef[s] = wk / totals[s] / (float)nviews;
        }
        st.nviews = nviews;
        for (int32_t v = 0; v < nviews; v++) {
            if (o->shifts > 0) {
                const int64_t off = offsets[(size_t)m * (size_t)o->shifts + (size_t)v];
                st.views[v].start = off - max_shift;
                st.views[v].len = length + max_shift - off;
            } else {
                st.views[v].start = 0;
                st.views[v].len = length;
            }
        }
        st.cur_view = 0;
        st.cur_off = 0;
        status = run_member(&st, slots);
        if (status != CDZ_STATUS_OK) {
            cdz_error_prefix("separate: bag member %d", m);
            goto done;
        }
    }
    if (o->normalize) {
        for (int32_t s = 0; s < S; s++) {
            if (!stems[s]) continue;
            float *y = stems[s];
            for (size_t i = 0; i < (size_t)C * (size_t)length; i++) y[i] = y[i] * st.scale + st.mean;
        }
    }

done:
    if (status != CDZ_STATUS_OK && st.cuda) {
        /* work may still be queued on the buffers about to be freed */
        cdz_error saved = *cdz_last_error();
        cdz_ctx_sync(cfg->ctx);
        cdz_error_set(saved.code, "%s", saved.message);
    }
    if (bufs == &local) cdz_segs_buffers_free(&local);
    for (int i = 0; i < 2; i++) free(slots[i].jobs);
    free(st.views);
    free(st.w);
    free(st.sumw);
    free(offsets);
    return status;
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

cdz_status cdz_separate(cdz_separator *s, const cdz_separate_options *opt, const cdz_audio *mix,
                        float *const *stems) {
    CDZ_REQUIRE(s && opt && mix && stems, "separate: separator, options, mix and stems are required");
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
    cdz_segs_member members[CDZ_HTDEMUCS_MAX_MEMBERS];
    for (int32_t m = 0; m < info->members; m++) {
        const int64_t train = info->member_segment[m];
        int64_t seg = train;
        if (opt->segment_seconds > 0.0) {
            /* apply_model: int(samplerate * segment) */
            const double v = (double)info->samplerate * opt->segment_seconds;
            seg = v >= 9.2e18 ? INT64_MAX : (int64_t)v;
            CDZ_REQUIRE(seg >= 1, "separate: a segment of %g s is less than one sample", opt->segment_seconds);
            CDZ_REQUIRE(seg <= train,
                        "separate: segment %g s (%lld samples) is longer than bag member %d was trained on "
                        "(%.4g s, %lld samples); a Transformer model cannot run longer segments",
                        opt->segment_seconds, (long long)seg, m, (double)train / info->samplerate,
                        (long long)train);
        }
        members[m] = (cdz_segs_member){
            .forward = htdemucs_segment,
            .user = &s->bind[m],
            .segment = seg,
            .forward_length = train,
            .weights = info->weights[m],
        };
    }
    cdz_segs cfg = {
        .channels = info->audio_channels,
        .sources = info->sources,
        .samplerate = info->samplerate,
        .members = info->members,
        .member = members,
        .batch = s->batch,
        .ctx = s->ctx,
        .buffers = &s->buffers,
        .opt = *opt,
    };
    return cdz_segs_run(&cfg, mix->data, mix->frames, stems);
}
