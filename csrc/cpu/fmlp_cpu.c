/* fmlp_cpu.c — CPU forward and backward of a whole MLP stack (all regimes): the drivers
 * behind fmlp_forward_cpu / fmlp_backward_cpu and their workspace sizes (fmlp.h).
 *
 * Forward (fused): all weights are packed once per call into NR-wide K-major float32
 * panels (gated: gate and up panels interleaved); rows are split into nchunks <=
 * ctx->num_threads chunks run through ctx->parallel_for, each owning a scratch slot;
 * a chunk takes MB rows at a time through every layer, the intermediates staying in its
 * float32 slot; the GEMM epilogue adds the bias, saves z, applies the activation while
 * the tile is hot.
 * Small M (M <= sm_max_rows(), measured threshold): no packing; layer by layer, blocks of
 * output columns in parallel, dot products of all M rows with weight rows read in place
 * (fmlp_cpu_small.c), the same tile epilogue; the backward likewise (smb_backward: no W
 * packing, dW rows written straight from dz and h, dX by combining weight rows in place).
 * Backward: rows in slabs (buffers for g, dz, h of one slab stay in L2/L3); per slab, layer
 * by layer: elementwise pass (dz = g ⊙ act'(z), per-chunk column sums for db, the layer input
 * h recomputed), dW (+)= dzᵀ·h into one float32 accumulator per layer, parallel over blocks
 * of its tiles (no per-thread copies; deterministic), then g = dz·W (dx at layer 0) over rows.
 * Built by setup.py with every csrc/ (all .c files); tested by tests/c/build_and_run.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../fmlp.h"
#include "../fmlp_activation.h"
#include "fmlp_cpu_gemm.h"
#include "fmlp_cpu_small.h"
#include "fmlp_cpu_vec.h"

#ifdef FMLP_TRACE /* dev builds only: per-phase times on stderr */
#include <stdio.h>
#include <time.h>
static double tr_now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
#define TRACE(name, stmt) do { double t_ = tr_now(); stmt; fprintf(stderr, "  %-10s %8.3f ms\n", name, 1e3 * (tr_now() - t_)); } while (0)
#else
#define TRACE(name, stmt) stmt
#endif

#define Q 48          /* row quantum: multiple of every kernel's MR and of 16 */
#ifndef MB_MAX
#define MB_MAX 240    /* forward rows per block (multiple of Q) */
#endif
#ifndef MB_BUDGET
#define MB_BUDGET (8u << 20) /* forward scratch bytes per slot, soft cap (big MB: fewer passes over the weights) */
#endif
#define DX_MB 192     /* backward dX rows per GEMM call */
#define BWD_SLAB_BUDGET (12u << 20) /* backward slab buffers (g, dz, h), bytes */
#define BWD_SLAB_MIN 384
#define MAX_SLOTS 256

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

static int nthreads(const fmlp_cpu_ctx* ctx) {
    if (!ctx || !ctx->parallel_for || ctx->num_threads < 1) return 1;
    return ctx->num_threads > MAX_SLOTS ? MAX_SLOTS : ctx->num_threads;
}

static void run_parallel(const fmlp_cpu_ctx* ctx, int64_t n, int64_t grain, fmlp_range_fn body, void* arg) {
    if (n <= 0) return;
    if (ctx && ctx->parallel_for && ctx->num_threads > 1 && n > 1) ctx->parallel_for(n, grain, body, arg);
    else body(0, n, arg);
}

/* rows of chunk c of n over M (chunk starts are multiples of Q) */
static void chunk_rows(int64_t M, int n, int c, int64_t* r0, int64_t* r1) {
    int64_t ng = cdiv(M, Q);
    int64_t g0 = ng * c / n, g1 = ng * (c + 1) / n;
    *r0 = g0 * Q;
    *r1 = imin(g1 * Q, M);
}
static int row_chunks(int64_t M, const fmlp_cpu_ctx* ctx) {
    int64_t ng = cdiv(M, Q);
    int64_t n = imin(nthreads(ctx), ng);
    return n < 1 ? 1 : (int)n;
}

/* row stride (floats) for rows of n floats: +16 when n*4 is a multiple of 2 KB, so that
 * the MR rows a kernel reads do not all map to the same few L1 sets */
static int64_t ldpad(int64_t n) { return n % 512 == 0 ? n + 16 : n; }

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; } /* floats -> 64 bytes */

static int64_t max_width(const fmlp_desc* d) {
    int64_t m = 0;
    for (int i = 0; i <= d->n_layers; i++) m = imax(m, d->width[i]);
    return m;
}

/* weight index of layer i's (first) weight */
static int layer_weight(const fmlp_desc* d, int i) { return (d->gated && i > 0) ? i + 1 : i; }

/* ========================================================================== */
/* Forward plan                                                               */
/* ========================================================================== */
typedef struct {
    const fmlp_cpu_kernel* kr;
    int mr, nr, nchunks;
    int64_t MB, ld, ldc;
    size_t off_wp[FMLP_MAX_LAYERS], off_bias[FMLP_MAX_LAYERS + 1], off_slots, slot_floats, total;
} fwd_plan;

static void fwd_make_plan(const fmlp_desc* d, int64_t M, const fmlp_cpu_ctx* ctx, fwd_plan* P) {
    const fmlp_cpu_kernel* kr = fmlp_cpu_kernel_get();
    P->kr = kr;
    P->mr = kr->mr;
    P->nr = kr->nr;
    int nr = kr->nr, L = d->n_layers;
    int64_t mw = max_width(d);
    int64_t cmax = fmlp_round_up(mw, nr);
    for (int i = 0; i < L; i++) {
        int64_t np = fmlp_round_up(d->width[i + 1], nr) * ((d->gated && i == 0) ? 2 : 1);
        cmax = imax(cmax, np);
    }
    /* one stride for the layer input and the accumulators, which become the next input
       in place (the epilogue reads a tile before writing its h over it) */
    P->ld = P->ldc = ldpad(cmax);
    size_t off = 0;
    for (int i = 0; i < L; i++) {
        P->off_wp[i] = off;
        int64_t np = fmlp_round_up(d->width[i + 1], nr) * ((d->gated && i == 0) ? 2 : 1);
        off += align16((size_t)(np * d->width[i]));
    }
    for (int k = 0; k < fmlp_n_weights(d); k++) {
        int64_t o, in;
        fmlp_weight_shape(d, k, &o, &in);
        P->off_bias[k] = off;
        off += align16((size_t)fmlp_round_up(o, nr));
    }
    P->nchunks = row_chunks(M, ctx);
    int64_t r0, r1, maxrows = 0;
    for (int c = 0; c < P->nchunks; c++) {
        chunk_rows(M, P->nchunks, c, &r0, &r1);
        maxrows = imax(maxrows, r1 - r0);
    }
    int64_t rowbytes = 2 * P->ld * 4;
    int64_t cap = (int64_t)MB_BUDGET / rowbytes / Q * Q;
    cap = imax(Q, imin(cap, MB_MAX));
    P->MB = imax(Q, imin(fmlp_round_up(maxrows, Q), cap));
    P->off_slots = off;
    P->slot_floats = align16((size_t)(P->MB * 2 * P->ld));
    off += P->slot_floats * (size_t)P->nchunks;
    P->total = off;
}

