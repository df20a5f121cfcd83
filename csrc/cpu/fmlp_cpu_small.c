/* fmlp_cpu_small.c — dot products of a few float32 activation rows with weight rows read
 * in place, for the small-M forward (see fmlp_cpu_small.h).
 *
 * Register blocks of NW weight rows x MB activation rows, vectorised along K (16 lanes
 * AVX-512, 8 AVX2, 16-float arrays in C); per K step the MB activation vectors are loaded
 * once and each weight vector (bf16/f16 converted in registers) feeds MB FMAs; the lane sums
 * are reduced at the end. Weight rows outermost, activation-row groups inside: a weight row
 * group is read from memory once and reused from L1/L2 by every row group.
 *   AVX-512: M <= 3: 8 x M blocks; else 4 x (<= 6) (24 zmm accumulators). K tail: masked loads.
 *   AVX2+FMA: 4 x (<= 3) (12 ymm accumulators); K tail summed in scalar.
 *   portable: 1 x (<= 4), 16-float partial sums (the compiler vectorises what it may).
 *   K < 32: a sequential chain per dot product (the packed kernels' order; accuracy).
 * Each lane sums K/16 (AVX2: K/8) products in order, then the lanes are added: the float32
 * error grows like that of the packed kernels' 64-step sub-blocks.
 * Built by setup.py (no extra flags); tested by tests/c/build_and_run.sh. */
#include "fmlp_cpu_small.h"
#include <stdlib.h>
#include <string.h>
#include "fmlp_cpu_convert.h"
#include "fmlp_cpu_gemm.h"
#include "fmlp_cpu_vec.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(FMLP_NO_X86) /* FMLP_NO_X86: portable-only test build */
#define FMLP_X86 1
#include <immintrin.h>
#else
#define FMLP_X86 0
#endif

static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
__attribute__((unused)) static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ---- threshold ----------------------------------------------------------- */
static int64_t g_forced = -1; /* test hook */
int64_t fmlp_cpu_small_m_override(void) {
    int64_t f = __atomic_load_n(&g_forced, __ATOMIC_RELAXED);
    if (f >= 0) return f;
    static int64_t env = -2; /* -2: not read yet, -1: unset */
    int64_t e = __atomic_load_n(&env, __ATOMIC_RELAXED);
    if (e == -2) {
        const char* s = getenv("FMLP_CPU_SMALL_M");
        e = (s && *s) ? atoll(s) : -1;
        if (e < -1) e = 0;
        __atomic_store_n(&env, e, __ATOMIC_RELAXED);
    }
    return e;
}
void fmlp_cpu_set_small_m(int64_t max_rows) { __atomic_store_n(&g_forced, max_rows < 0 ? -1 : max_rows, __ATOMIC_RELAXED); }

#ifndef FMLP_CPU_SMALL_PAR_MIN
#define FMLP_CPU_SMALL_PAR_MIN (1 << 20)
#endif
static int64_t g_par_min = -1;
int64_t fmlp_cpu_small_par_min(void) {
    int64_t v = __atomic_load_n(&g_par_min, __ATOMIC_RELAXED);
    return v >= 0 ? v : FMLP_CPU_SMALL_PAR_MIN;
}
void fmlp_cpu_set_small_par_min(int64_t work) { __atomic_store_n(&g_par_min, work < 0 ? -1 : work, __ATOMIC_RELAXED); }


/* ---- short K (< FMLP_SMALL_SEQ_K): one sequential chain per dot product, the order of the
 * packed kernels (which sum K in order inside 64-step sub-blocks): with a handful of
 * products, 16 rounded lane products + a reduction tree lose more to cancellation than a
 * chain, and speed does not matter there. FMA where the ISA level has it (as the packed
 * AVX2/AVX-512 kernels), multiply-add in the portable build (as its packed kernel). */
