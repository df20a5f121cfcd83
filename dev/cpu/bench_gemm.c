/* bench_gemm.c — standalone CPU-core benchmark for experiments (not built by setup.py).
 * Measures: (1) peak FMA throughput of one core (independent zmm FMAs) -> GFLOP/s and
 * implied clock; (2) the selected microkernel on L1-resident data; (3) the fused forward
 * and backward of the two bench shapes, serial and with a 2-thread pthread parallel_for.
 * Build: gcc -O3 -std=c11 -D_GNU_SOURCE dev/cpu/bench_gemm.c csrc/fmlp_desc.c csrc/cpu/*.c -lm -lpthread -o /tmp/bg
 * Run:   /tmp/bg [all|narrow|big]   (FMLP_CPU_ISA=avx2|generic to compare kernels) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../csrc/fmlp.h"
#include "../../csrc/cpu/fmlp_cpu_gemm.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static double peak_fma(long iters) {
    __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
#define D(i) __m512 a##i = _mm512_set1_ps((float)i);
    D(0) D(1) D(2) D(3) D(4) D(5) D(6) D(7) D(8) D(9) D(10) D(11) D(12) D(13) D(14) D(15)
    double t = now();
    for (long k = 0; k < iters; k++) {
#define F(i) a##i = _mm512_fmadd_ps(a##i, b, c);
        F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11) F(12) F(13) F(14) F(15)
    }
    t = now() - t;
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)), _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)), _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15))));
    if (_mm512_reduce_add_ps(s) == 1234.5f) printf("x");
    return (double)iters * 16 * 32 / t / 1e9;
}
#endif

static void* thr_peak(void* p) {
#if defined(__x86_64__)
    *(double*)p = peak_fma(200000000L / 8);
#endif
    return NULL;
}

typedef struct { fmlp_range_fn body; void* ctx; int64_t b, e; } job;
static void* thr(void* p) { job* j = p; j->body(j->b, j->e, j->ctx); return NULL; }
static void pfor(int64_t n, int64_t grain, fmlp_range_fn body, void* ctx) {
    (void)grain;
    int parts = n < 2 ? (int)n : 2;
    if (parts <= 1) { body(0, n, ctx); return; }
    pthread_t t[2]; job j[2];
    for (int i = 0; i < parts; i++) { j[i] = (job){body, ctx, n * i / parts, n * (i + 1) / parts}; pthread_create(&t[i], NULL, thr, &j[i]); }
    for (int i = 0; i < parts; i++) pthread_join(t[i], NULL);
}

static void bench_mlp(const char* name, int L, const int64_t* w, int act, int bias, int64_t M, const fmlp_cpu_ctx* ctx) {
    fmlp_desc d; memset(&d, 0, sizeof d);
    d.n_layers = L;
    for (int i = 0; i <= L; i++) d.width[i] = w[i];
    for (int i = 0; i < L; i++) d.act[i] = i == L - 1 ? 0 : act;
    fmlp_params p; memset(&p, 0, sizeof p);
    double flops = 0;
    for (int k = 0; k < L; k++) {
        d.has_bias[k] = bias;
        float* W = malloc(sizeof(float) * w[k] * w[k + 1]);
        for (int64_t i = 0; i < w[k] * w[k + 1]; i++) W[i] = (float)((i * 7919 % 1000) - 500) / 500.0f / 32;
        p.w[k] = W;
        float* B = calloc(w[k + 1], sizeof(float));
        p.b[k] = B;
        flops += 2.0 * M * w[k] * w[k + 1];
    }
    float* x = malloc(sizeof(float) * M * w[0]);
    for (int64_t i = 0; i < M * w[0]; i++) x[i] = (float)((i * 31 % 200) - 100) / 100.0f;
    float* out = aligned_alloc(64, sizeof(float) * M * w[L]); /* torch tensors are 64-byte aligned */
    int ns = fmlp_saved_count(&d);
    void* saved[FMLP_MAX_LAYERS + 1];
    for (int s = 0; s < ns; s++) saved[s] = aligned_alloc(64, sizeof(float) * M * fmlp_saved_width(&d, s));
    size_t wb = fmlp_forward_workspace_bytes_cpu(&d, FMLP_F32, M, 0, ctx);
    size_t bb = fmlp_backward_workspace_bytes_cpu(&d, FMLP_F32, M, ctx);
    void* ws = aligned_alloc(64, (wb > bb ? wb : bb) + 64);
    memset(ws, 0, (wb > bb ? wb : bb));
    fmlp_status st;
    double best = 1e9, bests = 1e9, bestb = 1e9;
    for (int it = 0; it < 7; it++) {
        double t = now();
        fmlp_forward_cpu(&d, FMLP_F32, M, x, &p, out, NULL, ws, ctx, &st);
        t = now() - t; if (t < best) best = t;
        t = now();
        fmlp_forward_cpu(&d, FMLP_F32, M, x, &p, out, saved, ws, ctx, &st);
        t = now() - t; if (t < bests) bests = t;
    }
    {   /* fresh workspace per call (as a non-caching allocator gives): page-fault cost */
        double bf = 1e9;
        for (int it = 0; it < 5; it++) {
            double t = now();
            void* w2 = malloc(wb);
            fmlp_forward_cpu(&d, FMLP_F32, M, x, &p, out, NULL, w2, ctx, &st);
            free(w2);
            t = now() - t; if (t < bf) bf = t;
        }
        printf("   fwd with a fresh malloc'd workspace each call: %.2f ms\n", bf * 1e3);
    }
    fmlp_grads g; memset(&g, 0, sizeof g);
    for (int k = 0; k < L; k++) { g.dw[k] = malloc(sizeof(float) * w[k] * w[k + 1]); g.db[k] = malloc(sizeof(float) * w[k + 1]); }
    float* dx = malloc(sizeof(float) * M * w[0]);
    for (int it = 0; it < 3; it++) {
        double t = now();
        int rc = fmlp_backward_cpu(&d, FMLP_F32, M, out, x, (const void* const*)saved, &p, dx, &g, ws, ctx, &st);
        if (rc) printf("bwd rc %d %s\n", rc, st.msg);
        t = now() - t; if (t < bestb) bestb = t;
    }
    printf("%-26s thr=%d  fwd %8.2f ms %6.1f GF/s | fwd+save %8.2f ms %6.1f GF/s | bwd %8.2f ms %6.1f GF/s  (ws fwd %.1f MB bwd %.1f MB)\n",
           name, ctx ? ctx->num_threads : 1, best * 1e3, flops / best / 1e9, bests * 1e3, flops / bests / 1e9,
           bestb * 1e3, 2 * flops / bestb / 1e9, wb / 1e6, bb / 1e6);
}

