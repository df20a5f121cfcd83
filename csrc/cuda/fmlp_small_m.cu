/* fmlp_small_m.cu — the single-launch small-M forward (M <= 64 rows), CUDA C.
 *
 * Regime: few tokens at transformer widths. The work is bound by reading the weights
 * from HBM once, so one persistent launch computes every layer: each layer's weights are
 * cut into equal pieces spread over all SMs, and the dependency between layers is a
 * software grid barrier (every block is resident: the grid is sized from the occupancy
 * query × ctx->sm_count).
 *
 * Per layer (out N, in K), with tokens as the MMA's N dimension ("swap A/B"):
 *   row tile   16 output rows (gated layer 0: 16 gate rows + the 16 matching up rows)
 *   piece      a group of FMLP_SM_WARPS row tiles × one K range ("split") of KR columns;
 *              block b takes pieces b, b + grid, ...; warp w owns tile w of the group
 *   per piece  the block stages h[:, split] (M × KR, dtype) in shared memory; each warp
 *              streams its 16 weight rows with 16-byte L1::no_allocate / L2 evict-first
 *              loads, two batches in flight, and multiplies with mma.sync m16n8k16
 *              (bf16/fp16: weights = A, h = B) or plain FFMA (float32, no TF32)
 *   split K    a split writes its fp32 partial tile to the workspace and bumps the tile's
 *              counter; the last split to arrive sums all partials in split order
 *              (deterministic), adds the bias, saves z, applies the activation (and the
 *              gate product) and writes h_{i+1} (dtype) for the next layer
 *   overlap    at the start of layer i the block prefetches its layer i+1 weight pieces
 *              into L2, so HBM keeps streaming through the barrier
 *
 * Status (H100, NOTES.md "CUDA small-M kernel"): correct for every dtype / activation /
 * width tested, but 3.4x the weight-streaming floor at M=1 and slower than eager torch in
 * graph replay: each layer is a chain of ~8 dependent memory round trips (staging, weight
 * batches, partial store + fence + counter, reduction, barrier). Not yet worth selecting
 * over the GEMM path; NOTES.md lists the next steps.
 *
 * Build: setup.py (nvcc -O3 ... -gencode sm_90a and sm_80). Tested and timed by
 * dev/cuda/small_m/bench_small_m.cu (CPU double reference, poisoned outputs,
 * CUDA-graph replay against the device copy bandwidth floor): dev/cuda/small_m/run.sh.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "fmlp.h"
#include "fmlp_activation.h"
#include "fmlp_cuda.h"

#define FMLP_SM_WARPS 8                     /* warps per block = row tiles per piece */
#define FMLP_SM_THREADS (FMLP_SM_WARPS * 32)
#define FMLP_SM_MAX_M 64

/* ========================================================================== */
/* Kernel parameters (passed by value; < 4 KB)                                */
/* ========================================================================== */

typedef struct {
    const void* w[2];   /* (N, K) weights: w[0] plain or gate, w[1] up (gated) — HBM  */
    const void* b[2];   /* (N,) biases or NULL                                        */
    void* save[2];      /* (M, N) saved pre-activations z (gate, up) or NULL          */
    const void* in;     /* (M, K) layer input h_i: x, or a workspace buffer (L2)      */
    void* out;          /* (M, N) layer output h_{i+1}: workspace buffer or `out`     */
    int N, K, act;
    int S, KR;          /* K splits, columns per split (multiple of 32)              */
    int T;              /* row tiles = ceil(N / 16)                                    */
    int wvec, hvec;     /* weights / input allow 16-byte loads                        */
    int prefetch;       /* prefetch this layer's pieces into L2 during the previous   */
    int cnt_off;        /* first tile counter of this layer in counters[]             */
} sm_layer;

typedef struct {
    sm_layer layer[FMLP_MAX_LAYERS];
    int L, M, gated;
    float slope;
    unsigned* counters; /* ws: [0, L) grid barriers, then tile counters; zeroed per call */
    float* partial;     /* ws: (T*S, NV, 32) fp32 partial tiles of the current layer     */
} sm_params;

/* ========================================================================== */
/* Device helpers                                                             */
/* ========================================================================== */

template <typename T> struct sm_type;
template <> struct sm_type<float> {
    static __device__ __forceinline__ float to_f(float v) { return v; }
    static __device__ __forceinline__ float from_f(float v) { return v; }
};
template <> struct sm_type<__nv_bfloat16> {
    static __device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
    static __device__ __forceinline__ __nv_bfloat16 from_f(float v) { return __float2bfloat16_rn(v); }
};
template <> struct sm_type<__half> {
    static __device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
    static __device__ __forceinline__ __half from_f(float v) { return __float2half_rn(v); }
};

