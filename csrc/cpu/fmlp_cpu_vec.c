/* fmlp_cpu_vec.c — elementwise row/tile helpers of the CPU core (see fmlp_cpu_vec.h).
 *
 * Three implementations chosen at run time by fmlp_cpu_isa_level():
 *   scalar: fmlp_activation.h formulas and fmlp_cpu_convert.h conversions (any CPU);
 *   AVX-512 (target attribute, level 2): exp by Cody-Waite reduction + degree-6
 *     polynomial + vscalefps (~1 ulp); sigmoid = 1/(1+e^-x); tanh = odd Taylor series
 *     below |x| < 0.3125, 1 - 2/(e^{2|x|}+1) above; gelu_tanh = z·sigmoid(2u) (the same
 *     function as 0.5·z·(1+tanh u), without its cancellation); exact gelu calls erff per
 *     lane. bf16 rounding is integer RNE (bit-identical to the scalar path), f16 uses
 *     vcvtps2ph.
 * AVX2 level (avx2+fma+f16c): the same formulas on 8 lanes (2^n built in the exponent
 * field, x clamped to [-87, 88]); row/tile tails use the scalar code.
 * Built by setup.py; tested by tests/c/build_and_run.sh (every ISA level). */
#include "fmlp_cpu_vec.h"
#include <stdint.h>
#include <string.h>
#include "../fmlp_activation.h"
#include "fmlp_cpu_convert.h"
#include "fmlp_cpu_gemm.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(FMLP_NO_X86) /* FMLP_NO_X86: portable-only test build */
#define FMLP_X86 1
#include <immintrin.h>
#else
#define FMLP_X86 0
#endif

/* ======================================================================== */
/* scalar                                                                   */
/* ======================================================================== */
static void load_row_s(fmlp_dtype dt, const void* src, int64_t n, float* dst) {
    if (dt == FMLP_F32) { memcpy(dst, src, (size_t)n * 4); return; }
    for (int64_t i = 0; i < n; i++) dst[i] = fmlp_load_elt(dt, src, i);
}
static void store_row_s(fmlp_dtype dt, void* dst, int64_t n, const float* src) {
    if (dt == FMLP_F32) { memcpy(dst, src, (size_t)n * 4); return; }
    for (int64_t i = 0; i < n; i++) fmlp_store_elt(dt, dst, i, src[i]);
}
static void bias_act_row_s(int act, float slope, const float* z, const float* bias, float* z_out,
                           float* h, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = z[i] + (bias ? bias[i] : 0.0f);
        if (z_out) z_out[i] = v;
        h[i] = fmlp_act(act, v, slope);
    }
}
static void dact_mul_row_s(int act, float slope, const float* z, const float* g, float* out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = g[i] * fmlp_dact(act, z[i], slope);
}
static void fwd_tile_s(const fmlp_fwd_tile* t) {
    float z[64], zu[64], h[64];
    for (int r = 0; r < t->rows; r++) {
        const float* c = t->c + r * t->ldc;
        bias_act_row_s(t->act, t->slope, c, t->bias, z, h, t->nn);
        if (t->cu) {
            const float* cu = t->cu + r * t->ldc;
            for (int j = 0; j < t->nn; j++) {
                zu[j] = cu[j] + t->bias_u[j];
                h[j] *= zu[j];
            }
            if (t->zus) store_row_s(t->dt, fmlp_ptr(t->dt, t->zus, r * t->ldzs), t->nn, zu);
        }
        if (t->zs) store_row_s(t->dt, fmlp_ptr(t->dt, t->zs, r * t->ldzs), t->nn, z);
        if (t->hout_f32) memcpy((float*)t->hout + r * t->ldh, h, sizeof(float) * (size_t)t->nn);
        else store_row_s(t->dt, fmlp_ptr(t->dt, t->hout, r * t->ldh), t->nn, h);
    }
}

/* ======================================================================== */
/* AVX-512                                                                  */
/* ======================================================================== */
#if FMLP_X86
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) static inline
#define T512F __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) static

T512 __m512 exp512(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x); /* constant first: NaN x passes through */
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    __m512 r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}
T512 __m512 sigmoid512(__m512 x) {
    __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}
