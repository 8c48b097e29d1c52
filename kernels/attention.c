/*
 * attention.c: cdz_attention entry (validation of strided views, dispatch) and the CPU
 * reference: one query row at a time, scores in double, stable softmax, weighted sum.
 */
#include <math.h>
#include <string.h>

#include "attention.h"
#include "check.h"
#include "ctx.h"
#include "half.h"

/* A [B, H, rows, cols] view: float dtype, 4 dims, last dim unit-stride, other strides >= 0,
 * on ctx's device, largest element offset representable in bytes. cdz_check_tensor would
 * demand contiguity, which these views deliberately lack. */
static cdz_status check_view(const cdz_ctx *ctx, const char *name, const cdz_tensor *t) {
    char got[160];
    if (!t) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "attention: %s is NULL", name);
    if ((unsigned)t->dtype >= CDZ_DTYPE_COUNT_)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "attention: %s has an invalid dtype",
                             name);
    cdz_tensor_str(t, got, sizeof got);
    if (t->dtype != CDZ_DTYPE_F32 && t->dtype != CDZ_DTYPE_F16 && t->dtype != CDZ_DTYPE_BF16)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                             "attention: %s must be f32, f16 or bf16 (got %s)", name, got);
    if (t->ndim != 4)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                             "attention: %s must have 4 dims [B, H, L, D] (got %s)", name, got);
    int64_t max_off = 0;
    for (int i = 0; i < 4; i++) {
        if (t->shape[i] < 0)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "attention: %s has a negative dim (%s)",
                                 name, got);
        if (t->shape[i] <= 1) continue; /* stride of a size-0/1 dim is never used */
        if (i == 3 && t->stride[3] != 1)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                                 "attention: %s must have stride 1 in its last dim (got %lld, %s)",
                                 name, (long long)t->stride[3], got);
        if (t->stride[i] < 0)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                                 "attention: %s has a negative stride %lld in dim %d (%s)", name,
                                 (long long)t->stride[i], i, got);
        if (t->stride[i] > 0 && t->shape[i] - 1 > (INT64_MAX / 8 - max_off) / t->stride[i])
            return cdz_error_set(CDZ_STATUS_TOO_LARGE,
                                 "attention: %s spans more than 2^60 elements (%s)", name, got);
        max_off += (t->shape[i] - 1) * t->stride[i];
    }
    if (t->device.kind != ctx->device.kind ||
        (t->device.kind == CDZ_DEVICE_CUDA && t->device.index != ctx->device.index)) {
        char dev[32];
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                             "attention: %s is on another device (%s, op runs on %s)", name, got,
                             cdz_device_str(ctx->device, dev, sizeof dev));
    }
    if (!t->data && cdz_tensor_numel(t) > 0)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "attention: %s has no data (%s)", name,
                             got);
    return CDZ_STATUS_OK;
}

/* Sufficient condition for out's elements to be distinct: ordered by stride, each dim's
 * stride exceeds the largest offset reachable with the smaller dims. */
static bool view_is_non_overlapping(const cdz_tensor *t) {
    int64_t st[4], sh[4];
    int n = 0;
    for (int i = 0; i < 4; i++)
        if (t->shape[i] > 1) {
            st[n] = i == 3 ? 1 : t->stride[i];
            sh[n] = t->shape[i];
            n++;
        }
    for (int i = 1; i < n; i++) /* insertion sort by stride */
        for (int j = i; j > 0 && st[j] < st[j - 1]; j--) {
            int64_t a = st[j], b = sh[j];
            st[j] = st[j - 1], sh[j] = sh[j - 1];
            st[j - 1] = a, sh[j - 1] = b;
        }
    int64_t reach = 0; /* largest offset reachable so far (check_view bounded it) */
    for (int i = 0; i < n; i++) {
        if (st[i] <= reach) return false;
        reach += (sh[i] - 1) * st[i];
    }
    return true;
}

