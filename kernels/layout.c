/*
 * layout.c: entries (validation, dispatch), the copy/pad plans shared with layout.cu, and
 * the CPU reference of layout.h.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "ctx.h"
#include "half.h"
#include "layout.h"

/* ---------------------------------------------------------------- validation helpers */

/* Largest element offset of a view with strides >= 0 (the caller checked for overflow). */
static int64_t max_offset(const cdz_tensor *t) {
    int64_t m = 0;
    for (int i = 0; i < t->ndim; i++) m += t->stride[i] * (t->shape[i] - 1);
    return m;
}

/* A possibly strided input view: any dtype unless float_only, strides >= 0, sizes and
 * offsets that fit int64 byte arithmetic, on ctx's device. */
static cdz_status check_view(const cdz_ctx *ctx, const char *op, const char *name,
                             const cdz_tensor *t, bool float_only) {
    char s[160], dev[32];
    if (!t) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s is NULL", op, name);
    if ((unsigned)t->dtype >= CDZ_DTYPE_COUNT_)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s has an invalid dtype", op, name);
    if (t->ndim < 0 || t->ndim > CDZ_MAX_DIMS)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s has %d dims (at most %d)", op,
                             name, t->ndim, CDZ_MAX_DIMS);
    cdz_tensor_str(t, s, sizeof s);
    if (float_only && !cdz_dtype_is_float(t->dtype))
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s must be f32, f16 or bf16 (got %s)",
                             op, name, s);
    const int64_t lim = INT64_MAX / 16; /* byte offsets stay far from overflow */
    int64_t numel = 1, span = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s has a negative dim (%s)",
                                 op, name, s);
        if (t->stride[i] < 0)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                                 "%s: %s has a negative stride %lld on dim %d (%s)", op, name,
                                 (long long)t->stride[i], i, s);
        if (t->shape[i] > 0 && numel > lim / t->shape[i])
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s has too many elements (%s)",
                                 op, name, s);
        numel *= t->shape[i];
    }
    for (int i = 0; numel > 0 && i < t->ndim; i++) {
        if (t->shape[i] > 1 && t->stride[i] > (lim - span) / (t->shape[i] - 1))
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                                 "%s: %s's strides reach beyond int64 offsets (%s)", op, name, s);
        span += t->stride[i] * (t->shape[i] > 0 ? t->shape[i] - 1 : 0);
    }
    if (t->device.kind != ctx->device.kind ||
        (t->device.kind == CDZ_DEVICE_CUDA && t->device.index != ctx->device.index))
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s is on another device (%s, op runs on %s)",
                             op, name, s, cdz_device_str(ctx->device, dev, sizeof dev));
    if (!t->data && numel > 0)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %s has no data (%s)", op, name, s);
    return CDZ_STATUS_OK;
}

/* Contiguous output; element count bounded like check_view's. */
static cdz_status check_out(const cdz_ctx *ctx, const char *op, const cdz_tensor *y) {
    CDZ_TRY(cdz_check_tensor(ctx, op, "y", y, CDZ_DTYPE_COUNT_, -1));
    return check_view(ctx, op, "y", y, false);
}

static cdz_status check_dtype(const char *op, const cdz_tensor *y, const char *name,
                              const cdz_tensor *x) {
    char a[160], b[160];
    CDZ_REQUIRE(y->dtype == x->dtype, "%s: y is %s but %s is %s (same dtype required)", op,
                cdz_tensor_str(y, a, sizeof a), name, cdz_tensor_str(x, b, sizeof b));
    return CDZ_STATUS_OK;
}

/* y (contiguous) must not share a byte with x's span. */
static cdz_status check_no_overlap(const char *op, const cdz_tensor *y, const char *name,
                                   const cdz_tensor *x) {
    if (cdz_tensor_numel(y) == 0 || cdz_tensor_numel(x) == 0) return CDZ_STATUS_OK;
    uintptr_t y0 = (uintptr_t)y->data, y1 = y0 + cdz_tensor_nbytes(y);
    uintptr_t x0 = (uintptr_t)x->data;
    uintptr_t x1 = x0 + (uintptr_t)(max_offset(x) + 1) * cdz_dtype_size(x->dtype);
    CDZ_REQUIRE(y1 <= x0 || x1 <= y0, "%s: y overlaps %s in memory (not supported in place)", op,
                name);
    return CDZ_STATUS_OK;
}

