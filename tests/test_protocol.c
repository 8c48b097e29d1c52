/*
 * test_protocol: the wire protocol (server/protocol.c, docs/protocol.md).
 *
 * Proves: every frame type round-trips (encode -> peek at every prefix -> decode -> compare ->
 * re-encode byte for byte); every error code round-trips; frames built by hand from the spec
 * decode to what the spec says (and the encoder writes those exact bytes); peek refuses a bad
 * magic, version, type, flags or length from the first byte that shows it; truncation at every
 * byte, trailing bytes, padding, counts, names, dtypes, dims overflow and byte lengths that do
 * not match the dims are refused with messages naming the field and the limit; the pre-HELLO
 * limits; stream sequence rules.
 *
 * server/ is not part of libcadenza, so the sources are compiled into this program.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "../server/protocol.c"

/* ------------------------------------------------------------------------------------
 * helpers
 * ---------------------------------------------------------------------------------- */
static bool expect_err(th_suite *s, const char *what, cdz_status st, cdz_status code, const char *substr) {
    bool ok = th_expect_status(s, what, st, code);
    if (substr) {
        char label[160];
        snprintf(label, sizeof label, "%s: message", what);
        th_check(s, label, strstr(cdz_last_message(), substr) != NULL, "'%s' not in '%s'", substr, cdz_last_message());
    }
    return ok;
}

/* 8-aligned frame buffers (uint64_t storage) */
typedef struct frame_buf {
    uint64_t words[8192];
    size_t len;
} frame_buf;
static uint8_t *fb_bytes(frame_buf *f) { return (uint8_t *)f->words; }

/* Raw builder, written from docs/protocol.md independently of the encoder. */
typedef struct raw {
    uint8_t b[60000];
    size_t n;
} raw;
static void r_u8(raw *r, uint8_t v) { r->b[r->n++] = v; }
static void r_u16(raw *r, uint16_t v) { r_u8(r, (uint8_t)v); r_u8(r, (uint8_t)(v >> 8)); }
static void r_u32(raw *r, uint32_t v) { r_u16(r, (uint16_t)v); r_u16(r, (uint16_t)(v >> 16)); }
static void r_u64(raw *r, uint64_t v) { r_u32(r, (uint32_t)v); r_u32(r, (uint32_t)(v >> 32)); }
static void r_bytes(raw *r, const void *p, size_t n) { memcpy(r->b + r->n, p, n); r->n += n; }
static void r_str(raw *r, const char *str) { r_u16(r, (uint16_t)strlen(str)); r_bytes(r, str, strlen(str)); }
static void r_pad(raw *r) { while (r->n % 8) r_u8(r, 0); }
/* tensor: name, dtype, ndim, dims, nbytes, pad (body offsets == frame offsets mod 8), data */
static void r_tensor(raw *r, const char *name, uint8_t dtype, int ndim, const int64_t *dims, uint64_t nbytes,
                     const void *data) {
    r_str(r, name);
    r_u8(r, dtype);
    r_u8(r, (uint8_t)ndim);
    for (int i = 0; i < ndim; i++) r_u64(r, (uint64_t)dims[i]);
    r_u64(r, nbytes);
    r_pad(r);
    if (data) r_bytes(r, data, (size_t)nbytes);
}

typedef struct hdr_fields {
    uint16_t version, type;
    uint32_t flags;
    uint64_t request_id, stream_id, sequence, deadline_us;
    uint8_t priority;
    int32_t body_len; /* -1: the body's real length */
} hdr_fields;

/* header + body (padded to 8 unless the body is deliberately odd) into f */
static void r_frame(frame_buf *f, const hdr_fields *h, const raw *body) {
    raw hd = {.n = 0};
    r_bytes(&hd, "CDZP", 4);
    r_u16(&hd, h->version ? h->version : 1);
    r_u16(&hd, h->type);
    r_u32(&hd, h->flags);
    r_u32(&hd, h->body_len >= 0 ? (uint32_t)h->body_len : (uint32_t)(body ? body->n : 0));
    r_u64(&hd, h->request_id);
    r_u64(&hd, h->stream_id);
    r_u64(&hd, h->sequence);
    r_u64(&hd, h->deadline_us);
    r_u8(&hd, h->priority);
    while (hd.n < 56) r_u8(&hd, 0);
    memcpy(fb_bytes(f), hd.b, 56);
    if (body) memcpy(fb_bytes(f) + 56, body->b, body->n);
    f->len = 56 + (body ? body->n : 0);
}

static bool tensors_eq(const cdz_proto_tensor *a, const cdz_proto_tensor *b, bool spec) {
    if (strcmp(a->name, b->name) || a->dtype != b->dtype || a->ndim != b->ndim || a->nbytes != b->nbytes) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i]) return false;
    if (spec || a->nbytes == 0) return true;
    return a->data && b->data && memcmp(a->data, b->data, (size_t)a->nbytes) == 0;
}

/* Field-by-field equality of what the type carries; describes the first difference. */
static bool msg_eq(const cdz_proto_msg *a, const cdz_proto_msg *b, char *why, size_t cap) {
#define DIFF(cond, ...) do { if (cond) { snprintf(why, cap, __VA_ARGS__); return false; } } while (0)
    DIFF(a->h.type != b->h.type, "type %u vs %u", a->h.type, b->h.type);
    DIFF(a->h.flags != b->h.flags, "flags");
    DIFF(a->h.request_id != b->h.request_id, "request_id");
    DIFF(a->h.stream_id != b->h.stream_id, "stream_id");
    DIFF(a->h.sequence != b->h.sequence, "sequence");
    DIFF(a->h.deadline_us != b->h.deadline_us, "deadline_us");
    DIFF(a->h.priority != b->h.priority, "priority");
    switch (a->h.type) {
    case CDZ_PROTO_HELLO:
        DIFF(strcmp(a->api_key, b->api_key), "api_key");
        DIFF(strcmp(a->agent, b->agent), "agent");
        break;
    case CDZ_PROTO_WELCOME:
        DIFF(a->max_body != b->max_body || a->max_streams != b->max_streams, "limits");
        DIFF(strcmp(a->agent, b->agent), "agent");
        break;
    case CDZ_PROTO_INFER:
    case CDZ_PROTO_STREAM_OPEN:
        DIFF(strcmp(a->model, b->model), "model '%s' vs '%s'", a->model, b->model);
        DIFF(a->n_outputs != b->n_outputs, "n_outputs");
        for (uint32_t i = 0; i < a->n_outputs; i++) DIFF(strcmp(a->outputs[i], b->outputs[i]), "output %u", i);
        /* fallthrough */
    case CDZ_PROTO_STREAM_CHUNK:
    case CDZ_PROTO_RESULT:
        DIFF(a->n_tensors != b->n_tensors, "n_tensors %u vs %u", a->n_tensors, b->n_tensors);
        for (uint32_t i = 0; i < a->n_tensors; i++) DIFF(!tensors_eq(&a->tensors[i], &b->tensors[i], false), "tensor %u", i);
        DIFF(a->queue_us != b->queue_us || a->compute_us != b->compute_us, "timings");
        break;
    case CDZ_PROTO_ERROR:
        DIFF(a->code != b->code || a->retryable != b->retryable, "code/retryable");
        DIFF(strcmp(a->message, b->message), "message");
        break;
    case CDZ_PROTO_MODEL_LIST:
        DIFF(a->n_models != b->n_models || a->n_tensors != b->n_tensors, "counts");
        for (uint32_t i = 0; i < a->n_models; i++) {
            const cdz_proto_model *x = &a->models[i], *y = &b->models[i];
            DIFF(strcmp(x->name, y->name) || x->flags != y->flags || x->first_input != y->first_input ||
                     x->n_inputs != y->n_inputs || x->first_output != y->first_output || x->n_outputs != y->n_outputs,
                 "model %u", i);
        }
        for (uint32_t i = 0; i < a->n_tensors; i++) DIFF(!tensors_eq(&a->tensors[i], &b->tensors[i], true), "spec %u", i);
        break;
    default: break;
    }
    return true;
#undef DIFF
}

