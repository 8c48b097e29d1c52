/*
 * elementwise.c: entries (validation, dispatch) and the CPU reference of elementwise.h.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "ctx.h"
#include "elementwise.h"
#include "half.h"

/* ---------------------------------------------------------------- shared helpers */

/* Contiguous float tensor on ctx's device with an element count that fits int64 bytes. */
static cdz_status check_float(const cdz_ctx *ctx, const char *op, const char *name,
                              const cdz_tensor *t) {
    CDZ_TRY(cdz_check_tensor(ctx, op, name, t, CDZ_DTYPE_COUNT_, -1));
    char buf[160];
    if (!cdz_dtype_is_float(t->dtype))
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s must be f32, f16 or bf16 (got %s)",
                             op, name, cdz_tensor_str(t, buf, sizeof buf));
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] > 0 && n > (INT64_MAX / 8) / t->shape[i])
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s has too many elements (%s)",
                                 op, name, cdz_tensor_str(t, buf, sizeof buf));
        n *= t->shape[i];
    }
    return CDZ_STATUS_OK;
}

static cdz_status check_same_dtype(const char *op, const char *name, const cdz_tensor *t,
                                   const char *ref_name, const cdz_tensor *ref) {
    char a[160], b[160];
    if (t->dtype != ref->dtype)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s is %s but %s is %s (one dtype per call)",
                             op, name, cdz_tensor_str(t, a, sizeof a), ref_name,
                             cdz_tensor_str(ref, b, sizeof b));
    return CDZ_STATUS_OK;
}

static cdz_status check_same_shape(const char *op, const char *name, const cdz_tensor *t,
                                   const char *ref_name, const cdz_tensor *ref) {
    char a[160], b[160];
    if (!cdz_tensor_same_shape(t, ref))
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s is %s but %s is %s (shapes must match)",
                             op, name, cdz_tensor_str(t, a, sizeof a), ref_name,
                             cdz_tensor_str(ref, b, sizeof b));
    return CDZ_STATUS_OK;
}

/* y may be `in` itself (same data, same shape, same element size); any other overlap of the
 * two byte ranges is refused because the kernels read and write in an unspecified order. */
static cdz_status check_alias(const char *op, const cdz_tensor *y, const char *name,
                              const cdz_tensor *in) {
    size_t ny = cdz_tensor_nbytes(y), ni = cdz_tensor_nbytes(in);
    if (ny == 0 || ni == 0) return CDZ_STATUS_OK;
    uintptr_t y0 = (uintptr_t)y->data, i0 = (uintptr_t)in->data;
    if (y0 + ny <= i0 || i0 + ni <= y0) return CDZ_STATUS_OK;
    if (y0 == i0 && cdz_tensor_same_shape(y, in) &&
        cdz_dtype_size(y->dtype) == cdz_dtype_size(in->dtype))
        return CDZ_STATUS_OK;
    return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                         "%s: y overlaps %s without being %s itself (in place needs the same "
                         "buffer and shape)", op, name, name);
}

static inline float ld(const void *p, cdz_dtype dt, int64_t i) {
    switch (dt) {
    case CDZ_DTYPE_F16: return cdz_f16_to_f32(((const uint16_t *)p)[i]);
    case CDZ_DTYPE_BF16: return cdz_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

static inline void st(void *p, cdz_dtype dt, int64_t i, float v) {
    switch (dt) {
    case CDZ_DTYPE_F16: ((uint16_t *)p)[i] = cdz_f32_to_f16(v); break;
    case CDZ_DTYPE_BF16: ((uint16_t *)p)[i] = cdz_f32_to_bf16(v); break;
    default: ((float *)p)[i] = v; break;
    }
}

/* ---------------------------------------------------------------- broadcasting */

void cdz_bcast_plan_make(const cdz_tensor *a, const cdz_tensor *b, const cdz_tensor *y,
                         cdz_bcast_plan *out) {
    int m = y->ndim, k = 0;
    memset(out, 0, sizeof *out);
    for (int d = 0; d < m; d++) {
        if (y->shape[d] == 1) continue; /* contributes nothing to any offset */
        int da = d - (m - a->ndim), db = d - (m - b->ndim);
        int64_t sa = (da >= 0 && a->shape[da] != 1) ? a->stride[da] : 0;
        int64_t sb = (db >= 0 && b->shape[db] != 1) ? b->stride[db] : 0;
        int64_t n = y->shape[d];
        if (k > 0 && out->sa[k - 1] == sa * n && out->sb[k - 1] == sb * n) {
            out->shape[k - 1] *= n; /* the previous dim steps exactly over this one */
            out->sa[k - 1] = sa;
            out->sb[k - 1] = sb;
        } else {
            out->shape[k] = n;
            out->sa[k] = sa;
            out->sb[k] = sb;
            k++;
        }
    }
    if (k == 0) {
        out->shape[0] = 1;
        k = 1;
    }
    out->ndim = k;
}

static cdz_status check_binary(cdz_ctx *ctx, const char *op, const cdz_tensor *a,
                               const cdz_tensor *b, cdz_tensor *y) {
    CDZ_TRY(check_float(ctx, op, "a", a));
    CDZ_TRY(check_float(ctx, op, "b", b));
    CDZ_TRY(check_float(ctx, op, "y", y));
    CDZ_TRY(check_same_dtype(op, "b", b, "a", a));
    CDZ_TRY(check_same_dtype(op, "y", y, "a", a));
    char sa[160], sb[160], sy[160];
    cdz_tensor_str(a, sa, sizeof sa);
    cdz_tensor_str(b, sb, sizeof sb);
    cdz_tensor_str(y, sy, sizeof sy);
    int m = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t shape[CDZ_MAX_DIMS];
    for (int d = 0; d < m; d++) { /* d counts from the last dim: -1 - d */
        int64_t na = d < a->ndim ? a->shape[a->ndim - 1 - d] : 1;
        int64_t nb = d < b->ndim ? b->shape[b->ndim - 1 - d] : 1;
        if (na != nb && na != 1 && nb != 1)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                                 "%s: a %s and b %s do not broadcast: dim %d is %lld in a and "
                                 "%lld in b (each must be 1 or equal)",
                                 op, sa, sb, -1 - d, (long long)na, (long long)nb);
        shape[m - 1 - d] = na == 1 ? nb : na;
    }
    bool match = y->ndim == m;
    for (int d = 0; match && d < m; d++) match = y->shape[d] == shape[d];
    if (!match) {
        char want[128];
        size_t len = 0;
        want[0] = 0;
        for (int d = 0; d < m && len < sizeof want; d++)
            len += (size_t)snprintf(want + len, sizeof want - len, d ? ",%lld" : "%lld",
                                    (long long)shape[d]);
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                             "%s: y is %s but a %s and b %s broadcast to [%s]", op, sy, sa, sb, want);
    }
    CDZ_TRY(check_alias(op, y, "a", a));
    CDZ_TRY(check_alias(op, y, "b", b));
    return CDZ_STATUS_OK;
}