static void shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t len = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (len < size) snprintf(buf + len, size - len, "]");
}

static cdz_status check_y_shape(const char *op, const cdz_tensor *y, int ndim,
                                const int64_t *want, const char *why) {
    bool ok = y->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = y->shape[i] == want[i];
    if (!ok) {
        char sy[160], sw[128];
        shape_str(ndim, want, sw, sizeof sw);
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: y is %s but %s gives %s", op,
                             cdz_tensor_str(y, sy, sizeof sy), why, sw);
    }
    return CDZ_STATUS_OK;
}

/* ---------------------------------------------------------------- copy plans */

void cdz_copy_plan_make(int32_t ndim, const int64_t *shape, const int64_t *src_stride,
                        const int64_t *dst_stride, size_t elem, cdz_copy_plan *out) {
    int k = 0;
    memset(out, 0, sizeof *out);
    out->elem = elem;
    out->numel = 1;
    for (int d = 0; d < ndim; d++) {
        int64_t n = shape[d];
        out->numel *= n;
        if (n == 1) continue;
        if (k > 0 && out->ss[k - 1] == src_stride[d] * n && out->ds[k - 1] == dst_stride[d] * n) {
            out->shape[k - 1] *= n; /* the outer dim steps exactly over this one */
            out->ss[k - 1] = src_stride[d];
            out->ds[k - 1] = dst_stride[d];
        } else {
            out->shape[k] = n;
            out->ss[k] = src_stride[d];
            out->ds[k] = dst_stride[d];
            k++;
        }
    }
    if (k == 0) {
        out->shape[0] = 1;
        k = 1;
    }
    out->ndim = k;
}

int cdz_permute_jobs(const cdz_tensor *x, cdz_tensor *y, const int32_t *perm, cdz_copy_job *job) {
    if (cdz_tensor_numel(y) == 0) return 0;
    int64_t ss[CDZ_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        int p = perm ? (perm[i] < 0 ? perm[i] + x->ndim : perm[i]) : i;
        ss[i] = x->stride[p];
    }
    job->src = x->data;
    job->dst = y->data;
    cdz_copy_plan_make(y->ndim, y->shape, ss, y->stride, cdz_dtype_size(x->dtype), &job->plan);
    return 1;
}

int cdz_slice_jobs(const cdz_tensor *x, cdz_tensor *y, int32_t dim, int64_t start, int64_t step,
                   cdz_copy_job *job) {
    if (cdz_tensor_numel(y) == 0) return 0;
    int d = dim < 0 ? dim + x->ndim : dim;
    if (start < 0) start += x->shape[d];
    int64_t ss[CDZ_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) ss[i] = x->stride[i] * (i == d ? step : 1);
    size_t elem = cdz_dtype_size(x->dtype);
    job->src = (const uint8_t *)x->data + (size_t)(start * x->stride[d]) * elem;
    job->dst = y->data;
    cdz_copy_plan_make(y->ndim, y->shape, ss, y->stride, elem, &job->plan);
    return 1;
}

int cdz_concat_job(const cdz_tensor *const *xs, int k, int32_t dim, cdz_tensor *y,
                   cdz_copy_job *job) {
    const cdz_tensor *x = xs[k];
    if (cdz_tensor_numel(x) == 0) return 0;
    int d = dim < 0 ? dim + y->ndim : dim;
    int64_t offset = 0;
    for (int j = 0; j < k; j++) offset += xs[j]->shape[d];
    size_t elem = cdz_dtype_size(y->dtype);
    job->src = x->data;
    job->dst = (uint8_t *)y->data + (size_t)(offset * y->stride[d]) * elem;
    cdz_copy_plan_make(x->ndim, x->shape, x->stride, y->stride, elem, &job->plan);
    return 1;
}

