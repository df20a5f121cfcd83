/* fmlp_cpu_convert.h — scalar dtype conversion (float32 <-> bfloat16 / float16) for the
 * CPU core, plus row helpers. Regime: every CPU path; the vectorised row converters
 * live in fmlp_cpu_vec.c and fall back to these scalar ones.
 * Header-only (static inline); compiled into each including .c by setup.py
 * (gcc -O3 -std=c11), tested through tests/c/test_core.c (tests/c/build_and_run.sh). */
#ifndef FMLP_CPU_CONVERT_H
#define FMLP_CPU_CONVERT_H
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "../fmlp.h"

static inline float fmlp_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t fmlp_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}
static inline float fmlp_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal */
            float f = (float)man * 5.9604644775390625e-8f; /* 2^-24 */
            memcpy(&u, &f, 4);
            u |= sign;
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t fmlp_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520 -> inf */
    if (a < 0x38800000u) { /* subnormal or zero: round via float arithmetic */
        float af;
        memcpy(&af, &a, 4);
        float r = af * 16777216.0f; /* 2^24: units of the smallest subnormal */
        uint32_t m = (uint32_t)lrintf(r);
        return (uint16_t)(sign | m);
    }
    uint32_t e = ((a >> 23) - 112) << 10, m = (a >> 13) & 0x3ffu;
    uint32_t h = e | m;
    uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

static inline float fmlp_load_elt(fmlp_dtype dt, const void* p, int64_t i) {
    switch (dt) {
    case FMLP_BF16: return fmlp_bf16_to_f32(((const uint16_t*)p)[i]);
    case FMLP_F16: return fmlp_f16_to_f32(((const uint16_t*)p)[i]);
    default: return ((const float*)p)[i];
    }
}
static inline void fmlp_store_elt(fmlp_dtype dt, void* p, int64_t i, float v) {
    switch (dt) {
    case FMLP_BF16: ((uint16_t*)p)[i] = fmlp_f32_to_bf16(v); break;
    case FMLP_F16: ((uint16_t*)p)[i] = fmlp_f32_to_f16(v); break;
    default: ((float*)p)[i] = v;
    }
}
#endif /* FMLP_CPU_CONVERT_H */