/* payloads shared by the samples */
static float pay_f32[6] = {0.5f, -1.25f, 3.0f, 1e-3f, -7.5f, 42.0f};
static int64_t pay_i64[1] = {-123456789012345ll};
static uint8_t pay_bool[3] = {1, 0, 1};
static int32_t pay_i32[1] = {25};
static uint8_t pay_u8[12] = {0, 1, 2, 3, 250, 251, 252, 253, 254, 255, 7, 9};
static uint16_t pay_bf16[5] = {0x3f80, 0xbf80, 0x4000, 0x0000, 0x7f80};

static void set_tensor(cdz_proto_tensor *t, const char *name, cdz_dtype dtype, int ndim, const int64_t *dims,
                       const void *data) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->ndim = ndim;
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) t->dims[i] = dims[i], n *= (uint64_t)(dims[i] < 0 ? 0 : dims[i]);
    t->nbytes = data ? n * cdz_dtype_size(dtype) : 0;
    t->data = data;
}

#define N_SAMPLES 16
/* Sample i of every type (and variants); returns false past the end. */
static bool make_sample(int i, cdz_proto_msg *m, const char **label) {
    switch (i) {
    case 0:
        cdz_proto_msg_init(m, CDZ_PROTO_HELLO);
        strcpy(m->api_key, "s3cret-KEY_0123456789~!");
        strcpy(m->agent, "cadenza-client/0.1 (test suite)");
        *label = "HELLO with key";
        return true;
    case 1:
        cdz_proto_msg_init(m, CDZ_PROTO_HELLO);
        *label = "HELLO empty";
        return true;
    case 2:
        cdz_proto_msg_init(m, CDZ_PROTO_WELCOME);
        m->h.request_id = 1;
        m->max_body = 64u << 20;
        m->max_streams = 16;
        strcpy(m->agent, "cadenza/0.1.0");
        *label = "WELCOME";
        return true;
    case 3:
        cdz_proto_msg_init(m, CDZ_PROTO_INFER);
        m->h.request_id = 42;
        m->h.deadline_us = 5000000;
        m->h.priority = 2;
        strcpy(m->model, "htdemucs_ft");
        m->n_outputs = 2;
        strcpy(m->outputs[0], "drums");
        strcpy(m->outputs[1], "vocals");
        m->n_tensors = 5;
        set_tensor(&m->tensors[0], "mix", CDZ_DTYPE_F32, 3, (int64_t[]){1, 2, 3}, pay_f32);
        set_tensor(&m->tensors[1], "scalar", CDZ_DTYPE_I64, 0, NULL, pay_i64);
        set_tensor(&m->tensors[2], "empty", CDZ_DTYPE_F16, 2, (int64_t[]){0, 4}, NULL);
        set_tensor(&m->tensors[3], "mask", CDZ_DTYPE_BOOL, 1, (int64_t[]){3}, pay_bool);
        set_tensor(&m->tensors[4], "x.bf16", CDZ_DTYPE_BF16, 1, (int64_t[]){5}, pay_bf16);
        *label = "INFER 5 inputs, 2 outputs";
        return true;
    case 4:
        cdz_proto_msg_init(m, CDZ_PROTO_INFER);
        m->h.request_id = UINT64_MAX;
        m->h.deadline_us = CDZ_PROTO_MAX_DEADLINE_US;
        m->h.priority = CDZ_PROTO_MAX_PRIORITY;
        strcpy(m->model, "m");
        *label = "INFER no inputs, all outputs, limits of the header";
        return true;
    case 5:
        cdz_proto_msg_init(m, CDZ_PROTO_STREAM_OPEN);
        m->h.request_id = 43;
        m->h.stream_id = 7;
        strcpy(m->model, "recognizer");
        m->n_tensors = 1;
        set_tensor(&m->tensors[0], "fps", CDZ_DTYPE_I32, 1, (int64_t[]){1}, pay_i32);
        *label = "STREAM_OPEN";
        return true;
    case 6:
        cdz_proto_msg_init(m, CDZ_PROTO_STREAM_CHUNK);
        m->h.request_id = 43;
        m->h.stream_id = 7;
        m->h.deadline_us = 40000;
        m->n_tensors = 1;
        set_tensor(&m->tensors[0], "frame", CDZ_DTYPE_U8, 3, (int64_t[]){2, 2, 3}, pay_u8);
        *label = "STREAM_CHUNK seq 0";
        return true;
    case 7:
        cdz_proto_msg_init(m, CDZ_PROTO_STREAM_CHUNK);
        m->h.request_id = 43;
        m->h.stream_id = 7;
        m->h.sequence = 5;
        m->h.flags = CDZ_PROTO_FLAG_END_OF_STREAM;
        *label = "STREAM_CHUNK END, empty";
        return true;
    case 8:
        cdz_proto_msg_init(m, CDZ_PROTO_STREAM_CLOSE);
        m->h.request_id = 43;
        m->h.stream_id = 7;
        m->h.sequence = 3;
        *label = "STREAM_CLOSE";
        return true;
    case 9:
        cdz_proto_msg_init(m, CDZ_PROTO_CANCEL);
        m->h.request_id = 42;
        *label = "CANCEL";
        return true;
    case 10:
        cdz_proto_msg_init(m, CDZ_PROTO_LIST_MODELS);
        m->h.request_id = 44;
        *label = "LIST_MODELS";
        return true;
    case 11:
        cdz_proto_msg_init(m, CDZ_PROTO_MODEL_LIST);
        m->h.request_id = 44;
        m->n_models = 2;
        strcpy(m->models[0].name, "htdemucs");
        m->models[0].flags = CDZ_PROTO_MODEL_INFER | CDZ_PROTO_MODEL_STREAM;
        m->models[0].first_input = 0, m->models[0].n_inputs = 1, m->models[0].first_output = 1, m->models[0].n_outputs = 1;
        set_tensor(&m->tensors[0], "mix", CDZ_DTYPE_F32, 3, (int64_t[]){-1, 2, -1}, NULL);
        set_tensor(&m->tensors[1], "stems", CDZ_DTYPE_F32, 4, (int64_t[]){-1, 4, 2, -1}, NULL);
        strcpy(m->models[1].name, "recognizer");
        m->models[1].flags = CDZ_PROTO_MODEL_STREAM;
        m->models[1].first_input = 2, m->models[1].n_inputs = 1, m->models[1].first_output = 3, m->models[1].n_outputs = 2;
        set_tensor(&m->tensors[2], "frame", CDZ_DTYPE_U8, 4, (int64_t[]){10, 64, 64, 3}, NULL);
        set_tensor(&m->tensors[3], "logits", CDZ_DTYPE_F32, 2, (int64_t[]){-1, 100}, NULL);
        set_tensor(&m->tensors[4], "top", CDZ_DTYPE_I64, 1, (int64_t[]){1}, NULL);
        m->n_tensors = 5;
        *label = "MODEL_LIST";
        return true;
    case 12:
        cdz_proto_msg_init(m, CDZ_PROTO_RESULT);
        m->h.request_id = 42;
        m->queue_us = 120;
        m->compute_us = 3456;
        m->n_tensors = 2;
        set_tensor(&m->tensors[0], "drums", CDZ_DTYPE_F32, 2, (int64_t[]){2, 3}, pay_f32);
        set_tensor(&m->tensors[1], "vocals", CDZ_DTYPE_U8, 1, (int64_t[]){12}, pay_u8);
        *label = "RESULT";
        return true;
    case 13:
        cdz_proto_msg_init(m, CDZ_PROTO_RESULT);
        m->h.request_id = 43;
        m->h.stream_id = 7;
        m->h.sequence = 3;
        m->h.flags = CDZ_PROTO_FLAG_END_OF_STREAM;
        *label = "RESULT stream END, empty";
        return true;
    case 14:
        cdz_proto_msg_init(m, CDZ_PROTO_ERROR);
        m->h.request_id = 42;
        m->h.flags = CDZ_PROTO_FLAG_CLOSING;
        m->code = CDZ_STATUS_BUSY;
        m->retryable = true;
        strcpy(m->message, "queue of model 'htdemucs' is full (64 requests); retry later — ünïcode ok");
        *label = "ERROR";
        return true;
    case 15:
        cdz_proto_msg_init(m, CDZ_PROTO_ERROR);
        m->h.stream_id = 9;
        m->h.sequence = 12;
        m->code = CDZ_STATUS_INVALID_ARGUMENT;
        strcpy(m->message, "x");
        *label = "ERROR stream, request 0";
        return true;
    }
    return false;
}