void cdz_pad_plan_make(const cdz_tensor *x, const cdz_tensor *y, int32_t npad,
                       const int64_t *pad_begin, cdz_pad_plan *out) {
    int k = 0;
    memset(out, 0, sizeof *out);
    for (int d = 0; d < x->ndim; d++) {
        int j = d - (x->ndim - npad);
        int64_t b = j >= 0 ? pad_begin[j] : 0;
        int64_t nx = x->shape[d], ny = y->shape[d];
        bool plain = b == 0 && nx == ny;
        if (plain && ny == 1) continue;
        bool prev_plain = k > 0 && out->begin[k - 1] == 0 && out->nx[k - 1] == out->ny[k - 1];
        if (plain && prev_plain && out->sx[k - 1] == x->stride[d] * nx) {
            out->nx[k - 1] *= nx;
            out->ny[k - 1] *= ny;
            out->sx[k - 1] = x->stride[d];
            continue;
        }
        out->nx[k] = nx;
        out->ny[k] = ny;
        out->sx[k] = x->stride[d];
        out->begin[k] = b;
        k++;
    }
    if (k == 0) {
        out->nx[0] = out->ny[0] = 1;
        k = 1;
    }
    out->ndim = k;
}

float cdz_bilinear_scale(int64_t in, int64_t out, bool align_corners, double scale) {
    if (align_corners) return out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.f;
    if (scale > 0) return (float)(1.0 / scale);
    return (float)in / (float)out;
}

/* ---------------------------------------------------------------- CPU reference */

static void run_copy_cpu(const cdz_copy_job *job) {
    const cdz_copy_plan *p = &job->plan;
    const uint8_t *src = job->src;
    uint8_t *dst = job->dst;
    size_t elem = p->elem;
    int last = p->ndim - 1;
    int64_t inner = p->shape[last], rows = p->numel / inner;
    int64_t idx[CDZ_MAX_DIMS] = {0}, so = 0, dof = 0; /* element offsets of the row */
    bool rowcopy = p->ss[last] == 1 && p->ds[last] == 1;
    for (int64_t r = 0; r < rows; r++) {
        if (rowcopy) {
            memcpy(dst + (size_t)dof * elem, src + (size_t)so * elem, (size_t)inner * elem);
        } else {
            for (int64_t i = 0; i < inner; i++)
                memcpy(dst + (size_t)(dof + i * p->ds[last]) * elem,
                       src + (size_t)(so + i * p->ss[last]) * elem, elem);
        }
        for (int d = last - 1; d >= 0; d--) { /* odometer over the outer dims */
            so += p->ss[d];
            dof += p->ds[d];
            if (++idx[d] < p->shape[d]) break;
            so -= p->ss[d] * p->shape[d];
            dof -= p->ds[d] * p->shape[d];
            idx[d] = 0;
        }
    }
}

cdz_status cdz_permute_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, const int32_t *perm) {
    cdz_copy_job job;
    if (cdz_permute_jobs(x, y, perm, &job)) run_copy_cpu(&job);
    return CDZ_STATUS_OK;
}

cdz_status cdz_copy_strided_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    return cdz_permute_cpu(ctx, x, y, NULL);
}

cdz_status cdz_slice_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim,
                         int64_t start, int64_t end, int64_t step) {
    cdz_copy_job job;
    if (cdz_slice_jobs(x, y, dim, start, step, &job)) run_copy_cpu(&job);
    return CDZ_STATUS_OK;
}

cdz_status cdz_concat_cpu(cdz_ctx *ctx, const cdz_tensor *const *xs, int n, int32_t dim,
                          cdz_tensor *y) {
    for (int k = 0; k < n; k++) {
        cdz_copy_job job;
        if (cdz_concat_job(xs, k, dim, y, &job)) run_copy_cpu(&job);
    }
    return CDZ_STATUS_OK;
}

/* Index into x for output coordinate o along a dim, or -1 for "constant value". */
static int64_t pad_source(int64_t o, int64_t begin, int64_t n, cdz_pad_mode mode) {
    int64_t i = o - begin;
    if (i >= 0 && i < n) return i;
    switch (mode) {
    case CDZ_PAD_REFLECT: return i < 0 ? -i : 2 * (n - 1) - i;
    case CDZ_PAD_REPLICATE: return i < 0 ? 0 : n - 1;
    case CDZ_PAD_CIRCULAR: return i < 0 ? i + n : i - n;
    default: return -1;
    }
}

