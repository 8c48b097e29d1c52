/*
 * gemm.c: entry checks of cdz_linear / cdz_matmul and their CPU references.
 */
#include "gemm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h" // defines: CDZ_REQUIRE, CDZ_TRY, cdz_check_tensor
#include "ctx.h"   // defines: cdz_ctx_is_cuda
#include "half.h"  // defines: cdz_f16_to_f32, cdz_f32_to_f16, cdz_bf16_to_f32, cdz_f32_to_bf16

/* ------------------------------------------------------------------ shared checks */

/* Product of dims times the element size fits in int64 (descriptors can be hand-made). */
static bool size_fits(const cdz_tensor *t) {
    int64_t n = (int64_t)cdz_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 0) return true;
        if (n > INT64_MAX / t->shape[i]) return false;
        n *= t->shape[i];
    }
    return true;
}

/* Byte ranges of two tensors intersect (both non-empty). */
static bool overlaps(const cdz_tensor *a, const cdz_tensor *b) {
    size_t na = cdz_tensor_nbytes(a), nb = cdz_tensor_nbytes(b);
    if (!na || !nb) return false;
    uintptr_t a0 = (uintptr_t)a->data, b0 = (uintptr_t)b->data;
    return a0 < b0 + nb && b0 < a0 + na;
}

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

static cdz_status check_operand(const cdz_ctx *ctx, const char *op, const char *name,
                                const cdz_tensor *t, int32_t ndim) {
    CDZ_TRY(check_tensor_any(ctx, op, name, t, ndim));
    char buf[160];
    CDZ_REQUIRE(cdz_dtype_is_float(t->dtype), "%s: %s must be f32, f16 or bf16 (got %s)", op, name,
                cdz_tensor_str(t, buf, sizeof buf));
    CDZ_REQUIRE(size_fits(t), "%s: %s is too large (%s)", op, name,
                cdz_tensor_str(t, buf, sizeof buf));
    return CDZ_STATUS_OK;
}

