/*
 * stream_htdemucs.c: incremental apply_model (stream_htdemucs.h explains the arithmetic).
 *
 * State, in track coordinates: the input samples [in_base, in_base + in_len); the next chunk
 * offset to hand out (next_o); the windows handed out and not yet added (a FIFO of offsets and
 * lengths); the accumulators out/sum_w over [out_base, out_base + out_len), out_base being the
 * first sample not yet taken.
 */
#include "stream_htdemucs.h"

#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct cdz_stream_sep {
    cdz_stream_sep_config cfg;
    int64_t seg, fwd, stride;
    float *w;                  /* [seg] apply_model's weight */
    float *in;                 /* [C][in_cap] */
    int64_t in_base, in_len, in_cap;
    bool ended;
    int64_t total;             /* samples pushed (= L once ended) */
    int64_t next_o;            /* next chunk offset to hand out */
    int64_t *fifo_o, *fifo_n;  /* windows in flight (ring) */
    int64_t fifo_head, fifo_count, fifo_cap;
    float *acc;                /* [S][C][acc_cap] */
    float *sw;                 /* [acc_cap] */
    int64_t out_base, acc_cap;
};

void cdz_stream_sep_destroy(cdz_stream_sep *s) {
    if (!s) return;
    free(s->w);
    free(s->in);
    free(s->fifo_o);
    free(s->fifo_n);
    free(s->acc);
    free(s->sw);
    free(s);
}

cdz_status cdz_stream_sep_create(const cdz_stream_sep_config *cfg, cdz_stream_sep **out) {
    *out = NULL;
    CDZ_REQUIRE(cfg->channels >= 1 && cfg->sources >= 1, "stream separate: %d channels, %d sources",
                cfg->channels, cfg->sources);
    CDZ_REQUIRE(cfg->shifts == 0,
                "stream separate: shifts = %d, but a stream needs shifts = 0 (the shift trick reads "
                "past the end of the track, which a stream does not have yet)", cfg->shifts);
    CDZ_REQUIRE(cfg->segment >= 2 && cfg->segment <= (1ll << 30), "stream separate: segment %lld samples",
                (long long)cfg->segment);
    CDZ_REQUIRE(cfg->forward_length == 0 || cfg->forward_length >= cfg->segment,
                "stream separate: forward_length %lld < segment %lld", (long long)cfg->forward_length,
                (long long)cfg->segment);
    CDZ_REQUIRE(cfg->overlap >= 0 && cfg->overlap < 1, "stream separate: overlap %g not in [0, 1)", cfg->overlap);
    CDZ_REQUIRE(cfg->transition_power >= 1 && isfinite(cfg->transition_power),
                "stream separate: transition_power %g < 1", cfg->transition_power);
    CDZ_REQUIRE(cfg->max_push >= 1 && cfg->max_push <= (1ll << 34), "stream separate: max_push %lld",
                (long long)cfg->max_push);
    cdz_stream_sep *s = calloc(1, sizeof *s);
    if (!s) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "stream separate: no host memory");
    s->cfg = *cfg;
    s->seg = cfg->segment;
    s->fwd = cfg->forward_length ? cfg->forward_length : cfg->segment;
    s->stride = (int64_t)((1.0 - cfg->overlap) * (double)s->seg);
    if (s->stride < 1) s->stride = 1;
    const int64_t C = cfg->channels, S = cfg->sources;
    s->in_cap = s->seg + cfg->max_push + 1;
    s->acc_cap = s->seg + cfg->max_push + s->stride + 1;
    /* windows in flight: at most the chunks that start in the buffered input, plus the tail */
    s->fifo_cap = (s->in_cap + s->seg) / s->stride + 4;
    s->w = malloc(sizeof(float) * (size_t)s->seg);
    s->in = malloc(sizeof(float) * (size_t)(C * s->in_cap));
    s->fifo_o = malloc(sizeof(int64_t) * (size_t)s->fifo_cap);
    s->fifo_n = malloc(sizeof(int64_t) * (size_t)s->fifo_cap);
    s->acc = calloc((size_t)(S * C * s->acc_cap), sizeof(float));
    s->sw = calloc((size_t)s->acc_cap, sizeof(float));
    if (!s->w || !s->in || !s->fifo_o || !s->fifo_n || !s->acc || !s->sw) {
        cdz_stream_sep_destroy(s);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "stream separate: no host memory for a %lld-sample segment",
                             (long long)cfg->segment);
    }
    /* weight = cat(arange(1, seg//2 + 1), arange(seg - seg//2, 0, -1)); (weight / max) ** power, f32 */
    const int64_t half = s->seg / 2;
    float mx = 0;
    for (int64_t j = 0; j < s->seg; j++) {
        s->w[j] = (float)(j < half ? j + 1 : s->seg - j);
        if (s->w[j] > mx) mx = s->w[j];
    }
    for (int64_t j = 0; j < s->seg; j++) {
        float v = s->w[j] / mx;
        s->w[j] = cfg->transition_power == 1.0 ? v : powf(v, (float)cfg->transition_power);
    }
    *out = s;
    return CDZ_STATUS_OK;
}