/* ========================================================================== */
/* Small-M forward: no packing; weight rows read in place (fmlp_cpu_dot_rows) */
/* ========================================================================== */
/* For M <= sm_max_rows(): layer by layer, parallel over blocks of SM_NB output
 * columns (= weight rows): each block's dot products for all M rows into a stack tile, then
 * the usual tile epilogue (bias, saved z, activation, gated product) writes the next
 * layer's float32 input (workspace, ping-pong A/B) or out. Every weight byte is read once
 * per call (work items = column block x chunk of SM_MROWS rows, block-major, so a thread's
 * consecutive items re-read a block's weight rows from L2). bf16 on a CPU with avx512_bf16:
 * the layer input is rounded to bf16 and vdpbf16ps does the dot products (as eager's bf16
 * matmuls do). */
#define SM_NB 32     /* output columns per work item */
#define SM_MROWS 64  /* rows per stack tile */

typedef struct {
    int64_t ld;
    size_t off_bias[FMLP_MAX_LAYERS + 1], off_a, off_b, off_hb, total;
} sm_plan;

/* Largest M for the small-M path (measured, NOTES.md "### small-M path"): the packed path
 * pays a fixed ~0.9 ns per weight element per call (packing), which the small-M path saves;
 * it loses per row where K is short (16-lane sums reduced per dot product). So: 128 rows
 * in general (64-wide layers cross over at 128..256), and for big weights (>= 1M elements, every
 * K >= 256) 512 rows, 1024 with the bf16 dot-product kernel (vdpbf16ps: twice the packed
 * float32 kernel's rate). FMLP_CPU_SMALL_M=<rows> forces one threshold. */
#define SM_M_DEFAULT 128
#define SM_M_BIG 512
#define SM_M_BIG_BF16 1024
static int64_t sm_max_rows(const fmlp_desc* d, fmlp_dtype dt) {
    int64_t f = fmlp_cpu_small_m_override();
    if (f >= 0) return f;
    int64_t welts = 0, kmin = INT64_MAX;
    for (int k = 0; k < fmlp_n_weights(d); k++) {
        int64_t o, in;
        fmlp_weight_shape(d, k, &o, &in);
        welts += o * in;
        kmin = imin(kmin, in);
    }
    if (welts < (1 << 20) || kmin < 256) return SM_M_DEFAULT;
    return dt == FMLP_BF16 && fmlp_cpu_has_bf16_dot() ? SM_M_BIG_BF16 : SM_M_BIG;
}
static int use_small(const fmlp_desc* d, fmlp_dtype dt, int64_t M) { return M > 0 && M <= sm_max_rows(d, dt); }

static void sm_make_plan(const fmlp_desc* d, int64_t M, sm_plan* P) {
    P->ld = ldpad(fmlp_round_up(max_width(d), 16));
    size_t off = 0;
    for (int k = 0; k < fmlp_n_weights(d); k++) {
        int64_t o, in;
        fmlp_weight_shape(d, k, &o, &in);
        P->off_bias[k] = off;
        off += align16((size_t)o);
    }
    P->off_a = off; off += align16((size_t)(M * P->ld));
    P->off_b = off; off += align16((size_t)(M * P->ld));
    P->off_hb = off; off += align16((size_t)(M * P->ld + 1) / 2); /* bf16 copy of a layer input */
    P->total = off;
}

typedef struct {
    const fmlp_desc* d;
    fmlp_dtype dt;
    int64_t M;
    const fmlp_params* p;
    void* out;
    void* const* saved;
    float* ws;
    const sm_plan* P;
    int layer;
    const float* hin;
    float* hout;
    const uint16_t* hb; /* bf16 dot-product kernel: the layer input in bfloat16, else NULL */
    int64_t ldhb;
} sm_args;

static void sm_layer_body(int64_t begin, int64_t end, void* varg) {
    const sm_args* a = (const sm_args*)varg;
    const fmlp_desc* d = a->d;
    fmlp_dtype dt = a->dt;
    int i = a->layer, gated = d->gated && i == 0, last = i == d->n_layers - 1;
    int k = layer_weight(d, i), s = fmlp_saved_index(d, i);
    int64_t N = d->width[i + 1], K = d->width[i], ld = a->P->ld;
    int save = a->saved && s >= 0;
    float tile[SM_MROWS * 2 * SM_NB];
    int64_t ldt = gated ? 2 * SM_NB : SM_NB;
    int64_t nrc = cdiv(a->M, SM_MROWS);
    for (int64_t it = begin; it < end; it++) { /* item = (column block, row chunk), block-major */
        int64_t b = it / nrc, m0 = (it % nrc) * SM_MROWS;
        int64_t n0 = b * SM_NB, nn = imin(SM_NB, N - n0);
        {
            int64_t rows = imin(SM_MROWS, a->M - m0);
            const float* h = a->hin + m0 * ld;
            if (a->hb) {
                const uint16_t* hb = a->hb + m0 * a->ldhb;
                fmlp_cpu_dot_rows_bf16(a->p->w[k], n0, nn, K, hb, a->ldhb, rows, tile, ldt);
                if (gated) fmlp_cpu_dot_rows_bf16(a->p->w[1], n0, nn, K, hb, a->ldhb, rows, tile + SM_NB, ldt);
            } else {
                fmlp_cpu_dot_rows(dt, a->p->w[k], n0, nn, K, h, ld, rows, tile, ldt);
                if (gated) fmlp_cpu_dot_rows(dt, a->p->w[1], n0, nn, K, h, ld, rows, tile + SM_NB, ldt);
            }
            fmlp_fwd_tile t;
            t.act = d->act[i];
            t.slope = d->negative_slope;
            t.rows = (int)rows;
            t.nn = (int)nn;
            t.c = tile;
            t.cu = gated ? tile + SM_NB : NULL;
            t.ldc = ldt;
            t.bias = a->ws + a->P->off_bias[k] + n0;
            t.bias_u = gated ? a->ws + a->P->off_bias[1] + n0 : NULL;
            t.dt = dt;
            t.zs = save ? fmlp_ptr(dt, a->saved[s], m0 * N + n0) : NULL;
            t.zus = save && gated ? fmlp_ptr(dt, a->saved[s + 1], m0 * N + n0) : NULL;
            t.ldzs = N;
            if (last) {
                t.hout = fmlp_ptr(dt, a->out, m0 * N + n0);
                t.hout_f32 = 0;
                t.ldh = N;
            } else {
                t.hout = a->hout + m0 * ld + n0;
                t.hout_f32 = 1;
                t.ldh = ld;
            }
            fmlp_cpu_fwd_tile(&t);
        }
    }
    fmlp_cpu_sfence();
}