cdz_status cdz_pad_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t npad,
                       const int64_t *pad_begin, const int64_t *pad_end, cdz_pad_mode mode,
                       float value) {
    int64_t total = cdz_tensor_numel(y);
    if (total == 0) return CDZ_STATUS_OK;
    cdz_pad_plan p;
    cdz_pad_plan_make(x, y, npad, pad_begin, &p);
    size_t elem = cdz_dtype_size(x->dtype);
    uint8_t fill[4];
    if (x->dtype == CDZ_DTYPE_F32) {
        memcpy(fill, &value, 4);
    } else {
        uint16_t h = x->dtype == CDZ_DTYPE_F16 ? cdz_f32_to_f16(value) : cdz_f32_to_bf16(value);
        memcpy(fill, &h, 2);
    }
    const uint8_t *src = x->data;
    uint8_t *dst = y->data;
    int64_t idx[CDZ_MAX_DIMS] = {0};
    for (int64_t e = 0; e < total; e++) {
        int64_t off = 0;
        bool constant = false;
        for (int d = 0; d < p.ndim && !constant; d++) {
            int64_t i = pad_source(idx[d], p.begin[d], p.nx[d], mode);
            if (i < 0) constant = true;
            else off += i * p.sx[d];
        }
        memcpy(dst + (size_t)e * elem, constant ? fill : src + (size_t)off * elem, elem);
        for (int d = p.ndim - 1; d >= 0; d--) {
            if (++idx[d] < p.ny[d]) break;
            idx[d] = 0;
        }
    }
    return CDZ_STATUS_OK;
}

