/* bench_small_m.cu — development harness of the single-launch small-M forward
 * (csrc/cuda/fmlp_small_m.cu): correctness against a CPU double reference on random
 * inputs (outputs and saved tensors poisoned with NaN before each run), then timing by
 * CUDA-graph replay against the weight-streaming floor (weight bytes / measured
 * device-to-device copy bandwidth, read + write counted).
 *
 * Build and run: dev/cuda/small_m/run.sh (on the GPU). Usage: bench_small_m [check|time|all]
 * Times the kernel in csrc/cuda/fmlp_small_m.cu as built (v2 since 2026-11-24), plus the
 * cost of the per-call memset node alone; eager.py prints the eager baseline in the same run.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>
#include <algorithm>

#include "fmlp.h"
#include "fmlp_cuda.h"

#define CK(x)                                                                                   \
    do {                                                                                        \
        cudaError_t e_ = (x);                                                                   \
        if (e_ != cudaSuccess) {                                                                \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand() { /* uniform [-1, 1) */
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
}

/* host dtype conversion: round to dtype, keep the rounded float and the raw bits */
static float round_dt(float v, fmlp_dtype dt) {
    if (dt == FMLP_BF16) return __bfloat162float(__float2bfloat16_rn(v));
    if (dt == FMLP_F16) return __half2float(__float2half_rn(v));
    return v;
}
static void to_dev_bits(const std::vector<float>& f, fmlp_dtype dt, std::vector<unsigned char>& out) {
    size_t es = fmlp_dtype_size(dt);
    out.resize(f.size() * es);
    for (size_t i = 0; i < f.size(); i++) {
        if (dt == FMLP_F32) memcpy(&out[i * 4], &f[i], 4);
        else if (dt == FMLP_BF16) { __nv_bfloat16 b = __float2bfloat16_rn(f[i]); memcpy(&out[i * 2], &b, 2); }
        else { __half h = __float2half_rn(f[i]); memcpy(&out[i * 2], &h, 2); }
    }
}
static double from_bits(const unsigned char* p, fmlp_dtype dt) {
    if (dt == FMLP_F32) { float v; memcpy(&v, p, 4); return v; }
    if (dt == FMLP_BF16) { __nv_bfloat16 b; memcpy(&b, p, 2); return __bfloat162float(b); }
    __half h; memcpy(&h, p, 2); return __half2float(h);
}

static double act_d(int a, double z, double slope) {
    switch (a) {
    case FMLP_ACT_RELU: return z > 0 ? z : 0;
    case FMLP_ACT_GELU: return 0.5 * z * (1 + erf(z / sqrt(2.0)));
    case FMLP_ACT_GELU_TANH: return 0.5 * z * (1 + tanh(sqrt(2 / M_PI) * (z + 0.044715 * z * z * z)));
    case FMLP_ACT_SILU: return z / (1 + exp(-z));
    case FMLP_ACT_TANH: return tanh(z);
    case FMLP_ACT_SIGMOID: return 1 / (1 + exp(-z));
    case FMLP_ACT_LEAKY_RELU: return z > 0 ? z : z * slope;
    default: return z;
    }
}

/* One MLP instance: host copies (rounded floats) and device buffers. */
struct Mlp {
    fmlp_desc d;
    fmlp_dtype dt;
    int nw;
    std::vector<std::vector<float>> w, b;
    std::vector<void*> dw, db;
    size_t weight_bytes;
};

static void mlp_init(Mlp& m, const fmlp_desc& d, fmlp_dtype dt, int nsets) {
    m.d = d; m.dt = dt; m.nw = fmlp_n_weights(&d);
    m.w.assign(m.nw, {}); m.b.assign(m.nw, {});
    m.weight_bytes = 0;
    for (int k = 0; k < m.nw; k++) {
        int64_t o, i;
        fmlp_weight_shape(&d, k, &o, &i);
        float sc = 1.f / sqrtf((float)i);
        m.w[k].resize(o * i);
        for (auto& v : m.w[k]) v = round_dt(frand() * sc * 1.7f, dt);
        if (d.has_bias[k]) { m.b[k].resize(o); for (auto& v : m.b[k]) v = round_dt(frand() * 0.3f, dt); }
        m.weight_bytes += (size_t)o * i * fmlp_dtype_size(dt);
    }
    /* nsets device copies of every weight (to rotate through, defeating the 50 MB L2) */
    m.dw.assign((size_t)m.nw * nsets, NULL); m.db.assign((size_t)m.nw * nsets, NULL);
    std::vector<unsigned char> bits;
    for (int s = 0; s < nsets; s++)
        for (int k = 0; k < m.nw; k++) {
            to_dev_bits(m.w[k], dt, bits);
            CK(cudaMalloc(&m.dw[s * m.nw + k], bits.size()));
            CK(cudaMemcpy(m.dw[s * m.nw + k], bits.data(), bits.size(), cudaMemcpyHostToDevice));
            if (d.has_bias[k]) {
                to_dev_bits(m.b[k], dt, bits);
                CK(cudaMalloc(&m.db[s * m.nw + k], bits.size()));
                CK(cudaMemcpy(m.db[s * m.nw + k], bits.data(), bits.size(), cudaMemcpyHostToDevice));
            }
        }
}
static void mlp_free(Mlp& m) {
    for (void* p : m.dw) cudaFree(p);
    for (void* p : m.db) if (p) cudaFree(p);
}
static fmlp_params mlp_params(const Mlp& m, int set) {
    fmlp_params p;
    memset(&p, 0, sizeof p);
    for (int k = 0; k < m.nw; k++) { p.w[k] = m.dw[set * m.nw + k]; p.b[k] = m.db[set * m.nw + k]; }
    return p;
}

