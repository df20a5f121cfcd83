/* fmlp_cpu_small.h — small-M building block of the CPU core: dot products of a few
 * activation rows with weight rows read in place (row-major (out, in), dtype converted in
 * registers), no packing. AVX-512 / AVX2+FMA / portable C, chosen at run time by
 * fmlp_cpu_isa_level() like the GEMM kernels.
 * Regime: the forward at small M (fmlp_cpu.c picks the path: sm_max_rows).
 * Built by setup.py; tested by tests/c/build_and_run.sh (both paths forced per case). */
#ifndef FMLP_CPU_SMALL_H
#define FMLP_CPU_SMALL_H
#include <stdint.h>
#include "../fmlp.h"

/* C[m*ldc + j] = sum_k H[m*ldh + k] * W[(n0 + j)*K + k]  for m < M, j < nn, k < K.
 * W: row-major (rows, K) of dtype dt (rows read: n0 .. n0+nn-1 only). H float32. Each
 * weight row is read from memory once per call (all M rows use it while it is in L1/L2). */
void fmlp_cpu_dot_rows(fmlp_dtype dt, const void* W, int64_t n0, int64_t nn, int64_t K, const float* H,
                       int64_t ldh, int64_t M, float* C, int64_t ldc);

/* (K < 32: fmlp_cpu_dot_rows sums each dot product in one sequential chain; callers use it,
 * not the bf16 kernel below, for such K.)
 * Same with bfloat16 weights and bfloat16 activations H (row stride ldh elements), pairs of
 * products summed into float32 by vdpbf16ps; only when fmlp_cpu_has_bf16_dot(). */
void fmlp_cpu_dot_rows_bf16(const void* W, int64_t n0, int64_t nn, int64_t K, const uint16_t* H, int64_t ldh,
                            int64_t M, float* C, int64_t ldc);
/* AVX-512 level and the CPU has avx512_bf16 (and the test hook does not forbid it). */
int fmlp_cpu_has_bf16_dot(void);
/* Test hook: 0 forbids the bf16 dot-product kernel, -1 restores the default. */
void fmlp_cpu_set_bf16_dot(int on);

/* Small-M backward building block: Y[r*ldy + j] = sum_{n<N} C[r*ldcr + n*ldcn] * X[n*ldx + j]
 * for r < R, j < w (X of dtype dt, rows read in place; C, Y float32). AVX-512 register blocks
 * of 6 x 64 outputs, else portable C (the AVX2 level uses the portable code). dW rows
 * (X = layer inputs, C = dz columns) and dX rows (X = weight rows, C = dz rows). */
void fmlp_cpu_comb_rows(fmlp_dtype dt, int64_t R, int64_t w, int64_t N, const float* C, int64_t ldcr, int64_t ldcn,
                        const void* X, int64_t ldx, float* Y, int64_t ldy);

/* Forced threshold: the largest M that the forward runs on the small-M path (0: never), or
 * -1 when not forced (fmlp_cpu.c then applies its measured default). Set by the environment
 * variable FMLP_CPU_SMALL_M=<rows> (read once per process, so workspace sizes and calls
 * always agree) or by the test hook below (which wins). */
int64_t fmlp_cpu_small_m_override(void);
/* Test hook: force the threshold (>= 0), or -1 to go back to the default / environment.
 * Not thread-safe with concurrent calls; query workspace sizes after setting it. */
void fmlp_cpu_set_small_m(int64_t max_rows);
/* A small-M layer runs through ctx->parallel_for only when N*K*(dtype bytes + M) (doubled
 * for the gated layer) reaches this (default FMLP_CPU_SMALL_PAR_MIN); below, one thread
 * (a parallel_for call costs more than it saves). Test hook: set (>= 0) / reset (-1). */
int64_t fmlp_cpu_small_par_min(void);
void fmlp_cpu_set_small_par_min(int64_t work);
#endif
