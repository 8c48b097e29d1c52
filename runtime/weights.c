/*
 * weights.c: the safetensors reader (docs/weights-format.md describes the format and rules).
 *
 * A file is mmapped (PROT_READ, MAP_PRIVATE) and validated once, completely, before a
 * handle is returned: header length against the limits and the file size (before any
 * parsing), the JSON header with jansson (duplicates rejected), every entry's keys, dtype,
 * shape and data_offsets, and finally that the tensors tile the data section exactly, as
 * the reference implementation (huggingface/safetensors, Metadata::validate) requires.
 * Nothing in the file is trusted: every error names the file and the tensor at fault and
 * says what was expected and what was found; no input aborts, asserts or reads outside the
 * buffer. After open the handle is read-only, so threads may share it.
 *
 * Tensor data inside the file is generally unaligned (the header length is arbitrary):
 * entry->data is for memcpy, never for a typed pointer cast.
 *
 * defines: cdz_weights_open, cdz_weights_open_buffer, cdz_weights_close, cdz_weights_count,
 *          cdz_weights_at, cdz_weights_find, cdz_weights_metadata_json,
 *          cdz_weights_metadata_get, cdz_weights_expect, cdz_weights_upload, cdz_weights_print
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cadenza.h"
#include "check.h"
#ifdef CDZ_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#define NAME_MAX_BYTES 1024  /* longest tensor name accepted */
#define QUOTE_MAX 96         /* bytes of a hostile name shown in a message */
#define METADATA_KEY "__metadata__"

struct cdz_weights {
    char *label;                 /* path, or the caller's label for a buffer */
    void *map;                   /* mmap base when we own a mapping, else NULL */
    size_t map_size;
    const uint8_t *base;         /* the whole file */
    size_t size;
    uint64_t header_len;         /* N: bytes of JSON after the 8-byte length */
    const uint8_t *data;         /* data section: base + 8 + N */
    uint64_t data_size;
    cdz_weight_entry *entries;   /* sorted by data offset (file order) */
    size_t count;
    const cdz_weight_entry **by_name; /* sorted by strcmp(name) for binary search */
    char *names;                 /* every name, NUL-terminated, in one block */
    json_t *metadata;            /* the __metadata__ object, or NULL */
    char *metadata_json;         /* compact text of it, or NULL ("{}") */
};

/* ------------------------------------------------------------------------------------
 * dtypes as safetensors spells them
 * ---------------------------------------------------------------------------------- */
static const struct {
    const char *name;
    cdz_dtype dtype;
} st_dtypes[] = {
    {"F64", CDZ_DTYPE_F64}, {"F32", CDZ_DTYPE_F32}, {"F16", CDZ_DTYPE_F16},
    {"BF16", CDZ_DTYPE_BF16}, {"I64", CDZ_DTYPE_I64}, {"I32", CDZ_DTYPE_I32},
    {"I16", CDZ_DTYPE_I16}, {"I8", CDZ_DTYPE_I8}, {"U8", CDZ_DTYPE_U8},
    {"BOOL", CDZ_DTYPE_BOOL},
};
#define ST_DTYPE_LIST "F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL"

static bool st_dtype_parse(const char *s, cdz_dtype *out) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(s, st_dtypes[i].name) == 0) {
            *out = st_dtypes[i].dtype;
            return true;
        }
    return false;
}

/* ------------------------------------------------------------------------------------
 * messages
 * ---------------------------------------------------------------------------------- */