/* Weights are read once: skip L1, mark evict-first in L2. */
static __device__ __forceinline__ uint4 ld_stream(const void* p, uint64_t pol) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0,%1,%2,%3}, [%4], %5;"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p), "l"(pol));
    return r;
}

static __device__ __forceinline__ uint64_t evict_first_policy() {
    uint64_t pol;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
    return pol;
}

static __device__ __forceinline__ void prefetch_l2(const void* p) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

static __device__ __forceinline__ unsigned ld_acquire(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

/* 16 bytes of row[k ..] (VE = 16 / sizeof(T) elements), zeros past K.
 * VEC: K % VE == 0 and row 16-byte aligned, so a vector is wholly in or out. */
template <typename T, bool VEC>
static __device__ __forceinline__ uint4 ld_w16(const T* row, int k, int K, uint64_t pol) {
    if (VEC) {
        if (k < K) return ld_stream(row + k, pol);
        return make_uint4(0, 0, 0, 0);
    } else {
        constexpr int VE = 16 / sizeof(T);
        union { uint4 u; T e[VE]; } r;
#pragma unroll
        for (int i = 0; i < VE; i++) r.e[i] = (k + i < K) ? row[k + i] : sm_type<T>::from_f(0.0f);
        return r.u;
    }
}

template <typename T>
static __device__ __forceinline__ void mma16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<float>(float*, const uint32_t*, uint32_t, uint32_t) {}

/* Columns staged per piece: KR rounded up to 128, the widest batch (U * 32 columns), so a
 * batch never reads past the staged (zero-padded) columns. */
static __host__ __device__ inline int sm_staged_cols(int KR) { return (KR + 127) / 128 * 128; }
/* Shared-memory row stride (elements) of the staged input: the staged columns plus 64
 * bytes, so the 8 rows a quarter-warp reads hit distinct banks. */
static __host__ __device__ inline int sm_row_stride(int KR, int es) {
    return (sm_staged_cols(KR) * es + 64) / es;
}

/* ========================================================================== */
/* One layer: every piece this block owns                                      */
/* ========================================================================== */
/* Lane geometry. MMA path (bf16/fp16): g = lane/4, t = lane%4; per 32-column block a
 * thread loads 8 consecutive weights of rows g and g+8 at column 8t, and the MMA's k
 * slots are permuted to match (slot 2t+j <-> column 8t+j, 2t+8+j <-> 8t+2+j for the first
 * MMA, +4 for the second); B (h) is read with the same permutation, one 16-byte shared
 * load per 8 tokens. acc[(gi*MT + nt)*4 + c] is the C fragment: row g + 8*(c>>1), token
 * nt*8 + 2t + (c&1).
 * FFMA path (float32): r = lane/2 is the row, hk = lane%2 the 16-column half of each
 * 32-column block; acc[gi*MT*8 + m] is token m of row r after a pairwise shuffle sum. */

template <typename T, int MT, bool G>
struct sm_cfg {
    static constexpr bool MMA = sizeof(T) == 2;
    static constexpr int NV = (MMA ? MT * 4 : MT * 8) * (G ? 2 : 1); /* fp32 values per lane */
    static constexpr int LPK = MMA ? 2 : 4;   /* 16-byte loads per row per 32 columns      */
    static constexpr int NW = LPK * (G ? 2 : 1); /* loads per 32 columns per thread          */
    static constexpr int U = (MMA ? (G ? 2 : 4) : 1); /* 32-column blocks per batch          */
};

/* One batch of U 32-column blocks starting at column kb: rows lo / hi (MMA: g, g+8) of
 * weight 0 (plain / gate) and weight 1 (up). Columns at or past kend read as zeros. */
template <typename T, int MT, bool G, bool VEC>
static __device__ __forceinline__ void sm_batch_load(uint4 (&w)[sm_cfg<T, MT, G>::U][sm_cfg<T, MT, G>::NW],
                                                    const T* lo0, const T* hi0, const T* lo1, const T* hi1,
                                                    int kb, int kend, int lane, uint64_t pol) {
    typedef sm_cfg<T, MT, G> C;
#pragma unroll
    for (int u = 0; u < C::U; u++) {
        int k = kb + 32 * u;
        if (C::MMA) {
            int col = k + 8 * (lane & 3);
            w[u][0] = ld_w16<T, VEC>(lo0, col, kend, pol);
            w[u][1] = ld_w16<T, VEC>(hi0, col, kend, pol);
            if (G) {
                w[u][2] = ld_w16<T, VEC>(lo1, col, kend, pol);
                w[u][3] = ld_w16<T, VEC>(hi1, col, kend, pol);
            }
        } else {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int col = k + 16 * (lane & 1) + 4 * j;
                w[u][j] = ld_w16<T, VEC>(lo0, col, kend, pol);
                if (G) w[u][4 + j] = ld_w16<T, VEC>(lo1, col, kend, pol);
            }
        }
    }
}