T512 __m512 tanh512(__m512 x) {
    __m512 ax = _mm512_abs_ps(x);
    __m512 one = _mm512_set1_ps(1.0f);
    /* large: 1 - 2/(e^{2|x|}+1) */
    __m512 e = exp512(_mm512_add_ps(ax, ax));
    __m512 big = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
    /* small: odd Taylor series to x^11 */
    __m512 x2 = _mm512_mul_ps(ax, ax);
    __m512 p = _mm512_set1_ps(-1382.0f / 155925.0f);
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(62.0f / 2835.0f));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-17.0f / 315.0f));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(2.0f / 15.0f));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-1.0f / 3.0f));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, x2), ax, ax);
    __mmask16 s = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.3125f), _CMP_LT_OQ);
    __m512 t = _mm512_mask_blend_ps(s, big, small);
    /* copy the sign of x (NaN: big is NaN already) */
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), sign));
}
/* sigmoid(2u), u = sqrt(2/pi)(z + 0.044715 z^3) */
T512 __m512 gelu_tanh_s512(__m512 z) {
    __m512 z2 = _mm512_mul_ps(z, z);
    __m512 u = _mm512_mul_ps(_mm512_set1_ps(FMLP_SQRT2_PI),
                             _mm512_fmadd_ps(_mm512_mul_ps(z2, z), _mm512_set1_ps(0.044715f), z));
    return sigmoid512(_mm512_add_ps(u, u));
}
T512F __m512 erf_lanes512(__m512 x) {
    float v[16];
    _mm512_storeu_ps(v, x);
    for (int i = 0; i < 16; i++) v[i] = erff(v[i]);
    return _mm512_loadu_ps(v);
}
T512 __m512 act512(int act, __m512 z, float slope) {
    __m512 zero = _mm512_setzero_ps();
    switch (act) {
    case FMLP_ACT_RELU: return _mm512_max_ps(zero, z); /* max returns its 2nd operand on NaN: NaN stays NaN, as in torch */
    case FMLP_ACT_GELU: {
        __m512 e = erf_lanes512(_mm512_mul_ps(z, _mm512_set1_ps(FMLP_SQRT1_2)));
        return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), z), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    }
    case FMLP_ACT_GELU_TANH: return _mm512_mul_ps(z, gelu_tanh_s512(z));
    case FMLP_ACT_SILU: return _mm512_mul_ps(z, sigmoid512(z));
    case FMLP_ACT_TANH: return tanh512(z);
    case FMLP_ACT_SIGMOID: return sigmoid512(z);
    case FMLP_ACT_LEAKY_RELU: {
        __mmask16 pos = _mm512_cmp_ps_mask(z, zero, _CMP_GT_OQ);
        return _mm512_mask_blend_ps(pos, _mm512_mul_ps(z, _mm512_set1_ps(slope)), z);
    }
    default: return z;
    }
}
T512 __m512 dact512(int act, __m512 z, float slope) {
    __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    switch (act) {
    case FMLP_ACT_RELU: {
        __mmask16 pos = _mm512_cmp_ps_mask(z, zero, _CMP_GT_OQ);
        return _mm512_maskz_mov_ps(pos, one);
    }
    case FMLP_ACT_GELU: {
        __m512 e = erf_lanes512(_mm512_mul_ps(z, _mm512_set1_ps(FMLP_SQRT1_2)));
        __m512 cdf = _mm512_mul_ps(_mm512_set1_ps(0.5f), _mm512_add_ps(one, e));
        __m512 pdf = _mm512_mul_ps(_mm512_set1_ps(FMLP_INV_SQRT_2PI),
                                   exp512(_mm512_mul_ps(_mm512_set1_ps(-0.5f), _mm512_mul_ps(z, z))));
        return _mm512_fmadd_ps(z, pdf, cdf);
    }
    case FMLP_ACT_GELU_TANH: {
        /* 0.5(1+t) = s;  0.5 z (1-t^2) c (1+3a z^2) = 2 z s (1-s) c (1 + 3a z^2) */
        __m512 s = gelu_tanh_s512(z);
        __m512 z2 = _mm512_mul_ps(z, z);
        __m512 q = _mm512_fmadd_ps(z2, _mm512_set1_ps(3.0f * 0.044715f), one);
        __m512 w = _mm512_mul_ps(_mm512_mul_ps(s, _mm512_sub_ps(one, s)), _mm512_mul_ps(z, q));
        return _mm512_fmadd_ps(w, _mm512_set1_ps(2.0f * FMLP_SQRT2_PI), s);
    }
    case FMLP_ACT_SILU: {
        __m512 s = sigmoid512(z);
        return _mm512_mul_ps(s, _mm512_fmadd_ps(z, _mm512_sub_ps(one, s), one));
    }
    case FMLP_ACT_TANH: {
        __m512 t = tanh512(z);
        return _mm512_fnmadd_ps(t, t, one);
    }
    case FMLP_ACT_SIGMOID: {
        __m512 s = sigmoid512(z);
        return _mm512_mul_ps(s, _mm512_sub_ps(one, s));
    }
    case FMLP_ACT_LEAKY_RELU: {
        __mmask16 pos = _mm512_cmp_ps_mask(z, zero, _CMP_GT_OQ);
        return _mm512_mask_blend_ps(pos, _mm512_set1_ps(slope), one);
    }
    default: return one;
    }
}

