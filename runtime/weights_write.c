/*
 * weights_write.c: the safetensors writer (cdz_weights_write; docs/weights-format.md).
 *
 * The file is what runtime/weights.c accepts, by construction: an 8-byte little-endian
 * header length N, N bytes of compact JSON padded with spaces so the data section starts on
 * an 8-byte boundary, then every tensor back to back in the order given (so they tile the
 * data section exactly). Everything is validated before the first byte is written; the
 * bytes go to a temporary file in the destination's folder that is renamed into place at
 * the end, so a reader never maps a half-written file and a failure leaves nothing behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cadenza.h"
#include "check.h"

#define WW_NAME_MAX 1024 /* the reader's limit on a tensor name */

/* safetensors' spelling of each cdz_dtype, indexed by the enum */
static const char *const ww_dtype_names[CDZ_DTYPE_COUNT_] = {
    [CDZ_DTYPE_F32] = "F32", [CDZ_DTYPE_F16] = "F16", [CDZ_DTYPE_BF16] = "BF16",
    [CDZ_DTYPE_F64] = "F64", [CDZ_DTYPE_I64] = "I64", [CDZ_DTYPE_I32] = "I32",
    [CDZ_DTYPE_I16] = "I16", [CDZ_DTYPE_I8] = "I8",   [CDZ_DTYPE_U8] = "U8",
    [CDZ_DTYPE_BOOL] = "BOOL",
};

#define WW_ERR(...) cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, __VA_ARGS__)

/* Checks one entry; *bytes gets its size. The reader's rules: the product of the non-zero
 * dimensions, times the dtype size, fits in 63 bits (strides are computed from it). */
static cdz_status check_entry(const char *path, size_t i, const cdz_weight_entry *e,
                              uint64_t *bytes) {
    if (!e->name || !e->name[0])
        return WW_ERR("weights_write '%s': entry %zu has no name", path, i);
    const size_t len = strnlen(e->name, WW_NAME_MAX + 1);
    if (len > WW_NAME_MAX)
        return WW_ERR("weights_write '%s': entry %zu: the name is longer than %d bytes", path, i,
                      WW_NAME_MAX);
    if (!strcmp(e->name, "__metadata__"))
        return WW_ERR("weights_write '%s': entry %zu is named '__metadata__', which safetensors "
                      "reserves for the metadata", path, i);
    json_t *probe = json_string(e->name); /* NULL: not valid UTF-8 */
    if (!probe)
        return WW_ERR("weights_write '%s': entry %zu: the name is not valid UTF-8", path, i);
    json_decref(probe);
    if ((int)e->dtype < 0 || e->dtype >= CDZ_DTYPE_COUNT_)
        return WW_ERR("weights_write '%s': tensor '%.96s' has dtype %d, not a cdz_dtype", path,
                      e->name, (int)e->dtype);
    if (e->ndim < 0 || e->ndim > CDZ_MAX_DIMS)
        return WW_ERR("weights_write '%s': tensor '%.96s' has %d dimensions (0..%d allowed)", path,
                      e->name, (int)e->ndim, CDZ_MAX_DIMS);
    const uint64_t esize = cdz_dtype_size(e->dtype);
    uint64_t nz = 1; /* product of the non-zero dims */
    bool empty = false;
    for (int32_t d = 0; d < e->ndim; d++) {
        const int64_t v = e->shape[d];
        if (v < 0)
            return WW_ERR("weights_write '%s': tensor '%.96s': dimension %d is %lld (must be >= 0)",
                          path, e->name, (int)d, (long long)v);
        if (v == 0) {
            empty = true;
            continue;
        }
        if ((uint64_t)v > ((uint64_t)INT64_MAX / esize) / nz)
            return WW_ERR("weights_write '%s': tensor '%.96s': the byte size of its shape does not "
                          "fit in 63 bits", path, e->name);
        nz *= (uint64_t)v;
    }
    *bytes = empty ? 0 : nz * esize;
    if (e->nbytes != *bytes)
        return WW_ERR("weights_write '%s': tensor '%.96s': %s with this shape is %llu bytes, the "
                      "entry says nbytes = %llu", path, e->name, cdz_dtype_name(e->dtype),
                      (unsigned long long)*bytes, (unsigned long long)e->nbytes);
    if (*bytes && !e->data)
        return WW_ERR("weights_write '%s': tensor '%.96s' has %llu bytes but no data", path,
                      e->name, (unsigned long long)*bytes);
    return CDZ_STATUS_OK;
}