/* CPU double reference: out (M, width[L]) and the saved z's. */
static void reference(const Mlp& m, int M, const std::vector<float>& x, std::vector<double>& out,
                      std::vector<std::vector<double>>& saved) {
    const fmlp_desc& d = m.d;
    std::vector<double> h(x.begin(), x.end());
    saved.assign(fmlp_saved_count(&d), {});
    for (int i = 0; i < d.n_layers; i++) {
        int N = (int)d.width[i + 1], K = (int)d.width[i];
        int g = d.gated && i == 0, k0 = i == 0 ? 0 : i + d.gated;
        std::vector<double> nh((size_t)M * N), zg((size_t)M * N), zu((size_t)M * N);
        for (int r = 0; r < M; r++)
            for (int n = 0; n < N; n++) {
                double s = d.has_bias[k0] ? m.b[k0][n] : 0, su = 0;
                const float* wr = &m.w[k0][(size_t)n * K];
                for (int k = 0; k < K; k++) s += (double)wr[k] * h[(size_t)r * K + k];
                if (g) {
                    su = d.has_bias[1] ? m.b[1][n] : 0;
                    const float* ur = &m.w[1][(size_t)n * K];
                    for (int k = 0; k < K; k++) su += (double)ur[k] * h[(size_t)r * K + k];
                }
                zg[(size_t)r * N + n] = s; zu[(size_t)r * N + n] = su;
                double a = act_d(d.act[i], s, d.negative_slope);
                nh[(size_t)r * N + n] = g ? a * su : a;
            }
        int si = fmlp_saved_index(&d, i);
        if (si >= 0) { saved[si] = zg; if (g) saved[si + 1] = zu; }
        h.swap(nh);
    }
    out = h;
}

static double rel_err(const std::vector<unsigned char>& got, const std::vector<double>& ref, fmlp_dtype dt,
                      int* nan_count) {
    size_t es = fmlp_dtype_size(dt);
    double num = 0, den = 0;
    int nans = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        double v = from_bits(&got[i * es], dt);
        if (!isfinite(v)) { nans++; continue; }
        num += (v - ref[i]) * (v - ref[i]);
        den += ref[i] * ref[i];
    }
    *nan_count = nans;
    return sqrt(num / (den > 0 ? den : 1));
}

#ifdef FMLP_SM_PROF
extern "C" int fmlp_small_m_dev_prof(void* dst, void* gt);
#endif
extern "C" int fmlp_small_m_dev_last_lean(void);

static fmlp_cuda_ctx make_ctx(cudaStream_t s) {
    fmlp_cuda_ctx c;
    memset(&c, 0, sizeof c);
    c.stream = s;
    CK(cudaGetDevice(&c.device));
    CK(cudaDeviceGetAttribute(&c.sm_count, cudaDevAttrMultiProcessorCount, c.device));
    CK(cudaDeviceGetAttribute(&c.cc_major, cudaDevAttrComputeCapabilityMajor, c.device));
    CK(cudaDeviceGetAttribute(&c.cc_minor, cudaDevAttrComputeCapabilityMinor, c.device));
    return c;
}

static fmlp_desc make_desc(int L, int gated, std::vector<int64_t> widths, std::vector<int> acts,
                           std::vector<int> bias, float slope = 0.01f) {
    fmlp_desc d;
    memset(&d, 0, sizeof d);
    d.n_layers = L; d.gated = gated; d.negative_slope = slope;
    for (int i = 0; i <= L; i++) d.width[i] = widths[i];
    for (int i = 0; i < L; i++) d.act[i] = acts[i];
    for (int k = 0; k < L + gated; k++) d.has_bias[k] = bias[k];
    return d;
}

static const char* dt_name(fmlp_dtype dt) { return dt == FMLP_F32 ? "f32" : dt == FMLP_BF16 ? "bf16" : "f16"; }

