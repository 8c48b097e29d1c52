/*
 * test_demo.c: what `cadenza demo` stands on.
 *
 *   - cdz_weights_write: round trips of every dtype, 0-d, 6-d and empty tensors, metadata,
 *     the 8-byte header padding and exact tiling, replacing a file; every refusal leaves no
 *     file (nor a temporary one) behind;
 *   - cdz_htdemucs_write_random: every preset loads with cdz_htdemucs_load (tensor counts as
 *     the Python converter gives for the same configurations), same seed same bytes, values
 *     drawn with the documented scales, kwargs JSON and whole-config JSON, refusals;
 *   - the small preset's forward on the CPU: finite, O(0.1) output, sources that differ;
 *   - the demo command itself (server/cmd_demo.c is included) on the tiny preset: files,
 *     the mix, the stems, the notice; its argument errors and an unwritable output folder.
 */
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"

#include "../server/cmd_demo.c"

/* a counted check whose outcome the caller also uses */
#define CHECKED(s, what, cond) (th_check((s), (what), (cond), "failed"), (cond))

/* ---------------------------------------------------------------- temporary folders */

static char g_tmp[256];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void rm_rf(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static const char *tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", g_tmp, name);
    return buf;
}

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* files in g_tmp whose name contains `part` */
static int count_files(const char *dir, const char *part) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls -a '%s' 2>/dev/null | grep -c -- '%s'", dir, part);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1) n = -1;
        pclose(f);
    }
    return n;
}

static uint8_t *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return b;
}

/* ---------------------------------------------------------------- cdz_weights_write */

static cdz_weight_entry ent(const char *name, cdz_dtype dt, int nd, const int64_t *shape, const void *data) {
    cdz_weight_entry e;
    memset(&e, 0, sizeof e);
    e.name = name;
    e.dtype = dt;
    e.ndim = nd;
    uint64_t n = 1;
    for (int i = 0; i < nd; i++) {
        e.shape[i] = shape[i];
        n *= (uint64_t)shape[i];
    }
    e.nbytes = n * cdz_dtype_size(dt);
    e.data = data;
    return e;
}