/* Drop input no future window can read: full windows start at next_o or later; a tail window
 * (o >= next_o, n = L - o < seg, L >= total) starts at o - (seg - n) / 2 >= (next_o + total - seg) / 2. */
static void trim_input(cdz_stream_sep *s) {
    if (s->ended) return;
    int64_t keep = s->next_o;
    int64_t t = s->next_o + s->total - s->seg;
    int64_t tail = t >= 0 ? t / 2 : -((-t + 1) / 2);
    if (tail < keep) keep = tail;
    if (keep < 0) keep = 0;
    if (keep <= s->in_base) return;
    const int64_t drop = keep - s->in_base;
    for (int32_t c = 0; c < s->cfg.channels; c++)
        memmove(s->in + c * s->in_cap, s->in + c * s->in_cap + drop, sizeof(float) * (size_t)(s->in_len - drop));
    s->in_base = keep;
    s->in_len -= drop;
}

cdz_status cdz_stream_sep_push(cdz_stream_sep *s, const float *x, int64_t n, int64_t ld) {
    CDZ_REQUIRE(!s->ended, "stream separate: samples pushed after the end of the input");
    CDZ_REQUIRE(n >= 1 && n <= s->cfg.max_push, "stream separate: a push of %lld samples (1..%lld per push)",
                (long long)n, (long long)s->cfg.max_push);
    CDZ_REQUIRE(ld >= n, "stream separate: row stride %lld < %lld samples", (long long)ld, (long long)n);
    trim_input(s);
    if (s->in_len + n > s->in_cap)
        return cdz_error_set(CDZ_STATUS_INTERNAL,
                             "stream separate: %lld samples held + %lld pushed exceed the bound %lld "
                             "(windows were not taken with next_window before this push)",
                             (long long)s->in_len, (long long)n, (long long)s->in_cap);
    for (int32_t c = 0; c < s->cfg.channels; c++)
        memcpy(s->in + c * s->in_cap + s->in_len, x + c * ld, sizeof(float) * (size_t)n);
    s->in_len += n;
    s->total += n;
    return CDZ_STATUS_OK;
}

cdz_status cdz_stream_sep_end(cdz_stream_sep *s) {
    CDZ_REQUIRE(!s->ended, "stream separate: the input already ended");
    CDZ_REQUIRE(s->total >= 1, "stream separate: the stream ended without a sample");
    s->ended = true;
    return CDZ_STATUS_OK;
}

bool cdz_stream_sep_next_window(cdz_stream_sep *s, float *win) {
    const int64_t o = s->next_o, seg = s->seg;
    int64_t n, start;
    if (s->fifo_count == s->fifo_cap) return false;
    if (o + seg <= s->total) {
        n = seg;
        start = o;
    } else if (s->ended && o < s->total) {
        n = s->total - o;
        start = o - (seg - n) / 2;
    } else {
        return false;
    }
    for (int32_t c = 0; c < s->cfg.channels; c++) {
        float *dst = win + (int64_t)c * s->fwd;
        const float *src = s->in + (int64_t)c * s->in_cap;
        for (int64_t j = 0; j < s->fwd; j++) {
            const int64_t p = start + j;
            dst[j] = j < seg && p >= 0 && p < s->total ? src[p - s->in_base] : 0.0f;
        }
    }
    const int64_t slot = (s->fifo_head + s->fifo_count) % s->fifo_cap;
    s->fifo_o[slot] = o;
    s->fifo_n[slot] = n;
    s->fifo_count++;
    s->next_o = o + s->stride;
    return true;
}

static int64_t frontier(const cdz_stream_sep *s) {
    if (s->fifo_count) return s->fifo_o[s->fifo_head];
    if (s->ended && s->next_o >= s->total) return s->total;
    return s->next_o < s->total ? s->next_o : s->total;
}