/* ---------------------------------------------------------------- CPU reference */

typedef enum binop { BINOP_ADD, BINOP_SUB, BINOP_MUL } binop;

static cdz_status binary_cpu(const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y, binop op) {
    int64_t n = cdz_tensor_numel(y);
    if (n == 0) return CDZ_STATUS_OK;
    cdz_bcast_plan p;
    cdz_bcast_plan_make(a, b, y, &p);
    int64_t idx[CDZ_MAX_DIMS] = {0}, oa = 0, ob = 0;
    cdz_dtype dt = y->dtype;
    for (int64_t i = 0; i < n; i++) {
        float u = ld(a->data, dt, oa), v = ld(b->data, dt, ob);
        float r = op == BINOP_ADD ? u + v : op == BINOP_SUB ? u - v : u * v;
        st(y->data, dt, i, r);
        /* odometer over y's (collapsed) dims */
        for (int d = p.ndim - 1; d >= 0; d--) {
            oa += p.sa[d];
            ob += p.sb[d];
            if (++idx[d] < p.shape[d]) break;
            oa -= p.sa[d] * p.shape[d];
            ob -= p.sb[d] * p.shape[d];
            idx[d] = 0;
        }
    }
    return CDZ_STATUS_OK;
}

cdz_status cdz_add_cpu(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y) {
    return binary_cpu(a, b, y, BINOP_ADD);
}
cdz_status cdz_sub_cpu(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y) {
    return binary_cpu(a, b, y, BINOP_SUB);
}
cdz_status cdz_mul_cpu(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y) {
    return binary_cpu(a, b, y, BINOP_MUL);
}

cdz_status cdz_scale_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, float alpha,
                         float beta) {
    int64_t n = cdz_tensor_numel(x);
    for (int64_t i = 0; i < n; i++) {
        /* two roundings, like x * alpha + beta in torch (ISO C: no FMA contraction) */
        float t = alpha * ld(x->data, x->dtype, i);
        st(y->data, y->dtype, i, t + beta);
    }
    return CDZ_STATUS_OK;
}

/* channel_dim already normalised by the entry is not assumed: normalise again here. */
static void channel_geometry(const cdz_tensor *x, int32_t channel_dim, int64_t *channels,
                             int64_t *inner) {
    int d = channel_dim < 0 ? channel_dim + x->ndim : channel_dim;
    *channels = x->shape[d];
    *inner = 1;
    for (int i = d + 1; i < x->ndim; i++) *inner *= x->shape[i];
}

cdz_status cdz_residual_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *r,
                            const cdz_tensor *scale, cdz_tensor *y, int32_t channel_dim) {
    int64_t n = cdz_tensor_numel(x);
    if (n == 0) return CDZ_STATUS_OK;
    cdz_dtype dt = x->dtype;
    if (!scale) {
        for (int64_t i = 0; i < n; i++) st(y->data, dt, i, ld(x->data, dt, i) + ld(r->data, dt, i));
        return CDZ_STATUS_OK;
    }
    int64_t channels, inner;
    channel_geometry(x, channel_dim, &channels, &inner);
    for (int64_t i = 0; i < n; i++) {
        int64_t c = (i / inner) % channels;
        float t = ld(scale->data, dt, c) * ld(r->data, dt, i);
        st(y->data, dt, i, ld(x->data, dt, i) + t);
    }
    return CDZ_STATUS_OK;
}