static inline float ldf(const void *p, cdz_dtype dt, int64_t i) {
    switch (dt) {
    case CDZ_DTYPE_F16: return cdz_f16_to_f32(((const uint16_t *)p)[i]);
    case CDZ_DTYPE_BF16: return cdz_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

static inline void stf(void *p, cdz_dtype dt, int64_t i, float v) {
    switch (dt) {
    case CDZ_DTYPE_F16: ((uint16_t *)p)[i] = cdz_f32_to_f16(v); break;
    case CDZ_DTYPE_BF16: ((uint16_t *)p)[i] = cdz_f32_to_bf16(v); break;
    default: ((float *)p)[i] = v; break;
    }
}

/* PyTorch's area_pixel_compute_source_index (non-cubic) and the neighbour / weight split. */
static void bilinear_index(float scale, int64_t dst, int64_t in, bool align_corners,
                           int64_t *i0, int64_t *i1, float *l0, float *l1) {
    float src;
    if (align_corners) {
        src = scale * (float)dst;
    } else {
        /* one rounding (fused), as PyTorch's compiled CPU and CUDA kernels evaluate it;
         * two roundings would move src by an ulp (~2e-6 at src ~ 20) */
        src = fmaf(scale, (float)dst + 0.5f, -0.5f);
        if (src < 0) src = 0;
    }
    *i0 = (int64_t)src;
    *i1 = *i0 + (*i0 < in - 1 ? 1 : 0);
    *l1 = src - (float)*i0;
    *l0 = 1.0f - *l1;
}

cdz_status cdz_upsample_bilinear_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y,
                                     bool align_corners, double scale_h, double scale_w) {
    int64_t nc = x->shape[0] * x->shape[1], h = x->shape[2], w = x->shape[3];
    int64_t ho = y->shape[2], wo = y->shape[3];
    float rh = cdz_bilinear_scale(h, ho, align_corners, scale_h);
    float rw = cdz_bilinear_scale(w, wo, align_corners, scale_w);
    cdz_dtype dt = x->dtype;
    for (int64_t oh = 0; oh < ho; oh++) {
        int64_t h0, h1;
        float lh0, lh1;
        bilinear_index(rh, oh, h, align_corners, &h0, &h1, &lh0, &lh1);
        for (int64_t ow = 0; ow < wo; ow++) {
            int64_t w0, w1;
            float lw0, lw1;
            bilinear_index(rw, ow, w, align_corners, &w0, &w1, &lw0, &lw1);
            for (int64_t p = 0; p < nc; p++) {
                int64_t b = p * h * w;
                float a0 = lw0 * ldf(x->data, dt, b + h0 * w + w0);
                float a1 = lw1 * ldf(x->data, dt, b + h0 * w + w1);
                float c0 = lw0 * ldf(x->data, dt, b + h1 * w + w0);
                float c1 = lw1 * ldf(x->data, dt, b + h1 * w + w1);
                float top = a0 + a1, bot = c0 + c1;
                float v0 = lh0 * top, v1 = lh1 * bot;
                stf(y->data, dt, (p * ho + oh) * wo + ow, v0 + v1);
            }
        }
    }
    return CDZ_STATUS_OK;
}

cdz_status cdz_global_avg_pool_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    int64_t nc = x->shape[0] * x->shape[1], hw = x->shape[2] * x->shape[3];
    for (int64_t p = 0; p < nc; p++) {
        double s = 0;
        for (int64_t i = 0; i < hw; i++) s += ldf(x->data, x->dtype, p * hw + i);
        stf(y->data, y->dtype, p, (float)(s / (double)hw));
    }
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

cdz_status cdz_permute(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, const int32_t *perm) {
    const char *op = "permute";
    CDZ_REQUIRE(ctx, "%s: ctx is NULL", op);
    CDZ_TRY(check_view(ctx, op, "x", x, false));
    CDZ_TRY(check_out(ctx, op, y));
    CDZ_TRY(check_dtype(op, y, "x", x));
    CDZ_REQUIRE(perm || x->ndim == 0, "permute: perm is NULL");
    int64_t want[CDZ_MAX_DIMS];
    bool seen[CDZ_MAX_DIMS] = {false};
    for (int i = 0; i < x->ndim; i++) {
        int p = perm[i];
        CDZ_REQUIRE(p >= -x->ndim && p < x->ndim, "permute: perm[%d] = %d is out of range for %d dims",
                    i, p, x->ndim);
        if (p < 0) p += x->ndim;
        CDZ_REQUIRE(!seen[p], "permute: perm repeats dim %d (perm[%d])", p, i);
        seen[p] = true;
        want[i] = x->shape[p];
    }
    CDZ_TRY(check_y_shape(op, y, x->ndim, want, "x.permute(perm)"));
    CDZ_TRY(check_no_overlap(op, y, "x", x));
    DISPATCH(ctx, cdz_permute, x, y, perm);
}

cdz_status cdz_copy_strided(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    const char *op = "copy_strided";
    CDZ_REQUIRE(ctx, "%s: ctx is NULL", op);
    CDZ_TRY(check_view(ctx, op, "x", x, false));
    CDZ_TRY(check_out(ctx, op, y));
    CDZ_TRY(check_dtype(op, y, "x", x));
    CDZ_TRY(check_y_shape(op, y, x->ndim, x->shape, "x's shape"));
    CDZ_TRY(check_no_overlap(op, y, "x", x));
    DISPATCH(ctx, cdz_copy_strided, x, y);
}

cdz_status cdz_slice(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t dim,
                     int64_t start, int64_t end, int64_t step) {
    const char *op = "slice";
    char sx[160];
    CDZ_REQUIRE(ctx, "%s: ctx is NULL", op);
    CDZ_TRY(check_view(ctx, op, "x", x, false));
    CDZ_TRY(check_out(ctx, op, y));
    CDZ_TRY(check_dtype(op, y, "x", x));
    cdz_tensor_str(x, sx, sizeof sx);
    CDZ_REQUIRE(x->ndim >= 1 && dim >= -x->ndim && dim < x->ndim,
                "slice: dim %d is out of range for x %s", (int)dim, sx);
    int d = dim < 0 ? dim + x->ndim : dim;
    int64_t size = x->shape[d];
    CDZ_REQUIRE(start >= -size && start <= size && end >= -size && end <= size,
                "slice: range %lld:%lld is outside dim %d of x %s (size %lld)", (long long)start,
                (long long)end, d, sx, (long long)size);
    int64_t s0 = start < 0 ? start + size : start, e0 = end < 0 ? end + size : end;
    CDZ_REQUIRE(s0 <= e0, "slice: start %lld is after end %lld (dim %d of x %s)", (long long)start,
                (long long)end, d, sx);
    CDZ_REQUIRE(step >= 1, "slice: step must be >= 1 (got %lld)", (long long)step);
    int64_t want[CDZ_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) want[i] = i == d ? (e0 - s0 + step - 1) / step : x->shape[i];
    CDZ_TRY(check_y_shape(op, y, x->ndim, want, "x[start:end:step] along dim"));
    CDZ_TRY(check_no_overlap(op, y, "x", x));
    DISPATCH(ctx, cdz_slice, x, y, dim, start, end, step);
}

cdz_status cdz_concat(cdz_ctx *ctx, const cdz_tensor *const *xs, int n, int32_t dim,
                      cdz_tensor *y) {
    const char *op = "concat";
    char sy[160], sx[160];
    CDZ_REQUIRE(ctx, "%s: ctx is NULL", op);
    CDZ_REQUIRE(xs && n >= 1, "concat: needs at least one input (got %d)", n);
    CDZ_TRY(check_out(ctx, op, y));
    cdz_tensor_str(y, sy, sizeof sy);
    CDZ_REQUIRE(y->ndim >= 1 && dim >= -y->ndim && dim < y->ndim,
                "concat: dim %d is out of range for y %s", (int)dim, sy);
    int d = dim < 0 ? dim + y->ndim : dim;
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        char name[32];
        snprintf(name, sizeof name, "xs[%d]", k);
        CDZ_TRY(check_view(ctx, op, name, xs[k], false));
        CDZ_TRY(check_dtype(op, y, name, xs[k]));
        cdz_tensor_str(xs[k], sx, sizeof sx);
        CDZ_REQUIRE(xs[k]->ndim == y->ndim, "concat: %s is %s but y is %s (same number of dims)",
                    name, sx, sy);
        for (int i = 0; i < y->ndim; i++)
            CDZ_REQUIRE(i == d || xs[k]->shape[i] == y->shape[i],
                        "concat: %s is %s but y is %s: dim %d differs (only dim %d may)", name, sx,
                        sy, i, d);
        total += xs[k]->shape[d];
        CDZ_TRY(check_no_overlap(op, y, name, xs[k]));
    }
    CDZ_REQUIRE(total == y->shape[d], "concat: inputs hold %lld along dim %d but y %s has %lld",
                (long long)total, d, sy, (long long)y->shape[d]);
    DISPATCH(ctx, cdz_concat, xs, n, dim, y);
}