/* Record "weights '<label>': <message>". */
static cdz_status werr(const char *label, cdz_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static cdz_status werr(const char *label, cdz_status code, const char *fmt, ...) {
    char msg[CDZ_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cdz_error_set(code, "weights '%s': %s", label, msg);
}

/* A name or string from the file, made safe to print: control bytes escaped, cut at
 * QUOTE_MAX bytes (on a UTF-8 boundary) with "..." so a hostile name can't flood a message. */
static const char *quote(const char *s, size_t len, char *buf, size_t size) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool cut = i >= QUOTE_MAX && (c & 0xC0) != 0x80;
        if (cut || o + 8 >= size) {
            if (o + 4 < size) memcpy(buf + o, "...", 3), o += 3;
            break;
        }
        if (c < 0x20 || c == 0x7f || c == '\\') {
            o += (size_t)snprintf(buf + o, size - o, c == '\\' ? "\\\\" : "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o] = '\0';
    return buf;
}
#define QBUF_SIZE (QUOTE_MAX * 4 + 16)
#define Q(s, buf) quote((s), strlen(s), (buf), sizeof(buf))

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* A JSON value as short text for "found ..." (numbers shown, others by kind). */
static const char *json_found(const json_t *v, char *buf, size_t size) {
    if (json_is_integer(v))
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, size, "the real number %.17g", json_real_value(v));
    else if (json_is_string(v)) {
        char q[QBUF_SIZE];
        snprintf(buf, size, "the string \"%s\"",
                 quote(json_string_value(v), json_string_length(v), q, sizeof q));
    } else
        snprintf(buf, size, "%s", json_kind(v));
    return buf;
}

/* "[48,4,8]"; "[]" for a scalar; -1 (any size, in cdz_weights_expect) as "*". */
static const char *shape_str(int32_t ndim, const int64_t *shape, char *buf, size_t size) {
    size_t o = 0;
    o += (size_t)snprintf(buf, size, "[");
    for (int32_t i = 0; i < ndim && o < size; i++) {
        if (shape[i] < 0)
            o += (size_t)snprintf(buf + o, size - o, "%s*", i ? "," : "");
        else
            o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? "," : "", (long long)shape[i]);
    }
    if (o < size) snprintf(buf + o, size - o, "]");
    return buf;
}

/* ------------------------------------------------------------------------------------
 * lifetime
 * ---------------------------------------------------------------------------------- */
static cdz_status weights_new(const char *label, cdz_weights **out) {
    cdz_weights *w = calloc(1, sizeof *w);
    if (!w) return werr(label, CDZ_STATUS_OUT_OF_MEMORY, "out of memory allocating the handle");
    w->label = strdup(label);
    if (!w->label) {
        free(w);
        return werr(label, CDZ_STATUS_OUT_OF_MEMORY, "out of memory copying the label");
    }
    *out = w;
    return CDZ_STATUS_OK;
}

void cdz_weights_close(cdz_weights *w) {
    if (!w) return;
    if (w->map) munmap(w->map, w->map_size);
    free(w->entries);
    free(w->by_name);
    free(w->names);
    if (w->metadata) json_decref(w->metadata);
    free(w->metadata_json);
    free(w->label);
    free(w);
}

/* ------------------------------------------------------------------------------------
 * parsing
 * ---------------------------------------------------------------------------------- */

/* A non-negative JSON integer, or false. */
static bool json_uint(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static cdz_status parse_metadata(cdz_weights *w, json_t *meta) {
    if (!json_is_object(meta))
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "__metadata__ must be an object of string values, found %s", json_kind(meta));
    const char *key;
    json_t *value;
    json_object_foreach(meta, key, value) {
        if (!json_is_string(value)) {
            char q[QBUF_SIZE], f[QBUF_SIZE + 32];
            return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                        "__metadata__ key '%s' must have a string value, found %s "
                        "(safetensors metadata maps strings to strings; store JSON as text)",
                        Q(key, q), json_found(value, f, sizeof f));
        }
    }
    w->metadata_json = json_dumps(meta, JSON_COMPACT);
    if (!w->metadata_json)
        return werr(w->label, CDZ_STATUS_OUT_OF_MEMORY, "out of memory formatting __metadata__");
    w->metadata = json_incref(meta);
    return CDZ_STATUS_OK;
}

/* One tensor entry: exactly {dtype, shape, data_offsets}, consistent with each other and
 * inside the data section. The name is already checked and copied to e->name. */