/* encode; measure first; check size and the header's body length */
static bool encode_into(th_suite *s, const cdz_proto_msg *m, frame_buf *f, const char *label) {
    size_t size = 0, size2 = 0;
    if (!th_ok(s, label, cdz_proto_encode(m, NULL, 0, &size))) return false;
    bool ok = th_ok(s, label, cdz_proto_encode(m, fb_bytes(f), sizeof f->words, &size2));
    th_check(s, "measured size == written size", size == size2 && size % 8 == 0 && size >= 56, "%zu vs %zu", size, size2);
    f->len = size2;
    return ok;
}

/* ------------------------------------------------------------------------------------
 * cases
 * ---------------------------------------------------------------------------------- */
static void test_roundtrip(th_suite *s) {
    static cdz_proto_msg m, d, d2;
    static frame_buf f, g;
    const char *label;
    for (int i = 0; make_sample(i, &m, &label); i++) {
        if (!th_begin(s, "roundtrip", "%s", label)) continue;
        if (encode_into(s, &m, &f, "encode")) {
            /* peek at every prefix: OK, need = 56 until the length is readable, then the frame size */
            bool peek_ok = true;
            for (size_t len = 0; len <= f.len; len++) {
                size_t need = 0;
                if (cdz_proto_frame_peek(fb_bytes(&f), len, NULL, &need) != CDZ_STATUS_OK ||
                    need != (len < 16 ? 56 : f.len)) {
                    th_check(s, "peek every prefix", false, "len %zu: need %zu, %s", len, need, cdz_last_message());
                    peek_ok = false;
                    break;
                }
            }
            if (peek_ok) th_check(s, "peek every prefix", true, NULL);
            if (th_ok(s, "decode", cdz_proto_decode(fb_bytes(&f), f.len, NULL, &d))) {
                char why[128] = "";
                th_check(s, "decoded == sent", msg_eq(&m, &d, why, sizeof why), "%s", why);
                th_check(s, "body_len", d.h.body_len == f.len - 56 && d.h.version == 1, "%u", d.h.body_len);
                bool aligned = true;
                for (uint32_t t = 0; t < d.n_tensors; t++)
                    if (d.tensors[t].data && ((uintptr_t)d.tensors[t].data - (uintptr_t)fb_bytes(&f)) % 8) aligned = false;
                th_check(s, "payload offsets are multiples of 8", aligned, NULL);
                bool views = true;
                for (uint32_t t = 0; t < d.n_tensors; t++)
                    if (d.tensors[t].data && ((const uint8_t *)d.tensors[t].data < fb_bytes(&f) ||
                                              (const uint8_t *)d.tensors[t].data + d.tensors[t].nbytes > fb_bytes(&f) + f.len))
                        views = false;
                th_check(s, "payloads are views into the buffer", views, NULL);
                if (encode_into(s, &d, &g, "re-encode")) {
                    th_check(s, "re-encoded size", g.len == f.len, "%zu vs %zu", g.len, f.len);
                    th_compare_bytes(s, "re-encoded bytes", fb_bytes(&f), fb_bytes(&g), f.len < g.len ? f.len : g.len);
                }
                if (th_ok(s, "decode again", cdz_proto_decode(fb_bytes(&g), g.len, NULL, &d2))) {
                    char why2[128] = "";
                    th_check(s, "stable", msg_eq(&d, &d2, why2, sizeof why2), "%s", why2);
                }
            }
            /* truncated at every byte: refused, never read past len (ASan builds check) */
            int bad = 0;
            for (size_t len = 0; len < f.len; len++) {
                uint8_t *copy = malloc(len ? len : 1);
                memcpy(copy, fb_bytes(&f), len);
                if (cdz_proto_decode(copy, len, NULL, &d) != CDZ_STATUS_INVALID_ARGUMENT) bad++;
                free(copy);
            }
            th_check(s, "truncated at every byte: INVALID_ARGUMENT", bad == 0, "%d prefixes not refused", bad);
            /* one extra frame's worth of bytes: decode wants exactly one frame */
            memset(fb_bytes(&f) + f.len, 0, 8);
            expect_err(s, "buffer longer than the frame", cdz_proto_decode(fb_bytes(&f), f.len + 8, NULL, &d),
                       CDZ_STATUS_INVALID_ARGUMENT, "buffer holds");
        }
        th_end(s);
    }
}

static void test_error_codes(th_suite *s) {
    if (!th_begin(s, "error-codes", "every cdz_status 1..%d through ERROR", CDZ_STATUS_COUNT_ - 1)) return;
    static frame_buf f;
    static cdz_proto_msg d;
    int bad = 0;
    for (int c = 1; c < CDZ_STATUS_COUNT_; c++) {
        char msg[64];
        snprintf(msg, sizeof msg, "error %s", cdz_status_name((cdz_status)c));
        bool retry = cdz_status_retryable((cdz_status)c);
        size_t size = 0;
        if (cdz_proto_encode_error(fb_bytes(&f), sizeof f.words, 10 + c, 0, 0, (cdz_status)c, retry, c == 13, msg,
                                   &size) != CDZ_STATUS_OK ||
            cdz_proto_decode(fb_bytes(&f), size, NULL, &d) != CDZ_STATUS_OK || d.code != (cdz_status)c ||
            d.retryable != retry || strcmp(d.message, msg) || d.h.request_id != (uint64_t)(10 + c) ||
            ((d.h.flags & CDZ_PROTO_FLAG_CLOSING) != 0) != (c == 13)) {
            bad++;
            th_check(s, cdz_status_name((cdz_status)c), false, "%s", cdz_last_message());
            continue;
        }
        /* and into the client's error record */
        cdz_error_clear();
        cdz_status raised = cdz_proto_error_raise(&d);
        if (raised != (cdz_status)c || cdz_last_error()->retryable != retry || strcmp(cdz_last_message(), msg)) bad++;
    }
    th_check(s, "13 codes: code, retryable, message, request id, closing flag", bad == 0, "%d bad", bad);
    /* the wire values are fixed by the spec */
    th_check(s, "wire values", CDZ_STATUS_INVALID_ARGUMENT == 1 && CDZ_STATUS_UNAUTHENTICATED == 9 &&
                                   CDZ_STATUS_INTERNAL == 13, NULL);
    size_t size;
    expect_err(s, "code 0 refused", cdz_proto_encode_error(fb_bytes(&f), sizeof f.words, 1, 0, 0, CDZ_STATUS_OK, false,
                                                           false, "x", &size), CDZ_STATUS_INVALID_ARGUMENT, "error code 0");
    expect_err(s, "code 14 refused", cdz_proto_encode_error(fb_bytes(&f), sizeof f.words, 1, 0, 0, CDZ_STATUS_COUNT_,
                                                            false, false, "x", &size), CDZ_STATUS_INVALID_ARGUMENT, NULL);
    /* the thread's record as a frame */
    cdz_error_set(CDZ_STATUS_DEADLINE_EXCEEDED, "request 5: deadline of 30 ms passed in the queue");
    th_ok(s, "encode_last_error", cdz_proto_encode_last_error(fb_bytes(&f), sizeof f.words, 5, 0, 0, false, &size));
    th_ok(s, "decode", cdz_proto_decode(fb_bytes(&f), size, NULL, &d));
    th_check(s, "last error carried", d.code == CDZ_STATUS_DEADLINE_EXCEEDED && d.retryable &&
                                          !strcmp(d.message, "request 5: deadline of 30 ms passed in the queue"),
             "%d %s", d.code, d.message);
    cdz_error_clear();
    th_ok(s, "encode_last_error with no error", cdz_proto_encode_last_error(fb_bytes(&f), sizeof f.words, 5, 0, 0, false, &size));
    th_ok(s, "decode", cdz_proto_decode(fb_bytes(&f), size, NULL, &d));
    th_check(s, "no error recorded -> INTERNAL", d.code == CDZ_STATUS_INTERNAL, "%d", d.code);
    /* long messages are cut at a UTF-8 boundary; control characters replaced */
    char big[1400];
    memset(big, 'a', sizeof big);
    memcpy(big + 1021, "\xc3\xa9\xc3\xa9", 4); /* é straddles byte 1023 */
    big[5] = '\n';
    big[sizeof big - 1] = 0;
    th_ok(s, "long message", cdz_proto_encode_error(fb_bytes(&f), sizeof f.words, 1, 0, 0, CDZ_STATUS_INTERNAL, false,
                                                    false, big, &size));
    th_ok(s, "decode long", cdz_proto_decode(fb_bytes(&f), size, NULL, &d));
    th_check(s, "cut before the straddling character", strlen(d.message) == 1023 &&
                                                           !memcmp(d.message + 1021, "\xc3\xa9", 2),
             "len %zu", strlen(d.message));
    th_check(s, "control character replaced", d.message[5] == '?', "%c", d.message[5]);
    th_ok(s, "NULL message -> status name", cdz_proto_encode_error(fb_bytes(&f), sizeof f.words, 1, 0, 0, CDZ_STATUS_BUSY,
                                                                   true, false, NULL, &size));
    th_ok(s, "decode", cdz_proto_decode(fb_bytes(&f), size, NULL, &d));
    th_check(s, "message BUSY", !strcmp(d.message, "BUSY"), "%s", d.message);
    th_end(s);
}