/* masked load/store of 16 elements of dtype dt as float32 */
T512 __m512 ld512(fmlp_dtype dt, const void* p, __mmask16 m) {
    if (dt == FMLP_F32) return _mm512_maskz_loadu_ps(m, p);
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    if (dt == FMLP_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
T512 void st512(fmlp_dtype dt, void* p, __m512 v, __mmask16 m) {
    if (dt == FMLP_F32) { _mm512_mask_storeu_ps(p, m, v); return; }
    __m256i h;
    if (dt == FMLP_F16) h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    else {
        __m512i u = _mm512_castps_si512(v);
        __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
        __m512i rnd = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
        __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        __m512i q = _mm512_or_si512(u, _mm512_set1_epi32(0x400000));
        rnd = _mm512_mask_mov_epi32(rnd, nan, q);
        h = _mm512_cvtepi32_epi16(_mm512_srli_epi32(rnd, 16));
    }
    _mm256_mask_storeu_epi16(p, m, h);
}
#ifndef FMLP_USE_NT
#define FMLP_USE_NT 1
#endif
/* Streaming (non-temporal) store where possible: outputs and saved z are not read again
 * by this call, so skip the read-for-ownership of their lines. Fenced by fmlp_cpu_sfence(). */
T512 void st512_nt(fmlp_dtype dt, void* p, __m512 v, __mmask16 m) {
    if (FMLP_USE_NT && m == (__mmask16)0xffff) {
        if (dt == FMLP_F32 && ((uintptr_t)p & 63) == 0) { _mm512_stream_ps((float*)p, v); return; }
        if (dt != FMLP_F32 && ((uintptr_t)p & 31) == 0) {
            __m256i h;
            if (dt == FMLP_F16) h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            else {
                __m512i u = _mm512_castps_si512(v);
                __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
                __m512i rnd = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
                __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                rnd = _mm512_mask_mov_epi32(rnd, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x400000)));
                h = _mm512_cvtepi32_epi16(_mm512_srli_epi32(rnd, 16));
            }
            _mm256_stream_si256((__m256i*)p, h);
            return;
        }
    }
    st512(dt, p, v, m);
}
T512 __mmask16 tailmask(int64_t n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u); }

