/*
 * test_weights: the safetensors reader (runtime/weights.c).
 *
 * Valid files are built here by a tiny writer (tw_build) and read back: values, dtypes,
 * shapes, offset order, metadata, find/expect, upload into a CPU arena, the inspect listing.
 * Then hostile files: every truncation of a valid file, bad header lengths, broken JSON, bad
 * entries, bad offsets (reversed, out of bounds, overlapping, holes), bad metadata, bad
 * names, and bad paths. Each must fail with the right code and a message naming the file,
 * the tensor and what was wrong; none may crash or leak (run under ASan/valgrind).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "../runtime/half.h"

#define LABEL "hostile.safetensors"

static char tmpdir[64];

/* ------------------------------------------------------------------------------------
 * a tiny safetensors writer
 * ---------------------------------------------------------------------------------- */
typedef struct tw_tensor {
    const char *name;
    const char *dtype; /* safetensors spelling: "F32", ... */
    int ndim;
    int64_t shape[6];
    const void *data;
    size_t nbytes;
} tw_tensor;

/* Header = {name: {dtype, shape, data_offsets}..., "__metadata__": {...}} in the order
 * given, tensors laid out in the data section in `layout` order (NULL: given order).
 * `align` pads the header with spaces to a multiple (as the reference writer does with 8);
 * 1 leaves the data section wherever the header ends. meta: key, value, ..., NULL. */
static uint8_t *tw_build(th_suite *s, const tw_tensor *t, size_t n, const size_t *layout,
                         const char *const *meta, size_t align, size_t *size) {
    uint64_t offsets[64];
    uint64_t pos = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = layout ? layout[k] : k;
        offsets[i] = pos;
        pos += t[i].nbytes;
    }
    json_t *root = json_object();
    if (meta) {
        json_t *m = json_object();
        for (size_t i = 0; meta[i]; i += 2) json_object_set_new(m, meta[i], json_string(meta[i + 1]));
        json_object_set_new(root, "__metadata__", m);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < t[i].ndim; d++) json_array_append_new(shape, json_integer(t[i].shape[d]));
        json_object_set_new(root, t[i].name,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype", t[i].dtype, "shape", shape,
                                      "data_offsets", (json_int_t)offsets[i],
                                      (json_int_t)(offsets[i] + t[i].nbytes)));
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    size_t hlen = strlen(text);
    size_t padded = (hlen + align - 1) / align * align;
    *size = 8 + padded + pos;
    uint8_t *buf = th_alloc(s, *size);
    for (int b = 0; b < 8; b++) buf[b] = (uint8_t)((uint64_t)padded >> (8 * b));
    memcpy(buf + 8, text, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    free(text);
    for (size_t i = 0; i < n; i++)
        if (t[i].nbytes) memcpy(buf + 8 + padded + offsets[i], t[i].data, t[i].nbytes);
    return buf;
}

/* A file from raw header text and `data_len` bytes of data (a pattern). */
static uint8_t *raw_file(th_suite *s, const char *header, size_t data_len, size_t *size) {
    size_t hlen = strlen(header);
    *size = 8 + hlen + data_len;
    uint8_t *buf = th_alloc(s, *size);
    for (int b = 0; b < 8; b++) buf[b] = (uint8_t)((uint64_t)hlen >> (8 * b));
    memcpy(buf + 8, header, hlen);
    for (size_t i = 0; i < data_len; i++) buf[8 + hlen + i] = (uint8_t)(i * 7 + 1);
    return buf;
}

static bool write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok;
}