template <typename T, int MT, bool G>
static __device__ __forceinline__ void sm_batch_mul(float* acc, const uint4 (&w)[sm_cfg<T, MT, G>::U][sm_cfg<T, MT, G>::NW],
                                                   const T* sh, int KS, int kloc, int lane) {
    typedef sm_cfg<T, MT, G> C;
#pragma unroll
    for (int u = 0; u < C::U; u++) {
        int kc = kloc + 32 * u;
        if (C::MMA) {
            int g = lane >> 2, t = lane & 3;
            uint32_t ag0[4] = {w[u][0].x, w[u][1].x, w[u][0].y, w[u][1].y};
            uint32_t ag1[4] = {w[u][0].z, w[u][1].z, w[u][0].w, w[u][1].w};
            uint32_t au0[4], au1[4];
            if (G) {
                au0[0] = w[u][2].x; au0[1] = w[u][3].x; au0[2] = w[u][2].y; au0[3] = w[u][3].y;
                au1[0] = w[u][2].z; au1[1] = w[u][3].z; au1[2] = w[u][2].w; au1[3] = w[u][3].w;
            }
#pragma unroll
            for (int nt = 0; nt < MT; nt++) {
                uint4 b = *(const uint4*)(sh + (size_t)(nt * 8 + g) * KS + kc + 8 * t);
                mma16816<T>(acc + nt * 4, ag0, b.x, b.y);
                mma16816<T>(acc + nt * 4, ag1, b.z, b.w);
                if (G) {
                    mma16816<T>(acc + (MT + nt) * 4, au0, b.x, b.y);
                    mma16816<T>(acc + (MT + nt) * 4, au1, b.z, b.w);
                }
            }
        } else {
            const float* shf = (const float*)sh;
            int hk = lane & 1;
            float wv[16], uv[16];
#pragma unroll
            for (int j = 0; j < 4; j++) {
                wv[4 * j] = __uint_as_float(w[u][j].x); wv[4 * j + 1] = __uint_as_float(w[u][j].y);
                wv[4 * j + 2] = __uint_as_float(w[u][j].z); wv[4 * j + 3] = __uint_as_float(w[u][j].w);
                if (G) {
                    uv[4 * j] = __uint_as_float(w[u][4 + j].x); uv[4 * j + 1] = __uint_as_float(w[u][4 + j].y);
                    uv[4 * j + 2] = __uint_as_float(w[u][4 + j].z); uv[4 * j + 3] = __uint_as_float(w[u][4 + j].w);
                }
            }
#pragma unroll
            for (int m = 0; m < MT * 8; m++) {
                const float4* hp = (const float4*)(shf + (size_t)m * KS + kc + 16 * hk);
                float s = 0.f, su = 0.f;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    float4 h = hp[j];
                    s = fmaf(wv[4 * j], h.x, s); s = fmaf(wv[4 * j + 1], h.y, s);
                    s = fmaf(wv[4 * j + 2], h.z, s); s = fmaf(wv[4 * j + 3], h.w, s);
                    if (G) {
                        su = fmaf(uv[4 * j], h.x, su); su = fmaf(uv[4 * j + 1], h.y, su);
                        su = fmaf(uv[4 * j + 2], h.z, su); su = fmaf(uv[4 * j + 3], h.w, su);
                    }
                }
                acc[m] += s;
                if (G) acc[MT * 8 + m] += su;
            }
        }
    }
}

/* What the epilogue needs, held in registers (no parameter or bias loads per element). */
template <typename T>
struct sm_epi {
    T* out;          /* (M, N) h_{i+1}                         */
    T* save0;        /* (M, N) z (gate) or NULL                */
    T* save1;        /* (M, N) z_up or NULL                    */
    int N, M, act;
    float slope;
    float blo0, bhi0, blo1, bhi1; /* biases of this lane's rows (lo = g / r, hi = g + 8) */
};

static __device__ __noinline__ float sm_act(int act, float z, float slope) { return fmlp_act(act, z, slope); }

/* Bias, save z, activation (gate product), store h_{i+1} for (row, token). */
template <typename T, bool G>
static __device__ __forceinline__ void sm_emit(const sm_epi<T>& E, int row, int tok, float zg, float bg, float zu,
                                               float bu) {
    typedef sm_type<T> C;
    size_t o = (size_t)tok * E.N + row;
    T zgr = C::from_f(zg + bg); /* z as eager holds it: rounded to the dtype */
    if (E.save0) E.save0[o] = zgr;
    float h = sm_act(E.act, C::to_f(zgr), E.slope);
    if (G) {
        T zur = C::from_f(zu + bu);
        if (E.save1) E.save1[o] = zur;
        h = C::to_f(C::from_f(h)) * C::to_f(zur);
    }
    E.out[o] = C::from_f(h);
}