/* ---- correctness --------------------------------------------------------------- */
static int check_one(const char* name, const fmlp_desc& d, fmlp_dtype dt, int M, cudaStream_t st, int reps) {
    fmlp_cuda_ctx ctx = make_ctx(st);
    const char* why;
    if (!fmlp_small_m_supported(&d, dt, M, &ctx, &why)) { printf("%-28s %-4s M=%2d unsupported: %s\n", name, dt_name(dt), M, why); return 1; }
    int fails = 0;
    for (int rep = 0; rep < reps; rep++) {
        Mlp m;
        mlp_init(m, d, dt, 1);
        size_t es = fmlp_dtype_size(dt);
        int L = d.n_layers;
        std::vector<float> x((size_t)M * d.width[0]);
        for (auto& v : x) v = round_dt(frand(), dt);
        std::vector<unsigned char> xb;
        to_dev_bits(x, dt, xb);
        /* x at an odd 2-element offset half the time: exercises the unaligned input path */
        int xoff = (rep & 1) ? 1 : 0;
        void *dx, *dout, *dws;
        CK(cudaMalloc(&dx, xb.size() + 16));
        CK(cudaMemcpy((char*)dx + xoff * es, xb.data(), xb.size(), cudaMemcpyHostToDevice));
        size_t outb = (size_t)M * d.width[L] * es;
        CK(cudaMalloc(&dout, outb + 1));
        int ns = fmlp_saved_count(&d);
        std::vector<void*> sv(ns);
        for (int s = 0; s < ns; s++) CK(cudaMalloc(&sv[s], (size_t)M * fmlp_saved_width(&d, s) * es + 1));
        size_t wsb = fmlp_small_m_workspace_bytes(&d, dt, M, &ctx);
        CK(cudaMalloc(&dws, wsb + 256));
        CK(cudaMemset(dws, 0xAB, wsb + 256)); /* garbage: the kernel must not rely on zeros */
        CK(cudaMemset(dout, 0xFF, outb));   /* NaN poison */
        for (int s = 0; s < ns; s++) CK(cudaMemset(sv[s], 0xFF, (size_t)M * fmlp_saved_width(&d, s) * es));
        fmlp_params p = mlp_params(m, 0);
        fmlp_status stt;
        stt.code = 0; stt.msg[0] = 0;
        int save = rep != 1; /* one rep without saved tensors */
        int rc = fmlp_forward_small_m_cuda(&d, dt, M, (char*)dx + xoff * es, &p, dout, save ? sv.data() : NULL, dws, &ctx, &stt);
        if (rc) { printf("%s: forward failed: %s\n", name, stt.msg); exit(1); }
        CK(cudaGetLastError());
        /* run twice: the second call reuses the dirty workspace */
        rc = fmlp_forward_small_m_cuda(&d, dt, M, (char*)dx + xoff * es, &p, dout, save ? sv.data() : NULL, dws, &ctx, &stt);
        CK(cudaStreamSynchronize(st));
        std::vector<double> ref;
        std::vector<std::vector<double>> rsaved;
        reference(m, M, x, ref, rsaved);
        std::vector<unsigned char> got(outb);
        CK(cudaMemcpy(got.data(), dout, outb, cudaMemcpyDeviceToHost));
        int nans;
        double tol = dt == FMLP_F32 ? 1e-5 : dt == FMLP_F16 ? 3e-3 : 1.5e-2;
        double e = rel_err(got, ref, dt, &nans);
        double es_max = 0;
        int snans = 0;
        std::vector<std::vector<unsigned char>> gsaved(ns);
        if (save)
            for (int s = 0; s < ns; s++) {
                gsaved[s].resize((size_t)M * fmlp_saved_width(&d, s) * es);
                CK(cudaMemcpy(gsaved[s].data(), sv[s], gsaved[s].size(), cudaMemcpyDeviceToHost));
                int n2;
                es_max = std::max(es_max, rel_err(gsaved[s], rsaved[s], dt, &n2));
                snans += n2;
            }
        int ok = e < tol && nans == 0 && es_max < tol && snans == 0;
        fails += !ok;
        if (!ok && save) /* where: the first wrong entries of each saved tensor */
            for (int s = 0; s < ns; s++) {
                const int W = (int)fmlp_saved_width(&d, s);
                const std::vector<unsigned char>& gs = gsaved[s];
                double mx = 0;
                for (double v : rsaved[s]) mx = std::max(mx, fabs(v));
                int bad = 0;
                printf("  saved[%d] (%d x %d) wrong (m, n: got / ref):", s, M, W);
                for (int i = 0; i < M * W; i++) {
                    const double g = from_bits(gs.data() + (size_t)i * es, dt);
                    if (!(fabs(g - rsaved[s][i]) <= 0.05 * mx)) {
                        if (bad < 12) printf(" (%d,%d: %.3f/%.3f)", i / W, i % W, g, rsaved[s][i]);
                        bad++;
                    }
                }
                printf("  -- %d of %d\n   n<26:", bad, M * W);
                for (int i = 0; i < 26 && i < W; i++) printf(" %.2f/%.2f", from_bits(gs.data() + (size_t)i * es, dt), rsaved[s][i]);
                printf("\n");
            }
        printf("%-28s %-4s M=%2d rep%d %s  out err %.2e  saved err %.2e  nan %d/%d  %s\n", name, dt_name(dt), M, rep,
               fmlp_small_m_dev_last_lean() ? "lean" : "v4  ", e, es_max, nans, snans, ok ? "ok" : "FAIL");
        cudaFree(dx); cudaFree(dout); cudaFree(dws);
        for (void* q : sv) cudaFree(q);
        mlp_free(m);
    }
    return fails;
}