static void test_write_roundtrip(th_suite *s) {
    if (!th_begin(s, "weights_write", "round trip: 6 dtypes, 0-d, 6-d, empty, metadata")) return;
    float f32[6];
    uint16_t f16[5], bf16[1];
    int64_t i64 = -1234567890123ll;
    uint8_t u8[7];
    double f64[3] = {1.5, -2.25, 1e300};
    for (int i = 0; i < 6; i++) f32[i] = (float)th_rand_uniform(s, -1, 1);
    for (int i = 0; i < 5; i++) f16[i] = (uint16_t)th_rand_int(s, 0, 0x7bff);
    bf16[0] = 0x3f80;
    for (int i = 0; i < 7; i++) u8[i] = (uint8_t)th_rand_int(s, 0, 255);
    cdz_weight_entry e[7] = {
        ent("a.weight", CDZ_DTYPE_F32, 2, (int64_t[]){2, 3}, f32),
        ent("b", CDZ_DTYPE_F16, 1, (int64_t[]){5}, f16),
        ent("scalar", CDZ_DTYPE_I64, 0, NULL, &i64),
        ent("empty", CDZ_DTYPE_F32, 2, (int64_t[]){0, 4}, NULL),
        ent("six.dims", CDZ_DTYPE_BF16, 6, (int64_t[]){1, 1, 1, 1, 1, 1}, bf16),
        ent("bytes \xc3\xa9", CDZ_DTYPE_U8, 1, (int64_t[]){7}, u8),
        ent("f64", CDZ_DTYPE_F64, 1, (int64_t[]){3}, f64),
    };
    e[0].offset = 999; /* ignored */
    char path[512];
    tmp_path(path, sizeof path, "rt.safetensors");
    th_ok(s, "write", cdz_weights_write(path, e, 7, "{\"format\":\"cadenza\",\"config\":\"{\\\"x\\\":1}\"}"));
    size_t size = 0;
    uint8_t *raw = read_all(path, &size);
    uint64_t hn = 0;
    for (int i = 0; raw && i < 8; i++) hn |= (uint64_t)raw[i] << (8 * i);
    const size_t data = 24 + 10 + 8 + 0 + 2 + 7 + 24;
    th_check(s, "header padded to 8", raw && hn % 8 == 0 && raw[8 + hn - 1] != 0, "N = %llu", (unsigned long long)hn);
    th_check(s, "file size = 8 + N + data", raw && size == 8 + hn + data, "%zu vs %llu", size,
             (unsigned long long)(8 + hn + data));
    free(raw);
    cdz_weights *w = NULL;
    if (th_ok(s, "open", cdz_weights_open(path, &w))) {
        th_check(s, "count", cdz_weights_count(w) == 7, "%zu", cdz_weights_count(w));
        bool same = true;
        for (int i = 0; i < 7; i++) {
            const cdz_weight_entry *g = cdz_weights_at(w, (size_t)i); /* file order = given order */
            same = same && g && !strcmp(g->name, e[i].name) && g->dtype == e[i].dtype && g->ndim == e[i].ndim &&
                   !memcmp(g->shape, e[i].shape, sizeof(int64_t) * (size_t)e[i].ndim) && g->nbytes == e[i].nbytes &&
                   (!e[i].nbytes || !memcmp(g->data, e[i].data, (size_t)e[i].nbytes));
        }
        th_check(s, "names, dtypes, shapes, bytes, order", same, "entries differ");
        const char *cfg = cdz_weights_metadata_get(w, "config");
        th_check(s, "metadata", cfg && !strcmp(cfg, "{\"x\":1}") && cdz_weights_metadata_get(w, "format"), "%s",
                 cdz_weights_metadata_json(w));
        cdz_weights_close(w);
    }
    /* replace it, no metadata, no tensors */
    th_ok(s, "overwrite with an empty file", cdz_weights_write(path, NULL, 0, NULL));
    if (th_ok(s, "open empty", cdz_weights_open(path, &w))) {
        th_check(s, "empty: 0 tensors, {} metadata", cdz_weights_count(w) == 0 &&
                 !strcmp(cdz_weights_metadata_json(w), "{}"), "%zu", cdz_weights_count(w));
        cdz_weights_close(w);
    }
    th_check(s, "no temporary files left", count_files(g_tmp, ".tmp-") == 0, "%d", count_files(g_tmp, ".tmp-"));
    th_end(s);
}

static void expect_refusal(th_suite *s, const char *what, const char *path, const cdz_weight_entry *e, size_t n,
                           const char *meta, cdz_status want, const char *needle) {
    unlink(path);
    cdz_status st = cdz_weights_write(path, e, n, meta);
    char label[128];
    snprintf(label, sizeof label, "refuses %s", what);
    if (th_expect_status(s, label, st, want) && needle)
        th_check(s, label, strstr(cdz_last_message(), needle) != NULL, "the message names '%s'", needle);
    th_check(s, label, !exists(path) && count_files(g_tmp, ".tmp-") == 0, "no file (nor temporary file) left");
}

