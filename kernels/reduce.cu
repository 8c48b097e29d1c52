/*
 * reduce.cu: CUDA backends of reduce.h.
 *
 * x is viewed as [outer, n, inner]; every output (o, i) reduces n values.
 *  - inner == 1 (last dim, or every element): rows_kernel, TPR threads per row (1..32 for
 *    short rows, about one 16-value chunk each; the whole 256-thread block for long ones).
 *  - inner > 1: cols_kernel, a (BX, BY) block: tx walks BX neighbouring outputs (coalesced),
 *    ty splits n; n <= 4 (stereo channels): small_cols_kernel, 8 outputs per thread.
 *  - When outputs are too few to fill the GPU, n is split into S segments per output: each
 *    block writes (count, mean, M2) to the workspace and finish_kernel merges the S of each.
 * Statistics are merged with Chan et al.'s pairwise formula in double (see reduce.h).
 */
#include <stdint.h>

#include "check.h"
#include "ctx.h"
#include "reduce.h"

#define ITEMS 16 /* values a thread holds in registers per chunk */
#define BLOCK 256

enum { KIND_SUM = 0, KIND_MEAN = 1, KIND_STD = 2, KIND_MEAN_STD = 3 };

struct stats {
    double n, mean, m2;
};

struct reduce_out {
    int kind;
    double corr;      /* 1 for the unbiased std */
    float *out0;      /* sum / mean / std */
    float *out1;      /* std of mean_std */
    stats *partial;   /* [rows][S] when split */
};

static __device__ __forceinline__ stats stats_empty() {
    stats s;
    s.n = 0;
    s.mean = 0;
    s.m2 = 0;
    return s;
}

/* Chan, Golub, LeVeque: combine two groups' (count, mean, M2). */
static __device__ __forceinline__ stats stats_merge(stats a, stats b) {
    if (a.n == 0) return b;
    if (b.n == 0) return a;
    stats r;
    r.n = a.n + b.n;
    double d = b.mean - a.mean, f = b.n / r.n;
    r.mean = a.mean + d * f;
    r.m2 = a.m2 + b.m2 + d * d * a.n * f;
    return r;
}

/* 1/c for chunk counts: no division (a long multi-instruction sequence in double) per chunk. */
__constant__ double k_recip[ITEMS + 1] = {0.0,        1.0,        1.0 / 2,  1.0 / 3,  1.0 / 4,
                                          1.0 / 5,    1.0 / 6,    1.0 / 7,  1.0 / 8,  1.0 / 9,
                                          1.0 / 10,   1.0 / 11,   1.0 / 12, 1.0 / 13, 1.0 / 14,
                                          1.0 / 15,   1.0 / 16};

/* Stats of the first c values of v: fp32 mean, then fp32 deviations from it (small, so
 * cancellation-free), corrected in double so the chunk mean carries the deviations' sum. */
template <int K>
static __device__ __forceinline__ stats chunk_stats(const float (&v)[K], int c) {
    stats r = stats_empty();
    if (c <= 0) return r;
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < K; k++)
        if (k < c) s += v[k];
    const double rc = k_recip[c];
    float mf = s * (float)rc; /* only a shift: its rounding is corrected below */
    r.n = c;
    if (!isfinite(mf)) { /* inf / NaN inputs: keep them visible */
        r.mean = mf;
        r.m2 = __longlong_as_double(0x7ff8000000000000LL);
        return r;
    }
    float sd = 0.f, sd2 = 0.f;
#pragma unroll
    for (int k = 0; k < K; k++) {
        if (k < c) {
            float d = v[k] - mf;
            sd += d;
            sd2 += d * d;
        }
    }
    r.mean = (double)mf + (double)sd * rc;
    double m2 = (double)sd2 - (double)sd * (double)sd * rc;
    r.m2 = m2 < 0 ? 0 : m2; /* keeps NaN */
    return r;
}

/* The first lane of each group of W lanes ends with the merge of the group's stats (fixed
 * order: deterministic). */
template <int W>
static __device__ __forceinline__ stats group_merge(stats s) {
#pragma unroll
    for (int off = W / 2; off > 0; off >>= 1) {
        stats o;
        o.n = __shfl_down_sync(0xffffffffu, s.n, off, W);
        o.mean = __shfl_down_sync(0xffffffffu, s.mean, off, W);
        o.m2 = __shfl_down_sync(0xffffffffu, s.m2, off, W);
        s = stats_merge(s, o);
    }
    return s;
}
static __device__ __forceinline__ stats warp_merge(stats s) { return group_merge<32>(s); }