static cdz_status parse_entry(cdz_weights *w, json_t *v, cdz_weight_entry *e) {
    char qn[QBUF_SIZE], f[QBUF_SIZE + 32];
    const char *name = Q(e->name, qn);
    if (!json_is_object(v))
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "tensor '%s': expected an object {dtype, shape, data_offsets}, found %s",
                    name, json_kind(v));
    const char *key;
    json_t *value;
    json_object_foreach(v, key, value) {
        if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 &&
            strcmp(key, "data_offsets") != 0) {
            char qk[QBUF_SIZE];
            return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                        "tensor '%s': unexpected key '%s' (expected only dtype, shape, "
                        "data_offsets)", name, Q(key, qk));
        }
    }
    json_t *jdtype = json_object_get(v, "dtype");
    json_t *jshape = json_object_get(v, "shape");
    json_t *joff = json_object_get(v, "data_offsets");
    const char *missing = !jdtype ? "dtype" : !jshape ? "shape" : !joff ? "data_offsets" : NULL;
    if (missing)
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT, "tensor '%s': missing key '%s'", name,
                    missing);

    /* dtype */
    if (!json_is_string(jdtype))
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "tensor '%s': dtype must be a string, found %s", name,
                    json_found(jdtype, f, sizeof f));
    if (!st_dtype_parse(json_string_value(jdtype), &e->dtype)) {
        char qd[QBUF_SIZE];
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "tensor '%s': unsupported dtype '%s' (cadenza reads " ST_DTYPE_LIST ")", name,
                    quote(json_string_value(jdtype), json_string_length(jdtype), qd, sizeof qd));
    }

    /* shape */
    if (!json_is_array(jshape))
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "tensor '%s': shape must be an array of non-negative integers, found %s", name,
                    json_found(jshape, f, sizeof f));
    size_t nd = json_array_size(jshape);
    if (nd > CDZ_MAX_DIMS)
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "tensor '%s': shape has %zu dimensions, at most %d are supported", name, nd,
                    CDZ_MAX_DIMS);
    e->ndim = (int32_t)nd;
    uint64_t span = 1;  /* product of the non-zero dims: what strides must represent */
    bool overflow = false, empty = false;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(jshape, i);
        uint64_t dim;
        if (!json_uint(d, &dim))
            return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                        "tensor '%s': shape[%zu] must be a non-negative integer, found %s", name,
                        i, json_found(d, f, sizeof f));
        e->shape[i] = (int64_t)dim;
        if (dim == 0)
            empty = true;
        else if (__builtin_mul_overflow(span, dim, &span) || span > (uint64_t)INT64_MAX)
            overflow = true;
    }
    /* Even with a 0 dimension (no elements) the other dims must have a representable
     * product, or the strides of the tensor would overflow: refuse it. */
    uint64_t numel = empty ? 0 : span, nbytes = 0;
    if (overflow || __builtin_mul_overflow(numel, (uint64_t)cdz_dtype_size(e->dtype), &nbytes)) {
        char sb[160];
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "tensor '%s': shape %s has a size that overflows 64 bits", name,
                    shape_str(e->ndim, e->shape, sb, sizeof sb));
    }

    /* data_offsets */
    uint64_t begin, end;
    if (!json_is_array(joff) || json_array_size(joff) != 2)
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "tensor '%s': data_offsets must be an array [begin, end], found %s%s", name,
                    json_found(joff, f, sizeof f),
                    json_is_array(joff) ? (json_array_size(joff) < 2 ? " with fewer than 2 items"
                                                                     : " with more than 2 items")
                                        : "");
    for (int i = 0; i < 2; i++) {
        json_t *o = json_array_get(joff, (size_t)i);
        if (!json_uint(o, i ? &end : &begin))
            return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                        "tensor '%s': data_offsets[%d] must be a non-negative integer, found %s",
                        name, i, json_found(o, f, sizeof f));
    }
    if (begin > end)
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "tensor '%s': data_offsets [%llu, %llu] are reversed (begin > end)", name,
                    (unsigned long long)begin, (unsigned long long)end);
    if (end > w->data_size)
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "tensor '%s': data_offsets [%llu, %llu] run past the end of the data section "
                    "(%llu bytes; the file is %zu bytes, header %llu)",
                    name, (unsigned long long)begin, (unsigned long long)end,
                    (unsigned long long)w->data_size, w->size,
                    (unsigned long long)w->header_len);
    if (end - begin != nbytes) {
        char sb[160];
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "tensor '%s': %s%s needs %llu bytes, data_offsets [%llu, %llu] hold %llu",
                    name, cdz_dtype_name(e->dtype), shape_str(e->ndim, e->shape, sb, sizeof sb),
                    (unsigned long long)nbytes, (unsigned long long)begin,
                    (unsigned long long)end, (unsigned long long)(end - begin));
    }
    e->offset = begin;
    e->nbytes = nbytes;
    e->data = w->data + begin;
    return CDZ_STATUS_OK;
}

static int cmp_offset(const void *a, const void *b) {
    const cdz_weight_entry *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name); /* names are unique: a total order */
}

