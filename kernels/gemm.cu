/*
 * gemm.cu: cdz_linear / cdz_matmul on cuBLASLt.
 *
 * Row-major <-> column-major: a row-major matrix stored [r, c] is, read column-major, the
 * matrix [c, r] with leading dimension c, i.e. its transpose. So the row-major product
 * C[m, n] = op(A) op(B) is computed as the column-major product C^T[n, m] =
 * op(B)^T op(A)^T, with cuBLASLt's "A" being the user's B and its "B" the user's A. The
 * bias (one value per output feature n) is then per row of cuBLASLt's D, which is what the
 * BIAS epilogue adds. For linear (w stored [N, K]) this is the "TN" case, the one every
 * cuBLASLt kernel family supports best.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "check.h" // defines: CDZ_CUDA_CHECK, CDZ_CUBLAS_CHECK, CDZ_LAUNCH_CHECK, CDZ_TRY
#include "ctx.h"   // defines: struct cdz_ctx, cdz_ctx_workspace
#include "gemm.h"  // defines: cdz_linear_cuda, cdz_matmul_cuda

#define GEMM_WORKSPACE_MAX ((size_t)32 << 20) /* what cuBLASLt asks for on Hopper */
#define GEMM_CACHE_SIZE 128

/* ------------------------------------------------------------------ small kernels */

static __device__ __forceinline__ float ld_f(const float *p, int64_t i) { return p[i]; }
static __device__ __forceinline__ float ld_f(const __half *p, int64_t i) { return __half2float(p[i]); }
static __device__ __forceinline__ float ld_f(const __nv_bfloat16 *p, int64_t i) {
    return __bfloat162float(p[i]);
}
static __device__ __forceinline__ void st_f(float *p, int64_t i, float v) { p[i] = v; }
static __device__ __forceinline__ void st_f(__half *p, int64_t i, float v) { p[i] = __float2half_rn(v); }
static __device__ __forceinline__ void st_f(__nv_bfloat16 *p, int64_t i, float v) {
    p[i] = __float2bfloat16_rn(v);
}

/* c[r, j] = beta * c[r, j] + bias[j], c not read when beta == 0 (bias may be NULL). Used
 * after a GEMM whose bias epilogue cuBLASLt refused (beta = 1) and for K == 0. Rows go
 * over blocks and columns over threads, so there is no per-element division. */
template <typename TC, typename TB>
static __global__ void beta_bias_kernel(TC *c, const TB *bias, int64_t rows, int64_t n,
                                        float beta) {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        TC *row = c + r * n;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
            float v = beta == 0.0f ? 0.0f : beta * ld_f(row, j);
            if (bias) v += ld_f(bias, j);
            st_f(row, j, v);
        }
    }
}

template <typename TC>
static cdz_status launch_beta_bias_t(cdz_ctx *ctx, TC *c, const void *bias, cdz_dtype bias_dt,
                                     int64_t rows, int64_t n, float beta) {
    if (rows == 0 || n == 0) return CDZ_STATUS_OK;
    int threads = n >= 256 ? 256 : (int)((n + 31) / 32 * 32);
    int64_t cap = (int64_t)ctx->sm_count * 32;
    unsigned blocks = (unsigned)(rows < cap ? rows : cap);
    if (!bias || bias_dt == CDZ_DTYPE_F32)
        beta_bias_kernel<<<blocks, threads, 0, ctx->stream>>>(c, (const float *)bias, rows, n, beta);
    else if (bias_dt == CDZ_DTYPE_F16)
        beta_bias_kernel<<<blocks, threads, 0, ctx->stream>>>(c, (const __half *)bias, rows, n, beta);
    else
        beta_bias_kernel<<<blocks, threads, 0, ctx->stream>>>(c, (const __nv_bfloat16 *)bias,
                                                              rows, n, beta);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

static cdz_status launch_beta_bias(cdz_ctx *ctx, void *c, cdz_dtype c_dt, const void *bias,
                                   cdz_dtype bias_dt, int64_t rows, int64_t n, float beta) {
    switch (c_dt) {
    case CDZ_DTYPE_F16: return launch_beta_bias_t(ctx, (__half *)c, bias, bias_dt, rows, n, beta);
    case CDZ_DTYPE_BF16:
        return launch_beta_bias_t(ctx, (__nv_bfloat16 *)c, bias, bias_dt, rows, n, beta);
    default: return launch_beta_bias_t(ctx, (float *)c, bias, bias_dt, rows, n, beta);
    }
}

/* dst[i] = src[i] converted (the bias, into the output's dtype for the epilogue). */
static __global__ void convert_kernel(const void *src, cdz_dtype sdt, void *dst, cdz_dtype ddt,
                                      int64_t n) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        float v = sdt == CDZ_DTYPE_F16    ? ld_f((const __half *)src, i)
                  : sdt == CDZ_DTYPE_BF16 ? ld_f((const __nv_bfloat16 *)src, i)
                                          : ld_f((const float *)src, i);
        if (ddt == CDZ_DTYPE_F16) st_f((__half *)dst, i, v);
        else if (ddt == CDZ_DTYPE_BF16) st_f((__nv_bfloat16 *)dst, i, v);
        else st_f((float *)dst, i, v);
    }
}