static void sm_forward(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x, const fmlp_params* p,
                       void* out, void* const* saved, float* ws, const fmlp_cpu_ctx* ctx) {
    sm_plan P;
    sm_make_plan(d, M, &P);
    for (int k = 0; k < fmlp_n_weights(d); k++) {
        int64_t o, in;
        fmlp_weight_shape(d, k, &o, &in);
        float* b = ws + P.off_bias[k];
        if (d->has_bias[k]) fmlp_cpu_load_row(dt, p->b[k], o, b);
        else memset(b, 0, sizeof(float) * (size_t)o);
    }
    float *A = ws + P.off_a, *B = ws + P.off_b;
    for (int64_t r = 0; r < M; r++)
        fmlp_cpu_load_row(dt, fmlp_cptr(dt, x, r * d->width[0]), d->width[0], A + r * P.ld);
    sm_args a = {d, dt, M, p, out, saved, ws, &P, 0, A, B, NULL, 0};
    size_t es = fmlp_dtype_size(dt);
    int bfdot = dt == FMLP_BF16 && fmlp_cpu_has_bf16_dot();
    for (int i = 0; i < d->n_layers; i++) {
        int64_t N = d->width[i + 1], K = d->width[i];
        a.layer = i;
        a.hb = NULL;
        if (bfdot && K < 32) { /* short K: the sequential float32 chain (fmlp_cpu_dot_rows) */
        } else if (bfdot && i == 0) { /* x is bfloat16 already */
            a.hb = (const uint16_t*)x;
            a.ldhb = K;
        } else if (bfdot) { /* round the float32 layer input to bfloat16 (eager's intermediates are bf16 too) */
            uint16_t* hb = (uint16_t*)(ws + P.off_hb);
            for (int64_t r = 0; r < M; r++) fmlp_cpu_store_row(FMLP_BF16, hb + r * P.ld, K, a.hin + r * P.ld);
            a.hb = hb;
            a.ldhb = P.ld;
        }
        int64_t items = cdiv(N, SM_NB) * cdiv(M, SM_MROWS);
        double work = (double)N * (double)K * (double)(es + (size_t)M) * ((d->gated && i == 0) ? 2 : 1);
        if (work >= (double)fmlp_cpu_small_par_min()) run_parallel(ctx, items, 1, sm_layer_body, &a);
        else sm_layer_body(0, items, &a);
        const float* t = a.hin;
        a.hin = a.hout;
        a.hout = (float*)t;
    }
}

size_t fmlp_forward_workspace_bytes_cpu(const fmlp_desc* d, fmlp_dtype dt, int64_t M, int save,
                                        const fmlp_cpu_ctx* ctx) {
    (void)dt; (void)save;
    if (!d || fmlp_desc_validate(d, NULL) || M <= 0) return 0;
    if (use_small(d, dt, M)) {
        sm_plan S;
        sm_make_plan(d, M, &S);
        return S.total * sizeof(float) + 64;
    }
    fwd_plan P;
    fwd_make_plan(d, M, ctx, &P);
    return P.total * sizeof(float) + 64;
}

typedef struct {
    const fmlp_desc* d;
    fmlp_dtype dt;
    int64_t M;
    const void* x;
    const fmlp_params* p;
    void* out;
    void* const* saved;
    float* ws;
    const fwd_plan* P;
} fwd_args;

typedef struct {
    const fwd_args* a;
    int layer, last, gated, act, s;
    int64_t N, rb, rows;
    const float *bias, *bias_u;
    float* hout; /* next layer's input (ld) */
} fwd_epi_ctx;

static void fwd_epi(void* vctx, int64_t r0, int64_t c0, float* ct, int64_t ldc) {
    fwd_epi_ctx* e = (fwd_epi_ctx*)vctx;
    const fwd_args* a = e->a;
    int nr = a->P->nr, mr = a->P->mr;
    fmlp_dtype dt = a->dt;
    fmlp_fwd_tile t;
    int64_t n0 = c0;
    t.c = ct;
    t.cu = NULL;
    if (e->gated) {
        int64_t q = c0 / nr;
        if ((q & 1) == 0) return; /* gate tile: handled with its up tile */
        n0 = (q >> 1) * nr;
        t.c = ct - nr;
        t.cu = ct;
    }
    int64_t nn = imin(nr, e->N - n0), rows = imin(mr, e->rows - r0);
    if (nn <= 0 || rows <= 0) return;
    int64_t m = e->rb + r0; /* global row of the tile's first row */
    int save = a->saved && e->s >= 0;
    t.act = e->act;
    t.slope = a->d->negative_slope;
    t.rows = (int)rows;
    t.nn = (int)nn;
    t.ldc = ldc;
    t.bias = e->bias + n0;
    t.bias_u = e->gated ? e->bias_u + n0 : NULL;
    t.dt = dt;
    t.zs = save ? fmlp_ptr(dt, a->saved[e->s], m * e->N + n0) : NULL;
    t.zus = save && e->gated ? fmlp_ptr(dt, a->saved[e->s + 1], m * e->N + n0) : NULL;
    t.ldzs = e->N;
    if (e->last) {
        t.hout = fmlp_ptr(dt, a->out, m * e->N + n0);
        t.hout_f32 = 0;
        t.ldh = e->N;
    } else {
        t.hout = e->hout + r0 * a->P->ld + n0;
        t.hout_f32 = 1;
        t.ldh = a->P->ld;
    }
    fmlp_cpu_fwd_tile(&t);
}