static int cmp_name(const void *a, const void *b) {
    const cdz_weight_entry *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* The tensors must cover the data section exactly, in offset order, without overlap or
 * gap (safetensors' validate(): each begin equals the previous end, and the last end is the
 * end of the file). */
static cdz_status check_tiling(cdz_weights *w) {
    uint64_t pos = 0;
    const cdz_weight_entry *prev = NULL;
    for (size_t i = 0; i < w->count; i++) {
        const cdz_weight_entry *e = &w->entries[i];
        char qa[QBUF_SIZE], qb[QBUF_SIZE];
        if (prev && e->offset < pos)
            return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                        "tensor '%s' (data_offsets [%llu, %llu]) overlaps tensor '%s' "
                        "([%llu, %llu])",
                        Q(e->name, qa), (unsigned long long)e->offset,
                        (unsigned long long)(e->offset + e->nbytes), Q(prev->name, qb),
                        (unsigned long long)prev->offset,
                        (unsigned long long)(prev->offset + prev->nbytes));
        if (e->offset > pos) {
            if (prev)
                return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                            "bytes [%llu, %llu) of the data section belong to no tensor (a hole "
                            "between tensor '%s' ending at %llu and tensor '%s' starting at "
                            "%llu; tensors must tile the data section)",
                            (unsigned long long)pos, (unsigned long long)e->offset,
                            Q(prev->name, qa), (unsigned long long)pos, Q(e->name, qb),
                            (unsigned long long)e->offset);
            return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                        "bytes [0, %llu) of the data section belong to no tensor (the first "
                        "tensor, '%s', starts at %llu; tensors must tile the data section)",
                        (unsigned long long)e->offset, Q(e->name, qa),
                        (unsigned long long)e->offset);
        }
        pos = e->offset + e->nbytes;
        prev = e;
    }
    if (pos != w->data_size) {
        char qa[QBUF_SIZE];
        if (prev)
            return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                        "the data section has %llu bytes but the tensors end at %llu (after "
                        "tensor '%s'): %llu trailing bytes belong to no tensor",
                        (unsigned long long)w->data_size, (unsigned long long)pos,
                        Q(prev->name, qa), (unsigned long long)(w->data_size - pos));
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "the file has no tensors but its data section has %llu bytes",
                    (unsigned long long)w->data_size);
    }
    return CDZ_STATUS_OK;
}

static bool is_metadata_key(const char *key, size_t klen) {
    return klen == strlen(METADATA_KEY) && memcmp(key, METADATA_KEY, klen) == 0;
}