T512F void load_row_512(fmlp_dtype dt, const void* src, int64_t n, float* dst) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tailmask(n - i);
        _mm512_mask_storeu_ps(dst + i, m, ld512(dt, fmlp_cptr(dt, src, i), m));
    }
}
T512F void store_row_512(fmlp_dtype dt, void* dst, int64_t n, const float* src) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tailmask(n - i);
        st512(dt, fmlp_ptr(dt, dst, i), _mm512_maskz_loadu_ps(m, src + i), m);
    }
}
T512F void bias_act_row_512(int act, float slope, const float* z, const float* bias, float* z_out,
                            float* h, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tailmask(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, z + i);
        if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + i));
        if (z_out) _mm512_mask_storeu_ps(z_out + i, m, v);
        _mm512_mask_storeu_ps(h + i, m, act512(act, v, slope));
    }
}
T512F void dact_mul_row_512(int act, float slope, const float* z, const float* g, float* out, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tailmask(n - i);
        __m512 v = dact512(act, _mm512_maskz_loadu_ps(m, z + i), slope);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, g + i)));
    }
}
T512F void fwd_tile_512(const fmlp_fwd_tile* t) {
    const fmlp_dtype dt = t->dt;
    for (int j = 0; j < t->nn; j += 16) {
        __mmask16 m = tailmask(t->nn - j);
        __m512 b = _mm512_maskz_loadu_ps(m, t->bias + j);
        __m512 bu = t->cu ? _mm512_maskz_loadu_ps(m, t->bias_u + j) : b;
        for (int r = 0; r < t->rows; r++) {
            __m512 z = _mm512_add_ps(_mm512_maskz_loadu_ps(m, t->c + r * t->ldc + j), b);
            if (t->zs) st512_nt(dt, fmlp_ptr(dt, t->zs, r * t->ldzs + j), z, m);
            __m512 h = act512(t->act, z, t->slope);
            if (t->cu) {
                __m512 zu = _mm512_add_ps(_mm512_maskz_loadu_ps(m, t->cu + r * t->ldc + j), bu);
                if (t->zus) st512_nt(dt, fmlp_ptr(dt, t->zus, r * t->ldzs + j), zu, m);
                h = _mm512_mul_ps(h, zu);
            }
            if (t->hout_f32) _mm512_mask_storeu_ps((float*)t->hout + r * t->ldh + j, m, h);
            else st512_nt(dt, fmlp_ptr(dt, t->hout, r * t->ldh + j), h, m);
        }
    }
}
#endif

/* ======================================================================== */
/* AVX2 + FMA + F16C (level 1): 8 lanes; tails go to the scalar code        */
/* ======================================================================== */
#if FMLP_X86
#define T256 __attribute__((target("avx2,fma,f16c"))) static inline
#define T256F __attribute__((target("avx2,fma,f16c"))) static

T256 __m256 exp256(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x); /* constant first: NaN x passes through */
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);  /* 2^n stays a normal float */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
T256 __m256 sigmoid256(__m256 x) {
    __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}