/* ---- timing -------------------------------------------------------------------- */
static float median(std::vector<float> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; }

/* Median µs per call over 50 replays (after 10) of a graph holding enqueue(0 .. per-1). */
template <typename F>
static double graph_us_per_call(cudaStream_t st, int per, F enqueue) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    for (int i = 0; i < per; i++) enqueue(i);
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
    std::vector<float> t;
    for (int i = 0; i < 60; i++) {
        CK(cudaEventRecord(e0, st));
        CK(cudaGraphLaunch(ge, st));
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float ms; CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 10) t.push_back(ms);
    }
    CK(cudaGetLastError());
    cudaEventDestroy(e0); cudaEventDestroy(e1);
    cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
    return median(t) * 1e3 / per;
}

static double copy_bandwidth(cudaStream_t st) { /* bytes read + written per second */
    size_t n = (size_t)512 << 20;
    void *a, *b;
    CK(cudaMalloc(&a, n)); CK(cudaMalloc(&b, n));
    CK(cudaMemset(a, 1, n));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
    std::vector<float> t;
    for (int i = 0; i < 25; i++) {
        CK(cudaEventRecord(e0, st));
        CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, st));
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float ms; CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 5) t.push_back(ms);
    }
    cudaFree(a); cudaFree(b);
    return 2.0 * n / (median(t) * 1e-3);
}

/* Device buffers of a timing run: a random x (values rounded to dt), out, workspace. */
struct RunBufs { void *x, *out, *ws; };
static RunBufs run_bufs(const fmlp_desc& d, fmlp_dtype dt, int M, const fmlp_cuda_ctx& ctx) {
    RunBufs r;
    std::vector<float> x((size_t)M * d.width[0]);
    for (auto& v : x) v = round_dt(frand(), dt);
    std::vector<unsigned char> xb;
    to_dev_bits(x, dt, xb);
    CK(cudaMalloc(&r.x, xb.size()));
    CK(cudaMemcpy(r.x, xb.data(), xb.size(), cudaMemcpyHostToDevice));
    CK(cudaMalloc(&r.out, (size_t)M * d.width[d.n_layers] * fmlp_dtype_size(dt)));
    CK(cudaMalloc(&r.ws, fmlp_small_m_workspace_bytes(&d, dt, M, &ctx)));
    return r;
}
static void free_bufs(RunBufs& r) { cudaFree(r.x); cudaFree(r.out); cudaFree(r.ws); }

/* Median µs per forward over graph replays; the graph holds `per` forwards, rotating
 * through `nsets` weight sets (nsets=1: weights hot in L2). */
static double time_graph(const fmlp_desc& d, fmlp_dtype dt, int M, cudaStream_t st, int nsets, int per) {
    fmlp_cuda_ctx ctx = make_ctx(st);
    Mlp m;
    mlp_init(m, d, dt, nsets);
    RunBufs bu = run_bufs(d, dt, M, ctx);
    void *dx = bu.x, *dout = bu.out, *dws = bu.ws;
    fmlp_status stt;
    auto forward = [&](int i) {
        fmlp_params p = mlp_params(m, i % nsets);
        if (fmlp_forward_small_m_cuda(&d, dt, M, dx, &p, dout, NULL, dws, &ctx, &stt)) { printf("fail %s\n", stt.msg); exit(1); }
    };
    for (int i = 0; i < 3; i++) forward(i); /* warm up outside capture (module load, attributes) */
    CK(cudaStreamSynchronize(st));
    const double us = graph_us_per_call(st, per, forward);
    free_bufs(bu);
    mlp_free(m);
    return us;
}

#ifdef FMLP_SM_PROF
/* SM clock rate (MHz): clock64 against %globaltimer over a ~2 ms spin (the timer's ~1 us
 * ticks are then negligible). */