static __device__ void write_final(const reduce_out &o, int64_t row, stats s) {
    const float qnan = __int_as_float(0x7fc00000);
    float mean = s.n > 0 ? (float)s.mean : qnan;
    if (o.kind == KIND_SUM) {
        o.out0[row] = (float)(s.mean * s.n); /* 0 for n == 0 */
        return;
    }
    if (o.kind == KIND_MEAN) {
        o.out0[row] = mean;
        return;
    }
    double div = s.n - o.corr;
    double m2 = s.m2 < 0 ? 0 : s.m2;
    float sd = div > 0 ? (float)sqrt(m2 / div) : qnan; /* n = 1 unbiased: NaN like torch */
    if (o.kind == KIND_STD) {
        o.out0[row] = sd;
    } else {
        o.out0[row] = mean;
        o.out1[row] = sd;
    }
}

static __device__ __forceinline__ void emit(const reduce_out &o, int64_t row, int S, int seg,
                                            stats s) {
    if (S == 1) write_final(o, row, s);
    else o.partial[row * S + seg] = s;
}

/* Contiguous rows: TPR threads per row (1..32, or the whole block), BLOCK / TPR rows per
 * block, blocks ordered (row block, segment). Short rows get few threads each, so a row
 * costs few merges. */
template <int TPR>
static __global__ void __launch_bounds__(BLOCK)
    rows_kernel(const float *__restrict__ x, int64_t rows, int64_t n, int S, int64_t seg_len,
                reduce_out out) {
    const int rpb = BLOCK / TPR;
    __shared__ stats sh[BLOCK / 32];
    int seg = (int)(blockIdx.x % (unsigned)S);
    int64_t row = (int64_t)(blockIdx.x / (unsigned)S) * rpb + threadIdx.x / TPR;
    int t = threadIdx.x % TPR;
    bool valid = row < rows;
    int64_t k0 = (int64_t)seg * seg_len, k1 = k0 + seg_len < n ? k0 + seg_len : n;
    stats acc = stats_empty();
    if (valid) {
        const float *p = x + row * n;
        for (int64_t base = k0 + t; base < k1; base += (int64_t)TPR * ITEMS) {
            float v[ITEMS];
            int c = 0;
#pragma unroll
            for (int k = 0; k < ITEMS; k++) {
                int64_t pos = base + (int64_t)k * TPR;
                v[k] = 0.f;
                if (pos < k1) {
                    v[k] = p[pos];
                    c = k + 1;
                }
            }
            acc = stats_merge(acc, chunk_stats(v, c));
        }
    }
    acc = group_merge<(TPR < 32 ? TPR : 32)>(acc);
    if (TPR > 32) { /* the whole block is one row */
        int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
        if (lane == 0) sh[warp] = acc;
        __syncthreads();
        if (warp == 0) {
            acc = lane < BLOCK / 32 ? sh[lane] : stats_empty();
            acc = warp_merge(acc);
        }
    }
    if (t == 0 && valid) emit(out, row, S, seg, acc);
}

/* Strided columns: block (BX, BY); blocks ordered (outer, column tile, segment). */
static __global__ void __launch_bounds__(BLOCK)
    cols_kernel(const float *__restrict__ x, int64_t n, int64_t inner, int64_t tiles, int S,
                int64_t seg_len, reduce_out out) {
    __shared__ stats sh[BLOCK];
    const int bx = blockDim.x, by = blockDim.y, tx = threadIdx.x, ty = threadIdx.y;
    int seg = (int)(blockIdx.x % (unsigned)S);
    int64_t rest = blockIdx.x / (unsigned)S;
    int64_t tile = rest % tiles, o = rest / tiles;
    int64_t i = tile * bx + tx;
    bool valid = i < inner;
    int64_t k0 = (int64_t)seg * seg_len, k1 = k0 + seg_len < n ? k0 + seg_len : n;
    stats acc = stats_empty();
    if (valid) {
        const float *p = x + o * n * inner + i;
        for (int64_t base = k0 + ty; base < k1; base += (int64_t)by * ITEMS) {
            float v[ITEMS];
            int c = 0;
#pragma unroll
            for (int k = 0; k < ITEMS; k++) {
                int64_t pos = base + (int64_t)k * by;
                v[k] = 0.f;
                if (pos < k1) {
                    v[k] = p[pos * inner];
                    c = k + 1;
                }
            }
            acc = stats_merge(acc, chunk_stats(v, c));
        }
    }
    sh[ty * bx + tx] = acc;
    __syncthreads();
    for (int step = by / 2; step > 0; step >>= 1) {
        if (ty < step) sh[ty * bx + tx] = stats_merge(sh[ty * bx + tx], sh[(ty + step) * bx + tx]);
        __syncthreads();
    }
    if (ty == 0 && valid) emit(out, o * inner + i, S, seg, sh[tx]);
}

