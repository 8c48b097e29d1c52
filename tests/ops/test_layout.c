/*
 * test_layout.c: permute / copy_strided / slice / concat (random bytes, every element size,
 * strided and transposed inputs), pad (constant with cropping, reflect with pad = size - 1,
 * replicate, circular; 1-3 dims), bilinear resize (up and down, align_corners both ways,
 * explicit scale factors), global average pooling, and error paths.
 * Moves are exact: the CPU op is compared byte for byte with a gather written here
 * ("cpu-vs-ref"), and CUDA byte for byte with the CPU. Bilinear and pooling compare with a
 * float64 reference (cpu-vs-f64) and CUDA with the CPU.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../harness.h"
#include "families.h"
#include "half.h"
#include "layout.h"

static const cdz_dtype kFloatTypes[] = {CDZ_DTYPE_F32, CDZ_DTYPE_F16, CDZ_DTYPE_BF16};

static const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
    int k = snprintf(buf, size, "[");
    for (int i = 0; i < ndim && (size_t)k < size; i++)
        k += snprintf(buf + k, size - (size_t)k, i ? ",%lld" : "%lld", (long long)shape[i]);
    if ((size_t)k < size) snprintf(buf + k, size - (size_t)k, "]");
    return buf;
}

/* Host tensor of random bytes (any dtype; NaN patterns included: the ops move bytes). */
static cdz_tensor rand_bytes(th_suite *s, cdz_dtype dt, int ndim, const int64_t *shape) {
    cdz_tensor t = th_empty(s, dt, ndim, shape);
    uint8_t *p = t.data;
    size_t n = cdz_tensor_nbytes(&t);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)th_rand_u64(s);
    return t;
}

/* A view of `base` (same buffer) with its own shape / strides / element offset. */
static cdz_tensor view_of(const cdz_tensor *base, int ndim, const int64_t *shape,
                          const int64_t *stride, int64_t offset) {
    cdz_tensor v = *base;
    v.ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        v.shape[i] = shape[i];
        v.stride[i] = stride[i];
    }
    v.data = (uint8_t *)base->data + offset * (int64_t)cdz_dtype_size(base->dtype);
    return v;
}

/* The same view over a CUDA copy of its base buffer. */
static cdz_tensor view_to_cuda(th_suite *s, const cdz_tensor *view, const cdz_tensor *base) {
    cdz_tensor db = th_to_cuda(s, base), v = *view;
    v.device = db.device;
    v.data = (uint8_t *)db.data + ((const uint8_t *)view->data - (const uint8_t *)base->data);
    return v;
}

/* Element bytes of x at logical coordinates (x's strides). */
static const uint8_t *elem_at(const cdz_tensor *x, const int64_t *coord) {
    int64_t off = 0;
    for (int d = 0; d < x->ndim; d++) off += coord[d] * x->stride[d];
    return (const uint8_t *)x->data + off * (int64_t)cdz_dtype_size(x->dtype);
}

static void unravel(int64_t i, int ndim, const int64_t *shape, int64_t *coord) {
    for (int d = ndim - 1; d >= 0; d--) {
        coord[d] = shape[d] ? i % shape[d] : 0;
        i = shape[d] ? i / shape[d] : 0;
    }
}

/* CPU result vs the test's own gather, then CUDA vs CPU, both byte for byte. */
static void compare_exact(th_suite *s, const cdz_tensor *y, const void *ref) {
    th_compare_bytes(s, "cpu-vs-ref", y->data, ref, cdz_tensor_nbytes(y));
}

static void compare_cuda_bytes(th_suite *s, const cdz_tensor *dy, const cdz_tensor *y) {
    cdz_tensor h = th_to_host(s, dy);
    th_compare_bytes(s, "cuda-vs-cpu", h.data, y->data, cdz_tensor_nbytes(y));
}

/* ---------------------------------------------------------------- permute / copy_strided */

typedef struct perm_case {
    const char *label;
    cdz_dtype dt;
    int ndim;
    int64_t base[6];  /* contiguous buffer shape */
    int64_t bperm[6]; /* x = base.permute(bperm) (a strided view); identity when all 0 */
    int32_t perm[6];  /* op's perm; NULL-like identity when identity = true */
    bool copy;        /* cdz_copy_strided instead of cdz_permute */
} perm_case;