cdz_status cdz_pad(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t npad,
                   const int64_t *pad_begin, const int64_t *pad_end, cdz_pad_mode mode,
                   float value) {
    const char *op = "pad";
    static const char *mode_names[] = {"constant", "reflect", "replicate", "circular"};
    char sx[160];
    CDZ_REQUIRE(ctx, "%s: ctx is NULL", op);
    CDZ_TRY(check_view(ctx, op, "x", x, true));
    CDZ_TRY(check_out(ctx, op, y));
    CDZ_TRY(check_dtype(op, y, "x", x));
    cdz_tensor_str(x, sx, sizeof sx);
    CDZ_REQUIRE((unsigned)mode <= CDZ_PAD_CIRCULAR, "pad: unknown mode %d", (int)mode);
    const char *mn = mode_names[mode];
    int max_npad = mode == CDZ_PAD_CONSTANT ? x->ndim : (x->ndim < 3 ? x->ndim : 3);
    CDZ_REQUIRE(npad >= 1 && npad <= max_npad,
                "pad: %s mode pads 1..%d trailing dims of x %s (got npad %d)", mn, max_npad, sx,
                (int)npad);
    CDZ_REQUIRE(pad_begin && pad_end, "pad: pad_begin / pad_end is NULL");
    int64_t want[CDZ_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) want[i] = x->shape[i];
    for (int j = 0; j < npad; j++) {
        int d = x->ndim - npad + j;
        int64_t b = pad_begin[j], e = pad_end[j], n = x->shape[d];
        const int64_t lim = INT64_MAX / 64;
        CDZ_REQUIRE(b > -lim && b < lim && e > -lim && e < lim, "pad: pad on dim %d is too large", d);
        if (mode != CDZ_PAD_CONSTANT)
            CDZ_REQUIRE(b >= 0 && e >= 0, "pad: %s mode needs pads >= 0 (dim %d: %lld, %lld)", mn,
                        d, (long long)b, (long long)e);
        if (mode == CDZ_PAD_REFLECT)
            CDZ_REQUIRE(b < n && e < n,
                        "pad: reflect pads (%lld, %lld) on dim %d of x %s must be < the size %lld "
                        "(as torch)", (long long)b, (long long)e, d, sx, (long long)n);
        if (mode == CDZ_PAD_REPLICATE)
            CDZ_REQUIRE(n > 0 || (b == 0 && e == 0),
                        "pad: replicate needs a non-empty dim %d in x %s", d, sx);
        if (mode == CDZ_PAD_CIRCULAR)
            CDZ_REQUIRE(b <= n && e <= n,
                        "pad: circular pads (%lld, %lld) on dim %d of x %s must be <= the size %lld",
                        (long long)b, (long long)e, d, sx, (long long)n);
        want[d] = n + b + e;
        CDZ_REQUIRE(want[d] >= 0, "pad: pads (%lld, %lld) crop dim %d of x %s below 0",
                    (long long)b, (long long)e, d, sx);
    }
    CDZ_TRY(check_y_shape(op, y, x->ndim, want, "padding x"));
    CDZ_TRY(check_no_overlap(op, y, "x", x));
    DISPATCH(ctx, cdz_pad, x, y, npad, pad_begin, pad_end, mode, value);
}

