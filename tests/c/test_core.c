/* test_core.c — standalone test of the CPU core (fmlp_forward_cpu / fmlp_backward_cpu)
 * against a plain double-precision reference written here.
 * Covers: M = 0, 1, 7, 97 and larger, each forward on both paths (packed GEMM and small-M,
 * forced with fmlp_cpu_set_small_m; the small-M layers also forced through parallel_for),
 * each backward on both paths too; widths 1, 3, 17, 100, 300; every activation; bias
 * on/off; gated first layer; float32 / bfloat16 / float16; NULL gradient entries; a
 * pthread parallel_for (1..3 threads) to exercise the chunking; NaN-poisoned outputs and
 * workspace (every output element must be written, guard elements after every buffer
 * must stay untouched). Prints "N passed, N failed" last; exits non-zero on failure.
 * Build and run: tests/c/build_and_run.sh (gcc, links csrc/fmlp_desc.c and csrc/cpu/*.c). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../csrc/fmlp.h"
#include "../../csrc/cpu/fmlp_cpu_convert.h"
#include "../../csrc/cpu/fmlp_cpu_small.h"

static int n_pass = 0, n_fail = 0;
#define GUARD 8

/* ---- rng ---- */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* in (-1, 1), never 0 */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    double u = ((rng_state >> 11) + 0.5) / 9007199254740992.0; /* (0,1) */
    double v = 2.0 * u - 1.0;
    if (fabs(v) < 1e-3) v = v < 0 ? -1e-3 : 1e-3;
    return v;
}

/* ---- threads ---- */
typedef struct {
    fmlp_range_fn body;
    void* ctx;
    int64_t b, e;
} job;
static void* thr(void* p) {
    job* j = (job*)p;
    j->body(j->b, j->e, j->ctx);
    return NULL;
}
static int g_threads = 1;
static void test_parallel_for(int64_t n, int64_t grain, fmlp_range_fn body, void* ctx) {
    if (grain < 1) grain = 1;
    int64_t parts = g_threads;
    if (parts > (n + grain - 1) / grain) parts = (n + grain - 1) / grain;
    if (parts <= 1) { body(0, n, ctx); return; }
    pthread_t t[16];
    job j[16];
    for (int64_t i = 0; i < parts; i++) {
        j[i].body = body; j[i].ctx = ctx;
        j[i].b = n * i / parts; j[i].e = n * (i + 1) / parts;
        pthread_create(&t[i], NULL, thr, &j[i]);
    }
    for (int64_t i = 0; i < parts; i++) pthread_join(t[i], NULL);
}

/* ---- dtype buffers ---- */
static size_t esz(fmlp_dtype dt) { return dt == FMLP_F32 ? 4 : 2; }
static void* alloc_poison(fmlp_dtype dt, int64_t n) {
    void* p = malloc((size_t)(n + GUARD) * esz(dt));
    for (int64_t i = 0; i < n + GUARD; i++) {
        if (dt == FMLP_F32) ((float*)p)[i] = NAN;
        else ((uint16_t*)p)[i] = dt == FMLP_BF16 ? 0x7fc1 : 0x7e01;
    }
    return p;
}
static int guard_ok(fmlp_dtype dt, const void* p, int64_t n) {
    for (int64_t i = n; i < n + GUARD; i++) {
        if (dt == FMLP_F32) { uint32_t u; memcpy(&u, (const float*)p + i, 4); float f = NAN; uint32_t v; memcpy(&v, &f, 4); if (u != v) return 0; }
        else if (((const uint16_t*)p)[i] != (dt == FMLP_BF16 ? 0x7fc1 : 0x7e01)) return 0;
    }
    return 1;
}
/* random tensor: dtype buffer + rounded double copy */
static void* rand_tensor(fmlp_dtype dt, int64_t n, double scale, double** ref) {
    void* p = alloc_poison(dt, n);
    *ref = malloc(sizeof(double) * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) {
        fmlp_store_elt(dt, p, i, (float)(urand() * scale));
        (*ref)[i] = fmlp_load_elt(dt, p, i);
    }
    return p;
}

