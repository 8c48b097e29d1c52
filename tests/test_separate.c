/*
 * test_separate: the segment scheduler (models/separate.c) against apply_model.
 *
 * Fake models run through cdz_segs_run on small numbers (samplerate 200, so max_shift 100;
 * segments of 30-41 samples, forwards of up to 48):
 *   - gain models (out[s] = g_s * window) must give back g_s * track after the overlap-add,
 *     for overlap 0 / 0.25 / 0.5, shifts 0 / 1 / 2, tracks shorter than a segment, exactly
 *     a segment, exact multiples of the stride, a 1-sample last chunk, and odd lengths;
 *   - a nonlinear, position-dependent model (g x + a x^2 + b i/F + e mean(window)) is
 *     compared with apply_model written out here literally in double precision (TensorChunk
 *     padding, center_trim, the transition weight, sum_weight, the shift crop, the bag
 *     weighting and the api.Separator normalisation), so misplaced windows, weights or
 *     offsets show;
 *   - bags (3 members with their own segments and weights), skipping of members that do
 *     not contribute to the requested stems, determinism across batch sizes and runs,
 *     seeds and injected offsets, progress reports, and every refusal.
 * Then, when the tiny HTDemucs reference exists (weights-tools/make_demucs_reference.py),
 * cdz_separate with the real forward against PyTorch's apply_model outputs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "../models/separate.h"

#define SR 200
#define MAXS 4

/* ------------------------------------------------------------------------------------
 * fake models
 * ---------------------------------------------------------------------------------- */
enum { FAKE_GAIN, FAKE_NONLINEAR };

typedef struct fake {
    int kind;
    int32_t S, C;
    int64_t F;
    double g[MAXS], a[MAXS], b[MAXS], e[MAXS];
    int64_t calls, items;
    int32_t max_b;
    int fail_on_call; /* > 0: that call returns DEVICE */
} fake;

/* the model in double: win [C][F] -> out [S][C][F] */
static void fake_eval(const fake *fm, const double *win, double *out) {
    for (int32_t c = 0; c < fm->C; c++) {
        const double *x = win + (size_t)c * (size_t)fm->F;
        double mean = 0;
        for (int64_t i = 0; i < fm->F; i++) mean += x[i];
        mean /= (double)fm->F;
        for (int32_t s = 0; s < fm->S; s++) {
            double *y = out + ((size_t)s * (size_t)fm->C + (size_t)c) * (size_t)fm->F;
            for (int64_t i = 0; i < fm->F; i++) {
                y[i] = fm->g[s] * x[i];
                if (fm->kind == FAKE_NONLINEAR)
                    y[i] += fm->a[s] * x[i] * x[i] + fm->b[s] * (double)i / (double)fm->F + fm->e[s] * mean;
            }
        }
    }
}

static cdz_status fake_forward(void *user, const float *in, float *out, int32_t b) {
    fake *fm = user;
    fm->calls++;
    fm->items += b;
    if (b > fm->max_b) fm->max_b = b;
    if (fm->fail_on_call && fm->calls == fm->fail_on_call)
        return cdz_error_set(CDZ_STATUS_DEVICE, "fake forward failed on call %lld", (long long)fm->calls);
    const size_t nin = (size_t)fm->C * (size_t)fm->F, nout = nin * (size_t)fm->S;
    double *win = malloc(nin * sizeof(double)), *y = malloc(nout * sizeof(double));
    if (!win || !y) {
        free(win);
        free(y);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "fake forward");
    }
    for (int32_t k = 0; k < b; k++) {
        for (size_t i = 0; i < nin; i++) win[i] = in[(size_t)k * nin + i];
        fake_eval(fm, win, y);
        for (size_t i = 0; i < nout; i++) out[(size_t)k * nout + i] = (float)y[i];
    }
    free(win);
    free(y);
    return CDZ_STATUS_OK;
}

static void fake_init(th_suite *s, fake *fm, int kind, int32_t S, int32_t C, int64_t F) {
    memset(fm, 0, sizeof *fm);
    fm->kind = kind;
    fm->S = S;
    fm->C = C;
    fm->F = F;
    for (int32_t k = 0; k < S; k++) {
        fm->g[k] = th_rand_uniform(s, 0.5, 2.0) * (k % 2 ? -1 : 1);
        fm->a[k] = th_rand_uniform(s, -0.5, 0.5);
        fm->b[k] = th_rand_uniform(s, -0.5, 0.5);
        fm->e[k] = th_rand_uniform(s, -1.0, 1.0);
    }
}

/* ------------------------------------------------------------------------------------
 * apply_model, literally, in double
 * ---------------------------------------------------------------------------------- */
typedef struct ref_track {
    const double *x; /* normalised [C][L] */
    int32_t C;
    int64_t L;
} ref_track;

/* the track zero-extended on both sides (TensorChunk.padded / the shift padding) */
static double xz(const ref_track *t, int32_t c, int64_t i) {
    return i >= 0 && i < t->L ? t->x[(size_t)c * (size_t)t->L + (size_t)i] : 0.0;
}

/* apply_model(split=True, shifts=0) over the view [start, start + len) of the track:
 * out [S][C][len] */