template <typename T, int MT, bool G>
static __device__ __forceinline__ void sm_finish(const sm_epi<T>& E, int r0, const float* acc, int lane) {
    typedef sm_cfg<T, MT, G> C;
    if (C::MMA) {
        int g = lane >> 2, t = lane & 3;
#pragma unroll
        for (int nt = 0; nt < MT; nt++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                int row = r0 + g + 8 * (c >> 1), tok = nt * 8 + 2 * t + (c & 1);
                if (row < E.N && tok < E.M)
                    sm_emit<T, G>(E, row, tok, acc[nt * 4 + c], (c >> 1) ? E.bhi0 : E.blo0,
                                  G ? acc[(MT + nt) * 4 + c] : 0.f, (c >> 1) ? E.bhi1 : E.blo1);
            }
    } else {
        int row = r0 + (lane >> 1), hk = lane & 1;
#pragma unroll
        for (int m = 0; m < MT * 8; m++)
            if ((m & 1) == hk && row < E.N && m < E.M)
                sm_emit<T, G>(E, row, m, acc[m], E.blo0, G ? acc[MT * 8 + m] : 0.f, E.blo1);
    }
}

/* L2 prefetch of the weight pieces this block will read in layer Ly. */
template <typename T>
static __device__ void sm_prefetch_layer(const sm_layer& Ly, int gated_layer) {
    int groups = (Ly.T + FMLP_SM_WARPS - 1) / FMLP_SM_WARPS;
    int pieces = groups * Ly.S;
    int es = (int)sizeof(T);
    for (int p = blockIdx.x; p < pieces; p += gridDim.x) {
        int gi = p / Ly.S, s = p % Ly.S;
        int r0 = gi * FMLP_SM_WARPS * 16, r1 = min(Ly.N, r0 + FMLP_SM_WARPS * 16);
        int k0 = s * Ly.KR, k1 = min(Ly.K, k0 + Ly.KR);
        size_t b0 = (size_t)k0 * es, b1 = (size_t)k1 * es;
        int lines = (int)((b1 - (b0 & ~(size_t)127) + 127) / 128);
        int nw = gated_layer ? 2 : 1;
        int total = (r1 - r0) * lines * nw;
        for (int i = threadIdx.x; i < total; i += blockDim.x) {
            int wi = i / ((r1 - r0) * lines), rem = i % ((r1 - r0) * lines);
            int r = r0 + rem / lines, ln = rem % lines;
            const char* base = (const char*)Ly.w[wi] + (size_t)r * Ly.K * es;
            prefetch_l2(base + (b0 & ~(size_t)127) + (size_t)ln * 128);
        }
    }
}

template <typename T> static __device__ __forceinline__ T ld_cg_elem(const T* p);
template <> __device__ __forceinline__ float ld_cg_elem<float>(const float* p) { return __ldcg(p); }
template <> __device__ __forceinline__ __nv_bfloat16 ld_cg_elem<__nv_bfloat16>(const __nv_bfloat16* p) {
    unsigned short v = __ldcg((const unsigned short*)p);
    return *(__nv_bfloat16*)&v;
}
template <> __device__ __forceinline__ __half ld_cg_elem<__half>(const __half* p) {
    unsigned short v = __ldcg((const unsigned short*)p);
    return *(__half*)&v;
}

