/*
 * reduce.c: entries (validation, dispatch) and the CPU reference of reduce.h.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "check.h"
#include "ctx.h"
#include "reduce.h"

/* ---------------------------------------------------------------- validation */

static cdz_status check_output(const char *op, const char *name, const cdz_tensor *x,
                               const cdz_tensor *y, int32_t dim) {
    char sx[160], sy[160];
    cdz_tensor_str(x, sx, sizeof sx);
    cdz_tensor_str(y, sy, sizeof sy);
    if (dim == CDZ_REDUCE_ALL) {
        CDZ_REQUIRE(cdz_tensor_numel(y) == 1,
                    "%s: %s is %s but a reduction over every element of x %s has 1 element",
                    op, name, sy, sx);
        return CDZ_STATUS_OK;
    }
    int d = dim < 0 ? dim + x->ndim : dim;
    bool keep = y->ndim == x->ndim, drop = y->ndim == x->ndim - 1;
    for (int i = 0; i < x->ndim; i++) {
        if (keep && y->shape[i] != (i == d ? 1 : x->shape[i])) keep = false;
        if (drop && i != d && y->shape[i < d ? i : i - 1] != x->shape[i]) drop = false;
    }
    CDZ_REQUIRE(keep || drop,
                "%s: %s is %s but reducing dim %d of x %s needs x's shape with that dim set "
                "to 1 (keepdim) or removed",
                op, name, sy, (int)dim, sx);
    return CDZ_STATUS_OK;
}

static cdz_status check_disjoint(const char *op, const cdz_tensor *a, const char *an,
                                 const cdz_tensor *b, const char *bn) {
    size_t na = cdz_tensor_nbytes(a), nb = cdz_tensor_nbytes(b);
    uintptr_t a0 = (uintptr_t)a->data, b0 = (uintptr_t)b->data;
    CDZ_REQUIRE(na == 0 || nb == 0 || a0 + na <= b0 || b0 + nb <= a0,
                "%s: %s and %s overlap in memory", op, an, bn);
    return CDZ_STATUS_OK;
}

static cdz_status check_reduce(cdz_ctx *ctx, const char *op, const cdz_tensor *x,
                               const cdz_tensor *y, const char *yname, int32_t dim) {
    CDZ_REQUIRE(ctx, "%s: ctx is NULL", op);
    CDZ_TRY(cdz_check_tensor(ctx, op, "x", x, CDZ_DTYPE_F32, -1));
    CDZ_TRY(cdz_check_tensor(ctx, op, yname, y, CDZ_DTYPE_F32, -1));
    char sx[160];
    cdz_tensor_str(x, sx, sizeof sx);
    int64_t n = 1;
    for (int i = 0; i < x->ndim; i++) {
        CDZ_REQUIRE(x->shape[i] == 0 || n <= (INT64_MAX / 8) / x->shape[i],
                    "%s: x %s has too many elements", op, sx);
        n *= x->shape[i];
    }
    if (dim != CDZ_REDUCE_ALL)
        CDZ_REQUIRE(x->ndim >= 1 && dim >= -x->ndim && dim < x->ndim,
                    "%s: dim %d is out of range for x %s (use CDZ_REDUCE_ALL for every element)",
                    op, (int)dim, sx);
    CDZ_TRY(check_output(op, yname, x, y, dim));
    CDZ_TRY(check_disjoint(op, x, "x", y, yname));
    return CDZ_STATUS_OK;
}

/* ---------------------------------------------------------------- CPU reference */

typedef enum reduce_kind { KIND_SUM, KIND_MEAN, KIND_STD, KIND_MEAN_STD } reduce_kind;

/* x as [outer, n, inner]. */
static void geometry(const cdz_tensor *x, int32_t dim, int64_t *outer, int64_t *n,
                     int64_t *inner) {
    if (dim == CDZ_REDUCE_ALL) {
        *outer = 1;
        *n = cdz_tensor_numel(x);
        *inner = 1;
        return;
    }
    int d = dim < 0 ? dim + x->ndim : dim;
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < d; i++) *outer *= x->shape[i];
    for (int i = d + 1; i < x->ndim; i++) *inner *= x->shape[i];
    *n = x->shape[d];
}