/* ------------------------------------------------------------------ cuBLASLt problem */

/* One column-major cuBLASLt problem D[d_rows, d_cols] = op(A) op(B) (+ bias), strided
 * batched. Zeroed before filling: it is also the cache key (compared with memcmp). */
typedef struct lt_problem {
    int32_t device;
    int32_t compute;            /* cublasComputeType_t */
    int32_t ab_type, cd_type;   /* cudaDataType_t */
    int32_t bias_type;          /* cudaDataType_t, -1: no bias epilogue */
    int32_t op_a, op_b;         /* cublasOperation_t */
    int32_t batch;
    uint64_t a_rows, a_cols, b_rows, b_cols, d_rows, d_cols;
    int64_t lda, ldb, ldd;
    int64_t stride_a, stride_b, stride_d;
    uint32_t align_a, align_b, align_d, align_bias;
    uint64_t ws_limit;
} lt_problem;

typedef struct lt_cache_entry {
    bool used;
    bool found; /* false: cuBLASLt offers no algorithm (remembered too) */
    lt_problem key;
    cublasLtMatmulAlgo_t algo;
    size_t ws_size;
} lt_cache_entry;

/* Heuristic queries cost tens of microseconds, comparable to a small GEMM, so their
 * results are kept. Process-wide (algos are valid for any handle on the same device). */
static lt_cache_entry g_lt_cache[GEMM_CACHE_SIZE];
static unsigned g_lt_cache_next;
static pthread_mutex_t g_lt_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static bool lt_cache_get(const lt_problem *key, lt_cache_entry *out) {
    bool hit = false;
    pthread_mutex_lock(&g_lt_cache_lock);
    for (int i = 0; i < GEMM_CACHE_SIZE; i++) {
        if (g_lt_cache[i].used && memcmp(&g_lt_cache[i].key, key, sizeof *key) == 0) {
            memcpy(out, &g_lt_cache[i], sizeof *out);
            hit = true;
            break;
        }
    }
    pthread_mutex_unlock(&g_lt_cache_lock);
    return hit;
}

static void lt_cache_put(const lt_cache_entry *e) {
    pthread_mutex_lock(&g_lt_cache_lock);
    memcpy(&g_lt_cache[g_lt_cache_next % GEMM_CACHE_SIZE], e, sizeof *e);
    g_lt_cache_next++;
    pthread_mutex_unlock(&g_lt_cache_lock);
}

static cudaDataType_t cuda_type(cdz_dtype dt) {
    return dt == CDZ_DTYPE_F16 ? CUDA_R_16F : dt == CDZ_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* Alignment cuBLASLt may assume for a pointer and every batch offset from it (<= 256). */
static uint32_t align_of(const void *p, int64_t stride_bytes) {
    uint64_t x = (uint64_t)(uintptr_t)p | (uint64_t)stride_bytes | 256u;
    return (uint32_t)(x & (~x + 1));
}

static cdz_status layout_init(cublasLtMatrixLayoutOpaque_t *l, int32_t type, uint64_t rows,
                              uint64_t cols, int64_t ld, int32_t batch, int64_t stride) {
    CDZ_CUBLAS_CHECK(cublasLtMatrixLayoutInit(l, (cudaDataType_t)type, rows, cols, ld));
    if (batch > 1) {
        CDZ_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                          &batch, sizeof batch));
        CDZ_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
            l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
    }
    return CDZ_STATUS_OK;
}