static void ref_split(const ref_track *t, const fake *fm, int64_t seg, double overlap, double tp, int64_t start,
                      int64_t len, double *out) {
    const int32_t S = fm->S, C = t->C;
    const int64_t F = fm->F;
    const int64_t stride = (int64_t)((1 - overlap) * (double)seg);
    double *weight = calloc((size_t)seg, sizeof(double)), *sum_weight = calloc((size_t)len, sizeof(double));
    double *win = calloc((size_t)C * (size_t)F, sizeof(double)), *y = calloc((size_t)S * C * F, sizeof(double));
    /* th.cat([th.arange(1, seg // 2 + 1), th.arange(seg - seg // 2, 0, -1)]) */
    int64_t k = 0;
    for (int64_t v = 1; v < seg / 2 + 1; v++) weight[k++] = (double)v;
    for (int64_t v = seg - seg / 2; v > 0; v--) weight[k++] = (double)v;
    double wmax = 0;
    for (int64_t i = 0; i < seg; i++) wmax = weight[i] > wmax ? weight[i] : wmax;
    for (int64_t i = 0; i < seg; i++) weight[i] = pow(weight[i] / wmax, tp);
    memset(out, 0, (size_t)S * C * (size_t)len * sizeof(double));
    for (int64_t offset = 0; offset < len; offset += stride) {
        /* chunk = TensorChunk(mix, offset, segment_length) */
        const int64_t length = len - offset < seg ? len - offset : seg;
        /* leaf: padded(valid_length = seg): delta = seg - length, start = offset - delta // 2 */
        const int64_t delta = seg - length, wstart = start + offset - delta / 2;
        for (int32_t c = 0; c < C; c++)
            for (int64_t i = 0; i < F; i++) win[(size_t)c * F + i] = i < seg ? xz(t, c, wstart + i) : 0.0;
        fake_eval(fm, win, y); /* HTDemucs.forward pads to F and trims back to seg */
        /* center_trim(out, length): out[..., delta // 2 : seg - (delta - delta // 2)] */
        for (int32_t s = 0; s < S; s++)
            for (int32_t c = 0; c < C; c++)
                for (int64_t j = 0; j < length; j++)
                    out[((size_t)s * C + c) * (size_t)len + (size_t)(offset + j)] +=
                        weight[j] * y[((size_t)s * C + c) * (size_t)F + (size_t)(delta / 2 + j)];
        for (int64_t j = 0; j < length; j++) sum_weight[offset + j] += weight[j];
    }
    for (int32_t s = 0; s < S; s++)
        for (int32_t c = 0; c < C; c++)
            for (int64_t i = 0; i < len; i++) out[((size_t)s * C + c) * (size_t)len + (size_t)i] /= sum_weight[i];
    free(weight);
    free(sum_weight);
    free(win);
    free(y);
}

/* The whole thing: stems [S][C][L] in double. members[m].user is a fake. */
static void ref_apply(const cdz_segs *cfg, const float *mix, int64_t L, const int64_t *offsets, double *est) {
    const int32_t S = cfg->sources, C = cfg->channels;
    double *x = malloc((size_t)C * (size_t)L * sizeof(double));
    double mean = 0, scale = 1;
    if (cfg->opt.normalize) {
        /* ref = wav.mean(0); (wav - ref.mean()) / (ref.std() + 1e-8) */
        double sum = 0, ss = 0;
        for (int64_t t = 0; t < L; t++) {
            double r = 0;
            for (int32_t c = 0; c < C; c++) r += mix[(size_t)c * L + t];
            sum += r / C;
        }
        mean = sum / (double)L;
        for (int64_t t = 0; t < L; t++) {
            double r = 0;
            for (int32_t c = 0; c < C; c++) r += mix[(size_t)c * L + t];
            ss += (r / C - mean) * (r / C - mean);
        }
        scale = (L > 1 ? sqrt(ss / (double)(L - 1)) : 0.0) + 1e-8;
    }
    for (size_t i = 0; i < (size_t)C * (size_t)L; i++) x[i] = (mix[i] - mean) / scale;
    ref_track t = {x, C, L};
    const int64_t max_shift = (int64_t)(0.5 * cfg->samplerate);
    double totals[MAXS] = {0};
    memset(est, 0, (size_t)S * C * (size_t)L * sizeof(double));
    double *out = malloc((size_t)S * C * (size_t)L * sizeof(double));
    double *view = malloc((size_t)S * C * (size_t)(L + max_shift) * sizeof(double));
    for (int32_t m = 0; m < cfg->members; m++) {
        const cdz_segs_member *mm = &cfg->member[m];
        const fake *fm = mm->user;
        if (cfg->opt.shifts == 0) {
            ref_split(&t, fm, mm->segment, cfg->opt.overlap, cfg->opt.transition_power, 0, L, out);
        } else {
            /* padded_mix = mix.padded(length + 2 * max_shift); for each shift:
             * shifted = TensorChunk(padded_mix, offset, length + max_shift - offset);
             * out += apply_model(shifted)[..., max_shift - offset:] ; out /= shifts */
            memset(out, 0, (size_t)S * C * (size_t)L * sizeof(double));
            for (int32_t i = 0; i < cfg->opt.shifts; i++) {
                const int64_t offset = offsets[(size_t)m * cfg->opt.shifts + i];
                const int64_t vlen = L + max_shift - offset;
                ref_split(&t, fm, mm->segment, cfg->opt.overlap, cfg->opt.transition_power, offset - max_shift, vlen,
                          view);
                for (int32_t s = 0; s < S; s++)
                    for (int32_t c = 0; c < C; c++)
                        for (int64_t j = 0; j < L; j++)
                            out[((size_t)s * C + c) * L + j] +=
                                view[((size_t)s * C + c) * (size_t)vlen + (size_t)(max_shift - offset + j)];
            }
            for (size_t i = 0; i < (size_t)S * C * L; i++) out[i] /= cfg->opt.shifts;
        }
        for (int32_t s = 0; s < S; s++) {
            const double w = mm->weights ? mm->weights[s] : 1.0;
            for (size_t i = 0; i < (size_t)C * L; i++) est[(size_t)s * C * L + i] += w * out[(size_t)s * C * L + i];
            totals[s] += w;
        }
    }
    for (int32_t s = 0; s < S; s++)
        for (size_t i = 0; i < (size_t)C * L; i++) {
            est[(size_t)s * C * L + i] /= totals[s];
            if (cfg->opt.normalize) est[(size_t)s * C * L + i] = est[(size_t)s * C * L + i] * scale + mean;
        }
    free(out);
    free(view);
    free(x);
}