static double rnd(fmlp_dtype dt, double v) {
    uint16_t b[2];
    fmlp_store_elt(dt, b, 0, (float)v);
    return dt == FMLP_F32 ? (double)(float)v : fmlp_load_elt(dt, b, 0);
}

/* ---- reference activations in double ---- */
static double act_d(int act, double z, double slope) {
    const double c = sqrt(2.0 / M_PI);
    switch (act) {
    case FMLP_ACT_RELU: return z > 0 ? z : 0;
    case FMLP_ACT_GELU: return 0.5 * z * (1 + erf(z / sqrt(2.0)));
    case FMLP_ACT_GELU_TANH: return 0.5 * z * (1 + tanh(c * (z + 0.044715 * z * z * z)));
    case FMLP_ACT_SILU: return z / (1 + exp(-z));
    case FMLP_ACT_TANH: return tanh(z);
    case FMLP_ACT_SIGMOID: return 1 / (1 + exp(-z));
    case FMLP_ACT_LEAKY_RELU: return z > 0 ? z : z * slope;
    default: return z;
    }
}
static double dact_d(int act, double z, double slope) {
    const double c = sqrt(2.0 / M_PI);
    switch (act) {
    case FMLP_ACT_RELU: return z > 0 ? 1 : 0;
    case FMLP_ACT_GELU: return 0.5 * (1 + erf(z / sqrt(2.0))) + z * exp(-0.5 * z * z) / sqrt(2 * M_PI);
    case FMLP_ACT_GELU_TANH: {
        double t = tanh(c * (z + 0.044715 * z * z * z));
        return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * c * (1 + 3 * 0.044715 * z * z);
    }
    case FMLP_ACT_SILU: { double s = 1 / (1 + exp(-z)); return s * (1 + z * (1 - s)); }
    case FMLP_ACT_TANH: { double t = tanh(z); return 1 - t * t; }
    case FMLP_ACT_SIGMOID: { double s = 1 / (1 + exp(-z)); return s * (1 - s); }
    case FMLP_ACT_LEAKY_RELU: return z > 0 ? 1 : slope;
    default: return 1;
    }
}

/* ---- compare ---- */
static const char* g_case = "";
static int compare(const char* what, fmlp_dtype dt, const void* got, const double* ref, int64_t n, double tol) {
    double e2 = 0, r2 = 0;
    int64_t bad = -1;
    for (int64_t i = 0; i < n; i++) {
        double v = fmlp_load_elt(dt, got, i);
        if (!isfinite(v)) { bad = i; break; }
        e2 += (v - ref[i]) * (v - ref[i]);
        r2 += ref[i] * ref[i];
    }
    int ok = bad < 0 && guard_ok(dt, got, n);
    double rel = sqrt(e2) / (sqrt(r2) > 1e-30 ? sqrt(r2) : 1.0);
    if (ok && !(rel <= tol)) ok = 0;
    if (ok) n_pass++;
    else {
        n_fail++;
        if (n_fail <= 30) {
            if (bad >= 0) printf("FAIL %s %s: element %lld not written / not finite\n", g_case, what, (long long)bad);
            else if (!guard_ok(dt, got, n)) printf("FAIL %s %s: wrote past the end\n", g_case, what);
            else printf("FAIL %s %s: rel err %.3g > %.3g\n", g_case, what, rel, tol);
        }
    }
    return ok;
}
static void check(const char* what, int cond) {
    if (cond) n_pass++;
    else { n_fail++; if (n_fail <= 30) printf("FAIL %s %s\n", g_case, what); }
}

/* ---- one case ---- */
typedef struct {
    int L, gated, bias, act, last_act;
    int64_t w[8];
} shape;