/* The whole validation, over w->base/w->size. On failure the caller closes w. */
static cdz_status parse(cdz_weights *w) {
    if (w->size == 0)
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "the file is empty (a safetensors file starts with an 8-byte header length)");
    if (w->size < 8)
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "the file has %zu bytes, fewer than the 8-byte header length that starts a "
                    "safetensors file", w->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | w->base[i]; /* little-endian */
    /* Both bounds before anything proportional to n is touched or allocated. */
    if (n > CDZ_SAFETENSORS_HEADER_MAX)
        return werr(w->label, CDZ_STATUS_TOO_LARGE,
                    "header length %llu exceeds the limit of %u bytes (is this a safetensors "
                    "file?)", (unsigned long long)n, (unsigned)CDZ_SAFETENSORS_HEADER_MAX);
    if (n > w->size - 8)
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "header length %llu runs past the end of the file (%zu bytes after the "
                    "length field; truncated file?)", (unsigned long long)n, w->size - 8);
    w->header_len = n;
    w->data = w->base + 8 + n;
    w->data_size = (uint64_t)(w->size - 8 - n);

    json_error_t jerr;
    json_t *root = json_loadb((const char *)w->base + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return werr(w->label, CDZ_STATUS_OUT_OF_MEMORY,
                        "out of memory parsing the %llu-byte header", (unsigned long long)n);
        /* jansson quotes the offending token: keep control bytes out of the message */
        for (char *c = jerr.text; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "the header is not valid JSON: %s (line %d, column %d, header byte %d)",
                    jerr.text, jerr.line, jerr.column, jerr.position);
    }
    cdz_status st = CDZ_STATUS_OK;
    if (!json_is_object(root)) {
        st = werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                  "the header must be a JSON object {name: {dtype, shape, data_offsets}}, "
                  "found %s", json_kind(root));
        goto done;
    }
    json_t *meta = json_object_get(root, METADATA_KEY);
    size_t ntensors = json_object_size(root) - (meta ? 1 : 0);
    if (ntensors > CDZ_SAFETENSORS_MAX_TENSORS) {
        st = werr(w->label, CDZ_STATUS_TOO_LARGE, "the header lists %zu tensors, the limit is %d",
                  ntensors, CDZ_SAFETENSORS_MAX_TENSORS);
        goto done;
    }
    if (meta && (st = parse_metadata(w, meta)) != CDZ_STATUS_OK) goto done;

    /* Names: checked, then copied into one block (the JSON tree is freed below). */
    size_t names_bytes = 0;
    for (void *it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
        const char *key = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it);
        if (is_metadata_key(key, klen)) continue;
        char q[QBUF_SIZE];
        if (klen == 0) {
            st = werr(w->label, CDZ_STATUS_INVALID_ARGUMENT, "a tensor has an empty name");
            goto done;
        }
        if (strlen(key) != klen) {
            st = werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                      "tensor name '%s' contains a NUL byte", quote(key, klen, q, sizeof q));
            goto done;
        }
        if (klen > NAME_MAX_BYTES) {
            st = werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                      "tensor name '%s' has %zu bytes, the limit is %d",
                      quote(key, klen, q, sizeof q), klen, NAME_MAX_BYTES);
            goto done;
        }
        names_bytes += klen + 1;
    }
    /* calloc(0) may return NULL: always ask for at least one element. */
    w->entries = calloc(ntensors ? ntensors : 1, sizeof *w->entries);
    w->by_name = calloc(ntensors ? ntensors : 1, sizeof *w->by_name);
    w->names = malloc(names_bytes ? names_bytes : 1);
    if (!w->entries || !w->by_name || !w->names) {
        st = werr(w->label, CDZ_STATUS_OUT_OF_MEMORY,
                  "out of memory indexing %zu tensors (%zu bytes of names)", ntensors,
                  names_bytes);
        goto done;
    }
    char *np = w->names;
    for (void *it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
        const char *key = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it);
        if (is_metadata_key(key, klen)) continue;
        cdz_weight_entry *e = &w->entries[w->count];
        memcpy(np, key, klen + 1);
        e->name = np;
        np += klen + 1;
        if ((st = parse_entry(w, json_object_iter_value(it), e)) != CDZ_STATUS_OK) goto done;
        w->count++;
    }

    qsort(w->entries, w->count, sizeof *w->entries, cmp_offset);
    if ((st = check_tiling(w)) != CDZ_STATUS_OK) goto done;
    for (size_t i = 0; i < w->count; i++) w->by_name[i] = &w->entries[i];
    qsort(w->by_name, w->count, sizeof *w->by_name, cmp_name);
done:
    json_decref(root);
    return st;
}

/* ------------------------------------------------------------------------------------
 * open
 * ---------------------------------------------------------------------------------- */
cdz_status cdz_weights_open_buffer(const void *data, size_t size, const char *label,
                                   cdz_weights **out) {
    if (!label) label = "<buffer>";
    if (!out) return werr(label, CDZ_STATUS_INVALID_ARGUMENT, "open_buffer: out is NULL");
    *out = NULL;
    if (!data && size > 0)
        return werr(label, CDZ_STATUS_INVALID_ARGUMENT, "open_buffer: data is NULL");
    cdz_weights *w;
    CDZ_TRY(weights_new(label, &w));
    w->base = data;
    w->size = size;
    cdz_status st = parse(w);
    if (st != CDZ_STATUS_OK) {
        cdz_weights_close(w);
        return st;
    }
    *out = w;
    return CDZ_STATUS_OK;
}