/* Hand-built frames from the spec: the decoder reads them, the encoder writes the same bytes. */
static void test_spec_bytes(th_suite *s) {
    if (!th_begin(s, "spec-bytes", "frames built from docs/protocol.md by hand")) return;
    static frame_buf f, g;
    static cdz_proto_msg d;
    /* the HELLO example of docs/protocol.md */
    static const uint8_t hello[] = {
        0x43, 0x44, 0x5a, 0x50, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x03, 0x00, 'k', 'e', 'y', 0x06, 0x00, 'c', 'l', 'i', 'e', 'n', 't', 0x00, 0x00, 0x00};
    memcpy(fb_bytes(&f), hello, sizeof hello);
    if (th_ok(s, "doc HELLO decodes", cdz_proto_decode(fb_bytes(&f), sizeof hello, NULL, &d)))
        th_check(s, "doc HELLO fields", d.h.type == CDZ_PROTO_HELLO && d.h.request_id == 1 && !strcmp(d.api_key, "key") &&
                                            !strcmp(d.agent, "client"), NULL);
    if (encode_into(s, &d, &g, "encode HELLO"))
        th_check(s, "encoder writes the doc bytes", g.len == sizeof hello && !memcmp(fb_bytes(&g), hello, sizeof hello), NULL);

    /* INFER: model, 1 requested output, 2 inputs (f32[2,3] then i64 scalar) */
    raw b = {.n = 0};
    r_str(&b, "htdemucs");
    r_u16(&b, 1);
    r_str(&b, "vocals");
    r_u16(&b, 2);
    r_tensor(&b, "mix", 0, 2, (int64_t[]){2, 3}, 24, pay_f32);
    r_tensor(&b, "seed", 4, 0, NULL, 8, pay_i64);
    r_pad(&b);
    hdr_fields h = {.type = CDZ_PROTO_INFER, .request_id = 77, .deadline_us = 1000, .priority = 1, .body_len = -1};
    r_frame(&f, &h, &b);
    if (th_ok(s, "hand INFER decodes", cdz_proto_decode(fb_bytes(&f), f.len, NULL, &d))) {
        th_check(s, "hand INFER fields", !strcmp(d.model, "htdemucs") && d.n_outputs == 1 && !strcmp(d.outputs[0], "vocals") &&
                                             d.n_tensors == 2 && d.tensors[0].ndim == 2 && d.tensors[0].dims[1] == 3 &&
                                             d.tensors[0].nbytes == 24 && d.tensors[1].dtype == CDZ_DTYPE_I64 &&
                                             d.tensors[1].ndim == 0 && d.h.deadline_us == 1000 && d.h.priority == 1, NULL);
        th_check(s, "payload bytes", !memcmp(d.tensors[0].data, pay_f32, 24) && !memcmp(d.tensors[1].data, pay_i64, 8), NULL);
        /* "mix" payload: body offset 2+8 + 2 + 2+6 + 2 + 2+3 +1+1 +16 +8 = 53 -> padded to 56 */
        th_check(s, "first payload at frame offset 56 + 56", (const uint8_t *)d.tensors[0].data == fb_bytes(&f) + 112,
                 "offset %td", (const uint8_t *)d.tensors[0].data - fb_bytes(&f));
        cdz_tensor view;
        if (th_ok(s, "tensor view", cdz_proto_tensor_view(&d.tensors[0], &view)))
            th_check(s, "view", view.ndim == 2 && view.shape[0] == 2 && ((float *)view.data)[5] == 42.0f &&
                                    view.device.kind == CDZ_DEVICE_CPU, NULL);
    }
    if (encode_into(s, &d, &g, "encode INFER"))
        th_check(s, "encoder writes the hand bytes", g.len == f.len && !memcmp(fb_bytes(&g), fb_bytes(&f), f.len), NULL);
    th_end(s);
}

/* one header field set wrong at a time */
typedef struct bad_header {
    const char *what;
    hdr_fields h;
    size_t at;            /* first prefix length at which peek must refuse */
    cdz_status code;
    const char *substr;
} bad_header;

