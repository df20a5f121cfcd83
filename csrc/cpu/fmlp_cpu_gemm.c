/* fmlp_cpu_gemm.c — packed float32 GEMM for the CPU core (see fmlp_cpu_gemm.h).
 *
 * Microkernels, selected at run time with __builtin_cpu_supports (one build runs on
 * any x86-64; other architectures get the portable kernel only):
 *   avx512: MR=12 x NR=32 (24 zmm accumulators), target("avx512f")
 *   avx2  : MR=6  x NR=16 (12 ymm accumulators), target("avx2,fma")
 *   generic: MR=4 x NR=16, plain C (the compiler vectorises what the baseline ISA allows)
 * Driver order per block: K blocks (KC) outermost, then NR panels, then MR slices, so the
 * KC x NR slice of B stays in L1 while the MB x KC slice of A stays in L2.
 * Built by setup.py (no extra flags); tested by tests/c/build_and_run.sh. */
#include "fmlp_cpu_gemm.h"
#include <stdlib.h>
#include <string.h>
#include "fmlp_cpu_convert.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define FMLP_X86 1
#include <immintrin.h>
#else
#define FMLP_X86 0
#endif

#define FMLP_KC 256

/* ---- portable kernel ----------------------------------------------------- */
#define G_MR 4
#define G_NR 16
static void kern_generic(int64_t K, const float* A, int64_t lda, const float* B, float* C,
                         int64_t ldc, int acc) {
    float c[G_MR][G_NR];
    for (int r = 0; r < G_MR; r++)
        for (int j = 0; j < G_NR; j++) c[r][j] = acc ? C[r * ldc + j] : 0.0f;
    for (int64_t k = 0; k < K; k++) {
        const float* b = B + k * G_NR;
        for (int r = 0; r < G_MR; r++) {
            float a = A[r * lda + k];
            for (int j = 0; j < G_NR; j++) c[r][j] += a * b[j];
        }
    }
    for (int r = 0; r < G_MR; r++)
        for (int j = 0; j < G_NR; j++) C[r * ldc + j] = c[r][j];
}

#if FMLP_X86
/* ---- AVX2 + FMA: 6 x 16 -------------------------------------------------- */
__attribute__((target("avx2,fma"))) static void kern_avx2(int64_t K, const float* A, int64_t lda,
                                                          const float* B, float* C, int64_t ldc,
                                                          int acc) {
#define R2(r) __m256 c##r##0, c##r##1;
    R2(0) R2(1) R2(2) R2(3) R2(4) R2(5)
#undef R2
    if (acc) {
#define L2(r) c##r##0 = _mm256_loadu_ps(C + r * ldc); c##r##1 = _mm256_loadu_ps(C + r * ldc + 8);
        L2(0) L2(1) L2(2) L2(3) L2(4) L2(5)
#undef L2
    } else {
#define Z2(r) c##r##0 = _mm256_setzero_ps(); c##r##1 = _mm256_setzero_ps();
        Z2(0) Z2(1) Z2(2) Z2(3) Z2(4) Z2(5)
#undef Z2
    }
    const float *a0 = A, *a1 = A + lda, *a2 = A + 2 * lda, *a3 = A + 3 * lda, *a4 = A + 4 * lda,
                *a5 = A + 5 * lda;
    for (int64_t k = 0; k < K; k++) {
        __m256 b0 = _mm256_loadu_ps(B), b1 = _mm256_loadu_ps(B + 8), a;
        B += 16;
#define F2(r) a = _mm256_broadcast_ss(a##r + k); c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0); \
        c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1);
        F2(0) F2(1) F2(2) F2(3) F2(4) F2(5)
#undef F2
    }
#define S2(r) _mm256_storeu_ps(C + r * ldc, c##r##0); _mm256_storeu_ps(C + r * ldc + 8, c##r##1);
    S2(0) S2(1) S2(2) S2(3) S2(4) S2(5)
#undef S2
}

/* ---- AVX-512: 12 x 32 ---------------------------------------------------- */
__attribute__((target("avx512f"))) static void kern_avx512(int64_t K, const float* A, int64_t lda,
                                                          const float* B, float* C, int64_t ldc,
                                                          int acc) {
#define R5(r) __m512 c##r##0, c##r##1;
    R5(0) R5(1) R5(2) R5(3) R5(4) R5(5) R5(6) R5(7) R5(8) R5(9) R5(10) R5(11)
#undef R5
    if (acc) {
#define L5(r) c##r##0 = _mm512_loadu_ps(C + r * ldc); c##r##1 = _mm512_loadu_ps(C + r * ldc + 16);
        L5(0) L5(1) L5(2) L5(3) L5(4) L5(5) L5(6) L5(7) L5(8) L5(9) L5(10) L5(11)
#undef L5
    } else {
#define Z5(r) c##r##0 = _mm512_setzero_ps(); c##r##1 = _mm512_setzero_ps();
        Z5(0) Z5(1) Z5(2) Z5(3) Z5(4) Z5(5) Z5(6) Z5(7) Z5(8) Z5(9) Z5(10) Z5(11)
#undef Z5
    }
    const float *a0 = A, *a1 = A + lda, *a2 = A + 2 * lda, *a3 = A + 3 * lda;
    const float *a4 = A + 4 * lda, *a5 = A + 5 * lda, *a6 = A + 6 * lda, *a7 = A + 7 * lda;
    const float *a8 = A + 8 * lda, *a9 = A + 9 * lda, *a10 = A + 10 * lda, *a11 = A + 11 * lda;
    for (int64_t k = 0; k < K; k++) {
        __m512 b0 = _mm512_loadu_ps(B), b1 = _mm512_loadu_ps(B + 16), a;
        B += 32;
#define F5(r) a = _mm512_set1_ps(a##r[k]); c##r##0 = _mm512_fmadd_ps(a, b0, c##r##0); \
        c##r##1 = _mm512_fmadd_ps(a, b1, c##r##1);
        F5(0) F5(1) F5(2) F5(3) F5(4) F5(5) F5(6) F5(7) F5(8) F5(9) F5(10) F5(11)
#undef F5
    }
#define S5(r) _mm512_storeu_ps(C + r * ldc, c##r##0); _mm512_storeu_ps(C + r * ldc + 16, c##r##1);
    S5(0) S5(1) S5(2) S5(3) S5(4) S5(5) S5(6) S5(7) S5(8) S5(9) S5(10) S5(11)
#undef S5
}
#endif

/* ---- dispatch ------------------------------------------------------------ */
static const fmlp_cpu_kernel k_generic = {"generic", G_MR, G_NR, kern_generic};
#if FMLP_X86
static const fmlp_cpu_kernel k_avx2 = {"avx2", 6, 16, kern_avx2};
static const fmlp_cpu_kernel k_avx512 = {"avx512", 12, 32, kern_avx512};
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
void fmlp_cpu_gemm(const fmlp_cpu_kernel* kr, int64_t MB, int64_t NB, int64_t K, const float* A,
                   int64_t lda, const float* Bp, int64_t bps, float* C, int64_t ldc, int acc,
                   fmlp_epi_fn epi, void* ectx) {
    const int mr = kr->mr, nr = kr->nr;
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
            const float* bp = Bp + (c0 / nr) * bps + k0 * nr;
            for (int64_t r0 = 0; r0 < MB; r0 += mr) {
                float* ct = C + r0 * ldc + c0;
                kr->kern(kc, A + r0 * lda + k0, lda, bp, ct, ldc, acc || k0 > 0);
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