cdz_status cdz_weights_open(const char *path, cdz_weights **out) {
    if (!out) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "weights_open: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "weights_open: empty path");
    /* O_NONBLOCK: a FIFO must not hang the loader (it is refused below as not a file). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return werr(path, CDZ_STATUS_IO, "cannot open: %s", strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int err = errno;
        close(fd);
        return werr(path, CDZ_STATUS_IO, "cannot stat: %s", strerror(err));
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return werr(path, CDZ_STATUS_INVALID_ARGUMENT, "is a directory, not a safetensors file");
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return werr(path, CDZ_STATUS_INVALID_ARGUMENT,
                    "is not a regular file (device, FIFO or socket)");
    }
    if (sb.st_size < 8) {
        close(fd);
        if (sb.st_size == 0)
            return werr(path, CDZ_STATUS_INVALID_ARGUMENT,
                        "the file is empty (a safetensors file starts with an 8-byte header "
                        "length)");
        return werr(path, CDZ_STATUS_INVALID_ARGUMENT,
                    "the file has %lld bytes, fewer than the 8-byte header length that starts "
                    "a safetensors file", (long long)sb.st_size);
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return werr(path, CDZ_STATUS_TOO_LARGE, "the file (%lld bytes) does not fit the address "
                    "space", (long long)sb.st_size);
    }
    size_t size = (size_t)sb.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_err = errno;
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED)
        return werr(path, map_err == ENOMEM ? CDZ_STATUS_OUT_OF_MEMORY : CDZ_STATUS_IO,
                    "cannot mmap %zu bytes: %s", size, strerror(map_err));
    cdz_weights *w;
    cdz_status st = weights_new(path, &w);
    if (st != CDZ_STATUS_OK) {
        munmap(map, size);
        return st;
    }
    w->map = map;
    w->map_size = size;
    w->base = map;
    w->size = size;
    st = parse(w);
    if (st != CDZ_STATUS_OK) {
        cdz_weights_close(w);
        return st;
    }
    *out = w;
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------------------------
 * queries
 * ---------------------------------------------------------------------------------- */
size_t cdz_weights_count(const cdz_weights *w) { return w ? w->count : 0; }

const cdz_weight_entry *cdz_weights_at(const cdz_weights *w, size_t i) {
    return w && i < w->count ? &w->entries[i] : NULL;
}

/* Index in by_name of the first name >= `name` (binary search). */
static size_t lower_bound(const cdz_weights *w, const char *name) {
    size_t lo = 0, hi = w->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(w->by_name[mid]->name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const cdz_weight_entry *cdz_weights_find(const cdz_weights *w, const char *name) {
    if (!w || !name) return NULL;
    size_t i = lower_bound(w, name);
    return i < w->count && strcmp(w->by_name[i]->name, name) == 0 ? w->by_name[i] : NULL;
}

const char *cdz_weights_metadata_json(const cdz_weights *w) {
    return w && w->metadata_json ? w->metadata_json : "{}";
}

const char *cdz_weights_metadata_get(const cdz_weights *w, const char *key) {
    if (!w || !w->metadata || !key) return NULL;
    return json_string_value(json_object_get(w->metadata, key)); /* NULL when absent */
}

static size_t common_prefix(const char *a, const char *b) {
    size_t n = 0;
    while (a[n] && a[n] == b[n]) n++;
    return n;
}

static cdz_status missing_tensor(const cdz_weights *w, const char *name) {
    char qn[QBUF_SIZE], qs[QBUF_SIZE];
    /* The sorted neighbour sharing the longest prefix is the likeliest typo or renaming. */
    const char *hint = NULL;
    size_t i = lower_bound(w, name);
    size_t best = 0;
    for (size_t j = i > 0 ? i - 1 : 0; j < w->count && j <= i; j++) {
        size_t p = common_prefix(w->by_name[j]->name, name);
        if (p > best) best = p, hint = w->by_name[j]->name;
    }
    if (hint)
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "tensor '%s' not found (the file has %zu tensors; nearest name: '%s')",
                    Q(name, qn), w->count, Q(hint, qs));
    return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT, "tensor '%s' not found (the file has %zu "
                "tensors)", Q(name, qn), w->count);
}

cdz_status cdz_weights_expect(const cdz_weights *w, const char *name, cdz_dtype dtype,
                              int32_t ndim, const int64_t *shape, const cdz_weight_entry **out) {
    char qn[QBUF_SIZE];
    if (out) *out = NULL;
    if (!w || !name)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "weights_expect: %s is NULL",
                             !w ? "weights" : "name");
    if ((unsigned)dtype >= CDZ_DTYPE_COUNT_ || ndim < 0 || ndim > CDZ_MAX_DIMS ||
        (ndim > 0 && !shape))
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT,
                    "weights_expect('%s'): bad expectation (dtype %d, ndim %d, shape %s)",
                    Q(name, qn),
                    (int)dtype, (int)ndim, shape ? "given" : "NULL");
    const cdz_weight_entry *e = cdz_weights_find(w, name);
    if (!e) return missing_tensor(w, name);
    bool ok = e->dtype == dtype && e->ndim == ndim;
    for (int32_t i = 0; ok && i < ndim; i++) ok = shape[i] < 0 || shape[i] == e->shape[i];
    if (!ok) {
        char got[160], want[160];
        return werr(w->label, CDZ_STATUS_INVALID_ARGUMENT, "tensor '%s' is %s%s, expected %s%s",
                    Q(name, qn), cdz_dtype_name(e->dtype),
                    shape_str(e->ndim, e->shape, got, sizeof got), cdz_dtype_name(dtype),
                    shape_str(ndim, shape, want, sizeof want));
    }
    if (out) *out = e;
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------------------------
 * upload
 * ---------------------------------------------------------------------------------- */