static void run_case(fmlp_dtype dt, const shape* sh, int64_t M, int threads, int skip_mask) {
    char name[256];
    snprintf(name, sizeof name, "[dt=%d L=%d gated=%d bias=%d act=%d/%d M=%lld thr=%d skip=%d w=%lld,%lld,%lld..]",
             (int)dt, sh->L, sh->gated, sh->bias, sh->act, sh->last_act, (long long)M, threads, skip_mask,
             (long long)sh->w[0], (long long)sh->w[1], (long long)sh->w[2]);
    g_case = name;
    double tol = dt == FMLP_F32 ? 2e-5 : dt == FMLP_BF16 ? 2e-2 : 1e-2;
    fmlp_desc d;
    memset(&d, 0, sizeof d);
    d.n_layers = sh->L;
    d.gated = sh->gated;
    d.negative_slope = 0.1f;
    for (int i = 0; i <= sh->L; i++) d.width[i] = sh->w[i];
    for (int i = 0; i < sh->L; i++) d.act[i] = (i == sh->L - 1) ? sh->last_act : sh->act;
    int nw = fmlp_n_weights(&d);
    for (int k = 0; k < nw; k++) d.has_bias[k] = sh->bias && (k % 2 == 0 || sh->bias == 2);
    fmlp_status st = {0, ""};
    check("validate", fmlp_desc_validate(&d, &st) == 0);
    g_threads = threads;
    fmlp_cpu_ctx ctx = {test_parallel_for, threads};
    const fmlp_cpu_ctx* pctx = threads > 1 ? &ctx : NULL;

    /* parameters */
    fmlp_params p;
    memset(&p, 0, sizeof p);
    double *wr[FMLP_MAX_LAYERS + 1], *br[FMLP_MAX_LAYERS + 1];
    for (int k = 0; k < nw; k++) {
        int64_t o, in;
        fmlp_weight_shape(&d, k, &o, &in);
        p.w[k] = rand_tensor(dt, o * in, 1.5 / sqrt((double)in), &wr[k]);
        br[k] = NULL;
        if (d.has_bias[k]) p.b[k] = rand_tensor(dt, o, 0.5, &br[k]);
    }
    double* xr;
    void* x = rand_tensor(dt, M * d.width[0], 1.0, &xr);

    /* reference forward */
    int L = sh->L;
    double* z[FMLP_MAX_LAYERS + 1];
    double* zu = NULL;
    double* h[FMLP_MAX_LAYERS + 2];
    h[0] = xr;
    for (int i = 0; i < L; i++) {
        int64_t in = d.width[i], on = d.width[i + 1];
        int k = (d.gated && i > 0) ? i + 1 : i;
        z[i] = calloc((size_t)(M * on + 1), sizeof(double));
        h[i + 1] = calloc((size_t)(M * on + 1), sizeof(double));
        if (d.gated && i == 0) zu = calloc((size_t)(M * on + 1), sizeof(double));
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < on; n++) {
                double a = br[k] ? br[k][n] : 0, b = (d.gated && i == 0 && br[1]) ? br[1][n] : 0;
                for (int64_t kk = 0; kk < in; kk++) {
                    a += h[i][m * in + kk] * wr[k][n * in + kk];
                    if (d.gated && i == 0) b += h[i][m * in + kk] * wr[1][n * in + kk];
                }
                z[i][m * on + n] = a;
                if (d.gated && i == 0) {
                    zu[m * on + n] = b;
                    h[i + 1][m * on + n] = act_d(d.act[i], a, d.negative_slope) * b;
                } else
                    h[i + 1][m * on + n] = act_d(d.act[i], a, d.negative_slope);
            }
    }
    /* forward, on both CPU paths (packed GEMM, then small-M: forced through the test hook;
       the small-M layers forced through parallel_for too); the backward uses the last */
    int64_t wout = d.width[L];
    int ns = fmlp_saved_count(&d);
    void* saved[FMLP_MAX_LAYERS + 1];
    void *out = NULL, *out2 = NULL;
    size_t wsb;
    void *ws, *wsa;
    int rc;
    /* path 0 packed, 1 small-M, 2 small-M without the bf16 dot-product kernel (bf16 only) */
    for (int path = 0; path < 3; path++) {
    if (path == 2 && dt != FMLP_BF16) break;
    const char* base = name;
    char pname[300];
    snprintf(pname, sizeof pname, "%s%s", base, path == 2 ? "[small-M,f32 dot]" : path ? "[small-M]" : "[packed]");
    g_case = pname;
    fmlp_cpu_set_small_m(path ? 1000000 : 0);
    fmlp_cpu_set_small_par_min(path ? 0 : -1);
    fmlp_cpu_set_bf16_dot(path == 2 ? 0 : -1);
    if (path) {
        free(out); free(out2);
        for (int s = 0; s < ns; s++) free(saved[s]);
    }
    out = alloc_poison(dt, M * wout);
    for (int s = 0; s < ns; s++) saved[s] = alloc_poison(dt, M * fmlp_saved_width(&d, s));
    wsb = fmlp_forward_workspace_bytes_cpu(&d, dt, M, 1, pctx);
    ws = malloc(wsb + 64);
    memset(ws, 0xff, wsb + 64);
    wsa = (void*)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    rc = fmlp_forward_cpu(&d, dt, M, x, &p, out, saved, wsa, pctx, &st);
    check("forward rc", rc == 0);
    if (rc) printf("  msg: %s\n", st.msg);
    compare("out", dt, out, h[L], M * wout, tol);
    for (int i = 0; i < L; i++) {
        int s = fmlp_saved_index(&d, i);
        if (s < 0) continue;
        compare("saved z", dt, saved[s], z[i], M * d.width[i + 1], tol);
        if (d.gated && i == 0) compare("saved z_up", dt, saved[s + 1], zu, M * d.width[1], tol);
    }
    /* forward without saving must give the same out */
    out2 = alloc_poison(dt, M * wout);
    rc = fmlp_forward_cpu(&d, dt, M, x, &p, out2, NULL, wsa, pctx, &st);
    check("forward(nosave) rc", rc == 0);
    check("forward(nosave) same out", M == 0 || memcmp(out, out2, (size_t)(M * wout) * esz(dt)) == 0);
    free(ws);
    }
    g_case = name;
    fmlp_cpu_set_small_m(-1);
    fmlp_cpu_set_small_par_min(-1);
    fmlp_cpu_set_bf16_dot(-1);

    /* reference backward, from the saved z as the core sees them (rounded to dtype) */
    for (int i = 0; i < L; i++) {
        int64_t on = d.width[i + 1];
        for (int64_t e = 0; e < M * on; e++) {
            z[i][e] = rnd(dt, z[i][e]);
            if (d.gated && i == 0) zu[e] = rnd(dt, zu[e]);
        }
        for (int64_t e = 0; e < M * on; e++)
            h[i + 1][e] = (d.gated && i == 0) ? act_d(d.act[0], z[0][e], d.negative_slope) * zu[e]
                                              : act_d(d.act[i], z[i][e], d.negative_slope);
    }
    double* doutr;
    void* dout = rand_tensor(dt, M * wout, 1.0, &doutr);
    double* gcur = malloc(sizeof(double) * (size_t)(M * wout + 1));
    memcpy(gcur, doutr, sizeof(double) * (size_t)(M * wout));
    double *dwr[FMLP_MAX_LAYERS + 1], *dbr[FMLP_MAX_LAYERS + 1];
    for (int i = L - 1; i >= 0; i--) {
        int64_t in = d.width[i], on = d.width[i + 1];
        int k = (d.gated && i > 0) ? i + 1 : i;
        int gl = d.gated && i == 0;
        int nzc = gl ? 2 : 1;
        double* dz = calloc((size_t)(M * on * nzc + 1), sizeof(double));
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < on; n++) {
                double g = gcur[m * on + n], zz = z[i][m * on + n];
                if (gl) {
                    dz[m * on + n] = g * zu[m * on + n] * dact_d(d.act[0], zz, d.negative_slope);
                    dz[M * on + m * on + n] = g * act_d(d.act[0], zz, d.negative_slope);
                } else dz[m * on + n] = g * dact_d(d.act[i], zz, d.negative_slope);
            }
        double* gprev = calloc((size_t)(M * in + 1), sizeof(double));
        for (int q = 0; q < nzc; q++) {
            int kk = k + q;
            dwr[kk] = calloc((size_t)(on * in), sizeof(double));
            dbr[kk] = calloc((size_t)on, sizeof(double));
            const double* dzq = dz + q * M * on;
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < on; n++) {
                    double v = dzq[m * on + n];
                    dbr[kk][n] += v;
                    for (int64_t j = 0; j < in; j++) {
                        dwr[kk][n * in + j] += v * h[i][m * in + j];
                        gprev[m * in + j] += v * wr[kk][n * in + j];
                    }
                }
        }
        free(dz);
        free(gcur);
        gcur = gprev;
    }
    /* backward, on both paths (packed; small-M, forced, layers through parallel_for) */
    for (int bpath = 0; bpath < 2; bpath++) {
    char bname[300];
    snprintf(bname, sizeof bname, "%s%s", name, bpath ? "[bwd small-M]" : "[bwd packed]");
    g_case = bname;
    fmlp_cpu_set_small_m(bpath ? 1000000 : 0);
    fmlp_cpu_set_small_par_min(bpath ? 0 : -1);
    fmlp_grads g;
    memset(&g, 0, sizeof g);
    for (int k = 0; k < nw; k++) {
        int64_t o, in;
        fmlp_weight_shape(&d, k, &o, &in);
        if (!((skip_mask >> (2 * k)) & 1)) g.dw[k] = alloc_poison(dt, o * in);
        if (!((skip_mask >> (2 * k + 1)) & 1)) g.db[k] = alloc_poison(dt, o);
    }
    void* dx = (skip_mask & (1 << 20)) ? NULL : alloc_poison(dt, M * d.width[0]);
    wsb = fmlp_backward_workspace_bytes_cpu(&d, dt, M, pctx);
    ws = malloc(wsb + 64);
    memset(ws, 0xff, wsb + 64);
    wsa = (void*)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    rc = fmlp_backward_cpu(&d, dt, M, dout, x, (const void* const*)saved, &p, dx, &g, wsa, pctx, &st);
    check("backward rc", rc == 0);
    if (rc) printf("  msg: %s\n", st.msg);
    /* gradient tolerances: the backward recomputes from saved z (rounded to dtype) */
    double btol = dt == FMLP_F32 ? 5e-5 : tol * 1.5;
    if (dx) compare("dx", dt, dx, gcur, M * d.width[0], btol);
    for (int k = 0; k < nw; k++) {
        int64_t o, in;
        fmlp_weight_shape(&d, k, &o, &in);
        char nm[64];
        snprintf(nm, sizeof nm, "dw[%d]", k);
        if (g.dw[k]) compare(nm, dt, g.dw[k], dwr[k], o * in, btol);
        snprintf(nm, sizeof nm, "db[%d]", k);
        if (g.db[k]) compare(nm, dt, g.db[k], dbr[k], o, btol);
        free(g.dw[k]); free(g.db[k]);
    }
    free(ws);
    free(dx);
    }
    g_case = name;
    fmlp_cpu_set_small_m(-1);
    fmlp_cpu_set_small_par_min(-1);
    for (int k = 0; k < nw; k++) { free(dwr[k]); free(dbr[k]); }
    free(gcur); free(dout); free(doutr);
    /* cleanup */
    for (int i = 0; i < L; i++) { free(z[i]); free(h[i + 1]); }
    free(zu);
    for (int s = 0; s < ns; s++) free(saved[s]);
    for (int k = 0; k < nw; k++) { free((void*)p.w[k]); free((void*)p.b[k]); free(wr[k]); free(br[k]); }
    free(x); free(xr); free(out); free(out2);
}