/* The output dtype is f32 or the operands'; a bias f32 or the operands'. */
static cdz_status check_dtypes(const char *op, cdz_dtype in, const char *out_name, cdz_dtype out,
                               const cdz_tensor *bias) {
    CDZ_REQUIRE(out == CDZ_DTYPE_F32 || out == in,
                "%s: %s must be f32 or %s like the operands (got %s)", op, out_name,
                cdz_dtype_name(in), cdz_dtype_name(out));
    if (bias)
        CDZ_REQUIRE(bias->dtype == CDZ_DTYPE_F32 || bias->dtype == in,
                    "%s: bias must be f32 or %s like the operands (got %s)", op,
                    cdz_dtype_name(in), cdz_dtype_name(bias->dtype));
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------ entries */

cdz_status cdz_linear(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                      const cdz_tensor *bias, cdz_tensor *y) {
    const char *op = "linear";
    CDZ_REQUIRE(ctx, "%s: ctx is NULL", op);
    CDZ_TRY(check_operand(ctx, op, "x", x, -1));
    CDZ_TRY(check_operand(ctx, op, "weight", w, 2));
    CDZ_TRY(check_operand(ctx, op, "y", y, -1));
    if (bias) CDZ_TRY(check_operand(ctx, op, "bias", bias, 1));
    CDZ_REQUIRE(x->ndim >= 1, "%s: x must have at least 1 dim (got a scalar)", op);
    CDZ_REQUIRE(w->dtype == x->dtype, "%s: weight is %s but x is %s (operands share one dtype)",
                op, cdz_dtype_name(w->dtype), cdz_dtype_name(x->dtype));
    CDZ_TRY(check_dtypes(op, x->dtype, "y", y->dtype, bias));

    int64_t k = x->shape[x->ndim - 1], n = w->shape[0];
    CDZ_REQUIRE(w->shape[1] == k, "%s: weight [%lld, %lld] has %lld input features, x has %lld",
                op, (long long)w->shape[0], (long long)w->shape[1], (long long)w->shape[1],
                (long long)k);
    if (bias)
        CDZ_REQUIRE(bias->shape[0] == n, "%s: bias has %lld elements, weight has %lld outputs", op,
                    (long long)bias->shape[0], (long long)n);
    CDZ_REQUIRE(y->ndim == x->ndim, "%s: y must have %d dims like x (got %d)", op, x->ndim,
                y->ndim);
    for (int i = 0; i < x->ndim - 1; i++)
        CDZ_REQUIRE(y->shape[i] == x->shape[i], "%s: y dim %d is %lld, x dim %d is %lld", op, i,
                    (long long)y->shape[i], i, (long long)x->shape[i]);
    CDZ_REQUIRE(y->shape[y->ndim - 1] == n, "%s: y has %lld output features, weight has %lld", op,
                (long long)y->shape[y->ndim - 1], (long long)n);
    CDZ_REQUIRE(!overlaps(y, x) && !overlaps(y, w) && !(bias && overlaps(y, bias)),
                "%s: y overlaps an input", op);

    if (cdz_ctx_is_cuda(ctx)) {
#ifdef CDZ_HAVE_CUDA
        return cdz_linear_cuda(ctx, x, w, bias, y);
#else
        return cdz_error_set(CDZ_STATUS_UNSUPPORTED, "%s: this build has no CUDA support", op);
#endif
    }
    return cdz_linear_cpu(ctx, x, w, bias, y);
}

cdz_status cdz_matmul(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *c,
                      bool trans_a, bool trans_b, float alpha, float beta) {
    const char *op = "matmul";
    CDZ_REQUIRE(ctx, "%s: ctx is NULL", op);
    CDZ_TRY(check_operand(ctx, op, "a", a, -1));
    CDZ_TRY(check_operand(ctx, op, "b", b, -1));
    CDZ_TRY(check_operand(ctx, op, "c", c, -1));
    CDZ_REQUIRE(a->ndim >= 2 && b->ndim >= 2 && c->ndim >= 2,
                "%s: a, b and c need at least 2 dims (got %d, %d, %d)", op, a->ndim, b->ndim,
                c->ndim);
    CDZ_REQUIRE(b->dtype == a->dtype, "%s: b is %s but a is %s (operands share one dtype)", op,
                cdz_dtype_name(b->dtype), cdz_dtype_name(a->dtype));
    CDZ_TRY(check_dtypes(op, a->dtype, "c", c->dtype, NULL));
    CDZ_REQUIRE(isfinite(alpha) && isfinite(beta), "%s: alpha (%g) and beta (%g) must be finite",
                op, (double)alpha, (double)beta);

    int64_t m = a->shape[a->ndim - (trans_a ? 1 : 2)], ka = a->shape[a->ndim - (trans_a ? 2 : 1)];
    int64_t kb = b->shape[b->ndim - (trans_b ? 1 : 2)], n = b->shape[b->ndim - (trans_b ? 2 : 1)];
    CDZ_REQUIRE(ka == kb, "%s: op(a) is [%lld, %lld] and op(b) is [%lld, %lld]: inner dims differ "
                "(trans_a=%d, trans_b=%d)", op, (long long)m, (long long)ka, (long long)kb,
                (long long)n, trans_a, trans_b);
    CDZ_REQUIRE(c->shape[c->ndim - 2] == m && c->shape[c->ndim - 1] == n,
                "%s: c ends in [%lld, %lld], expected [%lld, %lld]", op,
                (long long)c->shape[c->ndim - 2], (long long)c->shape[c->ndim - 1], (long long)m,
                (long long)n);
    int nb = c->ndim - 2;
    CDZ_REQUIRE(a->ndim - 2 <= nb && b->ndim - 2 <= nb,
                "%s: c has %d batch dims, fewer than a (%d) or b (%d)", op, nb, a->ndim - 2,
                b->ndim - 2);
    for (int i = 0; i < nb; i++) {
        int ia = i - (nb - (a->ndim - 2)), ib = i - (nb - (b->ndim - 2));
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        int64_t want = da == 1 ? db : da;
        CDZ_REQUIRE((da == 1 || db == 1 || da == db) && c->shape[i] == want,
                    "%s: batch dim %d: a has %lld, b has %lld, c has %lld (a and b broadcast, c "
                    "holds the broadcast size)", op, i, (long long)da, (long long)db,
                    (long long)c->shape[i]);
    }
    CDZ_REQUIRE(!overlaps(c, a) && !overlaps(c, b), "%s: c overlaps a or b", op);

    if (cdz_ctx_is_cuda(ctx)) {
#ifdef CDZ_HAVE_CUDA
        return cdz_matmul_cuda(ctx, a, b, c, trans_a, trans_b, alpha, beta);
#else
        return cdz_error_set(CDZ_STATUS_UNSUPPORTED, "%s: this build has no CUDA support", op);
#endif
    }
    return cdz_matmul_cpu(ctx, a, b, c, trans_a, trans_b, alpha, beta);
}

/* ------------------------------------------------------------------ CPU reference */

static inline float load_f(const void *p, cdz_dtype dt, int64_t i) {
    switch (dt) {
    case CDZ_DTYPE_F16: return cdz_f16_to_f32(((const uint16_t *)p)[i]);
    case CDZ_DTYPE_BF16: return cdz_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

static inline void store_f(void *p, cdz_dtype dt, int64_t i, double v) {
    switch (dt) {
    case CDZ_DTYPE_F16: ((uint16_t *)p)[i] = cdz_f32_to_f16((float)v); break;
    case CDZ_DTYPE_BF16: ((uint16_t *)p)[i] = cdz_f32_to_bf16((float)v); break;
    default: ((float *)p)[i] = (float)v; break;
    }
}

/* One row-major product: c[m, n] = alpha * op(a) op(b) + beta * c (+ bias[n]).
 * bt holds op(b) transposed, [n][k] floats, so the inner loop is contiguous for both;
 * arow is a k-float scratch row for op(a). */
static void cpu_gemm_one(const void *a, cdz_dtype adt, bool ta, const float *bt, void *c,
                         cdz_dtype cdt, const void *bias, cdz_dtype bdt, int64_t m, int64_t n,
                         int64_t k, double alpha, double beta, float *arow) {
    for (int64_t i = 0; i < m; i++) {
        for (int64_t kk = 0; kk < k; kk++)
            arow[kk] = load_f(a, adt, ta ? kk * m + i : i * k + kk);
        for (int64_t j = 0; j < n; j++) {
            const float *bj = bt + j * k;
            double acc = 0.0;
            for (int64_t kk = 0; kk < k; kk++) acc += (double)arow[kk] * (double)bj[kk];
            double v = alpha * acc;
            if (beta != 0.0) v += beta * (double)load_f(c, cdt, i * n + j);
            if (bias) v += (double)load_f(bias, bdt, j);
            store_f(c, cdt, i * n + j, v);
        }
    }
}

/* bt[j][kk] = op(b)[kk][j] for b stored [k, n] (tb false) or [n, k] (tb true). */
static void pack_bt(const void *b, cdz_dtype dt, bool tb, int64_t k, int64_t n, float *bt) {
    for (int64_t j = 0; j < n; j++)
        for (int64_t kk = 0; kk < k; kk++)
            bt[j * k + kk] = load_f(b, dt, tb ? j * k + kk : kk * n + j);
}

static cdz_status cpu_scratch(const char *op, int64_t k, int64_t n, float **arow, float **bt) {
    /* sizes were checked to fit in int64 bytes by the entry */
    *arow = malloc((size_t)(k > 0 ? k : 1) * sizeof(float));
    *bt = malloc((size_t)(n * k > 0 ? n * k : 1) * sizeof(float));
    if (!*arow || !*bt) {
        free(*arow);
        free(*bt);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "%s: no host memory for %lld x %lld floats",
                             op, (long long)n, (long long)k);
    }
    return CDZ_STATUS_OK;
}

cdz_status cdz_linear_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                          const cdz_tensor *bias, cdz_tensor *y) {
    (void)ctx;
    int64_t k = x->shape[x->ndim - 1], n = w->shape[0];
    int64_t m = n > 0 ? cdz_tensor_numel(y) / n : 0;
    if (m == 0 || n == 0) return CDZ_STATUS_OK;
    float *arow, *bt;
    CDZ_TRY(cpu_scratch("linear", k, n, &arow, &bt));
    pack_bt(w->data, w->dtype, true, k, n, bt);
    cpu_gemm_one(x->data, x->dtype, false, bt, y->data, y->dtype, bias ? bias->data : NULL,
                 bias ? bias->dtype : CDZ_DTYPE_F32, m, n, k, 1.0, 0.0, arow);
    free(arow);
    free(bt);
    return CDZ_STATUS_OK;
}

cdz_status cdz_matmul_cpu(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b, cdz_tensor *c,
                          bool trans_a, bool trans_b, float alpha, float beta) {
    (void)ctx;
    int64_t m = c->shape[c->ndim - 2], n = c->shape[c->ndim - 1];
    int64_t k = a->shape[a->ndim - (trans_a ? 2 : 1)];
    int nb = c->ndim - 2;
    /* matrix strides of a and b over c's batch dims (0 where they broadcast) */
    int64_t sa[CDZ_MAX_DIMS] = {0}, sb[CDZ_MAX_DIMS] = {0};
    int64_t batch = 1, ra = 1, rb = 1;
    for (int i = nb - 1; i >= 0; i--) {
        int ia = i - (nb - (a->ndim - 2)), ib = i - (nb - (b->ndim - 2));
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        sa[i] = da == 1 ? 0 : ra;
        sb[i] = db == 1 ? 0 : rb;
        ra *= da;
        rb *= db;
        batch *= c->shape[i];
    }
    if (batch == 0 || m == 0 || n == 0) return CDZ_STATUS_OK;
    size_t ea = cdz_dtype_size(a->dtype), ec = cdz_dtype_size(c->dtype);
    float *arow, *bt;
    CDZ_TRY(cpu_scratch("matmul", k, n, &arow, &bt));
    int64_t packed = -1; /* b matrix index currently in bt (broadcast b is packed once) */
    for (int64_t bi = 0; bi < batch; bi++) {
        int64_t rem = bi, ma = 0, mb = 0;
        for (int i = nb - 1; i >= 0; i--) {
            int64_t coord = rem % c->shape[i];
            rem /= c->shape[i];
            ma += coord * sa[i];
            mb += coord * sb[i];
        }
        if (mb != packed) {
            pack_bt((const uint8_t *)b->data + (size_t)(mb * k * n) * ea, b->dtype, trans_b, k, n,
                    bt);
            packed = mb;
        }
        cpu_gemm_one((const uint8_t *)a->data + (size_t)(ma * m * k) * ea, a->dtype, trans_a, bt,
                     (uint8_t *)c->data + (size_t)(bi * m * n) * ec, c->dtype, NULL,
                     CDZ_DTYPE_F32, m, n, k, alpha, beta, arow);
    }
    free(arow);
    free(bt);
    return CDZ_STATUS_OK;
}