T256 __m256 tanh256(__m256 x) {
    __m256 signbit = _mm256_set1_ps(-0.0f);
    __m256 ax = _mm256_andnot_ps(signbit, x);
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp256(_mm256_add_ps(ax, ax));
    __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
    __m256 x2 = _mm256_mul_ps(ax, ax);
    __m256 p = _mm256_set1_ps(-1382.0f / 155925.0f);
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(62.0f / 2835.0f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-17.0f / 315.0f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(2.0f / 15.0f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-1.0f / 3.0f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, x2), ax, ax);
    __m256 t = _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.3125f), _CMP_LT_OQ));
    return _mm256_or_ps(t, _mm256_and_ps(signbit, x));
}
T256 __m256 gelu_tanh_s256(__m256 z) {
    __m256 z2 = _mm256_mul_ps(z, z);
    __m256 u = _mm256_mul_ps(_mm256_set1_ps(FMLP_SQRT2_PI),
                             _mm256_fmadd_ps(_mm256_mul_ps(z2, z), _mm256_set1_ps(0.044715f), z));
    return sigmoid256(_mm256_add_ps(u, u));
}
T256F __m256 erf_lanes256(__m256 x) {
    float v[8];
    _mm256_storeu_ps(v, x);
    for (int i = 0; i < 8; i++) v[i] = erff(v[i]);
    return _mm256_loadu_ps(v);
}
T256 __m256 act256(int act, __m256 z, float slope) {
    __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    switch (act) {
    case FMLP_ACT_RELU: return _mm256_max_ps(zero, z); /* max returns its 2nd operand on NaN: NaN stays NaN, as in torch */
    case FMLP_ACT_GELU:
        return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), z),
                             _mm256_add_ps(one, erf_lanes256(_mm256_mul_ps(z, _mm256_set1_ps(FMLP_SQRT1_2)))));
    case FMLP_ACT_GELU_TANH: return _mm256_mul_ps(z, gelu_tanh_s256(z));
    case FMLP_ACT_SILU: return _mm256_mul_ps(z, sigmoid256(z));
    case FMLP_ACT_TANH: return tanh256(z);
    case FMLP_ACT_SIGMOID: return sigmoid256(z);
    case FMLP_ACT_LEAKY_RELU:
        return _mm256_blendv_ps(_mm256_mul_ps(z, _mm256_set1_ps(slope)), z, _mm256_cmp_ps(z, zero, _CMP_GT_OQ));
    default: return z;
    }
}
T256 __m256 dact256(int act, __m256 z, float slope) {
    __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    switch (act) {
    case FMLP_ACT_RELU: return _mm256_and_ps(_mm256_cmp_ps(z, zero, _CMP_GT_OQ), one);
    case FMLP_ACT_GELU: {
        __m256 e = erf_lanes256(_mm256_mul_ps(z, _mm256_set1_ps(FMLP_SQRT1_2)));
        __m256 cdf = _mm256_mul_ps(_mm256_set1_ps(0.5f), _mm256_add_ps(one, e));
        __m256 pdf = _mm256_mul_ps(_mm256_set1_ps(FMLP_INV_SQRT_2PI),
                                   exp256(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(z, z))));
        return _mm256_fmadd_ps(z, pdf, cdf);
    }
    case FMLP_ACT_GELU_TANH: {
        __m256 s = gelu_tanh_s256(z);
        __m256 q = _mm256_fmadd_ps(_mm256_mul_ps(z, z), _mm256_set1_ps(3.0f * 0.044715f), one);
        __m256 w = _mm256_mul_ps(_mm256_mul_ps(s, _mm256_sub_ps(one, s)), _mm256_mul_ps(z, q));
        return _mm256_fmadd_ps(w, _mm256_set1_ps(2.0f * FMLP_SQRT2_PI), s);
    }
    case FMLP_ACT_SILU: {
        __m256 s = sigmoid256(z);
        return _mm256_mul_ps(s, _mm256_fmadd_ps(z, _mm256_sub_ps(one, s), one));
    }
    case FMLP_ACT_TANH: {
        __m256 t = tanh256(z);
        return _mm256_fnmadd_ps(t, t, one);
    }
    case FMLP_ACT_SIGMOID: {
        __m256 s = sigmoid256(z);
        return _mm256_mul_ps(s, _mm256_sub_ps(one, s));
    }
    case FMLP_ACT_LEAKY_RELU:
        return _mm256_blendv_ps(_mm256_set1_ps(slope), one, _mm256_cmp_ps(z, zero, _CMP_GT_OQ));
    default: return one;
    }
}
T256 __m256 ld256(fmlp_dtype dt, const void* p) {
    if (dt == FMLP_F32) return _mm256_loadu_ps((const float*)p);
    __m128i h = _mm_loadu_si128((const __m128i*)p);
    if (dt == FMLP_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
T256 void st256(fmlp_dtype dt, void* p, __m256 v) {
    if (dt == FMLP_F32) { _mm256_storeu_ps((float*)p, v); return; }
    __m128i h;
    if (dt == FMLP_F16) h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    else {
        __m256i u = _mm256_castps_si256(v);
        __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        __m256i rnd = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
        __m256i q = _mm256_or_si256(u, _mm256_set1_epi32(0x400000));
        __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
        rnd = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(rnd), _mm256_castsi256_ps(q), nan));
        __m256i x = _mm256_srli_epi32(rnd, 16);
        h = _mm_packus_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
    }
    _mm_storeu_si128((__m128i*)p, h);
}

