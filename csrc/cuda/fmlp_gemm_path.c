/* fmlp_gemm_path.c — forward and backward of the GEMM strategy, layer by layer.
 *
 * Regime: large M (prefill, training), and every shape the specialised kernels don't
 * take. Per plain layer the forward is one GEMM (cuBLAS via ctx->gemm, writing z) and
 * one epilogue pass (bias + activation, z kept when training): the launches eager
 * makes, with the bias/activation/gating in one pass. The backward per layer: one pass
 * for dz = g·act'(z) (gating included), a column sum for db, and two GEMMs (dW, dx).
 * Intermediates are stored in the call's dtype, like eager. Contract: fmlp_gemm_path.h. */
#include <string.h>
#include <cuda_runtime_api.h>
#include "fmlp_epilogue.h"
#include "fmlp_gemm_path.h"

#define TRY(expr)                  \
    do {                           \
        int rc_ = (expr);          \
        if (rc_) return rc_;       \
    } while (0)

/* ---- workspace carving ------------------------------------------------------ */
typedef struct {
    char* base;
    size_t used;
} carve;

static void* take(carve* c, size_t bytes) {
    size_t at = (c->used + 255) & ~(size_t)255;
    c->used = at + bytes;
    return c->base ? c->base + at : NULL;
}

static int64_t max_hidden(const fmlp_desc* d) {
    int64_t w = 0;
    for (int i = 1; i < d->n_layers; i++) if (d->width[i] > w) w = d->width[i];
    return w;
}

static int64_t max_out(const fmlp_desc* d) {
    int64_t w = 0;
    for (int i = 1; i <= d->n_layers; i++) if (d->width[i] > w) w = d->width[i];
    return w;
}

static int wk(const fmlp_desc* d, int i) { return i + (d->gated && i > 0); }

/* ---- forward ------------------------------------------------------------------ */
typedef struct {
    void* h[2]; /* (M, max_hidden) each: ping-pong layer outputs */
    void* zu;   /* (M, width[1]) gated, not saving: the up projection */
} fwd_ws;

static fwd_ws fwd_layout(const fmlp_desc* d, fmlp_dtype dt, int64_t M, int save, carve* c) {
    fwd_ws w;
    size_t hb = (size_t)(M * max_hidden(d)) * fmlp_dtype_size(dt);
    w.h[0] = take(c, hb);
    w.h[1] = take(c, hb);
    w.zu = (d->gated && !save) ? take(c, (size_t)(M * d->width[1]) * fmlp_dtype_size(dt)) : NULL;
    return w;
}

size_t fmlp_gemm_forward_ws(const fmlp_desc* d, fmlp_dtype dt, int64_t M, int save) {
    carve c = {NULL, 0};
    fwd_layout(d, dt, M, save, &c);
    return c.used;
}

/* C (M, N) = A (M, K) · W (N, K)ᵀ */
static int gemm_xwt(const fmlp_cuda_ctx* ctx, fmlp_dtype dt, int64_t M, int64_t N, int64_t K, const void* A,
                    const void* W, void* C, fmlp_status* st) {
    return ctx->gemm(ctx->gemm_ctx, dt, M, N, K, A, K, 1, W, 1, K, C, N, st);
}

int fmlp_forward_gemm_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x, const fmlp_params* p,
                           void* out, void* const* saved, void* ws, const fmlp_cuda_ctx* ctx, fmlp_status* st) {
    if (!ctx->gemm) return fmlp_fail(st, FMLP_ERR_INVALID, "the GEMM strategy needs ctx->gemm");
    carve c = {(char*)ws, 0};
    fwd_ws w = fwd_layout(d, dt, M, saved != NULL, &c);
    const void* hin = x;
    int64_t K = d->width[0];
    for (int i = 0; i < d->n_layers; i++) {
        int64_t N = d->width[i + 1];
        void* hout = (i == d->n_layers - 1) ? out : w.h[i & 1];
        int s = fmlp_saved_index(d, i);
        if (i == 0 && d->gated) {
            void* zg = saved ? saved[s] : hout;
            void* zu = saved ? saved[s + 1] : w.zu;
            TRY(gemm_xwt(ctx, dt, M, N, K, hin, p->w[0], zg, st));
            TRY(gemm_xwt(ctx, dt, M, N, K, hin, p->w[1], zu, st));
            TRY(fmlp_launch_glu(dt, M, N, zg, zu, p->b[0], p->b[1], hout, d->act[0], d->negative_slope,
                                ctx->stream, st));
        } else {
            int k = wk(d, i);
            void* z = (saved && s >= 0) ? saved[s] : hout;
            TRY(gemm_xwt(ctx, dt, M, N, K, hin, p->w[k], z, st));
            if (z != hout || p->b[k] || d->act[i] != FMLP_ACT_IDENTITY)
                TRY(fmlp_launch_bias_act(dt, M, N, z, p->b[k], hout, d->act[i], d->negative_slope, ctx->stream, st));
        }
        hin = hout;
        K = N;
    }
    return FMLP_OK;
}