template <typename T, int MT, bool G, bool WVEC>
static __device__ __forceinline__ void sm_layer_run(const sm_params& P, int li, T* sh) {
    typedef sm_cfg<T, MT, G> C;
    constexpr int VE = 16 / sizeof(T);
    const sm_layer& Ly = P.layer[li];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int N = Ly.N, K = Ly.K, S = Ly.S, KR = Ly.KR, M = P.M;
    const int KS = sm_row_stride(KR, (int)sizeof(T));
    const int groups = (Ly.T + FMLP_SM_WARPS - 1) / FMLP_SM_WARPS;
    const int pieces = groups * S;
    const uint64_t pol = evict_first_policy();
    const T* in = (const T*)Ly.in;

    for (int p = blockIdx.x; p < pieces; p += gridDim.x) {
        const int gi = p / S, s = p % S;
        const int tile = gi * FMLP_SM_WARPS + warp;
        const int r0 = tile * 16;
        const int k0 = s * KR, kend = min(K, k0 + KR);
        const bool active = tile < Ly.T;
        /* this thread's weight rows, clamped into the matrix (results of rows >= N dropped) */
        const int rlo = C::MMA ? r0 + (lane >> 2) : r0 + (lane >> 1);
        const size_t olo = (size_t)min(rlo, N - 1) * K, ohi = (size_t)min(rlo + 8, N - 1) * K;
        const T* lo0 = (const T*)Ly.w[0] + olo;
        const T* hi0 = (const T*)Ly.w[0] + ohi;
        const T* lo1 = G ? (const T*)Ly.w[1] + olo : lo0;
        const T* hi1 = G ? (const T*)Ly.w[1] + ohi : hi0;

        sm_epi<T> E; /* registers: epilogue arguments and this lane's biases */
        E.out = (T*)Ly.out; E.save0 = (T*)Ly.save[0]; E.save1 = (T*)Ly.save[1];
        E.N = N; E.M = M; E.act = Ly.act; E.slope = P.slope;
        {
            const T* b0 = (const T*)Ly.b[0];
            const T* b1 = (const T*)Ly.b[1];
            const int ilo = min(rlo, N - 1), ihi = min(rlo + 8, N - 1);
            E.blo0 = b0 ? sm_type<T>::to_f(b0[ilo]) : 0.f;
            E.bhi0 = b0 ? sm_type<T>::to_f(b0[ihi]) : 0.f;
            E.blo1 = (G && b1) ? sm_type<T>::to_f(b1[ilo]) : 0.f;
            E.bhi1 = (G && b1) ? sm_type<T>::to_f(b1[ihi]) : 0.f;
        }
        float acc[C::NV]; /* registers: this lane's share of the (16 × Mpad) fp32 tile */
#pragma unroll
        for (int v = 0; v < C::NV; v++) acc[v] = 0.f;
        uint4 wa[C::U][C::NW], wb[C::U][C::NW]; /* registers: two weight batches in flight */

        if (active) sm_batch_load<T, MT, G, WVEC>(wa, lo0, hi0, lo1, hi1, k0, kend, lane, pol);

        /* shared: sh (Mpad, KS) = h[:, k0 : k0 + KR], zeros past M and past the split */
        __syncthreads();
        {
            const int cpr = sm_staged_cols(KR) / VE, items = MT * 8 * cpr;
            for (int i = threadIdx.x; i < items; i += blockDim.x) {
                int m = i / cpr, c = i % cpr, k = k0 + c * VE;
                uint4 v = make_uint4(0, 0, 0, 0);
                if (m < M) {
                    const T* src = in + (size_t)m * K + k;
                    if (Ly.hvec) {
                        if (k < kend) v = __ldcg((const uint4*)src);
                    } else {
                        union { uint4 u; T e[VE]; } r;
#pragma unroll
                        for (int j = 0; j < VE; j++)
                            r.e[j] = (k + j < kend) ? ld_cg_elem<T>(src + j) : sm_type<T>::from_f(0.f);
                        v = r.u;
                    }
                }
                *(uint4*)(sh + (size_t)m * KS + c * VE) = v;
            }
        }
        __syncthreads();

        if (!active) continue;
        for (int kb = k0; kb < kend; kb += 32 * C::U) {
            const bool more = kb + 32 * C::U < kend;
            if (more) sm_batch_load<T, MT, G, WVEC>(wb, lo0, hi0, lo1, hi1, kb + 32 * C::U, kend, lane, pol);
            sm_batch_mul<T, MT, G>(acc, wa, sh, KS, kb - k0, lane);
            if (more) {
#pragma unroll
                for (int u = 0; u < C::U; u++)
#pragma unroll
                    for (int j = 0; j < C::NW; j++) wa[u][j] = wb[u][j];
            }
        }
        if (!C::MMA) {
#pragma unroll
            for (int v = 0; v < C::NV; v++) acc[v] += __shfl_xor_sync(0xffffffffu, acc[v], 1);
        }
        if (S == 1) {
            sm_finish<T, MT, G>(E, r0, acc, lane);
            continue;
        }
        /* global (L2): partial (T, S, NV, 32) fp32; the last split to arrive sums them */
        float* part = P.partial + (size_t)tile * S * C::NV * 32;
#pragma unroll
        for (int v = 0; v < C::NV; v++) __stcg(part + ((size_t)s * C::NV + v) * 32 + lane, acc[v]);
        __threadfence();
        __syncwarp();
        unsigned old = 0;
        if (lane == 0) old = atomicAdd(P.counters + Ly.cnt_off + tile, 1u);
        old = __shfl_sync(0xffffffffu, old, 0);
        if (old != (unsigned)S - 1) continue;
        __threadfence();
#pragma unroll
        for (int v = 0; v < C::NV; v++) acc[v] = 0.f;
        /* F splits' partials in flight at once (F * NV <= 64 registers), summed in split order */
        constexpr int F = C::NV >= 64 ? 1 : 64 / C::NV;
        for (int s0 = 0; s0 < S; s0 += F) {
            float buf[F][C::NV];
#pragma unroll
            for (int f = 0; f < F; f++)
#pragma unroll
                for (int v = 0; v < C::NV; v++)
                    buf[f][v] = s0 + f < S ? __ldcg(part + ((size_t)(s0 + f) * C::NV + v) * 32 + lane) : 0.f;
#pragma unroll
            for (int f = 0; f < F; f++)
#pragma unroll
                for (int v = 0; v < C::NV; v++) acc[v] += buf[f][v];
        }
        sm_finish<T, MT, G>(E, r0, acc, lane);
    }
}