cdz_status cdz_attention(cdz_ctx *ctx, const cdz_tensor *q, const cdz_tensor *k,
                         const cdz_tensor *v, cdz_tensor *out, float scale, bool causal) {
    CDZ_REQUIRE(ctx, "attention: ctx is NULL");
    CDZ_TRY(check_view(ctx, "q", q));
    CDZ_TRY(check_view(ctx, "k", k));
    CDZ_TRY(check_view(ctx, "v", v));
    CDZ_TRY(check_view(ctx, "out", out));
    CDZ_REQUIRE(k->dtype == q->dtype && v->dtype == q->dtype && out->dtype == q->dtype,
                "attention: q, k, v and out must share one dtype (got %s, %s, %s, %s)",
                cdz_dtype_name(q->dtype), cdz_dtype_name(k->dtype), cdz_dtype_name(v->dtype),
                cdz_dtype_name(out->dtype));
    const int64_t B = q->shape[0], H = q->shape[1], L = q->shape[2], D = q->shape[3];
    const int64_t S = k->shape[2], Dv = v->shape[3];
    CDZ_REQUIRE(D >= 1 && D <= CDZ_ATTENTION_MAX_HEAD_DIM,
                "attention: head dim D = %lld of q must be in [1, %d]", (long long)D,
                CDZ_ATTENTION_MAX_HEAD_DIM);
    CDZ_REQUIRE(Dv >= 1 && Dv <= CDZ_ATTENTION_MAX_HEAD_DIM,
                "attention: head dim Dv = %lld of v must be in [1, %d]", (long long)Dv,
                CDZ_ATTENTION_MAX_HEAD_DIM);
    CDZ_REQUIRE(k->shape[0] == B && k->shape[1] == H && k->shape[3] == D,
                "attention: k is [%lld, %lld, %lld, %lld], expected [B=%lld, H=%lld, S, D=%lld] "
                "from q", (long long)k->shape[0], (long long)k->shape[1], (long long)k->shape[2],
                (long long)k->shape[3], (long long)B, (long long)H, (long long)D);
    CDZ_REQUIRE(v->shape[0] == B && v->shape[1] == H && v->shape[2] == S,
                "attention: v is [%lld, %lld, %lld, %lld], expected [B=%lld, H=%lld, S=%lld, Dv] "
                "from q and k", (long long)v->shape[0], (long long)v->shape[1],
                (long long)v->shape[2], (long long)v->shape[3], (long long)B, (long long)H,
                (long long)S);
    CDZ_REQUIRE(out->shape[0] == B && out->shape[1] == H && out->shape[2] == L &&
                    out->shape[3] == Dv,
                "attention: out is [%lld, %lld, %lld, %lld], expected [B=%lld, H=%lld, L=%lld, "
                "Dv=%lld]", (long long)out->shape[0], (long long)out->shape[1],
                (long long)out->shape[2], (long long)out->shape[3], (long long)B, (long long)H,
                (long long)L, (long long)Dv);
    CDZ_REQUIRE(view_is_non_overlapping(out),
                "attention: out's strides [%lld, %lld, %lld, %lld] make elements overlap",
                (long long)out->stride[0], (long long)out->stride[1], (long long)out->stride[2],
                (long long)out->stride[3]);
    CDZ_REQUIRE(isfinite(scale), "attention: scale must be finite (got %g)", (double)scale);
    CDZ_REQUIRE(L <= INT32_MAX && S <= INT32_MAX,
                "attention: L = %lld and S = %lld must be below 2^31", (long long)L, (long long)S);
    if (B == 0 || H == 0 || L == 0) return CDZ_STATUS_OK; /* nothing to write */

    if (cdz_ctx_is_cuda(ctx)) {
#ifdef CDZ_HAVE_CUDA
        return cdz_attention_cuda(ctx, q, k, v, out, scale, causal);
#else
        return cdz_error_set(CDZ_STATUS_UNSUPPORTED, "attention: this build has no CUDA");
#endif
    }
    return cdz_attention_cpu(ctx, q, k, v, out, scale, causal);
}

/* ------------------------------------------------------------------ CPU reference */

static inline double load_elem(const void *base, cdz_dtype dt, int64_t off) {
    switch (dt) {
    case CDZ_DTYPE_F16: return cdz_f16_to_f32(((const uint16_t *)base)[off]);
    case CDZ_DTYPE_BF16: return cdz_bf16_to_f32(((const uint16_t *)base)[off]);
    default: return ((const float *)base)[off];
    }
}

static inline void store_elem(void *base, cdz_dtype dt, int64_t off, double x) {
    switch (dt) {
    case CDZ_DTYPE_F16: ((uint16_t *)base)[off] = cdz_f32_to_f16((float)x); break;
    case CDZ_DTYPE_BF16: ((uint16_t *)base)[off] = cdz_f32_to_bf16((float)x); break;
    default: ((float *)base)[off] = (float)x; break;
    }
}

/* A size-1 dim may carry any stride; its index is always 0, so the product vanishes. */
static inline int64_t offset_of(const cdz_tensor *t, int64_t b, int64_t h, int64_t i) {
    return b * t->stride[0] + h * t->stride[1] + i * t->stride[2];
}

cdz_status cdz_attention_cpu(cdz_ctx *ctx, const cdz_tensor *q, const cdz_tensor *k,
                             const cdz_tensor *v, cdz_tensor *out, float scale, bool causal) {
    const int64_t B = q->shape[0], H = q->shape[1], L = q->shape[2], D = q->shape[3];
    const int64_t S = k->shape[2], Dv = v->shape[3];
    const cdz_dtype dt = q->dtype;
    void *ws = NULL;
    CDZ_TRY(cdz_ctx_workspace(ctx, (size_t)(S + D + Dv) * sizeof(double), "attention", &ws));
    double *score = (double *)ws, *qrow = score + S, *acc = qrow + D;

    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < L; i++) {
                const int64_t qo = offset_of(q, b, h, i), oo = offset_of(out, b, h, i);
                for (int64_t d = 0; d < D; d++) qrow[d] = load_elem(q->data, dt, qo + d);
                const int64_t nkeys = causal ? (i + 1 < S ? i + 1 : S) : S;
                double m = -INFINITY;
                for (int64_t j = 0; j < nkeys; j++) {
                    const int64_t ko = offset_of(k, b, h, j);
                    double dot = 0.0;
                    for (int64_t d = 0; d < D; d++) dot += qrow[d] * load_elem(k->data, dt, ko + d);
                    score[j] = (double)scale * dot;
                    if (score[j] > m) m = score[j];
                }
                for (int64_t e = 0; e < Dv; e++) acc[e] = 0.0;
                double sum = 0.0;
                for (int64_t j = 0; j < nkeys; j++) {
                    const double p = exp(score[j] - m);
                    const int64_t vo = offset_of(v, b, h, j);
                    sum += p;
                    for (int64_t e = 0; e < Dv; e++) acc[e] += p * load_elem(v->data, dt, vo + e);
                }
                /* nkeys == 0 only when S == 0: an empty weighted sum is 0 */
                const double inv = nkeys > 0 ? 1.0 / sum : 0.0;
                for (int64_t e = 0; e < Dv; e++) store_elem(out->data, dt, oo + e, acc[e] * inv);
            }
    return CDZ_STATUS_OK;
}
