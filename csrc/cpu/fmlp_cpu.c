/* fmlp_cpu.c — CPU forward and backward of a whole MLP stack (all regimes).
 *
 * Straightforward first version: row blocks, float32 scratch, scalar loops.
 * Built by setup.py into fused_mlp._C; tested by tests/test_numerics.py. */
#include <math.h>
#include <string.h>
#include "../fmlp.h"
#include "../fmlp_activation.h"

/* ---- dtype conversion ---------------------------------------------------- */
static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}
static inline float f16_to_f32(uint16_t h) {
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
static inline uint16_t f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x47800000u) return (uint16_t)(sign | 0x7c00u); /* overflow -> inf */
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

static inline float load_elt(fmlp_dtype dt, const void* p, int64_t i) {
    switch (dt) {
    case FMLP_BF16: return bf16_to_f32(((const uint16_t*)p)[i]);
    case FMLP_F16: return f16_to_f32(((const uint16_t*)p)[i]);
    default: return ((const float*)p)[i];
    }
}
static inline void store_elt(fmlp_dtype dt, void* p, int64_t i, float v) {
    switch (dt) {
    case FMLP_BF16: ((uint16_t*)p)[i] = f32_to_bf16(v); break;
    case FMLP_F16: ((uint16_t*)p)[i] = f32_to_f16(v); break;
    default: ((float*)p)[i] = v;
    }
}

size_t fmlp_forward_workspace_bytes_cpu(const fmlp_desc* d, fmlp_dtype dt, int64_t M, int save,
                                        const fmlp_cpu_ctx* ctx) {
    (void)d; (void)dt; (void)M; (void)save; (void)ctx;
    return 0;
}
size_t fmlp_backward_workspace_bytes_cpu(const fmlp_desc* d, fmlp_dtype dt, int64_t M,
                                         const fmlp_cpu_ctx* ctx) {
    (void)d; (void)dt; (void)M; (void)ctx;
    return 0;
}

/* Naive reference: one row at a time. */
int fmlp_forward_cpu(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x,
                     const fmlp_params* p, void* out, void* const* saved, void* ws,
                     const fmlp_cpu_ctx* ctx, fmlp_status* st) {
    (void)ws; (void)ctx;
    int rc = fmlp_desc_validate(d, st);
    if (rc) return rc;
    int64_t maxw = 0;
    for (int i = 0; i <= d->n_layers; i++) if (d->width[i] > maxw) maxw = d->width[i];
    float h[2][4096 * 4], zg[4096 * 4];
    if (maxw > 4096 * 4) return fmlp_fail(st, FMLP_ERR_UNSUPPORTED, "naive cpu: width too large");
    for (int64_t m = 0; m < M; m++) {
        for (int64_t k = 0; k < d->width[0]; k++) h[0][k] = load_elt(dt, x, m * d->width[0] + k);
        int cur = 0, wk = 0;
        for (int i = 0; i < d->n_layers; i++) {
            int64_t in = d->width[i], on = d->width[i + 1];
            int s = fmlp_saved_index(d, i);
            float* hin = h[cur];
            float* hout = h[cur ^ 1];
            if (i == 0 && d->gated) {
                for (int64_t n = 0; n < on; n++) {
                    float a = p->b[0] ? load_elt(dt, p->b[0], n) : 0.f;
                    float b = p->b[1] ? load_elt(dt, p->b[1], n) : 0.f;
                    for (int64_t k = 0; k < in; k++) {
                        a += hin[k] * load_elt(dt, p->w[0], n * in + k);
                        b += hin[k] * load_elt(dt, p->w[1], n * in + k);
                    }
                    if (saved) { store_elt(dt, saved[s], m * on + n, a); store_elt(dt, saved[s + 1], m * on + n, b); }
                    zg[n] = fmlp_act(d->act[0], a, d->negative_slope) * b;
                }
                memcpy(hout, zg, on * sizeof(float));
                wk = 2;
            } else {
                for (int64_t n = 0; n < on; n++) {
                    float a = p->b[wk] ? load_elt(dt, p->b[wk], n) : 0.f;
                    for (int64_t k = 0; k < in; k++) a += hin[k] * load_elt(dt, p->w[wk], n * in + k);
                    if (saved && s >= 0) store_elt(dt, saved[s], m * on + n, a);
                    hout[n] = fmlp_act(d->act[i], a, d->negative_slope);
                }
                wk++;
            }
            cur ^= 1;
        }
        for (int64_t n = 0; n < d->width[d->n_layers]; n++) store_elt(dt, out, m * d->width[d->n_layers] + n, h[cur][n]);
    }
    return FMLP_OK;
}

int fmlp_backward_cpu(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* dout,
                      const void* x, const void* const* saved, const fmlp_params* p, void* dx,
                      const fmlp_grads* g, void* ws, const fmlp_cpu_ctx* ctx, fmlp_status* st) {
    (void)ws; (void)ctx; (void)dout; (void)x; (void)saved; (void)p; (void)dx; (void)g; (void)M; (void)dt;
    int rc = fmlp_desc_validate(d, st);
    if (rc) return rc;
    return fmlp_fail(st, FMLP_ERR_UNSUPPORTED, "backward not written yet");
}