/* Run one problem. *no_algo is set (and nothing queued) when cuBLASLt has no algorithm;
 * the caller then retries without the bias epilogue or reports UNSUPPORTED. */
static cdz_status lt_run(cdz_ctx *ctx, const lt_problem *p, const void *A, const void *B,
                         void *D, const void *bias, float alpha, float beta, void *ws,
                         bool *no_algo) {
    *no_algo = false;
    cublasLtMatmulDescOpaque_t desc;
    CDZ_CUBLAS_CHECK(cublasLtMatmulDescInit(&desc, (cublasComputeType_t)p->compute, CUDA_R_32F));
    int32_t op_a = p->op_a, op_b = p->op_b;
    CDZ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(&desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a,
                                                    sizeof op_a));
    CDZ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(&desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b,
                                                    sizeof op_b));
    if (p->bias_type >= 0) {
        uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
        int32_t bt = p->bias_type;
        CDZ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(&desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                        sizeof epi));
        CDZ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(&desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                        &bias, sizeof bias));
        CDZ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(&desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                        &bt, sizeof bt));
    }
    cublasLtMatrixLayoutOpaque_t la, lb, ld;
    CDZ_TRY(layout_init(&la, p->ab_type, p->a_rows, p->a_cols, p->lda, p->batch, p->stride_a));
    CDZ_TRY(layout_init(&lb, p->ab_type, p->b_rows, p->b_cols, p->ldb, p->batch, p->stride_b));
    CDZ_TRY(layout_init(&ld, p->cd_type, p->d_rows, p->d_cols, p->ldd, p->batch, p->stride_d));

    lt_cache_entry e;
    if (!lt_cache_get(p, &e)) {
        memset(&e, 0, sizeof e);
        e.used = true;
        memcpy(&e.key, p, sizeof *p);
        cublasLtMatmulPreferenceOpaque_t pref;
        CDZ_CUBLAS_CHECK(cublasLtMatmulPreferenceInit(&pref));
        uint64_t wsl = p->ws_limit;
        CDZ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            &pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsl, sizeof wsl));
        uint32_t al[3] = {p->align_a, p->align_b, p->align_d};
        CDZ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            &pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], sizeof al[0]));
        CDZ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            &pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], sizeof al[1]));
        CDZ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            &pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], sizeof al[2]));
        CDZ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            &pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[2], sizeof al[2]));
        cublasLtMatmulHeuristicResult_t res;
        memset(&res, 0, sizeof res);
        int count = 0;
        cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(ctx->cublaslt, &desc, &la, &lb, &ld, &ld,
                                                           &pref, 1, &res, &count);
        /* no algorithm: NOT_SUPPORTED, or INVALID_VALUE for a bias dtype the epilogue does
         * not take (e.g. an f32 bias with an f16 output) */
        bool refused = hs == CUBLAS_STATUS_NOT_SUPPORTED ||
                       (hs == CUBLAS_STATUS_INVALID_VALUE && p->bias_type >= 0);
        if (!refused) CDZ_CUBLAS_CHECK(hs);
        e.found = hs == CUBLAS_STATUS_SUCCESS && count > 0 && res.state == CUBLAS_STATUS_SUCCESS;
        if (e.found) {
            e.algo = res.algo;
            e.ws_size = res.workspaceSize;
        }
        lt_cache_put(&e);
    }
    if (!e.found) {
        *no_algo = true;
        return CDZ_STATUS_OK;
    }
    CDZ_CUBLAS_CHECK(cublasLtMatmul(ctx->cublaslt, &desc, &alpha, A, &la, B, &lb, &beta, D, &ld, D,
                                    &ld, &e.algo, e.ws_size ? ws : NULL, e.ws_size, ctx->stream));
    return CDZ_STATUS_OK;
}

/* The row-major request, before it is mapped onto cuBLASLt. */
typedef struct gemm_req {
    const char *op;
    int64_t m, n, k;
    bool ta, tb;
    cdz_dtype ab_dt, c_dt;
    int64_t batch;                    /* strided batch (may exceed int32: split below) */
    int64_t stride_a, stride_b, stride_c; /* elements; 0 = broadcast */
    const void *a, *b;
    void *c;
    const void *bias;                 /* NULL: none */
    cdz_dtype bias_dt;
    float alpha, beta;
} gemm_req;

