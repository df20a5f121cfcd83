/* fmlp_narrow.cu — the narrow forward: a whole plain MLP whose weights fit in one block's
 * shared memory (every width <= 256), computed on chip in ONE launch, any M. CUDA C.
 *
 * Regime: narrow and deep stacks (neural fields, small policies, the sweep's 64-wide 5-layer
 * ReLU). Eager runs a GEMM, a bias and an activation kernel per layer; at these widths each
 * is a few microseconds of launch and latency, and cuBLAS picks split-K kernels for fp32 at
 * M = 64-256 that cost ~13 µs per layer (dev/diag/cublas_f32_small.py). Here each block
 * copies every layer's weights and biases into shared memory once (fp32, zero-padded), then
 * walks its row tiles: x tile -> shared, every layer shared -> shared, the last layer's
 * tile -> out. Nothing but x and out touches global memory per row.
 *
 * Per layer (out N, in K) and row tile (TM = 16, 32 or 64 rows): each thread owns TM/16
 * rows x 4 columns (nw_layer), K in steps of 4: 16-byte loads of its h rows and 4 W rows
 * per 16 FFMA a row. Row strides are = 4 (mod 32) floats, so the 16-byte loads of
 * consecutive rows fall in distinct banks. Float32 accumulation (no TF32); each layer's
 * output is rounded to the dtype, as the unfused stack stores it, then kept in shared
 * memory as float32.
 *
 * Inference only (no saved tensors) and plain layers (not gated); fmlp_narrow_supported
 * says why a call does not fit. No workspace, no grid synchronisation, graph-safe.
 */
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../fmlp_activation.h"
#include "../fmlp_cuda.h"
#include "fmlp_cuda_common.cuh"

#define NW_THREADS 256
#define NW_MAX_WIDTH 256
#define NW_MAX_LAYERS 16

typedef struct {
    const void* w[NW_MAX_LAYERS];
    const void* b[NW_MAX_LAYERS]; /* NULL: no bias */
    int N[NW_MAX_LAYERS], K[NW_MAX_LAYERS];
    int Np[NW_MAX_LAYERS];        /* N rounded up to 4: the thread tiles' columns        */
    int ws[NW_MAX_LAYERS];        /* shared row stride of W (floats, = 4 mod 32, >= K)   */
    int w_off[NW_MAX_LAYERS];     /* float offsets in shared memory                      */
    int b_off[NW_MAX_LAYERS];
    int act[NW_MAX_LAYERS];
    int h_off[2];                 /* the two activation tiles, TM rows of hs floats      */
    int hs;
    int nb;                       /* floats of the bias region [b_0 | b_1 ...] at offset 0 */
    int vec;                      /* every K % 4 == 0 and weights 4-element aligned: 4-wide fill */
    int L, ntiles;
    int64_t M;
    const void* x;
    void* out;
    float slope;
} nw_params;

/* One layer for one row tile: hout[r][n] = round_T(act(b[n] + sum_k hin[r][k] W[n][k])),
 * r < rows, n < Np (columns past N come out as act(0): finite, and met by zero weights).
 * Thread t: rows rg + 16q (q < RM = TM/16, rg = t % 16), columns cg + j*NC (cg = t / 16,
 * NC = Np / 4): a warp's h loads are 16 consecutive rows and its W loads 2 rows (row strides
 * = 4 mod 32 floats: distinct banks). Row groups past the tile's last row are skipped (a
 * row depends only on the same row of the layer input). */
