/* fmlp_epilogue.h — elementwise CUDA kernels of the GEMM strategy (fmlp_epilogue.cu).
 * All tensors are row-major (M, N) in dtype dt unless stated; float32 arithmetic, one
 * rounding per output; launched on `stream`; any pointer alignment and width (16-byte
 * aligned pointers with N % (16 / element size) == 0 take the vector path, others the
 * scalar one, with bit-identical results); return FMLP_OK, or a CUDA error (or
 * FMLP_ERR_INVALID past 2^38 elements) in st. */
#ifndef FMLP_EPILOGUE_H
#define FMLP_EPILOGUE_H
#include "../fmlp.h"
#ifdef __cplusplus
extern "C" {
#endif

/* z := z + bias (bias (N,) or NULL);  h := act(z).  h may alias z (then z is not kept). */
int fmlp_launch_bias_act(fmlp_dtype dt, int64_t M, int64_t N, void* z, const void* bias, void* h,
                         int act, float slope, void* stream, fmlp_status* st);

/* zg += bg; zu += bu;  h := act(zg) * zu.  h may alias zg. */
int fmlp_launch_glu(fmlp_dtype dt, int64_t M, int64_t N, void* zg, void* zu, const void* bg,
                    const void* bu, void* h, int act, float slope, void* stream, fmlp_status* st);

/* dz := g * act'(z), and when h != NULL also h := act(z) (the layer's output, rebuilt
 * from the saved z in the same pass, for the next weight gradient). dz may alias g. */
int fmlp_launch_dact(fmlp_dtype dt, int64_t M, int64_t N, const void* g, const void* z, void* dz,
                     void* h, int act, float slope, void* stream, fmlp_status* st);

/* dzg := g * zu * act'(zg);  dzu := g * act(zg);  when h != NULL, h := act(zg) * zu.
 * dzg may alias g. */
int fmlp_launch_dglu(fmlp_dtype dt, int64_t M, int64_t N, const void* g, const void* zg,
                     const void* zu, void* dzg, void* dzu, void* h, int act, float slope, void* stream,
                     fmlp_status* st);

/* db[n] := sum_m dz[m, n], one launch, one block per 32 columns: for the small M
 * (<= ~1024) where a cuBLAS 1ᵀ·dz costs more in launch than in work. */
int fmlp_launch_colsum(fmlp_dtype dt, int64_t M, int64_t N, const void* dz, void* db, void* stream,
                       fmlp_status* st);

/* ones[0..n) := 1 (for bias gradients as a GEMM: db = 1ᵀ·dz). */
int fmlp_launch_fill_ones(fmlp_dtype dt, int64_t n, void* ones, void* stream, fmlp_status* st);

/* out (N, K) := a (N,) ⊗ b (K,): out[n, k] = a[n]·b[k], float32 product rounded once (what a
 * GEMM with inner dimension 1 gives). The weight gradient of a one-row batch: cuBLAS picks a
 * slow kernel for it (H100: 8.9 us for 4096 x 1024 bf16, 8 MB written; ~3 us at HBM speed). */
int fmlp_launch_outer(fmlp_dtype dt, int64_t N, int64_t K, const void* a, const void* b, void* out,
                      void* stream, fmlp_status* st);

/* y := y + t (n elements). */
int fmlp_launch_add(fmlp_dtype dt, int64_t n, void* y, const void* t, void* stream, fmlp_status* st);

#ifdef __cplusplus
}
#endif
#endif
