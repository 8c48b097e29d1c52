/*
 * rope.c: cdz_rope entry (validation, dispatch) and the CPU reference: angles in fp32 as
 * PyTorch forms them, cos/sin correctly rounded to fp32, the rotation in double.
 */
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "ctx.h"
#include "half.h"
#include "rope.h"

#define ROPE_MAX_EXACT_POS (1LL << 24) /* fp32 holds every integer position below this */

float cdz_rope_inv_freq(int32_t i, int32_t rot_dim, float theta) {
    const float e = (float)(2 * i) / (float)rot_dim;
    const float pw = (float)pow((double)theta, (double)e);
    return 1.0f / pw;
}

cdz_status cdz_rope(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t rot_dim,
                    float theta, int64_t pos_offset, bool heads_first) {
    CDZ_REQUIRE(ctx, "rope: ctx is NULL");
    CDZ_TRY(cdz_check_tensor(ctx, "rope", "x", x, CDZ_DTYPE_COUNT_, 4));
    CDZ_TRY(cdz_check_tensor(ctx, "rope", "y", y, CDZ_DTYPE_COUNT_, 4));
    CDZ_REQUIRE(x->dtype == CDZ_DTYPE_F32 || x->dtype == CDZ_DTYPE_F16 || x->dtype == CDZ_DTYPE_BF16,
                "rope: x must be f32, f16 or bf16 (got %s)", cdz_dtype_name(x->dtype));
    CDZ_REQUIRE(y->dtype == x->dtype, "rope: y must be %s like x (got %s)",
                cdz_dtype_name(x->dtype), cdz_dtype_name(y->dtype));
    CDZ_REQUIRE(cdz_tensor_same_shape(x, y),
                "rope: y is [%lld, %lld, %lld, %lld], x is [%lld, %lld, %lld, %lld]",
                (long long)y->shape[0], (long long)y->shape[1], (long long)y->shape[2],
                (long long)y->shape[3], (long long)x->shape[0], (long long)x->shape[1],
                (long long)x->shape[2], (long long)x->shape[3]);
    const int64_t D = x->shape[3];
    const int64_t L = heads_first ? x->shape[2] : x->shape[1];
    CDZ_REQUIRE(rot_dim >= 2 && rot_dim % 2 == 0 && rot_dim <= D,
                "rope: rot_dim = %d must be even and in [2, D = %lld]", rot_dim, (long long)D);
    CDZ_REQUIRE(isfinite(theta) && theta > 0.f, "rope: theta must be positive and finite (got %g)",
                (double)theta);
    CDZ_REQUIRE(pos_offset >= 0 && pos_offset <= ROPE_MAX_EXACT_POS - L,
                "rope: positions pos_offset = %lld + [0, L = %lld) must lie in [0, 2^24), "
                "where fp32 holds them exactly", (long long)pos_offset, (long long)L);
    const size_t nbytes = cdz_tensor_nbytes(x);
    if (nbytes == 0) return CDZ_STATUS_OK;
    if (x->data != y->data) {
        const uintptr_t xa = (uintptr_t)x->data, ya = (uintptr_t)y->data;
        CDZ_REQUIRE(xa + nbytes <= ya || ya + nbytes <= xa,
                    "rope: y partially overlaps x (in place needs y->data == x->data)");
    }
    if (cdz_ctx_is_cuda(ctx)) {
#ifdef CDZ_HAVE_CUDA
        return cdz_rope_cuda(ctx, x, y, rot_dim, theta, pos_offset, heads_first);
#else
        return cdz_error_set(CDZ_STATUS_UNSUPPORTED, "rope: this build has no CUDA");
#endif
    }
    return cdz_rope_cpu(ctx, x, y, rot_dim, theta, pos_offset, heads_first);
}

/* ------------------------------------------------------------------ CPU reference */

static inline double load_elem(const void *base, cdz_dtype dt, int64_t off) {
    switch (dt) {
    case CDZ_DTYPE_F16: return cdz_f16_to_f32(((const uint16_t *)base)[off]);
    case CDZ_DTYPE_BF16: return cdz_bf16_to_f32(((const uint16_t *)base)[off]);
    default: return ((const float *)base)[off];
    }
}

static inline void store_elem(void *base, cdz_dtype dt, int64_t off, double v) {
    switch (dt) {
    case CDZ_DTYPE_F16: ((uint16_t *)base)[off] = cdz_f32_to_f16((float)v); break;
    case CDZ_DTYPE_BF16: ((uint16_t *)base)[off] = cdz_f32_to_bf16((float)v); break;
    default: ((float *)base)[off] = (float)v; break;
    }
}

cdz_status cdz_rope_cpu(cdz_ctx *ctx, const cdz_tensor *x, cdz_tensor *y, int32_t rot_dim,
                        float theta, int64_t pos_offset, bool heads_first) {
    const int64_t B = x->shape[0], D = x->shape[3];
    const int64_t L = heads_first ? x->shape[2] : x->shape[1];
    const int64_t H = heads_first ? x->shape[1] : x->shape[2];
    /* element strides of one (b, l, h) row in either layout */
    const int64_t sb = L * H * D, sl = heads_first ? D : H * D, sh = heads_first ? L * D : D;
    const int32_t half = rot_dim / 2;
    const cdz_dtype dt = x->dtype;
    const bool in_place = x->data == y->data;

    for (int64_t l = 0; l < L; l++) {
        const float pos = (float)(pos_offset + l);
        for (int32_t i = 0; i < half; i++) {
            const float angle = pos * cdz_rope_inv_freq(i, rot_dim, theta);
            const double c = (float)cos((double)angle), s = (float)sin((double)angle);
            for (int64_t b = 0; b < B; b++)
                for (int64_t h = 0; h < H; h++) {
                    const int64_t row = b * sb + l * sl + h * sh;
                    const double x1 = load_elem(x->data, dt, row + i);
                    const double x2 = load_elem(x->data, dt, row + i + half);
                    store_elem(y->data, dt, row + i, x1 * c - x2 * s);
                    store_elem(y->data, dt, row + i + half, x2 * c + x1 * s);
                }
        }
        if (in_place) continue;
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++) {
                const int64_t row = b * sb + l * sl + h * sh;
                for (int64_t d = rot_dim; d < D; d++)
                    store_elem(y->data, dt, row + d, load_elem(x->data, dt, row + d));
            }
    }
    return CDZ_STATUS_OK;
}
