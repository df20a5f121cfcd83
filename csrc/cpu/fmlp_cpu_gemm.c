/* fmlp_cpu_gemm.c — packed float32 GEMM for the CPU core (see fmlp_cpu_gemm.h).
 *
 * Microkernels, selected at run time with __builtin_cpu_supports (one build runs on
 * any x86-64; other architectures get the portable kernel only):
 *   avx512: MR=12 x NR=32 (24 zmm accumulators), target("avx512f")
 *   avx2  : MR=6  x NR=16 (12 ymm accumulators), target("avx2,fma")
 *   generic: MR=4 x NR=16, plain C (the compiler vectorises what the baseline ISA allows)
 * Each kernel sums K in sub-blocks of FMLP_KS steps added into C (two-level summation:
 * float32 error grows with KS + K/KS, not K).
 * Driver order per block: K blocks (KC) outermost, then NR panels, then MR slices, so the
 * KC x NR slice of B stays in L1 while the MB x KC slice of A stays in L2.
 * Built by setup.py (no extra flags); tested by tests/c/build_and_run.sh. */
#include "fmlp_cpu_gemm.h"
#include <stdlib.h>
#include <string.h>
#include "fmlp_cpu_convert.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(FMLP_NO_X86) /* FMLP_NO_X86: portable-only test build */
#define FMLP_X86 1
#include <immintrin.h>
#else
#define FMLP_X86 0
#endif

/* K block of the driver: the KC x NR slice of B (32 KB for AVX-512) stays in L1 */
#ifndef FMLP_KC
#define FMLP_KC 256
#endif
#define FMLP_KS 64  /* kernels sum K in sub-blocks of KS into C: shorter float32 chains */

/* Every kernel: C[MR x NR] (ldc) (+)= A · B over K, B's k-th row of NR floats at B + k*ldb.
 *   NN: A(r,k) = A[r*lda + k]   (row-major A: the forward's h, the backward's dz for dX)
 *   TN: A(r,k) = A[k*lda + r]   (A read transposed: dz for dW = dzᵀ·h, no copy needed)
 * K is summed in sub-blocks of FMLP_KS steps that are then added into C. */

/* ---- portable kernels ---------------------------------------------------- */
#define G_MR 4
#define G_NR 16
#define GENERIC_KERNEL(NAME, AIDX)                                                            \
    static void NAME(int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,      \
                     float* C, int64_t ldc, int acc) {                                         \
        float c[G_MR][G_NR];                                                                   \
        for (int64_t k0 = 0; k0 < K; k0 += FMLP_KS) {                                          \
            int64_t k1 = K - k0 < FMLP_KS ? K : k0 + FMLP_KS;                                  \
            for (int r = 0; r < G_MR; r++)                                                     \
                for (int j = 0; j < G_NR; j++) c[r][j] = 0.0f;                                 \
            for (int64_t k = k0; k < k1; k++) {                                                \
                const float* b = B + k * ldb;                                                  \
                for (int r = 0; r < G_MR; r++) {                                               \
                    float a = A[AIDX];                                                         \
                    for (int j = 0; j < G_NR; j++) c[r][j] += a * b[j];                        \
                }                                                                              \
            }                                                                                  \
            int add = acc || k0 > 0;                                                           \
            for (int r = 0; r < G_MR; r++)                                                     \
                for (int j = 0; j < G_NR; j++)                                                 \
                    C[r * ldc + j] = add ? C[r * ldc + j] + c[r][j] : c[r][j];                 \
        }                                                                                      \
    }
GENERIC_KERNEL(kern_generic, r * lda + k)
GENERIC_KERNEL(kern_generic_tn, k * lda + r)

#if FMLP_X86
/* ---- AVX2 + FMA: 6 x 16 -------------------------------------------------- */
#define AVX2_KERNEL(NAME, SETUP, STEP, AP)                                                     \
    __attribute__((target("avx2,fma"))) static void NAME(int64_t K, const float* A, int64_t lda, \
                                                        const float* B, int64_t ldb, float* C,   \
                                                        int64_t ldc, int acc) {                  \
        __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;                     \
        SETUP                                                                                  \
        for (int64_t k0 = 0; k0 < K; k0 += FMLP_KS) {                                          \
            int64_t k1 = K - k0 < FMLP_KS ? K : k0 + FMLP_KS;                                  \
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 =            \
                _mm256_setzero_ps();                                                           \
            for (int64_t k = k0; k < k1; k++) {                                                \
                const float* bk = B + k * ldb;                                                 \
                __m256 b0 = _mm256_loadu_ps(bk), b1 = _mm256_loadu_ps(bk + 8), a;              \
                STEP                                                                           \
                F2(0) F2(1) F2(2) F2(3) F2(4) F2(5)                                            \
            }                                                                                  \
            if (acc || k0 > 0) { A2(0) A2(1) A2(2) A2(3) A2(4) A2(5) }                         \
            S2(0) S2(1) S2(2) S2(3) S2(4) S2(5)                                                \
        }                                                                                      \
    }
