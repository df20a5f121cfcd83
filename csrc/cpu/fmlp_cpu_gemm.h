/* fmlp_cpu_gemm.h — packed float32 GEMM of the CPU core: register-blocked MRxNR
 * microkernels (AVX-512, AVX2+FMA, portable C) chosen at run time, weight packing and a
 * K-blocked block driver with a per-tile epilogue callback.
 * Regime: every CPU GEMM (forward X·Wᵀ, backward dZ·W and dZᵀ·H).
 * Built by setup.py with the rest of csrc/ (all .c files); tested by tests/c/build_and_run.sh
 * (which also forces each ISA through FMLP_CPU_ISA=generic|avx2|avx512). */
#ifndef FMLP_CPU_GEMM_H
#define FMLP_CPU_GEMM_H
#include <stddef.h>
#include <stdint.h>
#include "../fmlp.h"

/* C[MR x NR] (ldc) (+)= A · B over K; B's k-th row of NR floats at B + k*ldb;
 *   kern:    A(r,k) = A[r*lda + k]   (row-major A)
 *   kern_tn: A(r,k) = A[k*lda + r]   (A stored transposed)
 * acc != 0: accumulate into C; else overwrite. */
typedef void (*fmlp_kern_fn)(int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                             float* C, int64_t ldc, int acc);

typedef struct {
    const char* name;
    int mr, nr;
    fmlp_kern_fn kern, kern_tn;
} fmlp_cpu_kernel;

/* The kernel for this machine (cached). FMLP_CPU_ISA=generic|avx2|avx512 forces one
 * (falls back if the CPU lacks it). */
const fmlp_cpu_kernel* fmlp_cpu_kernel_get(void);
/* Which ISA the elementwise helpers use: 0 generic, 1 avx2, 2 avx512. */
int fmlp_cpu_isa_level(void);

/* Called once per MR x NR tile after its last K block: (r0, c0) are the tile's offsets
 * inside the block, ct points at it in C. */
typedef void (*fmlp_epi_fn)(void* ectx, int64_t r0, int64_t c0, float* ct, int64_t ldc);

/* C[MB x NB] (+)= A[MB x K] · B, MB a multiple of mr, NB of nr. A(r,k) as kern (tn = 0)
 * or kern_tn (tn = 1) with stride lda. B holds NB/nr panels, panel p at B + p*bps, its
 * k-th row of nr floats at + k*ldb (packed panels: bps = K*nr, ldb = nr; a row-major
 * matrix with nr-padded columns: bps = nr, ldb = its row stride). Every tile of C is
 * written fully (padding rows/columns included), then epi (if any) runs on it. */
void fmlp_cpu_gemm(const fmlp_cpu_kernel* kr, int tn, int64_t MB, int64_t NB, int64_t K,
                   const float* A, int64_t lda, const float* B, int64_t bps, int64_t ldb, float* C,
                   int64_t ldc, int acc, fmlp_epi_fn epi, void* ectx);

/* Packs weight rows W[n][k] (n < rows, k < cols, dtype dt, row stride ldw) as panels for
 * X·Wᵀ: panel p (at dst + p*pstride) holds for k < cols the nr floats W[p*nr + j][k]
 * (0 past rows). Only panels [p0, p1). */
void fmlp_cpu_pack_wt(fmlp_dtype dt, const void* W, int64_t rows, int64_t cols, int nr,
                      float* dst, int64_t pstride, int64_t p0, int64_t p1);
/* Packs W[k][n] (k < rows, n < cols) for Z·W: panel p holds for k < rows the nr floats
 * W[k][p*nr + j] (0 past cols), k-th row at dst + p*pstride + (koff + k)*nr. */
void fmlp_cpu_pack_w(fmlp_dtype dt, const void* W, int64_t rows, int64_t cols, int nr, float* dst,
                     int64_t pstride, int64_t koff, int64_t p0, int64_t p1);

static inline int64_t fmlp_round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }
#endif /* FMLP_CPU_GEMM_H */