static void test_write_refusals(th_suite *s) {
    if (!th_begin(s, "weights_write", "refusals leave no file")) return;
    const cdz_status INV = CDZ_STATUS_INVALID_ARGUMENT;
    float x[4] = {1, 2, 3, 4};
    char path[512], dir[512], longname[1100];
    tmp_path(path, sizeof path, "bad.safetensors");
    memset(longname, 'n', 1025);
    longname[1025] = '\0';
    cdz_weight_entry ok = ent("x", CDZ_DTYPE_F32, 1, (int64_t[]){4}, x);
    cdz_weight_entry e[2];
    e[0] = ok, e[1] = ok;
    expect_refusal(s, "a duplicate name", path, e, 2, NULL, INV, "given twice");
    e[1].name = "";
    expect_refusal(s, "an empty name", path, e, 2, NULL, INV, "no name");
    e[1].name = "__metadata__";
    expect_refusal(s, "the name __metadata__", path, e, 2, NULL, INV, "__metadata__");
    e[1].name = longname;
    expect_refusal(s, "a 1025-byte name", path, e, 2, NULL, INV, "1024");
    e[1].name = "bad\xff";
    expect_refusal(s, "a name that is not UTF-8", path, e, 2, NULL, INV, "UTF-8");
    e[1] = ok, e[1].name = "y", e[1].dtype = (cdz_dtype)99;
    expect_refusal(s, "an unknown dtype", path, e, 2, NULL, INV, "dtype");
    e[1] = ok, e[1].name = "y", e[1].ndim = 7;
    expect_refusal(s, "7 dimensions", path, e, 2, NULL, INV, "dimensions");
    e[1] = ok, e[1].name = "y", e[1].shape[0] = -4;
    expect_refusal(s, "a negative dimension", path, e, 2, NULL, INV, "-4");
    e[1] = ok, e[1].name = "y", e[1].nbytes = 12;
    expect_refusal(s, "nbytes != shape", path, e, 2, NULL, INV, "nbytes");
    e[1] = ok, e[1].name = "y", e[1].data = NULL;
    expect_refusal(s, "bytes without data", path, e, 2, NULL, INV, "no data");
    e[1] = ok, e[1].name = "y", e[1].ndim = 2, e[1].shape[0] = INT64_MAX / 2, e[1].shape[1] = 4;
    expect_refusal(s, "a shape overflowing 63 bits", path, e, 2, NULL, INV, "63 bits");
    expect_refusal(s, "metadata that is not JSON", path, &ok, 1, "{\"a\":", INV, "JSON");
    expect_refusal(s, "metadata that is an array", path, &ok, 1, "[\"a\"]", INV, "object");
    expect_refusal(s, "a non-string metadata value", path, &ok, 1, "{\"n\":1}", INV, "'n'");
    expect_refusal(s, "entries = NULL with n = 1", path, NULL, 1, NULL, INV, "NULL");
    th_expect_status(s, "refuses a NULL path", cdz_weights_write(NULL, &ok, 1, NULL), INV);
    snprintf(dir, sizeof dir, "%s/no/such/folder/x.safetensors", g_tmp);
    expect_refusal(s, "a missing folder (IO)", dir, &ok, 1, NULL, CDZ_STATUS_IO, "no/such/folder");
    tmp_path(dir, sizeof dir, "a-folder");
    mkdir(dir, 0755);
    th_expect_status(s, "refuses a folder as the path (IO)", cdz_weights_write(dir, &ok, 1, NULL), CDZ_STATUS_IO);
    th_check(s, "folder untouched, no temporary file", count_files(g_tmp, ".tmp-") == 0, "left behind");
    rmdir(dir);
    th_end(s);
}

/* ---------------------------------------------------------------- random checkpoints */

static const cdz_weight_entry *find(const cdz_weights *w, const char *name) { return cdz_weights_find(w, name); }

/* mean / std / min / max of an f32 entry */
static void stats(const cdz_weight_entry *e, double *mean, double *sd, double *lo, double *hi) {
    const size_t n = (size_t)(e->nbytes / 4);
    double s1 = 0, s2 = 0;
    *lo = INFINITY, *hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        float v;
        memcpy(&v, (const uint8_t *)e->data + 4 * i, 4);
        s1 += v, s2 += (double)v * v;
        *lo = fmin(*lo, v), *hi = fmax(*hi, v);
    }
    *mean = s1 / (double)n;
    *sd = sqrt(fmax(s2 / (double)n - *mean * *mean, 0));
}

