/* fmlp_dispatch.c — the CUDA dispatcher: which strategy runs a call, and why.
 *
 * All the rules live in fmlp_cuda_plan below, each with the measurement behind it
 * (bench/RESULTS.md, NOTES.md). The entry points fmlp_forward_cuda / fmlp_backward_cuda
 * (fmlp_cuda.h) plan, size the workspace the same way, make ctx->device current, and
 * run the chosen strategy. */
#include <cuda_runtime_api.h>
#include "../fmlp_cuda.h"
#include "fmlp_gemm_path.h"

static const char* NAMES[FMLP_STRATEGY_COUNT] = {"auto", "gemm", "small_m", "narrow", "skinny"};

const char* fmlp_strategy_name(int s) { return (s >= 0 && s < FMLP_STRATEGY_COUNT) ? NAMES[s] : "unknown"; }

int fmlp_cuda_ctx_init(fmlp_cuda_ctx* ctx, fmlp_status* st) {
    static int cached_sm[64], cached_major[64], cached_minor[64];
    int dev = ctx->device;
    if (dev < 0 || dev >= 64) return fmlp_fail(st, FMLP_ERR_INVALID, "CUDA device index %d out of range", dev);
    if (!cached_sm[dev]) {
        if (cudaDeviceGetAttribute(&cached_major[dev], cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&cached_minor[dev], cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&cached_sm[dev], cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
            cached_sm[dev] = 0;
            return fmlp_fail(st, FMLP_ERR_BACKEND, "cannot query CUDA device %d", dev);
        }
    }
    ctx->sm_count = cached_sm[dev];
    ctx->cc_major = cached_major[dev];
    ctx->cc_minor = cached_minor[dev];
    if (ctx->cc_major < 8)
        return fmlp_fail(st, FMLP_ERR_UNSUPPORTED,
                         "CUDA device %d has compute capability %d.%d; fused_mlp's kernels need 8.0 or newer "
                         "(A100, H100, H200, ...)", dev, ctx->cc_major, ctx->cc_minor);
    return FMLP_OK;
}

/* Where the narrow kernel beats cuBLAS + our epilogues (inference). H100, graph replay, µs,
 * eager / narrow (dev/diag/narrow_sweep.py, NOTES.md "CUDA narrow kernel"): float32 at
 * 16 < M <= 384 cuBLAS runs split-K kernels (sgemm_largek + epilogue + scal + memset) at these
 * widths, ~13 µs a layer: 64x5 M=17..384 70.8-78.6 / 20.5-20.9 (3.4-3.8x), M=512/1024 25.0 /
 * 20.8 (1.2x); 32x5 M=17..1024 69.8-79.6 / 13.4 (5.2-5.9x); 100x3 M<=200 51-57 / 27.5 (1.9x),
 * M>=256 17.8 / 28.0 (0.64x); 128x3 M=64 46.6 / 34.1, M=256 18.4 / 37.3. Where cuBLAS is
 * fast the FFMA kernel loses: M <= 16 (64x5 M=1: 17.4 / 20.1), large M (64x5 M=8192: 34.9 /
 * 35.4) and every bf16 row (64x5 M=64: 18.8 / 22.5; tensor cores). */
static int fmlp_narrow_wins(const fmlp_desc* d, fmlp_dtype dt, int64_t M) {
    int64_t wmax = 0;
    for (int i = 0; i <= d->n_layers; i++) wmax = d->width[i] > wmax ? d->width[i] : wmax;
    if (dt != FMLP_F32 || M <= 16) return 0;
    return wmax <= 64 ? M <= 1024 : wmax <= 128 ? M <= 128 : 0;
}

/* Where the skinny kernel measured fastest (the tables in fmlp_cuda_plan): M <= 16 (its
 * register kernel), and on sm_90, inference, 16 < M <= 64 for a gated first layer or
 * 16 < M <= 32 for plain layers (its staged tile kernel). */
static int skinny_wins(const fmlp_desc* d, fmlp_dtype dt, int64_t M, int save, const fmlp_cuda_ctx* ctx) {
    if (dt == FMLP_F32 || M > 64 || d->n_layers > 2) return 0;
    if (M > 16 && (ctx->cc_major < 9 || save || (!d->gated && M > 32))) return 0;
    double bytes = 0;
    for (int k = 0; k < fmlp_n_weights(d); k++) {
        int64_t out, in;
        fmlp_weight_shape(d, k, &out, &in);
        bytes += (double)out * (double)in * 2.0;
    }
    return bytes <= 32e6;
}

/* The rules. */
int fmlp_cuda_plan(const fmlp_desc* d, fmlp_dtype dt, int64_t M, int save, int backward,
                   const fmlp_cuda_ctx* ctx, const char** why) {
    const char* small_why = "";
    int small_ok = !backward && fmlp_small_m_supported(d, dt, M, ctx, &small_why);
    if (ctx->force_strategy == FMLP_STRATEGY_SMALL_M && small_ok) {
        *why = "forced: FUSED_MLP_STRATEGY=small_m";
        return FMLP_STRATEGY_SMALL_M;
    }
    /* the support check (a shared-memory layout) only where narrow is forced or would win */
    const int narrow_ok = !backward && !save &&
                          (ctx->force_strategy == FMLP_STRATEGY_NARROW || fmlp_narrow_wins(d, dt, M)) &&
                          fmlp_narrow_supported(d, dt, M, ctx, NULL);
    if (ctx->force_strategy == FMLP_STRATEGY_NARROW && narrow_ok) {
        *why = "forced: FUSED_MLP_STRATEGY=narrow";
        return FMLP_STRATEGY_NARROW;
    }
    if (ctx->force_strategy == FMLP_STRATEGY_SKINNY && !backward &&
        fmlp_skinny_supported(d, dt, M, ctx, NULL)) {
        *why = "forced: FUSED_MLP_STRATEGY=skinny";
        return FMLP_STRATEGY_SKINNY;
    }
    if (ctx->force_strategy == FMLP_STRATEGY_GEMM) {
        *why = "forced: FUSED_MLP_STRATEGY=gemm";
        return FMLP_STRATEGY_GEMM;
    }
    if (backward) {
        *why = "backward: cuBLAS GEMMs for dW and dx, fused activation-backward and bias-gradient passes";
        return FMLP_STRATEGY_GEMM;
    }
    /* Single launch vs cuBLAS at small M (H100, bf16; graph = GPU time in CUDA-graph
     * replay, loop = wall time per call of a Python loop; bench/RESULTS.md, session 7, lean
     * kernel v5 at M <= 16, v4 at 64):
     *   1024-4096-1024 M=1:  small_m 10.2 / gemm 13.6 us graph;  20 / 62 us loop  -> small_m
     *   1024-4096-1024 M=16: small_m 13.6 / gemm 13.9 us graph;  20 / 62 us loop
     *   GeGLU 768/3072 M=64: small_m 33.1 / gemm 17.5 us graph;  33 / 72 us loop
     * (eager: 13.4, 13.7, 18.0 us graph; 59, 60, 86 us loop; an earlier run the same day, on a
     * host twice as slow, measured the same GPU times and loops of 35 / 122, 35 / 113, 33 / 114;
     * session 5 measured the same GPU times). Session 3 (v3) measured
     * 13.6 / 14.7, 17.2 / 15.3 and 30.7 / 18.6 us graph: the rules below date from then. At
     * M = 16 under capture the lean kernel is now level with cuBLAS, but only for shapes it
     * takes (x 16-byte aligned among others, unknown here), so capture keeps cuBLAS. At one row small_m
     * wins both measures. Up to 16 rows it wins the loop by 3x (one launch instead of ~6:
     * the host is the bottleneck there) and its GPU time is level with eager's, so it is
     * used when the stream is not being captured; under capture only GPU time counts and
     * cuBLAS wins. At 64 rows its GPU time is 1.8x eager's: a loop that is GPU-bound would
     * lose, so cuBLAS. At M = 1 it lost in float32 (FFMA: 22.9 vs eager 14.7 us) and with 5
     * layers (5 grid barriers: 21.4 vs 19.0 us), so: 16-bit, at most two layers. And only
     * for inference: in a training step (forward saving for backward, then the backward),
     * graph replay at M = 1 measured 90.8 / 97.7 us with small_m vs 84.3 / 86.3 with cuBLAS
     * (eager 83.8 / 84.2; 1024-4096-1024 / GeGLU; dev/cuda/small_m/train_m1.py), though its
     * forward alone is as fast (14.6 / 14.9 vs 14.8 / 17.4 us). */
    if (narrow_ok) { /* not forced here, so fmlp_narrow_wins holds */
        *why = "narrow widths, float32, 16 < M <= 1024, inference: every layer on chip in one launch, where cuBLAS "
               "runs split-K kernels (NOTES.md \"CUDA narrow kernel\")";
        return FMLP_STRATEGY_NARROW;
    }
    /* Skinny vs single launch vs cuBLAS at M <= 16 (H100, bf16, GPU time per forward in graph
     * replay, µs; python dev/diag/skinny_sweep.py, session 8; eager / gemm / small_m / skinny):
     *   GeGLU 768/3072  M=1:  17.3 / 16.8 / 10.9 / 10.0     M=16: 17.7 / 16.7 / 14.2 / 11.8
     *   1024-4096-1024  M=1:  13.3 / 13.7 / 10.3 / 10.3     M=16: 14.0 / 14.3 / 13.8 / 13.6
     * and it loses with 5 layers (narrow64x5 M=16: 17.8 / 18.0 / 24.5 / 22.6: a launch and a
     * latency chain per layer), with weights far past L2 (SwiGLU 4096/14336, 352 MB, M=1:
     * 133.8 / 133.3 / 134.1 / 140.9) and at M >= 32 (GeGLU M=32: 17.6 / 17.2 / 22.0 / 16.1, M=64
     * 18.6 / 17.4 / 33.3 / 21.6: one warp per scheduler waits out each load batch in turn).
     * In a training step (its forward saves z; the backward is cuBLAS's either way), fwd+bwd:
     *   GeGLU M=1: 81.9 / 73.7 / 66.7 / 66.4    M=16: 80.1 / 82.1 / 77.8 / 75.2
     *   1024-4096-1024 M=1: 81.0 / 70.0 / 66.2 / 67.0    M=16: 79.7 / 77.4 / 75.4 / 77.1
     * (dev/diag/skinny_sweep.py --train). It needs no shapes the plan cannot see (any
     * alignment), so CUDA-graph capture takes it. But called from a Python loop, where the host
     * is the bottleneck, the single launch costs less host time than two launches: 1024-4096-1024
     * M=1 loop 17.2 (small_m) / 19.2 (skinny) / 53.7 (gemm) / 52.1 (eager) µs per call, M=16
     * 16.4 / 18.4 / 51.3 / 50.2 (python bench/gpu_sweep.py --skip-sweep, session 8). So: outside
     * capture, inference, the single launch where it applies; else the skinny kernel.
     * At 16 < M <= 64 on sm_90 the skinny strategy runs its staged tile kernel (TMA, K split over
     * a cluster; fmlp_skinny_tile.cu). Session 9, graph replay µs, eager / gemm / small_m / skinny
     * (python dev/diag/skinny_sweep.py --models geglu-768-3072 mlp-1024-4096-gelu_tanh --ms 17 32 48 64):
     *   GeGLU 768/3072  M=17: 17.4 / 16.9 / 15.4 / 13.8   M=32: 17.9 / 16.6 / 22.2 / 13.2
     *                   M=48: 17.7 / 17.4 / 31.7 / 15.5   M=64: 18.3 / 17.1 / 33.6 / 14.9
     *   1024-4096-1024  M=17: 13.3 / 13.8 / 15.2 / 13.6   M=32: 13.9 / 14.2 / 22.3 / 14.0
     *                   M=48: 15.4 / 15.7 / 30.8 / 20.4   M=64: 15.2 / 15.5 / 33.6 / 20.4
     * so for a gated first layer only (plain layers: level at M <= 32, slower above), inference
     * only (not measured in training). A first layer whose x is not 16-byte aligned (unknown
     * here) runs the register kernel instead, slower than cuBLAS at M = 64 (21.5 vs 17.4).
     * Session 11 (dependent layers placed one per SM where they cannot share one with the layer
     * before, the maximum shared carveout; NOTES "v8"), same command, eager / gemm / skinny:
     *   GeGLU 768/3072  M=17: 17.7 / 16.6 / 11.2   M=32: 18.1 / 16.5 / 10.6
     *                   M=48: 17.9 / 17.1 / 13.3   M=64: 18.5 / 16.8 / 13.0
     *   1024-4096-1024  M=17: 13.6 / 13.7 / 13.4   M=32: 14.2 / 14.2 / 13.6
     *                   M=48: 15.5 / 15.4 / 19.1   M=64: 15.3 / 15.4 / 18.8
     * so plain layers take it too up to M = 32.
     * Session 12 (M <= 16: plain layers that would split K run 8-row blocks, no split; gelu_tanh
     * with tanh.approx; NOTES "v9"), same command at M = 1 / 8 / 16, eager / gemm / small_m / skinny:
     *   GeGLU 768/3072  M=1: 17.0 / 16.1 / 10.7 / 9.9   M=8: 17.2 / 15.7 / 11.2 / 10.7   M=16: 17.0 / 16.0 / 13.9 / 11.3
     *   1024-4096-1024  M=1: 13.4 / 13.1 /  9.8 / 9.5   M=8: 13.0 / 13.0 / 11.0 / 11.2   M=16: 13.5 / 13.6 / 13.5 / 13.1
     * (the rules above stand: outside capture the single launch's lower host time wins). */
    const int small_fits = small_ok && !save && dt != FMLP_F32 && d->n_layers <= 2;
    if (small_fits && M <= 16 && !ctx->capturing) {
        *why = "M <= 16, 16-bit, <= 2 layers, inference, not in CUDA-graph capture: one launch for all layers "
               "(measured: the least host time per call, GPU time level with the skinny kernel)";
        return FMLP_STRATEGY_SMALL_M;
    }
    if (skinny_wins(d, dt, M, save, ctx) && fmlp_skinny_supported(d, dt, M, ctx, NULL)) {
        *why = M > 16 ? "16 < M <= 64 with a gated first layer (plain: M <= 32), 16-bit, <= 2 layers, weights <= "
                        "32 MB, sm_90, inference: one staged tensor-core launch per layer (TMA, K split over a "
                        "cluster, PDL); measured the least GPU time"
                      : "M <= 16, 16-bit, <= 2 layers, weights <= 32 MB, in CUDA-graph capture or a training forward: "
                        "one tensor-core launch per layer, weight streams overlapped (PDL); measured the least GPU time";
        return FMLP_STRATEGY_SKINNY;
    }
    if (small_fits && M == 1) {
        *why = "M = 1, 16-bit, <= 2 layers, inference: one launch for all layers (measured: GPU time level "
               "with cuBLAS, about half the host time)";
        return FMLP_STRATEGY_SMALL_M;
    }
    *why = M <= 64 ? "small M, but the single-launch kernel loses GPU time to cuBLAS here (training forward, "
                     "CUDA-graph capture, M > 16, float32 or > 2 layers; NOTES.md): cuBLAS GEMMs with fused "
                     "bias/activation epilogues"
                   : "large M: compute-bound; cuBLAS GEMMs with fused bias/activation epilogues";
    (void)small_why;
    return FMLP_STRATEGY_GEMM;
}

size_t fmlp_forward_workspace_bytes_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, int save,
                                         const fmlp_cuda_ctx* ctx) {
    const char* why;
    const int s = fmlp_cuda_plan(d, dt, M, save, 0, ctx, &why);
    if (s == FMLP_STRATEGY_SMALL_M) return fmlp_small_m_workspace_bytes(d, dt, M, ctx);
    if (s == FMLP_STRATEGY_NARROW) return 0;
    if (s == FMLP_STRATEGY_SKINNY) return fmlp_skinny_workspace_bytes(d, dt, M, ctx);
    return fmlp_gemm_forward_ws(d, dt, M, save);
}