static void test_bad_headers(th_suite *s) {
    if (!th_begin(s, "bad-headers", "refused by peek as soon as the field is complete")) return;
    static frame_buf f;
    static cdz_proto_msg d;
    const bad_header cases[] = {
        {"version 2", {.version = 2, .type = CDZ_PROTO_CANCEL, .request_id = 1}, 6, CDZ_STATUS_UNSUPPORTED, "version 2"},
        {"version 0xffff", {.version = 0xffff, .type = CDZ_PROTO_CANCEL, .request_id = 1}, 6, CDZ_STATUS_UNSUPPORTED, NULL},
        {"type 0", {.type = 0, .request_id = 1}, 8, CDZ_STATUS_INVALID_ARGUMENT, "unknown type 0"},
        {"type 12", {.type = 12, .request_id = 1}, 8, CDZ_STATUS_INVALID_ARGUMENT, "unknown type 12"},
        {"type 0xffff", {.type = 0xffff, .request_id = 1}, 8, CDZ_STATUS_INVALID_ARGUMENT, "unknown type"},
        {"unknown flag", {.type = CDZ_PROTO_INFER, .flags = 0x100, .request_id = 1}, 12, CDZ_STATUS_INVALID_ARGUMENT,
         "unknown flag bits 0x100"},
        {"END_OF_STREAM on INFER", {.type = CDZ_PROTO_INFER, .flags = CDZ_PROTO_FLAG_END_OF_STREAM, .request_id = 1}, 12,
         CDZ_STATUS_INVALID_ARGUMENT, "unknown flag bits 0x1"},
        {"CLOSING on RESULT", {.type = CDZ_PROTO_RESULT, .flags = CDZ_PROTO_FLAG_CLOSING, .request_id = 1}, 12,
         CDZ_STATUS_INVALID_ARGUMENT, "flag"},
        {"body over CDZ_PROTO_MAX_FRAME", {.type = CDZ_PROTO_INFER, .request_id = 1, .body_len = 70000000}, 16,
         CDZ_STATUS_TOO_LARGE, "body 70000000 bytes exceeds the limit of 67108864 (CDZ_PROTO_MAX_FRAME)"},
        {"body 0xffffffff", {.type = CDZ_PROTO_RESULT, .request_id = 1, .body_len = -2}, 16, CDZ_STATUS_TOO_LARGE, "exceeds"},
        {"body not a multiple of 8", {.type = CDZ_PROTO_INFER, .request_id = 1, .body_len = 13}, 16,
         CDZ_STATUS_INVALID_ARGUMENT, "not a multiple of 8"},
        {"CANCEL with a body", {.type = CDZ_PROTO_CANCEL, .request_id = 1, .body_len = 8}, 16, CDZ_STATUS_INVALID_ARGUMENT,
         "must be empty"},
        {"INFER request_id 0", {.type = CDZ_PROTO_INFER}, 56, CDZ_STATUS_INVALID_ARGUMENT, "request_id must not be 0"},
        {"INFER stream_id", {.type = CDZ_PROTO_INFER, .request_id = 1, .stream_id = 3}, 56, CDZ_STATUS_INVALID_ARGUMENT,
         "stream_id must be 0 (got 3)"},
        {"STREAM_CHUNK stream_id 0", {.type = CDZ_PROTO_STREAM_CHUNK, .request_id = 1}, 56, CDZ_STATUS_INVALID_ARGUMENT,
         "stream_id must not be 0"},
        {"INFER sequence", {.type = CDZ_PROTO_INFER, .request_id = 1, .sequence = 4}, 56, CDZ_STATUS_INVALID_ARGUMENT,
         "sequence must be 0"},
        {"RESULT sequence outside a stream", {.type = CDZ_PROTO_RESULT, .request_id = 1, .sequence = 4}, 56,
         CDZ_STATUS_INVALID_ARGUMENT, "outside a stream"},
        {"RESULT END outside a stream", {.type = CDZ_PROTO_RESULT, .flags = 1, .request_id = 1}, 56,
         CDZ_STATUS_INVALID_ARGUMENT, "END_OF_STREAM outside a stream"},
        {"CANCEL deadline", {.type = CDZ_PROTO_CANCEL, .request_id = 1, .deadline_us = 5}, 56, CDZ_STATUS_INVALID_ARGUMENT,
         "deadline_us must be 0"},
        {"deadline over 24 h", {.type = CDZ_PROTO_INFER, .request_id = 1, .deadline_us = CDZ_PROTO_MAX_DEADLINE_US + 1}, 56,
         CDZ_STATUS_INVALID_ARGUMENT, "CDZ_PROTO_MAX_DEADLINE_US"},
        {"priority 8", {.type = CDZ_PROTO_INFER, .request_id = 1, .priority = 8}, 56, CDZ_STATUS_INVALID_ARGUMENT,
         "priority 8 exceeds the limit of 7"},
        {"priority on a chunk", {.type = CDZ_PROTO_STREAM_CHUNK, .request_id = 1, .stream_id = 1, .priority = 1}, 56,
         CDZ_STATUS_INVALID_ARGUMENT, "priority must be 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_header *c = &cases[i];
        hdr_fields h = c->h;
        if (h.body_len == 0) h.body_len = -1;
        r_frame(&f, &h, NULL);
        if (c->h.body_len == -2) memset(fb_bytes(&f) + 12, 0xff, 4);
        /* every prefix shorter than `at` is still acceptable; at `at` it is refused */
        size_t need;
        bool early_ok = true;
        for (size_t len = 0; len < c->at; len++)
            if (cdz_proto_frame_peek(fb_bytes(&f), len, NULL, &need) != CDZ_STATUS_OK) early_ok = false;
        char label[128];
        snprintf(label, sizeof label, "%s: prefixes before byte %zu pass", c->what, c->at);
        th_check(s, label, early_ok, "%s", cdz_last_message());
        snprintf(label, sizeof label, "%s: refused at %zu bytes", c->what, c->at);
        expect_err(s, label, cdz_proto_frame_peek(fb_bytes(&f), c->at, NULL, &need), c->code, c->substr);
        snprintf(label, sizeof label, "%s: decode", c->what);
        expect_err(s, label, cdz_proto_decode(fb_bytes(&f), 56, NULL, &d), c->code, NULL);
    }
    /* bad magic: refused from the first byte that differs */
    const char *magics[] = {"XDZP", "CXZP", "CDXP", "CDZX", "GET "};
    for (size_t i = 0; i < 5; i++) {
        hdr_fields h = {.type = CDZ_PROTO_CANCEL, .request_id = 1, .body_len = -1};
        r_frame(&f, &h, NULL);
        memcpy(fb_bytes(&f), magics[i], 4);
        size_t first = 0;
        while (magics[i][first] == "CDZP"[first]) first++;
        size_t need;
        char label[64];
        snprintf(label, sizeof label, "magic '%s' refused at %zu bytes", magics[i], first + 1);
        expect_err(s, label, cdz_proto_frame_peek(fb_bytes(&f), first + 1, NULL, &need), CDZ_STATUS_INVALID_ARGUMENT,
                   "bad magic");
        if (first > 0) {
            snprintf(label, sizeof label, "magic '%s' prefix of %zu accepted", magics[i], first);
            th_ok(s, label, cdz_proto_frame_peek(fb_bytes(&f), first, NULL, &need));
        }
    }
    /* reserved header bytes 49..55 */
    int bad = 0;
    for (int i = 49; i < 56; i++) {
        hdr_fields h = {.type = CDZ_PROTO_CANCEL, .request_id = 1, .body_len = -1};
        r_frame(&f, &h, NULL);
        fb_bytes(&f)[i] = 1;
        size_t need;
        if (cdz_proto_frame_peek(fb_bytes(&f), 56, NULL, &need) != CDZ_STATUS_INVALID_ARGUMENT ||
            !strstr(cdz_last_message(), "reserved header byte")) bad++;
    }
    th_check(s, "reserved header bytes 49..55 must be 0", bad == 0, "%d accepted", bad);
    /* a server-configured limit is named as such */
    cdz_proto_limits lim = {.max_body = 1 << 20, .authenticated = true};
    hdr_fields h = {.type = CDZ_PROTO_INFER, .request_id = 1, .body_len = (2 << 20)};
    r_frame(&f, &h, NULL);
    size_t need;
    expect_err(s, "server max-frame-bytes", cdz_proto_frame_peek(fb_bytes(&f), 16, &lim, &need), CDZ_STATUS_TOO_LARGE,
               "exceeds the limit of 1048576 (max-frame-bytes)");
    h.body_len = 1 << 20;
    r_frame(&f, &h, NULL);
    th_ok(s, "body at the server limit passes peek", cdz_proto_frame_peek(fb_bytes(&f), 56, &lim, &need));
    th_check(s, "need", need == 56 + (1u << 20), "%zu", need);
    th_end(s);
}

static void test_preauth(th_suite *s) {
    if (!th_begin(s, "pre-auth", "only HELLO, at most %d body bytes, before HELLO", CDZ_PROTO_MAX_PREAUTH_BODY)) return;
    static frame_buf f;
    static cdz_proto_msg d;
    cdz_proto_limits pre = {.max_body = 16u << 20, .types = CDZ_PROTO_TYPES_FROM_CLIENT, .authenticated = false};
    cdz_proto_limits post = {.max_body = 16u << 20, .types = CDZ_PROTO_TYPES_FROM_CLIENT, .authenticated = true};
    size_t need;
    const cdz_proto_type others[] = {CDZ_PROTO_INFER, CDZ_PROTO_STREAM_OPEN, CDZ_PROTO_STREAM_CHUNK,
                                     CDZ_PROTO_STREAM_CLOSE, CDZ_PROTO_CANCEL, CDZ_PROTO_LIST_MODELS};
    int bad = 0;
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        hdr_fields h = {.type = (uint16_t)others[i], .request_id = 1, .stream_id = 1, .body_len = -1};
        r_frame(&f, &h, NULL);
        if (cdz_proto_frame_peek(fb_bytes(&f), 8, &pre, &need) != CDZ_STATUS_UNAUTHENTICATED ||
            !strstr(cdz_last_message(), "before HELLO")) bad++;
    }
    th_check(s, "6 client types refused at byte 8 with UNAUTHENTICATED", bad == 0, "%d not refused: %s", bad,
             cdz_last_message());
    hdr_fields h = {.type = CDZ_PROTO_HELLO, .body_len = 2048};
    r_frame(&f, &h, NULL);
    expect_err(s, "HELLO with a 2048-byte body", cdz_proto_frame_peek(fb_bytes(&f), 16, &pre, &need), CDZ_STATUS_TOO_LARGE,
               "exceeds the limit of 1024 (CDZ_PROTO_MAX_PREAUTH_BODY, before HELLO)");
    th_ok(s, "the same after HELLO", cdz_proto_frame_peek(fb_bytes(&f), 56, &post, &need));
    /* a valid HELLO with the longest key and agent fits the pre-auth limit */
    static cdz_proto_msg m;
    cdz_proto_msg_init(&m, CDZ_PROTO_HELLO);
    memset(m.api_key, 'k', CDZ_PROTO_MAX_API_KEY);
    memset(m.agent, 'a', CDZ_PROTO_MAX_AGENT);
    size_t size;
    th_ok(s, "longest HELLO encodes", cdz_proto_encode(&m, fb_bytes(&f), sizeof f.words, &size));
    th_check(s, "longest HELLO <= CDZ_PROTO_MAX_PREAUTH_BODY", size - 56 <= CDZ_PROTO_MAX_PREAUTH_BODY, "%zu", size - 56);
    th_ok(s, "longest HELLO decodes before auth", cdz_proto_decode(fb_bytes(&f), size, &pre, &d));
    /* direction: a client may not send server frames */
    h = (hdr_fields){.type = CDZ_PROTO_RESULT, .request_id = 1, .body_len = -1};
    r_frame(&f, &h, NULL);
    expect_err(s, "RESULT from a client", cdz_proto_frame_peek(fb_bytes(&f), 8, &post, &need), CDZ_STATUS_INVALID_ARGUMENT,
               "sent by the server");
    cdz_proto_limits client_side = {.types = CDZ_PROTO_TYPES_FROM_SERVER, .authenticated = true};
    h = (hdr_fields){.type = CDZ_PROTO_INFER, .request_id = 1, .body_len = -1};
    r_frame(&f, &h, NULL);
    expect_err(s, "INFER from a server", cdz_proto_frame_peek(fb_bytes(&f), 8, &client_side, &need),
               CDZ_STATUS_INVALID_ARGUMENT, "sent by the client");
    th_end(s);
}

