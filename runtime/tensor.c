/*
 * tensor.c: dtypes and tensor descriptors. A cdz_tensor never owns memory; it says what a
 * buffer holds (dtype, shape, element strides, device) so nothing downstream guesses.
 */
#include <stdio.h>
#include <string.h>

#include "cadenza.h"

static const struct {
    const char *name;
    size_t size;
} dtype_info[CDZ_DTYPE_COUNT_] = {
    [CDZ_DTYPE_F32] = {"f32", 4}, [CDZ_DTYPE_F16] = {"f16", 2}, [CDZ_DTYPE_BF16] = {"bf16", 2},
    [CDZ_DTYPE_F64] = {"f64", 8}, [CDZ_DTYPE_I64] = {"i64", 8}, [CDZ_DTYPE_I32] = {"i32", 4},
    [CDZ_DTYPE_I16] = {"i16", 2}, [CDZ_DTYPE_I8] = {"i8", 1},   [CDZ_DTYPE_U8] = {"u8", 1},
    [CDZ_DTYPE_BOOL] = {"bool", 1},
};

size_t cdz_dtype_size(cdz_dtype dtype) {
    return (unsigned)dtype < CDZ_DTYPE_COUNT_ ? dtype_info[dtype].size : 0;
}

bool cdz_dtype_is_float(cdz_dtype dtype) {
    return dtype == CDZ_DTYPE_F32 || dtype == CDZ_DTYPE_F16 || dtype == CDZ_DTYPE_BF16;
}

const char *cdz_dtype_name(cdz_dtype dtype) {
    return (unsigned)dtype < CDZ_DTYPE_COUNT_ ? dtype_info[dtype].name : "invalid-dtype";
}

cdz_status cdz_tensor_init(cdz_tensor *t, void *data, cdz_dtype dtype, cdz_device device,
                           int32_t ndim, const int64_t *shape) {
    if (!t) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "tensor: NULL descriptor");
    memset(t, 0, sizeof *t);
    if ((unsigned)dtype >= CDZ_DTYPE_COUNT_)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "tensor: invalid dtype %d", (int)dtype);
    if (ndim < 0 || ndim > CDZ_MAX_DIMS)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "tensor: %d dims (at most %d)", ndim,
                             CDZ_MAX_DIMS);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "tensor: dim %d has size %lld",
                                 i, (long long)shape[i]);
    }
    t->data = data;
    t->dtype = dtype;
    t->device = device;
    t->ndim = ndim;
    int64_t stride = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->stride[i] = stride;
        /* keep strides meaningful for huge tensors; overflow is caught by numel users */
        if (shape[i] > 0 && stride > INT64_MAX / shape[i])
            return cdz_error_set(CDZ_STATUS_TOO_LARGE, "tensor: element count overflows int64");
        stride *= shape[i] > 0 ? shape[i] : 1;
    }
    return CDZ_STATUS_OK;
}

cdz_tensor cdz_tensor_make(void *data, cdz_dtype dtype, cdz_device device, int32_t ndim, ...) {
    cdz_tensor t;
    memset(&t, 0, sizeof t);
    if (ndim < 0 || ndim > 4) return t;
    int64_t shape[4] = {0, 0, 0, 0};
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim; i++) shape[i] = va_arg(ap, int64_t);
    va_end(ap);
    if (cdz_tensor_init(&t, data, dtype, device, ndim, shape) != CDZ_STATUS_OK) memset(&t, 0, sizeof t);
    return t;
}

int64_t cdz_tensor_numel(const cdz_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t cdz_tensor_nbytes(const cdz_tensor *t) {
    return (size_t)cdz_tensor_numel(t) * cdz_dtype_size(t->dtype);
}

bool cdz_tensor_is_contiguous(const cdz_tensor *t) {
    if (cdz_tensor_numel(t) == 0) return true; /* an empty tensor has no layout to violate */
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != expect) return false;
        expect *= t->shape[i];
    }
    return true;
}

bool cdz_tensor_same_shape(const cdz_tensor *a, const cdz_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *cdz_tensor_str(const cdz_tensor *t, char *buf, size_t size) {
    size_t n = 0;
    if (size == 0) return buf;
    n += (size_t)snprintf(buf, size, "%s[", cdz_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (n < size) {
        char dev[32];
        snprintf(buf + n, size - n, "]@%s", cdz_device_str(t->device, dev, sizeof dev));
    }
    return buf;
}