__global__ void clock_cal(unsigned long long* o) {
    unsigned long long t0, t1;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    long long c0 = clock64();
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t1)); } while (t1 - t0 < 2000000ull);
    long long c1 = clock64();
    o[0] = (unsigned long long)(c1 - c0);
    o[1] = t1 - t0;
}
static double sm_mhz() {
    unsigned long long *d, h[2];
    CK(cudaMalloc(&d, 16));
    clock_cal<<<1, 1>>>(d);
    CK(cudaMemcpy(h, d, 16, cudaMemcpyDeviceToHost));
    cudaFree(d);
    return (double)h[0] / (double)h[1] * 1e3;
}

/* prof: per-phase clock64 stamps (build with -DFMLP_SM_PROF), us after the block's own
 * entry: median and max over blocks, median over 6 launches; "entry skew" is the block's
 * %globaltimer start after the earliest block's. */
static void prof_case(const char* name, const fmlp_desc& d, int M, cudaStream_t st, bool hot) {
    static unsigned long long pr[1024][16], gt[1024];
    static double mhz = 0;
    if (mhz == 0) { mhz = sm_mhz(); printf("SM clock during prof: %.0f MHz\n", mhz); }
    fmlp_cuda_ctx ctx = make_ctx(st);
    Mlp m;
    mlp_init(m, d, FMLP_BF16, 6);
    RunBufs bu = run_bufs(d, FMLP_BF16, M, ctx);
    void *dx = bu.x, *dout = bu.out, *dws = bu.ws;
    fmlp_status stt;
    const char* lab[16] = {"entry skew", "bulk issued", "biases loaded", "L0 start", "L0 w landed", "L0 mma done",
                           "L0 done", "grid bar", "L1 start", "L1 w landed", "L1 mma done", "L1 done",
                           "entry barrier", "x+W0 issued", "bias iss|mbar ok", "end"}; /* 14: v4 bias fetch issued, lean mbarriers ready */
    std::vector<std::vector<double>> acc(16);
    for (int it = 0; it < 12; it++) {
        /* cold: rotate 6 weight sets (100 MB > 50 MB L2, clean lines); hot: one set */
        fmlp_params p = mlp_params(m, hot ? 0 : it % 6);
        if (fmlp_forward_small_m_cuda(&d, FMLP_BF16, M, dx, &p, dout, NULL, dws, &ctx, &stt)) { printf("fail %s\n", stt.msg); exit(1); }
        CK(cudaStreamSynchronize(st));
        if (it < 6) continue;
        CK((cudaError_t)fmlp_small_m_dev_prof(pr, gt));
        unsigned long long g0 = ~0ull;
        for (int b = 0; b < ctx.sm_count; b++) g0 = std::min(g0, gt[b]);
        for (int k = 0; k < 16; k++) {
            std::vector<double> v;
            for (int b = 0; b < ctx.sm_count; b++) {
                if (k == 0) v.push_back((gt[b] - g0) * 1e-3);
                else v.push_back(pr[b][k] >= pr[b][0] && pr[b][k] ? (pr[b][k] - pr[b][0]) / mhz : -1);
            }
            std::sort(v.begin(), v.end());
            acc[k].push_back(v[v.size() / 2]);
            acc[k].push_back(v.back());
        }
    }
    printf("prof %s M=%d (%s, 6 launches; us after the block's entry (clock64): median-of-launches of block median / block max)\n",
           name, M, hot ? "hot: weights in L2" : "cold: 6 weight sets rotated");
    const int order[16] = {0, 14, 12, 13, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15};
    for (int kk = 0; kk < 16; kk++) {
        const int k = order[kk];
        std::vector<double> med, mx;
        for (size_t i = 0; i < acc[k].size(); i += 2) { med.push_back(acc[k][i]); mx.push_back(acc[k][i + 1]); }
        std::sort(med.begin(), med.end()); std::sort(mx.begin(), mx.end());
        printf("  %-15s %7.2f %7.2f\n", lab[k], med[med.size() / 2], mx[mx.size() / 2]);
    }
    free_bufs(bu);
    mlp_free(m);
}
#endif

/* ---- "launch" mode: what a launch of this shape costs in graph replay, kernel work aside.
 * Empty kernels with the lean kernel's launch shape (grid = SMs, 256 threads, ~200 KB dynamic
 * shared memory, cooperative), varying one thing at a time: parameter bytes (the kernels take
 * sm_params, ~5.4 KB), shared memory, cooperative or not; plus one and two grid barriers. */