/* ------------------------------------------------------------------------------------
 * helpers
 * ---------------------------------------------------------------------------------- */
static float *rand_track(th_suite *s, int32_t C, int64_t L) {
    float *x = th_alloc(s, (size_t)C * (size_t)L * sizeof(float));
    const double dc = th_rand_uniform(s, -0.2, 0.2);
    for (size_t i = 0; i < (size_t)C * (size_t)L; i++) x[i] = (float)(dc + th_rand_uniform(s, -1, 1));
    return x;
}

/* one buffer [S][C][L], stems[k] pointing into it */
static float *stem_buffer(th_suite *s, int32_t S, int32_t C, int64_t L, float **stems) {
    float *buf = th_alloc(s, (size_t)S * C * (size_t)L * sizeof(float));
    for (int32_t k = 0; k < S; k++) stems[k] = buf + (size_t)k * C * (size_t)L;
    return buf;
}

static const int64_t *offsets_of(const cdz_segs *cfg, int64_t *buf) {
    if (cfg->opt.shifts == 0) return NULL;
    if (cfg->opt.shift_offsets) return cfg->opt.shift_offsets;
    cdz_segs_draw_offsets(cfg->opt.seed, cfg->members, cfg->opt.shifts, cfg->samplerate / 2, buf);
    return buf;
}

