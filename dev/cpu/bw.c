/* bw.c — read bandwidth of this machine at several buffer sizes (L2 / L3 / DRAM), one and
 * two threads, AVX-512 loads summed into 8 accumulators (what the small-M path does with
 * weight rows). Each size: each timing reads the buffer ~1 GB worth of times (each thread its
 * half), median GB/s of 15 timings.
 * Build: gcc -O3 -march=native -std=c11 -D_GNU_SOURCE dev/cpu/bw.c -lpthread -o /tmp/bw && /tmp/bw */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

typedef struct { const float* p; size_t n; int reps; float s; } arg;
static void* rd(void* v) {
    arg* a = (arg*)v;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    for (int r = 0; r < a->reps; r++)
    for (size_t i = 0; i < a->n; i += 128) {
        s0 = _mm512_add_ps(s0, _mm512_load_ps(a->p + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(a->p + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(a->p + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(a->p + i + 48));
        s4 = _mm512_add_ps(s4, _mm512_load_ps(a->p + i + 64));
        s5 = _mm512_add_ps(s5, _mm512_load_ps(a->p + i + 80));
        s6 = _mm512_add_ps(s6, _mm512_load_ps(a->p + i + 96));
        s7 = _mm512_add_ps(s7, _mm512_load_ps(a->p + i + 112));
    }
    a->s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)),
                                              _mm512_add_ps(_mm512_add_ps(s4, s5), _mm512_add_ps(s6, s7))));
    return NULL;
}
static int cmp(const void* a, const void* b) { double x = *(const double*)a, y = *(const double*)b; return (x > y) - (x < y); }

int main(void) {
    size_t mbs[] = {1, 4, 8, 14, 20, 28, 32, 64, 256};
    for (int nt = 1; nt <= 2; nt++)
        for (size_t si = 0; si < sizeof mbs / sizeof mbs[0]; si++) {
            size_t bytes = mbs[si] << 20, n = bytes / 4;
            float* p = aligned_alloc(64, bytes);
            for (size_t i = 0; i < n; i++) p[i] = 1.0f;
            int reps = (int)((size_t)(1u << 30) / bytes); /* ~1 GB per timing: thread start-up negligible */
            if (reps < 1) reps = 1;
            double gbs[15];
            float sink = 0;
            for (int r = -2; r < 15; r++) {
                arg a[2];
                pthread_t t[2];
                double t0 = now();
                for (int k = 0; k < nt; k++) {
                    a[k].p = p + n / nt * k;
                    a[k].n = n / nt;
                    a[k].reps = reps;
                    if (k) pthread_create(&t[k], NULL, rd, &a[k]);
                }
                rd(&a[0]);
                for (int k = 1; k < nt; k++) pthread_join(t[k], NULL);
                double dt = now() - t0;
                for (int k = 0; k < nt; k++) sink += a[k].s;
                if (r >= 0) gbs[r] = (double)bytes * reps / dt / 1e9;
            }
            qsort(gbs, 15, sizeof(double), cmp);
            printf("threads %d  %4zu MB  read %6.1f GB/s (min %6.1f max %6.1f)%s\n", nt, mbs[si], gbs[7], gbs[0],
                   gbs[14], sink == 12345 ? "!" : "");
            free(p);
        }
    return 0;
}