cdz_status cdz_stream_sep_add(cdz_stream_sep *s, const float *y) {
    CDZ_REQUIRE(s->fifo_count > 0, "stream separate: an output added with no window in flight");
    const int64_t o = s->fifo_o[s->fifo_head], n = s->fifo_n[s->fifo_head];
    const int64_t need = o + n - s->out_base;
    if (need > s->acc_cap) { /* only when the caller does not take finished samples */
        const int64_t S = s->cfg.sources, C = s->cfg.channels, cap = need + s->seg;
        float *acc = calloc((size_t)(S * C * cap), sizeof(float));
        float *sw = calloc((size_t)cap, sizeof(float));
        if (!acc || !sw) {
            free(acc);
            free(sw);
            return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "stream separate: no host memory (output not taken)");
        }
        for (int64_t r = 0; r < S * C; r++) memcpy(acc + r * cap, s->acc + r * s->acc_cap, sizeof(float) * (size_t)s->acc_cap);
        memcpy(sw, s->sw, sizeof(float) * (size_t)s->acc_cap);
        free(s->acc);
        free(s->sw);
        s->acc = acc;
        s->sw = sw;
        s->acc_cap = cap;
    }
    const int64_t trim = (s->seg - n) / 2; /* center_trim of the forward's output to n */
    const int64_t at = o - s->out_base;
    for (int32_t k = 0; k < s->cfg.sources; k++)
        for (int32_t c = 0; c < s->cfg.channels; c++) {
            float *a = s->acc + ((int64_t)k * s->cfg.channels + c) * s->acc_cap + at;
            const float *src = y + ((int64_t)k * s->cfg.channels + c) * s->fwd + trim;
            for (int64_t j = 0; j < n; j++) a[j] += s->w[j] * src[j];
        }
    for (int64_t j = 0; j < n; j++) s->sw[at + j] += s->w[j];
    s->fifo_head = (s->fifo_head + 1) % s->fifo_cap;
    s->fifo_count--;
    return CDZ_STATUS_OK;
}

int64_t cdz_stream_sep_ready(const cdz_stream_sep *s) { return frontier(s) - s->out_base; }
int64_t cdz_stream_sep_taken(const cdz_stream_sep *s) { return s->out_base; }
int64_t cdz_stream_sep_buffered(const cdz_stream_sep *s) { return s->in_len; }

bool cdz_stream_sep_finished(const cdz_stream_sep *s) {
    return s->ended && s->fifo_count == 0 && s->next_o >= s->total && s->out_base == s->total;
}

cdz_status cdz_stream_sep_take(cdz_stream_sep *s, float *const *dst, int64_t ld, int64_t n) {
    CDZ_REQUIRE(n >= 0 && n <= cdz_stream_sep_ready(s), "stream separate: take %lld of %lld ready samples",
                (long long)n, (long long)cdz_stream_sep_ready(s));
    CDZ_REQUIRE(n == 0 || ld >= n, "stream separate: row stride %lld < %lld", (long long)ld, (long long)n);
    if (n == 0) return CDZ_STATUS_OK;
    const int64_t S = s->cfg.sources, C = s->cfg.channels;
    for (int64_t k = 0; k < S; k++)
        for (int64_t c = 0; c < C; c++) {
            float *a = s->acc + (k * C + c) * s->acc_cap;
            if (dst && dst[k])
                for (int64_t j = 0; j < n; j++) dst[k][c * ld + j] = a[j] / s->sw[j];
            memmove(a, a + n, sizeof(float) * (size_t)(s->acc_cap - n));
            memset(a + s->acc_cap - n, 0, sizeof(float) * (size_t)n);
        }
    memmove(s->sw, s->sw + n, sizeof(float) * (size_t)(s->acc_cap - n));
    memset(s->sw + s->acc_cap - n, 0, sizeof(float) * (size_t)n);
    s->out_base += n;
    return CDZ_STATUS_OK;
}

cdz_status cdz_stream_sep_drive(cdz_stream_sep *s, cdz_segment_fn fwd, void *user) {
    const int64_t C = s->cfg.channels, S = s->cfg.sources;
    float *win = malloc(sizeof(float) * (size_t)(C * s->fwd));
    float *y = malloc(sizeof(float) * (size_t)(S * C * s->fwd));
    cdz_status st = win && y ? CDZ_STATUS_OK : cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "stream separate: no host memory");
    while (st == CDZ_STATUS_OK && cdz_stream_sep_next_window(s, win)) {
        st = fwd(user, win, y, 1);
        if (st == CDZ_STATUS_OK) st = cdz_stream_sep_add(s, y);
    }
    free(win);
    free(y);
    return st;
}
