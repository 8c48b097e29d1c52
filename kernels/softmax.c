/*
 * softmax.c: entry checks of cdz_softmax and its CPU reference.
 */
#include "softmax.h"

#include <math.h>

#include "check.h" // defines: CDZ_REQUIRE, CDZ_TRY, cdz_check_tensor
#include "ctx.h"   // defines: cdz_ctx_is_cuda
#include "half.h"  // defines: cdz_f16_to_f32, cdz_f32_to_f16, cdz_bf16_to_f32, cdz_f32_to_bf16

/* cdz_check_tensor, except that the strides of an empty tensor are not looked at: it has
 * no elements, hence no layout (the runtime's contiguity test refuses e.g. a [3, 0] built
 * by cdz_tensor_init, whose stride 1 for dim 0 is not 0). */
static cdz_status check_tensor_any(const cdz_ctx *ctx, const char *op, const char *name,
                                   const cdz_tensor *t, int32_t ndim) {
    if (t && t->ndim > 0 && t->ndim <= CDZ_MAX_DIMS) {
        bool empty = false;
        for (int i = 0; i < t->ndim; i++) {
            CDZ_REQUIRE(t->shape[i] >= 0, "%s: %s has a negative dim", op, name);
            empty = empty || t->shape[i] == 0;
        }
        if (empty) {
            cdz_tensor flat = *t;
            flat.ndim = 1;
            flat.shape[0] = 0;
            flat.stride[0] = 1;
            CDZ_TRY(cdz_check_tensor(ctx, op, name, &flat, CDZ_DTYPE_COUNT_, -1));
            CDZ_REQUIRE(ndim < 0 || t->ndim == ndim, "%s: %s must have %d dims (got %d)", op, name,
                        ndim, t->ndim);
            return CDZ_STATUS_OK;
        }
    }
    return cdz_check_tensor(ctx, op, name, t, CDZ_DTYPE_COUNT_, ndim);
}

cdz_status cdz_softmax(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, float scale) {
    const char *op = "softmax";
    char buf[160];
    CDZ_REQUIRE(ctx, "%s: ctx is NULL", op);
    CDZ_TRY(check_tensor_any(ctx, op, "x", x, -1));
    CDZ_TRY(check_tensor_any(ctx, op, "y", y, -1));
    CDZ_REQUIRE(cdz_dtype_is_float(x->dtype), "%s: x must be f32, f16 or bf16 (got %s)", op,
                cdz_tensor_str(x, buf, sizeof buf));
    CDZ_REQUIRE(cdz_dtype_is_float(y->dtype), "%s: y must be f32, f16 or bf16 (got %s)", op,
                cdz_tensor_str(y, buf, sizeof buf));
    CDZ_REQUIRE(x->ndim >= 1, "%s: x must have at least 1 dim (got a scalar)", op);
    CDZ_REQUIRE(cdz_tensor_same_shape(x, y), "%s: y must have x's shape %s", op,
                cdz_tensor_str(x, buf, sizeof buf));
    CDZ_REQUIRE(isfinite(scale), "%s: scale must be finite (got %g)", op, (double)scale);
    /* the element count must fit in int64 (descriptors can be hand-made) */
    int64_t n = 1;
    for (int i = 0; i < x->ndim; i++) {
        if (x->shape[i] == 0) { n = 0; break; }
        CDZ_REQUIRE(n <= INT64_MAX / 4 / x->shape[i], "%s: x is too large (%s)", op,
                    cdz_tensor_str(x, buf, sizeof buf));
        n *= x->shape[i];
    }
    if (n > 0) {
        uintptr_t x0 = (uintptr_t)x->data, y0 = (uintptr_t)y->data;
        size_t nx = cdz_tensor_nbytes(x), ny = cdz_tensor_nbytes(y);
        bool same = x0 == y0 && x->dtype == y->dtype;
        CDZ_REQUIRE(same || !(x0 < y0 + ny && y0 < x0 + nx),
                    "%s: y overlaps x (only exact in-place with one dtype is allowed)", op);
    }

    if (cdz_ctx_is_cuda(ctx)) {
#ifdef CDZ_HAVE_CUDA
        return cdz_softmax_cuda(ctx, x, y, scale);
#else
        return cdz_error_set(CDZ_STATUS_UNSUPPORTED, "%s: this build has no CUDA support", op);
#endif
    }
    return cdz_softmax_cpu(ctx, x, y, scale);
}

static inline double load_d(const void *p, cdz_dtype dt, int64_t i) {
    switch (dt) {
    case CDZ_DTYPE_F16: return cdz_f16_to_f32(((const uint16_t *)p)[i]);
    case CDZ_DTYPE_BF16: return cdz_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

static inline void store_d(void *p, cdz_dtype dt, int64_t i, double v) {
    switch (dt) {
    case CDZ_DTYPE_F16: ((uint16_t *)p)[i] = cdz_f32_to_f16((float)v); break;
    case CDZ_DTYPE_BF16: ((uint16_t *)p)[i] = cdz_f32_to_bf16((float)v); break;
    default: ((float *)p)[i] = (float)v; break;
    }
}

/* Reference in double: three passes per row (max, sum, write); each element is read
 * before it is written, so in place works. */
cdz_status cdz_softmax_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, float scale) {
    (void)ctx;
    int64_t len = x->shape[x->ndim - 1];
    int64_t rows = len > 0 ? cdz_tensor_numel(x) / len : 0;
    double s = scale;
    for (int64_t r = 0; r < rows; r++) {
        int64_t base = r * len;
        double m = -INFINITY;
        for (int64_t j = 0; j < len; j++) {
            double v = s * load_d(x->data, x->dtype, base + j);
            if (v > m) m = v; /* NaN never wins, as fmaxf: it still poisons the sum */
        }
        double sum = 0.0;
        for (int64_t j = 0; j < len; j++) sum += exp(s * load_d(x->data, x->dtype, base + j) - m);
        for (int64_t j = 0; j < len; j++)
            store_d(y->data, y->dtype, base + j,
                    exp(s * load_d(x->data, x->dtype, base + j) - m) / sum);
    }
    return CDZ_STATUS_OK;
}