static void fwd_chunk_body(int64_t begin, int64_t end, void* varg) {
    const fwd_args* a = (const fwd_args*)varg;
    const fwd_plan* P = a->P;
    const fmlp_desc* d = a->d;
    float* slot = a->ws + P->off_slots + P->slot_floats * (size_t)begin;
    float* A = slot;
    float* H = A + P->MB * P->ld;
    for (int64_t c = begin; c < end; c++) {
        int64_t c_r0, c_r1;
        chunk_rows(a->M, P->nchunks, (int)c, &c_r0, &c_r1);
        for (int64_t rb = c_r0; rb < c_r1; rb += P->MB) {
            int64_t rows = imin(P->MB, c_r1 - rb), mbp = fmlp_round_up(rows, P->mr);
            for (int64_t r = 0; r < rows; r++)
                fmlp_cpu_load_row(a->dt, fmlp_cptr(a->dt, a->x, (rb + r) * d->width[0]), d->width[0],
                                  A + r * P->ld);
            for (int64_t r = rows; r < mbp; r++) /* padding rows: any finite value */
                memset(A + r * P->ld, 0, sizeof(float) * (size_t)d->width[0]);
            float *cur = A, *nxt = H;
            for (int i = 0; i < d->n_layers; i++) {
                int gated = d->gated && i == 0;
                int k = layer_weight(d, i);
                fwd_epi_ctx e = {a, i, i == d->n_layers - 1, gated, d->act[i], fmlp_saved_index(d, i),
                                 d->width[i + 1], rb, rows, a->ws + P->off_bias[k],
                                 gated ? a->ws + P->off_bias[1] : NULL, nxt};
                int64_t nb = fmlp_round_up(d->width[i + 1], P->nr) * (gated ? 2 : 1);
                fmlp_cpu_gemm(P->kr, 0, mbp, nb, d->width[i], cur, P->ld, a->ws + P->off_wp[i],
                              d->width[i] * P->nr, P->nr, nxt, P->ld, 0, fwd_epi, &e);
                float* t = cur;
                cur = nxt;
                nxt = t;
            }
        }
    }
    fmlp_cpu_sfence(); /* the epilogue's streaming stores */
}

/* packing: item = one panel of one weight */
static void fwd_pack_body(int64_t begin, int64_t end, void* varg) {
    const fwd_args* a = (const fwd_args*)varg;
    const fwd_plan* P = a->P;
    const fmlp_desc* d = a->d;
    int nr = P->nr;
    int64_t base = 0;
    for (int k = 0; k < fmlp_n_weights(d); k++) {
        int64_t o, in;
        fmlp_weight_shape(d, k, &o, &in);
        int64_t np = cdiv(o, nr);
        int64_t p0 = imax(begin - base, 0), p1 = imin(end - base, np);
        if (p0 < p1) {
            int layer = d->gated ? (k > 0 ? k - 1 : 0) : k;
            float* dst = a->ws + P->off_wp[layer];
            int64_t pstride = in * nr;
            if (d->gated && layer == 0) {
                dst += (k == 1) ? in * nr : 0;
                pstride *= 2;
            }
            fmlp_cpu_pack_wt(a->dt, a->p->w[k], o, in, nr, dst, pstride, p0, p1);
        }
        base += np;
    }
}

static int check_common(const fmlp_desc* d, fmlp_dtype dt, int64_t M, fmlp_status* st) {
    if (!d) return fmlp_fail(st, FMLP_ERR_INVALID, "desc is NULL");
    int rc = fmlp_desc_validate(d, st);
    if (rc) return rc;
    if (dt != FMLP_F32 && dt != FMLP_BF16 && dt != FMLP_F16)
        return fmlp_fail(st, FMLP_ERR_INVALID, "dtype %d is not float32, bfloat16 or float16", (int)dt);
    if (M < 0) return fmlp_fail(st, FMLP_ERR_INVALID, "M must be >= 0, got %lld", (long long)M);
    return FMLP_OK;
}

static int check_params(const fmlp_desc* d, const fmlp_params* p, fmlp_status* st) {
    if (!p) return fmlp_fail(st, FMLP_ERR_INVALID, "params is NULL");
    for (int k = 0; k < fmlp_n_weights(d); k++) {
        if (!p->w[k]) return fmlp_fail(st, FMLP_ERR_INVALID, "weight %d is NULL", k);
        if (d->has_bias[k] && !p->b[k])
            return fmlp_fail(st, FMLP_ERR_INVALID, "has_bias[%d] is set but bias %d is NULL", k, k);
    }
    return FMLP_OK;
}

static float* align_ws(void* ws) { return (float*)(((uintptr_t)ws + 63) & ~(uintptr_t)63); }


int fmlp_forward_cpu(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x,
                     const fmlp_params* p, void* out, void* const* saved, void* ws,
                     const fmlp_cpu_ctx* ctx, fmlp_status* st) {
    int rc = check_common(d, dt, M, st);
    if (rc) return rc;
    rc = check_params(d, p, st);
    if (rc) return rc;
    if (M == 0) return FMLP_OK;
    if (!x || !out) return fmlp_fail(st, FMLP_ERR_INVALID, "x and out must not be NULL when M > 0");
    if (saved)
        for (int s = 0; s < fmlp_saved_count(d); s++)
            if (!saved[s]) return fmlp_fail(st, FMLP_ERR_INVALID, "saved[%d] is NULL", s);
    if (!ws) return fmlp_fail(st, FMLP_ERR_INVALID, "workspace is NULL (need %zu bytes)",
                              fmlp_forward_workspace_bytes_cpu(d, dt, M, saved != NULL, ctx));
    if (use_small(d, dt, M)) {
        TRACE("fwd small", sm_forward(d, dt, M, x, p, out, saved, align_ws(ws), ctx));
        return FMLP_OK;
    }
    fwd_plan P;
    fwd_make_plan(d, M, ctx, &P);
    fwd_args a = {d, dt, M, x, p, out, saved, align_ws(ws), &P};
    /* biases -> float32, zero-padded (zeros when absent) */
    for (int k = 0; k < fmlp_n_weights(d); k++) {
        int64_t o, in;
        fmlp_weight_shape(d, k, &o, &in);
        float* b = a.ws + P.off_bias[k];
        memset(b, 0, sizeof(float) * (size_t)fmlp_round_up(o, P.nr));
        if (d->has_bias[k]) fmlp_cpu_load_row(dt, p->b[k], o, b);
    }
    int64_t npanels = 0;
    for (int k = 0; k < fmlp_n_weights(d); k++) {
        int64_t o, in;
        fmlp_weight_shape(d, k, &o, &in);
        npanels += cdiv(o, P.nr);
    }
    TRACE("fwd pack", run_parallel(ctx, npanels, 1, fwd_pack_body, &a));
    TRACE("fwd rows", run_parallel(ctx, P.nchunks, 1, fwd_chunk_body, &a));
    return FMLP_OK;
}

/* ========================================================================== */
/* Backward                                                                   */
/* ========================================================================== */
typedef struct {
    const fmlp_cpu_kernel* kr;
    int mr, nr, nchunks, nslots;   /* nchunks: row chunks of a full slab */
    int64_t S, ldw, ldz, ldh, ldz16, tmpw;
    size_t off_g, off_dz, off_hb, off_wp[FMLP_MAX_LAYERS], off_acc[FMLP_MAX_LAYERS], off_dbp, off_tmp, total;
    int64_t ldacc[FMLP_MAX_LAYERS];
} bwd_plan;

static int64_t layer_nz(const fmlp_desc* d, int i) {
    return d->width[i + 1] * ((d->gated && i == 0) ? 2 : 1);
}

/* Rows per slab: the backward runs all layers on one slab of rows before the next, so its
 * dz / h / g buffers (S rows) stay in L2/L3; FMLP_CPU_BWD_SLAB=<rows> overrides (tests). */