static void test_presets_load(th_suite *s) {
    /* tensor counts of the same configurations converted from demucs (docs/weights.md) */
    static const struct {
        const char *name;
        size_t tensors;
        int sources;
        int64_t segment;
    } want[] = {{"htdemucs", 533, 4, 343980}, {"htdemucs_6s", 525, 6, 343980}, {"small", 533, 4, 343980},
                {"tiny", 377, 4, 25578}};
    for (const char *const *p = cdz_htdemucs_presets(); *p; p++) {
        if (!th_begin(s, "write_random", "preset %s loads", *p)) continue;
        int k = 0;
        while (k < 4 && strcmp(want[k].name, *p)) k++;
        th_check(s, "known preset", k < 4, "%s", *p);
        char path[512];
        tmp_path(path, sizeof path, "preset.safetensors");
        cdz_weights *w = NULL;
        cdz_arena *arena = NULL;
        cdz_htdemucs *m = NULL;
        if (k < 4 && th_ok(s, "write", cdz_htdemucs_write_random(path, *p, 7)) &&
            th_ok(s, "open", cdz_weights_open(path, &w))) {
            th_check(s, "tensor count", cdz_weights_count(w) == want[k].tensors, "%zu, the converter gives %zu",
                     cdz_weights_count(w), want[k].tensors);
            const char *model = cdz_weights_metadata_get(w, "model");
            th_check(s, "metadata model/format/warning",
                     model && !strcmp(model, "htdemucs") && cdz_weights_metadata_get(w, "format") &&
                         cdz_weights_metadata_get(w, "warning"), "%s", cdz_weights_metadata_json(w));
            size_t bytes = 0;
            for (size_t i = 0; i < cdz_weights_count(w); i++) bytes += (size_t)cdz_weights_at(w, i)->nbytes;
            if (th_ok(s, "arena", cdz_arena_create((cdz_device){CDZ_DEVICE_CPU, 0}, bytes + bytes / 4 + (32u << 20), &arena)) &&
                th_ok(s, "cdz_htdemucs_load", cdz_htdemucs_load(w, arena, &m))) {
                cdz_htdemucs_info info;
                cdz_htdemucs_get_info(m, &info);
                th_check(s, "info", info.sources == want[k].sources && info.members == 1 &&
                         info.segment_samples == want[k].segment && info.samplerate == 44100 && info.audio_channels == 2,
                         "%d sources, segment %lld", info.sources, (long long)info.segment_samples);
            }
        }
        cdz_htdemucs_free(m);
        cdz_arena_destroy(arena);
        cdz_weights_close(w);
        unlink(path);
        th_end(s);
    }
}