#define FMLP_SMALL_SEQ_K 32
#define SEQ_BODY(MAC)                                                                          \
    for (int64_t j = 0; j < nn; j++) {                                                         \
        const void* wr = fmlp_cptr(dt, W, (n0 + j) * K);                                       \
        for (int64_t m = 0; m < M; m++) {                                                      \
            const float* h = H + m * ldh;                                                      \
            float s = 0.0f;                                                                    \
            for (int64_t k = 0; k < K; k++) s = MAC(fmlp_load_elt(dt, wr, k), h[k], s);        \
            C[m * ldc + j] = s;                                                                \
        }                                                                                      \
    }
#define MAC_MULADD(a, b, c) ((c) + (a) * (b))
static void dot_rows_seq(fmlp_dtype dt, const void* W, int64_t n0, int64_t nn, int64_t K, const float* H,
                         int64_t ldh, int64_t M, float* C, int64_t ldc) {
    SEQ_BODY(MAC_MULADD)
}
#if FMLP_X86
#define MAC_FMA(a, b, c) __builtin_fmaf((a), (b), (c))
__attribute__((target("fma"))) static void dot_rows_seq_fma(fmlp_dtype dt, const void* W, int64_t n0, int64_t nn,
                                                            int64_t K, const float* H, int64_t ldh, int64_t M,
                                                            float* C, int64_t ldc) {
    SEQ_BODY(MAC_FMA)
}
#endif

/* ---- portable -------------------------------------------------------------- */
#define P_MB 4
static void dot_rows_generic(fmlp_dtype dt, const void* W, int64_t n0, int64_t nn, int64_t K, const float* H,
                             int64_t ldh, int64_t M, float* C, int64_t ldc) {
    float wbuf[16];
    for (int64_t j = 0; j < nn; j++) {
        const void* wr = fmlp_cptr(dt, W, (n0 + j) * K);
        for (int64_t m0 = 0; m0 < M; m0 += P_MB) {
            int mb = (int)imin(P_MB, M - m0);
            float acc[P_MB][16];
            memset(acc, 0, sizeof acc);
            int64_t k = 0;
            for (; k + 16 <= K; k += 16) {
                const float* w;
                if (dt == FMLP_F32) w = (const float*)wr + k;
                else {
                    for (int l = 0; l < 16; l++) wbuf[l] = fmlp_load_elt(dt, wr, k + l);
                    w = wbuf;
                }
                for (int m = 0; m < mb; m++) {
                    const float* h = H + (m0 + m) * ldh + k;
                    for (int l = 0; l < 16; l++) acc[m][l] += w[l] * h[l];
                }
            }
            for (int m = 0; m < mb; m++) {
                const float* h = H + (m0 + m) * ldh;
                for (int l = 8; l > 0; l >>= 1)
                    for (int q = 0; q < l; q++) acc[m][q] += acc[m][q + l];
                float s = acc[m][0];
                for (int64_t kk = k; kk < K; kk++) s += fmlp_load_elt(dt, wr, kk) * h[kk];
                C[(m0 + m) * ldc + j] = s;
            }
        }
    }
}

#if FMLP_X86
/* ---- AVX-512 ------------------------------------------------------------- */
#define T512I __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"), always_inline)) static inline
#define T512F __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) static

