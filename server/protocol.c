/*
 * protocol.c: frame peek, decode and encode for the cadenza wire protocol (docs/protocol.md).
 *
 * Pure functions over byte buffers in the manner of redis' request parser: every count and
 * length is checked against a named limit before it is used, the header is judged byte by
 * byte as it arrives, and nothing is allocated. The encoder applies the decoder's rules, so
 * the two agree: a frame is canonical (zero padding, zero reserved bytes, minimal lengths)
 * and encode(decode(f)) reproduces f byte for byte.
 */
#include "protocol.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* The wire carries cdz_status and cdz_dtype values as they are: pin them. */
_Static_assert(CDZ_STATUS_INVALID_ARGUMENT == 1 && CDZ_STATUS_UNKNOWN_MODEL == 2 &&
                   CDZ_STATUS_TOO_LARGE == 3 && CDZ_STATUS_BUSY == 4 &&
                   CDZ_STATUS_OUT_OF_MEMORY == 5 && CDZ_STATUS_DEADLINE_EXCEEDED == 6 &&
                   CDZ_STATUS_CANCELLED == 7 && CDZ_STATUS_SHUTTING_DOWN == 8 &&
                   CDZ_STATUS_UNAUTHENTICATED == 9 && CDZ_STATUS_UNSUPPORTED == 10 &&
                   CDZ_STATUS_IO == 11 && CDZ_STATUS_DEVICE == 12 && CDZ_STATUS_INTERNAL == 13 &&
                   CDZ_STATUS_COUNT_ == 14,
               "wire error codes are the cdz_status values listed in docs/protocol.md");
_Static_assert(CDZ_DTYPE_F32 == 0 && CDZ_DTYPE_F16 == 1 && CDZ_DTYPE_BF16 == 2 &&
                   CDZ_DTYPE_F64 == 3 && CDZ_DTYPE_I64 == 4 && CDZ_DTYPE_I32 == 5 &&
                   CDZ_DTYPE_I16 == 6 && CDZ_DTYPE_I8 == 7 && CDZ_DTYPE_U8 == 8 &&
                   CDZ_DTYPE_BOOL == 9 && CDZ_DTYPE_COUNT_ == 10,
               "wire dtype codes are the cdz_dtype values listed in docs/protocol.md");
_Static_assert(CDZ_PROTO_HEADER_SIZE % CDZ_PROTO_ALIGN == 0, "payload alignment needs an aligned header");
_Static_assert(CDZ_PROTO_MAX_FRAME % CDZ_PROTO_ALIGN == 0, "the body limit is a multiple of 8");
_Static_assert(CDZ_PROTO_TYPE_COUNT_ <= 32, "type masks are 32-bit");

#define INVALID CDZ_STATUS_INVALID_ARGUMENT

static const char *const type_names[CDZ_PROTO_TYPE_COUNT_] = {
    [CDZ_PROTO_HELLO] = "HELLO",
    [CDZ_PROTO_WELCOME] = "WELCOME",
    [CDZ_PROTO_INFER] = "INFER",
    [CDZ_PROTO_STREAM_OPEN] = "STREAM_OPEN",
    [CDZ_PROTO_STREAM_CHUNK] = "STREAM_CHUNK",
    [CDZ_PROTO_STREAM_CLOSE] = "STREAM_CLOSE",
    [CDZ_PROTO_CANCEL] = "CANCEL",
    [CDZ_PROTO_LIST_MODELS] = "LIST_MODELS",
    [CDZ_PROTO_MODEL_LIST] = "MODEL_LIST",
    [CDZ_PROTO_RESULT] = "RESULT",
    [CDZ_PROTO_ERROR] = "ERROR",
};

const char *cdz_proto_type_name(uint32_t type) {
    if (type == 0 || type >= CDZ_PROTO_TYPE_COUNT_) return "UNKNOWN";
    return type_names[type];
}

/* ------------------------------------------------------------------------------------
 * Header rules per type (docs/protocol.md "Header fields by type")
 * ---------------------------------------------------------------------------------- */
enum { ID_ZERO, ID_NONZERO, ID_ANY };

typedef struct type_rule {
    uint32_t flags;     /* allowed flag bits */
    uint8_t request;    /* request_id: ID_* */
    uint8_t stream;     /* stream_id: ID_* */
    bool sequence;      /* sequence may be nonzero (RESULT: only with a stream id) */
    bool deadline;      /* deadline_us may be nonzero */
    bool priority;      /* priority may be nonzero */
    bool empty_body;
} type_rule;

static const type_rule rules[CDZ_PROTO_TYPE_COUNT_] = {
    [CDZ_PROTO_HELLO] = {0, ID_ANY, ID_ZERO, false, false, false, false},
    [CDZ_PROTO_WELCOME] = {0, ID_ANY, ID_ZERO, false, false, false, false},
    [CDZ_PROTO_INFER] = {0, ID_NONZERO, ID_ZERO, false, true, true, false},
    [CDZ_PROTO_STREAM_OPEN] = {0, ID_NONZERO, ID_NONZERO, false, true, true, false},
    [CDZ_PROTO_STREAM_CHUNK] = {CDZ_PROTO_FLAG_END_OF_STREAM, ID_NONZERO, ID_NONZERO, true, true, false, false},
    [CDZ_PROTO_STREAM_CLOSE] = {0, ID_NONZERO, ID_NONZERO, true, false, false, true},
    [CDZ_PROTO_CANCEL] = {0, ID_NONZERO, ID_ZERO, false, false, false, true},
    [CDZ_PROTO_LIST_MODELS] = {0, ID_NONZERO, ID_ZERO, false, false, false, true},
    [CDZ_PROTO_MODEL_LIST] = {0, ID_NONZERO, ID_ZERO, false, false, false, false},
    [CDZ_PROTO_RESULT] = {CDZ_PROTO_FLAG_END_OF_STREAM, ID_NONZERO, ID_ANY, true, false, false, false},
    [CDZ_PROTO_ERROR] = {CDZ_PROTO_FLAG_CLOSING, ID_ANY, ID_ANY, true, false, false, false},
};

/* ------------------------------------------------------------------------------------
 * Little-endian access
 * ---------------------------------------------------------------------------------- */
static uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | (uint16_t)p[1] << 8); }
static uint32_t ld32(const uint8_t *p) { return (uint32_t)ld16(p) | (uint32_t)ld16(p + 2) << 16; }
static uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32; }
static void st16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void st32(uint8_t *p, uint32_t v) { st16(p, (uint16_t)v); st16(p + 2, (uint16_t)(v >> 16)); }
static void st64(uint8_t *p, uint64_t v) { st32(p, (uint32_t)v); st32(p + 4, (uint32_t)(v >> 32)); }

static size_t align_up(size_t n) { return (n + CDZ_PROTO_ALIGN - 1) & ~(size_t)(CDZ_PROTO_ALIGN - 1); }

/* ------------------------------------------------------------------------------------
 * Header
 * ---------------------------------------------------------------------------------- */