T256F void load_row_256(fmlp_dtype dt, const void* src, int64_t n, float* dst) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, ld256(dt, fmlp_cptr(dt, src, i)));
    if (i < n) load_row_s(dt, fmlp_cptr(dt, src, i), n - i, dst + i);
}
T256F void store_row_256(fmlp_dtype dt, void* dst, int64_t n, const float* src) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) st256(dt, fmlp_ptr(dt, dst, i), _mm256_loadu_ps(src + i));
    if (i < n) store_row_s(dt, fmlp_ptr(dt, dst, i), n - i, src + i);
}
T256F void bias_act_row_256(int act, float slope, const float* z, const float* bias, float* z_out,
                            float* h, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(z + i);
        if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + i));
        if (z_out) _mm256_storeu_ps(z_out + i, v);
        _mm256_storeu_ps(h + i, act256(act, v, slope));
    }
    if (i < n) bias_act_row_s(act, slope, z + i, bias ? bias + i : NULL, z_out ? z_out + i : NULL, h + i, n - i);
}
T256F void dact_mul_row_256(int act, float slope, const float* z, const float* g, float* out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(dact256(act, _mm256_loadu_ps(z + i), slope), _mm256_loadu_ps(g + i)));
    if (i < n) dact_mul_row_s(act, slope, z + i, g + i, out + i, n - i);
}
T256F void fwd_tile_256(const fmlp_fwd_tile* t) {
    const fmlp_dtype dt = t->dt;
    int j = 0;
    for (; j + 8 <= t->nn; j += 8) {
        __m256 b = _mm256_loadu_ps(t->bias + j);
        __m256 bu = t->cu ? _mm256_loadu_ps(t->bias_u + j) : b;
        for (int r = 0; r < t->rows; r++) {
            __m256 z = _mm256_add_ps(_mm256_loadu_ps(t->c + r * t->ldc + j), b);
            if (t->zs) st256(dt, fmlp_ptr(dt, t->zs, r * t->ldzs + j), z);
            __m256 h = act256(t->act, z, t->slope);
            if (t->cu) {
                __m256 zu = _mm256_add_ps(_mm256_loadu_ps(t->cu + r * t->ldc + j), bu);
                if (t->zus) st256(dt, fmlp_ptr(dt, t->zus, r * t->ldzs + j), zu);
                h = _mm256_mul_ps(h, zu);
            }
            if (t->hout_f32) _mm256_storeu_ps((float*)t->hout + r * t->ldh + j, h);
            else st256(dt, fmlp_ptr(dt, t->hout, r * t->ldh + j), h);
        }
    }
    if (j < t->nn) { /* column tail: the scalar tile code on the remaining columns */
        fmlp_fwd_tile u = *t;
        u.nn = t->nn - j;
        u.c = t->c + j;
        u.cu = t->cu ? t->cu + j : NULL;
        u.bias = t->bias + j;
        u.bias_u = t->bias_u ? t->bias_u + j : NULL;
        u.zs = t->zs ? fmlp_ptr(dt, t->zs, j) : NULL;
        u.zus = t->zus ? fmlp_ptr(dt, t->zus, j) : NULL;
        u.hout = t->hout_f32 ? (void*)((float*)t->hout + j) : fmlp_ptr(dt, t->hout, j);
        fwd_tile_s(&u);
    }
}
#endif

/* ======================================================================== */
/* dispatch                                                                 */
/* ======================================================================== */
#if FMLP_X86
#define USE512 (fmlp_cpu_isa_level() >= 2)
#define USE256 (fmlp_cpu_isa_level() >= 1)
#endif

void fmlp_cpu_load_row(fmlp_dtype dt, const void* src, int64_t n, float* dst) {
#if FMLP_X86
    if (USE512) { load_row_512(dt, src, n, dst); return; }
    if (USE256) { load_row_256(dt, src, n, dst); return; }
#endif
    load_row_s(dt, src, n, dst);
}
void fmlp_cpu_store_row(fmlp_dtype dt, void* dst, int64_t n, const float* src) {
#if FMLP_X86
    if (USE512) { store_row_512(dt, dst, n, src); return; }
    if (USE256) { store_row_256(dt, dst, n, src); return; }
#endif
    store_row_s(dt, dst, n, src);
}
void fmlp_cpu_bias_act_row(int act, float slope, const float* z, const float* bias, float* z_out,
                           float* h, int64_t n) {
#if FMLP_X86
    if (USE512) { bias_act_row_512(act, slope, z, bias, z_out, h, n); return; }
    if (USE256) { bias_act_row_256(act, slope, z, bias, z_out, h, n); return; }
#endif
    bias_act_row_s(act, slope, z, bias, z_out, h, n);
}
void fmlp_cpu_dact_mul_row(int act, float slope, const float* z, const float* g, float* out, int64_t n) {
#if FMLP_X86
    if (USE512) { dact_mul_row_512(act, slope, z, g, out, n); return; }
    if (USE256) { dact_mul_row_256(act, slope, z, g, out, n); return; }
#endif
    dact_mul_row_s(act, slope, z, g, out, n);
}
void fmlp_cpu_sfence(void) {
#if FMLP_X86
    _mm_sfence();
#endif
}
void fmlp_cpu_fwd_tile(const fmlp_fwd_tile* t) {
#if FMLP_X86
    if (USE512) { fwd_tile_512(t); return; }
    if (USE256) { fwd_tile_256(t); return; }
#endif
    fwd_tile_s(t);
}