static void run_permute(th_suite *s, const perm_case *c) {
    char sb[64];
    if (!th_begin(s, c->copy ? "copy_strided" : "permute", "%s %s base=%s", c->label,
                  cdz_dtype_name(c->dt), shape_str(c->ndim, c->base, sb, 64)))
        return;
    cdz_tensor base = rand_bytes(s, c->dt, c->ndim, c->base);
    int64_t xs[6], xst[6];
    bool ident_b = true;
    for (int i = 0; i < c->ndim; i++) ident_b = ident_b && c->bperm[i] == 0;
    for (int i = 0; i < c->ndim; i++) {
        int p = ident_b ? i : (int)c->bperm[i];
        xs[i] = base.shape[p];
        xst[i] = base.stride[p];
    }
    cdz_tensor x = view_of(&base, c->ndim, xs, xst, 0);
    int64_t ys[6];
    for (int i = 0; i < c->ndim; i++) {
        int p = c->copy ? i : (c->perm[i] < 0 ? c->perm[i] + c->ndim : c->perm[i]);
        ys[i] = xs[p];
    }
    cdz_tensor y = th_empty(s, c->dt, c->ndim, ys);
    size_t es = cdz_dtype_size(c->dt);
    uint8_t *ref = th_alloc(s, cdz_tensor_nbytes(&y) + 1);
    int64_t n = cdz_tensor_numel(&y), yc[6], xc[6];
    for (int64_t i = 0; i < n; i++) {
        unravel(i, c->ndim, ys, yc);
        for (int d = 0; d < c->ndim; d++) {
            int p = c->copy ? d : (c->perm[d] < 0 ? c->perm[d] + c->ndim : c->perm[d]);
            xc[p] = yc[d];
        }
        memcpy(ref + i * (int64_t)es, elem_at(&x, xc), es);
    }
    cdz_status st = c->copy ? cdz_copy_strided(s->cpu, &x, &y) : cdz_permute(s->cpu, &x, &y, c->perm);
    if (th_ok(s, "cpu", st)) compare_exact(s, &y, ref);
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dx = view_to_cuda(s, &x, &base), dy = th_cuda_like(s, &y);
        st = c->copy ? cdz_copy_strided(s->cuda, &dx, &dy) : cdz_permute(s->cuda, &dx, &dy, c->perm);
        if (th_ok(s, "cuda", st)) compare_cuda_bytes(s, &dy, &y);
    }
    th_end(s);
}