static int64_t bwd_slab_rows(const fmlp_desc* d, int64_t M, int64_t rowbytes) {
    (void)d;
    int64_t S = (int64_t)BWD_SLAB_BUDGET / rowbytes / Q * Q;
    S = imax(S, BWD_SLAB_MIN);
    static int64_t forced = -1; /* read once, so workspace sizes and calls always agree */
    int64_t f = __atomic_load_n(&forced, __ATOMIC_RELAXED);
    if (f < 0) {
        const char* e = getenv("FMLP_CPU_BWD_SLAB");
        f = (e && atoll(e) > 0) ? fmlp_round_up(atoll(e), Q) : 0;
        __atomic_store_n(&forced, f, __ATOMIC_RELAXED);
    }
    if (f > 0) S = f;
    return imin(S, fmlp_round_up(M, Q));
}

/* The kernel and the scratch row strides both backward plans share (P->ldz holds nzr). */
static void bwd_plan_strides(const fmlp_desc* d, bwd_plan* P, int64_t* mw, int64_t* nzmax) {
    const fmlp_cpu_kernel* kr = fmlp_cpu_kernel_get();
    P->kr = kr;
    P->mr = kr->mr;
    int nr = P->nr = kr->nr;
    int64_t inmax = 0;
    *mw = max_width(d);
    *nzmax = 0;
    for (int i = 0; i < d->n_layers; i++) {
        *nzmax = imax(*nzmax, layer_nz(d, i));
        inmax = imax(inmax, d->width[i]);
    }
    P->ldw = ldpad(fmlp_round_up(*mw, nr));
    P->ldz = ldpad(imax(fmlp_round_up(*nzmax, 16), fmlp_round_up(*nzmax, P->mr)));
    P->ldh = ldpad(fmlp_round_up(inmax, nr));
    P->ldz16 = fmlp_round_up(P->ldz, 16);
}

/* The slab part shared by both backward plans: S rows per slab in `nchunks` row chunks,
 * one scratch slot per thread, then the g / dz / h slabs at the start of the workspace.
 * Returns the offset after them. */
static size_t bwd_plan_slabs(bwd_plan* P, int64_t S, int nchunks, int64_t mw, int64_t nzmax,
                             const fmlp_cpu_ctx* ctx) {
    P->S = S;
    P->nchunks = nchunks;
    P->nslots = nthreads(ctx);
    P->tmpw = fmlp_round_up(imax(mw, nzmax), 16);
    size_t off = 0;
    P->off_g = off;   off += align16((size_t)(P->S * P->ldw));
    P->off_dz = off;  off += align16((size_t)(P->S * P->ldz));
    P->off_hb = off;  off += align16((size_t)(P->S * P->ldh));
    return off;
}

static void bwd_make_plan(const fmlp_desc* d, int64_t M, const fmlp_cpu_ctx* ctx, bwd_plan* P) {
    int64_t mw, nzmax;
    bwd_plan_strides(d, P, &mw, &nzmax);
    int L = d->n_layers, nr = P->nr;
    const int64_t S = bwd_slab_rows(d, M, 4 * (P->ldw + P->ldz + P->ldh));
    size_t off = bwd_plan_slabs(P, S, row_chunks(S, ctx), mw, nzmax, ctx);
    for (int i = 0; i < L; i++) { /* W packed for dX = dz·W; float32 dW accumulators */
        int64_t nz = layer_nz(d, i), inp = fmlp_round_up(d->width[i], nr);
        P->off_wp[i] = off;  off += align16((size_t)(inp * nz));
        P->ldacc[i] = ldpad(inp);
        P->off_acc[i] = off; off += align16((size_t)(fmlp_round_up(nz, P->mr) * P->ldacc[i]));
    }
    P->off_dbp = off; off += (size_t)L * (size_t)P->nchunks * (size_t)P->ldz16;
    P->off_tmp = off; off += (size_t)P->nchunks * 4 * (size_t)P->tmpw;
    P->total = off;
}

static void smb_make_plan(const fmlp_desc* d, int64_t M, const fmlp_cpu_ctx* ctx, bwd_plan* P);
size_t fmlp_backward_workspace_bytes_cpu(const fmlp_desc* d, fmlp_dtype dt, int64_t M,
                                         const fmlp_cpu_ctx* ctx) {
    if (!d || fmlp_desc_validate(d, NULL) || M <= 0) return 0;
    bwd_plan P;
    if (use_small(d, dt, M)) smb_make_plan(d, M, ctx, &P);
    else bwd_make_plan(d, M, ctx, &P);
    return P.total * sizeof(float) + 64;
}

typedef struct {
    const fmlp_desc* d;
    fmlp_dtype dt;
    int64_t M;
    const void *dout, *x;
    const void* const* saved;
    const fmlp_params* p;
    void* dx;
    const fmlp_grads* g;
    float* ws;
    const bwd_plan* P;
    /* current slab: rows [s0, s0 + Ms), split in nch chunks */
    int64_t s0, Ms;
    int nch, first_slab, last_slab;
    /* current layer */
    int layer, need_dw;
    int64_t N, in, nz, nzr, inp;
    int64_t RG, CG; /* dW work item: RG rows x CG columns of the (stacked) dW */
} bwd_args;

/* layer input h_i (global row m) into dst[0..in) */
static void bwd_layer_input(const bwd_args* a, int i, int64_t m, float* dst, float* tmp) {
    const fmlp_desc* d = a->d;
    fmlp_dtype dt = a->dt;
    int64_t in = d->width[i];
    if (i == 0) {
        fmlp_cpu_load_row(dt, fmlp_cptr(dt, a->x, m * in), in, dst);
    } else if (i == 1 && d->gated) {
        fmlp_cpu_load_row(dt, fmlp_cptr(dt, a->saved[0], m * in), in, dst);
        fmlp_cpu_load_row(dt, fmlp_cptr(dt, a->saved[1], m * in), in, tmp);
        fmlp_cpu_bias_act_row(d->act[0], d->negative_slope, dst, NULL, NULL, dst, in);
        for (int64_t j = 0; j < in; j++) dst[j] *= tmp[j];
    } else {
        int s = fmlp_saved_index(d, i - 1);
        fmlp_cpu_load_row(dt, fmlp_cptr(dt, a->saved[s], m * in), in, dst);
        fmlp_cpu_bias_act_row(d->act[i - 1], d->negative_slope, dst, NULL, NULL, dst, in);
    }
}

/* Elementwise pass over a chunk of the slab's rows: dz (row-major, padding columns up to
 * nzr zero) into DZ, its column sums into the chunk's db partials (accumulated over slabs,
 * summed in chunk order at the end: deterministic), the layer input h (padding columns up to
 * inp zero) into HB. DZ is both the dX GEMM's A and, read transposed, the dW GEMM's; HB is
 * the dW GEMM's B (row stride ldh). Slab buffers are indexed by row - s0. */
