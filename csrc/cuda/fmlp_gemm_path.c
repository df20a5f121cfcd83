/* fmlp_gemm_path.c — forward and backward of the GEMM strategy, layer by layer.
 *
 * Regime: large M (prefill, training), and every shape the specialised kernels don't
 * take. Per plain layer the forward is one cuBLAS product with the bias in its epilogue
 * (ctx->linear: aten::linear, exactly eager's z) and one pass for the activation (z kept
 * when training; gated: act(gate)·up in the same pass). The backward per layer: one pass
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


int fmlp_forward_gemm_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x, const fmlp_params* p,
                           void* out, void* const* saved, void* ws, const fmlp_cuda_ctx* ctx, fmlp_status* st) {
    if (!ctx->linear) return fmlp_fail(st, FMLP_ERR_INVALID, "the GEMM strategy needs ctx->linear");
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
            TRY(ctx->linear(ctx->gemm_ctx, dt, M, N, K, hin, p->w[0], p->b[0], zg, st));
            TRY(ctx->linear(ctx->gemm_ctx, dt, M, N, K, hin, p->w[1], p->b[1], zu, st));
            TRY(fmlp_launch_glu(dt, M, N, zg, zu, NULL, NULL, hout, d->act[0], d->negative_slope, ctx->stream, st));
        } else {
            int k = wk(d, i);
            void* z = (saved && s >= 0) ? saved[s] : hout;
            /* aten::linear: the bias inside cuBLAS's epilogue, one rounding, eager's exact z.
             * (Measured alternative, reverted: aten::mm + the bias added in our epilogue was
             * slower on biased layers, 0.79-0.89x eager vs 0.90-0.93x; NOTES.md.) */
            TRY(ctx->linear(ctx->gemm_ctx, dt, M, N, K, hin, p->w[k], p->b[k], z, st));
            if (z != hout || d->act[i] != FMLP_ACT_IDENTITY)
                TRY(fmlp_launch_bias_act(dt, M, N, z, NULL, hout, d->act[i], d->negative_slope, ctx->stream, st));
        }
        hin = hout;
        K = N;
    }
    return FMLP_OK;
}

/* ---- backward -----------------------------------------------------------------
 * Per layer i, from its dz (and dzu for a gated layer 0):
 *   g = dz · W_i                       gradient of the layer's input h_i (cuBLAS)
 *   dz_{i-1} = g ⊙ act'(z_{i-1}),  h_i = act(z_{i-1})   one pass over saved z (gated: dglu)
 *   db_i = Σ_rows dz,  dW_i = dzᵀ · h_i                  (cuBLAS)
 * so each saved z is read once, and h_i is rebuilt in the same pass that needs z anyway. */
typedef struct {
    void* gz[2]; /* (M, max_out): dz of alternate layers (dz_{i-1} is built while dz_i is in use) */
    void* dzu;   /* (M, width[1]) gated: dz of the up projection */
    void* hin;   /* (M, max_hidden): the current layer's input, rebuilt from saved z */
    void* tmp;   /* (M, width[0]) gated with dx: the up branch's share of dx */
    void* ones;  /* (M,) of 1 when M > DB_GEMM_MIN_ROWS: bias gradients as 1ᵀ·dz (cuBLAS) */
} bwd_ws;

/* Above this many rows the bias gradient is a cuBLAS product 1ᵀ·dz (bandwidth-bound
 * gemv, all SMs); below, one column-sum launch. Measured: the column-sum kernel with
 * few row slices made narrow64x5 bf16 fwd+bwd 0.60x eager at M = 1024 (bench/RESULTS.md). */
#define DB_GEMM_MIN_ROWS 1024

static bwd_ws bwd_layout(const fmlp_desc* d, fmlp_dtype dt, int64_t M, carve* c) {
    bwd_ws w;
    size_t e = fmlp_dtype_size(dt);
    size_t hb = (size_t)(M * max_hidden(d)) * e, ob = (size_t)(M * max_out(d)) * e;
    w.gz[0] = take(c, ob);
    w.gz[1] = take(c, ob);
    w.dzu = d->gated ? take(c, (size_t)(M * d->width[1]) * e) : NULL;
    w.hin = take(c, hb);
    w.tmp = d->gated ? take(c, (size_t)(M * d->width[0]) * e) : NULL;
    w.ones = M > DB_GEMM_MIN_ROWS ? take(c, (size_t)M * e) : NULL;
    return w;
}