#ifdef CDZ_HAVE_CUDA
/* Synchronous host-to-device copy on the arena's device (load time only). */
static cdz_status copy_to_cuda(int device, void *dst, const void *src, size_t bytes) {
    int prev = 0;
    CDZ_CUDA_CHECK(cudaGetDevice(&prev));
    if (prev != device) CDZ_CUDA_CHECK(cudaSetDevice(device));
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
    if (prev != device) cudaSetDevice(prev);
    CDZ_CUDA_CHECK(e);
    return CDZ_STATUS_OK;
}
#endif

cdz_status cdz_weights_upload(const cdz_weights *w, const char *name, cdz_arena *arena,
                              cdz_tensor *out) {
    if (!w || !name || !arena || !out)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "weights_upload: %s is NULL",
                             !w ? "weights" : !name ? "name" : !arena ? "arena" : "out");
    const cdz_weight_entry *e = cdz_weights_find(w, name);
    if (!e) return missing_tensor(w, name);
    cdz_device dev = cdz_arena_device(arena);
    void *ptr = NULL;
    char qn[QBUF_SIZE];
    if (e->nbytes > 0) {
        cdz_status st = cdz_arena_alloc(arena, (size_t)e->nbytes, CDZ_ARENA_ALIGN, e->name, &ptr);
        if (st != CDZ_STATUS_OK)
            return cdz_error_prefix("weights '%s': uploading tensor '%s'", w->label, Q(name, qn));
        if (dev.kind == CDZ_DEVICE_CPU) {
            memcpy(ptr, e->data, (size_t)e->nbytes); /* file data may be unaligned: copy */
        } else {
#ifdef CDZ_HAVE_CUDA
            st = copy_to_cuda(dev.index, ptr, e->data, (size_t)e->nbytes);
            if (st != CDZ_STATUS_OK) {
                cdz_arena_free(arena, ptr);
                return cdz_error_prefix("weights '%s': uploading tensor '%s'", w->label,
                                        Q(name, qn));
            }
#else
            cdz_arena_free(arena, ptr);
            return werr(w->label, CDZ_STATUS_UNSUPPORTED,
                        "uploading tensor '%s': this build has no CUDA", Q(name, qn));
#endif
        }
    }
    cdz_status st = cdz_tensor_init(out, ptr, e->dtype, dev, e->ndim, e->shape);
    if (st != CDZ_STATUS_OK) {
        cdz_arena_free(arena, ptr);
        return cdz_error_prefix("weights '%s': uploading tensor '%s'", w->label, Q(name, qn));
    }
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------------------------
 * print (cadenza inspect)
 * ---------------------------------------------------------------------------------- */

/* Display columns of a string as print_escaped writes it (UTF-8 code points; escapes). */
static size_t display_width(const char *s) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) n += 4;      /* \xNN */
        else if ((*p & 0xC0) != 0x80) n += 1;     /* not a continuation byte */
    }
    return n;
}

/* Names and values come from the file: never let them move the cursor or ring the bell. */
static void print_escaped(FILE *f, const char *s, size_t width) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    for (size_t n = display_width(s); n < width; n++) fputc(' ', f);
}

static const char *human_bytes(uint64_t b, char *buf, size_t size) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024.0 && u < 6) v /= 1024.0, u++;
    if (u == 0)
        snprintf(buf, size, "%llu B", (unsigned long long)b);
    else
        snprintf(buf, size, "%.1f %s", v, units[u]);
    return buf;
}