cdz_status cdz_upsample_bilinear(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y,
                                 bool align_corners, double scale_h, double scale_w) {
    const char *op = "upsample_bilinear";
    char sx[160], sy[160];
    CDZ_REQUIRE(ctx, "%s: ctx is NULL", op);
    CDZ_TRY(cdz_check_tensor(ctx, op, "x", x, CDZ_DTYPE_COUNT_, 4));
    CDZ_TRY(check_view(ctx, op, "x", x, true));
    CDZ_TRY(cdz_check_tensor(ctx, op, "y", y, CDZ_DTYPE_COUNT_, 4));
    CDZ_TRY(check_out(ctx, op, y));
    CDZ_TRY(check_dtype(op, y, "x", x));
    cdz_tensor_str(x, sx, sizeof sx);
    cdz_tensor_str(y, sy, sizeof sy);
    CDZ_REQUIRE(y->shape[0] == x->shape[0] && y->shape[1] == x->shape[1],
                "upsample_bilinear: y %s must keep N and C of x %s", sy, sx);
    CDZ_REQUIRE(x->shape[2] > 0 && x->shape[3] > 0 && y->shape[2] > 0 && y->shape[3] > 0,
                "upsample_bilinear: spatial sizes must be > 0 (x %s, y %s)", sx, sy);
    CDZ_REQUIRE(!isnan(scale_h) && !isnan(scale_w) && !isinf(scale_h) && !isinf(scale_w),
                "upsample_bilinear: scale_h / scale_w must be finite (<= 0: from the sizes)");
    CDZ_TRY(check_no_overlap(op, y, "x", x));
    DISPATCH(ctx, cdz_upsample_bilinear, x, y, align_corners, scale_h, scale_w);
}

cdz_status cdz_global_avg_pool(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y) {
    const char *op = "global_avg_pool";
    char sx[160], sy[160];
    CDZ_REQUIRE(ctx, "%s: ctx is NULL", op);
    CDZ_TRY(cdz_check_tensor(ctx, op, "x", x, CDZ_DTYPE_COUNT_, 4));
    CDZ_TRY(check_view(ctx, op, "x", x, true));
    CDZ_TRY(check_out(ctx, op, y));
    CDZ_TRY(check_dtype(op, y, "x", x));
    cdz_tensor_str(x, sx, sizeof sx);
    cdz_tensor_str(y, sy, sizeof sy);
    bool ok = (y->ndim == 2 || (y->ndim == 4 && y->shape[2] == 1 && y->shape[3] == 1)) &&
              y->shape[0] == x->shape[0] && y->shape[1] == x->shape[1];
    CDZ_REQUIRE(ok, "global_avg_pool: y %s must be [N, C] or [N, C, 1, 1] for x %s", sy, sx);
    CDZ_REQUIRE(cdz_tensor_numel(y) == 0 || (x->shape[2] > 0 && x->shape[3] > 0),
                "global_avg_pool: x %s has an empty spatial extent", sx);
    CDZ_TRY(check_no_overlap(op, y, "x", x));
    DISPATCH(ctx, cdz_global_avg_pool, x, y);
}
