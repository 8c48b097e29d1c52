/*
 * check.c: what the CDZ_*_CHECK macros call on failure, and the op-entry tensor check.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "ctx.h"

cdz_status cdz_check_fail(const char *lib, int code, const char *name, bool oom, const char *stmt,
                          const char *func, const char *file, int line) {
    int dev = -1;
#ifdef CDZ_HAVE_CUDA
    if (cudaGetDevice(&dev) != cudaSuccess) dev = -1;
#endif
    const char *base = strrchr(file, '/');
    return cdz_error_set(oom ? CDZ_STATUS_OUT_OF_MEMORY : CDZ_STATUS_DEVICE,
                         "%s error %s (%d) in `%s` at %s (%s:%d) on cuda:%d", lib,
                         name ? name : "?", code, stmt, func, base ? base + 1 : file, line, dev);
}

const char *cdz_cufft_result_name(int result) {
    static const char *const names[] = {
        "CUFFT_SUCCESS",        "CUFFT_INVALID_PLAN",   "CUFFT_ALLOC_FAILED",
        "CUFFT_INVALID_TYPE",   "CUFFT_INVALID_VALUE",  "CUFFT_INTERNAL_ERROR",
        "CUFFT_EXEC_FAILED",    "CUFFT_SETUP_FAILED",   "CUFFT_INVALID_SIZE",
        "CUFFT_UNALIGNED_DATA", "CUFFT_INCOMPLETE_PARAMETER_LIST", "CUFFT_INVALID_DEVICE",
        "CUFFT_PARSE_ERROR",    "CUFFT_NO_WORKSPACE",   "CUFFT_NOT_IMPLEMENTED",
        "CUFFT_LICENSE_ERROR",  "CUFFT_NOT_SUPPORTED",
    };
    if (result >= 0 && result < (int)(sizeof names / sizeof names[0])) return names[result];
    return "CUFFT_UNKNOWN_ERROR";
}

cdz_status cdz_check_tensor(const cdz_ctx *ctx, const char *op, const char *name,
                            const cdz_tensor *t, cdz_dtype dtype, int32_t ndim) {
    char got[160];
    if (!t) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s is NULL", op, name);
    cdz_tensor_str(t, got, sizeof got);
    if ((unsigned)t->dtype >= CDZ_DTYPE_COUNT_)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s has an invalid dtype", op, name);
    if (dtype != CDZ_DTYPE_COUNT_ && t->dtype != dtype)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s must be %s (got %s)", op, name,
                             cdz_dtype_name(dtype), got);
    if (t->ndim < 0 || t->ndim > CDZ_MAX_DIMS)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s has %d dims", op, name, t->ndim);
    if (ndim >= 0 && t->ndim != ndim)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s must have %d dims (got %s)", op,
                             name, ndim, got);
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s has a negative dim (%s)", op,
                                 name, got);
    if (!cdz_tensor_is_contiguous(t))
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s must be contiguous (got %s)", op,
                             name, got);
    if (t->device.kind != ctx->device.kind ||
        (t->device.kind == CDZ_DEVICE_CUDA && t->device.index != ctx->device.index)) {
        char dev[32];
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s is on another device (%s, op runs on %s)",
                             op, name, got, cdz_device_str(ctx->device, dev, sizeof dev));
    }
    if (!t->data && cdz_tensor_numel(t) > 0)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s has no data (%s)", op, name, got);
    return CDZ_STATUS_OK;
}

cdz_status cdz_check_tensor_size(const char *op, const char *name, const cdz_tensor *t) {
    int64_t n = 1, bytes;
    for (int32_t d = 0; d < t->ndim; d++)
        CDZ_REQUIRE(!__builtin_mul_overflow(n, t->shape[d], &n), "%s: %s has too many elements",
                    op, name);
    CDZ_REQUIRE(!__builtin_mul_overflow(n, (int64_t)cdz_dtype_size(t->dtype), &bytes),
                "%s: %s is too large", op, name);
    return CDZ_STATUS_OK;
}