static void test_errors(void) {
    g_case = "[errors]";
    fmlp_desc d;
    memset(&d, 0, sizeof d);
    d.n_layers = 1; d.width[0] = 3; d.width[1] = 4;
    fmlp_params p;
    memset(&p, 0, sizeof p);
    float w[12] = {0}, x[3] = {1, 2, 3}, out[4];
    fmlp_status st = {0, ""};
    check("null weight -> INVALID", fmlp_forward_cpu(&d, FMLP_F32, 1, x, &p, out, NULL, NULL, NULL, &st) == FMLP_ERR_INVALID);
    p.w[0] = w;
    d.has_bias[0] = 1;
    check("missing bias -> INVALID", fmlp_forward_cpu(&d, FMLP_F32, 1, x, &p, out, NULL, NULL, NULL, &st) == FMLP_ERR_INVALID);
    d.has_bias[0] = 0;
    check("bad dtype -> INVALID", fmlp_forward_cpu(&d, (fmlp_dtype)7, 1, x, &p, out, NULL, NULL, NULL, &st) == FMLP_ERR_INVALID);
    check("M<0 -> INVALID", fmlp_forward_cpu(&d, FMLP_F32, -1, x, &p, out, NULL, NULL, NULL, &st) == FMLP_ERR_INVALID);
    check("null ws -> INVALID", fmlp_forward_cpu(&d, FMLP_F32, 1, x, &p, out, NULL, NULL, NULL, &st) == FMLP_ERR_INVALID);
    d.n_layers = 0;
    check("bad desc -> INVALID", fmlp_forward_cpu(&d, FMLP_F32, 1, x, &p, out, NULL, NULL, NULL, &st) == FMLP_ERR_INVALID);
    check("bad desc ws bytes 0", fmlp_forward_workspace_bytes_cpu(&d, FMLP_F32, 5, 1, NULL) == 0);
    d.n_layers = 1;
    check("bwd null saved -> INVALID", fmlp_backward_cpu(&d, FMLP_F32, 1, x, x, NULL, &p, NULL, NULL, NULL, NULL, &st) == FMLP_ERR_INVALID || fmlp_saved_count(&d) == 0);
    check("M=0 ws bytes", fmlp_forward_workspace_bytes_cpu(&d, FMLP_F32, 0, 1, NULL) == 0);
}