static void test_random_values(th_suite *s) {
    if (!th_begin(s, "write_random", "seeded, scaled, JSON configs, refusals")) return;
    char a[512], b[512];
    tmp_path(a, sizeof a, "r1.safetensors");
    tmp_path(b, sizeof b, "r2.safetensors");
    th_ok(s, "tiny seed 5", cdz_htdemucs_write_random(a, "tiny", 5));
    th_ok(s, "tiny seed 5 again", cdz_htdemucs_write_random(b, "tiny", 5));
    size_t na = 0, nb = 0;
    uint8_t *ra = read_all(a, &na), *rb = read_all(b, &nb);
    th_check(s, "same seed, same bytes", ra && rb && na == nb && !memcmp(ra, rb, na), "%zu vs %zu bytes", na, nb);
    free(rb);
    th_ok(s, "tiny seed 6", cdz_htdemucs_write_random(b, "tiny", 6));
    rb = read_all(b, &nb);
    th_check(s, "another seed, other values", ra && rb && na == nb && memcmp(ra, rb, na), "identical");
    free(ra);
    free(rb);

    cdz_weights *w = NULL;
    if (th_ok(s, "open small", cdz_htdemucs_write_random(a, "small", 1)) && th_ok(s, "open", cdz_weights_open(a, &w))) {
        double mu, sd, lo, hi;
        const cdz_weight_entry *e = find(w, "crosstransformer.layers.0.linear1.weight"); /* [256, 64] */
        if (CHECKED(s, "linear1 present", e && e->ndim == 2 && e->shape[1] == 64)) {
            stats(e, &mu, &sd, &lo, &hi);
            th_check(s, "linear N(0, 1/fan_in)", fabs(mu) < 0.01 && fabs(sd * 8.0 - 1) < 0.05, "mean %g sd %g (want 1/8)", mu, sd);
        }
        e = find(w, "decoder.0.conv_tr.weight"); /* [chin, chout, 8, 1], stride 4: fan_in chin * 2 */
        if (CHECKED(s, "conv_tr present", e && e->ndim == 4)) {
            stats(e, &mu, &sd, &lo, &hi);
            const double want = 1 / sqrt((double)e->shape[0] * e->shape[2] / 4);
            th_check(s, "conv_tr N(0, 1/(chin k / stride))", fabs(sd / want - 1) < 0.1, "sd %g want %g", sd, want);
        }
        e = find(w, "crosstransformer.layers.1.gamma_1.scale");
        if (CHECKED(s, "gamma present", e != NULL)) {
            stats(e, &mu, &sd, &lo, &hi);
            th_check(s, "LayerScale U(0.1, 1)", lo >= 0.1 && hi < 1.0 && sd > 0.1, "[%g, %g]", lo, hi);
        }
        e = find(w, "encoder.0.dconv.layers.1.6.scale");
        if (CHECKED(s, "dconv scale present", e != NULL)) {
            stats(e, &mu, &sd, &lo, &hi);
            th_check(s, "DConv LayerScale U(0.1, 1)", lo >= 0.1 && hi < 1.0, "[%g, %g]", lo, hi);
        }
        e = find(w, "crosstransformer.layers.0.norm1.weight");
        if (CHECKED(s, "norm present", e != NULL)) {
            stats(e, &mu, &sd, &lo, &hi);
            th_check(s, "norm weight U(0.5, 1.5)", lo >= 0.5 && hi < 1.5, "[%g, %g]", lo, hi);
        }
        e = find(w, "crosstransformer.layers.0.self_attn.in_proj_bias");
        if (CHECKED(s, "bias present", e != NULL)) {
            stats(e, &mu, &sd, &lo, &hi);
            th_check(s, "bias N(0, 0.01)", sd > 0.07 && sd < 0.13, "sd %g", sd);
        }
        /* the whole config of a written file gives the same tensors again */
        const char *cfg = cdz_weights_metadata_get(w, "config");
        char *cfg_copy = cfg ? strdup(cfg) : NULL;
        cdz_weights_close(w);
        w = NULL;
        if (cfg_copy && th_ok(s, "whole config JSON", cdz_htdemucs_write_random(b, cfg_copy, 1))) {
            cdz_weights *w1 = NULL, *w2 = NULL;
            bool same = cdz_weights_open(a, &w1) == CDZ_STATUS_OK && cdz_weights_open(b, &w2) == CDZ_STATUS_OK &&
                        cdz_weights_count(w1) == cdz_weights_count(w2);
            for (size_t i = 0; same && i < cdz_weights_count(w1); i++) {
                const cdz_weight_entry *x = cdz_weights_at(w1, i), *y = cdz_weights_at(w2, i);
                same = !strcmp(x->name, y->name) && x->nbytes == y->nbytes && !memcmp(x->data, y->data, (size_t)x->nbytes);
            }
            th_check(s, "whole config: same tensors", same, "differ");
            cdz_weights_close(w1);
            cdz_weights_close(w2);
        }
        free(cfg_copy);
    }
    /* kwargs over the htdemucs preset */
    const char *kw = "{\"segment\":[29,50],\"channels\":8,\"nfft\":512,\"depth\":3,\"bottom_channels\":0,"
                     "\"t_layers\":1,\"t_heads\":2}";
    if (th_ok(s, "kwargs JSON", cdz_htdemucs_write_random(a, kw, 2)) && th_ok(s, "open", cdz_weights_open(a, &w))) {
        cdz_arena *arena = NULL;
        cdz_htdemucs *m = NULL;
        if (th_ok(s, "arena", cdz_arena_create((cdz_device){CDZ_DEVICE_CPU, 0}, 64u << 20, &arena)))
            th_ok(s, "kwargs JSON loads", cdz_htdemucs_load(w, arena, &m));
        th_check(s, "kwargs applied", find(w, "crosstransformer.layers.0.linear1.weight") &&
                 !find(w, "crosstransformer.layers.1.linear1.weight") && !find(w, "channel_upsampler.weight"), "no");
        cdz_htdemucs_free(m);
        cdz_arena_destroy(arena);
        cdz_weights_close(w);
    }
    const cdz_status INV = CDZ_STATUS_INVALID_ARGUMENT;
    th_expect_status(s, "unknown preset", cdz_htdemucs_write_random(a, "htdemucs_ft", 0), INV);
    th_check(s, "message lists presets", strstr(cdz_last_message(), "small") != NULL, "%s", cdz_last_message());
    th_expect_status(s, "JSON syntax error", cdz_htdemucs_write_random(a, "{\"channels\":", 0), INV);
    th_expect_status(s, "unsupported setting", cdz_htdemucs_write_random(a, "{\"cac\":false}", 0), CDZ_STATUS_UNSUPPORTED);
    th_expect_status(s, "bad kwarg type", cdz_htdemucs_write_random(a, "{\"channels\":\"many\"}", 0), INV);
    th_expect_status(s, "width not divisible by heads", cdz_htdemucs_write_random(a, "{\"t_heads\":7}", 0), INV);
    th_check(s, "message names t_heads", strstr(cdz_last_message(), "t_heads") != NULL, "%s", cdz_last_message());
    th_expect_status(s, "not htdemucs", cdz_htdemucs_write_random(a, "{\"models\":[],\"architecture\":\"x\"}", 0), INV);
    th_expect_status(s, "NULL preset", cdz_htdemucs_write_random(a, NULL, 0), INV);
    unlink(a);
    unlink(b);
    th_end(s);
}