static bool has(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* Open `buf` (copied into an exact-size allocation so ASan sees any over-read) and expect
 * `code` with a message containing the label and each needle (NULL-terminated list). */
static void expect_fail_buf(th_suite *s, const char *what, const uint8_t *buf, size_t size,
                            cdz_status code, const char *needle1, const char *needle2) {
    uint8_t *copy = malloc(size ? size : 1);
    if (size) memcpy(copy, buf, size);
    cdz_weights *w = (cdz_weights *)0x1;
    cdz_error_clear();
    cdz_status st = cdz_weights_open_buffer(size ? copy : NULL, size, LABEL, &w);
    char label[160];
    snprintf(label, sizeof label, "%s: status", what);
    th_expect_status(s, label, st, code);
    const char *msg = cdz_last_message();
    snprintf(label, sizeof label, "%s: message", what);
    th_check(s, label,
             has(msg, "weights '" LABEL "'") && (!needle1 || has(msg, needle1)) &&
                 (!needle2 || has(msg, needle2)),
             "message '%s' should name the file and contain '%s'%s%s%s", msg,
             needle1 ? needle1 : "", needle2 ? " and '" : "", needle2 ? needle2 : "",
             needle2 ? "'" : "");
    th_check(s, what, w == NULL, "out must be NULL on failure");
    if (st == CDZ_STATUS_OK) cdz_weights_close(w);
    free(copy);
}

static void expect_fail(th_suite *s, const char *what, const char *header, size_t data_len,
                        cdz_status code, const char *needle1, const char *needle2) {
    size_t size;
    uint8_t *buf = raw_file(s, header, data_len, &size);
    expect_fail_buf(s, what, buf, size, code, needle1, needle2);
}

static void expect_ok(th_suite *s, const char *what, const char *header, size_t data_len,
                      size_t count) {
    size_t size;
    uint8_t *buf = raw_file(s, header, data_len, &size);
    cdz_weights *w = NULL;
    if (th_ok(s, what, cdz_weights_open_buffer(buf, size, LABEL, &w)))
        th_check(s, what, cdz_weights_count(w) == count, "count %zu, expected %zu",
                 cdz_weights_count(w), count);
    cdz_weights_close(w);
}

/* ------------------------------------------------------------------------------------
 * valid files
 * ---------------------------------------------------------------------------------- */
static const char *const META[] = {
    "format", "cadenza", "model", "htdemucs",
    "config", "{\"channels\":48,\"sources\":[\"drums\",\"bass\",\"other\",\"vocals\"],\"depth\":4}",
    "converted_by", "cadenza-convert test", NULL};

static void test_roundtrip(th_suite *s) {
    if (!th_begin(s, "roundtrip", "every dtype, scalar, empty tensor, metadata, file + buffer"))
        return;
    float f32[6];
    for (int i = 0; i < 6; i++) f32[i] = (float)th_rand_uniform(s, -2, 2);
    uint16_t f16[4], bf16[3];
    for (int i = 0; i < 4; i++) f16[i] = cdz_f32_to_f16((float)th_rand_uniform(s, -2, 2));
    for (int i = 0; i < 3; i++) bf16[i] = cdz_f32_to_bf16((float)th_rand_uniform(s, -2, 2));
    double f64[2] = {th_rand_normal(s), th_rand_normal(s)};
    int64_t i64[2] = {-(int64_t)th_rand_u64(s) / 3, 1234567890123ll};
    int32_t i32 = -7;
    int16_t i16[3] = {-3, 0, 3};
    int8_t i8[5] = {-128, -1, 0, 1, 127};
    uint8_t u8[2] = {0, 255}, bl[3] = {1, 0, 1};
    tw_tensor t[] = {
        {"encoder.0.conv.weight", "F32", 2, {2, 3}, f32, sizeof f32},
        {"encoder.0.conv.bias", "F16", 1, {4}, f16, sizeof f16},
        {"norm.scale", "BF16", 2, {3, 1}, bf16, sizeof bf16},
        {"freqs", "F64", 1, {2}, f64, sizeof f64},
        {"ids", "I64", 1, {2}, i64, sizeof i64},
        {"step", "I32", 0, {0}, &i32, sizeof i32},
        {"i16", "I16", 3, {1, 3, 1}, i16, sizeof i16},
        {"i8", "I8", 1, {5}, i8, sizeof i8},
        {"u8", "U8", 1, {2}, u8, sizeof u8},
        {"mask", "BOOL", 1, {3}, bl, sizeof bl},
        {"empty", "F32", 2, {0, 5}, NULL, 0},
        {"also.empty", "BF16", 1, {0}, NULL, 0},
    };
    const size_t n = sizeof t / sizeof t[0];
    /* JSON order differs from data order: at() must follow the data (offset) order. */
    const size_t layout[] = {3, 0, 10, 1, 2, 4, 5, 6, 7, 8, 9, 11};
    size_t size;
    uint8_t *buf = tw_build(s, t, n, layout, META, 8, &size);
    char path[128];
    snprintf(path, sizeof path, "%s/roundtrip.safetensors", tmpdir);
    th_check(s, "write temp file", write_file(path, buf, size), "%s", path);

    for (int mode = 0; mode < 2; mode++) {
        cdz_weights *w = NULL;
        const char *how = mode ? "open_buffer" : "open";
        cdz_status st = mode ? cdz_weights_open_buffer(buf, size, "rt", &w) : cdz_weights_open(path, &w);
        if (!th_ok(s, how, st)) continue;
        th_check(s, "count", cdz_weights_count(w) == n, "%zu", cdz_weights_count(w));
        bool order = true;
        for (size_t k = 0; k < n && order; k++) {
            const cdz_weight_entry *e = cdz_weights_at(w, k);
            /* empty tensors at the same offset as another sort before it: compare offsets */
            order = e && (k == 0 || cdz_weights_at(w, k - 1)->offset <= e->offset);
        }
        th_check(s, "at() in offset order", order, NULL);
        th_check(s, "at(count) is NULL", cdz_weights_at(w, n) == NULL, NULL);
        th_check(s, "first by offset", !strcmp(cdz_weights_at(w, 0)->name, "freqs"), "%s",
                 cdz_weights_at(w, 0)->name);
        static const cdz_dtype want[] = {CDZ_DTYPE_F32, CDZ_DTYPE_F16, CDZ_DTYPE_BF16,
                                         CDZ_DTYPE_F64, CDZ_DTYPE_I64, CDZ_DTYPE_I32,
                                         CDZ_DTYPE_I16, CDZ_DTYPE_I8, CDZ_DTYPE_U8,
                                         CDZ_DTYPE_BOOL, CDZ_DTYPE_F32, CDZ_DTYPE_BF16};
        for (size_t i = 0; i < n; i++) {
            const cdz_weight_entry *e = cdz_weights_find(w, t[i].name);
            char what[96];
            snprintf(what, sizeof what, "%s %s", how, t[i].name);
            if (!e) {
                th_check(s, what, false, "not found");
                continue;
            }
            bool shape_ok = e->ndim == t[i].ndim;
            for (int d = 0; shape_ok && d < e->ndim; d++) shape_ok = e->shape[d] == t[i].shape[d];
            th_check(s, what,
                     e->dtype == want[i] && shape_ok && e->nbytes == t[i].nbytes &&
                         !strcmp(e->name, t[i].name),
                     "dtype %s ndim %d nbytes %llu", cdz_dtype_name(e->dtype), e->ndim,
                     (unsigned long long)e->nbytes);
            if (t[i].nbytes) th_compare_bytes(s, what, e->data, t[i].data, t[i].nbytes);
        }
        th_check(s, "find missing", cdz_weights_find(w, "nope") == NULL, NULL);
        th_check(s, "find prefix", cdz_weights_find(w, "encoder.0.conv") == NULL, NULL);
        th_check(s, "find NULL", cdz_weights_find(w, NULL) == NULL, NULL);
        th_check(s, "metadata format", !strcmp(cdz_weights_metadata_get(w, "format"), "cadenza"), NULL);
        th_check(s, "metadata model", !strcmp(cdz_weights_metadata_get(w, "model"), "htdemucs"), NULL);
        th_check(s, "metadata config", !strcmp(cdz_weights_metadata_get(w, "config"), META[5]), NULL);
        th_check(s, "metadata absent", cdz_weights_metadata_get(w, "nope") == NULL, NULL);
        const char *mj = cdz_weights_metadata_json(w);
        json_error_t jerr;
        json_t *m = json_loads(mj, 0, &jerr);
        th_check(s, "metadata_json parses", m && json_object_size(m) == 4 &&
                 !strcmp(json_string_value(json_object_get(m, "model")), "htdemucs"), "%s", mj);
        th_check(s, "metadata_json compact", !strchr(mj, '\n') && !has(mj, "\": "), "%s", mj);
        json_decref(m);
        cdz_weights_close(w);
    }
    unlink(path);
    th_end(s);
}

static void test_no_metadata(th_suite *s) {
    if (!th_begin(s, "roundtrip", "no metadata, no tensors")) return;
    expect_ok(s, "{} with no data", "{}", 0, 0);
    expect_ok(s, "padded {}", "{}      ", 0, 0);
    expect_ok(s, "only metadata", "{\"__metadata__\":{\"a\":\"b\"}}", 0, 0);
    size_t size;
    uint8_t *buf = raw_file(s, "{}", 0, &size);
    cdz_weights *w = NULL;
    if (th_ok(s, "open {}", cdz_weights_open_buffer(buf, size, NULL, &w))) {
        th_check(s, "metadata_json {}", !strcmp(cdz_weights_metadata_json(w), "{}"), NULL);
        th_check(s, "metadata_get NULL", cdz_weights_metadata_get(w, "format") == NULL, NULL);
        th_check(s, "find on empty", cdz_weights_find(w, "x") == NULL, NULL);
        th_expect_status(s, "expect on empty",
                         cdz_weights_expect(w, "x", CDZ_DTYPE_F32, 0, NULL, NULL),
                         CDZ_STATUS_INVALID_ARGUMENT);
    }
    cdz_weights_close(w);
    expect_ok(s, "empty tensors at one offset",
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
              "\"b\":{\"dtype\":\"F16\",\"shape\":[3,0],\"data_offsets\":[0,0]},"
              "\"c\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
              "\"d\":{\"dtype\":\"I8\",\"shape\":[0,7],\"data_offsets\":[2,2]}}", 2, 4);
    th_end(s);
}

static void test_expect(th_suite *s) {
    if (!th_begin(s, "expect", "dtype/shape mismatch and missing messages")) return;
    float x[48 * 4 * 8];
    for (int i = 0; i < 48 * 4 * 8; i++) x[i] = (float)i;
    uint16_t h[48 * 4 * 8] = {0};
    tw_tensor t[] = {
        {"encoder.0.conv.weight", "F16", 3, {48, 4, 8}, h, sizeof h},
        {"encoder.0.conv.bias", "F32", 1, {48}, x, 48 * 4},
        {"scalar", "F32", 0, {0}, x, 4},
    };
    size_t size;
    uint8_t *buf = tw_build(s, t, 3, NULL, NULL, 8, &size);
    cdz_weights *w = NULL;
    if (!th_ok(s, "open", cdz_weights_open_buffer(buf, size, "x.safetensors", &w))) {
        th_end(s);
        return;
    }
    const cdz_weight_entry *e = NULL;
    th_ok(s, "match", cdz_weights_expect(w, "encoder.0.conv.weight", CDZ_DTYPE_F16, 3,
                                         (int64_t[]){48, 4, 8}, &e));
    th_check(s, "out set", e && !strcmp(e->name, "encoder.0.conv.weight"), NULL);
    th_ok(s, "wildcard -1", cdz_weights_expect(w, "encoder.0.conv.weight", CDZ_DTYPE_F16, 3,
                                               (int64_t[]){48, -1, 8}, NULL));
    th_ok(s, "scalar", cdz_weights_expect(w, "scalar", CDZ_DTYPE_F32, 0, NULL, NULL));
    e = (const cdz_weight_entry *)0x1;
    th_expect_status(s, "wrong dtype",
                     cdz_weights_expect(w, "encoder.0.conv.weight", CDZ_DTYPE_F32, 3,
                                        (int64_t[]){48, 4, 8}, &e),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "out NULL on mismatch", e == NULL, NULL);
    const char *want =
        "weights 'x.safetensors': tensor 'encoder.0.conv.weight' is f16[48,4,8], expected f32[48,4,8]";
    th_check(s, "dtype message", !strcmp(cdz_last_message(), want), "got '%s'", cdz_last_message());
    th_expect_status(s, "wrong shape",
                     cdz_weights_expect(w, "encoder.0.conv.bias", CDZ_DTYPE_F32, 2,
                                        (int64_t[]){48, 1}, NULL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "shape message", has(cdz_last_message(), "is f32[48], expected f32[48,1]"), "got '%s'",
             cdz_last_message());
    th_expect_status(s, "missing",
                     cdz_weights_expect(w, "encoder.0.conv.weigth", CDZ_DTYPE_F16, 3,
                                        (int64_t[]){48, 4, 8}, NULL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "missing message",
             has(cdz_last_message(), "weights 'x.safetensors': tensor 'encoder.0.conv.weigth' not found") &&
                 has(cdz_last_message(), "nearest name: 'encoder.0.conv.weight'"),
             "got '%s'", cdz_last_message());
    th_expect_status(s, "bad ndim", cdz_weights_expect(w, "scalar", CDZ_DTYPE_F32, 7, NULL, NULL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "NULL shape", cdz_weights_expect(w, "scalar", CDZ_DTYPE_F32, 1, NULL, NULL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "bad dtype", cdz_weights_expect(w, "scalar", CDZ_DTYPE_COUNT_, 0, NULL, NULL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    cdz_weights_close(w);
    th_end(s);
}

static void test_upload(th_suite *s) {
    if (!th_begin(s, "upload", "CPU arena, unaligned data section, empty tensor, OOM")) return;
    float x[7 * 3];
    for (int i = 0; i < 21; i++) x[i] = (float)th_rand_uniform(s, -1, 1);
    int64_t ids[5] = {1, -2, 3, -4, 5};
    tw_tensor t[] = {
        {"u8", "U8", 1, {3}, "abc", 3}, /* puts every following tensor off alignment */
        {"w", "F32", 2, {7, 3}, x, sizeof x},
        {"ids", "I64", 1, {5}, ids, sizeof ids},
        {"none", "F32", 2, {4, 0}, NULL, 0},
    };
    size_t size;
    uint8_t *buf = tw_build(s, t, 4, NULL, NULL, 1, &size); /* align 1: odd header length */
    cdz_weights *w = NULL;
    cdz_arena *a = NULL;
    const cdz_device cpu = {CDZ_DEVICE_CPU, 0};
    if (!th_ok(s, "open", cdz_weights_open_buffer(buf, size, "up", &w)) ||
        !th_ok(s, "arena", cdz_arena_create(cpu, 1 << 20, &a))) {
        cdz_weights_close(w);
        th_end(s);
        return;
    }
    const cdz_weight_entry *ew = cdz_weights_find(w, "w");
    th_check(s, "file data is unaligned", ew && ((uintptr_t)ew->data % 4) != 0,
             "the test wants an unaligned source (%p)", ew ? ew->data : NULL);
    for (int i = 0; i < 3; i++) {
        cdz_tensor d;
        memset(&d, 0x5a, sizeof d);
        if (!th_ok(s, t[i].name, cdz_weights_upload(w, t[i].name, a, &d))) continue;
        th_check(s, "descriptor",
                 d.ndim == t[i].ndim && d.shape[0] == t[i].shape[0] &&
                     d.device.kind == CDZ_DEVICE_CPU && cdz_tensor_is_contiguous(&d) &&
                     cdz_tensor_nbytes(&d) == t[i].nbytes && d.data &&
                     (uintptr_t)d.data % CDZ_ARENA_ALIGN == 0,
                 "%s", t[i].name);
        th_compare_bytes(s, t[i].name, d.data, t[i].data, t[i].nbytes);
    }
    cdz_tensor d;
    if (th_ok(s, "empty", cdz_weights_upload(w, "none", a, &d)))
        th_check(s, "empty descriptor", d.ndim == 2 && d.shape[0] == 4 && d.shape[1] == 0 &&
                 cdz_tensor_numel(&d) == 0, NULL);
    th_expect_status(s, "missing", cdz_weights_upload(w, "nope", a, &d), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "missing message", has(cdz_last_message(), "'nope' not found"), "%s", cdz_last_message());
    cdz_arena_stats before, after;
    cdz_arena_get_stats(a, &before);
    cdz_arena_fail_after(a, 1);
    th_expect_status(s, "arena exhausted", cdz_weights_upload(w, "w", a, &d), CDZ_STATUS_OUT_OF_MEMORY);
    th_check(s, "OOM message names the tensor",
             has(cdz_last_message(), "weights 'up': uploading tensor 'w'"), "%s", cdz_last_message());
    cdz_arena_get_stats(a, &after);
    th_check(s, "nothing held after OOM", after.used == before.used, "%zu vs %zu", after.used, before.used);
    cdz_arena *small = NULL;
    if (th_ok(s, "small arena", cdz_arena_create(cpu, 256, &small))) {
        th_expect_status(s, "fits the small arena", cdz_weights_upload(w, "ids", small, &d), CDZ_STATUS_OK);
        th_expect_status(s, "arena full", cdz_weights_upload(w, "w", small, &d), CDZ_STATUS_OUT_OF_MEMORY);
        cdz_arena_destroy(small);
    }
    th_expect_status(s, "NULL arena", cdz_weights_upload(w, "w", NULL, &d), CDZ_STATUS_INVALID_ARGUMENT);
    cdz_arena_destroy(a);
    cdz_weights_close(w);
    th_end(s);
}

static void test_many(th_suite *s) {
    if (!th_begin(s, "many", "10000 tensors: open and find every one")) return;
    enum { N = 10000 };
    /* Built as text directly: names in reverse order, data in forward order. */
    size_t cap = (size_t)N * 96 + 64, o = 0;
    char *hdr = th_alloc(s, cap);
    o += (size_t)snprintf(hdr + o, cap - o, "{");
    for (int i = N - 1; i >= 0; i--)
        o += (size_t)snprintf(hdr + o, cap - o,
                              "\"layers.%d.w\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[%d,%d]}%s",
                              i, 2 * i, 2 * i + 2, i ? "," : "}");
    size_t size;
    uint8_t *buf = raw_file(s, hdr, 2 * N, &size);
    cdz_weights *w = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (th_ok(s, "open", cdz_weights_open_buffer(buf, size, "many", &w))) {
        bool all = cdz_weights_count(w) == N;
        char name[32];
        for (int i = 0; i < N && all; i++) {
            snprintf(name, sizeof name, "layers.%d.w", i);
            const cdz_weight_entry *e = cdz_weights_find(w, name);
            all = e && e->offset == (uint64_t)(2 * i) && cdz_weights_at(w, (size_t)i) == e;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;
        th_check(s, "every tensor found at its offset", all, NULL);
        th_check(s, "open + 10k finds under 2 s", ms < 2000, "%.1f ms", ms);
        if (s->verbose) printf("    open + %d finds: %.1f ms\n", N, ms);
    }
    cdz_weights_close(w);
    th_end(s);
}

static void test_print(th_suite *s) {
    if (!th_begin(s, "print", "inspect listing: table, metadata (pretty config), totals")) return;
    float x[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[4] = {0};
    tw_tensor t[] = {
        {"encoder.0.conv.weight", "F32", 2, {2, 3}, x, sizeof x},
        {"b", "F16", 1, {4}, h, sizeof h},
        {"evil\nname\x1b[31m", "U8", 1, {2}, "zz", 2},
    };
    size_t size;
    uint8_t *buf = tw_build(s, t, 3, NULL, META, 8, &size);
    cdz_weights *w = NULL;
    FILE *f = tmpfile();
    if (!f || !th_ok(s, "open", cdz_weights_open_buffer(buf, size, "print.safetensors", &w))) {
        if (f) fclose(f);
        th_end(s);
        return;
    }
    th_ok(s, "print", cdz_weights_print(w, f));
    long len = ftell(f);
    char *text = th_alloc(s, (size_t)len + 1);
    rewind(f);
    size_t got = fread(text, 1, (size_t)len, f);
    text[got] = '\0';
    fclose(f);
    if (s->verbose) printf("%s", text);
    th_check(s, "names the file", has(text, "print.safetensors"), NULL);
    th_check(s, "row", has(text, "encoder.0.conv.weight  f32    [2,3]"), "%s", text);
    th_check(s, "metadata", has(text, "model: htdemucs") && has(text, "format: cadenza"), NULL);
    th_check(s, "config pretty-printed", has(text, "\"channels\": 48") && has(text, "  config:\n"), NULL);
    th_check(s, "totals", has(text, "parameters  12") && has(text, "tensors     3"), NULL);
    th_check(s, "control bytes escaped", has(text, "evil\\x0aname\\x1b[31m") && !strchr(text, 0x1b),
             NULL);
    th_expect_status(s, "NULL file", cdz_weights_print(w, NULL), CDZ_STATUS_INVALID_ARGUMENT);
    cdz_weights_close(w);
    th_end(s);
}

/* ------------------------------------------------------------------------------------
 * hostile files
 * ---------------------------------------------------------------------------------- */
static void test_truncation(th_suite *s) {
    if (!th_begin(s, "hostile", "every truncation of a valid file")) return;
    float x[5] = {1, 2, 3, 4, 5};
    uint16_t h[3] = {1, 2, 3};
    tw_tensor t[] = {{"a", "F32", 1, {5}, x, sizeof x}, {"b", "BF16", 2, {1, 3}, h, sizeof h}};
    size_t size;
    uint8_t *buf = tw_build(s, t, 2, NULL, (const char *const[]){"k", "v", NULL}, 8, &size);
    int bad = 0;
    size_t first_bad = 0;
    for (size_t len = 0; len <= size; len++) {
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, buf, len);
        cdz_weights *w = NULL;
        cdz_error_clear();
        cdz_status st = cdz_weights_open_buffer(len ? copy : NULL, len, LABEL, &w);
        bool ok = len == size ? st == CDZ_STATUS_OK && w
                              : st != CDZ_STATUS_OK && !w && has(cdz_last_message(), LABEL);
        if (!ok && !bad++) first_bad = len;
        cdz_weights_close(w);
        free(copy);
    }
    th_check(s, "each prefix fails cleanly, the whole file opens", bad == 0,
             "%d bad, first at length %zu of %zu: %s", bad, first_bad, size, cdz_last_message());
    /* One extra byte is a hole at the end of the data section. */
    uint8_t *longer = th_alloc(s, size + 1);
    memcpy(longer, buf, size);
    expect_fail_buf(s, "one trailing byte", longer, size + 1, CDZ_STATUS_INVALID_ARGUMENT,
                    "1 trailing bytes", "after tensor 'b'");
    th_end(s);
}

static void test_header_length(th_suite *s) {
    if (!th_begin(s, "hostile", "header length")) return;
    uint8_t b[16];
    memcpy(b + 8, "{}      ", 8);
    memset(b, 0xff, 8);
    expect_fail_buf(s, "length 2^64-1", b, 16, CDZ_STATUS_TOO_LARGE, "18446744073709551615", "limit");
    uint64_t n = (uint64_t)CDZ_SAFETENSORS_HEADER_MAX + 1;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(n >> (8 * i));
    expect_fail_buf(s, "length over the limit", b, 16, CDZ_STATUS_TOO_LARGE, "exceeds the limit", NULL);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)9 >> (8 * i));
    expect_fail_buf(s, "length past the end", b, 16, CDZ_STATUS_INVALID_ARGUMENT, "past the end", NULL);
    memset(b, 0, 8);
    expect_fail_buf(s, "length 0", b, 8, CDZ_STATUS_INVALID_ARGUMENT, "not valid JSON", NULL);
    expect_fail_buf(s, "7 bytes", b, 7, CDZ_STATUS_INVALID_ARGUMENT, "7 bytes", NULL);
    expect_fail_buf(s, "empty buffer", b, 0, CDZ_STATUS_INVALID_ARGUMENT, "empty", NULL);
    th_end(s);
}

static void test_json(th_suite *s) {
    if (!th_begin(s, "hostile", "header JSON")) return;
    expect_fail(s, "not JSON", "hello world", 0, CDZ_STATUS_INVALID_ARGUMENT, "not valid JSON", NULL);
    expect_fail(s, "JSON array", "[1,2,3]", 0, CDZ_STATUS_INVALID_ARGUMENT, "JSON object", "array");
    expect_fail(s, "JSON string", "\"x\"", 0, CDZ_STATUS_INVALID_ARGUMENT, "not valid JSON", NULL);
    expect_fail(s, "trailing garbage", "{}}", 0, CDZ_STATUS_INVALID_ARGUMENT, "not valid JSON", NULL);
    size_t size;
    uint8_t *buf = raw_file(s, "{}xx", 0, &size);
    buf[10] = 0, buf[11] = 0;
    expect_fail_buf(s, "NUL bytes in header", buf, size, CDZ_STATUS_INVALID_ARGUMENT, "not valid JSON", NULL);
    buf = raw_file(s, "{\"a\xff\":1}", 0, &size);
    expect_fail_buf(s, "invalid UTF-8", buf, size, CDZ_STATUS_INVALID_ARGUMENT, "not valid JSON", NULL);
    expect_fail(s, "duplicate keys",
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                2, CDZ_STATUS_INVALID_ARGUMENT, "duplicate", NULL);
    expect_fail(s, "nested garbage",
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[[[[1]]]],\"data_offsets\":[0,4]}}", 4,
                CDZ_STATUS_INVALID_ARGUMENT, "tensor 'a': shape[0]", "an array");
    /* 100k nested arrays: jansson's depth limit, not the stack, must stop it. */
    enum { DEPTH = 100000 };
    char *deep = th_alloc(s, 2 * DEPTH + 16);
    strcpy(deep, "{\"a\":");
    memset(deep + 5, '[', DEPTH);
    memset(deep + 5 + DEPTH, ']', DEPTH);
    strcpy(deep + 5 + 2 * DEPTH, "}");
    expect_fail(s, "deep nesting", deep, 0, CDZ_STATUS_INVALID_ARGUMENT, "not valid JSON", NULL);
    expect_fail(s, "entry not an object", "{\"a\":[1,2]}", 0, CDZ_STATUS_INVALID_ARGUMENT,
                "tensor 'a': expected an object", NULL);
    th_end(s);
}

#define E(body) "{\"t.w\":{" body "}}"
static void test_entries(th_suite *s) {
    if (!th_begin(s, "hostile", "entries: dtype, shape, offsets, keys")) return;
    const cdz_status BAD = CDZ_STATUS_INVALID_ARGUMENT;
    expect_ok(s, "baseline", E("\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]"), 24, 1);
    /* dtype */
    expect_fail(s, "unknown dtype F8_E4M3", E("\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]"),
                2, BAD, "tensor 't.w'", "unsupported dtype 'F8_E4M3'");
    expect_fail(s, "lower-case dtype", E("\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]"), 4,
                BAD, "tensor 't.w'", "'f32'");
    expect_fail(s, "dtype not a string", E("\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]"), 4, BAD,
                "dtype must be a string", "found 5");
    /* shape */
    expect_fail(s, "negative dim", E("\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,24]"), 24,
                BAD, "tensor 't.w': shape[1]", "found -3");
    expect_fail(s, "real dim", E("\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]"), 8, BAD,
                "shape[0] must be a non-negative integer", "found the real number 2");
    expect_fail(s, "string dim", E("\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]"), 8, BAD,
                "shape[0]", "the string \"2\"");
    expect_fail(s, "shape not an array", E("\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]"), 16,
                BAD, "shape must be an array", "found 4");
    expect_fail(s, "7 dims", E("\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,1]"), 1,
                BAD, "7 dimensions", "at most 6");
    expect_ok(s, "6 dims", E("\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1],\"data_offsets\":[0,1]"), 1, 1);
    expect_fail(s, "product overflow",
                E("\"dtype\":\"U8\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,0]"), 0, BAD,
                "overflows", "t.w");
    expect_fail(s, "bytes overflow",
                E("\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]"), 0, BAD,
                "overflows", NULL);
    expect_fail(s, "overflow beside a 0",
                E("\"dtype\":\"U8\",\"shape\":[0,4294967296,4294967296],\"data_offsets\":[0,0]"), 0, BAD,
                "overflows", NULL);
    expect_fail(s, "dim beyond int64", E("\"dtype\":\"U8\",\"shape\":[18446744073709551616],\"data_offsets\":[0,0]"),
                0, BAD, "not valid JSON", NULL);
    /* data_offsets */
    expect_fail(s, "reversed", E("\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]"), 8, BAD,
                "[8, 0] are reversed", NULL);
    expect_fail(s, "out of bounds", E("\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]"), 15, BAD,
                "run past the end of the data section (15 bytes", NULL);
    expect_fail(s, "huge offset", E("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9223372036854775800,9223372036854775804]"),
                4, BAD, "run past the end", NULL);
    expect_fail(s, "one offset", E("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]"), 4, BAD,
                "[begin, end]", "fewer than 2");
    expect_fail(s, "three offsets", E("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]"), 8, BAD,
                "[begin, end]", "more than 2");
    expect_fail(s, "negative offset", E("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]"), 4, BAD,
                "data_offsets[0]", "found -4");
    expect_fail(s, "offsets object", E("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}"), 4, BAD,
                "[begin, end]", "an object");
    expect_fail(s, "byte size != shape", E("\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]"), 20,
                BAD, "f32[2,3] needs 24 bytes", "hold 20");
    expect_fail(s, "empty shape holding bytes", E("\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,4]"),
                4, BAD, "needs 0 bytes", NULL);
    /* keys */
    expect_fail(s, "missing dtype", E("\"shape\":[1],\"data_offsets\":[0,4]"), 4, BAD,
                "tensor 't.w': missing key 'dtype'", NULL);
    expect_fail(s, "missing shape", E("\"dtype\":\"F32\",\"data_offsets\":[0,4]"), 4, BAD,
                "missing key 'shape'", NULL);
    expect_fail(s, "missing offsets", E("\"dtype\":\"F32\",\"shape\":[1]"), 4, BAD,
                "missing key 'data_offsets'", NULL);
    expect_fail(s, "extra key", E("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"offsets\":1"), 4,
                BAD, "unexpected key 'offsets'", NULL);
    th_end(s);
}

static void test_layout(th_suite *s) {
    if (!th_begin(s, "hostile", "layout: overlap, holes, trailing bytes")) return;
    const cdz_status BAD = CDZ_STATUS_INVALID_ARGUMENT;
    expect_ok(s, "tiled out of order",
              "{\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
              "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 8, 2);
    expect_fail(s, "overlap",
                "{\"first\":{\"dtype\":\"U8\",\"shape\":[6],\"data_offsets\":[0,6]},"
                "\"second\":{\"dtype\":\"U8\",\"shape\":[6],\"data_offsets\":[4,10]}}", 10, BAD,
                "tensor 'second' (data_offsets [4, 10]) overlaps tensor 'first' ([0, 6])", NULL);
    expect_fail(s, "identical ranges",
                "{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                "\"y\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, BAD,
                "overlaps", "'x'");
    expect_fail(s, "empty inside another",
                "{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                "\"y\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]}}", 4, BAD,
                "tensor 'y'", "overlaps tensor 'x'");
    expect_fail(s, "hole",
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[6,10]}}", 10, BAD,
                "bytes [4, 6)", "between tensor 'a' ending at 4 and tensor 'b' starting at 6");
    expect_fail(s, "leading hole", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6, BAD,
                "bytes [0, 2)", "'a'");
    expect_fail(s, "trailing bytes", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 9, BAD,
                "data section has 9 bytes but the tensors end at 4", "'a'");
    expect_fail(s, "data but no tensors", "{}", 3, BAD, "no tensors", "3 bytes");
    th_end(s);
}

static void test_metadata(th_suite *s) {
    if (!th_begin(s, "hostile", "__metadata__")) return;
    const cdz_status BAD = CDZ_STATUS_INVALID_ARGUMENT;
    expect_fail(s, "number value", "{\"__metadata__\":{\"a\":\"x\",\"epoch\":3}}", 0, BAD,
                "__metadata__ key 'epoch' must have a string value", "found 3");
    expect_fail(s, "object value", "{\"__metadata__\":{\"config\":{\"channels\":48}}}", 0, BAD,
                "key 'config'", "an object");
    expect_fail(s, "null value", "{\"__metadata__\":{\"a\":null}}", 0, BAD, "found null", NULL);
    expect_fail(s, "not an object", "{\"__metadata__\":[\"a\"]}", 0, BAD, "__metadata__ must be an object",
                "an array");
    expect_fail(s, "string", "{\"__metadata__\":\"a\"}", 0, BAD, "__metadata__ must be an object", NULL);
    expect_fail(s, "duplicate metadata", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, BAD, "duplicate", NULL);
    expect_ok(s, "empty metadata", "{\"__metadata__\":{}}", 0, 0);
    th_end(s);
}

static void test_names(th_suite *s) {
    if (!th_begin(s, "hostile", "tensor names")) return;
    const cdz_status BAD = CDZ_STATUS_INVALID_ARGUMENT;
    expect_fail(s, "empty name", "{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, BAD,
                "empty name", NULL);
    expect_fail(s, "escaped NUL", "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                1, BAD, "NUL", NULL);
    char hdr[1200];
    for (int len = 1024; len <= 1025; len++) {
        char name[1100];
        memset(name, 'n', (size_t)len);
        name[len] = '\0';
        snprintf(hdr, sizeof hdr, "{\"%s\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", name);
        if (len == 1024)
            expect_ok(s, "1024-byte name", hdr, 1, 1);
        else
            expect_fail(s, "1025-byte name", hdr, 1, BAD, "has 1025 bytes, the limit is 1024", "...");
    }
    expect_ok(s, "UTF-8 name", "{\"\xc3\xa9t\xc3\xa9.\xe2\x86\x92\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
              1, 1);
    expect_fail(s, "control chars escaped in messages",
                "{\"a\\u001bb\":{\"dtype\":\"Q\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, BAD,
                "tensor 'a\\x1bb'", NULL);
    th_end(s);
}

static void test_paths(th_suite *s) {
    if (!th_begin(s, "hostile", "paths: missing, directory, empty, 7 bytes, truncated")) return;
    cdz_weights *w = (cdz_weights *)0x1;
    char path[128];
    snprintf(path, sizeof path, "%s/missing.safetensors", tmpdir);
    th_expect_status(s, "missing path", cdz_weights_open(path, &w), CDZ_STATUS_IO);
    th_check(s, "missing message", has(cdz_last_message(), path) && has(cdz_last_message(), "No such file"),
             "%s", cdz_last_message());
    th_check(s, "out NULL", w == NULL, NULL);
    th_expect_status(s, "directory", cdz_weights_open(tmpdir, &w), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "directory message", has(cdz_last_message(), tmpdir) && has(cdz_last_message(), "directory"),
             "%s", cdz_last_message());
    snprintf(path, sizeof path, "%s/empty.safetensors", tmpdir);
    write_file(path, "", 0);
    th_expect_status(s, "empty file", cdz_weights_open(path, &w), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "empty message", has(cdz_last_message(), path) && has(cdz_last_message(), "empty"), "%s",
             cdz_last_message());
    unlink(path);
    snprintf(path, sizeof path, "%s/seven.safetensors", tmpdir);
    write_file(path, "\x02\0\0\0\0\0\0", 7);
    th_expect_status(s, "7-byte file", cdz_weights_open(path, &w), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "7-byte message", has(cdz_last_message(), path) && has(cdz_last_message(), "7 bytes"), "%s",
             cdz_last_message());
    unlink(path);
    size_t size;
    uint8_t *buf = raw_file(s, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, &size);
    snprintf(path, sizeof path, "%s/trunc.safetensors", tmpdir);
    write_file(path, buf, size - 1);
    th_expect_status(s, "truncated file", cdz_weights_open(path, &w), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "truncated message", has(cdz_last_message(), path) && has(cdz_last_message(), "tensor 'a'"),
             "%s", cdz_last_message());
    unlink(path);
    snprintf(path, sizeof path, "%s/fifo", tmpdir);
    if (mkfifo(path, 0600) == 0) {
        th_expect_status(s, "FIFO", cdz_weights_open(path, &w), CDZ_STATUS_INVALID_ARGUMENT);
        unlink(path);
    }
    th_expect_status(s, "NULL path", cdz_weights_open(NULL, &w), CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "NULL out", cdz_weights_open(path, NULL), CDZ_STATUS_INVALID_ARGUMENT);
    th_end(s);
}

int main(int argc, char **argv) {
    th_suite s;
    if (!th_init(&s, "test_weights", argc, argv)) return 2;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/cdz_weights.XXXXXX", base && strlen(base) < 32 ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "test_weights: cannot create a temporary directory\n");
        return 2;
    }
    test_roundtrip(&s);
    test_no_metadata(&s);
    test_expect(&s);
    test_upload(&s);
    test_many(&s);
    test_print(&s);
    test_truncation(&s);
    test_header_length(&s);
    test_json(&s);
    test_entries(&s);
    test_layout(&s);
    test_metadata(&s);
    test_names(&s);
    test_paths(&s);
    rmdir(tmpdir);
    return th_finish(&s);
}
