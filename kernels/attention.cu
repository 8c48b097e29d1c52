/*
 * attention.cu: flash-style scaled-dot-product attention on CUDA cores in fp32.
 *
 * Tiled kernel: one block of 8 warps per (b, h, tile of 64 queries); each warp owns 8
 * query rows. The Q tile is staged once in shared memory (transposed, so a warp reads its
 * 8 rows of one dim as two float4 broadcasts); K/V tiles of 32 keys are staged in turn.
 * Lane j scores key j against the warp's 8 rows, the warp keeps a running max / sum per
 * row (online softmax, rescaling the accumulators when the max grows) and accumulates P V
 * with lane e owning output dims e, e+32, ... Scores, softmax and sums are fp32 (no TF32).
 *
 * Fallback (shared memory of the tiled kernel over the device limit, or forced by the test
 * hook): one warp per query row reading K/V straight from global memory, llm.c style.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

#include "attention.h"
#include "check.h"
#include "ctx.h"

#define ATT_WARPS 8
#define ATT_ROWS 8                     /* query rows per warp (two float4 of sQ) */
#define ATT_BQ (ATT_WARPS * ATT_ROWS)  /* queries per block */
#define ATT_QS (ATT_BQ + 4)            /* sQ row stride: float4-aligned, fewer store conflicts */
#define ATT_BK 32                      /* keys per tile: one per lane */
#define ATT_FULL 0xffffffffu
#define ATT_FALLBACK_WARPS 4

typedef struct attn_args {
    const void *q, *k, *v;
    void *out;
    long long q_sb, q_sh, q_sl, k_sb, k_sh, k_sl, v_sb, v_sh, v_sl, o_sb, o_sh, o_sl;
    int B, H, L, S, D, Dv;
    float scale;
    int causal;
} attn_args;

static bool g_force_fallback = false;

extern "C" void cdz_attention_force_fallback(bool on) { g_force_fallback = on; }

template <typename T> __device__ __forceinline__ float att_ld(const T *p);
template <> __device__ __forceinline__ float att_ld<float>(const float *p) { return *p; }
template <> __device__ __forceinline__ float att_ld<__half>(const __half *p) {
    return __half2float(*p);
}
template <> __device__ __forceinline__ float att_ld<__nv_bfloat16>(const __nv_bfloat16 *p) {
    return __bfloat162float(*p);
}

template <typename T> __device__ __forceinline__ void att_st(T *p, float x);
template <> __device__ __forceinline__ void att_st<float>(float *p, float x) { *p = x; }
template <> __device__ __forceinline__ void att_st<__half>(__half *p, float x) {
    *p = __float2half_rn(x);
}
template <> __device__ __forceinline__ void att_st<__nv_bfloat16>(__nv_bfloat16 *p, float x) {
    *p = __float2bfloat16_rn(x);
}

static __device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(ATT_FULL, x, o));
    return x; /* max is order-independent: identical in every lane */
}

static __device__ __forceinline__ float warp_sum_bcast(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(ATT_FULL, x, o);
    return __shfl_sync(ATT_FULL, x, 0); /* lanes may differ in the last bit: use lane 0's */
}

/* ------------------------------------------------------------------ tiled kernel */