/* ========================================================================== */
/* The kernel: all layers, one grid barrier between consecutive layers          */
/* ========================================================================== */

static __device__ __forceinline__ void sm_grid_barrier(unsigned* bar) {
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence(); /* publish this block's h_{i+1} stores (cumulative over the CTA) */
        atomicAdd(bar, 1u);
        while (ld_acquire(bar) < gridDim.x) {
        }
        __threadfence();
    }
    __syncthreads();
}

template <typename T, int MT>
__global__ void __launch_bounds__(FMLP_SM_THREADS, 1) fmlp_forward_small_m_kernel(const __grid_constant__ sm_params P) {
    extern __shared__ uint4 sm_smem[]; /* shared: staged input (Mpad, KS) of the current piece */
    T* sh = (T*)sm_smem;
    for (int li = 0; li < P.L; li++) {
        const sm_layer& Ly = P.layer[li];
        if (li + 1 < P.L && P.layer[li + 1].prefetch) sm_prefetch_layer<T>(P.layer[li + 1], 0);
        if (li == 0 && P.gated) {
            if (Ly.wvec) sm_layer_run<T, MT, true, true>(P, li, sh);
            else sm_layer_run<T, MT, true, false>(P, li, sh);
        } else {
            if (Ly.wvec) sm_layer_run<T, MT, false, true>(P, li, sh);
            else sm_layer_run<T, MT, false, false>(P, li, sh);
        }
        if (li + 1 < P.L) sm_grid_barrier(P.counters + li);
    }
}

/* ========================================================================== */
/* Host: plan (shared by workspace sizing and launch), entry points            */
/* ========================================================================== */

/* Development knobs (dev/cuda/small_m sweeps them; the shipped defaults are below). */
static int g_sm_blocks_per_sm = 1;  /* target resident blocks per SM (registers: ~1) */
static int g_sm_piece_cost = 96;    /* per-piece overhead, in columns, for choosing S */
static int g_sm_prefetch = 1;       /* L2 prefetch of the next layer's pieces         */
static size_t g_sm_prefetch_max = (size_t)24 << 20; /* skip prefetch of larger layers */

extern "C" void fmlp_small_m_dev_tune(int blocks_per_sm, int piece_cost, int prefetch) {
    if (blocks_per_sm > 0) g_sm_blocks_per_sm = blocks_per_sm;
    if (piece_cost >= 0) g_sm_piece_cost = piece_cost;
    if (prefetch >= 0) g_sm_prefetch = prefetch;
}

typedef struct {
    int MT, grid, smem;
    int S[FMLP_MAX_LAYERS], KR[FMLP_MAX_LAYERS], T[FMLP_MAX_LAYERS], cnt_off[FMLP_MAX_LAYERS];
    size_t off_cnt, n_cnt, off_h[2], off_part, total;
} sm_plan;

static const void* sm_kernel_ptr(fmlp_dtype dt, int MT) {
#define FMLP_SM_K(TY)                                                               \
    switch (MT) {                                                                   \
    case 1: return (const void*)fmlp_forward_small_m_kernel<TY, 1>;                 \
    case 2: return (const void*)fmlp_forward_small_m_kernel<TY, 2>;                 \
    case 4: return (const void*)fmlp_forward_small_m_kernel<TY, 4>;                 \
    default: return (const void*)fmlp_forward_small_m_kernel<TY, 8>;                \
    }
    if (dt == FMLP_F32) { FMLP_SM_K(float) }
    if (dt == FMLP_BF16) { FMLP_SM_K(__nv_bfloat16) }
    FMLP_SM_K(__half)
#undef FMLP_SM_K
}

static int sm_nv(fmlp_dtype dt, int MT, int gated) {
    return (dt == FMLP_F32 ? MT * 8 : MT * 4) * (gated ? 2 : 1);
}

static size_t sm_align(size_t v) { return (v + 255) & ~(size_t)255; }