#include <cooperative_groups.h>
template <int PB> struct blob { unsigned char b[PB]; };
template <int PB, int SYNCS>
__global__ void __launch_bounds__(256, 1) k_empty(const __grid_constant__ blob<PB> p) {
    extern __shared__ unsigned char s_dyn[];
    for (int i = 0; i < SYNCS; i++) cooperative_groups::this_grid().sync();
    if (threadIdx.x == 0 && p.b[PB - 1] == 123) s_dyn[0] = 1; /* never: keeps p and smem alive */
}
template <int PB, int SYNCS>
static double time_empty(cudaStream_t st, int grid, size_t smem, bool coop) {
    const void* fn = (const void*)k_empty<PB, SYNCS>;
    CK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    blob<PB> p;
    memset(&p, 0, sizeof p);
    void* args[] = {&p};
    auto launch = [&]() {
        if (coop) CK(cudaLaunchCooperativeKernel(fn, dim3(grid), dim3(256), args, smem, st));
        else CK(cudaLaunchKernel(fn, dim3(grid), dim3(256), args, smem, st));
    };
    for (int i = 0; i < 3; i++) launch();
    CK(cudaStreamSynchronize(st));
    return graph_us_per_call(st, 12, [&](int) { launch(); });
}
static void launch_costs(cudaStream_t st) {
    int dev, sms;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    const size_t big = 200 * 1024;
    printf("launch costs (graph of 12 launches, us per launch; grid %d x 256 threads):\n", sms);
    printf("  coop, 5.4 KB params, 200 KB smem (the lean kernel's shape) %6.2f\n", time_empty<5440, 0>(st, sms, big, true));
    printf("  coop, 256 B params, 200 KB smem                           %6.2f\n", time_empty<256, 0>(st, sms, big, true));
    printf("  plain, 5.4 KB params, 200 KB smem                         %6.2f\n", time_empty<5440, 0>(st, sms, big, false));
    printf("  plain, 256 B params, 200 KB smem                          %6.2f\n", time_empty<256, 0>(st, sms, big, false));
    printf("  plain, 256 B params, no dynamic smem                      %6.2f\n", time_empty<256, 0>(st, sms, 0, false));
    printf("  coop, 256 B params, 200 KB smem, 1 grid sync              %6.2f\n", time_empty<256, 1>(st, sms, big, true));
    printf("  coop, 256 B params, 200 KB smem, 2 grid syncs             %6.2f\n", time_empty<256, 2>(st, sms, big, true));
    printf("  coop, 256 B params, 200 KB smem, 8 grid syncs             %6.2f\n", time_empty<256, 8>(st, sms, big, true));
}

