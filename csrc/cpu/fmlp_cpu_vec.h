/* fmlp_cpu_vec.h — elementwise row helpers of the CPU core: dtype row conversion and
 * activations / their derivatives on float32 rows, vectorised (AVX-512 / AVX2) with a
 * scalar fallback, chosen at run time by fmlp_cpu_isa_level().
 * Regime: forward epilogues and the backward's elementwise pass.
 * Built by setup.py; tested by tests/c/build_and_run.sh. */
#ifndef FMLP_CPU_VEC_H
#define FMLP_CPU_VEC_H
#include <stdint.h>
#include "../fmlp.h"

/* dst[0..n) = (float) src[0..n)  (src of dtype dt) */
void fmlp_cpu_load_row(fmlp_dtype dt, const void* src, int64_t n, float* dst);
/* dst[0..n) (dtype dt) = src[0..n) */
void fmlp_cpu_store_row(fmlp_dtype dt, void* dst, int64_t n, const float* src);
/* h = act(z + bias) (bias may be NULL); if z_out != NULL it receives z + bias. h may alias z. */
void fmlp_cpu_bias_act_row(int act, float slope, const float* z, const float* bias, float* z_out,
                           float* h, int64_t n);
/* out = g * act'(z); out may alias g or z */
void fmlp_cpu_dact_mul_row(int act, float slope, const float* z, const float* g, float* out, int64_t n);

/* Forward GEMM epilogue on one tile (rows <= MR, nn <= NR <= 64 columns):
 *   z = c + bias; [zs <- z]; h = act(z); gated: zu = cu + bias_u; [zus <- zu]; h *= zu;
 *   hout <- h (float32 when hout_f32, else dtype dt). */
typedef struct {
    int act;
    float slope;
    int rows, nn;
    const float* c;   /* accumulators, row stride ldc */
    const float* cu;  /* gated: up accumulators (stride ldc), else NULL */
    int64_t ldc;
    const float *bias, *bias_u; /* float32, never NULL */
    fmlp_dtype dt;
    void *zs, *zus;   /* saved z / z_up (dtype, row stride ldzs) or NULL */
    int64_t ldzs;
    void* hout;
    int hout_f32;
    int64_t ldh;
} fmlp_fwd_tile;
void fmlp_cpu_fwd_tile(const fmlp_fwd_tile* t);
/* Orders this thread's streaming stores (call before a parallel body returns). */
void fmlp_cpu_sfence(void);

static inline const void* fmlp_cptr(fmlp_dtype dt, const void* base, int64_t i) {
    return (const char*)base + (size_t)i * (dt == FMLP_F32 ? 4 : 2);
}
static inline void* fmlp_ptr(fmlp_dtype dt, void* base, int64_t i) {
    return (char*)base + (size_t)i * (dt == FMLP_F32 ? 4 : 2);
}
#endif