static uint32_t effective_max_body(const cdz_proto_limits *lim, const char **name) {
    uint32_t max = CDZ_PROTO_MAX_FRAME;
    *name = "CDZ_PROTO_MAX_FRAME";
    if (lim && lim->max_body && lim->max_body < max) {
        max = lim->max_body;
        *name = "max-frame-bytes";
    }
    if (lim && !lim->authenticated && max > CDZ_PROTO_MAX_PREAUTH_BODY) {
        max = CDZ_PROTO_MAX_PREAUTH_BODY;
        *name = "CDZ_PROTO_MAX_PREAUTH_BODY, before HELLO";
    }
    return max;
}

static cdz_status id_rule(const char *tn, const char *field, uint8_t rule, uint64_t v) {
    if (rule == ID_ZERO && v != 0)
        return cdz_error_set(INVALID, "frame %s: %s must be 0 (got %" PRIu64 ")", tn, field, v);
    if (rule == ID_NONZERO && v == 0)
        return cdz_error_set(INVALID, "frame %s: %s must not be 0", tn, field);
    return CDZ_STATUS_OK;
}

/* Judge the first `len` bytes of a header (len may be short: whatever is present is checked). */
static cdz_status check_header(const uint8_t *p, size_t len, const cdz_proto_limits *lim) {
    size_t m = len < 4 ? len : 4;
    if (memcmp(p, CDZ_PROTO_MAGIC, m) != 0) {
        char got[24] = "";
        for (size_t i = 0, n = 0; i < m; i++) n += (size_t)snprintf(got + n, sizeof got - n, "%s0x%02x", i ? " " : "", p[i]);
        return cdz_error_set(INVALID, "frame: bad magic %s (expected \"CDZP\" = 0x43 0x44 0x5a 0x50): "
                                      "not a cadenza peer, or the byte stream lost its framing", got);
    }
    if (len < 6) return CDZ_STATUS_OK;
    uint16_t version = ld16(p + 4);
    if (version != CDZ_PROTO_VERSION)
        return cdz_error_set(CDZ_STATUS_UNSUPPORTED,
                             "frame: protocol version %u is not supported (this peer speaks version %d)",
                             version, CDZ_PROTO_VERSION);
    if (len < 8) return CDZ_STATUS_OK;
    uint16_t type = ld16(p + 6);
    if (type == 0 || type >= CDZ_PROTO_TYPE_COUNT_)
        return cdz_error_set(INVALID, "frame: unknown type %u (version %d has types 1..%d)", type,
                             CDZ_PROTO_VERSION, CDZ_PROTO_TYPE_COUNT_ - 1);
    const char *tn = type_names[type];
    if (lim && !lim->authenticated && type != CDZ_PROTO_HELLO)
        return cdz_error_set(CDZ_STATUS_UNAUTHENTICATED,
                             "frame %s before HELLO: a connection must start with HELLO", tn);
    if (lim && lim->types && !(lim->types & CDZ_PROTO_TYPE_BIT(type)))
        return cdz_error_set(INVALID, "frame %s is not accepted in this direction (a %s frame is sent by the %s)",
                             tn, tn, (CDZ_PROTO_TYPES_FROM_CLIENT & CDZ_PROTO_TYPE_BIT(type)) ? "client" : "server");
    const type_rule *r = &rules[type];
    if (len < 12) return CDZ_STATUS_OK;
    uint32_t flags = ld32(p + 8);
    if (flags & ~r->flags)
        return cdz_error_set(INVALID, "frame %s: unknown flag bits 0x%x (allowed: 0x%x)", tn,
                             flags & ~r->flags, r->flags);
    if (len < 16) return CDZ_STATUS_OK;
    uint32_t body = ld32(p + 12);
    const char *limit_name;
    uint32_t max = effective_max_body(lim, &limit_name);
    if (body > max)
        return cdz_error_set(CDZ_STATUS_TOO_LARGE, "frame %s: body %" PRIu32 " bytes exceeds the limit of %" PRIu32 " (%s)",
                             tn, body, max, limit_name);
    if (body % CDZ_PROTO_ALIGN)
        return cdz_error_set(INVALID, "frame %s: body length %" PRIu32 " is not a multiple of %d", tn, body,
                             CDZ_PROTO_ALIGN);
    if (r->empty_body && body != 0)
        return cdz_error_set(INVALID, "frame %s: body must be empty (got %" PRIu32 " bytes)", tn, body);
    if (len < CDZ_PROTO_HEADER_SIZE) return CDZ_STATUS_OK;

    uint64_t request_id = ld64(p + 16), stream_id = ld64(p + 24), sequence = ld64(p + 32);
    uint64_t deadline = ld64(p + 40);
    uint8_t priority = p[48];
    cdz_status st;
    if ((st = id_rule(tn, "request_id", r->request, request_id)) != CDZ_STATUS_OK) return st;
    if ((st = id_rule(tn, "stream_id", r->stream, stream_id)) != CDZ_STATUS_OK) return st;
    bool seq_ok = r->sequence && (type != CDZ_PROTO_RESULT || stream_id != 0);
    if (!seq_ok && sequence != 0)
        return cdz_error_set(INVALID, "frame %s: sequence must be 0 %s(got %" PRIu64 ")", tn,
                             type == CDZ_PROTO_RESULT ? "outside a stream " : "", sequence);
    if ((flags & CDZ_PROTO_FLAG_END_OF_STREAM) && stream_id == 0)
        return cdz_error_set(INVALID, "frame %s: END_OF_STREAM outside a stream (stream_id 0)", tn);
    if (!r->deadline && deadline != 0)
        return cdz_error_set(INVALID, "frame %s: deadline_us must be 0 (got %" PRIu64 ")", tn, deadline);
    if (deadline > CDZ_PROTO_MAX_DEADLINE_US)
        return cdz_error_set(INVALID, "frame %s: deadline_us %" PRIu64 " exceeds the limit of %llu (CDZ_PROTO_MAX_DEADLINE_US, 24 h)",
                             tn, deadline, CDZ_PROTO_MAX_DEADLINE_US);
    if (!r->priority && priority != 0)
        return cdz_error_set(INVALID, "frame %s: priority must be 0 (got %u)", tn, priority);
    if (priority > CDZ_PROTO_MAX_PRIORITY)
        return cdz_error_set(INVALID, "frame %s: priority %u exceeds the limit of %d (CDZ_PROTO_MAX_PRIORITY)",
                             tn, priority, CDZ_PROTO_MAX_PRIORITY);
    for (int i = 49; i < CDZ_PROTO_HEADER_SIZE; i++)
        if (p[i] != 0)
            return cdz_error_set(INVALID, "frame %s: reserved header byte %d is 0x%02x (must be 0)", tn, i, p[i]);
    return CDZ_STATUS_OK;
}