/* Strided dims of at most SMALL_N values (stereo mix.mean(0)): one output per 1..4 loads is
 * too little memory in flight per thread, so each thread takes SMALL_COLS outputs and issues
 * all their loads before any arithmetic. I: 32-bit index math when x fits. */
#define SMALL_N 4
#define SMALL_COLS 8
template <typename I>
static __global__ void __launch_bounds__(BLOCK)
    small_cols_kernel(const float *__restrict__ x, I total, I n, I inner, reduce_out out) {
    float v[SMALL_COLS][SMALL_N];
    I e0 = (I)blockIdx.x * (BLOCK * SMALL_COLS) + threadIdx.x;
#pragma unroll
    for (int j = 0; j < SMALL_COLS; j++) {
        I e = e0 + (I)j * BLOCK;
        I o = e / inner, i = e - o * inner;
        const float *p = x + o * n * inner + i;
#pragma unroll
        for (int k = 0; k < SMALL_N; k++) v[j][k] = (e < total && (I)k < n) ? p[(I)k * inner] : 0.f;
    }
#pragma unroll
    for (int j = 0; j < SMALL_COLS; j++) {
        I e = e0 + (I)j * BLOCK;
        if (e < total) write_final(out, (int64_t)e, chunk_stats(v[j], (int)n));
    }
}