/* ---------------------------------------------------------------- small forward */

static void test_small_forward(th_suite *s) {
    if (!th_begin(s, "small_forward", "preset small, one 7.8 s segment on the CPU (~15 s)")) return;
    char path[512];
    tmp_path(path, sizeof path, "small.safetensors");
    cdz_weights *w = NULL;
    cdz_arena *arena = NULL;
    cdz_htdemucs *m = NULL;
    cdz_htdemucs_plan *p = NULL;
    if (th_ok(s, "write", cdz_htdemucs_write_random(path, "small", 0)) && th_ok(s, "open", cdz_weights_open(path, &w)) &&
        th_ok(s, "arena", cdz_arena_create((cdz_device){CDZ_DEVICE_CPU, 0}, 64u << 20, &arena)) &&
        th_ok(s, "load", cdz_htdemucs_load(w, arena, &m)) && th_ok(s, "plan", cdz_htdemucs_plan_create(m, 0, s->cpu, 1, &p))) {
        cdz_htdemucs_info info;
        cdz_htdemucs_get_info(m, &info);
        cdz_audio mix = {0};
        th_ok(s, "mix", demo_synth_mix(&mix, 2, 44100, (double)info.segment_samples / 44100, 1));
        const int64_t T = info.segment_samples, S = info.sources;
        cdz_tensor x = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){1, 2, T});
        memcpy(x.data, mix.data, sizeof(float) * 2 * (size_t)T);
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, S, 2, T});
        if (th_ok(s, "forward", cdz_htdemucs_forward(p, &x, &y))) {
            const float *o = y.data;
            bool finite = true;
            double rms[CDZ_HTDEMUCS_MAX_SOURCES] = {0}, diff = 0;
            for (int64_t k = 0; k < S; k++) {
                for (int64_t i = 0; i < 2 * T; i++) {
                    const double v = o[k * 2 * T + i];
                    finite = finite && isfinite(v);
                    rms[k] += v * v;
                    if (k) diff += fabs(v - o[i]);
                }
                rms[k] = sqrt(rms[k] / (double)(2 * T));
            }
            th_check(s, "finite output", finite, "NaN/Inf in the output");
            bool sane = true;
            for (int64_t k = 0; k < S; k++) sane = sane && rms[k] > 1e-3 && rms[k] < 10;
            th_check(s, "output rms in (1e-3, 10) per source", sane, "rms %g %g %g %g", rms[0], rms[1], rms[2], rms[3]);
            th_check(s, "sources differ", diff > 1e-3 * (double)T, "sum |y_k - y_0| = %g", diff);
        }
        cdz_audio_free(&mix);
    }
    cdz_htdemucs_plan_destroy(p);
    cdz_htdemucs_free(m);
    cdz_arena_destroy(arena);
    cdz_weights_close(w);
    unlink(path);
    th_end(s);
}