/* Deterministic in (d, dt, M, ctx): sizes the grid, picks the K split of every layer. */
static int sm_make_plan(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx, sm_plan* pl,
                        int query_occupancy) {
    const int es = (int)fmlp_dtype_size(dt);
    const int L = d->n_layers;
    const int Mpad = (M <= 8 ? 1 : M <= 16 ? 2 : M <= 32 ? 4 : 8) * 8;
    int bps = g_sm_blocks_per_sm;
replan:;
    const int smem_cap = (bps >= 2 ? 110 : 220) * 1024; /* per block, within 227 KB / SM */
    int grid = ctx->sm_count * bps;
    int smem = 0;
    memset(pl, 0, sizeof *pl);
    pl->MT = M <= 8 ? 1 : M <= 16 ? 2 : M <= 32 ? 4 : 8;
    for (int i = 0; i < L; i++) {
        const int N = (int)d->width[i + 1], K = (int)d->width[i];
        const int T = (N + 15) / 16, groups = (T + FMLP_SM_WARPS - 1) / FMLP_SM_WARPS;
        long best = -1;
        int bS = 1, bKR = 32;
        for (int S = 1; S <= (K + 31) / 32; S++) {
            int KR = (K + S - 1) / S;
            KR = (KR + 31) / 32 * 32;
            int Sr = (K + KR - 1) / KR;
            if (Sr != S) continue;
            if ((long)groups * S > 8L * grid && best >= 0) break;
            if (Mpad * sm_row_stride(KR, es) * es > smem_cap) continue;
            long waves = ((long)groups * S + grid - 1) / grid;
            int nv = sm_nv(dt, pl->MT, d->gated && i == 0), F = nv >= 64 ? 1 : 64 / nv;
            long cost = waves * (KR + g_sm_piece_cost) + (S > 1 ? 48 + 32 * ((S + F - 1) / F) : 0);
            if (best < 0 || cost < best) { best = cost; bS = S; bKR = KR; }
        }
        pl->S[i] = bS;
        pl->KR[i] = bKR;
        pl->T[i] = T;
        int sm = Mpad * sm_row_stride(bKR, es) * es;
        if (sm > smem) smem = sm;
    }
    pl->smem = smem;
    const void* fn = sm_kernel_ptr(dt, pl->MT);
    if (smem > 48 * 1024 && cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess)
        return FMLP_ERR_BACKEND;
    if (query_occupancy) {
        int occ = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, fn, FMLP_SM_THREADS, smem) != cudaSuccess)
            return FMLP_ERR_BACKEND;
        if (occ < 1) return FMLP_ERR_UNSUPPORTED;
        if (occ < bps) {
            bps = occ;
            query_occupancy = 0; /* smaller grid: choose the splits again */
            goto replan;
        }
    }
    pl->grid = ctx->sm_count * bps;
    /* workspace: counters | h ping-pong (M, max width) dtype | partial tiles fp32 */
    size_t off = 0, ncnt = (size_t)L;
    for (int i = 0; i < L; i++) {
        pl->cnt_off[i] = (int)ncnt;
        if (pl->S[i] > 1) ncnt += (size_t)pl->T[i];
    }
    pl->off_cnt = 0;
    pl->n_cnt = ncnt;
    off = sm_align(ncnt * sizeof(unsigned));
    int64_t maxw = 1;
    for (int i = 1; i < L; i++) maxw = d->width[i] > maxw ? d->width[i] : maxw;
    for (int j = 0; j < 2; j++) {
        pl->off_h[j] = off;
        off += L > 1 ? sm_align((size_t)M * (size_t)maxw * es) : 0;
    }
    pl->off_part = off;
    size_t part = 0;
    for (int i = 0; i < L; i++)
        if (pl->S[i] > 1) {
            size_t b = (size_t)pl->T[i] * pl->S[i] * sm_nv(dt, pl->MT, d->gated && i == 0) * 32 * sizeof(float);
            part = b > part ? b : part;
        }
    off += sm_align(part);
    pl->total = off;
    return FMLP_OK;
}

extern "C" int fmlp_small_m_supported(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx,
                                      const char** why) {
    const char* w = NULL;
    if (fmlp_desc_validate(d, NULL) != FMLP_OK) w = "invalid MLP description";
    else if (dt != FMLP_F32 && dt != FMLP_BF16 && dt != FMLP_F16) w = "dtype must be float32, bfloat16 or float16";
    else if (M > FMLP_SM_MAX_M) w = "M > 64 rows: the small-M kernel streams weights for at most 64 tokens";
    else if (M < 0) w = "M < 0";
    else if (ctx == NULL || ctx->sm_count < 1) w = "ctx->sm_count not set (call fmlp_cuda_ctx_init)";
    else if (ctx->cc_major < 8) w = "needs compute capability 8.0 or newer (mma.sync bf16)";
    else {
        for (int i = 0; i <= d->n_layers; i++)
            if (d->width[i] > (1 << 24)) { w = "a width exceeds 2^24 (32-bit indexing inside the kernel)"; break; }
    }
    if (why) *why = w ? w : "single launch, weights streamed once over all SMs (M <= 64)";
    return w == NULL;
}