cdz_status cdz_cast_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    int64_t n = cdz_tensor_numel(x);
    if (x->dtype == y->dtype) {
        if (n > 0 && x->data != y->data) memcpy(y->data, x->data, cdz_tensor_nbytes(x));
        return CDZ_STATUS_OK;
    }
    for (int64_t i = 0; i < n; i++) st(y->data, y->dtype, i, ld(x->data, x->dtype, i));
    return CDZ_STATUS_OK;
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

static cdz_status check_ctx(const cdz_ctx *ctx, const char *op) {
    if (!ctx) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: ctx is NULL", op);
    return CDZ_STATUS_OK;
}

cdz_status cdz_add(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y) {
    CDZ_TRY(check_ctx(ctx, "add"));
    CDZ_TRY(check_binary(ctx, "add", a, b, y));
    DISPATCH(ctx, cdz_add, a, b, y);
}

cdz_status cdz_sub(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y) {
    CDZ_TRY(check_ctx(ctx, "sub"));
    CDZ_TRY(check_binary(ctx, "sub", a, b, y));
    DISPATCH(ctx, cdz_sub, a, b, y);
}

cdz_status cdz_mul(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *y) {
    CDZ_TRY(check_ctx(ctx, "mul"));
    CDZ_TRY(check_binary(ctx, "mul", a, b, y));
    DISPATCH(ctx, cdz_mul, a, b, y);
}

cdz_status cdz_scale(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, float alpha, float beta) {
    const char *op = "scale";
    CDZ_TRY(check_ctx(ctx, op));
    CDZ_TRY(check_float(ctx, op, "x", x));
    CDZ_TRY(check_float(ctx, op, "y", y));
    CDZ_TRY(check_same_dtype(op, "y", y, "x", x));
    CDZ_TRY(check_same_shape(op, "y", y, "x", x));
    CDZ_TRY(check_alias(op, y, "x", x));
    DISPATCH(ctx, cdz_scale, x, y, alpha, beta);
}

cdz_status cdz_residual(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *r,
                        const cdz_tensor *scale, cdz_tensor *y, int32_t channel_dim) {
    const char *op = "residual";
    CDZ_TRY(check_ctx(ctx, op));
    CDZ_TRY(check_float(ctx, op, "x", x));
    CDZ_TRY(check_float(ctx, op, "r", r));
    CDZ_TRY(check_float(ctx, op, "y", y));
    CDZ_TRY(check_same_dtype(op, "r", r, "x", x));
    CDZ_TRY(check_same_dtype(op, "y", y, "x", x));
    CDZ_TRY(check_same_shape(op, "r", r, "x", x));
    CDZ_TRY(check_same_shape(op, "y", y, "x", x));
    CDZ_TRY(check_alias(op, y, "x", x));
    CDZ_TRY(check_alias(op, y, "r", r));
    if (scale) {
        char sx[160], ss[160];
        CDZ_TRY(check_float(ctx, op, "scale", scale));
        CDZ_TRY(check_same_dtype(op, "scale", scale, "x", x));
        cdz_tensor_str(x, sx, sizeof sx);
        cdz_tensor_str(scale, ss, sizeof ss);
        CDZ_REQUIRE(channel_dim >= -x->ndim && channel_dim < x->ndim,
                    "residual: channel_dim %d is out of range for x %s", (int)channel_dim, sx);
        int cd = channel_dim < 0 ? channel_dim + x->ndim : channel_dim;
        int64_t channels = x->shape[cd];
        bool ok = scale->ndim == 1 && scale->shape[0] == channels;
        if (!ok && scale->ndim == x->ndim) {
            ok = true;
            for (int i = 0; i < x->ndim; i++)
                ok = ok && scale->shape[i] == (i == cd ? channels : 1);
        }
        CDZ_REQUIRE(ok, "residual: scale %s must hold the %lld channels of x %s along dim %d "
                        "(shape [%lld], or every dim 1 except that one)",
                    ss, (long long)channels, sx, cd, (long long)channels);
        CDZ_TRY(check_alias(op, y, "scale", scale));
        /* check_alias accepts y == scale when shapes match; that would read modified scales */
        CDZ_REQUIRE(cdz_tensor_nbytes(y) == 0 || y->data != scale->data,
                    "residual: y must not be scale");
    }
    DISPATCH(ctx, cdz_residual, x, r, scale, y, channel_dim);
}

cdz_status cdz_cast(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    const char *op = "cast";
    CDZ_TRY(check_ctx(ctx, op));
    CDZ_TRY(check_float(ctx, op, "x", x));
    CDZ_TRY(check_float(ctx, op, "y", y));
    CDZ_TRY(check_same_shape(op, "y", y, "x", x));
    CDZ_TRY(check_alias(op, y, "x", x));
    DISPATCH(ctx, cdz_cast, x, y);
}