static void test_permute(th_suite *s) {
    const perm_case cases[] = {
        {"rotate", CDZ_DTYPE_F32, 3, {2, 3, 5}, {0}, {2, 0, 1}, false},
        {"transpose tiles", CDZ_DTYPE_F32, 3, {3, 33, 40}, {0}, {0, 2, 1}, false},
        {"transpose tiles", CDZ_DTYPE_F16, 3, {3, 33, 40}, {0}, {0, -1, -2}, false},
        {"transpose tiles", CDZ_DTYPE_BF16, 2, {65, 47}, {0}, {1, 0}, false},
        {"transpose u8", CDZ_DTYPE_U8, 2, {40, 50}, {0}, {1, 0}, false},
        {"transpose i64", CDZ_DTYPE_I64, 3, {2, 17, 31}, {0}, {2, 1, 0}, false},
        {"NCHW->NHWC", CDZ_DTYPE_F32, 4, {2, 3, 17, 19}, {0}, {0, 2, 3, 1}, false},
        {"stereo [2,T]->[T,2]", CDZ_DTYPE_F32, 2, {2, 1001}, {0}, {1, 0}, false},
        {"6 dims", CDZ_DTYPE_F16, 6, {2, 3, 1, 4, 5, 2}, {0}, {5, 3, 1, 0, 4, 2}, false},
        {"strided input", CDZ_DTYPE_F32, 3, {4, 7, 9}, {2, 0, 1}, {1, 2, 0}, false},
        {"identity", CDZ_DTYPE_I32, 2, {3, 7}, {0}, {0, 1}, false},
        {"empty", CDZ_DTYPE_F32, 3, {2, 0, 3}, {0}, {2, 1, 0}, false},
        {"transposed view", CDZ_DTYPE_F32, 2, {7, 3}, {1, 0}, {0}, true},
        {"transposed view tiles", CDZ_DTYPE_BF16, 3, {2, 40, 36}, {0, 2, 1}, {0}, true},
        {"contiguous", CDZ_DTYPE_F16, 2, {5, 9}, {0}, {0}, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_permute(s, &cases[i]);

    if (th_begin(s, "copy_strided", "sliced + expanded view")) {
        /* x = base[1:, ::2] with a broadcast (stride 0) leading dim: x [3, 2, 4] */
        cdz_tensor base = rand_bytes(s, CDZ_DTYPE_F32, 2, (int64_t[]){3, 8});
        cdz_tensor x = view_of(&base, 3, (int64_t[]){3, 2, 4}, (int64_t[]){0, 8, 2}, 8);
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 3, x.shape);
        float ref[24];
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 2; b++)
                for (int c = 0; c < 4; c++) ref[(a * 2 + b) * 4 + c] = ((float *)base.data)[8 + b * 8 + 2 * c];
        if (th_ok(s, "cpu", cdz_copy_strided(s->cpu, &x, &y))) compare_exact(s, &y, ref);
        if (th_gpu(s, "cuda-vs-cpu")) {
            cdz_tensor dx = view_to_cuda(s, &x, &base), dy = th_cuda_like(s, &y);
            if (th_ok(s, "cuda", cdz_copy_strided(s->cuda, &dx, &dy))) compare_cuda_bytes(s, &dy, &y);
        }
        th_end(s);
    }

    if (th_begin(s, "permute", "error paths")) {
        cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 3, 5}, -1, 1);
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){5, 2, 3});
        th_expect_status(s, "perm repeats a dim", cdz_permute(s->cpu, &x, &y, (int32_t[]){2, 0, 0}),
                         CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "perm entry 3 of 3 dims", cdz_permute(s->cpu, &x, &y, (int32_t[]){3, 0, 1}),
                         CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "y not x.permute(perm)", cdz_permute(s->cpu, &x, &y, (int32_t[]){1, 0, 2}),
                         CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "NULL perm", cdz_permute(s->cpu, &x, &y, NULL), CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor yh = th_empty(s, CDZ_DTYPE_F16, 3, (int64_t[]){5, 2, 3});
        th_expect_status(s, "dtype change", cdz_permute(s->cpu, &x, &yh, (int32_t[]){2, 0, 1}),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor xn = x;
        xn.stride[0] = -15;
        th_expect_status(s, "negative stride", cdz_permute(s->cpu, &xn, &y, (int32_t[]){2, 0, 1}),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor xb = x;
        xb.stride[0] = INT64_MAX / 4;
        th_expect_status(s, "strides overflowing offsets", cdz_permute(s->cpu, &xb, &y, (int32_t[]){2, 0, 1}),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor yo = y;
        yo.data = (float *)x.data + 3;
        th_expect_status(s, "y overlapping x", cdz_permute(s->cpu, &x, &yo, (int32_t[]){2, 0, 1}),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor ys = y;
        ys.stride[0] = 1;
        ys.stride[2] = 5; /* a strided output */
        th_expect_status(s, "strided y", cdz_permute(s->cpu, &x, &ys, (int32_t[]){2, 0, 1}),
                         CDZ_STATUS_INVALID_ARGUMENT);
        th_end(s);
    }
}

/* ---------------------------------------------------------------- slice / concat */

static void run_slice(th_suite *s, const char *label, cdz_dtype dt, int ndim, const int64_t *bshape,
                      bool transposed, int32_t dim, int64_t start, int64_t end, int64_t step) {
    char sb[64];
    if (!th_begin(s, "slice", "%s %s x=%s%s dim=%d %lld:%lld:%lld", label, cdz_dtype_name(dt),
                  shape_str(ndim, bshape, sb, 64), transposed ? " (transposed view)" : "", (int)dim,
                  (long long)start, (long long)end, (long long)step))
        return;
    cdz_tensor base = rand_bytes(s, dt, ndim, bshape), x = base;
    if (transposed) { /* swap the last two dims of the view */
        x.shape[ndim - 1] = base.shape[ndim - 2];
        x.shape[ndim - 2] = base.shape[ndim - 1];
        x.stride[ndim - 1] = base.stride[ndim - 2];
        x.stride[ndim - 2] = base.stride[ndim - 1];
    }
    int d = dim < 0 ? dim + ndim : dim;
    int64_t size = x.shape[d], s0 = start < 0 ? start + size : start, e0 = end < 0 ? end + size : end;
    int64_t ys[6];
    for (int i = 0; i < ndim; i++) ys[i] = x.shape[i];
    ys[d] = (e0 - s0 + step - 1) / step;
    cdz_tensor y = th_empty(s, dt, ndim, ys);
    size_t es = cdz_dtype_size(dt);
    uint8_t *ref = th_alloc(s, cdz_tensor_nbytes(&y) + 1);
    int64_t n = cdz_tensor_numel(&y), c[6];
    for (int64_t i = 0; i < n; i++) {
        unravel(i, ndim, ys, c);
        c[d] = s0 + c[d] * step;
        memcpy(ref + i * (int64_t)es, elem_at(&x, c), es);
    }
    if (th_ok(s, "cpu", cdz_slice(s->cpu, &x, &y, dim, start, end, step))) compare_exact(s, &y, ref);
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dx = view_to_cuda(s, &x, &base), dy = th_cuda_like(s, &y);
        if (th_ok(s, "cuda", cdz_slice(s->cuda, &dx, &dy, dim, start, end, step)))
            compare_cuda_bytes(s, &dy, &y);
    }
    th_end(s);
}

static void test_slice(th_suite *s) {
    run_slice(s, "middle, step 4", CDZ_DTYPE_F32, 3, (int64_t[]){5, 33, 7}, false, 1, 3, 30, 4);
    run_slice(s, "negative bounds", CDZ_DTYPE_F16, 3, (int64_t[]){5, 33, 7}, false, 1, -10, -1, 1);
    run_slice(s, "dim 0 step 2", CDZ_DTYPE_BF16, 2, (int64_t[]){9, 5}, false, 0, 0, 9, 2);
    run_slice(s, "last dim step 3", CDZ_DTYPE_I32, 2, (int64_t[]){3, 100}, false, -1, 1, 100, 3);
    run_slice(s, "empty", CDZ_DTYPE_F32, 2, (int64_t[]){4, 6}, false, 1, 3, 3, 1);
    run_slice(s, "whole", CDZ_DTYPE_F32, 2, (int64_t[]){4, 6}, false, 0, 0, 4, 1);
    run_slice(s, "of a transposed view", CDZ_DTYPE_F32, 3, (int64_t[]){2, 40, 36}, true, 1, 5, 33, 1);
    if (th_begin(s, "slice", "error paths")) {
        cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){4, 6}, -1, 1);
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){4, 2});
        th_expect_status(s, "end past the size", cdz_slice(s->cpu, &x, &y, 1, 5, 7, 1), CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "start after end", cdz_slice(s->cpu, &x, &y, 1, 4, 2, 1), CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "step 0", cdz_slice(s->cpu, &x, &y, 1, 0, 2, 0), CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "y size != range", cdz_slice(s->cpu, &x, &y, 1, 0, 3, 1), CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "dim 2 of 2 dims", cdz_slice(s->cpu, &x, &y, 2, 0, 2, 1), CDZ_STATUS_INVALID_ARGUMENT);
        th_end(s);
    }
}