template <typename T, int TM>
static __device__ __forceinline__ void nw_layer(const nw_params& P, int i, const float* sm, const float* hin, float* hout,
                                                int rows) {
    constexpr int RM = TM / 16;
    const float* W = sm + P.w_off[i];
    const float* bias = sm + P.b_off[i];
    const int NC = P.Np[i] / 4, K = P.K[i], ws = P.ws[i], hs = P.hs, act = P.act[i];
    const int Kp = (K + 3) & ~3;
    const int tiles = 16 * NC;
    for (int t = threadIdx.x; t < tiles; t += NW_THREADS) {
        const int rg = t & 15, cg = t >> 4;
        if (rg >= rows) continue;
        float acc[RM][4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const float bj = bias[cg + j * NC];
#pragma unroll
            for (int q = 0; q < RM; q++) acc[q][j] = bj;
        }
        const float* hrow = hin + rg * hs;
        const float* wrow = W + cg * ws;
#pragma unroll 2
        for (int k = 0; k < Kp; k += 4) {
            float4 h[RM], w[4];
#pragma unroll
            for (int q = 0; q < RM; q++) h[q] = *(const float4*)(hrow + q * 16 * hs + k);
#pragma unroll
            for (int j = 0; j < 4; j++) w[j] = *(const float4*)(wrow + j * NC * ws + k);
#pragma unroll
            for (int q = 0; q < RM; q++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    acc[q][j] = fmaf(h[q].x, w[j].x, acc[q][j]);
                    acc[q][j] = fmaf(h[q].y, w[j].y, acc[q][j]);
                    acc[q][j] = fmaf(h[q].z, w[j].z, acc[q][j]);
                    acc[q][j] = fmaf(h[q].w, w[j].w, acc[q][j]);
                }
        }
#pragma unroll
        for (int q = 0; q < RM; q++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                hout[(rg + q * 16) * hs + cg + j * NC] = fmlp_to_f32(fmlp_from_f32<T>(fmlp_act(act, acc[q][j], P.slope)));
    }
}

/* Global -> shared fp32 copies with DEPTH loads in flight per thread: the addresses first
 * (src_of(e, &ok); a valid dummy address where !ok), then all DEPTH loads unconditionally
 * back to back, then the stores (a load-convert-store loop waits one memory round trip per
 * element: ~5 us per 64x64 layer, measured). Destination elements [0, n). */
template <typename T, int DEPTH, typename F>
static __device__ __forceinline__ void nw_fill(float* dst, int n, F src_of) {
    for (int base = 0; base < n; base += DEPTH * NW_THREADS) {
        const T* src[DEPTH];
        bool ok[DEPTH];
#pragma unroll
        for (int u = 0; u < DEPTH; u++) src[u] = src_of(base + u * NW_THREADS + (int)threadIdx.x, &ok[u]);
        T raw[DEPTH];
#pragma unroll
        for (int u = 0; u < DEPTH; u++) raw[u] = *src[u];
#pragma unroll
        for (int u = 0; u < DEPTH; u++) {
            const int e = base + u * NW_THREADS + (int)threadIdx.x;
            if (e < n) dst[e] = ok[u] ? fmlp_to_f32(raw[u]) : 0.f;
        }
    }
}

/* The same, 4 consecutive elements per load (8 or 16 bytes; src 4-element aligned):
 * destination float4 slots [0, n4). */
template <typename T, int DEPTH, typename F>
static __device__ __forceinline__ void nw_fill4(float* dst, int n4, F src_of) {
    typedef struct alignas(4 * sizeof(T)) { T v[4]; } quad;
    for (int base = 0; base < n4; base += DEPTH * NW_THREADS) {
        const quad* src[DEPTH];
        bool ok[DEPTH];
#pragma unroll
        for (int u = 0; u < DEPTH; u++) src[u] = (const quad*)src_of(base + u * NW_THREADS + (int)threadIdx.x, &ok[u]);
        quad raw[DEPTH];
#pragma unroll
        for (int u = 0; u < DEPTH; u++) raw[u] = *src[u];
#pragma unroll
        for (int u = 0; u < DEPTH; u++) {
            const int e = base + u * NW_THREADS + (int)threadIdx.x;
            if (e < n4)
                ((float4*)dst)[e] = ok[u] ? make_float4(fmlp_to_f32(raw[u].v[0]), fmlp_to_f32(raw[u].v[1]),
                                                        fmlp_to_f32(raw[u].v[2]), fmlp_to_f32(raw[u].v[3]))
                                          : make_float4(0.f, 0.f, 0.f, 0.f);
        }
    }
}

/* e / d for 0 <= e < 2^16 (shared memory offsets in floats) and d >= 1 with one float multiply:
 * the float error, below (e/d) 2^-22 < 2^-6 / d, stays under the 1 / (2d) distance between
 * (e + 0.5) / d and an integer. */
static __device__ __forceinline__ int nw_div(int e, float inv_d) { return (int)(((float)e + 0.5f) * inv_d); }

template <typename T, int TM>
__global__ void __launch_bounds__(NW_THREADS) fmlp_narrow_kernel(const __grid_constant__ nw_params P) {
    extern __shared__ __align__(16) float sm[];
    const int tid = threadIdx.x;
    /* biases -> shared fp32 [b_0 | b_1 ...] (Np each, zero past N), then every layer's
     * weights [w_0 | w_1 ...] (Np rows of ws, zero past N and K): each region one flat fill
     * with all layers' loads in flight. A thread's elements increase, so its layer index
     * only moves forward. */
    const T* dummy = (const T*)P.w[0];
    {
        int li = 0;
        nw_fill<T, 16>(sm, P.nb, [&](int e, bool* ok) -> const T* {
            while (li + 1 < P.L && e >= P.b_off[li + 1]) li++;
            const int n = e - P.b_off[li];
            *ok = P.b[li] != NULL && n < P.N[li];
            return *ok ? (const T*)P.b[li] + n : dummy;
        });
    }
    {
        int li = 0;
        auto weight_of = [&](int e, bool* ok) -> const T* { /* e: float offset in shared memory */
            while (li + 1 < P.L && e >= P.w_off[li + 1]) li++;
            const int o = e - P.w_off[li], ws = P.ws[li];
            const int n = nw_div(o, 1.0f / (float)ws), k = o - n * ws;
            *ok = n < P.N[li] && k < P.K[li];
            return *ok ? (const T*)P.w[li] + (size_t)n * P.K[li] + k : dummy;
        };
        const int nw = P.h_off[0] - P.w_off[0];
        if (P.vec) /* 4 elements per load: every K % 4 == 0, so no 4-chunk straddles K */
            nw_fill4<T, 16>(sm + P.w_off[0], nw / 4, [&](int e4, bool* ok) { return weight_of(P.w_off[0] + 4 * e4, ok); });
        else
            nw_fill<T, 32>(sm + P.w_off[0], nw, [&](int e, bool* ok) { return weight_of(P.w_off[0] + e, ok); });
    }
    const int K0 = P.K[0], L = P.L, hs = P.hs;
    const int NL = P.N[L - 1];
    const T* x = (const T*)P.x;
    T* out = (T*)P.out;
    for (int tile = blockIdx.x; tile < P.ntiles; tile += gridDim.x) {
        const int64_t r0 = (int64_t)tile * TM;
        const int rows = (int)(P.M - r0 < TM ? P.M - r0 : TM);
        float* h0 = sm + P.h_off[0];
        __syncthreads(); /* weights stored (first tile); the previous tile's output read */
        /* x tile -> h0 (rows of hs floats; zero past the last row and past K) */
        const float inv_hs = 1.0f / (float)hs;
        nw_fill<T, 16>(h0, TM * hs, [&](int e, bool* ok) -> const T* {
            const int r = nw_div(e, inv_hs), k = e - r * hs;
            *ok = r < rows && k < K0;
            return *ok ? x + (r0 + r) * K0 + k : x;
        });
        for (int i = 0; i < L; i++) {
            __syncthreads();
            nw_layer<T, TM>(P, i, sm, sm + P.h_off[i & 1], sm + P.h_off[(i + 1) & 1], rows);
        }
        __syncthreads();
        const float* hl = sm + P.h_off[L & 1];
        for (int e = tid; e < rows * NL; e += NW_THREADS) {
            const int r = e / NL, n = e - r * NL;
            out[(r0 + r) * NL + n] = fmlp_from_f32<T>(hl[r * hs + n]);
        }
    }
}

/* ---- host: plan, support, launch ------------------------------------------------- */

typedef struct {
    int TM;
    size_t smem;
} nw_plan;

static int nw_round4mod32(int n) { return (n + 31) / 32 * 32 + 4; } /* >= n, = 4 (mod 32) */

/* Fills the layout of P for TM rows per tile; returns the shared memory bytes:
 * [biases | weights (16-byte aligned) | h tile 0 | h tile 1]. */
static size_t nw_layout(const fmlp_desc* d, int TM, nw_params* P) {
    size_t off = 0;
    int wmax = 0;
    for (int i = 0; i < d->n_layers; i++) {
        const int N = (int)d->width[i + 1], K = (int)d->width[i];
        P->N[i] = N;
        P->K[i] = K;
        P->Np[i] = (N + 3) & ~3;
        P->ws[i] = nw_round4mod32(K);
        P->act[i] = d->act[i];
        P->b_off[i] = (int)off;
        off += (size_t)P->Np[i];
        wmax = K > wmax ? K : wmax;
        wmax = P->Np[i] > wmax ? P->Np[i] : wmax;
    }
    P->nb = (int)off;
    off = (off + 3) & ~(size_t)3;
    for (int i = 0; i < d->n_layers; i++) {
        P->w_off[i] = (int)off;
        off += (size_t)P->Np[i] * P->ws[i];
    }
    P->hs = nw_round4mod32(wmax);
    P->h_off[0] = (int)off;
    off += (size_t)TM * P->hs;
    P->h_off[1] = (int)off;
    off += (size_t)TM * P->hs;
    P->L = d->n_layers;
    P->slope = d->negative_slope;
    return off * sizeof(float);
}

/* TM: 16 rows while that leaves SMs idle, 32, then 64 (more rows per block read the weights
 * into shared memory fewer times); the largest that fits. NULL, or why not supported. */
static const char* nw_check(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx, nw_plan* pl,
                            nw_params* P) {
    (void)dt;
    if (d->gated) return "narrow kernel: plain layers only (not gated)";
    if (d->n_layers > NW_MAX_LAYERS) return "narrow kernel: at most 16 layers";
    if (M > (int64_t)INT32_MAX) return "narrow kernel: M < 2^31";
    for (int i = 0; i <= d->n_layers; i++)
        if (d->width[i] > NW_MAX_WIDTH) return "narrow kernel: every width <= 256";
    const int optin = fmlp_optin_smem(ctx->device);
    if (optin <= 0) return "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin) failed";
    const int64_t sms = ctx->sm_count > 0 ? ctx->sm_count : 1;
    int want = M <= 16 * sms ? 16 : M <= 32 * sms ? 32 : 64;
    for (int TM = want; TM >= 16; TM /= 2) {
        nw_params tmp;
        memset(&tmp, 0, sizeof tmp);
        const size_t smem = nw_layout(d, TM, &tmp);
        if (smem <= (size_t)optin) {
            pl->TM = TM;
            pl->smem = smem;
            if (P) *P = tmp;
            return NULL;
        }
    }
    return "narrow kernel: the weights (as float32) and two 16-row tiles do not fit in shared memory";
}

extern "C" int fmlp_narrow_supported(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx,
                                     const char** why) {
    nw_plan pl;
    const char* w = nw_check(d, dt, M, ctx, &pl, NULL);
    if (why) *why = w ? w : "narrow: every layer on chip in one launch";
    return w == NULL;
}

template <typename T, int TM>
static int nw_launch(const nw_params& P, const nw_plan& pl, int grid, int dev, cudaStream_t s, fmlp_status* st) {
    static size_t allowed[FMLP_CUDA_MAX_DEV]; /* dynamic shared memory already allowed, per device */
    cudaError_t e = fmlp_allow_smem((const void*)fmlp_narrow_kernel<T, TM>, pl.smem, dev, allowed);
    if (e != cudaSuccess) return fmlp_cuda_check(e, st, "narrow: cudaFuncSetAttribute");
    fmlp_narrow_kernel<T, TM><<<grid, NW_THREADS, pl.smem, s>>>(P);
    return fmlp_cuda_check(cudaGetLastError(), st, "narrow: kernel launch");
}

extern "C" int fmlp_forward_narrow_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x,
                                        const fmlp_params* p, void* out, const fmlp_cuda_ctx* ctx,
                                        fmlp_status* st) {
    nw_plan pl;
    nw_params P;
    memset(&P, 0, sizeof P);
    const char* why = nw_check(d, dt, M, ctx, &pl, &P);
    if (why) return fmlp_fail(st, FMLP_ERR_UNSUPPORTED, "%s", why);
    if (M == 0) return FMLP_OK;
    const size_t es = fmlp_dtype_size(dt);
    P.vec = 1;
    for (int i = 0; i < d->n_layers; i++) {
        P.w[i] = p->w[i];
        P.b[i] = d->has_bias[i] ? p->b[i] : NULL;
        if (P.K[i] % 4 || (uintptr_t)p->w[i] % (4 * es)) P.vec = 0;
    }
    P.M = M;
    P.x = x;
    P.out = out;
    P.ntiles = (int)((M + pl.TM - 1) / pl.TM);
    const int grid = P.ntiles < ctx->sm_count ? P.ntiles : ctx->sm_count;
    cudaStream_t s = (cudaStream_t)ctx->stream;
    int rc = FMLP_OK;
    FMLP_DISPATCH_DTYPE(dt, {
        if (pl.TM == 16) rc = nw_launch<T, 16>(P, pl, grid, ctx->device, s, st);
        else if (pl.TM == 32) rc = nw_launch<T, 32>(P, pl, grid, ctx->device, s, st);
        else rc = nw_launch<T, 64>(P, pl, grid, ctx->device, s, st);
    });
    return rc;
}