/* body-level errors: each frame built by hand with one fault */
static void test_bad_bodies(th_suite *s) {
    if (!th_begin(s, "bad-bodies", "counts, names, dtypes, dims, byte lengths, padding")) return;
    static frame_buf f;
    static cdz_proto_msg d;
    hdr_fields infer = {.type = CDZ_PROTO_INFER, .request_id = 9, .body_len = -1};
    raw b;
    char name65[66];
    memset(name65, 'n', 65);
    name65[65] = 0;
#define BODY_CASE(label, hdr, code, substr, ...)                                                   \
    do {                                                                                           \
        b.n = 0;                                                                                   \
        __VA_ARGS__;                                                                               \
        hdr_fields hh_ = (hdr);                                                                    \
        if (hh_.body_len == -1) r_pad(&b);                                                         \
        r_frame(&f, &hh_, &b);                                                                     \
        expect_err(s, label, cdz_proto_decode(fb_bytes(&f), f.len, NULL, &d), code, substr);       \
    } while (0)
    const cdz_status E = CDZ_STATUS_INVALID_ARGUMENT;
    BODY_CASE("model name too long", infer, E, "model name: 65 bytes exceeds the limit of 64 (CDZ_PROTO_MAX_NAME)",
              r_str(&b, name65); r_u16(&b, 0); r_u16(&b, 0));
    BODY_CASE("model name empty", infer, E, "model name: empty", r_str(&b, ""); r_u16(&b, 0); r_u16(&b, 0));
    BODY_CASE("model name with a space", infer, E, "byte 0x20 at offset 1", r_str(&b, "a b"); r_u16(&b, 0); r_u16(&b, 0));
    BODY_CASE("model name with a control char", infer, E, "byte 0x1b", r_str(&b, "a\x1b[31m"); r_u16(&b, 0); r_u16(&b, 0));
    BODY_CASE("too many outputs", infer, E, "output count 65 exceeds the limit of 64 (CDZ_PROTO_MAX_OUTPUTS)",
              r_str(&b, "m"); r_u16(&b, 65));
    BODY_CASE("duplicate outputs", infer, E, "both named 'a'", r_str(&b, "m"); r_u16(&b, 2); r_str(&b, "a"); r_str(&b, "a");
              r_u16(&b, 0));
    BODY_CASE("too many tensors", infer, E, "input count 129 exceeds the limit of 128 (CDZ_PROTO_MAX_TENSORS)",
              r_str(&b, "m"); r_u16(&b, 0); r_u16(&b, 129));
    BODY_CASE("tensor name too long", infer, E, "input 0 name: 65 bytes", r_str(&b, "m"); r_u16(&b, 0); r_u16(&b, 1);
              r_tensor(&b, name65, 0, 1, (int64_t[]){1}, 4, pay_f32));
    BODY_CASE("dtype 10", infer, E, "unknown dtype code 10", r_str(&b, "m"); r_u16(&b, 0); r_u16(&b, 1);
              r_tensor(&b, "x", 10, 1, (int64_t[]){1}, 4, pay_f32));
    BODY_CASE("ndim 7", infer, E, "7 dims exceeds the limit of 6", r_str(&b, "m"); r_u16(&b, 0); r_u16(&b, 1);
              r_tensor(&b, "x", 0, 7, (int64_t[]){1, 1, 1, 1, 1, 1, 1}, 4, pay_f32));
    BODY_CASE("negative dim", infer, E, "dim 1 is -1", r_str(&b, "m"); r_u16(&b, 0); r_u16(&b, 1);
              r_tensor(&b, "x", 0, 2, (int64_t[]){1, -1}, 4, pay_f32));
    BODY_CASE("dims product overflow", infer, E, "dims f32[4294967296,4294967296] overflow 64 bits", r_str(&b, "m");
              r_u16(&b, 0); r_u16(&b, 1); r_tensor(&b, "x", 0, 2, (int64_t[]){1ll << 32, 1ll << 32}, 0, NULL));
    BODY_CASE("byte size overflow", infer, E, "byte size of f64[2305843009213693952,2] overflows", r_str(&b, "m");
              r_u16(&b, 0); r_u16(&b, 1); r_tensor(&b, "x", 3, 2, (int64_t[]){1ll << 61, 2}, 0, NULL));
    BODY_CASE("nbytes != dims", infer, E, "input 0 'x': nbytes 20 does not match f32[2,3] = 24 bytes", r_str(&b, "m");
              r_u16(&b, 0); r_u16(&b, 1); r_tensor(&b, "x", 0, 2, (int64_t[]){2, 3}, 20, pay_f32));
    BODY_CASE("huge nbytes, small body", infer, E, "does not match", r_str(&b, "m"); r_u16(&b, 0); r_u16(&b, 1);
              r_tensor(&b, "x", 0, 1, (int64_t[]){1}, 1ull << 40, NULL));
    BODY_CASE("payload past the end", infer, E, "runs past the end of the body", r_str(&b, "m"); r_u16(&b, 0);
              r_u16(&b, 1); r_tensor(&b, "x", 8, 1, (int64_t[]){1000}, 1000, NULL));
    BODY_CASE("duplicate input names", infer, E, "input 0 and 1 are both named 'x'", r_str(&b, "m"); r_u16(&b, 0);
              r_u16(&b, 2); r_tensor(&b, "x", 8, 1, (int64_t[]){1}, 1, pay_u8); r_tensor(&b, "x", 8, 1, (int64_t[]){1}, 1, pay_u8));
    BODY_CASE("trailing garbage", infer, E, "8 trailing bytes", r_str(&b, "m"); r_u16(&b, 0); r_u16(&b, 0); r_pad(&b);
              r_u64(&b, 0));
    BODY_CASE("nonzero end padding", infer, E, "padding is 0x07", r_str(&b, "m"); r_u16(&b, 0); r_u16(&b, 0); r_u8(&b, 7));
    b.n = 0;
    r_str(&b, "m");
    r_u16(&b, 0);
    r_u16(&b, 1);
    r_tensor(&b, "x", 8, 1, (int64_t[]){1}, 1, pay_u8);
    size_t pad_at = b.n - 2; /* one padding byte before the payload */
    r_pad(&b);
    b.b[pad_at] = 0x55;
    r_frame(&f, &infer, &b);
    expect_err(s, "nonzero padding before a payload", cdz_proto_decode(fb_bytes(&f), f.len, NULL, &d), E, "padding is 0x55");
    BODY_CASE("body cut inside a count", infer, E, "needs 2 bytes", r_str(&b, "m"); r_u16(&b, 0); r_u8(&b, 1));

    hdr_fields chunk = {.type = CDZ_PROTO_STREAM_CHUNK, .request_id = 9, .stream_id = 2, .body_len = -1};
    BODY_CASE("STREAM_CHUNK without tensors or END", chunk, E, "no inputs", r_u16(&b, 0));
    hdr_fields err = {.type = CDZ_PROTO_ERROR, .body_len = -1};
    BODY_CASE("ERROR code 0", err, E, "error code 0", r_u16(&b, 0); r_u8(&b, 0); r_u8(&b, 0); r_str(&b, "x"));
    BODY_CASE("ERROR code 14", err, E, "error code 14", r_u16(&b, 14); r_u8(&b, 0); r_u8(&b, 0); r_str(&b, "x"));
    BODY_CASE("ERROR retryable 2", err, E, "retryable is 2", r_u16(&b, 4); r_u8(&b, 2); r_u8(&b, 0); r_str(&b, "x"));
    BODY_CASE("ERROR reserved byte", err, E, "reserved byte", r_u16(&b, 4); r_u8(&b, 1); r_u8(&b, 1); r_str(&b, "x"));
    BODY_CASE("ERROR empty message", err, E, "message: empty", r_u16(&b, 4); r_u8(&b, 1); r_u8(&b, 0); r_str(&b, ""));
    BODY_CASE("ERROR message 1024 bytes", err, E, "1024 bytes exceeds the limit of 1023 (CDZ_PROTO_MAX_MESSAGE)",
              r_u16(&b, 4); r_u8(&b, 1); r_u8(&b, 0); r_u16(&b, 1024); memset(b.b + b.n, 'x', 1024); b.n += 1024);
    hdr_fields hello = {.type = CDZ_PROTO_HELLO, .body_len = -1};
    BODY_CASE("api key 257 bytes", hello, E, "api key: 257 bytes exceeds the limit of 256 (CDZ_PROTO_MAX_API_KEY)",
              r_u16(&b, 257); memset(b.b + b.n, 'k', 257); b.n += 257; r_str(&b, ""));
    BODY_CASE("api key with a space", hello, E, "api key: byte 0x20", r_str(&b, "a b"); r_str(&b, ""));
    hdr_fields welcome = {.type = CDZ_PROTO_WELCOME, .body_len = -1};
    BODY_CASE("WELCOME max_body 100", welcome, E, "max_body 100", r_u32(&b, 100); r_u16(&b, 1); r_str(&b, ""));
    hdr_fields list = {.type = CDZ_PROTO_MODEL_LIST, .request_id = 3, .body_len = -1};
    BODY_CASE("MODEL_LIST duplicate models", list, E, "models 0 and 1 are both named 'a'", r_u16(&b, 2);
              r_str(&b, "a"); r_u16(&b, 1); r_u16(&b, 0); r_u16(&b, 0); r_str(&b, "a"); r_u16(&b, 1); r_u16(&b, 0); r_u16(&b, 0));
    BODY_CASE("MODEL_LIST too many specs", list, E, "past the limit of 128 per frame", r_u16(&b, 1); r_str(&b, "a");
              r_u16(&b, 1); r_u16(&b, 100); r_u16(&b, 29));
    BODY_CASE("MODEL_LIST spec dim -2", list, E, "dim 0 is -2", r_u16(&b, 1); r_str(&b, "a"); r_u16(&b, 1); r_u16(&b, 1);
              r_u16(&b, 0); r_str(&b, "x"); r_u8(&b, 0); r_u8(&b, 1); r_u64(&b, (uint64_t)-2));
    BODY_CASE("MODEL_LIST unknown model flag", list, E, "unknown flag bits 0x4", r_u16(&b, 1); r_str(&b, "a"); r_u16(&b, 4);
              r_u16(&b, 0); r_u16(&b, 0));
    BODY_CASE("too many models", list, E, "model count 65 exceeds the limit of 64 (CDZ_PROTO_MAX_MODELS)", r_u16(&b, 65));
#undef BODY_CASE
    /* errors name the frame and the request */
    b.n = 0;
    r_str(&b, "");
    r_u16(&b, 0);
    r_u16(&b, 0);
    r_pad(&b);
    r_frame(&f, &infer, &b);
    cdz_proto_decode(fb_bytes(&f), f.len, NULL, &d);
    th_check(s, "message names the frame and request", strstr(cdz_last_message(), "frame INFER (request 9): model name") != NULL,
             "%s", cdz_last_message());
    th_check(s, "header kept after a body error", d.h.type == CDZ_PROTO_INFER && d.h.request_id == 9 && d.n_tensors == 0,
             NULL);
    th_end(s);
}