static void run_concat(th_suite *s, const char *label, cdz_dtype dt, int ndim, int n,
                       const int64_t shapes[][4], int32_t dim, int transposed_input) {
    if (!th_begin(s, "concat", "%s %s n=%d dim=%d", label, cdz_dtype_name(dt), n, (int)dim)) return;
    int d = dim < 0 ? dim + ndim : dim;
    cdz_tensor bases[4], xs[4];
    const cdz_tensor *ptrs[4];
    int64_t ys[4];
    for (int i = 0; i < ndim; i++) ys[i] = shapes[0][i];
    ys[d] = 0;
    for (int k = 0; k < n; k++) {
        int64_t bs[4];
        memcpy(bs, shapes[k], sizeof bs);
        if (k == transposed_input) { /* stored transposed, passed as a view */
            bs[ndim - 1] = shapes[k][ndim - 2];
            bs[ndim - 2] = shapes[k][ndim - 1];
        }
        bases[k] = rand_bytes(s, dt, ndim, bs);
        xs[k] = bases[k];
        if (k == transposed_input) {
            xs[k].shape[ndim - 1] = bs[ndim - 2];
            xs[k].shape[ndim - 2] = bs[ndim - 1];
            xs[k].stride[ndim - 1] = bases[k].stride[ndim - 2];
            xs[k].stride[ndim - 2] = bases[k].stride[ndim - 1];
        }
        ptrs[k] = &xs[k];
        ys[d] += shapes[k][d];
    }
    cdz_tensor y = th_empty(s, dt, ndim, ys);
    size_t es = cdz_dtype_size(dt);
    uint8_t *ref = th_alloc(s, cdz_tensor_nbytes(&y) + 1);
    int64_t total = cdz_tensor_numel(&y), c[4];
    for (int64_t i = 0; i < total; i++) {
        unravel(i, ndim, ys, c);
        int k = 0;
        while (c[d] >= xs[k].shape[d]) c[d] -= xs[k++].shape[d];
        memcpy(ref + i * (int64_t)es, elem_at(&xs[k], c), es);
    }
    if (th_ok(s, "cpu", cdz_concat(s->cpu, ptrs, n, dim, &y))) compare_exact(s, &y, ref);
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dxs[4];
        const cdz_tensor *dptrs[4];
        for (int k = 0; k < n; k++) {
            dxs[k] = view_to_cuda(s, &xs[k], &bases[k]);
            dptrs[k] = &dxs[k];
        }
        cdz_tensor dy = th_cuda_like(s, &y);
        if (th_ok(s, "cuda", cdz_concat(s->cuda, dptrs, n, dim, &dy))) compare_cuda_bytes(s, &dy, &y);
    }
    th_end(s);
}

static void test_concat(th_suite *s) {
    const int64_t mid[][4] = {{2, 3, 5}, {2, 1, 5}, {2, 4, 5}};
    run_concat(s, "middle dim", CDZ_DTYPE_F32, 3, 3, mid, 1, -1);
    const int64_t first[][4] = {{1, 7}, {3, 7}, {2, 7}};
    run_concat(s, "dim 0", CDZ_DTYPE_F16, 2, 3, first, 0, -1);
    const int64_t last[][4] = {{3, 33, 5}, {3, 33, 17}};
    run_concat(s, "last dim, transposed input", CDZ_DTYPE_BF16, 3, 2, last, -1, 1);
    const int64_t empty[][4] = {{2, 3, 5}, {2, 0, 5}, {2, 2, 5}};
    run_concat(s, "with an empty input", CDZ_DTYPE_I32, 3, 3, empty, 1, -1);
    const int64_t one[][4] = {{4, 9}};
    run_concat(s, "single", CDZ_DTYPE_F32, 2, 1, one, 1, -1);
    const int64_t big[][4] = {{2, 40, 36}, {2, 40, 20}};
    run_concat(s, "transposed tiles", CDZ_DTYPE_F32, 3, 2, big, 2, 0);
    if (th_begin(s, "concat", "error paths")) {
        cdz_tensor a = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){2, 3}, -1, 1);
        cdz_tensor b = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){3, 3}, -1, 1);
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){2, 6});
        const cdz_tensor *ab[] = {&a, &b};
        th_expect_status(s, "dim 0 sizes differ on dim 1 concat", cdz_concat(s->cpu, ab, 2, 1, &y),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor y2 = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){6, 3});
        th_expect_status(s, "sizes do not sum to y's", cdz_concat(s->cpu, ab, 2, 0, &y2),
                         CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "no inputs", cdz_concat(s->cpu, ab, 0, 0, &y2), CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor ah = th_rand(s, CDZ_DTYPE_F16, 2, (int64_t[]){2, 3}, -1, 1);
        const cdz_tensor *mixed[] = {&a, &ah};
        cdz_tensor y3 = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){4, 3});
        th_expect_status(s, "mixed dtypes", cdz_concat(s->cpu, mixed, 2, 0, &y3), CDZ_STATUS_INVALID_ARGUMENT);
        const cdz_tensor *self[] = {&a, &y3};
        th_expect_status(s, "y as an input", cdz_concat(s->cpu, self, 2, 0,
                         &(cdz_tensor){.data = y3.data, .dtype = CDZ_DTYPE_F32, .ndim = 2, .shape = {6, 3},
                                       .stride = {3, 1}, .device = y3.device}),
                         CDZ_STATUS_INVALID_ARGUMENT);
        th_end(s);
    }
}