int main(int argc, char** argv) {
    const char* mode = argc > 1 ? argv[1] : "all";
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);

    fmlp_desc d_big = make_desc(2, 0, {1024, 4096, 1024}, {FMLP_ACT_GELU_TANH, FMLP_ACT_IDENTITY}, {1, 1});
    fmlp_desc d_geglu = make_desc(2, 1, {768, 3072, 768}, {FMLP_ACT_GELU_TANH, FMLP_ACT_IDENTITY}, {0, 0, 0});
    int fails = 0;
    if (!strcmp(mode, "check") || !strcmp(mode, "all")) {
        fmlp_dtype dts[3] = {FMLP_BF16, FMLP_F16, FMLP_F32};
        fails += check_one("1024-4096-1024 gelu_tanh", d_big, FMLP_BF16, 1, st, 2);
        fails += check_one("1024-4096-1024 gelu_tanh", d_big, FMLP_BF16, 16, st, 2);
        fails += check_one("geglu 768-3072-768", d_geglu, FMLP_BF16, 64, st, 2);
        fmlp_desc d_odd = make_desc(3, 0, {37, 100, 13, 5}, {FMLP_ACT_GELU, FMLP_ACT_LEAKY_RELU, FMLP_ACT_SIGMOID}, {1, 0, 1}, 0.1f);
        fmlp_desc d_godd = make_desc(3, 1, {29, 70, 33, 19}, {FMLP_ACT_SILU, FMLP_ACT_TANH, FMLP_ACT_IDENTITY}, {1, 0, 1, 1});
        fmlp_desc d_deep = make_desc(5, 0, {64, 48, 96, 64, 32, 8},
                                     {FMLP_ACT_RELU, FMLP_ACT_TANH, FMLP_ACT_SIGMOID, FMLP_ACT_LEAKY_RELU, FMLP_ACT_GELU_TANH},
                                     {1, 1, 0, 1, 1});
        fmlp_desc d_one = make_desc(1, 0, {1024, 512}, {FMLP_ACT_IDENTITY}, {1});
        fmlp_desc d_k1000 = make_desc(2, 0, {1000, 2000, 1000}, {FMLP_ACT_SILU, FMLP_ACT_IDENTITY}, {1, 0});
        fmlp_desc d_swiglu = make_desc(2, 1, {520, 1400, 520}, {FMLP_ACT_SILU, FMLP_ACT_IDENTITY}, {1, 1, 1});
        int Ms[4] = {1, 3, 17, 64};
        for (int di = 0; di < 3; di++)
            for (int mi = 0; mi < 4; mi++) {
                fails += check_one("odd 37-100-13-5", d_odd, dts[di], Ms[mi], st, 1);
                fails += check_one("gated odd 29-70-33-19", d_godd, dts[di], Ms[mi], st, 1);
            }
        for (int di = 0; di < 3; di++) {
            fails += check_one("deep 5 layers", d_deep, dts[di], 64, st, 1);
            fails += check_one("single 1024-512 ident", d_one, dts[di], 33, st, 1);
            fails += check_one("1000-2000-1000 (K%8!=0)", d_k1000, dts[di], 8, st, 2);
            fails += check_one("swiglu 520-1400-520", d_swiglu, dts[di], 40, st, 1);
        }
        fails += check_one("geglu 768-3072-768", d_geglu, FMLP_F32, 64, st, 1); /* v2: one-region fallback */
        /* v5: shapes the lean kernel takes (rep 0; rep 1's misaligned x goes to v4) */
        fmlp_desc d_lean3 = make_desc(3, 0, {256, 512, 384, 256}, {FMLP_ACT_SILU, FMLP_ACT_RELU, FMLP_ACT_IDENTITY}, {1, 0, 1});
        fmlp_desc d_geglu_b = make_desc(2, 1, {768, 3072, 768}, {FMLP_ACT_GELU_TANH, FMLP_ACT_IDENTITY}, {1, 0, 1});
        fails += check_one("geglu 768-3072-768", d_geglu, FMLP_BF16, 1, st, 2);
        fails += check_one("geglu 768-3072-768", d_geglu, FMLP_BF16, 16, st, 2);
        fails += check_one("geglu bias 768-3072-768", d_geglu_b, FMLP_F16, 7, st, 2);
        fails += check_one("1024-4096-1024 gelu_tanh", d_big, FMLP_F16, 5, st, 2);
        /* regression (session 5): a gated layer with staged inputs was wrong when its unit's K
         * loop ran an odd number of trips (768 columns: 3); these pin down which shapes */
        fmlp_desc d_p768 = make_desc(2, 0, {768, 3072, 768}, {FMLP_ACT_GELU_TANH, FMLP_ACT_IDENTITY}, {0, 0});
        fmlp_desc d_g1024 = make_desc(2, 1, {1024, 4096, 1024}, {FMLP_ACT_GELU_TANH, FMLP_ACT_IDENTITY}, {0, 0, 0});
        fails += check_one("plain 768-3072-768", d_p768, FMLP_BF16, 1, st, 1);
        fails += check_one("gated 1024-4096-1024", d_g1024, FMLP_BF16, 1, st, 1);
        fmlp_desc d_g1024_3072 = make_desc(2, 1, {1024, 3072, 1024}, {FMLP_ACT_GELU_TANH, FMLP_ACT_IDENTITY}, {0, 0, 0});
        fmlp_desc d_g768_4096 = make_desc(2, 1, {768, 4096, 768}, {FMLP_ACT_GELU_TANH, FMLP_ACT_IDENTITY}, {0, 0, 0});
        fails += check_one("gated 1024-3072 (part tile)", d_g1024_3072, FMLP_BF16, 1, st, 1);
        fails += check_one("gated 768-4096 (KB=6)", d_g768_4096, FMLP_BF16, 1, st, 1);
        for (int M : {1, 13, 64}) {
            fails += check_one("lean 256-512-384-256", d_lean3, FMLP_BF16, M, st, 2);
            fails += check_one("lean 256-512-384-256", d_lean3, FMLP_F16, M, st, 1);
        }
        /* v2: slices of all 4 layers exceed shared memory in f32: two alternating regions */
        fmlp_desc d_ring = make_desc(4, 0, {1024, 2048, 1024, 2048, 1024},
                                     {FMLP_ACT_GELU_TANH, FMLP_ACT_RELU, FMLP_ACT_SILU, FMLP_ACT_IDENTITY}, {1, 1, 0, 1});
        fails += check_one("ring 1024-2048-1024-2048-1024", d_ring, FMLP_F32, 8, st, 1);
        fails += check_one("ring 1024-2048-1024-2048-1024", d_ring, FMLP_BF16, 64, st, 1);
        fmlp_desc d_big65 = d_big;
        fmlp_cuda_ctx ctx = make_ctx(st);
        const char* why;
        int sup = fmlp_small_m_supported(&d_big65, FMLP_BF16, 65, &ctx, &why);
        printf("M=65 supported=%d (%s)\n", sup, why);
        fmlp_desc d_huge = make_desc(2, 0, {4096, 16384, 4096}, {FMLP_ACT_GELU, FMLP_ACT_IDENTITY}, {1, 1});
        sup = fmlp_small_m_supported(&d_huge, FMLP_BF16, 16, &ctx, &why);
        printf("4096-16384-4096 bf16 M=16 supported=%d (%s)\n", sup, why);
        printf("CHECK %s (%d failures)\n", fails ? "FAILED" : "passed", fails);
    }