static void bwd_elem_body(int64_t begin, int64_t end, void* varg) {
    const bwd_args* a = (const bwd_args*)varg;
    const bwd_plan* P = a->P;
    const fmlp_desc* d = a->d;
    fmlp_dtype dt = a->dt;
    int i = a->layer, L = d->n_layers;
    int64_t N = a->N, nz = a->nz, in = a->in;
    float* G = a->ws + P->off_g;
    float* DZ = a->ws + P->off_dz;
    float* HB = a->ws + P->off_hb;
    float* t0 = a->ws + P->off_tmp + (size_t)begin * 4 * P->tmpw;
    float *t1 = t0 + P->tmpw, *t2 = t1 + P->tmpw, *t3 = t2 + P->tmpw;
    int s = fmlp_saved_index(d, i);
    for (int64_t c = begin; c < end; c++) {
        int64_t r0, r1;
        chunk_rows(a->Ms, a->nch, (int)c, &r0, &r1);
        float* dbp = a->ws + P->off_dbp + ((size_t)i * P->nchunks + (size_t)c) * P->ldz16;
        if (a->first_slab) memset(dbp, 0, sizeof(float) * (size_t)nz);
        for (int64_t rr = r0; rr < r1; rr++) {
            int64_t m = a->s0 + rr;
            float* dz = DZ + rr * P->ldz;
            const float* g;
            if (i == L - 1) {
                fmlp_cpu_load_row(dt, fmlp_cptr(dt, a->dout, m * N), N, t0);
                g = t0;
            } else g = G + rr * P->ldw;
            if (d->gated && i == 0) {
                fmlp_cpu_load_row(dt, fmlp_cptr(dt, a->saved[0], m * N), N, t1); /* zg */
                fmlp_cpu_load_row(dt, fmlp_cptr(dt, a->saved[1], m * N), N, t2); /* zu */
                for (int64_t j = 0; j < N; j++) t3[j] = g[j] * t2[j];
                fmlp_cpu_dact_mul_row(d->act[0], d->negative_slope, t1, t3, dz, N);
                fmlp_cpu_bias_act_row(d->act[0], d->negative_slope, t1, NULL, NULL, t1, N);
                for (int64_t j = 0; j < N; j++) dz[N + j] = g[j] * t1[j];
            } else if (s >= 0) {
                fmlp_cpu_load_row(dt, fmlp_cptr(dt, a->saved[s], m * N), N, t1);
                fmlp_cpu_dact_mul_row(d->act[i], d->negative_slope, t1, g, dz, N);
            } else {
                memcpy(dz, g, sizeof(float) * (size_t)N);
            }
            for (int64_t j = nz; j < a->nzr; j++) dz[j] = 0.0f;
            for (int64_t j = 0; j < nz; j++) dbp[j] += dz[j];
            if (a->need_dw) {
                float* h = HB + rr * P->ldh;
                bwd_layer_input(a, i, m, h, t2);
                for (int64_t j = in; j < a->inp; j++) h[j] = 0.0f;
            }
        }
        if (r1 == a->Ms) /* last chunk: zero DZ rows up to the Q-rounded slab end (dX GEMM padding) */
            for (int64_t rr = r1; rr < fmlp_round_up(a->Ms, Q); rr++)
                memset(DZ + rr * P->ldz, 0, sizeof(float) * (size_t)a->nzr);
    }
}

/* dW work items: one block of RG rows x CG columns of the (stacked) dW per thread, so
 * each thread streams dz and h once per K block for all its tiles (the GEMM driver's
 * K-outer order keeps them cached across its tiles); rows split first, then columns. */
static void dw_grid(const bwd_plan* P, int64_t nzr, int64_t inp, int64_t* RG, int64_t* CG) {
    int64_t tr = nzr / P->mr, tc = inp / P->nr, nt = P->nslots;
    if (tr >= nt) {
        *RG = cdiv(tr, nt) * P->mr;
        *CG = inp;
    } else {
        *RG = P->mr;
        *CG = cdiv(tc, imax(1, imin(tc, nt / tr))) * P->nr;
    }
}

typedef struct {
    const bwd_args* a;
    int64_t r0, c0;
} bwd_dw_ctx;

static void bwd_dw_epi(void* vctx, int64_t tr0, int64_t tc0, float* ct, int64_t ldc) {
    bwd_dw_ctx* e = (bwd_dw_ctx*)vctx;
    const bwd_args* a = e->a;
    const fmlp_desc* d = a->d;
    int mr = a->P->mr, nr = a->P->nr;
    int64_t gc = e->c0 + tc0, nn = imin(nr, a->in - gc);
    if (nn <= 0) return;
    for (int r = 0; r < mr; r++) {
        int64_t gr = e->r0 + tr0 + r;
        if (gr >= a->nz) break;
        int k = layer_weight(d, a->layer);
        int64_t row = gr;
        if (d->gated && a->layer == 0 && gr >= a->N) { k = 1; row = gr - a->N; }
        void* dw = a->g->dw[k];
        if (dw) fmlp_cpu_store_row(a->dt, fmlp_ptr(a->dt, dw, row * a->in + gc), nn, ct + r * ldc);
    }
}

/* dW (+)= dzᵀ·h over this slab's rows, into the layer's float32 accumulators; the last
 * slab's epilogue writes dw. */
static void bwd_dw_body(int64_t begin, int64_t end, void* varg) {
    const bwd_args* a = (const bwd_args*)varg;
    const bwd_plan* P = a->P;
    int64_t nrg = cdiv(a->nzr, a->RG), ncg = cdiv(a->inp, a->CG), items = nrg * ncg;
    int nch = (int)imin(P->nslots, items);
    float* acc = a->ws + P->off_acc[a->layer];
    int64_t ldacc = P->ldacc[a->layer];
    for (int64_t c = begin; c < end; c++) {
        for (int64_t it = items * c / nch; it < items * (c + 1) / nch; it++) {
            int64_t ri = it / ncg, ci = it % ncg;
            int64_t r0 = ri * a->RG, c0 = ci * a->CG;
            int64_t rows = imin(a->RG, a->nzr - r0), cols = imin(a->CG, a->inp - c0);
            bwd_dw_ctx e = {a, r0, c0};
            fmlp_cpu_gemm(P->kr, 1, rows, cols, a->Ms, a->ws + P->off_dz + r0, P->ldz,
                          a->ws + P->off_hb + c0, P->nr, P->ldh, acc + r0 * ldacc + c0, ldacc,
                          !a->first_slab, a->last_slab ? bwd_dw_epi : NULL, &e);
        }
    }
}

