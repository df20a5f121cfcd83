/* small_m_c.c — packed vs small-M forward in C, workspace allocated once (no page faults per
 * call, unlike the Python shim), 2 pthreads per parallel_for (thread creation ~tens of us
 * per call: compare at M >= 32 only). GeGLU 768->3072->768 (gelu_tanh), no bias; or with
 * argument "narrow": 64x5 relu with bias (tiny weights: the packing overhead is small).
 * Build: gcc -O3 -std=c11 -D_GNU_SOURCE dev/cpu/small_m_c.c csrc/fmlp_desc.c csrc/cpu/*.c -lm -lpthread -o /tmp/smc
 * Run:   /tmp/smc [narrow]           (prints median ms of 11 calls per path, float32 and bfloat16) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../csrc/fmlp.h"
#include "../../csrc/cpu/fmlp_cpu_convert.h"
#include "../../csrc/cpu/fmlp_cpu_small.h"

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
typedef struct { fmlp_range_fn body; void* ctx; int64_t b, e; } job;
static void* thr(void* p) { job* j = p; j->body(j->b, j->e, j->ctx); return NULL; }
static void pfor(int64_t n, int64_t grain, fmlp_range_fn body, void* ctx) {
    (void)grain;
    if (n < 2) { body(0, n, ctx); return; }
    pthread_t t;
    job j = {body, ctx, n / 2, n};
    pthread_create(&t, NULL, thr, &j);
    body(0, n / 2, ctx);
    pthread_join(t, NULL);
}
static int cmpd(const void* a, const void* b) { double x = *(const double*)a, y = *(const double*)b; return (x > y) - (x < y); }

int main(int argc, char** argv) {
    fmlp_desc d;
    memset(&d, 0, sizeof d);
    int narrow = argc > 1 && !strcmp(argv[1], "narrow");
    if (narrow) { /* 64x5 relu, bias */
        d.n_layers = 5;
        for (int i = 0; i <= 5; i++) d.width[i] = 64;
        for (int i = 0; i < 4; i++) d.act[i] = FMLP_ACT_RELU;
        for (int i = 0; i < 5; i++) d.has_bias[i] = 1;
    } else {
        d.n_layers = 2; d.gated = 1;
        d.width[0] = 768; d.width[1] = 3072; d.width[2] = 768;
        d.act[0] = FMLP_ACT_GELU_TANH;
    }
    fmlp_cpu_ctx ctx = {pfor, 2};
    const int64_t Ms[] = {1, 8, 32, 64, 128, 256, 512, 1024, 2048};
    for (int dti = 0; dti < 2; dti++) {
        fmlp_dtype dt = dti ? FMLP_BF16 : FMLP_F32;
        size_t es = dti ? 2 : 4;
        fmlp_params p;
        memset(&p, 0, sizeof p);
        for (int k = 0; k < fmlp_n_weights(&d); k++) {
            int64_t o, in;
            fmlp_weight_shape(&d, k, &o, &in);
            void* w = malloc(es * o * in);
            for (int64_t i = 0; i < o * in; i++) fmlp_store_elt(dt, w, i, (float)((i * 7919 % 1000) - 500) * 1e-4f);
            p.w[k] = w;
            if (d.has_bias[k]) { p.b[k] = calloc(o, es); }
        }
        printf("%s  M  packed ms  small ms\n", dti ? "bfloat16" : "float32");
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
            int64_t M = Ms[mi];
            int64_t w0 = d.width[0];
            void* x = malloc(es * M * w0);
            for (int64_t i = 0; i < M * w0; i++) fmlp_store_elt(dt, x, i, (float)((i * 31 % 200) - 100) * 1e-2f);
            void* out = malloc(es * M * d.width[d.n_layers]);
            double med[2];
            for (int path = 0; path < 2; path++) {
                fmlp_cpu_set_small_m(path ? 1 << 30 : 0);
                size_t wb = fmlp_forward_workspace_bytes_cpu(&d, dt, M, 0, &ctx);
                void* ws = aligned_alloc(64, (wb + 63) / 64 * 64);
                memset(ws, 0, wb);
                fmlp_status st;
                double t[11];
                for (int r = -2; r < 11; r++) {
                    double t0 = now();
                    fmlp_forward_cpu(&d, dt, M, x, &p, out, NULL, ws, &ctx, &st);
                    if (r >= 0) t[r] = now() - t0;
                }
                qsort(t, 11, sizeof(double), cmpd);
                med[path] = t[5] * 1e3;
                free(ws);
            }
            printf("        %5lld  %8.2f  %8.2f\n", (long long)M, med[0], med[1]);
            free(x); free(out);
        }
        for (int k = 0; k < fmlp_n_weights(&d); k++) { free((void*)p.w[k]); free((void*)p.b[k]); }
    }
    return 0;
}