/* ---------------------------------------------------------------- pad */

/* Source index for output coordinate o (independent of the op's code), -1: constant. */
static int64_t ref_pad_index(int64_t o, int64_t begin, int64_t n, cdz_pad_mode mode) {
    int64_t i = o - begin;
    if (i >= 0 && i < n) return i;
    if (mode == CDZ_PAD_CONSTANT) return -1;
    if (mode == CDZ_PAD_REPLICATE) return i < 0 ? 0 : n - 1;
    if (mode == CDZ_PAD_CIRCULAR) return ((i % n) + n) % n;
    /* reflect: the sequence x1 .. x(n-2) mirrored around both ends, period 2(n-1) */
    int64_t period = 2 * (n - 1), m = ((i % period) + period) % period;
    return m < n ? m : period - m;
}

typedef struct pad_case {
    const char *label;
    int ndim;
    int64_t shape[4];
    int npad;
    int64_t begin[3], end[3];
    cdz_pad_mode mode;
    bool transposed; /* x is a transposed view of its buffer (last two dims) */
} pad_case;

static void run_pad(th_suite *s, const pad_case *c, cdz_dtype dt) {
    static const char *modes[] = {"constant", "reflect", "replicate", "circular"};
    char sx[64];
    if (!th_begin(s, "pad", "%s %s %s x=%s%s npad=%d begin=(%lld,%lld,%lld) end=(%lld,%lld,%lld)",
                  c->label, modes[c->mode], cdz_dtype_name(dt), shape_str(c->ndim, c->shape, sx, 64),
                  c->transposed ? " (transposed view)" : "", c->npad, (long long)c->begin[0],
                  (long long)c->begin[1], (long long)c->begin[2], (long long)c->end[0],
                  (long long)c->end[1], (long long)c->end[2]))
        return;
    int nd = c->ndim;
    int64_t bs[4];
    memcpy(bs, c->shape, sizeof bs);
    if (c->transposed) {
        bs[nd - 1] = c->shape[nd - 2];
        bs[nd - 2] = c->shape[nd - 1];
    }
    cdz_tensor base = th_rand(s, dt, nd, bs, -2.f, 2.f), x = base;
    if (c->transposed) {
        x.shape[nd - 1] = c->shape[nd - 1];
        x.shape[nd - 2] = c->shape[nd - 2];
        x.stride[nd - 1] = base.stride[nd - 2];
        x.stride[nd - 2] = base.stride[nd - 1];
    }
    int64_t ys[4], beg[4] = {0, 0, 0, 0};
    for (int i = 0; i < nd; i++) ys[i] = c->shape[i];
    for (int j = 0; j < c->npad; j++) {
        int d = nd - c->npad + j;
        ys[d] += c->begin[j] + c->end[j];
        beg[d] = c->begin[j];
    }
    const float value = -7.25f; /* exact in f16 and bf16 */
    cdz_tensor y = th_empty(s, dt, nd, ys);
    cdz_tensor ref = th_empty(s, dt, nd, ys);
    size_t es = cdz_dtype_size(dt);
    int64_t n = cdz_tensor_numel(&y), yc[4], xc[4];
    for (int64_t i = 0; i < n; i++) {
        unravel(i, nd, ys, yc);
        bool constant = false;
        for (int d = 0; d < nd; d++) {
            xc[d] = ref_pad_index(yc[d], beg[d], x.shape[d], c->mode);
            constant = constant || xc[d] < 0;
        }
        if (constant) th_set(&ref, i, value);
        else memcpy((uint8_t *)ref.data + i * (int64_t)es, elem_at(&x, xc), es);
    }
    if (th_ok(s, "cpu", cdz_pad(s->cpu, &x, &y, c->npad, c->begin, c->end, c->mode, value)))
        compare_exact(s, &y, ref.data);
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dx = view_to_cuda(s, &x, &base), dy = th_cuda_like(s, &y);
        if (th_ok(s, "cuda", cdz_pad(s->cuda, &dx, &dy, c->npad, c->begin, c->end, c->mode, value)))
            compare_cuda_bytes(s, &dy, &y);
    }
    th_end(s);
}