/* item = one panel of one layer's W (all layers packed once per call) */
static void bwd_packw_body(int64_t begin, int64_t end, void* varg) {
    const bwd_args* a = (const bwd_args*)varg;
    const fmlp_desc* d = a->d;
    int nr = a->P->nr;
    int64_t base = 0;
    for (int i = 0; i < d->n_layers; i++) {
        int64_t np = cdiv(d->width[i], nr), N = d->width[i + 1], in = d->width[i], nz = layer_nz(d, i);
        int64_t p0 = imax(begin - base, 0), p1 = imin(end - base, np);
        if (p0 < p1) {
            float* wp = a->ws + a->P->off_wp[i];
            int k = layer_weight(d, i);
            fmlp_cpu_pack_w(a->dt, a->p->w[k], N, in, nr, wp, nz * nr, 0, p0, p1);
            if (d->gated && i == 0) fmlp_cpu_pack_w(a->dt, a->p->w[1], N, in, nr, wp, nz * nr, N, p0, p1);
        }
        base += np;
    }
}

typedef struct {
    const bwd_args* a;
    int64_t rb, rows; /* global first row, rows */
} bwd_dx_ctx;

static void bwd_dx_epi(void* vctx, int64_t r0, int64_t c0, float* ct, int64_t ldc) {
    bwd_dx_ctx* e = (bwd_dx_ctx*)vctx;
    const bwd_args* a = e->a;
    int64_t nn = imin(a->P->nr, a->in - c0);
    if (nn <= 0) return;
    int64_t rmax = imin(a->P->mr, e->rows - r0);
    for (int64_t r = 0; r < rmax; r++)
        fmlp_cpu_store_row(a->dt, fmlp_ptr(a->dt, a->dx, (e->rb + r0 + r) * a->in + c0), nn, ct + r * ldc);
}

static void bwd_dx_body(int64_t begin, int64_t end, void* varg) {
    const bwd_args* a = (const bwd_args*)varg;
    const bwd_plan* P = a->P;
    for (int64_t c = begin; c < end; c++) {
        int64_t r0, r1;
        chunk_rows(a->Ms, a->nch, (int)c, &r0, &r1);
        for (int64_t rb = r0; rb < r1; rb += DX_MB) {
            int64_t rows = imin(DX_MB, r1 - rb);
            bwd_dx_ctx e = {a, a->s0 + rb, rows};
            fmlp_cpu_gemm(P->kr, 0, fmlp_round_up(rows, P->mr), a->inp, a->nz,
                          a->ws + P->off_dz + rb * P->ldz, P->ldz, a->ws + P->off_wp[a->layer],
                          a->nz * P->nr, P->nr, a->ws + P->off_g + rb * P->ldw, P->ldw, 0,
                          a->layer == 0 ? bwd_dx_epi : NULL, &e);
        }
    }
}

static void bwd_set_layer(bwd_args* a, int i) {
    const fmlp_desc* d = a->d;
    const bwd_plan* P = a->P;
    int k = layer_weight(d, i);
    a->layer = i;
    a->N = d->width[i + 1];
    a->in = d->width[i];
    a->nz = layer_nz(d, i);
    a->nzr = fmlp_round_up(a->nz, P->mr);
    a->inp = fmlp_round_up(a->in, P->nr);
    a->need_dw = a->g->dw[k] || (d->gated && i == 0 && a->g->dw[1]);
    dw_grid(P, a->nzr, a->inp, &a->RG, &a->CG);
}

/* db: chunk partials summed in chunk order */
static void bwd_store_db(bwd_args* ap, const fmlp_cpu_ctx* ctx) {
    bwd_args a = *ap;
    const fmlp_desc* d = a.d;
    const bwd_plan P = *a.P;
    fmlp_dtype dt = a.dt;
    int64_t M = a.M;
    for (int i = 0; i < d->n_layers; i++) {
        bwd_set_layer(&a, i);
        int k = layer_weight(d, i);
        int gated = d->gated && i == 0;
        if (!(a.g->db[k] || (gated && a.g->db[1]))) continue;
        int nch_used = row_chunks(imin(P.S, M), ctx); /* chunk slots the slabs touched */
        for (int64_t j = 0; j < a.nz; j++) {
            float s = 0.0f;
            for (int c = 0; c < nch_used; c++)
                s += a.ws[P.off_dbp + ((size_t)i * P.nchunks + (size_t)c) * P.ldz16 + j];
            int kk = k;
            int64_t jj = j;
            if (gated && j >= a.N) { kk = 1; jj = j - a.N; }
            if (a.g->db[kk]) fmlp_cpu_store_row(dt, fmlp_ptr(dt, a.g->db[kk], jj), 1, &s);
        }
    }
}

/* ---- small-M backward: no W packing, no float32 dW accumulators ------------------------
 * One slab of all M rows; per layer: the elementwise pass (bwd_elem_body, row chunks), dW
 * rows = sum_m dz[m][n] h[m][:] written straight in dtype (items: blocks of 6 rows of one
 * weight tensor), g = dz·W by combining weight rows read in place (items: 64-column blocks
 * of the layer input), both through fmlp_cpu_comb_rows. */
#define SMB_KC 256
static void smb_make_plan(const fmlp_desc* d, int64_t M, const fmlp_cpu_ctx* ctx, bwd_plan* P) {
    memset(P, 0, sizeof *P);
    int64_t mw, nzmax;
    bwd_plan_strides(d, P, &mw, &nzmax);
    int L = d->n_layers;
    size_t off = bwd_plan_slabs(P, fmlp_round_up(M, Q), row_chunks(M, ctx), mw, nzmax, ctx);
    P->off_dbp = off; off += (size_t)L * (size_t)P->nchunks * (size_t)P->ldz16;
    P->off_tmp = off; off += (size_t)P->nchunks * 4 * (size_t)P->tmpw;
    P->total = off;
}

static void smb_dw_body(int64_t begin, int64_t end, void* varg) {
    const bwd_args* a = (const bwd_args*)varg;
    const bwd_plan* P = a->P;
    const fmlp_desc* d = a->d;
    int64_t N = a->N, in = a->in, nb = cdiv(N, 6);
    float tile[6 * SMB_KC];
    for (int64_t it = begin; it < end; it++) {
        int q = (int)(it / nb);
        int64_t r0 = (it % nb) * 6, R = imin(6, N - r0);
        int k = q ? 1 : layer_weight(d, a->layer);
        void* dw = a->g->dw[k];
        if (!dw) continue;
        const float* dz = a->ws + P->off_dz + q * N + r0; /* C[r][m] = DZ[m][q*N + r0 + r] */
        for (int64_t k0 = 0; k0 < in; k0 += SMB_KC) {
            int64_t w = imin(SMB_KC, in - k0);
            fmlp_cpu_comb_rows(FMLP_F32, R, w, a->M, dz, 1, P->ldz, a->ws + P->off_hb + k0, P->ldh, tile, SMB_KC);
            for (int64_t r = 0; r < R; r++)
                fmlp_cpu_store_row(a->dt, fmlp_ptr(a->dt, dw, (r0 + r) * in + k0), w, tile + r * SMB_KC);
        }
    }
}