/* ---------------------------------------------------------------- the demo command */

static void test_synth(th_suite *s) {
    if (!th_begin(s, "demo_mix", "2.5 s stereo, mono, determinism")) return;
    cdz_audio a = {0}, b = {0}, m = {0};
    th_ok(s, "stereo", demo_synth_mix(&a, 2, 44100, 2.5, 9));
    th_ok(s, "again", demo_synth_mix(&b, 2, 44100, 2.5, 9));
    th_ok(s, "mono", demo_synth_mix(&m, 1, 22050, 2.5, 9));
    if (a.data && b.data && m.data) {
        th_check(s, "frames", a.frames == 110250 && a.channels == 2 && m.frames == 55125, "%lld", (long long)a.frames);
        th_compare_bytes(s, "deterministic", a.data, b.data, sizeof(float) * 2 * (size_t)a.frames);
        double peak = 0, lr = 0, rl = 0, rr = 0;
        for (int64_t i = 0; i < a.frames; i++) {
            peak = fmax(peak, fmax(fabs(a.data[i]), fabs(a.data[a.frames + i])));
            lr += fabs(a.data[i] - a.data[a.frames + i]);
            rl += (double)a.data[i] * a.data[i];
            rr += (double)a.data[a.frames + i] * a.data[a.frames + i];
        }
        th_check(s, "peak -1 dBFS", fabs(peak - 0.891) < 1e-3, "%g", peak);
        th_check(s, "both channels loud, not equal", sqrt(rl / a.frames) > 0.05 && sqrt(rr / a.frames) > 0.05 &&
                 lr > 1e-3 * a.frames, "rms %g %g", sqrt(rl / a.frames), sqrt(rr / a.frames));
    }
    th_expect_status(s, "0 frames refused", demo_synth_mix(&b, 2, 44100, 1e-9, 0), CDZ_STATUS_INVALID_ARGUMENT);
    cdz_audio_free(&a);
    cdz_audio_free(&b);
    cdz_audio_free(&m);
    th_end(s);
}

static bool file_has(FILE *f, const char *needle) {
    fflush(f);
    rewind(f);
    char line[512];
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle)) return true;
    return false;
}

static int parse(const char *const *args, int n, demo_args *a, FILE *err) {
    char *argv[16];
    for (int i = 0; i < n; i++) argv[i] = (char *)args[i];
    argv[n] = NULL;
    return demo_parse_args(n, argv, a, err);
}