static void test_pad(th_suite *s) {
    const pad_case cases[] = {
        {"1d", 3, {2, 3, 7}, 1, {2}, {3}, CDZ_PAD_CONSTANT, false},
        {"1d crop", 3, {2, 3, 9}, 1, {-2}, {-3}, CDZ_PAD_CONSTANT, false},
        {"2d pad+crop", 4, {2, 3, 8, 9}, 2, {-1, 2}, {3, -2}, CDZ_PAD_CONSTANT, false},
        {"3 dims", 3, {2, 3, 4}, 3, {1, 0, 2}, {0, 2, 1}, CDZ_PAD_CONSTANT, false},
        {"empty x dim", 2, {3, 0}, 1, {2}, {2}, CDZ_PAD_CONSTANT, false},
        {"1d pad=size-1", 3, {2, 3, 7}, 1, {6}, {6}, CDZ_PAD_REFLECT, false},
        {"1d one side", 2, {3, 7}, 1, {2}, {0}, CDZ_PAD_REFLECT, false},
        {"2d pad=size-1", 4, {1, 2, 5, 6}, 2, {4, 5}, {1, 5}, CDZ_PAD_REFLECT, false},
        {"2d strided", 4, {2, 2, 9, 11}, 2, {3, 1}, {2, 4}, CDZ_PAD_REFLECT, true},
        {"1d", 3, {2, 3, 7}, 1, {5}, {9}, CDZ_PAD_REPLICATE, false},
        {"size-1 dim", 2, {2, 1}, 1, {3}, {4}, CDZ_PAD_REPLICATE, false},
        {"2d", 4, {1, 3, 4, 5}, 2, {2, 1}, {1, 3}, CDZ_PAD_REPLICATE, false},
        {"1d pad=size", 2, {3, 5}, 1, {5}, {5}, CDZ_PAD_CIRCULAR, false},
        {"2d", 3, {2, 4, 5}, 2, {1, 2}, {3, 0}, CDZ_PAD_CIRCULAR, false},
        {"3d", 4, {2, 3, 4, 5}, 3, {1, 2, 3}, {2, 1, 4}, CDZ_PAD_REFLECT, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int t = 0; t < 3; t++) run_pad(s, &cases[i], kFloatTypes[t]);

    if (th_begin(s, "pad", "error paths")) {
        cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 3, 7}, -1, 1);
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 3, 21});
        th_expect_status(s, "reflect pad = size (torch refuses)",
                         cdz_pad(s->cpu, &x, &y, 1, (int64_t[]){7}, (int64_t[]){7}, CDZ_PAD_REFLECT, 0),
                         CDZ_STATUS_INVALID_ARGUMENT);
        th_check(s, "message says < the size", strstr(cdz_last_message(), "must be < the size") != NULL,
                 "%s", cdz_last_message());
        cdz_tensor y5 = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 3, 5});
        th_expect_status(s, "negative reflect pad",
                         cdz_pad(s->cpu, &x, &y5, 1, (int64_t[]){-1}, (int64_t[]){-1}, CDZ_PAD_REFLECT, 0),
                         CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "npad 0", cdz_pad(s->cpu, &x, &x, 0, (int64_t[]){0}, (int64_t[]){0},
                                              CDZ_PAD_CONSTANT, 0), CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "y of the wrong size",
                         cdz_pad(s->cpu, &x, &y, 1, (int64_t[]){1}, (int64_t[]){1}, CDZ_PAD_CONSTANT, 0),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor y0 = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 3, 0});
        th_expect_status(s, "crop below zero",
                         cdz_pad(s->cpu, &x, &y0, 1, (int64_t[]){-4}, (int64_t[]){-4}, CDZ_PAD_CONSTANT, 0),
                         CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "unknown mode",
                         cdz_pad(s->cpu, &x, &y, 1, (int64_t[]){7}, (int64_t[]){7}, (cdz_pad_mode)9, 0),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor x2 = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){3, 7}, -1, 1);
        cdz_tensor y2 = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){7, 9});
        th_expect_status(s, "circular pad > size",
                         cdz_pad(s->cpu, &x2, &y2, 2, (int64_t[]){4, 1}, (int64_t[]){0, 1}, CDZ_PAD_CIRCULAR, 0),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor xi = th_rand(s, CDZ_DTYPE_I32, 2, (int64_t[]){3, 7}, -1, 1);
        cdz_tensor yi = th_empty(s, CDZ_DTYPE_I32, 2, (int64_t[]){3, 9});
        th_expect_status(s, "i32 x", cdz_pad(s->cpu, &xi, &yi, 1, (int64_t[]){1}, (int64_t[]){1},
                                             CDZ_PAD_CONSTANT, 0), CDZ_STATUS_INVALID_ARGUMENT);
        th_end(s);
    }
}

/* ---------------------------------------------------------------- upsample_bilinear */

/* PyTorch's source index and weights in fp32 (its semantics), written out here; the
 * interpolation itself in double. */
static void ref_lin(int64_t in, int64_t out, bool align, double scale, int64_t dst, int64_t *i0,
                    int64_t *i1, double *w1) {
    float r;
    if (align) r = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.f;
    else r = scale > 0 ? (float)(1.0 / scale) : (float)in / (float)out;
    float src;
    if (align) {
        src = r * (float)dst;
    } else {
        src = fmaf(r, (float)dst + 0.5f, -0.5f); /* fused, as torch's compiled kernels */
        src = src < 0 ? 0 : src;
    }
    *i0 = (int64_t)floorf(src);
    *i1 = *i0 < in - 1 ? *i0 + 1 : *i0;
    *w1 = (double)(src - (float)*i0);
}

