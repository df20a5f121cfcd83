/* fmlp_cpu_vec.c — elementwise row helpers (see fmlp_cpu_vec.h).
 * Scalar reference versions; vectorised ones are selected by fmlp_cpu_isa_level().
 * Built by setup.py; tested by tests/c/build_and_run.sh. */
#include "fmlp_cpu_vec.h"
#include <string.h>
#include "../fmlp_activation.h"
#include "fmlp_cpu_convert.h"
#include "fmlp_cpu_gemm.h"

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

void fmlp_cpu_load_row(fmlp_dtype dt, const void* src, int64_t n, float* dst) { load_row_s(dt, src, n, dst); }
void fmlp_cpu_store_row(fmlp_dtype dt, void* dst, int64_t n, const float* src) { store_row_s(dt, dst, n, src); }
void fmlp_cpu_bias_act_row(int act, float slope, const float* z, const float* bias, float* z_out,
                           float* h, int64_t n) {
    bias_act_row_s(act, slope, z, bias, z_out, h, n);
}
void fmlp_cpu_dact_mul_row(int act, float slope, const float* z, const float* g, float* out, int64_t n) {
    dact_mul_row_s(act, slope, z, g, out, n);
}