static cublasComputeType_t compute_type(const cdz_ctx *ctx, cdz_dtype ab_dt) {
    if (ab_dt != CDZ_DTYPE_F32) return CUBLAS_COMPUTE_32F; /* half operands: fp32 accumulate */
    /* f32 operands: TF32 only when the context allows it (see gemm.h) */
    return ctx->precision == CDZ_PRECISION_STRICT ? CUBLAS_COMPUTE_32F
                                                  : CUBLAS_COMPUTE_32F_FAST_TF32;
}

static cdz_status gemm_run(cdz_ctx *ctx, const gemm_req *r) {
    if (r->m == 0 || r->n == 0 || r->batch == 0) return CDZ_STATUS_OK;
    int64_t mn = r->m * r->n;
    if (r->k == 0) {
        /* nothing to multiply: c = beta c + bias over every batch matrix */
        if (r->stride_c == mn || r->batch == 1)
            return launch_beta_bias(ctx, r->c, r->c_dt, r->bias, r->bias_dt, r->m * r->batch, r->n,
                                    r->beta);
        return cdz_error_set(CDZ_STATUS_INTERNAL, "%s: unexpected output stride", r->op);
    }
    size_t eab = cdz_dtype_size(r->ab_dt), ec = cdz_dtype_size(r->c_dt);
    /* The epilogue takes a bias of the output's dtype only: another one is converted into
     * the end of the workspace first (f16/bf16 -> f32 is exact; f32 -> f16/bf16 rounds the
     * bias once, which the later rounding of the output dominates). */
    const void *bias = r->bias;
    cdz_dtype bias_dt = r->bias_dt;
    size_t total = ctx->workspace ? ctx->workspace_bytes : 0, bias_bytes = 0;
    if (bias && bias_dt != r->c_dt) {
        bias_bytes = ((size_t)r->n * ec + 255) / 256 * 256;
        if (bias_bytes > total) bias_bytes = 0; /* no room: the bias kernel adds it */
    }
    size_t ws_limit = (total - bias_bytes) / 256 * 256;
    if (ws_limit > GEMM_WORKSPACE_MAX) ws_limit = GEMM_WORKSPACE_MAX;
    void *ws = NULL;
    if (ws_limit + bias_bytes) CDZ_TRY(cdz_ctx_workspace(ctx, ws_limit + bias_bytes, r->op, &ws));
    if (bias_bytes) {
        void *conv = (uint8_t *)ws + ws_limit;
        int64_t want = (r->n + 255) / 256, cap = (int64_t)ctx->sm_count * 4;
        convert_kernel<<<(unsigned)(want < cap ? want : cap), 256, 0, ctx->stream>>>(
            bias, bias_dt, conv, r->c_dt, r->n);
        CDZ_LAUNCH_CHECK(ctx);
        bias = conv;
        bias_dt = r->c_dt;
    }

    lt_problem p;
    memset(&p, 0, sizeof p);
    p.device = ctx->device.index;
    p.compute = (int32_t)compute_type(ctx, r->ab_dt);
    p.ab_type = cuda_type(r->ab_dt);
    p.cd_type = cuda_type(r->c_dt);
    /* cuBLASLt "A" = user B (column-major view of row-major storage, see the top) */
    if (!r->tb) { p.op_a = CUBLAS_OP_N; p.a_rows = r->n; p.a_cols = r->k; p.lda = r->n; }
    else        { p.op_a = CUBLAS_OP_T; p.a_rows = r->k; p.a_cols = r->n; p.lda = r->k; }
    /* cuBLASLt "B" = user A */
    if (!r->ta) { p.op_b = CUBLAS_OP_N; p.b_rows = r->k; p.b_cols = r->m; p.ldb = r->k; }
    else        { p.op_b = CUBLAS_OP_T; p.b_rows = r->m; p.b_cols = r->k; p.ldb = r->m; }
    p.d_rows = r->n;
    p.d_cols = r->m;
    p.ldd = r->n;
    p.stride_a = r->stride_b;
    p.stride_b = r->stride_a;
    p.stride_d = r->stride_c;
    p.ws_limit = ws_limit;
    p.bias_type = -1;

    const int64_t chunk_max = INT32_MAX;
    for (int64_t b0 = 0; b0 < r->batch; b0 += chunk_max) {
        int64_t nbat = r->batch - b0 < chunk_max ? r->batch - b0 : chunk_max;
        const uint8_t *pa = (const uint8_t *)r->a + (size_t)(b0 * r->stride_a) * eab;
        const uint8_t *pb = (const uint8_t *)r->b + (size_t)(b0 * r->stride_b) * eab;
        uint8_t *pc = (uint8_t *)r->c + (size_t)(b0 * r->stride_c) * ec;
        p.batch = (int32_t)nbat;
        /* cuBLASLt's A is the user's B, and vice versa */
        p.align_a = align_of(pb, nbat > 1 ? r->stride_b * (int64_t)eab : 0);
        p.align_b = align_of(pa, nbat > 1 ? r->stride_a * (int64_t)eab : 0);
        p.align_d = align_of(pc, nbat > 1 ? r->stride_c * (int64_t)ec : 0);
        bool no_algo = true, bias_pending = false;
        if (bias) {
            p.bias_type = cuda_type(bias_dt);
            p.align_bias = align_of(bias, 0);
            CDZ_TRY(lt_run(ctx, &p, pb, pa, pc, bias, r->alpha, r->beta, ws, &no_algo));
            bias_pending = no_algo;
            p.bias_type = -1;
            p.align_bias = 0;
        }
        if (no_algo) CDZ_TRY(lt_run(ctx, &p, pb, pa, pc, NULL, r->alpha, r->beta, ws, &no_algo));
        if (no_algo)
            return cdz_error_set(CDZ_STATUS_UNSUPPORTED,
                                 "%s: cuBLASLt has no algorithm for %s x %s -> %s, m=%lld n=%lld "
                                 "k=%lld batch=%lld trans_a=%d trans_b=%d",
                                 r->op, cdz_dtype_name(r->ab_dt), cdz_dtype_name(r->ab_dt),
                                 cdz_dtype_name(r->c_dt), (long long)r->m, (long long)r->n,
                                 (long long)r->k, (long long)nbat, r->ta, r->tb);
        /* the epilogue was refused (e.g. a misaligned bias): add the bias here */
        if (bias_pending) {
            if (nbat > 1 && r->stride_c != mn)
                return cdz_error_set(CDZ_STATUS_INTERNAL, "%s: unexpected output stride", r->op);
            CDZ_TRY(launch_beta_bias(ctx, pc, r->c_dt, bias, bias_dt, r->m * nbat, r->n, 1.0f));
        }
    }
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------ entries */

extern "C" cdz_status cdz_linear_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                                      const cdz_tensor *bias, cdz_tensor *y) {
    CDZ_CUDA_CHECK(cudaSetDevice(ctx->device.index));
    gemm_req r;
    memset(&r, 0, sizeof r);
    r.op = "linear";
    r.k = x->shape[x->ndim - 1];
    r.n = w->shape[0];
    r.m = r.n > 0 ? cdz_tensor_numel(y) / r.n : 0;
    r.ta = false;
    r.tb = true;
    r.ab_dt = x->dtype;
    r.c_dt = y->dtype;
    r.batch = 1;
    r.a = x->data;
    r.b = w->data;
    r.c = y->data;
    r.bias = bias ? bias->data : NULL;
    r.bias_dt = bias ? bias->dtype : CDZ_DTYPE_F32;
    r.alpha = 1.0f;
    r.beta = 0.0f;
    return gemm_run(ctx, &r);
}