#ifdef FMLP_SM_PROF
    if (!strcmp(mode, "prof")) {
        for (int hot = 0; hot < 2; hot++) {
            prof_case("1024-4096-1024 gelu_tanh bias", d_big, 1, st, hot);
            prof_case("1024-4096-1024 gelu_tanh bias", d_big, 16, st, hot);
            prof_case("geglu 768-3072-768 nobias", d_geglu, 64, st, hot);
        }
    }
#endif
    if (!strcmp(mode, "launch")) launch_costs(st);
    if (!strcmp(mode, "ncu")) {
        /* plain launches of one case (argv[2]: 0 = M=1, 1 = M=16, 2 = GeGLU M=64), hot weights:
         * for ncu --launch-skip 2 --launch-count 1 (no graph, no timing) */
        const int c = argc > 2 ? atoi(argv[2]) : 0;
        const fmlp_desc& d = c == 2 ? d_geglu : d_big;
        const int M = c == 0 ? 1 : c == 1 ? 16 : 64;
        fmlp_cuda_ctx ctx = make_ctx(st);
        Mlp m;
        mlp_init(m, d, FMLP_BF16, 1);
        RunBufs bu = run_bufs(d, FMLP_BF16, M, ctx);
        fmlp_status stt;
        for (int i = 0; i < 5; i++) {
            fmlp_params p = mlp_params(m, 0);
            if (fmlp_forward_small_m_cuda(&d, FMLP_BF16, M, bu.x, &p, bu.out, NULL, bu.ws, &ctx, &stt)) { printf("fail %s\n", stt.msg); exit(1); }
        }
        CK(cudaStreamSynchronize(st));
        free_bufs(bu);
        mlp_free(m);
    }
    if (!strcmp(mode, "time") || !strcmp(mode, "all")) {
        double bw = copy_bandwidth(st);
        printf("copy bandwidth (read+write): %.0f GB/s\n", bw / 1e9);
        struct { const char* name; fmlp_desc* d; int M; } cases[3] = {
            {"1024-4096-1024 gelu_tanh bias", &d_big, 1},
            {"1024-4096-1024 gelu_tanh bias", &d_big, 16},
            {"geglu 768-3072-768 nobias", &d_geglu, 64}};
        char table[4096];
        int tl = 0;
        tl += snprintf(table + tl, sizeof table - tl, "%-32s %3s %9s %9s %9s %7s %7s\n", "case", "M", "floor_us",
                       "cold_us", "hot_us", "cold/fl", "hot/fl");
        for (int c = 0; c < 3; c++) {
            size_t wb = 0;
            for (int k = 0; k < fmlp_n_weights(cases[c].d); k++) {
                int64_t o, i;
                fmlp_weight_shape(cases[c].d, k, &o, &i);
                wb += (size_t)o * i * 2;
            }
            double floor_us = wb / bw * 1e6;
            double cold = time_graph(*cases[c].d, FMLP_BF16, cases[c].M, st, 6, 12);
            double hot = time_graph(*cases[c].d, FMLP_BF16, cases[c].M, st, 1, 12);
            double cold2 = time_graph(*cases[c].d, FMLP_BF16, cases[c].M, st, 6, 12); /* spread */
            printf("%s M=%d cold %.2f / %.2f (repeat) hot %.2f us\n", cases[c].name, cases[c].M, cold, cold2, hot);
            tl += snprintf(table + tl, sizeof table - tl, "%-32s %3d %9.2f %9.2f %9.2f %7.2f %7.2f\n", cases[c].name,
                           cases[c].M, floor_us, cold, hot, cold / floor_us, hot / floor_us);
        }
        { /* the memset node alone: graph of 12 4-byte memsets */
            void* dws;
            CK(cudaMalloc(&dws, 256));
            const double us = graph_us_per_call(st, 12, [&](int) { CK(cudaMemsetAsync(dws, 0, 4, st)); });
            tl += snprintf(table + tl, sizeof table - tl, "memset node alone (per forward): %.2f us\n", us);
            cudaFree(dws);
        }
        printf("weight bytes: 1024-4096-1024 %.1f MB, geglu %.1f MB; floor = bytes / copy bandwidth (%.0f GB/s)\n",
               2.0 * 1024 * 4096 * 2 / 1e6, 3.0 * 768 * 3072 * 2 / 1e6, bw / 1e9);
        printf("%s", table);
    }
    return fails != 0;
}