#define F2(r) a = _mm256_broadcast_ss(AP(r)); c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0); \
    c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1);
#define A2(r) c##r##0 = _mm256_add_ps(c##r##0, _mm256_loadu_ps(C + r * ldc)); \
    c##r##1 = _mm256_add_ps(c##r##1, _mm256_loadu_ps(C + r * ldc + 8));
#define S2(r) _mm256_storeu_ps(C + r * ldc, c##r##0); _mm256_storeu_ps(C + r * ldc + 8, c##r##1);
#define AP(r) (A + (r) * lda + k)
AVX2_KERNEL(kern_avx2, , , AP)
#undef AP
#define AP(r) (pa + (r))
AVX2_KERNEL(kern_avx2_tn, , const float* pa = A + k * lda;, AP)
#undef AP

/* ---- AVX-512: 12 x 32 ---------------------------------------------------- */
#define AVX512_KERNEL(NAME, STEP, AP)                                                          \
    __attribute__((target("avx512f"))) static void NAME(int64_t K, const float* A, int64_t lda,  \
                                                       const float* B, int64_t ldb, float* C,    \
                                                       int64_t ldc, int acc) {                   \
        __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;                     \
        __m512 c60, c61, c70, c71, c80, c81, c90, c91, c100, c101, c110, c111;                 \
        const float *a0 = A, *a1 = A + lda, *a2 = A + 2 * lda, *a3 = A + 3 * lda;              \
        const float *a4 = A + 4 * lda, *a5 = A + 5 * lda, *a6 = A + 6 * lda, *a7 = A + 7 * lda; \
        const float *a8 = A + 8 * lda, *a9 = A + 9 * lda, *a10 = A + 10 * lda;                 \
        const float* a11 = A + 11 * lda;                                                       \
        (void)a0; (void)a1; (void)a2; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7;        \
        (void)a8; (void)a9; (void)a10; (void)a11;                                              \
        for (int64_t k0 = 0; k0 < K; k0 += FMLP_KS) {                                          \
            int64_t k1 = K - k0 < FMLP_KS ? K : k0 + FMLP_KS;                                  \
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 =            \
                _mm512_setzero_ps();                                                           \
            c60 = c61 = c70 = c71 = c80 = c81 = c90 = c91 = c100 = c101 = c110 = c111 = c00;    \
            for (int64_t k = k0; k < k1; k++) {                                                \
                const float* bk = B + k * ldb;                                                 \
                __m512 b0 = _mm512_loadu_ps(bk), b1 = _mm512_loadu_ps(bk + 16), a;             \
                STEP                                                                           \
                F5(0) F5(1) F5(2) F5(3) F5(4) F5(5) F5(6) F5(7) F5(8) F5(9) F5(10) F5(11)     \
            }                                                                                  \
            if (acc || k0 > 0) {                                                               \
                A5(0) A5(1) A5(2) A5(3) A5(4) A5(5) A5(6) A5(7) A5(8) A5(9) A5(10) A5(11)     \
            }                                                                                  \
            S5(0) S5(1) S5(2) S5(3) S5(4) S5(5) S5(6) S5(7) S5(8) S5(9) S5(10) S5(11)         \
        }                                                                                      \
    }
#define F5(r) a = _mm512_set1_ps(*AP(r)); c##r##0 = _mm512_fmadd_ps(a, b0, c##r##0); \
    c##r##1 = _mm512_fmadd_ps(a, b1, c##r##1);
#define A5(r) c##r##0 = _mm512_add_ps(c##r##0, _mm512_loadu_ps(C + r * ldc)); \
    c##r##1 = _mm512_add_ps(c##r##1, _mm512_loadu_ps(C + r * ldc + 16));
#define S5(r) _mm512_storeu_ps(C + r * ldc, c##r##0); _mm512_storeu_ps(C + r * ldc + 16, c##r##1);
#define AP(r) (a##r + k)
AVX512_KERNEL(kern_avx512, , AP)
#undef AP
#define AP(r) (pa + (r))
AVX512_KERNEL(kern_avx512_tn, const float* pa = A + k * lda;, AP)
#undef AP
#endif