T512I __m512 ldw512(const fmlp_dtype dt, const void* p, __mmask16 m, int full) {
    if (dt == FMLP_F32) return full ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, p);
    __m256i h = full ? _mm256_loadu_si256((const __m256i*)p) : _mm256_maskz_loadu_epi16(m, p);
    if (dt == FMLP_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* C[m*ldc + j] for j < nwv (<= NW), m < MB; W rows at wr[j] (rows past nwv repeat the last) */
T512I void blk512(const fmlp_dtype dt, const int NW, const int MB, const char* W0, int64_t K, int nwv,
                  const float* H, int64_t ldh, float* C, int64_t ldc) {
    const size_t es = dt == FMLP_F32 ? 4 : 2;
    const char* wr[8];
    __m512 acc[8][6];
#pragma GCC unroll 8
    for (int j = 0; j < NW; j++) {
        wr[j] = W0 + (size_t)(j < nwv ? j : nwv - 1) * (size_t)K * es;
#pragma GCC unroll 6
        for (int m = 0; m < MB; m++) acc[j][m] = _mm512_setzero_ps();
    }
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 h[6];
#pragma GCC unroll 6
        for (int m = 0; m < MB; m++) h[m] = _mm512_loadu_ps(H + m * ldh + k);
#pragma GCC unroll 8
        for (int j = 0; j < NW; j++) {
            __m512 w = ldw512(dt, wr[j] + k * es, 0xffff, 1);
#pragma GCC unroll 6
            for (int m = 0; m < MB; m++) acc[j][m] = _mm512_fmadd_ps(w, h[m], acc[j][m]);
        }
    }
    if (k < K) {
        __mmask16 mk = (__mmask16)((1u << (K - k)) - 1u);
        __m512 h[6];
#pragma GCC unroll 6
        for (int m = 0; m < MB; m++) h[m] = _mm512_maskz_loadu_ps(mk, H + m * ldh + k);
#pragma GCC unroll 8
        for (int j = 0; j < NW; j++) {
            __m512 w = ldw512(dt, wr[j] + k * es, mk, 0);
#pragma GCC unroll 6
            for (int m = 0; m < MB; m++) acc[j][m] = _mm512_fmadd_ps(w, h[m], acc[j][m]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < NW; j++)
        if (j < nwv)
#pragma GCC unroll 6
            for (int m = 0; m < MB; m++) C[m * ldc + j] = _mm512_reduce_add_ps(acc[j][m]);
}

T512I void dot_rows_512_t(const fmlp_dtype dt, const void* W, int64_t n0, int64_t nn, int64_t K, const float* H,
                          int64_t ldh, int64_t M, float* C, int64_t ldc) {
    const size_t es = dt == FMLP_F32 ? 4 : 2;
    const char* Wb = (const char*)W + (size_t)n0 * (size_t)K * es;
    if (M <= 3) {
        for (int64_t j0 = 0; j0 < nn; j0 += 8) {
            int nwv = (int)imin(8, nn - j0);
            const char* w0 = Wb + (size_t)j0 * (size_t)K * es;
            switch (M) {
            case 1: blk512(dt, 8, 1, w0, K, nwv, H, ldh, C + j0, ldc); break;
            case 2: blk512(dt, 8, 2, w0, K, nwv, H, ldh, C + j0, ldc); break;
            default: blk512(dt, 8, 3, w0, K, nwv, H, ldh, C + j0, ldc); break;
            }
        }
        return;
    }
    int64_t ng = cdiv(M, 6);
    for (int64_t j0 = 0; j0 < nn; j0 += 4) {
        int nwv = (int)imin(4, nn - j0);
        const char* w0 = Wb + (size_t)j0 * (size_t)K * es;
        for (int64_t g = 0; g < ng; g++) { /* balanced row groups of <= 6 */
            int64_t m0 = M * g / ng, mb = M * (g + 1) / ng - m0;
            const float* h = H + m0 * ldh;
            float* c = C + m0 * ldc + j0;
            switch (mb) {
            case 1: blk512(dt, 4, 1, w0, K, nwv, h, ldh, c, ldc); break;
            case 2: blk512(dt, 4, 2, w0, K, nwv, h, ldh, c, ldc); break;
            case 3: blk512(dt, 4, 3, w0, K, nwv, h, ldh, c, ldc); break;
            case 4: blk512(dt, 4, 4, w0, K, nwv, h, ldh, c, ldc); break;
            case 5: blk512(dt, 4, 5, w0, K, nwv, h, ldh, c, ldc); break;
            default: blk512(dt, 4, 6, w0, K, nwv, h, ldh, c, ldc); break;
            }
        }
    }
}
T512F void dot_rows_512(fmlp_dtype dt, const void* W, int64_t n0, int64_t nn, int64_t K, const float* H,
                        int64_t ldh, int64_t M, float* C, int64_t ldc) {
    switch (dt) {
    case FMLP_BF16: dot_rows_512_t(FMLP_BF16, W, n0, nn, K, H, ldh, M, C, ldc); break;
    case FMLP_F16: dot_rows_512_t(FMLP_F16, W, n0, nn, K, H, ldh, M, C, ldc); break;
    default: dot_rows_512_t(FMLP_F32, W, n0, nn, K, H, ldh, M, C, ldc); break;
    }
}

/* ---- AVX2 + FMA + F16C --------------------------------------------------- */
#define T256I __attribute__((target("avx2,fma,f16c"), always_inline)) static inline
#define T256F __attribute__((target("avx2,fma,f16c"))) static

T256I __m256 ldw256(const fmlp_dtype dt, const void* p) {
    if (dt == FMLP_F32) return _mm256_loadu_ps((const float*)p);
    __m128i h = _mm_loadu_si128((const __m128i*)p);
    if (dt == FMLP_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
T256I float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
T256I void blk256(const fmlp_dtype dt, const int MB, const char* W0, int64_t K, int nwv, const float* H,
                  int64_t ldh, float* C, int64_t ldc) {
    const size_t es = dt == FMLP_F32 ? 4 : 2;
    const char* wr[4];
    __m256 acc[4][3];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        wr[j] = W0 + (size_t)(j < nwv ? j : nwv - 1) * (size_t)K * es;
#pragma GCC unroll 3
        for (int m = 0; m < MB; m++) acc[j][m] = _mm256_setzero_ps();
    }
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 h[3];
#pragma GCC unroll 3
        for (int m = 0; m < MB; m++) h[m] = _mm256_loadu_ps(H + m * ldh + k);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m256 w = ldw256(dt, wr[j] + k * es);
#pragma GCC unroll 3
            for (int m = 0; m < MB; m++) acc[j][m] = _mm256_fmadd_ps(w, h[m], acc[j][m]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
        if (j < nwv)
#pragma GCC unroll 3
            for (int m = 0; m < MB; m++) {
                float s = hsum256(acc[j][m]);
                for (int64_t kk = k; kk < K; kk++) s += fmlp_load_elt(dt, wr[j], kk) * H[m * ldh + kk];
                C[m * ldc + j] = s;
            }
}
T256I void dot_rows_256_t(const fmlp_dtype dt, const void* W, int64_t n0, int64_t nn, int64_t K, const float* H,
                          int64_t ldh, int64_t M, float* C, int64_t ldc) {
    const size_t es = dt == FMLP_F32 ? 4 : 2;
    const char* Wb = (const char*)W + (size_t)n0 * (size_t)K * es;
    int64_t ng = cdiv(M, 3);
    for (int64_t j0 = 0; j0 < nn; j0 += 4) {
        int nwv = (int)imin(4, nn - j0);
        const char* w0 = Wb + (size_t)j0 * (size_t)K * es;
        for (int64_t g = 0; g < ng; g++) {
            int64_t m0 = M * g / ng, mb = M * (g + 1) / ng - m0;
            const float* h = H + m0 * ldh;
            float* c = C + m0 * ldc + j0;
            switch (mb) {
            case 1: blk256(dt, 1, w0, K, nwv, h, ldh, c, ldc); break;
            case 2: blk256(dt, 2, w0, K, nwv, h, ldh, c, ldc); break;
            default: blk256(dt, 3, w0, K, nwv, h, ldh, c, ldc); break;
            }
        }
    }
}
T256F void dot_rows_256(fmlp_dtype dt, const void* W, int64_t n0, int64_t nn, int64_t K, const float* H,
                        int64_t ldh, int64_t M, float* C, int64_t ldc) {
    switch (dt) {
    case FMLP_BF16: dot_rows_256_t(FMLP_BF16, W, n0, nn, K, H, ldh, M, C, ldc); break;
    case FMLP_F16: dot_rows_256_t(FMLP_F16, W, n0, nn, K, H, ldh, M, C, ldc); break;
    default: dot_rows_256_t(FMLP_F32, W, n0, nn, K, H, ldh, M, C, ldc); break;
    }
}

/* ---- AVX-512 BF16 (vdpbf16ps): bf16 weights x bf16 activations, pairs summed into f32 ---- */
#define TBFI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"), always_inline)) static inline
#define TBFF __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"))) static

TBFI void blkbf(const int NW, const int MB, const uint16_t* W0, int64_t K, int nwv, const uint16_t* H,
                int64_t ldh, float* C, int64_t ldc) {
    const uint16_t* wr[8];
    __m512 acc[8][6];
#pragma GCC unroll 8
    for (int j = 0; j < NW; j++) {
        wr[j] = W0 + (size_t)(j < nwv ? j : nwv - 1) * (size_t)K;
#pragma GCC unroll 6
        for (int m = 0; m < MB; m++) acc[j][m] = _mm512_setzero_ps();
    }
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512i h[6];
#pragma GCC unroll 6
        for (int m = 0; m < MB; m++) h[m] = _mm512_loadu_si512(H + m * ldh + k);
#pragma GCC unroll 8
        for (int j = 0; j < NW; j++) {
            __m512i w = _mm512_loadu_si512(wr[j] + k);
#pragma GCC unroll 6
            for (int m = 0; m < MB; m++) acc[j][m] = _mm512_dpbf16_ps(acc[j][m], (__m512bh)w, (__m512bh)h[m]);
        }
    }
    if (k < K) {
        __mmask32 mk = (__mmask32)((1u << (K - k)) - 1u);
        __m512i h[6];
#pragma GCC unroll 6
        for (int m = 0; m < MB; m++) h[m] = _mm512_maskz_loadu_epi16(mk, H + m * ldh + k);
#pragma GCC unroll 8
        for (int j = 0; j < NW; j++) {
            __m512i w = _mm512_maskz_loadu_epi16(mk, wr[j] + k);
#pragma GCC unroll 6
            for (int m = 0; m < MB; m++) acc[j][m] = _mm512_dpbf16_ps(acc[j][m], (__m512bh)w, (__m512bh)h[m]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < NW; j++)
        if (j < nwv)
#pragma GCC unroll 6
            for (int m = 0; m < MB; m++) C[m * ldc + j] = _mm512_reduce_add_ps(acc[j][m]);
}
TBFF void dot_rows_bf(const uint16_t* W, int64_t n0, int64_t nn, int64_t K, const uint16_t* H, int64_t ldh,
                      int64_t M, float* C, int64_t ldc) {
    const uint16_t* Wb = W + (size_t)n0 * (size_t)K;
    if (M <= 3) {
        for (int64_t j0 = 0; j0 < nn; j0 += 8) {
            int nwv = (int)imin(8, nn - j0);
            const uint16_t* w0 = Wb + (size_t)j0 * (size_t)K;
            switch (M) {
            case 1: blkbf(8, 1, w0, K, nwv, H, ldh, C + j0, ldc); break;
            case 2: blkbf(8, 2, w0, K, nwv, H, ldh, C + j0, ldc); break;
            default: blkbf(8, 3, w0, K, nwv, H, ldh, C + j0, ldc); break;
            }
        }
        return;
    }
    int64_t ng = cdiv(M, 6);
    for (int64_t j0 = 0; j0 < nn; j0 += 4) {
        int nwv = (int)imin(4, nn - j0);
        const uint16_t* w0 = Wb + (size_t)j0 * (size_t)K;
        for (int64_t g = 0; g < ng; g++) {
            int64_t m0 = M * g / ng, mb = M * (g + 1) / ng - m0;
            const uint16_t* h = H + m0 * ldh;
            float* c = C + m0 * ldc + j0;
            switch (mb) {
            case 1: blkbf(4, 1, w0, K, nwv, h, ldh, c, ldc); break;
            case 2: blkbf(4, 2, w0, K, nwv, h, ldh, c, ldc); break;
            case 3: blkbf(4, 3, w0, K, nwv, h, ldh, c, ldc); break;
            case 4: blkbf(4, 4, w0, K, nwv, h, ldh, c, ldc); break;
            case 5: blkbf(4, 5, w0, K, nwv, h, ldh, c, ldc); break;
            default: blkbf(4, 6, w0, K, nwv, h, ldh, c, ldc); break;
            }
        }
    }
}
#endif

static int g_bf16dp_forced = -1;
int fmlp_cpu_has_bf16_dot(void) {
#if FMLP_X86
    int f = __atomic_load_n(&g_bf16dp_forced, __ATOMIC_RELAXED);
    if (f == 0) return 0;
    static int have = -1;
    int h = __atomic_load_n(&have, __ATOMIC_RELAXED);
    if (h < 0) {
        __builtin_cpu_init();
        h = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
        __atomic_store_n(&have, h, __ATOMIC_RELAXED);
    }
    return h && fmlp_cpu_isa_level() >= 2;
#else
    return 0;
#endif
}
void fmlp_cpu_set_bf16_dot(int on) { __atomic_store_n(&g_bf16dp_forced, on < 0 ? -1 : (on ? 1 : 0), __ATOMIC_RELAXED); }

void fmlp_cpu_dot_rows_bf16(const void* W, int64_t n0, int64_t nn, int64_t K, const uint16_t* H, int64_t ldh,
                            int64_t M, float* C, int64_t ldc) {
    if (nn <= 0 || M <= 0) return;
#if FMLP_X86
    dot_rows_bf((const uint16_t*)W, n0, nn, K, H, ldh, M, C, ldc);
#else
    (void)W; (void)n0; (void)K; (void)H; (void)ldh; (void)C; (void)ldc;
#endif
}

void fmlp_cpu_dot_rows(fmlp_dtype dt, const void* W, int64_t n0, int64_t nn, int64_t K, const float* H,
                       int64_t ldh, int64_t M, float* C, int64_t ldc) {
    if (nn <= 0 || M <= 0) return;
#if FMLP_X86
    int l = fmlp_cpu_isa_level();
    if (K < FMLP_SMALL_SEQ_K) {
        if (l >= 1) dot_rows_seq_fma(dt, W, n0, nn, K, H, ldh, M, C, ldc);
        else dot_rows_seq(dt, W, n0, nn, K, H, ldh, M, C, ldc);
        return;
    }
    if (l >= 2) { dot_rows_512(dt, W, n0, nn, K, H, ldh, M, C, ldc); return; }
    if (l >= 1) { dot_rows_256(dt, W, n0, nn, K, H, ldh, M, C, ldc); return; }
#endif
    if (K < FMLP_SMALL_SEQ_K) dot_rows_seq(dt, W, n0, nn, K, H, ldh, M, C, ldc);
    else dot_rows_generic(dt, W, n0, nn, K, H, ldh, M, C, ldc);
}

/* ======================================================================== */
/* comb_rows: Y[r][0..w) = sum_n C[r*ldcr + n*ldcn] * X[n][0..w), r < R <= 6, w <= 64    */
/* ======================================================================== */
static void comb_rows_generic(fmlp_dtype dt, int R, int w, int64_t N, const float* C, int64_t ldcr, int64_t ldcn,
                              const void* X, int64_t ldx, float* Y, int64_t ldy) {
    float acc[6][64], xb[64];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < w; j++) acc[r][j] = 0.0f;
    for (int64_t n = 0; n < N; n++) {
        const void* xr = fmlp_cptr(dt, X, n * ldx);
        for (int j = 0; j < w; j++) xb[j] = fmlp_load_elt(dt, xr, j);
        for (int r = 0; r < R; r++) {
            float c = C[r * ldcr + n * ldcn];
            for (int j = 0; j < w; j++) acc[r][j] += c * xb[j];
        }
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < w; j++) Y[r * ldy + j] = acc[r][j];
}
#if FMLP_X86
T512I void comb512_t(const fmlp_dtype dt, const int R, int w, int64_t N, const float* C, int64_t ldcr, int64_t ldcn,
                     const void* X, int64_t ldx, float* Y, int64_t ldy) {
    const size_t es = dt == FMLP_F32 ? 4 : 2;
    __m512 acc[6][4];
    __mmask16 mk[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
        int64_t rem = w - 16 * q;
        mk[q] = rem >= 16 ? (__mmask16)0xffff : rem <= 0 ? (__mmask16)0 : (__mmask16)((1u << rem) - 1u);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) acc[r][q] = _mm512_setzero_ps();
    }
    for (int64_t n = 0; n < N; n++) {
        const char* xr = (const char*)X + (size_t)(n * ldx) * es;
        __m512 x[4];
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) x[q] = ldw512(dt, xr + 16 * q * es, mk[q], 0);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            __m512 c = _mm512_set1_ps(C[r * ldcr + n * ldcn]);
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) acc[r][q] = _mm512_fmadd_ps(c, x[q], acc[r][q]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) _mm512_mask_storeu_ps(Y + r * ldy + 16 * q, mk[q], acc[r][q]);
}
#define COMB_R(DT)                                                                    \
    switch (R) {                                                                      \
    case 1: comb512_t(DT, 1, w, N, C, ldcr, ldcn, X, ldx, Y, ldy); break;             \
    case 2: comb512_t(DT, 2, w, N, C, ldcr, ldcn, X, ldx, Y, ldy); break;             \
    case 3: comb512_t(DT, 3, w, N, C, ldcr, ldcn, X, ldx, Y, ldy); break;             \
    case 4: comb512_t(DT, 4, w, N, C, ldcr, ldcn, X, ldx, Y, ldy); break;             \
    case 5: comb512_t(DT, 5, w, N, C, ldcr, ldcn, X, ldx, Y, ldy); break;             \
    default: comb512_t(DT, 6, w, N, C, ldcr, ldcn, X, ldx, Y, ldy); break;            \
    }
T512F void comb512(fmlp_dtype dt, int R, int w, int64_t N, const float* C, int64_t ldcr, int64_t ldcn,
                   const void* X, int64_t ldx, float* Y, int64_t ldy) {
    switch (dt) {
    case FMLP_BF16: COMB_R(FMLP_BF16) break;
    case FMLP_F16: COMB_R(FMLP_F16) break;
    default: COMB_R(FMLP_F32) break;
    }
}
#endif

void fmlp_cpu_comb_rows(fmlp_dtype dt, int64_t R, int64_t w, int64_t N, const float* C, int64_t ldcr, int64_t ldcn,
                        const void* X, int64_t ldx, float* Y, int64_t ldy) {
    size_t es = dt == FMLP_F32 ? 4 : 2;
    for (int64_t j0 = 0; j0 < w; j0 += 64)
        for (int64_t r0 = 0; r0 < R; r0 += 6) {
            int rr = (int)imin(6, R - r0), ww = (int)imin(64, w - j0);
            const float* c = C + r0 * ldcr;
            const void* x = (const char*)X + (size_t)j0 * es;
            float* y = Y + r0 * ldy + j0;
#if FMLP_X86
            if (fmlp_cpu_isa_level() >= 2) { comb512(dt, rr, ww, N, c, ldcr, ldcn, x, ldx, y, ldy); continue; }
#endif
            comb_rows_generic(dt, rr, ww, N, c, ldcr, ldcn, x, ldx, y, ldy);
        }
}