static bool has(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

typedef struct progress_log {
    int64_t last_done, total, reports;
    bool monotonic;
} progress_log;

static void on_progress(void *user, int64_t done, int64_t total) {
    progress_log *p = user;
    if (done < p->last_done || (p->total && total != p->total)) p->monotonic = false;
    p->last_done = done;
    p->total = total;
    p->reports++;
}

/* ------------------------------------------------------------------------------------
 * cases
 * ---------------------------------------------------------------------------------- */
static void test_reconstruct(th_suite *s) {
    static const double overlaps[] = {0.0, 0.25, 0.5};
    const int64_t seg = 37;
    for (int oi = 0; oi < 3; oi++) {
        const int64_t stride = (int64_t)((1 - overlaps[oi]) * seg);
        const int64_t lengths[] = {5, seg, 3 * stride, 3 * stride + 1, 157};
        const char *what[] = {"shorter than a segment", "one segment", "3 strides", "1-sample last chunk", "odd"};
        for (int shifts = 0; shifts <= 2; shifts++) {
            for (int li = 0; li < 5; li++) {
                const int64_t L = lengths[li];
                const bool normalize = (li + shifts) % 2 == 1;
                const int64_t F = li % 2 ? 48 : seg; /* forwards longer than the segment pad with zeros */
                if (!th_begin(s, "overlap-add", "overlap %.2f shifts %d L=%lld (%s) seg %lld F %lld%s", overlaps[oi],
                              shifts, (long long)L, what[li], (long long)seg, (long long)F,
                              normalize ? " normalized" : ""))
                    continue;
                const int32_t C = 2, S = 3;
                float *x = rand_track(s, C, L);
                fake gain, nl;
                fake_init(s, &gain, FAKE_GAIN, S, C, F);
                fake_init(s, &nl, FAKE_NONLINEAR, S, C, F);
                cdz_segs_member mem = {.forward = fake_forward, .user = &gain, .segment = seg, .forward_length = F};
                cdz_segs cfg = {.channels = C, .sources = S, .samplerate = SR, .members = 1, .member = &mem,
                                 .batch = 1 + (int32_t)(L % 4)};
                cdz_separate_options_default(&cfg.opt);
                cfg.opt.overlap = overlaps[oi];
                cfg.opt.shifts = shifts;
                cfg.opt.seed = (uint64_t)L;
                cfg.opt.normalize = normalize;
                float *stems[MAXS];
                float *out = stem_buffer(s, S, C, L, stems);
                if (th_ok(s, "gain model", cdz_segs_run(&cfg, x, L, stems))) {
                    /* normalised: g (x - m) / d, overlap-added, times d plus m */
                    double m = 0;
                    for (size_t i = 0; normalize && i < (size_t)C * L; i++) m += x[i] / (double)(C * L);
                    double *want = th_alloc_f64(s, (size_t)S * C * L);
                    for (int32_t k = 0; k < S; k++)
                        for (size_t i = 0; i < (size_t)C * L; i++)
                            want[(size_t)k * C * L + i] = gain.g[k] * (x[i] - m) + m;
                    th_compare_arrays(s, normalize ? "g_s (track - m) + m" : "g_s * track", out, want,
                                      (size_t)S * C * L, 1e-6, "f32: (w y) / sum_w per chunk, a few ulp");
                }
                mem.user = &nl;
                if (th_ok(s, "nonlinear model", cdz_segs_run(&cfg, x, L, stems))) {
                    double *want = th_alloc_f64(s, (size_t)S * C * L);
                    int64_t ob[8];
                    ref_apply(&cfg, x, L, offsets_of(&cfg, ob), want);
                    th_compare_arrays(s, "= apply_model (f64)", out, want, (size_t)S * C * L, 1e-5,
                                      "f32 windows, weights and sums vs f64");
                    const int64_t nv = shifts ? shifts : 1;
                    int64_t chunks = 0;
                    for (int64_t v = 0; v < nv; v++)
                        chunks += cdz_segs_chunk_count(shifts ? L + SR / 2 - ob[v] : L, stride);
                    th_check(s, "forward items", nl.items == chunks && nl.max_b <= cfg.batch,
                             "%lld windows in %lld calls (expected %lld, batch %d)", (long long)nl.items,
                             (long long)nl.calls, (long long)chunks, cfg.batch);
                }
                th_end(s);
            }
        }
    }
}

static void test_transition_power(th_suite *s) {
    static const double powers[] = {2.0, 3.5};
    for (int i = 0; i < 2; i++) {
        if (!th_begin(s, "transition-power", "%.1f, overlap 0.5, shifts 1", powers[i])) continue;
        const int32_t C = 1, S = 2;
        const int64_t L = 211;
        float *x = rand_track(s, C, L);
        fake nl;
        fake_init(s, &nl, FAKE_NONLINEAR, S, C, 40);
        cdz_segs_member mem = {.forward = fake_forward, .user = &nl, .segment = 40};
        cdz_segs cfg = {.channels = C, .sources = S, .samplerate = SR, .members = 1, .member = &mem, .batch = 2};
        cdz_separate_options_default(&cfg.opt);
        cfg.opt.overlap = 0.5;
        cfg.opt.transition_power = powers[i];
        float *stems[MAXS];
        float *out = stem_buffer(s, S, C, L, stems);
        if (th_ok(s, "run", cdz_segs_run(&cfg, x, L, stems))) {
            double *want = th_alloc_f64(s, (size_t)S * C * L);
            int64_t ob[4];
            ref_apply(&cfg, x, L, offsets_of(&cfg, ob), want);
            th_compare_arrays(s, "= apply_model (f64)", out, want, (size_t)S * C * L, 1e-5, "f32 powf vs f64 pow");
        }
        th_end(s);
    }
}

static void test_bag(th_suite *s) {
    for (int shifts = 0; shifts <= 2; shifts += 2) {
        if (!th_begin(s, "bag", "3 members, own segments and weights, shifts %d", shifts)) continue;
        const int32_t C = 2, S = 3;
        const int64_t L = 173;
        static const float w[3][3] = {{1, 0, 0.5f}, {0, 1, 0.5f}, {2, 1, 0}};
        static const int64_t segs[3] = {37, 30, 41}, fl[3] = {40, 30, 41};
        float *x = rand_track(s, C, L);
        fake fm[3];
        cdz_segs_member mem[3];
        for (int m = 0; m < 3; m++) {
            fake_init(s, &fm[m], FAKE_NONLINEAR, S, C, fl[m]);
            mem[m] = (cdz_segs_member){fake_forward, &fm[m], segs[m], fl[m], w[m]};
        }
        cdz_segs cfg = {.channels = C, .sources = S, .samplerate = SR, .members = 3, .member = mem, .batch = 3};
        cdz_separate_options_default(&cfg.opt);
        cfg.opt.shifts = shifts;
        cfg.opt.seed = 7;
        float *stems[MAXS];
        float *out = stem_buffer(s, S, C, L, stems);
        if (th_ok(s, "all stems", cdz_segs_run(&cfg, x, L, stems))) {
            double *want = th_alloc_f64(s, (size_t)S * C * L);
            int64_t ob[16];
            ref_apply(&cfg, x, L, offsets_of(&cfg, ob), want);
            th_compare_arrays(s, "= apply_model bag (f64)", out, want, (size_t)S * C * L, 1e-5,
                              "f32 vs f64, weights / totals");
        }
        /* only stem 0: member 1 has weight 0 there and must not run; the stem is unchanged */
        float *only[MAXS] = {th_alloc(s, (size_t)C * L * sizeof(float)), NULL, NULL};
        for (int m = 0; m < 3; m++) fm[m].calls = 0;
        if (th_ok(s, "stem 0 only", cdz_segs_run(&cfg, x, L, only))) {
            th_check(s, "member 1 skipped", fm[1].calls == 0 && fm[0].calls > 0 && fm[2].calls > 0,
                     "calls %lld %lld %lld", (long long)fm[0].calls, (long long)fm[1].calls, (long long)fm[2].calls);
            th_compare_bytes(s, "stem 0 as in the full run", only[0], out, (size_t)C * L * sizeof(float));
        }
        th_end(s);
    }
}

static void test_determinism(th_suite *s) {
    if (!th_begin(s, "determinism", "batch sizes, reruns, seeds, injected offsets, progress")) return;
    const int32_t C = 2, S = 2;
    const int64_t L = 301;
    float *x = rand_track(s, C, L);
    fake nl;
    fake_init(s, &nl, FAKE_NONLINEAR, S, C, 37);
    cdz_segs_member mem = {.forward = fake_forward, .user = &nl, .segment = 37};
    cdz_segs cfg = {.channels = C, .sources = S, .samplerate = SR, .members = 1, .member = &mem, .batch = 1};
    cdz_separate_options_default(&cfg.opt);
    cfg.opt.shifts = 2;
    cfg.opt.seed = 42;
    const size_t bytes = (size_t)S * C * L * sizeof(float);
    float *st[4][MAXS];
    float *runs[4];
    for (int r = 0; r < 4; r++) runs[r] = stem_buffer(s, S, C, L, st[r]);
    progress_log pl = {.monotonic = true};
    cfg.opt.progress = on_progress;
    cfg.opt.progress_user = &pl;
    th_ok(s, "batch 1", cdz_segs_run(&cfg, x, L, st[0]));
    int64_t off[2];
    cdz_segs_draw_offsets(42, 1, 2, SR / 2, off);
    const int64_t stride = (int64_t)(0.75 * 37);
    const int64_t chunks = cdz_segs_chunk_count(L + SR / 2 - off[0], stride) + cdz_segs_chunk_count(L + SR / 2 - off[1], stride);
    th_check(s, "progress", pl.monotonic && pl.last_done == chunks && pl.total == chunks && pl.reports == chunks,
             "%lld reports, last %lld/%lld, expected %lld chunks", (long long)pl.reports, (long long)pl.last_done,
             (long long)pl.total, (long long)chunks);
    cfg.opt.progress = NULL;
    cdz_segs_buffers keep = {0}; /* reused, grown from batch 3 to 64 */
    cfg.buffers = &keep;
    cfg.batch = 3;
    th_ok(s, "batch 3", cdz_segs_run(&cfg, x, L, st[1]));
    th_compare_bytes(s, "batch 3 = batch 1", runs[1], runs[0], bytes);
    cfg.batch = 64;
    th_ok(s, "batch 64", cdz_segs_run(&cfg, x, L, st[1]));
    th_compare_bytes(s, "batch 64 = batch 1", runs[1], runs[0], bytes);
    th_check(s, "one call for all", nl.max_b == chunks, "largest call %d windows", nl.max_b);
    th_ok(s, "rerun", cdz_segs_run(&cfg, x, L, st[2]));
    th_compare_bytes(s, "rerun identical", runs[2], runs[0], bytes);
    th_check(s, "kept buffers grew", keep.in[0] && keep.in_elems >= (size_t)64 * C * 37, "%zu input floats",
             keep.in_elems);
    cdz_segs_buffers_free(&keep);
    cfg.buffers = NULL;
    cfg.opt.shift_offsets = off;
    th_ok(s, "injected offsets", cdz_segs_run(&cfg, x, L, st[2]));
    th_compare_bytes(s, "injected = drawn", runs[2], runs[0], bytes);
    cfg.opt.shift_offsets = NULL;
    cfg.opt.seed = 43;
    th_ok(s, "other seed", cdz_segs_run(&cfg, x, L, st[3]));
    int64_t off2[2];
    cdz_segs_draw_offsets(43, 1, 2, SR / 2, off2);
    bool differ = memcmp(runs[3], runs[0], bytes) != 0;
    th_check(s, "other seed, other offsets", (off2[0] != off[0] || off2[1] != off[1]) && differ,
             "seed 42: %lld %lld, seed 43: %lld %lld", (long long)off[0], (long long)off[1], (long long)off2[0],
             (long long)off2[1]);
    th_end(s);

    if (!th_begin(s, "offsets", "range and uniformity of the shift generator")) return;
    enum { N = 20000 };
    int64_t *o = th_alloc(s, N * sizeof(int64_t));
    cdz_segs_draw_offsets(1, 4, N / 4, 22050, o);
    double mean = 0;
    int64_t lo = INT64_MAX, hi = -1;
    for (int i = 0; i < N; i++) {
        mean += (double)o[i] / N;
        lo = o[i] < lo ? o[i] : lo;
        hi = o[i] > hi ? o[i] : hi;
    }
    th_check(s, "in [0, 22050]", lo >= 0 && hi <= 22050, "min %lld max %lld", (long long)lo, (long long)hi);
    th_check(s, "mean ~ 11025", fabs(mean - 11025) < 200, "%.1f (5 sigma = 226)", mean);
    cdz_segs_draw_offsets(1, 1, 8, 0, o);
    bool zeros = true;
    for (int i = 0; i < 8; i++) zeros &= o[i] == 0;
    th_check(s, "max_shift 0", zeros, "all offsets 0");
    th_end(s);
}

static void test_stats(th_suite *s) {
    if (!th_begin(s, "track-stats", "mean/std of the channel mean, silence, one sample")) return;
    float x[2][5] = {{1, 2, 3, 4, 5}, {3, 2, 1, 0, -1}};
    float m, sd;
    cdz_segs_track_stats(&x[0][0], 2, 5, &m, &sd);
    th_check(s, "constant ref", m == 2.f && sd == 0.f, "mean %g std %g (ref is 2 everywhere)", (double)m, (double)sd);
    float y[2][4] = {{0, 1, 2, 3}, {0, 1, 2, 3}};
    cdz_segs_track_stats(&y[0][0], 2, 4, &m, &sd);
    th_check(s, "0..3", m == 1.5f && fabsf(sd - 1.2909944f) < 1e-6f, "mean %g std %.7f (unbiased)", (double)m, (double)sd);
    /* silence: std 0, the output must be exactly the (zero) mean */
    const int32_t C = 2, S = 2;
    const int64_t L = 50;
    float *z = th_alloc(s, (size_t)C * L * sizeof(float));
    fake gain;
    fake_init(s, &gain, FAKE_GAIN, S, C, 20);
    cdz_segs_member mem = {.forward = fake_forward, .user = &gain, .segment = 20};
    cdz_segs cfg = {.channels = C, .sources = S, .samplerate = SR, .members = 1, .member = &mem, .batch = 2};
    cdz_separate_options_default(&cfg.opt);
    float *stems[MAXS];
    float *out = stem_buffer(s, S, C, L, stems);
    if (th_ok(s, "silence", cdz_segs_run(&cfg, z, L, stems)))
        th_compare_bytes(s, "silence in, silence out", out, z, (size_t)C * L * sizeof(float));
    float one[2] = {0.25f, -0.75f};
    float *st1[MAXS];
    stem_buffer(s, S, C, 1, st1);
    if (th_ok(s, "one sample", cdz_segs_run(&cfg, one, 1, st1)))
        th_check(s, "one sample finite", isfinite(st1[0][0]) && isfinite(st1[1][1]), "%g %g", (double)st1[0][0],
                 (double)st1[1][1]);
    th_end(s);
}

static void test_errors(th_suite *s) {
    if (!th_begin(s, "errors", "every refusal names what is wrong")) return;
    const int32_t C = 1, S = 2;
    const int64_t L = 64;
    float *x = rand_track(s, C, L);
    fake gain;
    fake_init(s, &gain, FAKE_GAIN, S, C, 20);
    float wz[2] = {0, 1};
    cdz_segs_member mem = {.forward = fake_forward, .user = &gain, .segment = 20};
    cdz_segs cfg = {.channels = C, .sources = S, .samplerate = SR, .members = 1, .member = &mem, .batch = 2};
    cdz_separate_options_default(&cfg.opt);
    float *stems[MAXS];
    stem_buffer(s, S, C, L, stems);
    cdz_segs bad;
#define EXPECT(label, mutate, needle)                                                                    \
    do {                                                                                                 \
        bad = cfg;                                                                                       \
        cdz_segs_member bm = mem;                                                                       \
        bad.member = &bm;                                                                                \
        mutate;                                                                                          \
        th_expect_status(s, label, cdz_segs_run(&bad, x, L, stems), CDZ_STATUS_INVALID_ARGUMENT);       \
        th_check(s, label " message", has(cdz_last_message(), needle), "%s", cdz_last_message());        \
    } while (0)
    EXPECT("overlap 1", bad.opt.overlap = 1.0, "overlap");
    EXPECT("overlap -0.1", bad.opt.overlap = -0.1, "overlap");
    EXPECT("overlap NaN", bad.opt.overlap = NAN, "overlap");
    EXPECT("stride 0", bad.opt.overlap = 0.99, "stride of 0");
    EXPECT("transition power 0.5", bad.opt.transition_power = 0.5, "transition power");
    EXPECT("batch 0", bad.batch = 0, "batch");
    EXPECT("shifts -1", bad.opt.shifts = -1, "shifts");
    EXPECT("no members", bad.members = 0, "members");
    EXPECT("no forward", bm.forward = NULL, "forward");
    EXPECT("segment 0", bm.segment = 0, "segment");
    EXPECT("forward shorter than segment", bm.forward_length = 10, "forward length");
    EXPECT("total weight 0", bm.weights = wz, "total bag weight of 0");
    int64_t offs[1] = {SR / 2 + 1};
    EXPECT("offset beyond max_shift", (bad.opt.shifts = 1, bad.opt.shift_offsets = offs), "shift offset");
    th_expect_status(s, "length 0", cdz_segs_run(&cfg, x, 0, stems), CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "NULL mix", cdz_segs_run(&cfg, NULL, L, stems), CDZ_STATUS_INVALID_ARGUMENT);
    float *none[MAXS] = {0};
    th_expect_status(s, "no stem requested", cdz_segs_run(&cfg, x, L, none), CDZ_STATUS_INVALID_ARGUMENT);
    x[17] = NAN;
    th_expect_status(s, "NaN in the mix", cdz_segs_run(&cfg, x, L, stems), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "names the sample", has(cdz_last_message(), "sample 17"), "%s", cdz_last_message());
    x[17] = 0.f;
    gain.fail_on_call = 2;
    gain.calls = 0;
    th_expect_status(s, "forward failure propagates", cdz_segs_run(&cfg, x, L, stems), CDZ_STATUS_DEVICE);
    th_check(s, "prefixed with the member", has(cdz_last_message(), "bag member 0") && has(cdz_last_message(), "call 2"),
             "%s", cdz_last_message());
#undef EXPECT
    th_end(s);
}

/* CUDA staging: an identity model on the device (device-to-device copies) must give the
 * same bytes as the host path. */
typedef struct dev_identity {
    cdz_ctx *ctx;
    int32_t S, C;
    int64_t F;
} dev_identity;

static cdz_status dev_identity_forward(void *user, const float *in, float *out, int32_t b) {
    dev_identity *d = user;
    const size_t item = (size_t)d->C * (size_t)d->F;
    for (int32_t k = 0; k < b; k++)
        for (int32_t s = 0; s < d->S; s++) {
            cdz_status st = cdz_copy_device(d->ctx, out + ((size_t)k * d->S + s) * item, in + (size_t)k * item,
                                            item * sizeof(float));
            if (st != CDZ_STATUS_OK) return st;
        }
    return CDZ_STATUS_OK;
}

static cdz_status host_identity_forward(void *user, const float *in, float *out, int32_t b) {
    dev_identity *d = user;
    const size_t item = (size_t)d->C * (size_t)d->F;
    for (int32_t k = 0; k < b; k++)
        for (int32_t s = 0; s < d->S; s++)
            memcpy(out + ((size_t)k * d->S + s) * item, in + (size_t)k * item, item * sizeof(float));
    return CDZ_STATUS_OK;
}

static void test_cuda_staging(th_suite *s) {
    if (!th_begin(s, "cuda-staging", "identity on the device vs on the host, batch 3, shifts 2")) return;
    if (th_gpu(s, "cuda-vs-cpu")) {
        const int32_t C = 2, S = 2;
        const int64_t L = 1000;
        float *x = rand_track(s, C, L);
        dev_identity d = {s->cuda, S, C, 48};
        cdz_segs_member mem = {.forward = host_identity_forward, .user = &d, .segment = 40, .forward_length = 48};
        cdz_segs cfg = {.channels = C, .sources = S, .samplerate = SR, .members = 1, .member = &mem, .batch = 3};
        cdz_separate_options_default(&cfg.opt);
        cfg.opt.shifts = 2;
        float *hs[MAXS], *ds[MAXS];
        float *h = stem_buffer(s, S, C, L, hs), *dv = stem_buffer(s, S, C, L, ds);
        th_ok(s, "host", cdz_segs_run(&cfg, x, L, hs));
        mem.forward = dev_identity_forward;
        cfg.ctx = s->cuda;
        th_ok(s, "cuda", cdz_segs_run(&cfg, x, L, ds));
        th_compare_bytes(s, "cuda-vs-cpu", dv, h, (size_t)S * C * L * sizeof(float));
    }
    th_end(s);
}

/* ------------------------------------------------------------------------------------
 * the tiny HTDemucs against PyTorch's apply_model
 * ---------------------------------------------------------------------------------- */
static const cdz_weight_entry *ref_entry(th_suite *s, const cdz_weights *r, const char *name, int64_t numel) {
    const cdz_weight_entry *e = cdz_weights_find(r, name);
    int64_t n = 1;
    for (int i = 0; e && i < e->ndim; i++) n *= e->shape[i];
    th_check(s, name, e && e->dtype == CDZ_DTYPE_F32 && (numel < 0 || n == numel), "%s",
             e ? "present, f32" : "missing from the reference");
    return e && e->dtype == CDZ_DTYPE_F32 && (numel < 0 || n == numel) ? e : NULL;
}

static double *to_f64(th_suite *s, const cdz_weight_entry *e, size_t n) {
    double *d = th_alloc_f64(s, n);
    const float *f = e->data;
    for (size_t i = 0; i < n; i++) d[i] = f[i];
    return d;
}

/* offsets recorded by make_demucs_reference.py, e.g. "[1337]" */
static int parse_offsets(const cdz_weights *r, int64_t *out, int max) {
    const char *txt = cdz_weights_metadata_get(r, "apply_shift_offsets");
    json_t *j = txt ? json_loads(txt, 0, NULL) : NULL;
    int n = 0;
    if (j && json_is_array(j))
        for (size_t i = 0; i < json_array_size(j) && n < max; i++) out[n++] = json_integer_value(json_array_get(j, i));
    json_decref(j);
    return n;
}

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

typedef struct htd_case {
    const char *label, *weights_env, *weights_default, *ref_env, *ref_default, *make;
    bool bag;
} htd_case;

static void test_htdemucs(th_suite *s, const htd_case *hc) {
    const char *wpath = env_or(hc->weights_env, hc->weights_default), *rpath = env_or(hc->ref_env, hc->ref_default);
    if (!th_begin(s, "htdemucs", "%s: %s vs %s", hc->label, wpath, rpath)) return;
    if (access(wpath, R_OK) != 0 || access(rpath, R_OK) != 0) {
        char why[768];
        snprintf(why, sizeof why, "%s or %s missing; make them with: %s (or set %s / %s)", wpath, rpath, hc->make,
                 hc->weights_env, hc->ref_env);
        th_skip(s, "apply_model vs PyTorch", why);
        th_end(s);
        return;
    }
    cdz_weights *w = NULL, *r = NULL;
    cdz_arena *arena = NULL;
    cdz_htdemucs *m = NULL;
    cdz_separator *sep = NULL;
    if (!th_ok(s, "open weights", cdz_weights_open(wpath, &w)) || !th_ok(s, "open reference", cdz_weights_open(rpath, &r)))
        goto out;
    size_t bytes = 64u << 20;
    for (size_t i = 0; i < cdz_weights_count(w); i++) {
        const cdz_weight_entry *e = cdz_weights_at(w, i);
        bytes += (size_t)(e->nbytes / cdz_dtype_size(e->dtype)) * 5;
    }
    if (!th_ok(s, "cpu arena", cdz_arena_create((cdz_device){CDZ_DEVICE_CPU, 0}, bytes, &arena))) goto out;
    cdz_status st = cdz_htdemucs_load(w, arena, &m);
    if (st == CDZ_STATUS_UNSUPPORTED) {
        th_skip(s, "apply_model vs PyTorch", cdz_last_message());
        goto out;
    }
    if (!th_ok(s, "load", st) || !th_ok(s, "separator", cdz_separator_create(m, s->cpu, 4, &sep))) goto out;
    cdz_htdemucs_info info;
    cdz_htdemucs_get_info(m, &info);
    const int32_t S = info.sources, C = info.audio_channels;
    const char *mix_name = hc->bag ? "bag.mix" : "apply.mix";
    const cdz_weight_entry *mix = ref_entry(s, r, mix_name, -1);
    if (!mix || mix->ndim != 3 || mix->shape[1] != C) goto out;
    const int64_t L = mix->shape[2];
    const size_t n = (size_t)S * C * (size_t)L;
    cdz_audio a = {.data = (float *)mix->data, .channels = C, .samplerate = info.samplerate, .frames = L};
    float *stems[CDZ_HTDEMUCS_MAX_SOURCES];
    float *out = stem_buffer(s, S, C, L, stems);
    cdz_separate_options opt;
    cdz_separate_options_default(&opt);
    int64_t offsets[CDZ_HTDEMUCS_MAX_MEMBERS];
    const int noff = parse_offsets(r, offsets, CDZ_HTDEMUCS_MAX_MEMBERS);
    const char *tol_why = "strict fp32 forward (<= 1e-5 per the brief) through f32 overlap-add";

    /* apply_model(model, mix, shifts=0, split=True, overlap=0.25), no track normalisation */
    opt.shifts = 0;
    opt.normalize = false;
    const cdz_weight_entry *e = ref_entry(s, r, hc->bag ? "bag.apply.output" : "apply.split.output", (int64_t)n);
    if (e && th_ok(s, "shifts 0", cdz_separate(sep, &opt, &a, stems)))
        th_compare_arrays(s, "apply_model shifts=0", out, to_f64(s, e, n), n, 1e-5, tol_why);

    /* shifts=1 with the offsets PyTorch drew */
    opt.shifts = 1;
    opt.shift_offsets = offsets;
    e = ref_entry(s, r, hc->bag ? "bag.shift.output" : "apply.shift.output", (int64_t)n);
    th_check(s, "recorded offsets", noff == info.members, "%d offsets for %d members", noff, info.members);
    if (e && noff == info.members && th_ok(s, "shifts 1", cdz_separate(sep, &opt, &a, stems)))
        th_compare_arrays(s, "apply_model shifts=1 (fixed offset)", out, to_f64(s, e, n), n, 1e-5, tol_why);
    opt.shift_offsets = NULL;

    if (!hc->bag) {
        /* api.Separator.separate_tensor: normalise, apply_model(shifts=0), de-normalise */
        const cdz_weight_entry *wav = ref_entry(s, r, "separate.wav", (int64_t)C * L);
        const cdz_weight_entry *rm = ref_entry(s, r, "separate.ref_mean", 1), *rs = ref_entry(s, r, "separate.ref_std", 1);
        e = ref_entry(s, r, "separate.output", (int64_t)n);
        if (wav && rm && rs && e) {
            float mean, sd;
            cdz_segs_track_stats(wav->data, C, L, &mean, &sd);
            const float want_m = *(const float *)rm->data, want_s = *(const float *)rs->data;
            th_check(s, "track mean", fabsf(mean - want_m) <= 1e-6f * (fabsf(want_m) + 1e-3f), "%.9g vs %.9g",
                     (double)mean, (double)want_m);
            th_check(s, "track std", fabsf(sd - want_s) <= 1e-6f * want_s, "%.9g vs %.9g", (double)sd, (double)want_s);
            cdz_audio t = a;
            t.data = (float *)wav->data;
            opt.shifts = 0;
            opt.normalize = true;
            if (th_ok(s, "normalised", cdz_separate(sep, &opt, &t, stems)))
                th_compare_arrays(s, "Separator.separate_tensor", out, to_f64(s, e, n), n, 1e-5, tol_why);
        }
    }
    if (th_gpu(s, "cuda-vs-pytorch")) {
        cdz_htdemucs *mc = NULL;
        cdz_separator *sc = NULL;
        e = ref_entry(s, r, hc->bag ? "bag.apply.output" : "apply.split.output", (int64_t)n);
        opt.shifts = 0;
        opt.normalize = false;
        if (e && th_ok(s, "cuda load", cdz_htdemucs_load(w, s->cuda_arena, &mc)) &&
            th_ok(s, "cuda separator", cdz_separator_create(mc, s->cuda, 4, &sc)) &&
            th_ok(s, "cuda shifts 0", cdz_separate(sc, &opt, &a, stems)))
            th_compare_arrays(s, "cuda apply_model shifts=0", out, to_f64(s, e, n), n, 1e-5, tol_why);
        cdz_separator_destroy(sc);
        cdz_htdemucs_free(mc);
    }
out:
    cdz_separator_destroy(sep);
    cdz_htdemucs_free(m);
    cdz_arena_destroy(arena);
    cdz_weights_close(w);
    cdz_weights_close(r);
    th_end(s);
}

int main(int argc, char **argv) {
    th_suite s;
    if (!th_init(&s, "test_separate", argc, argv)) return 2;
    test_reconstruct(&s);
    test_transition_power(&s);
    test_bag(&s);
    test_determinism(&s);
    test_stats(&s);
    test_errors(&s);
    test_cuda_staging(&s);
    static const htd_case tiny = {
        "tiny", "CDZ_HTDEMUCS_TINY_WEIGHTS", "build/ref/htdemucs-tiny.safetensors", "CDZ_HTDEMUCS_TINY_REF",
        "build/ref/htdemucs-tiny.ref.safetensors", "tests/models/make-refs.sh build (make test runs it)",
        false};
    static const htd_case bag = {
        "tiny bag", "CDZ_HTDEMUCS_TINYBAG_WEIGHTS", "build/ref/htdemucs-tinybag.safetensors",
        "CDZ_HTDEMUCS_TINYBAG_REF", "build/ref/htdemucs-tinybag.ref.safetensors",
        "weights-tools/make_demucs_reference.py --configs tiny_bag --out build/ref && "
        "weights-tools/cadenza-convert demucs build/ref/tiny_bag.yaml -o build/ref/htdemucs-tinybag.safetensors && "
        "mv build/ref/tiny_bag.reference.safetensors build/ref/htdemucs-tinybag.ref.safetensors",
        true};
    test_htdemucs(&s, &tiny);
    test_htdemucs(&s, &bag);
    return th_finish(&s);
}