/* ---- dispatch ------------------------------------------------------------ */
static const fmlp_cpu_kernel k_generic = {"generic", G_MR, G_NR, kern_generic, kern_generic_tn};
#if FMLP_X86
static const fmlp_cpu_kernel k_avx2 = {"avx2", 6, 16, kern_avx2, kern_avx2_tn};
static const fmlp_cpu_kernel k_avx512 = {"avx512", 12, 32, kern_avx512, kern_avx512_tn};
#endif

static int detect_level(void) {
    int want = 99;
    const char* e = getenv("FMLP_CPU_ISA");
    if (e) {
        if (!strcmp(e, "generic")) want = 0;
        else if (!strcmp(e, "avx2")) want = 1;
        else if (!strcmp(e, "avx512")) want = 2;
    }
    int have = 0;
#if FMLP_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c"))
        have = 1;
    if (have == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        have = 2;
#endif
    return want < have ? want : have;
}

int fmlp_cpu_isa_level(void) {
    static int level = -1;
    int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (l < 0) {
        l = detect_level();
        __atomic_store_n(&level, l, __ATOMIC_RELAXED);
    }
    return l;
}

const fmlp_cpu_kernel* fmlp_cpu_kernel_get(void) {
#if FMLP_X86
    switch (fmlp_cpu_isa_level()) {
    case 2: return &k_avx512;
    case 1: return &k_avx2;
    default: break;
    }
#endif
    return &k_generic;
}

/* ---- block driver -------------------------------------------------------- */
void fmlp_cpu_gemm(const fmlp_cpu_kernel* kr, int tn, int64_t MB, int64_t NB, int64_t K,
                   const float* A, int64_t lda, const float* B, int64_t bps, int64_t ldb, float* C,
                   int64_t ldc, int acc, fmlp_epi_fn epi, void* ectx) {
    const int mr = kr->mr, nr = kr->nr;
    fmlp_kern_fn kern = tn ? kr->kern_tn : kr->kern;
    if (K <= 0) {
        for (int64_t r = 0; r < MB; r++)
            if (!acc) memset(C + r * ldc, 0, (size_t)NB * sizeof(float));
        if (epi)
            for (int64_t c0 = 0; c0 < NB; c0 += nr)
                for (int64_t r0 = 0; r0 < MB; r0 += mr) epi(ectx, r0, c0, C + r0 * ldc + c0, ldc);
        return;
    }
    for (int64_t k0 = 0; k0 < K; k0 += FMLP_KC) {
        int64_t kc = K - k0 < FMLP_KC ? K - k0 : FMLP_KC;
        int last = k0 + kc == K;
        for (int64_t c0 = 0; c0 < NB; c0 += nr) {
            const float* bp = B + (c0 / nr) * bps + k0 * ldb;
            for (int64_t r0 = 0; r0 < MB; r0 += mr) {
                float* ct = C + r0 * ldc + c0;
                const float* ap = tn ? A + k0 * lda + r0 : A + r0 * lda + k0;
                kern(kc, ap, lda, bp, ldb, ct, ldc, acc || k0 > 0);
                if (last && epi) epi(ectx, r0, c0, ct, ldc);
            }
        }
    }
}

/* ---- packing ------------------------------------------------------------- */
void fmlp_cpu_pack_wt(fmlp_dtype dt, const void* W, int64_t rows, int64_t cols, int nr,
                      float* dst, int64_t pstride, int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
        float* d = dst + p * pstride;
        for (int j = 0; j < nr; j++) {
            int64_t n = p * nr + j;
            if (n < rows) {
                if (dt == FMLP_F32) {
                    const float* w = (const float*)W + n * cols;
                    for (int64_t k = 0; k < cols; k++) d[k * nr + j] = w[k];
                } else {
                    for (int64_t k = 0; k < cols; k++) d[k * nr + j] = fmlp_load_elt(dt, W, n * cols + k);
                }
            } else {
                for (int64_t k = 0; k < cols; k++) d[k * nr + j] = 0.0f;
            }
        }
    }
}

void fmlp_cpu_pack_w(fmlp_dtype dt, const void* W, int64_t rows, int64_t cols, int nr, float* dst,
                     int64_t pstride, int64_t koff, int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
        float* d = dst + p * pstride + koff * nr;
        int64_t n0 = p * nr, nn = cols - n0 < nr ? cols - n0 : nr;
        for (int64_t k = 0; k < rows; k++) {
            float* dk = d + k * nr;
            for (int64_t j = 0; j < nn; j++) dk[j] = fmlp_load_elt(dt, W, k * cols + n0 + j);
            for (int64_t j = nn; j < nr; j++) dk[j] = 0.0f;
        }
    }
}