/* CH = ceil(Dv / 32) rounded up to 1, 2, 4 or 8: output dims per lane. */
template <typename T, int CH>
static __global__ void __launch_bounds__(ATT_WARPS * 32) attention_tiled_kernel(attn_args a) {
    extern __shared__ float4 att_smem4[];
    float *sQ = (float *)att_smem4;          /* [D][ATT_QS], pre-transposed Q tile */
    const int Dp = a.D | 1;                  /* odd K row stride: lane j reads row j without bank conflicts */
    float *sK = sQ + (size_t)a.D * ATT_QS;   /* [ATT_BK][Dp] */
    float *sV = sK + (size_t)ATT_BK * Dp;    /* [ATT_BK][Dv] */

    const int tiles = (a.L + ATT_BQ - 1) / ATT_BQ;
    const int qt = (int)(blockIdx.x % (unsigned)tiles);
    const int bh = (int)(blockIdx.x / (unsigned)tiles);
    const int h = bh % a.H, b = bh / a.H;
    const int q0 = qt * ATT_BQ;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    const T *Q = (const T *)a.q + b * a.q_sb + h * a.q_sh;
    const T *K = (const T *)a.k + b * a.k_sb + h * a.k_sh;
    const T *V = (const T *)a.v + b * a.v_sb + h * a.v_sh;
    T *O = (T *)a.out + b * a.o_sb + h * a.o_sh;

    for (int idx = tid; idx < ATT_BQ * a.D; idx += blockDim.x) {
        const int r = idx / a.D, d = idx - r * a.D;
        const int qi = q0 + r;
        sQ[d * ATT_QS + r] = qi < a.L ? att_ld(Q + qi * a.q_sl + d) : 0.f;
    }

    /* Keys that can matter: causal rows i see keys j <= i (top-left aligned). */
    const int row0 = q0 + warp * ATT_ROWS;
    int kend_block = a.S;
    if (a.causal) kend_block = min(kend_block, min(a.L, q0 + ATT_BQ));
    int kend_warp = row0 < a.L ? kend_block : 0;
    if (a.causal) kend_warp = min(kend_warp, row0 + ATT_ROWS);

    float m[ATT_ROWS], l[ATT_ROWS], o[ATT_ROWS][CH];
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        m[r] = -INFINITY;
        l[r] = 0.f; /* this lane's share of the row sum, reduced at the end */
#pragma unroll
        for (int c = 0; c < CH; c++) o[r][c] = 0.f;
    }

    for (int k0 = 0; k0 < kend_block; k0 += ATT_BK) {
        __syncthreads(); /* previous K/V tile consumed (and sQ written, the first time) */
        for (int idx = tid; idx < ATT_BK * a.D; idx += blockDim.x) {
            const int j = idx / a.D, d = idx - j * a.D;
            sK[j * Dp + d] = k0 + j < a.S ? att_ld(K + (long long)(k0 + j) * a.k_sl + d) : 0.f;
        }
        for (int idx = tid; idx < ATT_BK * a.Dv; idx += blockDim.x) {
            const int j = idx / a.Dv, e = idx - j * a.Dv;
            sV[idx] = k0 + j < a.S ? att_ld(V + (long long)(k0 + j) * a.v_sl + e) : 0.f;
        }
        __syncthreads();
        if (k0 >= kend_warp) continue; /* warp-uniform: every key of this tile is masked */

        float s[ATT_ROWS];
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) s[r] = 0.f;
        const float *kr = sK + lane * Dp;
        const float *qc = sQ + warp * ATT_ROWS;
        for (int d = 0; d < a.D; d++) {
            const float kv = kr[d];
            const float4 qa = *(const float4 *)(qc + d * ATT_QS);
            const float4 qb = *(const float4 *)(qc + d * ATT_QS + 4);
            s[0] = fmaf(qa.x, kv, s[0]);
            s[1] = fmaf(qa.y, kv, s[1]);
            s[2] = fmaf(qa.z, kv, s[2]);
            s[3] = fmaf(qa.w, kv, s[3]);
            s[4] = fmaf(qb.x, kv, s[4]);
            s[5] = fmaf(qb.y, kv, s[5]);
            s[6] = fmaf(qb.z, kv, s[6]);
            s[7] = fmaf(qb.w, kv, s[7]);
        }

        const int j = k0 + lane;
        float p[ATT_ROWS];
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) {
            const bool valid = j < a.S && (!a.causal || j <= row0 + r);
            const float x = valid ? s[r] * a.scale : -INFINITY;
            const float mn = fmaxf(m[r], warp_max(x));
            float alpha, pr;
            if (mn == -INFINITY) { /* nothing unmasked yet for this row: keep state */
                alpha = 1.f;
                pr = 0.f;
            } else {
                alpha = expf(m[r] - mn); /* 0 when m was -inf */
                pr = expf(x - mn);
            }
            m[r] = mn;
            l[r] = l[r] * alpha + pr;
#pragma unroll
            for (int c = 0; c < CH; c++) o[r][c] *= alpha;
            p[r] = pr;
        }

        const int jn = min(ATT_BK, kend_warp - k0); /* later keys have p == 0 for every row */
        for (int jj = 0; jj < jn; jj++) {
            float vv[CH];
#pragma unroll
            for (int c = 0; c < CH; c++) {
                const int e = lane + 32 * c;
                vv[c] = e < a.Dv ? sV[jj * a.Dv + e] : 0.f;
            }
#pragma unroll
            for (int r = 0; r < ATT_ROWS; r++) {
                const float pj = __shfl_sync(ATT_FULL, p[r], jj);
#pragma unroll
                for (int c = 0; c < CH; c++) o[r][c] = fmaf(pj, vv[c], o[r][c]);
            }
        }
    }