int main(int argc, char** argv) {
    const char* which = argc > 1 ? argv[1] : "all";
    const fmlp_cpu_kernel* kr = fmlp_cpu_kernel_get();
    printf("kernel %s MR=%d NR=%d\n", kr->name, kr->mr, kr->nr);
#if defined(__x86_64__)
    double g1 = peak_fma(200000000L / 8);
    printf("peak FMA 1 core: %.1f GFLOP/s (= %.2f GHz x 64 flop/cycle)\n", g1, g1 / 64);
    double r[2]; pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, thr_peak, &r[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    printf("peak FMA 2 cores: %.1f GFLOP/s\n", r[0] + r[1]);
#endif
    /* microkernel, L1-resident: K=256 */
    int64_t K = 256;
    float* A = aligned_alloc(64, sizeof(float) * kr->mr * K);
    float* B = aligned_alloc(64, sizeof(float) * kr->nr * K);
    float* C = aligned_alloc(64, sizeof(float) * kr->mr * kr->nr);
    for (int64_t i = 0; i < kr->mr * K; i++) A[i] = 1e-3f * (i % 17);
    for (int64_t i = 0; i < kr->nr * K; i++) B[i] = 1e-3f * (i % 13);
    long reps = 200000;
    double t0 = now();
    for (long i = 0; i < reps; i++) kr->kern(K, A, K, B, kr->nr, C, kr->nr, 0);
    t0 = now() - t0;
    printf("microkernel %dx%d K=%lld L1: %.1f GFLOP/s 1 core\n", kr->mr, kr->nr, (long long)K,
           2.0 * kr->mr * kr->nr * K * reps / t0 / 1e9);
    fmlp_cpu_ctx ctx = {pfor, 2};
    int64_t w1[6] = {64, 64, 64, 64, 64, 64}, w2[3] = {1024, 4096, 1024};
    int all = !strcmp(which, "all");
    if (all || !strcmp(which, "narrow")) {
        if (all) bench_mlp("64x5 relu M=65536", 5, w1, FMLP_ACT_RELU, 1, 65536, NULL);
        bench_mlp("64x5 relu M=65536", 5, w1, FMLP_ACT_RELU, 1, 65536, &ctx);
    }
    if (all || !strcmp(which, "big")) {
        if (all) bench_mlp("1024-4096-1024 gelu_t M=2048", 2, w2, FMLP_ACT_GELU_TANH, 1, 2048, NULL);
        bench_mlp("1024-4096-1024 gelu_t M=2048", 2, w2, FMLP_ACT_GELU_TANH, 1, 2048, &ctx);
    }
    return 0;
}