/* Batch dims are grouped so each group is one strided-batched call: the longest run of
 * trailing batch dims over which a is either full or broadcast throughout, and b too,
 * becomes the strided batch (stride m*k or 0); the dims before it are looped here. A b
 * broadcast over every batch dim with a not transposed folds the batch into M instead
 * (one bigger GEMM: a [B, M, K] x b [K, N] is a [B*M, K] x b [K, N]). */
extern "C" cdz_status cdz_matmul_cuda(cdz_ctx *ctx, const cdz_tensor *a, const cdz_tensor *b,
                                      cdz_tensor *c, bool trans_a, bool trans_b, float alpha,
                                      float beta) {
    CDZ_CUDA_CHECK(cudaSetDevice(ctx->device.index));
    gemm_req r;
    memset(&r, 0, sizeof r);
    r.op = "matmul";
    r.m = c->shape[c->ndim - 2];
    r.n = c->shape[c->ndim - 1];
    r.k = a->shape[a->ndim - (trans_a ? 2 : 1)];
    r.ta = trans_a;
    r.tb = trans_b;
    r.ab_dt = a->dtype;
    r.c_dt = c->dtype;
    r.alpha = alpha;
    r.beta = beta;
    r.bias = NULL;
    r.bias_dt = CDZ_DTYPE_F32;

    /* c's batch dims of size > 1, with whether a / b are full (1) or broadcast (0) there,
     * and a's / b's strides (in matrices) over them */
    int nb = c->ndim - 2, nd = 0;
    int64_t size[CDZ_MAX_DIMS], sa[CDZ_MAX_DIMS], sb[CDZ_MAX_DIMS];
    bool fa[CDZ_MAX_DIMS], fb[CDZ_MAX_DIMS];
    int64_t ra = 1, rb = 1, batch = 1;
    int64_t rev_size[CDZ_MAX_DIMS], rev_sa[CDZ_MAX_DIMS], rev_sb[CDZ_MAX_DIMS];
    bool rev_fa[CDZ_MAX_DIMS], rev_fb[CDZ_MAX_DIMS];
    for (int i = nb - 1; i >= 0; i--) {
        int ia = i - (nb - (a->ndim - 2)), ib = i - (nb - (b->ndim - 2));
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        batch *= c->shape[i];
        if (c->shape[i] != 1) {
            rev_size[nd] = c->shape[i];
            rev_fa[nd] = da != 1;
            rev_fb[nd] = db != 1;
            rev_sa[nd] = da != 1 ? ra : 0;
            rev_sb[nd] = db != 1 ? rb : 0;
            nd++;
        }
        ra *= da;
        rb *= db;
    }
    for (int i = 0; i < nd; i++) { /* outermost first */
        size[i] = rev_size[nd - 1 - i];
        fa[i] = rev_fa[nd - 1 - i];
        fb[i] = rev_fb[nd - 1 - i];
        sa[i] = rev_sa[nd - 1 - i];
        sb[i] = rev_sb[nd - 1 - i];
    }
    if (batch == 0 || r.m == 0 || r.n == 0) return CDZ_STATUS_OK;

    int64_t mk = r.m * r.k, kn = r.k * r.n, mn = r.m * r.n;
    size_t ea = cdz_dtype_size(a->dtype), ec = cdz_dtype_size(c->dtype);

    bool b_all_bcast = true;
    for (int i = 0; i < nd; i++) b_all_bcast = b_all_bcast && !fb[i];
    if (nd > 0 && b_all_bcast && !trans_a) {
        bool a_all_full = true;
        for (int i = 0; i < nd; i++) a_all_full = a_all_full && fa[i];
        if (a_all_full) {
            r.m *= batch; /* a and c are contiguous [batch*m, k] and [batch*m, n] */
            r.batch = 1;
            r.a = a->data;
            r.b = b->data;
            r.c = c->data;
            return gemm_run(ctx, &r);
        }
    }

    /* inner group: trailing dims sharing the last dim's (full a, full b) pattern */
    int g0 = nd;
    while (g0 > 0 && fa[g0 - 1] == fa[nd - 1] && fb[g0 - 1] == fb[nd - 1]) g0--;
    int64_t group = 1, outer = 1;
    for (int i = g0; i < nd; i++) group *= size[i];
    for (int i = 0; i < g0; i++) outer *= size[i];
    r.batch = group;
    r.stride_a = nd > 0 && fa[nd - 1] ? mk : 0;
    r.stride_b = nd > 0 && fb[nd - 1] ? kn : 0;
    r.stride_c = mn;
    for (int64_t o = 0; o < outer; o++) {
        int64_t rem = o, ma = 0, mb = 0;
        for (int i = g0 - 1; i >= 0; i--) {
            int64_t coord = rem % size[i];
            rem /= size[i];
            ma += coord * sa[i];
            mb += coord * sb[i];
        }
        r.a = (const uint8_t *)a->data + (size_t)(ma * mk) * ea;
        r.b = (const uint8_t *)b->data + (size_t)(mb * kn) * ea;
        r.c = (uint8_t *)c->data + (size_t)(o * group * mn) * ec;
        CDZ_TRY(gemm_run(ctx, &r));
    }
    return CDZ_STATUS_OK;
}