static void test_encoder_checks(th_suite *s) {
    if (!th_begin(s, "encoder", "size query, small buffers, invalid messages, limits")) return;
    static cdz_proto_msg m;
    static frame_buf f;
    size_t size = 0;
    const char *label;
    make_sample(3, &m, &label);
    th_ok(s, "size query", cdz_proto_encode(&m, NULL, 0, &size));
    size_t full = size;
    expect_err(s, "buffer one byte short", cdz_proto_encode(&m, fb_bytes(&f), full - 1, &size), CDZ_STATUS_INVALID_ARGUMENT,
               "too small");
    th_check(s, "size still reported", size == full, "%zu", size);
    expect_err(s, "buffer smaller than a header", cdz_proto_encode(&m, fb_bytes(&f), 10, &size), CDZ_STATUS_INVALID_ARGUMENT,
               "too small");
    m.tensors[0].nbytes = 20;
    expect_err(s, "nbytes != dims refused", cdz_proto_encode(&m, fb_bytes(&f), sizeof f.words, &size),
               CDZ_STATUS_INVALID_ARGUMENT, "nbytes 20 does not match f32[1,2,3] = 24 bytes");
    make_sample(3, &m, &label);
    strcpy(m.tensors[1].name, "mix");
    expect_err(s, "duplicate input refused", cdz_proto_encode(&m, NULL, 0, &size), CDZ_STATUS_INVALID_ARGUMENT, "both named");
    make_sample(3, &m, &label);
    strcpy(m.model, "has space");
    expect_err(s, "bad model name refused", cdz_proto_encode(&m, NULL, 0, &size), CDZ_STATUS_INVALID_ARGUMENT, "model name");
    make_sample(3, &m, &label);
    m.h.request_id = 0;
    expect_err(s, "header rules apply", cdz_proto_encode(&m, NULL, 0, &size), CDZ_STATUS_INVALID_ARGUMENT,
               "request_id must not be 0");
    make_sample(3, &m, &label);
    m.n_tensors = 1;
    set_tensor(&m.tensors[0], "big", CDZ_DTYPE_U8, 1, (int64_t[]){(int64_t)CDZ_PROTO_MAX_FRAME}, pay_u8);
    expect_err(s, "body over CDZ_PROTO_MAX_FRAME", cdz_proto_encode(&m, NULL, 0, &size), CDZ_STATUS_TOO_LARGE,
               "exceeds the limit of 67108864 (CDZ_PROTO_MAX_FRAME)");
    m.tensors[0].data = NULL;
    m.tensors[0].dims[0] = 8;
    m.tensors[0].nbytes = 8;
    expect_err(s, "NULL data", cdz_proto_encode(&m, NULL, 0, &size), CDZ_STATUS_INVALID_ARGUMENT, "NULL data");
    make_sample(11, &m, &label);
    m.models[1].first_input = 1;
    expect_err(s, "model specs out of order", cdz_proto_encode(&m, NULL, 0, &size), CDZ_STATUS_INVALID_ARGUMENT,
               "not the next");
    cdz_proto_msg_init(&m, CDZ_PROTO_TYPE_COUNT_);
    expect_err(s, "unknown type", cdz_proto_encode(&m, NULL, 0, &size), CDZ_STATUS_INVALID_ARGUMENT, "unknown type");
    th_ok(s, "encode_empty CANCEL", cdz_proto_encode_empty(fb_bytes(&f), sizeof f.words, CDZ_PROTO_CANCEL, 5, 0, 0, &size));
    th_check(s, "CANCEL is 56 bytes", size == 56, "%zu", size);
    expect_err(s, "encode_empty INFER refused", cdz_proto_encode_empty(fb_bytes(&f), sizeof f.words, CDZ_PROTO_INFER, 5, 0, 0,
                                                                      &size), CDZ_STATUS_INVALID_ARGUMENT, "empty body");
    expect_err(s, "encode_empty CANCEL id 0", cdz_proto_encode_empty(fb_bytes(&f), sizeof f.words, CDZ_PROTO_CANCEL, 0, 0, 0,
                                                                     &size), CDZ_STATUS_INVALID_ARGUMENT, "request_id");
    /* tensors from cdz_tensor */
    cdz_proto_tensor t;
    cdz_tensor ct;
    cdz_tensor_init(&ct, pay_f32, CDZ_DTYPE_F32, (cdz_device){CDZ_DEVICE_CPU, 0}, 2, (int64_t[]){3, 2});
    th_ok(s, "tensor_set", cdz_proto_tensor_set(&t, "y", &ct));
    th_check(s, "tensor_set fields", t.nbytes == 24 && t.ndim == 2 && t.dims[0] == 3 && t.data == pay_f32, NULL);
    ct.stride[0] = 1;
    ct.stride[1] = 3;
    expect_err(s, "non-contiguous refused", cdz_proto_tensor_set(&t, "y", &ct), CDZ_STATUS_INVALID_ARGUMENT, "contiguous");
    cdz_tensor_init(&ct, pay_f32, CDZ_DTYPE_F32, (cdz_device){CDZ_DEVICE_CUDA, 0}, 1, (int64_t[]){6});
    expect_err(s, "device tensor refused", cdz_proto_tensor_set(&t, "y", &ct), CDZ_STATUS_INVALID_ARGUMENT, "host memory");
    set_tensor(&t, "z", CDZ_DTYPE_F32, 1, (int64_t[]){1}, (const uint8_t *)pay_f32 + 2);
    cdz_tensor view;
    expect_err(s, "misaligned view refused", cdz_proto_tensor_view(&t, &view), CDZ_STATUS_INVALID_ARGUMENT, "not aligned");
    th_end(s);
}