#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        const float lt = warp_sum_bcast(l[r]);
        const int i = row0 + r;
        if (i >= a.L) continue;
        const float inv = lt > 0.f ? 1.f / lt : 0.f; /* lt == 0 only when S == 0 */
        T *orow = O + (long long)i * a.o_sl;
#pragma unroll
        for (int c = 0; c < CH; c++) {
            const int e = lane + 32 * c;
            if (e < a.Dv) att_st(orow + e, o[r][c] * inv);
        }
    }
}

/* ------------------------------------------------------------------ fallback kernel */

#define ATT_FB_CH (CDZ_ATTENTION_MAX_HEAD_DIM / 32)

template <typename T>
static __global__ void __launch_bounds__(ATT_FALLBACK_WARPS * 32)
    attention_rowwarp_kernel(attn_args a) {
    const long long row = (long long)blockIdx.x * ATT_FALLBACK_WARPS + (threadIdx.x >> 5);
    const long long rows = (long long)a.B * a.H * a.L;
    if (row >= rows) return; /* whole warp leaves together */
    const int lane = threadIdx.x & 31;
    const int i = (int)(row % a.L);
    const int bh = (int)(row / a.L);
    const int h = bh % a.H, b = bh / a.H;
    const T *Q = (const T *)a.q + b * a.q_sb + h * a.q_sh + i * a.q_sl;
    const T *K = (const T *)a.k + b * a.k_sb + h * a.k_sh;
    const T *V = (const T *)a.v + b * a.v_sb + h * a.v_sh;
    T *O = (T *)a.out + b * a.o_sb + h * a.o_sh + i * a.o_sl;

    float qv[ATT_FB_CH], o[ATT_FB_CH];
#pragma unroll
    for (int c = 0; c < ATT_FB_CH; c++) {
        const int d = lane + 32 * c;
        qv[c] = d < a.D ? att_ld(Q + d) : 0.f;
        o[c] = 0.f;
    }
    const int nkeys = a.causal ? min(a.S, i + 1) : a.S;
    float m = -INFINITY, l = 0.f;
    for (int j = 0; j < nkeys; j++) {
        const T *kr = K + (long long)j * a.k_sl;
        const T *vr = V + (long long)j * a.v_sl;
        float part = 0.f;
#pragma unroll
        for (int c = 0; c < ATT_FB_CH; c++) {
            const int d = lane + 32 * c;
            if (d < a.D) part = fmaf(qv[c], att_ld(kr + d), part);
        }
        const float x = warp_sum_bcast(part) * a.scale;
        const float mn = fmaxf(m, x);
        const float alpha = expf(m - mn), p = expf(x - mn);
        m = mn;
        l = l * alpha + p;
#pragma unroll
        for (int c = 0; c < ATT_FB_CH; c++) {
            const int e = lane + 32 * c;
            o[c] = o[c] * alpha + (e < a.Dv ? p * att_ld(vr + e) : 0.f);
        }
    }
    const float inv = nkeys > 0 ? 1.f / l : 0.f;
#pragma unroll
    for (int c = 0; c < ATT_FB_CH; c++) {
        const int e = lane + 32 * c;
        if (e < a.Dv) att_st(O + e, o[c] * inv);
    }
}

/* ------------------------------------------------------------------ launchers */

static size_t tiled_smem_bytes(int D, int Dv) {
    return ((size_t)D * ATT_QS + (size_t)ATT_BK * (size_t)(D | 1) + (size_t)ATT_BK * Dv) *
           sizeof(float);
}