static void run_bilinear(th_suite *s, cdz_dtype dt, int64_t n, int64_t c, int64_t h, int64_t w,
                         int64_t ho, int64_t wo, bool align, double sh, double sw) {
    if (!th_begin(s, "upsample_bilinear", "%s [%lld,%lld,%lld,%lld] -> %lldx%lld align_corners=%d scale=(%g,%g)",
                  cdz_dtype_name(dt), (long long)n, (long long)c, (long long)h, (long long)w,
                  (long long)ho, (long long)wo, align, sh, sw))
        return;
    /* positive inputs: the weights are convex, so no cancellation inflates relative errors */
    cdz_tensor x = th_rand(s, dt, 4, (int64_t[]){n, c, h, w}, 0.5f, 2.5f);
    cdz_tensor y = th_empty(s, dt, 4, (int64_t[]){n, c, ho, wo});
    double *ref = th_alloc_f64(s, (size_t)(n * c * ho * wo) + 1);
    for (int64_t p = 0; p < n * c; p++)
        for (int64_t oh = 0; oh < ho; oh++)
            for (int64_t ow = 0; ow < wo; ow++) {
                int64_t h0, h1, w0, w1;
                double lh, lw;
                ref_lin(h, ho, align, sh, oh, &h0, &h1, &lh);
                ref_lin(w, wo, align, sw, ow, &w0, &w1, &lw);
                const int64_t b = p * h * w;
                double top = (1 - lw) * th_get(&x, b + h0 * w + w0) + lw * th_get(&x, b + h0 * w + w1);
                double bot = (1 - lw) * th_get(&x, b + h1 * w + w0) + lw * th_get(&x, b + h1 * w + w1);
                ref[(p * ho + oh) * wo + ow] = (1 - lh) * top + lh * bot;
            }
    const char *why = dt == CDZ_DTYPE_F32 ? "torch's fp32 indices/weights; ~6 fp32 roundings vs double"
                    : dt == CDZ_DTYPE_F16 ? "fp32 math, one f16 rounding (2^-11)"
                                          : "fp32 math, one bf16 rounding (2^-8)";
    double tol = dt == CDZ_DTYPE_F32 ? 3e-7 : dt == CDZ_DTYPE_F16 ? 1e-3 : 8e-3;
    if (th_ok(s, "cpu", cdz_upsample_bilinear(s->cpu, &x, &y, align, sh, sw)))
        th_compare_f64(s, "cpu-vs-f64", &y, ref, tol, why);
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dx = th_to_cuda(s, &x), dy = th_cuda_like(s, &y);
        if (th_ok(s, "cuda", cdz_upsample_bilinear(s->cuda, &dx, &dy, align, sh, sw)))
            compare_cuda_bytes(s, &dy, &y); /* same rounded fp32 ops in the same order */
    }
    th_end(s);
}

static void test_bilinear(th_suite *s) {
    for (int a = 0; a < 2; a++) {
        run_bilinear(s, CDZ_DTYPE_F32, 2, 3, 7, 5, 16, 9, a, 0, 0);   /* up */
        run_bilinear(s, CDZ_DTYPE_F32, 2, 3, 16, 16, 5, 3, a, 0, 0); /* down */
        run_bilinear(s, CDZ_DTYPE_F16, 1, 2, 7, 5, 16, 9, a, 0, 0);
        run_bilinear(s, CDZ_DTYPE_BF16, 1, 2, 16, 16, 5, 3, a, 0, 0);
        run_bilinear(s, CDZ_DTYPE_F32, 1, 2, 1, 1, 3, 4, a, 0, 0);   /* from one pixel */
        run_bilinear(s, CDZ_DTYPE_F32, 1, 2, 6, 7, 1, 1, a, 0, 0);   /* to one pixel */
        run_bilinear(s, CDZ_DTYPE_F32, 1, 3, 6, 7, 6, 7, a, 0, 0);   /* same size */
        run_bilinear(s, CDZ_DTYPE_F32, 1, 2, 33, 20, 64, 41, a, 0, 0); /* src ~ 20: fma matters */
    }
    /* scale_factor given: torch uses 1/scale, not in/out (5*2.3 -> 11, 7*1.5 -> 10) */
    run_bilinear(s, CDZ_DTYPE_F32, 1, 2, 5, 7, 11, 10, false, 2.3, 1.5);
    run_bilinear(s, CDZ_DTYPE_F32, 2, 4, 32, 32, 64, 64, false, 2.0, 2.0);
    run_bilinear(s, CDZ_DTYPE_F32, 1, 2, 5, 7, 11, 10, true, 2.3, 1.5); /* ignored */
    if (th_begin(s, "upsample_bilinear", "scale_factor vs sizes differ")) {
        /* 5 -> 11 with scale 2.3 must differ from 5 -> 11 derived (5/11): proves the path */
        cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 1, 5, 1}, -2, 2);
        cdz_tensor y1 = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 1, 11, 1});
        cdz_tensor y2 = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 1, 11, 1});
        th_ok(s, "scale", cdz_upsample_bilinear(s->cpu, &x, &y1, false, 2.3, 0));
        th_ok(s, "sizes", cdz_upsample_bilinear(s->cpu, &x, &y2, false, 0, 0));
        th_check(s, "outputs differ", memcmp(y1.data, y2.data, 11 * sizeof(float)) != 0,
                 "1/2.3 and 5/11 give different source indices");
        th_end(s);
    }
    if (th_begin(s, "upsample_bilinear", "error paths")) {
        cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 4, 4}, -1, 1);
        cdz_tensor y3 = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 8, 8});
        th_expect_status(s, "3-d y", cdz_upsample_bilinear(s->cpu, &x, &y3, false, 0, 0),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor yc = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 3, 8, 8});
        th_expect_status(s, "C changes", cdz_upsample_bilinear(s->cpu, &x, &yc, false, 0, 0),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor y0 = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 0, 8});
        th_expect_status(s, "Ho = 0", cdz_upsample_bilinear(s->cpu, &x, &y0, false, 0, 0),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 4, (int64_t[]){1, 2, 8, 8});
        th_expect_status(s, "NaN scale", cdz_upsample_bilinear(s->cpu, &x, &y, false, NAN, 0),
                         CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor xt = x;
        xt.stride[2] = 1;
        xt.stride[3] = 4;
        th_expect_status(s, "strided x", cdz_upsample_bilinear(s->cpu, &xt, &y, false, 0, 0),
                         CDZ_STATUS_INVALID_ARGUMENT);
        th_end(s);
    }
}