extern "C" size_t fmlp_small_m_workspace_bytes(const fmlp_desc* d, fmlp_dtype dt, int64_t M,
                                               const fmlp_cuda_ctx* ctx) {
    sm_plan pl;
    if (!fmlp_small_m_supported(d, dt, M, ctx, NULL)) return 0;
    if (sm_make_plan(d, dt, M, ctx, &pl, 1) != FMLP_OK) return 0;
    return pl.total;
}

static int sm_aligned16(const void* p) { return ((uintptr_t)p & 15) == 0; }

extern "C" int fmlp_forward_small_m_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x,
                                         const fmlp_params* p, void* out, void* const* saved, void* ws,
                                         const fmlp_cuda_ctx* ctx, fmlp_status* st) {
    const char* why = NULL;
    if (fmlp_desc_validate(d, st) != FMLP_OK) return st ? st->code : FMLP_ERR_INVALID;
    if (!fmlp_small_m_supported(d, dt, M, ctx, &why))
        return fmlp_fail(st, FMLP_ERR_UNSUPPORTED, "small-M forward: %s", why);
    if (M == 0) return FMLP_OK;
    sm_plan pl;
    int rc = sm_make_plan(d, dt, M, ctx, &pl, 1);
    if (rc != FMLP_OK)
        return fmlp_fail(st, rc, "small-M forward: occupancy query failed (%s)", cudaGetErrorString(cudaGetLastError()));
    if (ws == NULL || ((uintptr_t)ws & 255))
        return fmlp_fail(st, FMLP_ERR_INVALID, "small-M forward: workspace must be non-NULL and 256-byte aligned");

    const int L = d->n_layers, es = (int)fmlp_dtype_size(dt), VE = 16 / es;
    char* wsb = (char*)ws;
    sm_params P;
    memset(&P, 0, sizeof P);
    P.L = L;
    P.M = (int)M;
    P.gated = d->gated;
    P.slope = d->negative_slope;
    P.counters = (unsigned*)(wsb + pl.off_cnt);
    P.partial = (float*)(wsb + pl.off_part);
    for (int i = 0; i < L; i++) {
        sm_layer* Ly = &P.layer[i];
        const int g = d->gated && i == 0;
        const int k0 = i == 0 ? 0 : i + d->gated; /* weight index of layer i (plain / gate) */
        Ly->N = (int)d->width[i + 1];
        Ly->K = (int)d->width[i];
        Ly->act = d->act[i];
        Ly->S = pl.S[i];
        Ly->KR = pl.KR[i];
        Ly->T = pl.T[i];
        Ly->cnt_off = pl.cnt_off[i];
        for (int j = 0; j <= g; j++) {
            Ly->w[j] = p->w[k0 + j];
            Ly->b[j] = d->has_bias[k0 + j] ? p->b[k0 + j] : NULL;
            if (Ly->w[j] == NULL)
                return fmlp_fail(st, FMLP_ERR_INVALID, "small-M forward: weights[%d] is NULL", k0 + j);
            if (d->has_bias[k0 + j] && p->b[k0 + j] == NULL)
                return fmlp_fail(st, FMLP_ERR_INVALID, "small-M forward: biases[%d] is NULL but has_bias is set", k0 + j);
        }
        int si = saved ? fmlp_saved_index(d, i) : -1;
        if (si >= 0) {
            Ly->save[0] = saved[si];
            if (g) Ly->save[1] = saved[si + 1];
        }
        Ly->in = i == 0 ? x : (const void*)(wsb + pl.off_h[(i - 1) & 1]);
        Ly->out = i == L - 1 ? out : (void*)(wsb + pl.off_h[i & 1]);
        Ly->wvec = (Ly->K % VE == 0) && sm_aligned16(Ly->w[0]) && (!g || sm_aligned16(Ly->w[1]));
        Ly->hvec = (Ly->K % VE == 0) && sm_aligned16(Ly->in);
        size_t lbytes = (size_t)Ly->N * Ly->K * es * (g ? 2 : 1);
        Ly->prefetch = g_sm_prefetch && i > 0 && lbytes <= g_sm_prefetch_max;
    }
    cudaStream_t stream = (cudaStream_t)ctx->stream;
    cudaError_t e = cudaMemsetAsync(wsb + pl.off_cnt, 0, pl.n_cnt * sizeof(unsigned), stream);
    if (e != cudaSuccess)
        return fmlp_fail(st, FMLP_ERR_BACKEND, "small-M forward: cudaMemsetAsync failed: %s", cudaGetErrorString(e));
    const void* fn = sm_kernel_ptr(dt, pl.MT);
    void* args[] = {&P};
    e = cudaLaunchKernel(fn, dim3(pl.grid), dim3(FMLP_SM_THREADS), args, (size_t)pl.smem, stream);
    if (e != cudaSuccess)
        return fmlp_fail(st, FMLP_ERR_BACKEND, "small-M forward: kernel launch failed: %s", cudaGetErrorString(e));
    return FMLP_OK;
}