static void test_demo_run(th_suite *s) {
    if (!th_begin(s, "demo", "cadenza demo --preset tiny --seconds 0.4 on the CPU")) return;
    char dir[512], p[700];
    tmp_path(dir, sizeof dir, "demo out");
    FILE *out = tmpfile(), *err = tmpfile();
    demo_args a;
    const char *args[] = {"demo", "--preset", "tiny", "--seconds", "0.4", "--out", dir, "--seed", "3", "--device", "cpu"};
    th_check(s, "arguments parse", parse(args, 11, &a, err) == 0 && !strcmp(a.preset, "tiny") && a.seconds == 0.4 &&
             a.seed == 3 && a.shifts == 1, "rc");
    a.shifts = 0; /* one chunk: keeps the case at ~2 s */
    const double t0 = demo_now();
    const int rc = out && err ? demo_run(&a, out, err) : -1;
    th_check(s, "demo_run exits 0", rc == 0, "rc %d", rc);
    th_check(s, "within a few seconds", demo_now() - t0 < 30, "%.1f s", demo_now() - t0);
    static const char *files[] = {"htdemucs-random.safetensors", "mix.wav", "mix/drums.wav", "mix/bass.wav",
                                  "mix/other.wav", "mix/vocals.wav"};
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        th_check(s, files[i], exists(p), "%s is missing", p);
    }
    if (cdz_audio_can_read()) {
        cdz_audio mix = {0}, stem = {0};
        snprintf(p, sizeof p, "%s/mix.wav", dir);
        th_ok(s, "read mix.wav", cdz_audio_read(p, &mix));
        snprintf(p, sizeof p, "%s/mix/vocals.wav", dir);
        th_ok(s, "read vocals.wav", cdz_audio_read(p, &stem));
        th_check(s, "mix and stem: 17640 frames, 2 ch, 44.1 kHz",
                 mix.frames == 17640 && stem.frames == 17640 && mix.channels == 2 && stem.samplerate == 44100,
                 "%lld / %lld frames", (long long)mix.frames, (long long)stem.frames);
        double e = 0;
        for (int64_t i = 0; i < stem.frames * stem.channels; i++) e += fabs(stem.data[i]);
        th_check(s, "stem not silent", e > 0, "all zeros");
        cdz_audio_free(&mix);
        cdz_audio_free(&stem);
    }
    if (out) {
        th_check(s, "says the weights are random", file_has(out, "RANDOM"), "no notice");
        th_check(s, "points to docs/weights.md", file_has(out, "docs/weights.md"), "no pointer");
        th_check(s, "prints the real-time factor", file_has(out, "real-time factor"), "no RTF");
        th_check(s, "prints progress", file_has(out, "segments"), "no progress");
    }
    if (err) th_check(s, "nothing on stderr", (fflush(err), ftell(err) == 0), "%ld bytes", ftell(err));

    /* argument errors: exit 2 and a message naming the option */
    static const struct {
        const char *args[4];
        int n;
        const char *needle;
    } bad[] = {{{"demo", "--preset", "huge"}, 3, "--preset"},      {{"demo", "--seconds", "0"}, 3, "--seconds"},
               {{"demo", "--seconds", "-3"}, 3, "--seconds"},     {{"demo", "--seconds", "ten"}, 3, "--seconds"},
               {{"demo", "--seconds", "1e9"}, 3, "--seconds"},    {{"demo", "--seed", "-1"}, 3, "--seed"},
               {{"demo", "--precision", "fp8"}, 3, "--precision"}, {{"demo", "--frobnicate"}, 2, "unknown option"},
               {{"demo", "extra"}, 2, "unexpected"},              {{"demo", "--seconds"}, 2, "needs a value"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *e2 = tmpfile();
        if (!e2) continue;
        const int r = parse(bad[i].args, bad[i].n, &a, e2);
        char what[96];
        snprintf(what, sizeof what, "refuses %s %s", bad[i].args[1], bad[i].n > 2 ? bad[i].args[2] : "");
        th_check(s, what, r == 2 && file_has(e2, bad[i].needle), "rc %d", r);
        fclose(e2);
    }
    /* an output folder that cannot be made: under a regular file */
    snprintf(p, sizeof p, "%s/plain-file", g_tmp);
    FILE *pf = fopen(p, "w");
    if (pf) fclose(pf);
    snprintf(p, sizeof p, "%s/plain-file/sub", g_tmp);
    const char *args2[] = {"demo", "--preset", "tiny", "--out", p};
    FILE *e3 = tmpfile(), *o3 = tmpfile();
    if (e3 && o3 && parse(args2, 5, &a, e3) == 0) {
        const int r = demo_run(&a, o3, e3);
        th_check(s, "unwritable --out: exit 1, names --out", r == 1 && file_has(e3, "--out") && file_has(e3, "plain-file"),
                 "rc %d", r);
    }
    if (e3) fclose(e3);
    if (o3) fclose(o3);
    if (out) fclose(out);
    if (err) fclose(err);
    th_end(s);
}

int main(int argc, char **argv) {
    th_suite s;
    if (!th_init(&s, "test_demo", argc, argv)) return 2;
    snprintf(g_tmp, sizeof g_tmp, "%s/cdz-test-demo-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmp)) {
        fprintf(stderr, "test_demo: cannot make a temporary folder\n");
        return 2;
    }
    test_write_roundtrip(&s);
    test_write_refusals(&s);
    test_random_values(&s);
    test_synth(&s);
    test_demo_run(&s);
    test_presets_load(&s);
    test_small_forward(&s);
    rm_rf(g_tmp);
    return th_finish(&s);
}