cdz_status cdz_proto_frame_peek(const void *buf, size_t len, const cdz_proto_limits *lim, size_t *need) {
    if (need) *need = CDZ_PROTO_HEADER_SIZE;
    if (!buf && len) return cdz_error_set(INVALID, "frame peek: NULL buffer of %zu bytes", len);
    if (!need) return cdz_error_set(INVALID, "frame peek: NULL need");
    if (len == 0) return CDZ_STATUS_OK;
    const uint8_t *p = buf;
    cdz_status st = check_header(p, len < CDZ_PROTO_HEADER_SIZE ? len : CDZ_PROTO_HEADER_SIZE, lim);
    if (st != CDZ_STATUS_OK) return st;
    /* the body length is known (and accepted) from byte 16 on */
    if (len >= 16) *need = CDZ_PROTO_HEADER_SIZE + (size_t)ld32(p + 12);
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------------------------
 * Field validation shared by the decoder and the encoder
 * ---------------------------------------------------------------------------------- */
enum str_class {
    STR_NAME,    /* 1..CDZ_PROTO_MAX_NAME printable ASCII, no space */
    STR_KEY,     /* 0..CDZ_PROTO_MAX_API_KEY printable ASCII, no space */
    STR_AGENT,   /* 0..CDZ_PROTO_MAX_AGENT printable ASCII with space */
    STR_MESSAGE, /* 1..CDZ_PROTO_MAX_MESSAGE bytes, no control characters (UTF-8 passes) */
};

static const struct {
    size_t min, max;
    const char *limit;
    const char *allowed;
} str_classes[] = {
    [STR_NAME] = {1, CDZ_PROTO_MAX_NAME, "CDZ_PROTO_MAX_NAME", "printable ASCII without spaces"},
    [STR_KEY] = {0, CDZ_PROTO_MAX_API_KEY, "CDZ_PROTO_MAX_API_KEY", "printable ASCII without spaces"},
    [STR_AGENT] = {0, CDZ_PROTO_MAX_AGENT, "CDZ_PROTO_MAX_AGENT", "printable ASCII"},
    [STR_MESSAGE] = {1, CDZ_PROTO_MAX_MESSAGE, "CDZ_PROTO_MAX_MESSAGE", "no control characters"},
};

static bool str_byte_ok(enum str_class c, uint8_t b) {
    switch (c) {
    case STR_NAME:
    case STR_KEY: return b > 0x20 && b < 0x7f;
    case STR_AGENT: return b >= 0x20 && b < 0x7f;
    case STR_MESSAGE: return b >= 0x20 && b != 0x7f;
    }
    return false;
}

/* `what` names the field ("model name", "input 2 name"). */
static cdz_status check_str(const uint8_t *s, size_t len, enum str_class c, const char *what) {
    if (len > str_classes[c].max)
        return cdz_error_set(INVALID, "%s: %zu bytes exceeds the limit of %zu (%s)", what, len,
                             str_classes[c].max, str_classes[c].limit);
    if (len < str_classes[c].min) return cdz_error_set(INVALID, "%s: empty", what);
    for (size_t i = 0; i < len; i++)
        if (!str_byte_ok(c, s[i]))
            return cdz_error_set(INVALID, "%s: byte 0x%02x at offset %zu is not allowed (%s)", what, s[i], i,
                                 str_classes[c].allowed);
    return CDZ_STATUS_OK;
}

static const char *shape_str(char *buf, size_t cap, cdz_dtype dtype, int32_t ndim, const int64_t *dims) {
    size_t n = (size_t)snprintf(buf, cap, "%s[", (unsigned)dtype < CDZ_DTYPE_COUNT_ ? cdz_dtype_name(dtype) : "?");
    for (int32_t i = 0; i < ndim && i < CDZ_MAX_DIMS && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ",%" PRId64 : "%" PRId64, dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* dtype, ndim, dims (spec: -1 allowed) and, for payloads, nbytes == prod(dims) * size with
 * overflow-safe math. The name was checked by the caller. */
static cdz_status check_tensor_desc(const cdz_proto_tensor *t, bool spec, const char *what) {
    if ((unsigned)t->dtype >= CDZ_DTYPE_COUNT_)
        return cdz_error_set(INVALID, "%s '%s': unknown dtype code %d (0..%d)", what, t->name, (int)t->dtype,
                             CDZ_DTYPE_COUNT_ - 1);
    if (t->ndim < 0 || t->ndim > CDZ_MAX_DIMS)
        return cdz_error_set(INVALID, "%s '%s': %d dims exceeds the limit of %d (CDZ_MAX_DIMS)", what, t->name,
                             (int)t->ndim, CDZ_MAX_DIMS);
    /* the product of the nonzero dims must fit int64 (cdz_tensor strides); zero dims are empty */
    int64_t prod = 1;
    bool empty = false;
    for (int32_t i = 0; i < t->ndim; i++) {
        int64_t d = t->dims[i];
        if (d < (spec ? -1 : 0))
            return cdz_error_set(INVALID, "%s '%s': dim %d is %" PRId64 " (must be >= %d)", what, t->name, (int)i,
                                 d, spec ? -1 : 0);
        if (d == 0) empty = true;
        if (d > 1 && prod > INT64_MAX / d) {
            char sh[160];
            return cdz_error_set(INVALID, "%s '%s': dims %s overflow 64 bits", what, t->name,
                                 shape_str(sh, sizeof sh, t->dtype, t->ndim, t->dims));
        }
        if (d > 1) prod *= d;
    }
    if (spec) return CDZ_STATUS_OK;
    uint64_t numel = empty ? 0 : (uint64_t)prod, size = cdz_dtype_size(t->dtype), expect;
    char sh[160];
    if (__builtin_mul_overflow(numel, size, &expect))
        return cdz_error_set(INVALID, "%s '%s': byte size of %s overflows 64 bits", what, t->name,
                             shape_str(sh, sizeof sh, t->dtype, t->ndim, t->dims));
    if (expect != t->nbytes)
        return cdz_error_set(INVALID, "%s '%s': nbytes %" PRIu64 " does not match %s = %" PRIu64 " bytes", what,
                             t->name, t->nbytes, shape_str(sh, sizeof sh, t->dtype, t->ndim, t->dims), expect);
    return CDZ_STATUS_OK;
}

/* names[i] at stride `stride` bytes; quadratic, n <= CDZ_PROTO_MAX_TENSORS */
static cdz_status check_unique(const char *base, size_t stride, uint32_t n, const char *what) {
    for (uint32_t i = 1; i < n; i++)
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(base + i * stride, base + j * stride) == 0)
                return cdz_error_set(INVALID, "%s %u and %u are both named '%s'", what, j, i, base + i * stride);
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------------------------
 * Decoder
 * ---------------------------------------------------------------------------------- */
typedef struct reader {
    const uint8_t *p; /* body start: frame offset 56, so body offsets keep frame alignment */
    size_t pos, end;
} reader;

static cdz_status rd_need(reader *r, size_t n, const char *what) {
    if (r->end - r->pos < n)
        return cdz_error_set(INVALID, "%s: needs %zu bytes at body offset %zu, the body has %zu left", what, n,
                             r->pos, r->end - r->pos);
    return CDZ_STATUS_OK;
}

#define RD_TRY(x)                                                                                  \
    do {                                                                                           \
        cdz_status st_ = (x);                                                                      \
        if (st_ != CDZ_STATUS_OK) return st_;                                                      \
    } while (0)

static cdz_status rd_u8(reader *r, const char *what, uint8_t *v) {
    RD_TRY(rd_need(r, 1, what));
    *v = r->p[r->pos++];
    return CDZ_STATUS_OK;
}
static cdz_status rd_u16(reader *r, const char *what, uint16_t *v) {
    RD_TRY(rd_need(r, 2, what));
    *v = ld16(r->p + r->pos);
    r->pos += 2;
    return CDZ_STATUS_OK;
}
static cdz_status rd_u32(reader *r, const char *what, uint32_t *v) {
    RD_TRY(rd_need(r, 4, what));
    *v = ld32(r->p + r->pos);
    r->pos += 4;
    return CDZ_STATUS_OK;
}
static cdz_status rd_u64(reader *r, const char *what, uint64_t *v) {
    RD_TRY(rd_need(r, 8, what));
    *v = ld64(r->p + r->pos);
    r->pos += 8;
    return CDZ_STATUS_OK;
}

/* u16 length + bytes, checked and copied NUL-terminated into dst (capacity class max + 1) */
static cdz_status rd_str(reader *r, enum str_class c, const char *what, char *dst) {
    uint16_t len;
    RD_TRY(rd_u16(r, what, &len));
    if (len > str_classes[c].max) /* before touching the bytes */
        return cdz_error_set(INVALID, "%s: %u bytes exceeds the limit of %zu (%s)", what, len, str_classes[c].max,
                             str_classes[c].limit);
    RD_TRY(rd_need(r, len, what));
    RD_TRY(check_str(r->p + r->pos, len, c, what));
    memcpy(dst, r->p + r->pos, len);
    dst[len] = '\0';
    r->pos += len;
    return CDZ_STATUS_OK;
}

static cdz_status rd_zeros(reader *r, size_t n, const char *what) {
    RD_TRY(rd_need(r, n, what));
    for (size_t i = 0; i < n; i++)
        if (r->p[r->pos + i] != 0)
            return cdz_error_set(INVALID, "%s: byte %zu of the padding is 0x%02x (must be 0)", what, i,
                                 r->p[r->pos + i]);
    r->pos += n;
    return CDZ_STATUS_OK;
}

/* Tensor descriptor (+ payload unless spec). `what` is e.g. "input 3". */
static cdz_status rd_tensor(reader *r, bool spec, const char *what, cdz_proto_tensor *t) {
    char field[96];
    snprintf(field, sizeof field, "%s name", what);
    RD_TRY(rd_str(r, STR_NAME, field, t->name));
    uint8_t dtype, ndim;
    snprintf(field, sizeof field, "%s '%s'", what, t->name);
    RD_TRY(rd_u8(r, field, &dtype));
    RD_TRY(rd_u8(r, field, &ndim));
    t->dtype = (cdz_dtype)dtype;
    t->ndim = ndim;
    if (dtype >= CDZ_DTYPE_COUNT_ || ndim > CDZ_MAX_DIMS) return check_tensor_desc(t, spec, what);
    for (int i = 0; i < ndim; i++) {
        uint64_t d;
        RD_TRY(rd_u64(r, field, &d));
        t->dims[i] = (int64_t)d;
    }
    if (!spec) RD_TRY(rd_u64(r, field, &t->nbytes));
    RD_TRY(check_tensor_desc(t, spec, what)); /* nbytes vs dims before the payload is looked at */
    if (spec) return CDZ_STATUS_OK;
    RD_TRY(rd_zeros(r, align_up(r->pos) - r->pos, field));
    if (t->nbytes > r->end - r->pos)
        return cdz_error_set(INVALID, "%s: payload of %" PRIu64 " bytes runs past the end of the body (%zu bytes left)",
                             field, t->nbytes, r->end - r->pos);
    t->data = r->p + r->pos;
    r->pos += (size_t)t->nbytes;
    return CDZ_STATUS_OK;
}

static cdz_status rd_tensors(reader *r, cdz_proto_msg *m, const char *what, bool allow_empty) {
    uint16_t n;
    RD_TRY(rd_u16(r, "tensor count", &n));
    if (n > CDZ_PROTO_MAX_TENSORS)
        return cdz_error_set(INVALID, "%s count %u exceeds the limit of %d (CDZ_PROTO_MAX_TENSORS)", what, n,
                             CDZ_PROTO_MAX_TENSORS);
    if (n == 0 && !allow_empty)
        return cdz_error_set(INVALID, "no %ss (only a frame with END_OF_STREAM may have none)", what);
    for (uint16_t i = 0; i < n; i++) {
        char w[48];
        snprintf(w, sizeof w, "%s %u", what, i);
        RD_TRY(rd_tensor(r, false, w, &m->tensors[i]));
        m->n_tensors = i + 1u;
    }
    return check_unique(m->tensors[0].name, sizeof m->tensors[0], m->n_tensors, what);
}

static cdz_status rd_request(reader *r, cdz_proto_msg *m) {
    RD_TRY(rd_str(r, STR_NAME, "model name", m->model));
    uint16_t n;
    RD_TRY(rd_u16(r, "output count", &n));
    if (n > CDZ_PROTO_MAX_OUTPUTS)
        return cdz_error_set(INVALID, "requested output count %u exceeds the limit of %d (CDZ_PROTO_MAX_OUTPUTS)", n,
                             CDZ_PROTO_MAX_OUTPUTS);
    for (uint16_t i = 0; i < n; i++) {
        char w[48];
        snprintf(w, sizeof w, "requested output %u", i);
        RD_TRY(rd_str(r, STR_NAME, w, m->outputs[i]));
        m->n_outputs = i + 1u;
    }
    RD_TRY(check_unique(m->outputs[0], sizeof m->outputs[0], m->n_outputs, "requested outputs"));
    return rd_tensors(r, m, "input", true);
}

static cdz_status rd_model_list(reader *r, cdz_proto_msg *m) {
    uint16_t n;
    RD_TRY(rd_u16(r, "model count", &n));
    if (n > CDZ_PROTO_MAX_MODELS)
        return cdz_error_set(INVALID, "model count %u exceeds the limit of %d (CDZ_PROTO_MAX_MODELS)", n,
                             CDZ_PROTO_MAX_MODELS);
    for (uint16_t i = 0; i < n; i++) {
        cdz_proto_model *md = &m->models[i];
        char w[96];
        snprintf(w, sizeof w, "model %u name", i);
        RD_TRY(rd_str(r, STR_NAME, w, md->name));
        snprintf(w, sizeof w, "model '%s'", md->name);
        uint16_t flags, nin, nout;
        RD_TRY(rd_u16(r, w, &flags));
        RD_TRY(rd_u16(r, w, &nin));
        RD_TRY(rd_u16(r, w, &nout));
        if (flags & ~(uint16_t)(CDZ_PROTO_MODEL_INFER | CDZ_PROTO_MODEL_STREAM))
            return cdz_error_set(INVALID, "%s: unknown flag bits 0x%x", w,
                                 flags & ~(unsigned)(CDZ_PROTO_MODEL_INFER | CDZ_PROTO_MODEL_STREAM));
        if ((uint32_t)nin + nout > CDZ_PROTO_MAX_TENSORS - m->n_tensors)
            return cdz_error_set(INVALID, "%s: %u inputs + %u outputs take the specs past the limit of %d per frame "
                                 "(CDZ_PROTO_MAX_TENSORS)", w, nin, nout, CDZ_PROTO_MAX_TENSORS);
        md->flags = flags;
        md->first_input = (uint16_t)m->n_tensors;
        md->n_inputs = nin;
        md->first_output = (uint16_t)(m->n_tensors + nin);
        md->n_outputs = nout;
        m->n_models = i + 1u;
        for (uint32_t k = 0; k < (uint32_t)nin + nout; k++) {
            char sw[128];
            snprintf(sw, sizeof sw, "model '%s' %s %u", md->name, k < nin ? "input" : "output", k < nin ? k : k - nin);
            RD_TRY(rd_tensor(r, true, sw, &m->tensors[m->n_tensors]));
            m->n_tensors++;
        }
        snprintf(w, sizeof w, "model '%s' inputs", md->name);
        RD_TRY(check_unique(m->tensors[md->first_input].name, sizeof m->tensors[0], nin, w));
        snprintf(w, sizeof w, "model '%s' outputs", md->name);
        RD_TRY(check_unique(m->tensors[md->first_output].name, sizeof m->tensors[0], nout, w));
    }
    return check_unique(m->models[0].name, sizeof m->models[0], m->n_models, "models");
}

static cdz_status decode_body(reader *r, cdz_proto_msg *m) {
    switch (m->h.type) {
    case CDZ_PROTO_HELLO:
        RD_TRY(rd_str(r, STR_KEY, "api key", m->api_key));
        return rd_str(r, STR_AGENT, "agent", m->agent);
    case CDZ_PROTO_WELCOME:
        RD_TRY(rd_u32(r, "max_body", &m->max_body));
        if (m->max_body < CDZ_PROTO_MAX_PREAUTH_BODY || m->max_body > CDZ_PROTO_MAX_FRAME || m->max_body % CDZ_PROTO_ALIGN)
            return cdz_error_set(INVALID, "max_body %" PRIu32 " is outside [%d, %u] or not a multiple of %d",
                                 m->max_body, CDZ_PROTO_MAX_PREAUTH_BODY, CDZ_PROTO_MAX_FRAME, CDZ_PROTO_ALIGN);
        RD_TRY(rd_u16(r, "max_streams", &m->max_streams));
        return rd_str(r, STR_AGENT, "agent", m->agent);
    case CDZ_PROTO_INFER:
    case CDZ_PROTO_STREAM_OPEN:
        return rd_request(r, m);
    case CDZ_PROTO_STREAM_CHUNK:
        return rd_tensors(r, m, "input", (m->h.flags & CDZ_PROTO_FLAG_END_OF_STREAM) != 0);
    case CDZ_PROTO_RESULT:
        RD_TRY(rd_u64(r, "queue_us", &m->queue_us));
        RD_TRY(rd_u64(r, "compute_us", &m->compute_us));
        return rd_tensors(r, m, "output", (m->h.flags & CDZ_PROTO_FLAG_END_OF_STREAM) != 0);
    case CDZ_PROTO_ERROR: {
        uint16_t code;
        uint8_t retry, reserved;
        RD_TRY(rd_u16(r, "error code", &code));
        if (code == 0 || code >= CDZ_STATUS_COUNT_)
            return cdz_error_set(INVALID, "error code %u is not one of 1..%d", code, CDZ_STATUS_COUNT_ - 1);
        RD_TRY(rd_u8(r, "retryable", &retry));
        if (retry > 1) return cdz_error_set(INVALID, "retryable is %u (must be 0 or 1)", retry);
        RD_TRY(rd_u8(r, "reserved", &reserved));
        if (reserved) return cdz_error_set(INVALID, "reserved byte after retryable is 0x%02x (must be 0)", reserved);
        m->code = (cdz_status)code;
        m->retryable = retry;
        return rd_str(r, STR_MESSAGE, "message", m->message);
    }
    case CDZ_PROTO_MODEL_LIST:
        return rd_model_list(r, m);
    default: /* STREAM_CLOSE, CANCEL, LIST_MODELS: empty, checked by the header */
        return CDZ_STATUS_OK;
    }
}

cdz_status cdz_proto_decode(const void *buf, size_t len, const cdz_proto_limits *lim, cdz_proto_msg *out) {
    if (!out) return cdz_error_set(INVALID, "frame decode: NULL output");
    memset(out, 0, sizeof *out);
    if (!buf && len) return cdz_error_set(INVALID, "frame decode: NULL buffer of %zu bytes", len);
    size_t need;
    cdz_status st = cdz_proto_frame_peek(buf, len, lim, &need);
    if (st != CDZ_STATUS_OK) return st;
    if (len != need) {
        if (len < CDZ_PROTO_HEADER_SIZE)
            return cdz_error_set(INVALID, "frame truncated: %zu bytes, the header alone is %d", len, CDZ_PROTO_HEADER_SIZE);
        return cdz_error_set(INVALID, "frame %s: buffer holds %zu bytes, the frame is %zu (header %d + body %zu)",
                             cdz_proto_type_name(ld16((const uint8_t *)buf + 6)), len, need, CDZ_PROTO_HEADER_SIZE,
                             need - CDZ_PROTO_HEADER_SIZE);
    }
    const uint8_t *p = buf;
    cdz_proto_header *h = &out->h;
    h->version = ld16(p + 4);
    h->type = ld16(p + 6);
    h->flags = ld32(p + 8);
    h->body_len = ld32(p + 12);
    h->request_id = ld64(p + 16);
    h->stream_id = ld64(p + 24);
    h->sequence = ld64(p + 32);
    h->deadline_us = ld64(p + 40);
    h->priority = p[48];
    reader r = {p + CDZ_PROTO_HEADER_SIZE, 0, h->body_len};
    st = decode_body(&r, out);
    if (st == CDZ_STATUS_OK) {
        /* the body ends with the minimal zero padding to a multiple of 8, nothing else */
        size_t end = align_up(r.pos);
        if (end != r.end) {
            st = cdz_error_set(INVALID, "%zu trailing bytes after the content (%zu bytes, padded to %zu)",
                               r.end - end, r.pos, end);
        } else {
            st = rd_zeros(&r, end - r.pos, "end of body");
        }
    }
    if (st != CDZ_STATUS_OK) {
        cdz_error_prefix("frame %s (request %" PRIu64 ")", cdz_proto_type_name(h->type), h->request_id);
        cdz_proto_header keep = *h; /* keep the header for the error reply; drop half-read content */
        memset(out, 0, sizeof *out);
        out->h = keep;
    }
    return st;
}

/* ------------------------------------------------------------------------------------
 * Encoder
 * ---------------------------------------------------------------------------------- */
typedef struct writer {
    uint8_t *p; /* body start, or NULL when only measuring */
    size_t pos, cap;
} writer;

static void wr_bytes(writer *w, const void *src, size_t n) {
    if (w->p && n && w->pos <= w->cap && n <= w->cap - w->pos) memcpy(w->p + w->pos, src, n);
    w->pos += n;
}
static void wr_u8(writer *w, uint8_t v) { wr_bytes(w, &v, 1); }
static void wr_u16(writer *w, uint16_t v) { uint8_t b[2]; st16(b, v); wr_bytes(w, b, 2); }
static void wr_u32(writer *w, uint32_t v) { uint8_t b[4]; st32(b, v); wr_bytes(w, b, 4); }
static void wr_u64(writer *w, uint64_t v) { uint8_t b[8]; st64(b, v); wr_bytes(w, b, 8); }
static void wr_pad(writer *w) {
    static const uint8_t zeros[CDZ_PROTO_ALIGN];
    wr_bytes(w, zeros, align_up(w->pos) - w->pos);
}

static cdz_status wr_str(writer *w, enum str_class c, const char *what, const char *s) {
    size_t len = s ? strnlen(s, str_classes[c].max + 1) : 0;
    RD_TRY(check_str((const uint8_t *)(s ? s : ""), len, c, what));
    wr_u16(w, (uint16_t)len);
    wr_bytes(w, s, len);
    return CDZ_STATUS_OK;
}

static cdz_status wr_tensor(writer *w, bool spec, const char *what, const cdz_proto_tensor *t) {
    char field[96];
    snprintf(field, sizeof field, "%s name", what);
    RD_TRY(wr_str(w, STR_NAME, field, t->name));
    RD_TRY(check_tensor_desc(t, spec, what));
    wr_u8(w, (uint8_t)t->dtype);
    wr_u8(w, (uint8_t)t->ndim);
    for (int32_t i = 0; i < t->ndim; i++) wr_u64(w, (uint64_t)t->dims[i]);
    if (spec) return CDZ_STATUS_OK;
    wr_u64(w, t->nbytes);
    if (t->nbytes > CDZ_PROTO_MAX_FRAME) /* keeps the size arithmetic below far from overflow */
        return cdz_error_set(CDZ_STATUS_TOO_LARGE, "%s '%s': %" PRIu64 " bytes exceeds the frame limit of %u (CDZ_PROTO_MAX_FRAME)",
                             what, t->name, t->nbytes, CDZ_PROTO_MAX_FRAME);
    if (t->nbytes && !t->data) return cdz_error_set(INVALID, "%s '%s': NULL data for %" PRIu64 " bytes", what, t->name, t->nbytes);
    wr_pad(w);
    wr_bytes(w, t->data, (size_t)t->nbytes);
    return CDZ_STATUS_OK;
}

static cdz_status wr_tensors(writer *w, const cdz_proto_msg *m, const char *what, bool allow_empty) {
    if (m->n_tensors > CDZ_PROTO_MAX_TENSORS)
        return cdz_error_set(INVALID, "%s count %u exceeds the limit of %d (CDZ_PROTO_MAX_TENSORS)", what, m->n_tensors,
                             CDZ_PROTO_MAX_TENSORS);
    if (m->n_tensors == 0 && !allow_empty)
        return cdz_error_set(INVALID, "no %ss (only a frame with END_OF_STREAM may have none)", what);
    wr_u16(w, (uint16_t)m->n_tensors);
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        char wh[48];
        snprintf(wh, sizeof wh, "%s %u", what, i);
        RD_TRY(wr_tensor(w, false, wh, &m->tensors[i]));
    }
    return check_unique(m->tensors[0].name, sizeof m->tensors[0], m->n_tensors, what);
}

static cdz_status encode_body(writer *w, const cdz_proto_msg *m) {
    switch (m->h.type) {
    case CDZ_PROTO_HELLO:
        RD_TRY(wr_str(w, STR_KEY, "api key", m->api_key));
        return wr_str(w, STR_AGENT, "agent", m->agent);
    case CDZ_PROTO_WELCOME:
        if (m->max_body < CDZ_PROTO_MAX_PREAUTH_BODY || m->max_body > CDZ_PROTO_MAX_FRAME || m->max_body % CDZ_PROTO_ALIGN)
            return cdz_error_set(INVALID, "max_body %" PRIu32 " is outside [%d, %u] or not a multiple of %d",
                                 m->max_body, CDZ_PROTO_MAX_PREAUTH_BODY, CDZ_PROTO_MAX_FRAME, CDZ_PROTO_ALIGN);
        wr_u32(w, m->max_body);
        wr_u16(w, m->max_streams);
        return wr_str(w, STR_AGENT, "agent", m->agent);
    case CDZ_PROTO_INFER:
    case CDZ_PROTO_STREAM_OPEN:
        RD_TRY(wr_str(w, STR_NAME, "model name", m->model));
        if (m->n_outputs > CDZ_PROTO_MAX_OUTPUTS)
            return cdz_error_set(INVALID, "requested output count %u exceeds the limit of %d (CDZ_PROTO_MAX_OUTPUTS)",
                                 m->n_outputs, CDZ_PROTO_MAX_OUTPUTS);
        wr_u16(w, (uint16_t)m->n_outputs);
        for (uint32_t i = 0; i < m->n_outputs; i++) {
            char wh[48];
            snprintf(wh, sizeof wh, "requested output %u", i);
            RD_TRY(wr_str(w, STR_NAME, wh, m->outputs[i]));
        }
        RD_TRY(check_unique(m->outputs[0], sizeof m->outputs[0], m->n_outputs, "requested outputs"));
        return wr_tensors(w, m, "input", true);
    case CDZ_PROTO_STREAM_CHUNK:
        return wr_tensors(w, m, "input", (m->h.flags & CDZ_PROTO_FLAG_END_OF_STREAM) != 0);
    case CDZ_PROTO_RESULT:
        wr_u64(w, m->queue_us);
        wr_u64(w, m->compute_us);
        return wr_tensors(w, m, "output", (m->h.flags & CDZ_PROTO_FLAG_END_OF_STREAM) != 0);
    case CDZ_PROTO_ERROR:
        if ((unsigned)m->code == 0 || (unsigned)m->code >= CDZ_STATUS_COUNT_)
            return cdz_error_set(INVALID, "error code %d is not one of 1..%d", (int)m->code, CDZ_STATUS_COUNT_ - 1);
        wr_u16(w, (uint16_t)m->code);
        wr_u8(w, m->retryable ? 1 : 0);
        wr_u8(w, 0);
        return wr_str(w, STR_MESSAGE, "message", m->message);
    case CDZ_PROTO_MODEL_LIST: {
        if (m->n_models > CDZ_PROTO_MAX_MODELS)
            return cdz_error_set(INVALID, "model count %u exceeds the limit of %d (CDZ_PROTO_MAX_MODELS)", m->n_models,
                                 CDZ_PROTO_MAX_MODELS);
        wr_u16(w, (uint16_t)m->n_models);
        uint32_t next = 0; /* specs must be laid out in order, as the decoder rebuilds them */
        for (uint32_t i = 0; i < m->n_models; i++) {
            const cdz_proto_model *md = &m->models[i];
            char wh[96];
            snprintf(wh, sizeof wh, "model %u name", i);
            RD_TRY(wr_str(w, STR_NAME, wh, md->name));
            if (md->flags & ~(unsigned)(CDZ_PROTO_MODEL_INFER | CDZ_PROTO_MODEL_STREAM))
                return cdz_error_set(INVALID, "model '%s': unknown flag bits 0x%x", md->name,
                                     md->flags & ~(unsigned)(CDZ_PROTO_MODEL_INFER | CDZ_PROTO_MODEL_STREAM));
            if (md->first_input != next || md->first_output != next + md->n_inputs ||
                next + md->n_inputs + md->n_outputs > m->n_tensors || next + md->n_inputs + md->n_outputs > CDZ_PROTO_MAX_TENSORS)
                return cdz_error_set(INVALID, "model '%s': specs [%u, +%u inputs, %u, +%u outputs] are not the next "
                                     "ones in tensors (expected first_input %u, %u specs in all)", md->name,
                                     md->first_input, md->n_inputs, md->first_output, md->n_outputs, next, m->n_tensors);
            wr_u16(w, md->flags);
            wr_u16(w, md->n_inputs);
            wr_u16(w, md->n_outputs);
            for (uint32_t k = 0; k < (uint32_t)md->n_inputs + md->n_outputs; k++) {
                char sw[128];
                snprintf(sw, sizeof sw, "model '%s' %s %u", md->name, k < md->n_inputs ? "input" : "output",
                         k < md->n_inputs ? k : k - md->n_inputs);
                RD_TRY(wr_tensor(w, true, sw, &m->tensors[next + k]));
            }
            snprintf(wh, sizeof wh, "model '%s' inputs", md->name);
            RD_TRY(check_unique(m->tensors[md->first_input].name, sizeof m->tensors[0], md->n_inputs, wh));
            snprintf(wh, sizeof wh, "model '%s' outputs", md->name);
            RD_TRY(check_unique(m->tensors[md->first_output].name, sizeof m->tensors[0], md->n_outputs, wh));
            next += (uint32_t)md->n_inputs + md->n_outputs;
        }
        if (next != m->n_tensors)
            return cdz_error_set(INVALID, "%u specs in tensors, the models use %u", m->n_tensors, next);
        return check_unique(m->models[0].name, sizeof m->models[0], m->n_models, "models");
    }
    default:
        return CDZ_STATUS_OK;
    }
}

cdz_status cdz_proto_encode(const cdz_proto_msg *m, void *buf, size_t cap, size_t *size) {
    size_t dummy;
    if (!size) size = &dummy;
    *size = 0;
    if (!m) return cdz_error_set(INVALID, "frame encode: NULL message");
    const cdz_proto_header *h = &m->h;
    const char *tn = cdz_proto_type_name(h->type);
    uint8_t *p = buf;
    writer w = {p && cap > CDZ_PROTO_HEADER_SIZE ? p + CDZ_PROTO_HEADER_SIZE : NULL, 0,
                cap > CDZ_PROTO_HEADER_SIZE ? cap - CDZ_PROTO_HEADER_SIZE : 0};
    cdz_status st = CDZ_STATUS_OK;
    if (h->type == 0 || h->type >= CDZ_PROTO_TYPE_COUNT_)
        st = cdz_error_set(INVALID, "frame: unknown type %u", h->type);
    else
        st = encode_body(&w, m);
    if (st != CDZ_STATUS_OK) return cdz_error_prefix("encoding frame %s (request %" PRIu64 ")", tn, h->request_id);
    wr_pad(&w);
    if (w.pos > CDZ_PROTO_MAX_FRAME)
        return cdz_error_set(CDZ_STATUS_TOO_LARGE, "encoding frame %s (request %" PRIu64 "): body %zu bytes exceeds the limit of %u (CDZ_PROTO_MAX_FRAME)",
                             tn, h->request_id, w.pos, CDZ_PROTO_MAX_FRAME);
    uint8_t hdr[CDZ_PROTO_HEADER_SIZE] = {0};
    memcpy(hdr, CDZ_PROTO_MAGIC, 4);
    st16(hdr + 4, h->version ? h->version : CDZ_PROTO_VERSION);
    st16(hdr + 6, h->type);
    st32(hdr + 8, h->flags);
    st32(hdr + 12, (uint32_t)w.pos);
    st64(hdr + 16, h->request_id);
    st64(hdr + 24, h->stream_id);
    st64(hdr + 32, h->sequence);
    st64(hdr + 40, h->deadline_us);
    hdr[48] = h->priority;
    if ((st = check_header(hdr, sizeof hdr, NULL)) != CDZ_STATUS_OK) return cdz_error_prefix("encoding");
    *size = CDZ_PROTO_HEADER_SIZE + w.pos;
    if (!p) return CDZ_STATUS_OK;
    if (cap < *size)
        return cdz_error_set(INVALID, "encoding frame %s: buffer of %zu bytes is too small for the %zu-byte frame", tn,
                             cap, *size);
    memcpy(p, hdr, sizeof hdr);
    return CDZ_STATUS_OK;
}

void cdz_proto_msg_init(cdz_proto_msg *m, cdz_proto_type type) {
    memset(m, 0, sizeof *m);
    m->h.version = CDZ_PROTO_VERSION;
    m->h.type = (uint16_t)type;
}

/* A small frame written straight, without a 30 KB cdz_proto_msg. */
static cdz_status encode_small(void *buf, size_t cap, const cdz_proto_header *h, const uint8_t *body,
                               size_t body_len, size_t *size) {
    size_t dummy;
    if (!size) size = &dummy;
    *size = 0;
    size_t padded = align_up(body_len);
    uint8_t hdr[CDZ_PROTO_HEADER_SIZE] = {0};
    memcpy(hdr, CDZ_PROTO_MAGIC, 4);
    st16(hdr + 4, CDZ_PROTO_VERSION);
    st16(hdr + 6, h->type);
    st32(hdr + 8, h->flags);
    st32(hdr + 12, (uint32_t)padded);
    st64(hdr + 16, h->request_id);
    st64(hdr + 24, h->stream_id);
    st64(hdr + 32, h->sequence);
    cdz_status st = check_header(hdr, sizeof hdr, NULL);
    if (st != CDZ_STATUS_OK) return cdz_error_prefix("encoding");
    *size = CDZ_PROTO_HEADER_SIZE + padded;
    if (!buf) return CDZ_STATUS_OK;
    if (cap < *size)
        return cdz_error_set(INVALID, "encoding frame %s: buffer of %zu bytes is too small for the %zu-byte frame",
                             cdz_proto_type_name(h->type), cap, *size);
    uint8_t *p = buf;
    memcpy(p, hdr, sizeof hdr);
    if (body_len) memcpy(p + CDZ_PROTO_HEADER_SIZE, body, body_len);
    memset(p + CDZ_PROTO_HEADER_SIZE + body_len, 0, padded - body_len);
    return CDZ_STATUS_OK;
}

cdz_status cdz_proto_encode_error(void *buf, size_t cap, uint64_t request_id, uint64_t stream_id, uint64_t sequence,
                                  cdz_status code, bool retryable, bool closing, const char *message, size_t *size) {
    if ((unsigned)code == 0 || (unsigned)code >= CDZ_STATUS_COUNT_) {
        if (size) *size = 0;
        return cdz_error_set(INVALID, "encoding frame ERROR: error code %d is not one of 1..%d", (int)code,
                             CDZ_STATUS_COUNT_ - 1);
    }
    if (!message || !*message) message = cdz_status_name(code);
    uint8_t body[6 + CDZ_PROTO_MAX_MESSAGE];
    size_t n = strnlen(message, CDZ_PROTO_MAX_MESSAGE + 1);
    if (n > CDZ_PROTO_MAX_MESSAGE) {
        /* cut before the UTF-8 character that straddles the limit */
        n = CDZ_PROTO_MAX_MESSAGE;
        while (n > 0 && ((uint8_t)message[n] & 0xC0) == 0x80) n--;
    }
    st16(body, (uint16_t)code);
    body[2] = retryable ? 1 : 0;
    body[3] = 0;
    st16(body + 4, (uint16_t)n);
    for (size_t i = 0; i < n; i++) { /* control characters would be refused: replace them */
        uint8_t c = (uint8_t)message[i];
        body[6 + i] = str_byte_ok(STR_MESSAGE, c) ? c : '?';
    }
    cdz_proto_header h = {.type = CDZ_PROTO_ERROR, .flags = closing ? CDZ_PROTO_FLAG_CLOSING : 0,
                          .request_id = request_id, .stream_id = stream_id, .sequence = sequence};
    return encode_small(buf, cap, &h, body, 6 + n, size);
}

cdz_status cdz_proto_encode_last_error(void *buf, size_t cap, uint64_t request_id, uint64_t stream_id,
                                       uint64_t sequence, bool closing, size_t *size) {
    cdz_error e = *cdz_last_error(); /* copied: encoding may overwrite the record */
    cdz_status code = e.code;
    if ((unsigned)code == 0 || (unsigned)code >= CDZ_STATUS_COUNT_) {
        code = CDZ_STATUS_INTERNAL; /* asked to report a success or garbage: a bug */
        snprintf(e.message, sizeof e.message, "internal error: no error recorded");
        e.retryable = false;
    }
    return cdz_proto_encode_error(buf, cap, request_id, stream_id, sequence, code, e.retryable, closing, e.message, size);
}

cdz_status cdz_proto_encode_empty(void *buf, size_t cap, cdz_proto_type type, uint64_t request_id, uint64_t stream_id,
                                  uint64_t sequence, size_t *size) {
    if ((unsigned)type >= CDZ_PROTO_TYPE_COUNT_ || !rules[type].empty_body) {
        if (size) *size = 0;
        return cdz_error_set(INVALID, "encoding frame %s: not a type with an empty body (STREAM_CLOSE, CANCEL, LIST_MODELS)",
                             cdz_proto_type_name(type));
    }
    cdz_proto_header h = {.type = (uint16_t)type, .request_id = request_id, .stream_id = stream_id, .sequence = sequence};
    return encode_small(buf, cap, &h, NULL, 0, size);
}

cdz_status cdz_proto_error_raise(const cdz_proto_msg *m) {
    if (!m || m->h.type != CDZ_PROTO_ERROR)
        return cdz_error_set(INVALID, "error raise: not an ERROR frame (%s)", m ? cdz_proto_type_name(m->h.type) : "NULL");
    cdz_status code = (unsigned)m->code > 0 && (unsigned)m->code < CDZ_STATUS_COUNT_ ? m->code : CDZ_STATUS_INTERNAL;
    cdz_error_set(code, "%s", m->message);
    cdz_error_set_retryable(m->retryable);
    return code;
}

/* ------------------------------------------------------------------------------------
 * Tensors
 * ---------------------------------------------------------------------------------- */
cdz_status cdz_proto_tensor_view(const cdz_proto_tensor *t, cdz_tensor *out) {
    if (!t || !out) return cdz_error_set(INVALID, "tensor view: NULL argument");
    RD_TRY(check_tensor_desc(t, false, "tensor"));
    size_t es = cdz_dtype_size(t->dtype);
    if (t->nbytes && (!t->data || (uintptr_t)t->data % es))
        return cdz_error_set(INVALID, "tensor '%s': payload at %p is not aligned to its %zu-byte elements (place "
                             "frames at 8-aligned addresses)", t->name, t->data, es);
    cdz_device cpu = {CDZ_DEVICE_CPU, 0};
    return cdz_tensor_init(out, (void *)t->data, t->dtype, cpu, t->ndim, t->dims);
}

cdz_status cdz_proto_tensor_set(cdz_proto_tensor *out, const char *name, const cdz_tensor *t) {
    if (!out || !name || !t) return cdz_error_set(INVALID, "tensor set: NULL argument");
    memset(out, 0, sizeof *out);
    size_t len = strnlen(name, CDZ_PROTO_MAX_NAME + 1);
    RD_TRY(check_str((const uint8_t *)name, len, STR_NAME, "tensor name"));
    if (t->device.kind != CDZ_DEVICE_CPU)
        return cdz_error_set(INVALID, "tensor '%s': must be in host memory to be sent", name);
    if (!cdz_tensor_is_contiguous(t))
        return cdz_error_set(INVALID, "tensor '%s': must be contiguous to be sent", name);
    memcpy(out->name, name, len + 1);
    out->dtype = t->dtype;
    out->ndim = t->ndim;
    for (int32_t i = 0; i < t->ndim && i < CDZ_MAX_DIMS; i++) out->dims[i] = t->shape[i];
    out->nbytes = cdz_tensor_nbytes(t);
    out->data = t->data;
    return check_tensor_desc(out, false, "tensor");
}

/* ------------------------------------------------------------------------------------
 * Streams
 * ---------------------------------------------------------------------------------- */
void cdz_proto_stream_begin(cdz_proto_stream *s, uint64_t stream_id, uint64_t request_id) {
    memset(s, 0, sizeof *s);
    s->stream_id = stream_id;
    s->request_id = request_id;
}

cdz_status cdz_proto_stream_accept(cdz_proto_stream *s, const cdz_proto_header *h) {
    const char *tn = cdz_proto_type_name(h->type);
    if (h->type != CDZ_PROTO_STREAM_CHUNK && h->type != CDZ_PROTO_STREAM_CLOSE && h->type != CDZ_PROTO_RESULT)
        return cdz_error_set(INVALID, "stream %" PRIu64 ": %s is not a stream frame", s->stream_id, tn);
    if (h->stream_id != s->stream_id)
        return cdz_error_set(INVALID, "stream %" PRIu64 ": given a %s of stream %" PRIu64, s->stream_id, tn, h->stream_id);
    if (h->request_id != s->request_id)
        return cdz_error_set(INVALID, "stream %" PRIu64 ": %s carries request id %" PRIu64 ", the stream was opened as request %" PRIu64,
                             s->stream_id, tn, h->request_id, s->request_id);
    if (s->ended)
        return cdz_error_set(INVALID, "stream %" PRIu64 ": %s (sequence %" PRIu64 ") after the end of the stream", s->stream_id,
                             tn, h->sequence);
    if (h->type == CDZ_PROTO_STREAM_CLOSE) {
        if (h->sequence != s->next)
            return cdz_error_set(INVALID, "stream %" PRIu64 ": STREAM_CLOSE says %" PRIu64 " chunks were sent, %" PRIu64 " arrived",
                                 s->stream_id, h->sequence, s->next);
        s->ended = true;
        return CDZ_STATUS_OK;
    }
    if (h->sequence != s->next) {
        if (h->sequence > s->next)
            return cdz_error_set(INVALID, "stream %" PRIu64 ": %s sequence %" PRIu64 " where %" PRIu64 " was expected: "
                                 "%" PRIu64 " missing (a gap is an error; nothing is skipped)", s->stream_id, tn,
                                 h->sequence, s->next, h->sequence - s->next);
        return cdz_error_set(INVALID, "stream %" PRIu64 ": %s sequence %" PRIu64 " where %" PRIu64 " was expected: "
                             "repeated or out of order", s->stream_id, tn, h->sequence, s->next);
    }
    if (s->next == UINT64_MAX)
        return cdz_error_set(INVALID, "stream %" PRIu64 ": sequence numbers exhausted", s->stream_id);
    s->next++;
    if (h->flags & CDZ_PROTO_FLAG_END_OF_STREAM) s->ended = true;
    return CDZ_STATUS_OK;
}