/* The header object (metadata first, then the tensors in file order) as compact text. */
static cdz_status build_header(const char *path, const cdz_weight_entry *entries, size_t n,
                               const char *metadata_json, char **out) {
    *out = NULL;
    json_t *root = json_object();
    if (!root) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "weights_write: no host memory");
    cdz_status st = CDZ_STATUS_OK;
    if (metadata_json) {
        json_error_t jerr;
        json_t *meta = json_loads(metadata_json, JSON_REJECT_DUPLICATES, &jerr);
        if (!meta) {
            st = WW_ERR("weights_write '%s': metadata is not valid JSON (column %d: %s)", path,
                        jerr.column, jerr.text);
        } else if (!json_is_object(meta)) {
            st = WW_ERR("weights_write '%s': metadata must be a JSON object of strings", path);
        } else {
            const char *k;
            json_t *v;
            json_object_foreach(meta, k, v) {
                if (!json_is_string(v)) {
                    st = WW_ERR("weights_write '%s': metadata value '%.96s' is not a string "
                                "(safetensors metadata maps strings to strings; store "
                                "structured values as JSON text)", path, k);
                    break;
                }
            }
        }
        if (st == CDZ_STATUS_OK && json_object_size(meta) > 0)
            json_object_set(root, "__metadata__", meta);
        json_decref(meta);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < n && st == CDZ_STATUS_OK; i++) {
        const cdz_weight_entry *e = &entries[i];
        uint64_t bytes = 0;
        st = check_entry(path, i, e, &bytes);
        if (st != CDZ_STATUS_OK) break;
        if (json_object_get(root, e->name)) {
            st = WW_ERR("weights_write '%s': tensor name '%.96s' is given twice", path, e->name);
            break;
        }
        json_t *shape = json_array();
        for (int32_t d = 0; shape && d < e->ndim; d++)
            json_array_append_new(shape, json_integer(e->shape[d]));
        json_t *ent = json_pack("{s:s, s:o, s:[I,I]}", "dtype", ww_dtype_names[e->dtype], "shape",
                                shape, "data_offsets", (json_int_t)offset,
                                (json_int_t)(offset + bytes));
        if (!ent || json_object_set_new(root, e->name, ent) != 0) {
            st = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "weights_write: no host memory");
            break;
        }
        offset += bytes;
    }
    if (st == CDZ_STATUS_OK) {
        *out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!*out) st = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "weights_write: no host memory");
        else if (strlen(*out) + 8 > CDZ_SAFETENSORS_HEADER_MAX) {
            free(*out);
            *out = NULL;
            st = cdz_error_set(CDZ_STATUS_TOO_LARGE, "weights_write '%s': the header would exceed "
                               "%u bytes", path, CDZ_SAFETENSORS_HEADER_MAX);
        }
    }
    json_decref(root);
    return st;
}

cdz_status cdz_weights_write(const char *path, const cdz_weight_entry *entries, size_t n,
                             const char *metadata_json) {
    if (!path || !path[0]) return WW_ERR("weights_write: no path given");
    if (n && !entries) return WW_ERR("weights_write '%s': %zu entries but entries is NULL", path, n);
    if (n > CDZ_SAFETENSORS_MAX_TENSORS)
        return cdz_error_set(CDZ_STATUS_TOO_LARGE, "weights_write '%s': %zu tensors (at most %d)",
                             path, n, CDZ_SAFETENSORS_MAX_TENSORS);
    char *header = NULL;
    CDZ_TRY(build_header(path, entries, n, metadata_json, &header));
    size_t hlen = strlen(header);
    const size_t padded = (hlen + 7) / 8 * 8; /* 8 + padded: the data starts 8-aligned */

    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= (int)sizeof tmp) {
        free(header);
        return WW_ERR("weights_write: path too long: '%.96s...'", path);
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        const int err = errno;
        free(header);
        return cdz_error_set(CDZ_STATUS_IO, "weights_write '%s': cannot create a file there: %s",
                             path, strerror(err));
    }
    fchmod(fd, 0644); /* mkstemp makes 0600; a weights file is meant to be shared */
    FILE *f = fdopen(fd, "wb");
    cdz_status st = CDZ_STATUS_OK;
    if (!f) {
        st = cdz_error_set(CDZ_STATUS_IO, "weights_write '%s': %s", path, strerror(errno));
        close(fd);
    } else {
        uint8_t len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
        bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
        for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
        for (size_t i = 0; ok && i < n; i++)
            if (entries[i].nbytes)
                ok = fwrite(entries[i].data, 1, (size_t)entries[i].nbytes, f) == entries[i].nbytes;
        ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
        const int err = errno;
        if (fclose(f) != 0 && ok) ok = false;
        if (!ok)
            st = cdz_error_set(CDZ_STATUS_IO, "weights_write '%s': writing failed: %s", path,
                               strerror(err ? err : errno));
    }
    if (st == CDZ_STATUS_OK && rename(tmp, path) != 0)
        st = cdz_error_set(CDZ_STATUS_IO, "weights_write: cannot rename '%s' to '%s': %s", tmp,
                           path, strerror(errno));
    if (st != CDZ_STATUS_OK) unlink(tmp);
    free(header);
    return st;
}