static cdz_status reduce_cpu(const cdz_tensor *x, float *out0, float *out1, int32_t dim,
                             reduce_kind kind, bool unbiased) {
    int64_t outer, n, inner;
    geometry(x, dim, &outer, &n, &inner);
    const float *p = x->data;
    double corr = unbiased ? 1.0 : 0.0;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            const float *q = p + o * n * inner + i;
            double sum = 0;
            for (int64_t k = 0; k < n; k++) sum += q[k * inner];
            double mean = sum / (double)n; /* NaN for n == 0, as torch */
            int64_t at = o * inner + i;
            if (kind == KIND_SUM) { out0[at] = (float)sum; continue; }
            if (kind == KIND_MEAN) { out0[at] = (float)mean; continue; }
            /* corrected two-pass: the second term removes the rounding error of `mean` */
            double s1 = 0, s2 = 0;
            for (int64_t k = 0; k < n; k++) {
                double dv = q[k * inner] - mean;
                s1 += dv;
                s2 += dv * dv;
            }
            double m2 = n > 0 ? s2 - s1 * s1 / (double)n : 0.0;
            if (m2 < 0) m2 = 0;
            double div = (double)n - corr;
            float sd = div > 0 ? (float)sqrt(m2 / div) : NAN;
            if (kind == KIND_STD) {
                out0[at] = sd;
            } else {
                out0[at] = (float)mean;
                out1[at] = sd;
            }
        }
    }
    return CDZ_STATUS_OK;
}

cdz_status cdz_sum_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim) {
    return reduce_cpu(x, y->data, NULL, dim, KIND_SUM, false);
}
cdz_status cdz_mean_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim) {
    return reduce_cpu(x, y->data, NULL, dim, KIND_MEAN, false);
}
cdz_status cdz_std_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim,
                       bool unbiased) {
    return reduce_cpu(x, y->data, NULL, dim, KIND_STD, unbiased);
}
cdz_status cdz_mean_std_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *mean,
                            cdz_tensor *std, int32_t dim, bool unbiased) {
    return reduce_cpu(x, mean->data, std->data, dim, KIND_MEAN_STD, unbiased);
}

/* ---------------------------------------------------------------- entries */

#ifdef CDZ_HAVE_CUDA
#define DISPATCH(ctx, name, ...)                                              \
    do {                                                                      \
        if (cdz_ctx_is_cuda(ctx)) return name##_cuda(ctx, __VA_ARGS__);       \
        return name##_cpu(ctx, __VA_ARGS__);                                  \
    } while (0)
#else
#define DISPATCH(ctx, name, ...)                                              \
    do {                                                                      \
        if (cdz_ctx_is_cuda(ctx))                                             \
            return cdz_error_set(CDZ_STATUS_UNSUPPORTED,                      \
                                 #name ": this build has no CUDA support");   \
        return name##_cpu(ctx, __VA_ARGS__);                                  \
    } while (0)
#endif

cdz_status cdz_sum(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim) {
    CDZ_TRY(check_reduce(ctx, "sum", x, y, "y", dim));
    DISPATCH(ctx, cdz_sum, x, y, dim);
}

cdz_status cdz_mean(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim) {
    CDZ_TRY(check_reduce(ctx, "mean", x, y, "y", dim));
    DISPATCH(ctx, cdz_mean, x, y, dim);
}

cdz_status cdz_std(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim, bool unbiased) {
    CDZ_TRY(check_reduce(ctx, "std", x, y, "y", dim));
    DISPATCH(ctx, cdz_std, x, y, dim, unbiased);
}

cdz_status cdz_mean_std(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *mean, cdz_tensor *std,
                        int32_t dim, bool unbiased) {
    CDZ_TRY(check_reduce(ctx, "mean_std", x, mean, "mean", dim));
    CDZ_TRY(check_reduce(ctx, "mean_std", x, std, "std", dim));
    CDZ_TRY(check_disjoint("mean_std", mean, "mean", std, "std"));
    DISPATCH(ctx, cdz_mean_std, x, mean, std, dim, unbiased);
}