/* ---------------------------------------------------------------- global_avg_pool */

static void run_gap(th_suite *s, cdz_dtype dt, int64_t n, int64_t c, int64_t h, int64_t w, bool keep) {
    if (!th_begin(s, "global_avg_pool", "%s [%lld,%lld,%lld,%lld] -> %s", cdz_dtype_name(dt),
                  (long long)n, (long long)c, (long long)h, (long long)w, keep ? "[N,C,1,1]" : "[N,C]"))
        return;
    cdz_tensor x = th_rand(s, dt, 4, (int64_t[]){n, c, h, w}, -1.f, 3.f);
    cdz_tensor y = keep ? th_empty(s, dt, 4, (int64_t[]){n, c, 1, 1}) : th_empty(s, dt, 2, (int64_t[]){n, c});
    double *ref = th_alloc_f64(s, (size_t)(n * c) + 1);
    for (int64_t p = 0; p < n * c; p++) {
        double acc = 0;
        for (int64_t i = 0; i < h * w; i++) acc += th_get(&x, p * h * w + i);
        ref[p] = acc / (double)(h * w);
    }
    const char *why = dt == CDZ_DTYPE_F32 ? "double sum, one f32 rounding"
                    : dt == CDZ_DTYPE_F16 ? "one f16 rounding (2^-11)" : "one bf16 rounding (2^-8)";
    double tol = dt == CDZ_DTYPE_F32 ? 1e-7 : dt == CDZ_DTYPE_F16 ? 1e-3 : 8e-3;
    if (th_ok(s, "cpu", cdz_global_avg_pool(s->cpu, &x, &y))) th_compare_f64(s, "cpu-vs-f64", &y, ref, tol, why);
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dx = th_to_cuda(s, &x), dy = th_cuda_like(s, &y);
        if (th_ok(s, "cuda", cdz_global_avg_pool(s->cuda, &dx, &dy)))
            th_compare(s, "cuda-vs-cpu", &dy, &y, dt == CDZ_DTYPE_F32 ? 1e-7 : 1e-2,
                       "double sums in another order; at most one output ulp apart");
    }
    th_end(s);
}

static void test_gap(th_suite *s) {
    for (int t = 0; t < 3; t++) {
        run_gap(s, kFloatTypes[t], 2, 3, 7, 5, false);
        run_gap(s, kFloatTypes[t], 2, 3, 7, 5, true);
    }
    run_gap(s, CDZ_DTYPE_F32, 1, 1, 1, 1, false);
    run_gap(s, CDZ_DTYPE_F32, 2, 33, 64, 65, true);
    if (th_begin(s, "global_avg_pool", "error paths")) {
        cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 4, (int64_t[]){2, 3, 4, 4}, -1, 1);
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){2, 4});
        th_expect_status(s, "y [2,4] for C=3", cdz_global_avg_pool(s->cpu, &x, &y), CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor y3 = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 3, 1});
        th_expect_status(s, "y [2,3,1]", cdz_global_avg_pool(s->cpu, &x, &y3), CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor x3 = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){2, 3, 4}, -1, 1);
        cdz_tensor y2 = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){2, 3});
        th_expect_status(s, "3-d x", cdz_global_avg_pool(s->cpu, &x3, &y2), CDZ_STATUS_INVALID_ARGUMENT);
        th_end(s);
    }
}

void test_ops_layout(th_suite *s) {
    test_permute(s);
    test_slice(s);
    test_concat(s);
    test_pad(s);
    test_bilinear(s);
    test_gap(s);
}