/* 1234567 -> "1,234,567". */
static const char *grouped(uint64_t v, char *buf, size_t size) {
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < size; i++) {
        if (i > 0 && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

/* A metadata value that is itself JSON (an object or array, e.g. "config") is shown
 * indented; anything else as an escaped line. */
static void print_meta_value(FILE *f, const char *value) {
    const char *p = value;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    json_t *parsed = NULL;
    if (*p == '{' || *p == '[') {
        json_error_t jerr;
        parsed = json_loads(value, 0, &jerr);
    }
    char *pretty = parsed ? json_dumps(parsed, JSON_INDENT(2)) : NULL;
    if (pretty) {
        fputc('\n', f);
        const char *line = pretty;
        while (*line) {
            const char *nl = strchr(line, '\n');
            size_t len = nl ? (size_t)(nl - line) : strlen(line);
            fprintf(f, "      %.*s\n", (int)len, line);
            line += len + (nl ? 1 : 0);
        }
    } else {
        fputc(' ', f);
        print_escaped(f, value, 0);
        fputc('\n', f);
    }
    free(pretty);
    if (parsed) json_decref(parsed);
}

cdz_status cdz_weights_print(const cdz_weights *w, void *file) {
    FILE *f = file;
    if (!w || !f)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "weights_print: %s is NULL",
                             !w ? "weights" : "file");
    char hb[64], sb[160], nb[64];

    /* column widths */
    size_t wname = strlen("name"), wdtype = strlen("dtype"), wshape = strlen("shape");
    for (size_t i = 0; i < w->count; i++) {
        const cdz_weight_entry *e = &w->entries[i];
        size_t n = display_width(e->name);
        if (n > wname) wname = n;
        size_t d = strlen(cdz_dtype_name(e->dtype));
        if (d > wdtype) wdtype = d;
        size_t s = strlen(shape_str(e->ndim, e->shape, sb, sizeof sb));
        if (s > wshape) wshape = s;
    }
    if (wname > 96) wname = 96; /* a very long name breaks alignment rather than every row */

    fprintf(f, "weights '");
    print_escaped(f, w->label, 0);
    fprintf(f, "': %zu tensors, %s\n\n", w->count, human_bytes(w->size, hb, sizeof hb));
    if (w->count) {
        fprintf(f, "  %-*s  %-*s  %-*s  %14s\n", (int)wname, "name", (int)wdtype, "dtype",
                (int)wshape, "shape", "bytes");
        for (size_t i = 0; i < w->count; i++) {
            const cdz_weight_entry *e = &w->entries[i];
            fprintf(f, "  ");
            print_escaped(f, e->name, wname);
            fprintf(f, "  %-*s  %-*s  %14s\n", (int)wdtype, cdz_dtype_name(e->dtype),
                    (int)wshape, shape_str(e->ndim, e->shape, sb, sizeof sb),
                    grouped(e->nbytes, nb, sizeof nb));
        }
        fputc('\n', f);
    }

    size_t nmeta = w->metadata ? json_object_size(w->metadata) : 0;
    fprintf(f, "metadata:%s\n", nmeta ? "" : " (none)");
    if (nmeta) {
        const char *key;
        json_t *value;
        json_object_foreach(w->metadata, key, value) {
            fprintf(f, "  ");
            print_escaped(f, key, 0);
            fputc(':', f);
            print_meta_value(f, json_string_value(value));
        }
    }
    fputc('\n', f);

    uint64_t params = 0, bytes_by[CDZ_DTYPE_COUNT_] = {0};
    size_t count_by[CDZ_DTYPE_COUNT_] = {0};
    for (size_t i = 0; i < w->count; i++) {
        const cdz_weight_entry *e = &w->entries[i];
        params += e->nbytes / cdz_dtype_size(e->dtype); /* numel; cannot overflow: <= file size */
        bytes_by[e->dtype] += e->nbytes;
        count_by[e->dtype]++;
    }
    fprintf(f, "totals:\n");
    fprintf(f, "  tensors     %zu\n", w->count);
    fprintf(f, "  parameters  %s\n", grouped(params, nb, sizeof nb));
    for (int d = 0; d < CDZ_DTYPE_COUNT_; d++)
        if (count_by[d])
            fprintf(f, "  %-10s  %s in %zu tensor%s\n", cdz_dtype_name((cdz_dtype)d),
                    human_bytes(bytes_by[d], hb, sizeof hb), count_by[d],
                    count_by[d] == 1 ? "" : "s");
    fprintf(f, "  file        %s bytes (%s): 8 + %s of JSON header + ",
            grouped(w->size, nb, sizeof nb), human_bytes(w->size, hb, sizeof hb),
            grouped(w->header_len, sb, sizeof sb));
    fprintf(f, "%s of data\n", grouped(w->data_size, nb, sizeof nb));
    if (ferror(f)) return werr(w->label, CDZ_STATUS_IO, "writing the listing failed");
    return CDZ_STATUS_OK;
}
