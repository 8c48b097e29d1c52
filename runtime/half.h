/*
 * half.h: IEEE binary16 and bfloat16 <-> float conversions for host code (CPU references,
 * weight conversion, tests). Round to nearest even, NaN stays NaN, overflow goes to inf.
 *
 * defines: cdz_f16_to_f32, cdz_f32_to_f16, cdz_bf16_to_f32, cdz_f32_to_bf16,
 *          cdz_round_f16, cdz_round_bf16
 */
#ifndef CDZ_HALF_H
#define CDZ_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t cdz_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float cdz_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float cdz_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        if (man == 0) return cdz_bits_f32(sign);
        /* subnormal: normalise */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400u));
        man &= 0x3ffu;
        return cdz_bits_f32(sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13));
    }
    if (exp == 31) return cdz_bits_f32(sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0));
    return cdz_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t cdz_f32_to_f16(float f) {
    uint32_t u = cdz_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t exp = (u >> 23) & 0xffu;
    uint32_t man = u & 0x7fffffu;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0)); /* inf / NaN */
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);                          /* overflow */
    if (e <= 0) {                                                            /* subnormal */
        if (e < -10) return sign;
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1u);
        uint32_t mid = 1u << (shift - 1u);
        if (rem > mid || (rem == mid && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) half++; /* may carry into exp: ok */
    return (uint16_t)(sign | half);
}

static inline float cdz_bf16_to_f32(uint16_t b) { return cdz_bits_f32((uint32_t)b << 16); }

static inline uint16_t cdz_f32_to_bf16(float f) {
    uint32_t u = cdz_f32_bits(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return (uint16_t)((u >> 16) | 0x40u);
    uint32_t lsb = (u >> 16) & 1u;
    u += 0x7fffu + lsb;
    return (uint16_t)(u >> 16);
}

static inline float cdz_round_f16(float f) { return cdz_f16_to_f32(cdz_f32_to_f16(f)); }
static inline float cdz_round_bf16(float f) { return cdz_bf16_to_f32(cdz_f32_to_bf16(f)); }

#endif /* CDZ_HALF_H */