static void test_streams(th_suite *s) {
    if (!th_begin(s, "streams", "sequence numbers from 0, gaps and reordering refused")) return;
    cdz_proto_stream st;
    cdz_proto_header h = {.type = CDZ_PROTO_STREAM_CHUNK, .request_id = 43, .stream_id = 7};
    cdz_proto_stream_begin(&st, 7, 43);
    bool ok = true;
    for (uint64_t i = 0; i < 5; i++) {
        h.sequence = i;
        if (cdz_proto_stream_accept(&st, &h) != CDZ_STATUS_OK) ok = false;
    }
    th_check(s, "0..4 in order", ok && st.next == 5, "%s", cdz_last_message());
    h.sequence = 7;
    expect_err(s, "gap", cdz_proto_stream_accept(&st, &h), CDZ_STATUS_INVALID_ARGUMENT,
               "sequence 7 where 5 was expected: 2 missing");
    th_check(s, "a refused chunk does not advance", st.next == 5, NULL);
    h.sequence = 3;
    expect_err(s, "repeat", cdz_proto_stream_accept(&st, &h), CDZ_STATUS_INVALID_ARGUMENT, "repeated or out of order");
    h.sequence = 5;
    h.request_id = 44;
    expect_err(s, "other request id", cdz_proto_stream_accept(&st, &h), CDZ_STATUS_INVALID_ARGUMENT, "opened as request 43");
    h.request_id = 43;
    h.stream_id = 8;
    expect_err(s, "other stream", cdz_proto_stream_accept(&st, &h), CDZ_STATUS_INVALID_ARGUMENT, "of stream 8");
    h.stream_id = 7;
    cdz_proto_header close = {.type = CDZ_PROTO_STREAM_CLOSE, .request_id = 43, .stream_id = 7, .sequence = 4};
    expect_err(s, "CLOSE with the wrong count", cdz_proto_stream_accept(&st, &close), CDZ_STATUS_INVALID_ARGUMENT,
               "says 4 chunks were sent, 5 arrived");
    h.flags = CDZ_PROTO_FLAG_END_OF_STREAM;
    th_ok(s, "END chunk", cdz_proto_stream_accept(&st, &h));
    h.flags = 0;
    h.sequence = 6;
    expect_err(s, "chunk after END", cdz_proto_stream_accept(&st, &h), CDZ_STATUS_INVALID_ARGUMENT, "after the end");
    cdz_proto_stream_begin(&st, 7, 43);
    close.sequence = 0;
    th_ok(s, "CLOSE of an empty stream", cdz_proto_stream_accept(&st, &close));
    expect_err(s, "CLOSE twice", cdz_proto_stream_accept(&st, &close), CDZ_STATUS_INVALID_ARGUMENT, "after the end");
    /* client side: stream RESULTs follow the same rule */
    cdz_proto_stream_begin(&st, 7, 43);
    cdz_proto_header r = {.type = CDZ_PROTO_RESULT, .request_id = 43, .stream_id = 7, .sequence = 1};
    expect_err(s, "RESULT sequence must start at 0", cdz_proto_stream_accept(&st, &r), CDZ_STATUS_INVALID_ARGUMENT,
               "sequence 1 where 0");
    r.sequence = 0;
    th_ok(s, "RESULT 0", cdz_proto_stream_accept(&st, &r));
    cdz_proto_header inf = {.type = CDZ_PROTO_INFER, .request_id = 43};
    expect_err(s, "INFER is not a stream frame", cdz_proto_stream_accept(&st, &inf), CDZ_STATUS_INVALID_ARGUMENT,
               "not a stream frame");
    th_end(s);
}

static void test_names(th_suite *s) {
    if (!th_begin(s, "names", "type names")) return;
    bool ok = true;
    for (uint32_t t = 1; t < CDZ_PROTO_TYPE_COUNT_; t++)
        if (!strcmp(cdz_proto_type_name(t), "UNKNOWN")) ok = false;
    th_check(s, "every type has a name", ok, NULL);
    th_check(s, "0 and 12 are UNKNOWN", !strcmp(cdz_proto_type_name(0), "UNKNOWN") &&
                                            !strcmp(cdz_proto_type_name(CDZ_PROTO_TYPE_COUNT_), "UNKNOWN"), NULL);
    th_check(s, "header size", CDZ_PROTO_HEADER_SIZE == 56, NULL);
    th_end(s);
}

int main(int argc, char **argv) {
    th_suite s;
    if (!th_init(&s, "test_protocol", argc, argv)) return 2;
    test_names(&s);
    test_roundtrip(&s);
    test_error_codes(&s);
    test_spec_bytes(&s);
    test_bad_headers(&s);
    test_preauth(&s);
    test_bad_bodies(&s);
    test_encoder_checks(&s);
    test_streams(&s);
    return th_finish(&s);
}