/* One warp per output: merge its S partial stats in segment order. */
static __global__ void __launch_bounds__(BLOCK)
    finish_kernel(int64_t rows, int S, reduce_out out) {
    int64_t row = (int64_t)blockIdx.x * (BLOCK / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    stats acc = stats_empty();
    if (row < rows)
        for (int s = lane; s < S; s += 32) acc = stats_merge(acc, out.partial[row * S + s]);
    acc = warp_merge(acc);
    if (lane == 0 && row < rows) write_final(out, row, acc);
}

/* ---------------------------------------------------------------- launcher */

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Segments per output: enough blocks to fill the GPU, each segment >= 2 chunks per thread,
 * and the partials must fit the workspace. */
static int pick_segments(const cdz_ctx *ctx, int64_t blocks, int64_t rows, int64_t n,
                         int64_t per_pass) {
    int64_t target = (int64_t)(ctx->sm_count > 0 ? ctx->sm_count : 80) * 8;
    if (blocks >= target || n <= 2 * per_pass) return 1;
    int64_t s = ceil_div(target, blocks);
    int64_t by_len = ceil_div(n, 2 * per_pass);
    if (s > by_len) s = by_len;
    int64_t fit = (int64_t)(ctx->workspace_bytes / sizeof(stats)) / (rows > 0 ? rows : 1);
    if (s > fit) s = fit;
    if (s > 4096) s = 4096;
    return s < 2 ? 1 : (int)s;
}

static cdz_status reduce_cuda(cdz_ctx *ctx, const cdz_tensor *x, float *out0, float *out1,
                              int32_t dim, int kind, bool unbiased, const char *op) {
    int64_t outer = 1, n, inner = 1;
    if (dim == CDZ_REDUCE_ALL) {
        n = cdz_tensor_numel(x);
    } else {
        int d = dim < 0 ? dim + x->ndim : dim;
        for (int i = 0; i < d; i++) outer *= x->shape[i];
        for (int i = d + 1; i < x->ndim; i++) inner *= x->shape[i];
        n = x->shape[d];
    }
    int64_t rows = outer * inner;
    if (rows == 0) return CDZ_STATUS_OK;
    reduce_out out;
    out.kind = kind;
    out.corr = unbiased ? 1.0 : 0.0;
    out.out0 = out0;
    out.out1 = out1;
    out.partial = NULL;
    const float *px = (const float *)x->data;
    int S;
    int64_t blocks;
    if (inner == 1) {
        int tpr = 1; /* ~1 chunk per thread for short rows, a block for long ones */
        while (tpr < 32 && (int64_t)tpr * ITEMS < n) tpr *= 2;
        if (n > 32 * ITEMS * 4) tpr = BLOCK;
        int64_t row_blocks = ceil_div(rows, BLOCK / tpr);
        S = pick_segments(ctx, row_blocks, rows, n, (int64_t)tpr * ITEMS);
        blocks = row_blocks * S;
        if (blocks > INT32_MAX)
            return cdz_error_set(CDZ_STATUS_TOO_LARGE, "%s: %lld rows are too many", op,
                                 (long long)rows);
        if (S > 1) CDZ_TRY(cdz_ctx_workspace(ctx, (size_t)rows * S * sizeof(stats), op,
                                             (void **)&out.partial));
        int64_t seg_len = ceil_div(n, S);
        switch (tpr) {
#define ROWS_CASE(T)                                                                           \
    case T:                                                                                    \
        rows_kernel<T><<<(unsigned)blocks, BLOCK, 0, ctx->stream>>>(px, rows, n, S, seg_len, out); \
        break;
            ROWS_CASE(1) ROWS_CASE(2) ROWS_CASE(4) ROWS_CASE(8) ROWS_CASE(16) ROWS_CASE(32)
            ROWS_CASE(BLOCK)
#undef ROWS_CASE
        }
        CDZ_LAUNCH_CHECK(ctx);
    } else if (n <= SMALL_N) {
        S = 1;
        int64_t numel = rows * n, sblocks = ceil_div(rows, (int64_t)BLOCK * SMALL_COLS);
        if (sblocks > INT32_MAX)
            return cdz_error_set(CDZ_STATUS_TOO_LARGE, "%s: %lld outputs are too many", op,
                                 (long long)rows);
        /* e + BLOCK * SMALL_COLS and every x offset must fit the 32-bit variant */
        if (numel + (int64_t)BLOCK * SMALL_COLS * 2 < INT32_MAX)
            small_cols_kernel<uint32_t><<<(unsigned)sblocks, BLOCK, 0, ctx->stream>>>(
                px, (uint32_t)rows, (uint32_t)n, (uint32_t)inner, out);
        else
            small_cols_kernel<int64_t><<<(unsigned)sblocks, BLOCK, 0, ctx->stream>>>(px, rows, n, inner, out);
        CDZ_LAUNCH_CHECK(ctx);
    } else {
        int by = 1; /* split n over ty only when each ty gets a full chunk or more */
        while (by < 8 && (int64_t)by * 2 * ITEMS <= n) by *= 2;
        int bx = BLOCK / by;
        while (bx > 32 && bx / 2 >= inner) bx /= 2; /* few columns: fewer idle lanes */
        int64_t tiles = ceil_div(inner, bx);
        int64_t col_blocks = outer * tiles;
        S = pick_segments(ctx, col_blocks, rows, n, (int64_t)by * ITEMS);
        blocks = col_blocks * S;
        if (blocks > INT32_MAX)
            return cdz_error_set(CDZ_STATUS_TOO_LARGE, "%s: %lld outputs are too many", op,
                                 (long long)rows);
        if (S > 1) CDZ_TRY(cdz_ctx_workspace(ctx, (size_t)rows * S * sizeof(stats), op,
                                             (void **)&out.partial));
        int64_t seg_len = ceil_div(n, S);
        cols_kernel<<<(unsigned)blocks, dim3(bx, by), 0, ctx->stream>>>(px, n, inner, tiles, S,
                                                                        seg_len, out);
        CDZ_LAUNCH_CHECK(ctx);
    }
    if (S > 1) {
        int64_t fblocks = ceil_div(rows, BLOCK / 32);
        if (fblocks > INT32_MAX)
            return cdz_error_set(CDZ_STATUS_TOO_LARGE, "%s: %lld outputs are too many", op,
                                 (long long)rows);
        finish_kernel<<<(unsigned)fblocks, BLOCK, 0, ctx->stream>>>(rows, S, out);
        CDZ_LAUNCH_CHECK(ctx);
    }
    return CDZ_STATUS_OK;
}

extern "C" cdz_status cdz_sum_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y,
                                   int32_t dim) {
    return reduce_cuda(ctx, x, (float *)y->data, NULL, dim, KIND_SUM, false, "sum");
}

extern "C" cdz_status cdz_mean_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y,
                                    int32_t dim) {
    return reduce_cuda(ctx, x, (float *)y->data, NULL, dim, KIND_MEAN, false, "mean");
}

extern "C" cdz_status cdz_std_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y,
                                   int32_t dim, bool unbiased) {
    return reduce_cuda(ctx, x, (float *)y->data, NULL, dim, KIND_STD, unbiased, "std");
}

extern "C" cdz_status cdz_mean_std_cuda(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *mean,
                                        cdz_tensor *std, int32_t dim, bool unbiased) {
    return reduce_cuda(ctx, x, (float *)mean->data, (float *)std->data, dim, KIND_MEAN_STD,
                       unbiased, "mean_std");
}