size_t fmlp_gemm_backward_ws(const fmlp_desc* d, fmlp_dtype dt, int64_t M) {
    carve c = {NULL, 0};
    bwd_layout(d, dt, M, &c);
    return c.used;
}

/* dz of layer i (and dzu when it is the gated layer 0) from g, the gradient of its output;
 * h (may be NULL): also rebuild act(z_i) [* zu], the next layer's input. */
static int act_backward(const fmlp_desc* d, fmlp_dtype dt, int64_t M, int i, const void* g,
                        const void* const* saved, void* dz, void* dzu, void* h, const fmlp_cuda_ctx* ctx,
                        fmlp_status* st) {
    int s = fmlp_saved_index(d, i);
    int64_t N = d->width[i + 1];
    if (d->gated && i == 0)
        return fmlp_launch_dglu(dt, M, N, g, saved[s], saved[s + 1], dz, dzu, h, d->act[0], d->negative_slope,
                                ctx->stream, st);
    return fmlp_launch_dact(dt, M, N, g, saved[s], dz, h, d->act[i], d->negative_slope, ctx->stream, st);
}

int fmlp_backward_gemm_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* dout, const void* x,
                            const void* const* saved, const fmlp_params* p, void* dx, const fmlp_grads* g,
                            void* ws, const fmlp_cuda_ctx* ctx, fmlp_status* st) {
    if (!ctx->gemm) return fmlp_fail(st, FMLP_ERR_INVALID, "the GEMM strategy needs ctx->gemm");
    carve c = {(char*)ws, 0};
    bwd_ws w = bwd_layout(d, dt, M, &c);
    int L = d->n_layers;
    if (w.ones) TRY(fmlp_launch_fill_ones(dt, M, w.ones, ctx->stream, st));
    /* dz of the last layer: dout itself when it has no activation (and saved no z) */
    const void* dz = dout;
    const void* dzu = NULL;
    if (fmlp_saved_index(d, L - 1) >= 0) {
        TRY(act_backward(d, dt, M, L - 1, dout, saved, w.gz[(L - 1) & 1], w.dzu, NULL, ctx, st));
        dz = w.gz[(L - 1) & 1];
        dzu = (d->gated && L == 1) ? w.dzu : NULL;
    }
    for (int i = L - 1; i >= 0; i--) {
        int64_t N = d->width[i + 1], K = d->width[i];
        int k = wk(d, i);
        const void* hin = x;
        void* next = NULL;
        if (i > 0) {
            /* g = dz · W (M, K), then dz of layer i-1 in place, and h_i */
            next = w.gz[(i - 1) & 1];
            TRY(ctx->gemm(ctx->gemm_ctx, dt, M, K, N, dz, N, 1, p->w[k], K, 1, next, K, st));
            TRY(act_backward(d, dt, M, i - 1, next, saved, next, w.dzu, w.hin, ctx, st));
            hin = w.hin;
        } else if (dx) {
            TRY(ctx->gemm(ctx->gemm_ctx, dt, M, K, N, dz, N, 1, p->w[k], K, 1, dx, K, st));
            if (dzu) {
                TRY(ctx->gemm(ctx->gemm_ctx, dt, M, K, N, dzu, N, 1, p->w[1], K, 1, w.tmp, K, st));
                TRY(fmlp_launch_add(dt, M * K, dx, w.tmp, ctx->stream, st));
            }
        }
        for (int t = 0; t < 1 + (dzu != NULL); t++) {
            const void* dzt = t ? dzu : dz;
            if (g->db[k + t] && w.ones) /* db (1, N) = 1ᵀ (1, M) · dz (M, N) */
                TRY(ctx->gemm(ctx->gemm_ctx, dt, 1, N, M, w.ones, M, 1, dzt, N, 1, g->db[k + t], N, st));
            else if (g->db[k + t])
                TRY(fmlp_launch_colsum(dt, M, N, dzt, g->db[k + t], ctx->stream, st));
            /* dW (N, K) = dzᵀ (N, M) · hin (M, K); one row: a rank-1 product (fmlp_launch_outer) */
            if (g->dw[k + t] && M == 1)
                TRY(fmlp_launch_outer(dt, N, K, dzt, hin, g->dw[k + t], ctx->stream, st));
            else if (g->dw[k + t])
                TRY(ctx->gemm(ctx->gemm_ctx, dt, N, K, M, dzt, 1, N, hin, K, 1, g->dw[k + t], K, st));
        }
        if (i > 0) {
            dz = next;
            dzu = (d->gated && i == 1) ? w.dzu : NULL;
        }
    }
    return FMLP_OK;
}