/* ---- backward ----------------------------------------------------------------- */
typedef struct {
    void* g[2];  /* (M, max_hidden): gradient w.r.t. each hidden layer's output */
    void* dz[2]; /* (M, max_out): dz (and dzu for the gated layer) */
    void* hin;   /* (M, max_hidden): a layer's input, rebuilt from saved z */
    void* tmp;   /* (M, width[0]) gated with dx: the up branch's share of dx */
    float* acc;  /* (max_out,) float32: bias-gradient sums */
} bwd_ws;

static bwd_ws bwd_layout(const fmlp_desc* d, fmlp_dtype dt, int64_t M, carve* c) {
    bwd_ws w;
    size_t e = fmlp_dtype_size(dt);
    size_t hb = (size_t)(M * max_hidden(d)) * e, ob = (size_t)(M * max_out(d)) * e;
    w.g[0] = take(c, hb);
    w.g[1] = take(c, hb);
    w.dz[0] = take(c, ob);
    w.dz[1] = d->gated ? take(c, ob) : NULL;
    w.hin = take(c, hb);
    w.tmp = d->gated ? take(c, (size_t)(M * d->width[0]) * e) : NULL;
    w.acc = (float*)take(c, sizeof(float) * (size_t)max_out(d));
    return w;
}

size_t fmlp_gemm_backward_ws(const fmlp_desc* d, fmlp_dtype dt, int64_t M) {
    carve c = {NULL, 0};
    bwd_layout(d, dt, M, &c);
    return c.used;
}

int fmlp_backward_gemm_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* dout, const void* x,
                            const void* const* saved, const fmlp_params* p, void* dx, const fmlp_grads* g,
                            void* ws, const fmlp_cuda_ctx* ctx, fmlp_status* st) {
    if (!ctx->gemm) return fmlp_fail(st, FMLP_ERR_INVALID, "the GEMM strategy needs ctx->gemm");
    carve c = {(char*)ws, 0};
    bwd_ws w = bwd_layout(d, dt, M, &c);
    const void* gr = dout;
    for (int i = d->n_layers - 1; i >= 0; i--) {
        int64_t N = d->width[i + 1], K = d->width[i];
        int k = wk(d, i), s = fmlp_saved_index(d, i);
        int gated0 = d->gated && i == 0;
        const void* dz[2] = {gr, NULL};
        if (gated0) {
            TRY(fmlp_launch_dglu(dt, M, N, gr, saved[s], saved[s + 1], w.dz[0], w.dz[1], d->act[0],
                                 d->negative_slope, ctx->stream, st));
            dz[0] = w.dz[0];
            dz[1] = w.dz[1];
        } else if (s >= 0) {
            TRY(fmlp_launch_dact(dt, M, N, gr, saved[s], w.dz[0], d->act[i], d->negative_slope, ctx->stream, st));
            dz[0] = w.dz[0];
        }
        /* the layer's input: x, or act(z) of the layer below rebuilt from what it saved */
        const void* hin = x;
        if (i > 0) {
            int sp = fmlp_saved_index(d, i - 1);
            const void* zu = (d->gated && i == 1) ? saved[sp + 1] : NULL;
            TRY(fmlp_launch_act(dt, M, K, saved[sp], zu, w.hin, d->act[i - 1], d->negative_slope, ctx->stream, st));
            hin = w.hin;
        }
        for (int t = 0; t < 1 + gated0; t++) {
            if (g->db[k + t]) TRY(fmlp_launch_colsum(dt, M, N, dz[t], g->db[k + t], w.acc, ctx->stream, st));
            /* dW (N, K) = dzᵀ (N, M) · hin (M, K) */
            if (g->dw[k + t])
                TRY(ctx->gemm(ctx->gemm_ctx, dt, N, K, M, dz[t], 1, N, hin, K, 1, g->dw[k + t], K, st));
        }
        if (i == 0 && !dx) break;
        /* gradient of the layer's input: dz (M, N) · W (N, K) */
        void* target = i == 0 ? dx : w.g[i & 1];
        TRY(ctx->gemm(ctx->gemm_ctx, dt, M, K, N, dz[0], N, 1, p->w[k], K, 1, target, K, st));
        if (gated0) {
            TRY(ctx->gemm(ctx->gemm_ctx, dt, M, K, N, dz[1], N, 1, p->w[1], K, 1, w.tmp, K, st));
            TRY(fmlp_launch_add(dt, M * K, target, w.tmp, ctx->stream, st));
        }
        gr = target;
    }
    return FMLP_OK;
}