size_t fmlp_backward_workspace_bytes_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx) {
    (void)ctx;
    return fmlp_gemm_backward_ws(d, dt, M);
}

/* Runs with ctx->device current, restoring the caller's device after. */
typedef struct {
    int prev;
} device_guard;

static int guard_enter(device_guard* g, int dev, fmlp_status* st) {
    if (cudaGetDevice(&g->prev) != cudaSuccess) return fmlp_fail(st, FMLP_ERR_BACKEND, "cudaGetDevice failed");
    if (g->prev != dev && cudaSetDevice(dev) != cudaSuccess)
        return fmlp_fail(st, FMLP_ERR_BACKEND, "cudaSetDevice(%d) failed", dev);
    return FMLP_OK;
}

static void guard_exit(const device_guard* g, int dev) {
    if (g->prev != dev) cudaSetDevice(g->prev);
}

int fmlp_forward_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x, const fmlp_params* p, void* out,
                      void* const* saved, void* ws, const fmlp_cuda_ctx* ctx, fmlp_status* st) {
    const char* why;
    int strategy = fmlp_cuda_plan(d, dt, M, saved != NULL, 0, ctx, &why);
    device_guard g;
    int rc = guard_enter(&g, ctx->device, st);
    if (rc) return rc;
    if (strategy == FMLP_STRATEGY_SMALL_M) rc = fmlp_forward_small_m_cuda(d, dt, M, x, p, out, saved, ws, ctx, st);
    else if (strategy == FMLP_STRATEGY_NARROW) rc = fmlp_forward_narrow_cuda(d, dt, M, x, p, out, ctx, st);
    else if (strategy == FMLP_STRATEGY_SKINNY) rc = fmlp_forward_skinny_cuda(d, dt, M, x, p, out, saved, ws, ctx, st);
    else rc = fmlp_forward_gemm_cuda(d, dt, M, x, p, out, saved, ws, ctx, st);
    guard_exit(&g, ctx->device);
    return rc;
}

int fmlp_backward_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* dout, const void* x,
                       const void* const* saved, const fmlp_params* p, void* dx, const fmlp_grads* gr, void* ws,
                       const fmlp_cuda_ctx* ctx, fmlp_status* st) {
    device_guard g;
    int rc = guard_enter(&g, ctx->device, st);
    if (rc) return rc;
    rc = fmlp_backward_gemm_cuda(d, dt, M, dout, x, saved, p, dx, gr, ws, ctx, st);
    guard_exit(&g, ctx->device);
    return rc;
}