template <typename T, int CH>
static cdz_status launch_tiled_ch(cdz_ctx *ctx, const attn_args *a, unsigned blocks,
                                  size_t smem) {
    if (smem > 48 * 1024)
        CDZ_CUDA_CHECK(cudaFuncSetAttribute(attention_tiled_kernel<T, CH>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            (int)smem));
    attention_tiled_kernel<T, CH><<<blocks, ATT_WARPS * 32, smem, ctx->stream>>>(*a);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

template <typename T>
static cdz_status launch_typed(cdz_ctx *ctx, const attn_args *a) {
    const long long bh = (long long)a->B * a->H;
    const size_t smem = tiled_smem_bytes(a->D, a->Dv);
    if (!g_force_fallback && smem <= ctx->smem_optin) {
        const long long blocks = bh * ((a->L + ATT_BQ - 1) / ATT_BQ);
        if (blocks > INT32_MAX)
            return cdz_error_set(CDZ_STATUS_TOO_LARGE,
                                 "attention: %lld blocks of %d queries exceed the CUDA grid",
                                 blocks, ATT_BQ);
        if (a->Dv <= 32) return launch_tiled_ch<T, 1>(ctx, a, (unsigned)blocks, smem);
        if (a->Dv <= 64) return launch_tiled_ch<T, 2>(ctx, a, (unsigned)blocks, smem);
        if (a->Dv <= 128) return launch_tiled_ch<T, 4>(ctx, a, (unsigned)blocks, smem);
        return launch_tiled_ch<T, 8>(ctx, a, (unsigned)blocks, smem);
    }
    const long long blocks = (bh * a->L + ATT_FALLBACK_WARPS - 1) / ATT_FALLBACK_WARPS;
    if (blocks > INT32_MAX)
        return cdz_error_set(CDZ_STATUS_TOO_LARGE,
                             "attention: %lld query rows exceed the CUDA grid", bh * a->L);
    attention_rowwarp_kernel<T><<<(unsigned)blocks, ATT_FALLBACK_WARPS * 32, 0, ctx->stream>>>(*a);
    CDZ_LAUNCH_CHECK(ctx);
    return CDZ_STATUS_OK;
}

extern "C" cdz_status cdz_attention_cuda(cdz_ctx *ctx, const cdz_tensor *q, const cdz_tensor *k,
                                         const cdz_tensor *v, cdz_tensor *out, float scale,
                                         bool causal) {
    if (q->shape[0] > INT32_MAX || q->shape[1] > INT32_MAX || q->shape[0] * q->shape[1] > INT32_MAX)
        return cdz_error_set(CDZ_STATUS_TOO_LARGE, "attention: B * H = %lld exceeds 2^31",
                             (long long)(q->shape[0] * q->shape[1]));
    if (q->shape[0] == 0 || q->shape[1] == 0 || q->shape[2] == 0) return CDZ_STATUS_OK;
    attn_args a;
    a.q = q->data;
    a.k = k->data;
    a.v = v->data;
    a.out = out->data;
    /* size-1 dims may carry any stride; index 0 never uses it */
    a.q_sb = q->shape[0] > 1 ? q->stride[0] : 0;
    a.q_sh = q->shape[1] > 1 ? q->stride[1] : 0;
    a.q_sl = q->shape[2] > 1 ? q->stride[2] : 0;
    a.k_sb = k->shape[0] > 1 ? k->stride[0] : 0;
    a.k_sh = k->shape[1] > 1 ? k->stride[1] : 0;
    a.k_sl = k->shape[2] > 1 ? k->stride[2] : 0;
    a.v_sb = v->shape[0] > 1 ? v->stride[0] : 0;
    a.v_sh = v->shape[1] > 1 ? v->stride[1] : 0;
    a.v_sl = v->shape[2] > 1 ? v->stride[2] : 0;
    a.o_sb = out->shape[0] > 1 ? out->stride[0] : 0;
    a.o_sh = out->shape[1] > 1 ? out->stride[1] : 0;
    a.o_sl = out->shape[2] > 1 ? out->stride[2] : 0;
    a.B = (int)q->shape[0];
    a.H = (int)q->shape[1];
    a.L = (int)q->shape[2];
    a.S = (int)k->shape[2];
    a.D = (int)q->shape[3];
    a.Dv = (int)v->shape[3];
    a.scale = scale;
    a.causal = causal ? 1 : 0;
    switch (q->dtype) {
    case CDZ_DTYPE_F32: return launch_typed<float>(ctx, &a);
    case CDZ_DTYPE_F16: return launch_typed<__half>(ctx, &a);
    case CDZ_DTYPE_BF16: return launch_typed<__nv_bfloat16>(ctx, &a);
    default:
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "attention: dtype %s is not supported",
                             cdz_dtype_name(q->dtype));
    }
}