int main(int argc, char** argv) {
    int quick = argc > 1 && !strcmp(argv[1], "quick");
    const fmlp_dtype dts[3] = {FMLP_F32, FMLP_BF16, FMLP_F16};
    const int64_t Ms[4] = {0, 1, 7, 97};
    shape shapes[] = {
        {1, 0, 1, 0, 0, {3, 17}},
        {2, 0, 1, 0, 0, {17, 1, 100}},
        {3, 0, 2, 0, 0, {100, 17, 3, 1}},
        {3, 0, 0, 0, 0, {1, 33, 64, 5}},
        {2, 1, 1, 0, 0, {17, 100, 3}},
        {3, 1, 2, 0, 0, {3, 17, 1, 17}},
    };
    int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    test_errors();
    int idx = 0;
    for (int t = 0; t < 3; t++)
        for (int a = 0; a < FMLP_ACT_COUNT; a++)
            for (int s = 0; s < nshapes; s++)
                for (int mi = 0; mi < 4; mi++) {
                    shape sh = shapes[s];
                    sh.act = a;
                    sh.last_act = (idx % 3 == 0) ? a : (idx % 3 == 1 ? FMLP_ACT_IDENTITY : (a + 3) % FMLP_ACT_COUNT);
                    if (idx % 5 == 0) sh.bias = 0;
                    int threads = 1 + idx % 3;
                    int skip = 0;
                    if (idx % 7 == 3) skip = 1 << 20;       /* no dx */
                    if (idx % 7 == 5) skip = 0x1 | 0x8;    /* no dw[0], no db[1] */
                    if (idx % 11 == 6) skip = 0xfffff;     /* no dw/db at all */
                    run_case(dts[t], &sh, Ms[mi], threads, skip);
                    idx++;
                    if (quick && idx > 40) goto big;
                }
big:;
    /* larger cases: K blocking (K > 256), several row blocks per chunk, several dW tiles */
    shape b1 = {3, 0, 1, FMLP_ACT_GELU_TANH, FMLP_ACT_IDENTITY, {300, 70, 530, 40}};
    shape b2 = {2, 1, 1, FMLP_ACT_SILU, FMLP_ACT_RELU, {260, 300, 20}};
    shape b3 = {5, 0, 1, FMLP_ACT_RELU, FMLP_ACT_IDENTITY, {64, 64, 64, 64, 64, 64}};
    run_case(FMLP_F32, &b1, 611, 3, 0);
    run_case(FMLP_F32, &b2, 500, 2, 0);
    run_case(FMLP_BF16, &b2, 300, 1, 0);
    run_case(FMLP_F32, &b3, 1500, 2, 0);
    run_case(FMLP_F16, &b1, 130, 2, 1 << 20);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