static void smb_dx_body(int64_t begin, int64_t end, void* varg) {
    const bwd_args* a = (const bwd_args*)varg;
    const bwd_plan* P = a->P;
    const fmlp_desc* d = a->d;
    fmlp_dtype dt = a->dt;
    int i = a->layer, gated = d->gated && i == 0;
    int64_t N = a->N, in = a->in;
    const void* W0 = a->p->w[layer_weight(d, i)];
    float t0[6 * 64], t1[6 * 64];
    for (int64_t it = begin; it < end; it++) {
        int64_t k0 = it * 64, w = imin(64, in - k0);
        for (int64_t m0 = 0; m0 < a->M; m0 += 6) {
            int64_t R = imin(6, a->M - m0);
            const float* dz = a->ws + P->off_dz + m0 * P->ldz; /* C[r][n] = DZ[m0 + r][n] */
            fmlp_cpu_comb_rows(dt, R, w, N, dz, P->ldz, 1, fmlp_cptr(dt, W0, k0), in, t0, 64);
            if (gated) {
                fmlp_cpu_comb_rows(dt, R, w, N, dz + N, P->ldz, 1, fmlp_cptr(dt, a->p->w[1], k0), in, t1, 64);
                for (int64_t e = 0; e < R * 64; e++) t0[e] += t1[e];
            }
            for (int64_t r = 0; r < R; r++) {
                if (i == 0) fmlp_cpu_store_row(dt, fmlp_ptr(dt, a->dx, (m0 + r) * in + k0), w, t0 + r * 64);
                else memcpy(a->ws + P->off_g + (m0 + r) * P->ldw + k0, t0 + r * 64, sizeof(float) * (size_t)w);
            }
        }
    }
}

static void smb_backward(bwd_args* a, const fmlp_cpu_ctx* ctx) {
    const fmlp_desc* d = a->d;
    int64_t M = a->M;
    size_t es = fmlp_dtype_size(a->dt);
    a->s0 = 0;
    a->Ms = M;
    a->nch = row_chunks(M, ctx);
    a->first_slab = a->last_slab = 1;
    double pmin = (double)fmlp_cpu_small_par_min();
    for (int i = d->n_layers - 1; i >= 0; i--) {
        bwd_set_layer(a, i);
        run_parallel(ctx, a->nch, 1, bwd_elem_body, a);
        double work = (double)a->nz * (double)a->in * (double)(es + (size_t)M);
        if (a->need_dw) {
            int64_t items = cdiv(a->N, 6) * ((d->gated && i == 0) ? 2 : 1);
            if (work >= pmin) run_parallel(ctx, items, 1, smb_dw_body, a);
            else smb_dw_body(0, items, a);
        }
        if (i > 0 || a->dx) {
            int64_t items = cdiv(a->in, 64);
            if (work >= pmin) run_parallel(ctx, items, 1, smb_dx_body, a);
            else smb_dx_body(0, items, a);
        }
    }
}

int fmlp_backward_cpu(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* dout,
                      const void* x, const void* const* saved, const fmlp_params* p, void* dx,
                      const fmlp_grads* g, void* ws, const fmlp_cpu_ctx* ctx, fmlp_status* st) {
    int rc = check_common(d, dt, M, st);
    if (rc) return rc;
    rc = check_params(d, p, st);
    if (rc) return rc;
    int nw = fmlp_n_weights(d);
    if (M == 0) {
        for (int k = 0; g && k < nw; k++) {
            int64_t o, in;
            fmlp_weight_shape(d, k, &o, &in);
            if (g->dw[k]) memset(g->dw[k], 0, (size_t)(o * in) * fmlp_dtype_size(dt));
            if (g->db[k]) memset(g->db[k], 0, (size_t)o * fmlp_dtype_size(dt)); /* +0.0 in all dtypes */
        }
        return FMLP_OK;
    }
    if (!dout || !x) return fmlp_fail(st, FMLP_ERR_INVALID, "dout and x must not be NULL when M > 0");
    int ns = fmlp_saved_count(d);
    if (ns > 0 && !saved) return fmlp_fail(st, FMLP_ERR_INVALID, "saved is NULL but %d tensors are needed", ns);
    for (int s = 0; s < ns; s++)
        if (!saved[s]) return fmlp_fail(st, FMLP_ERR_INVALID, "saved[%d] is NULL", s);
    if (!ws) return fmlp_fail(st, FMLP_ERR_INVALID, "workspace is NULL (need %zu bytes)",
                              fmlp_backward_workspace_bytes_cpu(d, dt, M, ctx));
    bwd_plan P;
    int small = use_small(d, dt, M);
    if (small) smb_make_plan(d, M, ctx, &P);
    else bwd_make_plan(d, M, ctx, &P);
    fmlp_grads none;
    memset(&none, 0, sizeof none);
    bwd_args a;
    memset(&a, 0, sizeof a);
    a.d = d; a.dt = dt; a.M = M; a.dout = dout; a.x = x; a.saved = saved; a.p = p; a.dx = dx;
    a.g = g ? g : &none;
    a.ws = align_ws(ws);
    a.P = &P;
    if (small) {
        TRACE("bwd small", smb_backward(&a, ctx));
        bwd_store_db(&a, ctx);
        return FMLP_OK;
    }
    int64_t npanels = 0;
    for (int i = 0; i < d->n_layers; i++) npanels += cdiv(d->width[i], P.nr);
    TRACE("packW", run_parallel(ctx, npanels, 1, bwd_packw_body, &a));
    /* all layers on one slab of rows, then the next slab */
    for (int64_t s0 = 0; s0 < M; s0 += P.S) {
        a.s0 = s0;
        a.Ms = imin(P.S, M - s0);
        a.nch = row_chunks(a.Ms, ctx);
        a.first_slab = s0 == 0;
        a.last_slab = s0 + a.Ms == M;
        for (int i = d->n_layers - 1; i >= 0; i--) {
            bwd_set_layer(&a, i);
            TRACE("elem", run_parallel(ctx, a.nch, 1, bwd_elem_body, &a));
            if (a.need_dw) {
                int64_t items = cdiv(a.nzr, a.RG) * cdiv(a.inp, a.CG);
                TRACE("dW", run_parallel(ctx, imin(P.nslots, items), 1, bwd_dw_body, &a));
            }
            if (i > 0 || dx) TRACE("dX", run_parallel(ctx, a.nch, 1, bwd_dx_body, &a));
        }
    }
    bwd_store_db(&a, ctx);
    return FMLP_OK;
}
