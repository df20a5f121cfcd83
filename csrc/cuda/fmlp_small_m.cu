/* fmlp_small_m.cu — the single-launch small-M forward (M <= 64 rows), CUDA C. Version 4.
 *
 * Regime: few tokens at transformer widths. The work is bound by reading the weights
 * from HBM once, so one persistent cooperative launch (1 block of 8 warps per SM, all
 * resident: grid = ctx->sm_count, checked with the occupancy query) computes every layer,
 * with a grid barrier (cooperative_groups grid sync: no zeroed counter, no memset node)
 * between consecutive layers.
 *
 * Work split: block b owns output rows [b*N/G, (b+1)*N/G) of a layer, whole K per row, so
 * no block needs another block's partial sums; the gated first layer keeps the gate and up
 * rows of the same indices together. Optionally (FMLP_SM_SPLIT, off by default: measured
 * slower) the last layer is tiled row groups × K splits instead, the tiles' fp32 sums meet
 * in a workspace accumulator (atomicAdd; zeroed in-kernel before the grid barrier), and a
 * row group's last tile to arrive runs the epilogue.
 *
 * Streaming: at kernel entry each block starts copying its tiles of ALL layers into shared
 * memory, so HBM streams from t = 0 and the barriers / epilogues overlap the rest:
 *   sm_90   one warp issues one cp.async.bulk (TMA) per weight row segment, each layer
 *           completing on its own mbarrier (P.bulk);
 *   sm_80   warps 0..6 issue 16-byte cp.async.cg copies, one commit group per layer.
 * Shapes whose per-block share of all layers does not fit in shared memory use two
 * alternating regions or one region (cp.async only), else are unsupported
 * (fmlp_small_m_supported says why) and go to the GEMM path.
 *
 * Per layer (out N, in K), tokens as the MMA's N dimension ("swap A/B"):
 *   unit   16 rows (gated: 16 gate + the 16 matching up rows) × one K range; the block's
 *          RT row tiles × KS K splits (RT*KS ~ 8) are spread over its 8 warps
 *   A      weights from shared memory (16-byte ld.shared, padded rows: no bank conflicts)
 *   B      the layer input h (x, or the previous layer's output in the workspace: L2):
 *          sm_90, 16-byte rows that fit: staged in shared memory (x by bulk copies queued
 *          ahead of the weights, h by cp.async right after the grid barrier), read with
 *          ld.shared; otherwise 16-byte global loads into registers, double-buffered
 *   MMA    mma.sync m16n8k16 bf16/fp16 with fp32 accumulators (float32: FFMA, no TF32)
 *   reduce each unit writes its fp32 tile to shared memory; after __syncthreads the
 *          threads sum the KS splits in split order (deterministic), add the bias (kept
 *          in shared memory since entry), save z, apply the activation / gate product,
 *          and write h_{i+1} (dtype) with coalesced stores
 *
 * Two kernels share the plan, the MMA unit and the epilogue: fmlp_small_m_lean_kernel (v5)
 * for the common shapes (everything streamed from entry, inputs staged, K % 32 == 0), and
 * the general fmlp_forward_small_m_kernel (v4) for the rest (fallback modes, split, fp32,
 * misaligned inputs).
 * Status (H100, NOTES.md "CUDA small-M kernel", v5; v6 tried and kept out): correct on the
 * harness check in every variant; graph replay, cold / hot: 12.5 / 9.4 us (M=1), 15.9 / 12.9
 * us (M=16) lean; 34.8 / 32.6 us (GeGLU M=64, v4); eager 15.0 / 17.2 / 21.1 us; floor 5.7 /
 * 5.7 / 4.8 us. Stamps: ~1.8 us before the first bulk copy is issued (a chain of latencies,
 * not issue throughput: v6), ~1.2 us per grid barrier (an empty cooperative kernel's sync
 * costs 1.1), and the compute phases still ~1 us each. The dispatcher uses these kernels
 * only where they measured fastest (fmlp_dispatch.c).
 *
 * Build: setup.py (nvcc -O3 ... -gencode sm_90a and sm_80). Tested and timed by
 * dev/cuda/small_m/bench_small_m.cu (CPU double reference, poisoned outputs, dirty
 * workspace, misaligned x; CUDA-graph replay against the device copy bandwidth floor and
 * the eager baseline; -DFMLP_SM_PROF: per-phase %globaltimer stamps): dev/cuda/small_m/run.sh.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cooperative_groups.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "fmlp.h"
#include "fmlp_activation.h"
#include "fmlp_cuda.h"
#include "fmlp_cuda_common.cuh"

#define FMLP_SM_WARPS 8
#define FMLP_SM_THREADS (FMLP_SM_WARPS * 32)
#define FMLP_SM_MAX_M 64
/* Layers the single launch takes. Its parameters hold one sm_layer (168 bytes) per slot and
 * every launch copies them all: 32 slots made 5.4 KB per launch (host time per call; NOTES
 * "Session 11"). The dispatcher picks it for at most 2 layers; forced, up to 8. */
#define FMLP_SM_MAX_LAYERS 8
#define FMLP_SM_ISSUE (FMLP_SM_THREADS - 32) /* warps 0..6 issue the weight copies, warp 7 loads biases */

/* ========================================================================== */
/* Kernel parameters (passed by value)                                        */
/* ========================================================================== */

typedef struct {
    const void* w[2];   /* (N, K) weights: w[0] plain or gate, w[1] up (gated) — HBM        */
    void* save[2];      /* (M, N) saved pre-activations z (gate, up) or NULL               */
    const void* in;     /* (M, K) layer input h_i: x, or a workspace buffer (L2)           */
    void* out;          /* (M, N) layer output h_{i+1}: workspace buffer or `out`          */
    int N, K, act, G;   /* G: gated layer (two weight matrices)                            */
    int Kp;             /* K rounded up to 32 (shared rows are zero-padded to Kp)          */
    int wstride;        /* bytes per weight row in shared memory (padded against conflicts) */
    int Rmax;           /* max rows per block = ceil(N / grid)                             */
    int KS, KB;         /* K splits per row tile, 32-column blocks per split               */
    int units;          /* row tiles × KS                                                  */
    int w_off;          /* shared byte offset of this layer's weights (Rmax*(1+G) rows)     */
    int b_off;          /* shared float offset of this layer's biases ((1+G)*Rmax)          */
    int issue_at;       /* -1: copies issued at kernel entry; j: at the start of layer j     */
    int pending;        /* commit groups of later layers outstanding when this layer waits */
    int wvec;           /* weights allow 16-byte cp.async (K*es % 16 == 0, aligned)          */
    int hvec;           /* input allows 16-byte loads                                      */
    int stage_off;      /* >= 0: the layer input is staged in shared memory at this byte    */
                        /* offset (M rows of hstride bytes, zero past K) before the MMAs;   */
                        /* -1: B is read from global in register chunks                     */
    int hstride;        /* staged row stride in bytes (padded against bank conflicts)       */
    /* split K across blocks (the last layer only, S > 1): tile (row group rg, K split ks)
     * of block b = rg*S + ks covers rows [rg*Rmax, +Rmax) × columns [ks*KT, +KT); the
     * tiles' fp32 sums meet in `acc` (red.add) and the last tile of a row group to arrive
     * (counter cnt[rg]) runs the epilogue. S == 1: block b owns rows sm_row0(b..b+1), all K. */
    int S, RG, KT;
    const void* b[2];   /* (N,) biases (gate, up) or NULL                                   */
    float* acc;         /* ws: (M, N) fp32 sums, zeroed at kernel entry (S > 1)             */
    unsigned* cnt;      /* ws: RG arrival counters, zeroed at kernel entry (S > 1)          */
} sm_layer;

typedef struct {
    sm_layer layer[FMLP_SM_MAX_LAYERS];
    int L, M;
    int red_off;        /* shared byte offset of the reduction buffer                      */
    int RS;             /* reduction row stride in floats (Mpad + 1)                       */
    float slope;
    int bulk;           /* sm_90: weights by cp.async.bulk (one per row segment) + mbarriers */
    float* zero;        /* ws: floats zeroed at kernel entry (the split layer's acc and cnt) */
    int nzero;          /* their count (a multiple of 4)                                    */
    const void* x;      /* layer 0's input (staged by bulk copies at entry when layer 0 is)  */
    int early;          /* bulk: the stream is issued before the entry barrier (default; FMLP_SM_EARLY=0: after) */
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

static __device__ __forceinline__ uint32_t smem_u32(const void* p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16-byte global -> shared copy, bytes past src_bytes (0..16) zero-filled. */
static __device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
static __device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
/* Wait until at most n (clamped to 7: stricter is still correct) groups are pending. */
static __device__ __forceinline__ void cp_async_wait(int n) {
    switch (n) {
    case 0: asm volatile("cp.async.wait_group 0;" ::: "memory"); break;
    case 1: asm volatile("cp.async.wait_group 1;" ::: "memory"); break;
    case 2: asm volatile("cp.async.wait_group 2;" ::: "memory"); break;
    case 3: asm volatile("cp.async.wait_group 3;" ::: "memory"); break;
    case 4: asm volatile("cp.async.wait_group 4;" ::: "memory"); break;
    case 5: asm volatile("cp.async.wait_group 5;" ::: "memory"); break;
    case 6: asm volatile("cp.async.wait_group 6;" ::: "memory"); break;
    default: asm volatile("cp.async.wait_group 7;" ::: "memory"); break;
    }
}

static __device__ __forceinline__ uint4 lds128(uint32_t a) {
    uint4 r;
    asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "r"(a));
    return r;
}

/* First / last row of block b in a layer of N rows over G blocks. */
static __host__ __device__ __forceinline__ int sm_row0(int b, int N, int G) {
    return (int)(((long long)b * N) / G);
}

/* Block b's tile of a layer: rows [r0, r0+R), columns [k0, k0+kt) (R = 0: no work). */
struct sm_tile { int r0, R, k0, kt; };
static __device__ __forceinline__ sm_tile sm_tile_of(const sm_layer& Ly, int b, int G) {
    sm_tile t;
    if (Ly.S <= 1) {
        t.r0 = sm_row0(b, Ly.N, G);
        t.R = sm_row0(b + 1, Ly.N, G) - t.r0;
        t.k0 = 0;
        t.kt = Ly.K;
    } else if (b < Ly.RG * Ly.S) {
        const int rg = b / Ly.S, ks = b - rg * Ly.S;
        t.r0 = rg * Ly.Rmax;
        t.R = min(Ly.Rmax, Ly.N - t.r0);
        t.k0 = ks * Ly.KT;
        t.kt = min(Ly.KT, Ly.K - t.k0);
    } else {
        t.r0 = 0; t.R = 0; t.k0 = 0; t.kt = 0;
    }
    return t;
}

/* The same rows for the lean kernel (whole K, no split) in 32-bit arithmetic: the host
 * checks N * grid < 2^32 (sm_tile_of's 64-bit division is a software routine). */
static __device__ __forceinline__ sm_tile sm_lean_tile(const sm_layer& Ly) {
    const unsigned b = blockIdx.x, N = (unsigned)Ly.N, G = gridDim.x;
    sm_tile t;
    t.r0 = (int)(b * N / G);
    t.R = (int)((b + 1) * N / G) - t.r0;
    t.k0 = 0;
    t.kt = Ly.K;
    return t;
}

/* ---- sm_90: bulk copies (TMA engine) completing on mbarriers ---------------- */
static __device__ __forceinline__ void mbar_init(uint64_t* bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}
static __device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
#else
    (void)bar; (void)bytes;
    __trap(); /* the host sets P.bulk only on sm_90 */
#endif
}
/* Spin until phase 0 of the barrier completed (every expected byte landed). */
static __device__ __forceinline__ void mbar_wait0(uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const uint32_t a = smem_u32(bar);
    uint32_t done = 0;
    while (!done) {
        asm volatile(
            "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0;\n selp.u32 %0, 1, 0, p;\n}"
            : "=r"(done)
            : "r"(a)
            : "memory");
    }
#else
    (void)bar;
    __trap();
#endif
}
static __device__ __forceinline__ void bulk_g2s(uint32_t dst, const void* src, unsigned bytes, uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst),
                 "l"(src), "r"(bytes), "r"(smem_u32(bar))
                 : "memory");
#else
    (void)dst; (void)src; (void)bytes; (void)bar;
    __trap(); /* the host sets P.bulk only on sm_90 */
#endif
}

/* Lane that issues the bulk copies: layers' mbarriers [0, L) and the staged x's [MAX]. */
static __device__ __forceinline__ void sm_init_mbars(uint64_t* mbar, int L) {
    for (int li = 0; li < L; li++) mbar_init(&mbar[li], 1);
    mbar_init(&mbar[FMLP_SM_MAX_LAYERS], 1);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}

#ifdef FMLP_SM_PROF
/* dev only (dev/cuda/small_m prof mode): per block and phase, the SM's clock64 (phases are
 * timed against the block's own entry; %globaltimer ticks only every ~1 us here) and, at
 * entry, %globaltimer (the blocks' start skew) */
__device__ unsigned long long g_sm_prof[1024][16];
__device__ unsigned long long g_sm_gt[1024];
static __device__ __forceinline__ void sm_stamp(int k) {
    g_sm_prof[blockIdx.x][k] = (unsigned long long)clock64();
    if (k == 0) {
        unsigned long long t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        g_sm_gt[blockIdx.x] = t;
    }
}
extern "C" int fmlp_small_m_dev_prof(void* dst, void* gt) {
    int e = (int)cudaMemcpyFromSymbol(dst, g_sm_prof, sizeof g_sm_prof);
    return e ? e : (int)cudaMemcpyFromSymbol(gt, g_sm_gt, sizeof g_sm_gt);
}
#define SM_STAMP(k, who) do { if (threadIdx.x == (who)) sm_stamp(k); } while (0)
#else
#define SM_STAMP(k, who) do { } while (0)
#endif

/* ========================================================================== */
/* Prologue: issue the copies of this block's weight slices, load biases       */
/* ========================================================================== */

template <typename T>
static __device__ __forceinline__ void sm_issue_layer(const sm_layer& Ly, char* smem, const sm_tile& tl) {
    const int es = (int)sizeof(T);
    const int nm = 1 + Ly.G;
    const int R = tl.R;
    if (Ly.wvec) {
        const int cpr = Ly.Kp * es / 16;        /* 16-byte chunks per shared row */
        const int rowb = tl.kt * es;            /* bytes of the tile's global row segment */
        const size_t gstride = (size_t)Ly.K * es;
        const int total = nm * R * cpr;
        /* row / chunk of item i, advanced incrementally (no division in the loop) */
        int i = threadIdx.x, row = 0, c = i;
        while (c >= cpr) { c -= cpr; row++; }
        const int step_rows = FMLP_SM_ISSUE / cpr, step_c = FMLP_SM_ISSUE - step_rows * cpr;
        const uint32_t base = smem_u32(smem + Ly.w_off);
        for (; i < total; i += FMLP_SM_ISSUE) {
            const int j = row >= R ? 1 : 0, rr = row - j * R;
            const char* src = (const char*)Ly.w[j] + (size_t)(tl.r0 + rr) * gstride + (size_t)tl.k0 * es;
            int nb = rowb - c * 16;
            nb = nb < 0 ? 0 : nb > 16 ? 16 : nb;
            cp_async16(base + (uint32_t)((j * Ly.Rmax + rr) * Ly.wstride + c * 16), nb ? src + c * 16 : src, nb);
            row += step_rows;
            c += step_c;
            if (c >= cpr) { c -= cpr; row++; }
        }
    } else { /* unaligned / K*es not a multiple of 16: element copies (small shapes) */
        const int total = nm * R * Ly.Kp;
        for (int i = threadIdx.x; i < total; i += FMLP_SM_ISSUE) {
            const int row = i / Ly.Kp, k = i - row * Ly.Kp;
            const int j = row >= R ? 1 : 0, rr = row - j * R;
            T v = sm_type<T>::from_f(0.f);
            if (k < tl.kt) v = ((const T*)Ly.w[j])[(size_t)(tl.r0 + rr) * Ly.K + tl.k0 + k];
            *(T*)(smem + Ly.w_off + (j * Ly.Rmax + rr) * Ly.wstride + k * es) = v;
        }
    }
}

/* sm_90 (P.bulk): one warp issues one bulk copy per weight row segment of the tile;
 * lane 0 first tells the layer's mbarrier how many bytes to expect. The zero padding
 * of each shared row past the segment is written by the caller's other warps. */
template <typename T>
static __device__ __forceinline__ void sm_issue_layer_bulk(const sm_layer& Ly, char* smem, const sm_tile& tl,
                                                           uint64_t* bar, int lane) {
    const int es = (int)sizeof(T);
    const int nm = 1 + Ly.G;
    const unsigned rowb = (unsigned)(tl.kt * es);
    if (lane == 0) mbar_expect_tx(bar, (unsigned)(nm * tl.R) * rowb);
    __syncwarp();
    const uint32_t base = smem_u32(smem + Ly.w_off);
    for (int i = lane; i < nm * tl.R; i += 32) {
        const int j = i >= tl.R ? 1 : 0, rr = i - j * tl.R;
        const char* src = (const char*)Ly.w[j] + ((size_t)(tl.r0 + rr) * Ly.K + tl.k0) * es;
        bulk_g2s(base + (uint32_t)((j * Ly.Rmax + rr) * Ly.wstride), src, rowb, bar);
    }
}

/* Zeroes shared columns [kt, Kp) of the tile's rows (bulk mode: the copies fill [0, kt)). */
template <typename T>
static __device__ __forceinline__ void sm_zero_pad(const sm_layer& Ly, char* smem, const sm_tile& tl, int tid, int nthreads) {
    const int es = (int)sizeof(T);
    const int padb = (Ly.Kp - tl.kt) * es; /* a multiple of 16 (kt*es % 16 == 0 in bulk mode) */
    if (padb <= 0) return;
    const int per = padb / 16, rows = (1 + Ly.G) * tl.R;
    for (int i = tid; i < rows * per; i += nthreads) {
        const int row = i / per, c = i - row * per;
        const int j = row >= tl.R ? 1 : 0, rr = row - j * tl.R;
        *(uint4*)(smem + Ly.w_off + (j * Ly.Rmax + rr) * Ly.wstride + tl.kt * es + c * 16) = make_uint4(0, 0, 0, 0);
    }
}

/* ========================================================================== */
/* One unit (16 rows × a K range): MMA path (bf16 / fp16)                       */
/* ========================================================================== */
/* Lane geometry: g = lane/4, t = lane%4. Per 32-column block a lane reads 8 consecutive
 * weights of rows g and g+8 at column 8t (one ld.shared.v4 each), and the MMA's k slots
 * are permuted to match (slot 2t+j <-> column 8t+j, 2t+8+j <-> 8t+2+j for the first MMA,
 * +4 for the second); B (h) is read with the same permutation, one 16-byte global load
 * per 8 tokens. acc C fragment: row g + 8*(c>>1), token nt*8 + 2t + (c&1). */

template <int MT> struct sm_mcfg {
    static constexpr int CH = MT >= 8 ? 1 : 8 / MT;             /* 32-col blocks per B chunk */
    static constexpr int NACC = MT == 1 ? 4 : MT == 2 ? 2 : 1;  /* independent MMA chains   */
};

/* B chunk: h[nt*8 + g][kc + 32u + 8t ..+8] for u < CH (row stride ld, in already offset to
 * the tile's first column), zeros past M / klim. */
template <typename T, int MT>
static __device__ __forceinline__ void sm_load_b(uint4 (&b)[sm_mcfg<MT>::CH][MT], const T* in, int ld, int klim, int M,
                                                 int kc, int hvec, int lane) {
    constexpr int CH = sm_mcfg<MT>::CH, VE = 8;
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int u = 0; u < CH; u++) {
        const int k = kc + 32 * u + 8 * t;
#pragma unroll
        for (int nt = 0; nt < MT; nt++) {
            const int tok = nt * 8 + g;
            const T* src = in + (size_t)tok * ld + k;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (tok < M) {
                if (hvec) {
                    if (k < klim) v = *(const uint4*)src;
                } else {
                    union { uint4 u; T e[VE]; } r;
#pragma unroll
                    for (int j = 0; j < VE; j++) r.e[j] = (k + j < klim) ? src[j] : sm_type<T>::from_f(0.f);
                    v = r.u;
                }
            }
            b[u][nt] = v;
        }
    }
}

/* A side of a unit: its K range and the lane's shared addresses of weight rows g and g+8
 * (per weight matrix; rows past the tile read as zeros). */
template <int NM> struct sm_unit_a {
    int g, t, kbeg, kend;
    bool vlo, vhi;
    uint32_t alo[NM], ahi[NM];
};
template <int NM>
static __device__ __forceinline__ sm_unit_a<NM> sm_unit_a_of(const sm_layer& Ly, const char* smem, const sm_tile& tl,
                                                             int u, int lane) {
    sm_unit_a<NM> q;
    const int rt = u / Ly.KS, s = u - rt * Ly.KS;
    q.g = lane >> 2;
    q.t = lane & 3;
    const int rlo = rt * 16 + q.g, rhi = rlo + 8;
    q.vlo = rlo < tl.R;
    q.vhi = rhi < tl.R;
    const uint32_t wbase = smem_u32(smem + Ly.w_off);
#pragma unroll
    for (int j = 0; j < NM; j++) {
        q.alo[j] = wbase + (uint32_t)((j * Ly.Rmax + rlo) * Ly.wstride + 16 * q.t);
        q.ahi[j] = wbase + (uint32_t)((j * Ly.Rmax + rhi) * Ly.wstride + 16 * q.t);
    }
    q.kbeg = s * Ly.KB * 32;
    q.kend = min(Ly.Kp, q.kbeg + Ly.KB * 32);
    return q;
}
/* The two m16n8k16 A fragments of weight matrix j for the 32 columns at byte offset kb. */
template <int NM>
static __device__ __forceinline__ void sm_load_a(const sm_unit_a<NM>& q, int j, uint32_t kb, uint32_t (&a0)[4],
                                                 uint32_t (&a1)[4]) {
    const uint4 lo = q.vlo ? lds128(q.alo[j] + kb) : make_uint4(0, 0, 0, 0);
    const uint4 hi = q.vhi ? lds128(q.ahi[j] + kb) : make_uint4(0, 0, 0, 0);
    a0[0] = lo.x; a0[1] = hi.x; a0[2] = lo.y; a0[3] = hi.y;
    a1[0] = lo.z; a1[1] = hi.z; a1[2] = lo.w; a1[3] = hi.w;
}
template <int NA, int NM, int MT>
static __device__ __forceinline__ void sm_zero_acc(float (&acc)[NA][NM][MT][4]) {
#pragma unroll
    for (int a = 0; a < NA; a++)
#pragma unroll
        for (int j = 0; j < NM; j++)
#pragma unroll
            for (int nt = 0; nt < MT; nt++)
#pragma unroll
                for (int c = 0; c < 4; c++) acc[a][j][nt][c] = 0.f;
}
/* The unit's fp32 tile (its NA chains summed in order) -> shared red[u][j][row 16][RS].
 * C fragment: row g + 8*(c>>1), token nt*8 + 2t + (c&1). */
template <int NA, int NM, int MT>
static __device__ __forceinline__ void sm_store_unit(const float (&acc)[NA][NM][MT][4], float* red, int u, int RS,
                                                     int g, int t) {
    float* ru = red + (size_t)u * NM * 16 * RS;
#pragma unroll
    for (int j = 0; j < NM; j++)
#pragma unroll
        for (int nt = 0; nt < MT; nt++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                float v = acc[0][j][nt][c];
#pragma unroll
                for (int a = 1; a < NA; a++) v += acc[a][j][nt][c];
                ru[(j * 16 + g + 8 * (c >> 1)) * RS + nt * 8 + 2 * t + (c & 1)] = v;
            }
}

template <typename T, int MT, bool G>
static __device__ __forceinline__ void sm_unit_mma(const sm_params& P, const sm_layer& Ly, const char* smem,
                                                   const sm_tile& tl, int u, int lane, float* red,
                                                   const uint4 (&pre)[sm_mcfg<MT>::CH][MT], bool use_pre) {
    typedef sm_mcfg<MT> C;
    constexpr int CH = C::CH, NACC = C::NACC, NM = G ? 2 : 1;
    const sm_unit_a<NM> q = sm_unit_a_of<NM>(Ly, smem, tl, u, lane);
    const int kbeg = q.kbeg, kend = q.kend;
    const T* in = (const T*)Ly.in + tl.k0;
    const int K = Ly.K, klim = tl.kt, M = P.M, hvec = Ly.hvec;

    float acc[NACC][NM][MT][4];
    sm_zero_acc(acc);

    uint4 bc[CH][MT], bn[CH][MT]; /* registers: B chunk in use, next chunk in flight */
    if (use_pre) {
#pragma unroll
        for (int uu = 0; uu < CH; uu++)
#pragma unroll
            for (int nt = 0; nt < MT; nt++) bc[uu][nt] = pre[uu][nt];
    } else {
        sm_load_b<T, MT>(bc, in, K, klim, M, kbeg, hvec, lane);
    }
    for (int kc = kbeg; kc < kend; kc += 32 * CH) {
        const bool more = kc + 32 * CH < kend;
        if (more) sm_load_b<T, MT>(bn, in, K, klim, M, kc + 32 * CH, hvec, lane);
#pragma unroll
        for (int uu = 0; uu < CH; uu++) {
            const int k = kc + 32 * uu;
            if (k < kend) {
                const uint32_t kb = (uint32_t)(k * 2);
#pragma unroll
                for (int j = 0; j < NM; j++) {
                    uint32_t a0[4], a1[4];
                    sm_load_a(q, j, kb, a0, a1);
                    const int s0 = NACC == 4 ? (uu & 1) * 2 : 0;
                    const int s1 = NACC >= 2 ? s0 + 1 : 0;
#pragma unroll
                    for (int nt = 0; nt < MT; nt++) {
                        fmlp_mma16816<T>(acc[s0][j][nt], a0, bc[uu][nt].x, bc[uu][nt].y);
                        fmlp_mma16816<T>(acc[s1][j][nt], a1, bc[uu][nt].z, bc[uu][nt].w);
                    }
                }
            }
        }
        if (more) {
#pragma unroll
            for (int uu = 0; uu < CH; uu++)
#pragma unroll
                for (int nt = 0; nt < MT; nt++) bc[uu][nt] = bn[uu][nt];
        }
    }
    sm_store_unit(acc, red, u, P.RS, q.g, q.t);
}

/* The same unit with B (the layer input) staged in shared memory (Ly.stage_off >= 0):
 * every operand is a 16-byte ld.shared, no global round trip inside the K loop. Staged
 * rows are M tokens of hstride bytes (≡ 64 mod 128: the two tokens of a quarter-warp
 * fall in distinct banks), zero past K; tokens >= M read as zeros. */
template <typename T, int MT, bool G>
static __device__ __forceinline__ void sm_unit_mma_staged(const sm_params& P, const sm_layer& Ly, const char* smem,
                                                          const sm_tile& tl, int u, int lane, float* red) {
    constexpr int NM = G ? 2 : 1;
    const sm_unit_a<NM> q = sm_unit_a_of<NM>(Ly, smem, tl, u, lane);
    const uint32_t hbase = smem_u32(smem + Ly.stage_off);
    uint32_t bp[MT];
    bool bv[MT];
#pragma unroll
    for (int nt = 0; nt < MT; nt++) {
        const int tok = nt * 8 + q.g;
        bv[nt] = tok < P.M;
        bp[nt] = hbase + (uint32_t)((bv[nt] ? tok : 0) * Ly.hstride + 16 * q.t);
    }
    /* independent accumulator chains (chain a: the 32-column blocks kc + 32a): four at
     * MT = 1 and two at MT = 2, where a K step has too few MMAs to hide their latency; one
     * at MT >= 4 (registers). Every operand of the NC blocks is loaded before their MMAs.
     * No `break` and no outer unroll: the v4 loop (`#pragma unroll 2` over kc, `break` past
     * kend) gave wrong gated results whenever the trip count was odd (session 5: GeGLU
     * 768-3072 at M = 1 and 7; harness check "gated 768-4096 (KB=6)"). */
    constexpr int NC = MT == 1 ? 4 : MT == 2 ? 2 : 1;
    float acc[NC][NM][MT][4];
    sm_zero_acc(acc);
#pragma unroll 1
    for (int kc = q.kbeg; kc < q.kend; kc += 32 * NC) {
        uint4 b[NC][MT];
        uint32_t a0[NC][NM][4], a1[NC][NM][4];
#pragma unroll
        for (int a = 0; a < NC; a++) {
            const int k = kc + 32 * a;
            const bool ok = k < q.kend;
            const uint32_t kb = (uint32_t)((ok ? k : q.kbeg) * 2);
#pragma unroll
            for (int nt = 0; nt < MT; nt++) b[a][nt] = ok && bv[nt] ? lds128(bp[nt] + kb) : make_uint4(0, 0, 0, 0);
#pragma unroll
            for (int j = 0; j < NM; j++) sm_load_a(q, j, kb, a0[a][j], a1[a][j]);
        }
#pragma unroll
        for (int a = 0; a < NC; a++) {
            if (kc + 32 * a >= q.kend) continue;
#pragma unroll
            for (int j = 0; j < NM; j++)
#pragma unroll
                for (int nt = 0; nt < MT; nt++) {
                    fmlp_mma16816<T>(acc[a][j][nt], a0[a][j], b[a][nt].x, b[a][nt].y);
                    fmlp_mma16816<T>(acc[a][j][nt], a1[a][j], b[a][nt].z, b[a][nt].w);
                }
        }
    }
    sm_store_unit(acc, red, u, P.RS, q.g, q.t);
}

/* Stages rows [0, M) of the layer input into shared memory with 16-byte cp.async (all
 * threads; columns [K, Kp) zero-filled by the copies' src-size), one commit group. */
template <typename T>
static __device__ __forceinline__ void sm_stage_input_async(const sm_layer& Ly, char* smem, int M) {
    const int cpr = Ly.Kp / 8; /* 16-byte chunks per staged row (16-bit types) */
    const int kb = Ly.K * 2;
    const uint32_t base = smem_u32(smem + Ly.stage_off);
    const char* in = (const char*)Ly.in;
    int m = 0, c = threadIdx.x;
    while (c >= cpr) { c -= cpr; m++; }
    const int step_m = FMLP_SM_THREADS / cpr, step_c = FMLP_SM_THREADS - step_m * cpr;
    for (; m < M;) {
        const int nb = min(16, max(0, kb - c * 16));
        cp_async16(base + (uint32_t)(m * Ly.hstride + c * 16), in + (size_t)m * kb + (nb ? c * 16 : 0), nb);
        m += step_m;
        c += step_c;
        if (c >= cpr) { c -= cpr; m++; }
    }
    cp_async_commit();
}

/* ========================================================================== */
/* One unit: FFMA path (float32, no TF32)                                      */
/* ========================================================================== */
/* lr = lane & 15 is the row, kh = lane >> 4 the 16-column half of each 32-column block;
 * the two halves are combined with one shuffle. */
template <int MT, bool G>
static __device__ __forceinline__ void sm_unit_ffma(const sm_params& P, const sm_layer& Ly, const char* smem,
                                                    const sm_tile& tl, int u, int lane, float* red) {
    constexpr int NM = G ? 2 : 1, MX = MT * 8;
    const int rt = u / Ly.KS, s = u - rt * Ly.KS;
    const int lr = lane & 15, kh = lane >> 4;
    const int row = rt * 16 + lr;
    const bool vrow = row < tl.R;
    const int kbeg = s * Ly.KB * 32;
    const int kend = min(Ly.Kp, kbeg + Ly.KB * 32);
    const float* in = (const float*)Ly.in + tl.k0;
    const int K = Ly.K, klim = tl.kt, M = P.M, RS = P.RS;
    float* ru = red + (size_t)u * NM * 16 * RS;
#pragma unroll
    for (int j = 0; j < NM; j++) {
        const float* wrow = (const float*)(smem + Ly.w_off + (j * Ly.Rmax + row) * Ly.wstride);
        float acc[MX];
#pragma unroll
        for (int m = 0; m < MX; m++) acc[m] = 0.f;
        for (int kc = kbeg; kc < kend; kc += 32) {
            const int k0 = kc + 16 * kh;
            float w[16];
#pragma unroll
            for (int q = 0; q < 4; q++) {
                float4 v = vrow ? *(const float4*)(wrow + k0 + 4 * q) : make_float4(0.f, 0.f, 0.f, 0.f);
                w[4 * q] = v.x; w[4 * q + 1] = v.y; w[4 * q + 2] = v.z; w[4 * q + 3] = v.w;
            }
#pragma unroll
            for (int m = 0; m < MX; m++) {
                if (m < M) {
                    const float* hp = in + (size_t)m * K;
                    float sum = 0.f;
#pragma unroll
                    for (int q = 0; q < 16; q++) {
                        const int k = k0 + q;
                        sum = fmaf(w[q], k < klim ? hp[k] : 0.f, sum);
                    }
                    acc[m] += sum;
                }
            }
        }
#pragma unroll
        for (int m = 0; m < MX; m++) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], 16);
        if (kh == 0) {
#pragma unroll
            for (int m = 0; m < MX; m++) ru[(j * 16 + lr) * RS + m] = acc[m];
        }
    }
}

/* ========================================================================== */
/* One layer                                                                   */
/* ========================================================================== */

/* Epilogue of a layer: the block's (token m, row r) items, consecutive threads on
 * consecutive rows: the KS split sums of the unit tiles in red (split order:
 * deterministic), or the split layer's fp32 sums, + bias (shared fp32), z saved rounded to
 * the dtype, act / gate product, h_{i+1} stored. */
template <typename T, bool G>
static __device__ __forceinline__ void sm_epilogue(const sm_params& P, const sm_layer& Ly, const sm_tile& tl,
                                                   const float* sbias, const float* red) {
    typedef sm_type<T> C;
    constexpr int NM = G ? 2 : 1;
    const int KS = Ly.KS, RS = P.RS, N = Ly.N, M = P.M, act = Ly.act, R = tl.R, r0 = tl.r0;
    const int items = M * R;
    const float slope = P.slope;
    T* out = (T*)Ly.out;
    T* save0 = (T*)Ly.save[0];
    T* save1 = (T*)Ly.save[1];
    for (int i = threadIdx.x; i < items; i += FMLP_SM_THREADS) {
        const int m = i / R, r = i - m * R;
        const size_t o = (size_t)m * N + r0 + r;
        float zg = 0.f, zu = 0.f;
        if (Ly.S > 1) {
            zg = __ldcg(Ly.acc + o); /* L2: the sums of every tile of the row group */
        } else {
            const int rt = r >> 4, rr = r & 15;
            const float* base = red + ((size_t)rt * KS * NM * 16 + rr) * RS + m;
            for (int s = 0; s < KS; s++) { /* split order: deterministic */
                zg += base[(size_t)s * NM * 16 * RS];
                if (G) zu += base[((size_t)s * NM + 1) * 16 * RS];
            }
        }
        const T zgr = C::from_f(zg + sbias[r]); /* z as eager holds it: rounded to the dtype */
        if (save0) save0[o] = zgr;
        float h = fmlp_act(act, C::to_f(zgr), slope);
        if (G) {
            const T zur = C::from_f(zu + sbias[Ly.Rmax + r]);
            if (save1) save1[o] = zur;
            h = C::to_f(C::from_f(h)) * C::to_f(zur);
        }
        out[o] = C::from_f(h);
    }
}

template <typename T, int MT, bool G>
static __device__ __forceinline__ void sm_layer_run(const sm_params& P, const sm_layer& Ly, uint64_t* bar, uint64_t* xbar, int pending,
                                                    const float* sbias, char* smem, const sm_tile& tl, int* s_last,
                                                    uint4 (&pre)[sm_mcfg<MT>::CH][MT], bool have_pre, int li) {
    (void)li; /* phase stamps (dev builds) */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float* red = (float*)(smem + P.red_off);
    if constexpr (sizeof(T) == 2) {
        if (Ly.stage_off >= 0) {
            /* staged input: layer 0's rows were bulk-copied at entry (ahead of the weight
             * stream, on xbar); later layers' rows (h from L2, written by every block before
             * the grid barrier) are fetched now, all in flight at once */
            if (li > 0) sm_stage_input_async<T>(Ly, smem, P.M);
            else mbar_wait0(xbar);
            if (bar) mbar_wait0(bar);
            if (li > 0) cp_async_wait(0);
            __syncthreads();
            SM_STAMP(li ? 9 : 4, 0);
            for (int u = warp; u < Ly.units; u += FMLP_SM_WARPS) sm_unit_mma_staged<T, MT, G>(P, Ly, smem, tl, u, lane, red);
        } else {
        /* the first B chunk of this warp's first unit is loaded before waiting for the
         * weights, so its L2 latency overlaps the rest of the stream (layer 0 in bulk mode:
         * loaded by the caller before the stream was issued) */
        if (!have_pre && warp < Ly.units) {
            const int s = warp % Ly.KS;
            sm_load_b<T, MT>(pre, (const T*)Ly.in + tl.k0, Ly.K, tl.kt, P.M, s * Ly.KB * 32, Ly.hvec, lane);
        }
        if (bar) mbar_wait0(bar);   /* bulk: every byte of this layer's tile landed */
        else cp_async_wait(pending); /* this layer's commit group (and earlier ones) landed */
        __syncthreads();
        SM_STAMP(li ? 9 : 4, 0);
        for (int u = warp; u < Ly.units; u += FMLP_SM_WARPS) sm_unit_mma<T, MT, G>(P, Ly, smem, tl, u, lane, red, pre, u == warp);
        }
    } else {
        if (bar) mbar_wait0(bar);
        else cp_async_wait(pending);
        __syncthreads();
        SM_STAMP(li ? 9 : 4, 0);
        for (int u = warp; u < Ly.units; u += FMLP_SM_WARPS) sm_unit_ffma<MT, G>(P, Ly, smem, tl, u, lane, red);
    }
    __syncthreads();
    SM_STAMP(li ? 10 : 5, 0);
    if (Ly.S > 1) {
        const int KS = Ly.KS, RS = P.RS, N = Ly.N, M = P.M, R = tl.R, r0 = tl.r0;
        const int items = M * R;
        /* split K across blocks: add this tile's sums (its own splits in order) into the
         * fp32 accumulator; the row group's last tile to arrive finishes the rows below */
        for (int i = threadIdx.x; i < items; i += FMLP_SM_THREADS) {
            const int m = i / R, r = i - m * R;
            const float* base = red + ((size_t)(r >> 4) * KS * 16 + (r & 15)) * RS + m;
            float z = 0.f;
            for (int s = 0; s < KS; s++) z += base[(size_t)s * 16 * RS];
            atomicAdd(Ly.acc + (size_t)m * N + r0 + r, z); /* result unused: RED.ADD */
        }
        __threadfence(); /* this thread's adds are visible device-wide before the arrival */
        __syncthreads();
        if (threadIdx.x == 0) {
            const unsigned old = atomicAdd(Ly.cnt + r0 / Ly.Rmax, 1u);
            *s_last = old == (unsigned)Ly.S - 1;
            if (*s_last) __threadfence(); /* acquire the other tiles' adds */
        }
        __syncthreads();
        if (!*s_last) return;
    }
    sm_epilogue<T, G>(P, Ly, tl, sbias, red);
}

/* Biases of every layer's tile -> shared fp32 (zeros when absent), in batches of 4 per
 * thread: a batch's loads are all issued before any store (one memory round trip). The
 * first batch is fetched before the entry barrier, from the parameter space, so its loads
 * go out ahead of the weight stream (v3 stamps: loads issued behind the bulk copies
 * returned after them, 7 us into a cold call); its raw values wait in registers. */
template <typename T> struct sm_bias_batch { T v[4]; int dst[4]; };

static __device__ __forceinline__ int sm_bias_total(const sm_layer* lay, int L) {
    int total = 0;
    for (int li = 0; li < L; li++) total += (1 + lay[li].G) * sm_tile_of(lay[li], blockIdx.x, gridDim.x).R;
    return total;
}

template <typename T>
static __device__ __forceinline__ void sm_bias_fetch(const sm_layer* lay, int L, int total, int base, int nthreads,
                                                     sm_bias_batch<T>& bt) {
#pragma unroll
    for (int q = 0; q < 4; q++) {
        int i = base + q * nthreads;
        bt.dst[q] = -1;
        bt.v[q] = sm_type<T>::from_f(0.f);
        if (i < total) {
            for (int li = 0; li < L; li++) {
                const sm_layer& Ly = lay[li];
                const sm_tile tl = sm_tile_of(Ly, blockIdx.x, gridDim.x);
                const int n = (1 + Ly.G) * tl.R;
                if (i < n) {
                    const int j = i >= tl.R ? 1 : 0, r = i - j * tl.R;
                    const T* b = (const T*)Ly.b[j];
                    bt.dst[q] = Ly.b_off + j * Ly.Rmax + r;
                    if (b) bt.v[q] = b[tl.r0 + r];
                    break;
                }
                i -= n;
            }
        }
    }
}

template <typename T>
static __device__ __forceinline__ void sm_bias_put(float* sb, const sm_bias_batch<T>& bt) {
#pragma unroll
    for (int q = 0; q < 4; q++)
        if (bt.dst[q] >= 0) sb[bt.dst[q]] = sm_type<T>::to_f(bt.v[q]);
}

/* The batches from `from` on (the first `from` entries were fetched before the barrier). */
template <typename T>
static __device__ __forceinline__ void sm_load_biases(const sm_layer* lay, int L, float* sb, int tid, int nthreads,
                                                      int from) {
    const int total = sm_bias_total(lay, L);
    for (int base = from + tid; base < total; base += 4 * nthreads) {
        sm_bias_batch<T> bt;
        sm_bias_fetch<T>(lay, L, total, base, nthreads, bt);
        sm_bias_put<T>(sb, bt);
    }
}

/* Zeroes columns [K, Kp) of the M staged input rows (the bulk copies fill [0, K)). */
static __device__ __forceinline__ void sm_zero_stage_pad(const sm_layer& Ly, char* smem, int M, int tid, int nthreads) {
    const int c0 = Ly.K / 8, per = Ly.Kp / 8 - c0; /* 16-byte chunks (16-bit types, K % 8 == 0) */
    for (int i = tid; i < M * per; i += nthreads) {
        const int m = i / per, c = c0 + (i - m * per);
        *(uint4*)(smem + Ly.stage_off + m * Ly.hstride + c * 16) = make_uint4(0, 0, 0, 0);
    }
}

/* sm_90 producer (one warp): x's staged rows (layer 0's input, when staged: first in the
 * queue), then every layer's weight row segments, each layer on its own mbarrier. LEAN:
 * the lean kernel's tiles (sm_lean_tile). */
template <typename T, bool LEAN>
static __device__ __forceinline__ void sm_issue_all_bulk(const sm_params& P, const sm_layer* lay, char* smem,
                                                         uint64_t* mbar, int lane) {
    const sm_layer& L0 = lay[0];
    uint64_t* xbar = &mbar[FMLP_SM_MAX_LAYERS];
    if (L0.stage_off >= 0) {
        const unsigned rowb = (unsigned)(L0.K * (int)sizeof(T));
        if (lane == 0) mbar_expect_tx(xbar, rowb * (unsigned)P.M);
        __syncwarp();
        for (int m = lane; m < P.M; m += 32)
            bulk_g2s(smem_u32(smem + L0.stage_off + m * L0.hstride), (const char*)P.x + (size_t)m * rowb, rowb, xbar);
    }
    for (int li = 0; li < P.L; li++) {
        const sm_layer& Ly = lay[li];
        const sm_tile tl = LEAN ? sm_lean_tile(Ly) : sm_tile_of(Ly, blockIdx.x, gridDim.x);
        if (tl.R > 0) sm_issue_layer_bulk<T>(Ly, smem, tl, &mbar[li], lane);
        if (li == 0) SM_STAMP(13, FMLP_SM_ISSUE);
    }
}

/* ========================================================================== */
/* The kernel                                                                  */
/* ========================================================================== */

template <typename T, int MT>
__global__ void __launch_bounds__(FMLP_SM_THREADS, 1) fmlp_forward_small_m_kernel(const __grid_constant__ sm_params P) {
    /* shared: [biases fp32: per layer (1+G)*Rmax] [red fp32: units*(1+G)*16*RS]
     *         [weights: per layer (1+G)*Rmax rows of wstride bytes, zero-padded to Kp] */
    extern __shared__ __align__(128) char smem[];
    __shared__ __align__(8) uint64_t mbar[FMLP_SM_MAX_LAYERS + 1]; /* per layer's weights; [MAX]: staged x */
    __shared__ int s_last;
    /* the layer descriptions, copied once: read from the (12 KB) parameter space with a
     * dynamic layer index, every field is a constant-cache miss on first touch */
    __shared__ __align__(16) sm_layer lay[FMLP_SM_MAX_LAYERS];
    const int L = P.L, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float* sb = (float*)smem;
    uint64_t* xbar = &mbar[FMLP_SM_MAX_LAYERS];
    SM_STAMP(0, 0);
    /* the mbarriers are set up by the lane that will issue the bulk copies (no block
     * barrier between: in P.early mode it issues them before the entry barrier) */
    if (P.bulk && threadIdx.x == FMLP_SM_ISSUE) sm_init_mbars(mbar, L);
    if (P.bulk && P.early && warp == FMLP_SM_WARPS - 1) {
        /* the stream is issued at once, descriptions read from the parameter space, before
         * the block barrier below (v4 run 2: -1.8 us cold at M=1 against issuing after it;
         * dev knob FMLP_SM_EARLY=0 issues after it) */
        __syncwarp();
        sm_issue_all_bulk<T, false>(P, P.layer, smem, mbar, lane);
    }
    uint4 pre[sm_mcfg<MT>::CH][MT]; /* this warp's first B chunk of layer 0 (16-bit, bulk mode, not staged) */
    bool have_pre = false;
    sm_bias_batch<T> bias0; /* bulk mode: the first bias batch, fetched before the stream is issued */
    const bool early = P.bulk && warp < FMLP_SM_WARPS - 1;
    if (early) {
        /* critical-path loads first (the bulk copies issued after the barrier below would
         * otherwise be ahead of them): the first bias batch and layer 0's first B chunk,
         * left in flight across the barrier (read from the parameter space: lay is not
         * ready yet) */
        sm_bias_fetch<T>(P.layer, L, sm_bias_total(P.layer, L), threadIdx.x, FMLP_SM_ISSUE, bias0);
        SM_STAMP(14, 0);
        if constexpr (sizeof(T) == 2) {
            const sm_layer& L0 = P.layer[0];
            if (L0.stage_off < 0) {
                const sm_tile t0 = sm_tile_of(L0, blockIdx.x, gridDim.x);
                if (t0.R > 0 && warp < L0.units)
                    sm_load_b<T, MT>(pre, (const T*)L0.in + t0.k0, L0.K, t0.kt, P.M, (warp % L0.KS) * L0.KB * 32, L0.hvec, lane);
                have_pre = true;
            }
        }
    }
    {
        const int words = L * (int)(sizeof(sm_layer) / 4);
        for (int i = threadIdx.x; i < words; i += FMLP_SM_THREADS) ((int*)lay)[i] = ((const int*)P.layer)[i];
        __syncthreads(); /* the layer copies and the mbarriers are ready */
        SM_STAMP(12, 0);
    }
    if (P.bulk) {
        /* sm_90: the last warp issues one bulk copy per staged row of x (layer 0's input, when
         * staged), then one per weight row segment of every layer (a few dozen instructions),
         * layer by layer, each layer completing on its own mbarrier. Meanwhile the other
         * warps store the biases and zero the shared row padding. */
        if (warp == FMLP_SM_WARPS - 1) {
            if (!P.early) sm_issue_all_bulk<T, false>(P, lay, smem, mbar, lane);
            SM_STAMP(1, FMLP_SM_ISSUE);
        } else {
            sm_bias_put<T>(sb, bias0);
            sm_load_biases<T>(lay, L, sb, threadIdx.x, FMLP_SM_ISSUE, 4 * FMLP_SM_ISSUE);
            SM_STAMP(2, 0);
            if (lay[0].stage_off >= 0) sm_zero_stage_pad(lay[0], smem, P.M, threadIdx.x, FMLP_SM_ISSUE);
            for (int li = 0; li < L; li++) {
                const sm_layer& Ly = lay[li];
                sm_zero_pad<T>(Ly, smem, sm_tile_of(Ly, blockIdx.x, gridDim.x), threadIdx.x, FMLP_SM_ISSUE);
            }
        }
    } else if (threadIdx.x < FMLP_SM_ISSUE) {
        /* warps 0..6: stream every layer's tile, one cp.async commit group per layer */
        for (int li = 0; li < L; li++) {
            const sm_layer& Ly = lay[li];
            if (Ly.issue_at >= 0) continue; /* fallback modes: issued when its region is free */
            sm_issue_layer<T>(Ly, smem, sm_tile_of(Ly, blockIdx.x, gridDim.x));
            cp_async_commit();
        }
    }
    /* the split layer's accumulator and counters: zeroed by every block before the grid
     * barrier that precedes that layer (the workspace holds garbage between calls) */
    {
        float4* z = (float4*)P.zero;
        for (int i = blockIdx.x * FMLP_SM_THREADS + threadIdx.x; i < P.nzero / 4; i += gridDim.x * FMLP_SM_THREADS)
            z[i] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
    if (!P.bulk && threadIdx.x >= FMLP_SM_ISSUE) sm_load_biases<T>(lay, L, sb, threadIdx.x - FMLP_SM_ISSUE, 32, 0);
    /* layers (each waits for its own tile inside sm_layer_run) */
    for (int li = 0; li < L; li++) {
        const sm_layer& Ly = lay[li];
        if (!P.bulk && threadIdx.x < FMLP_SM_ISSUE) { /* fallback modes: layers whose region is free now */
            for (int lj = li; lj < L; lj++) {
                const sm_layer& Lj = lay[lj];
                if (Lj.issue_at != li) continue;
                sm_issue_layer<T>(Lj, smem, sm_tile_of(Lj, blockIdx.x, gridDim.x));
                cp_async_commit();
            }
        }
        const sm_tile tl = sm_tile_of(Ly, blockIdx.x, gridDim.x);
        uint64_t* bar = P.bulk ? &mbar[li] : (uint64_t*)0;
        if (tl.R > 0) {
            SM_STAMP(li ? 8 : 3, 0);
            const bool hp = have_pre && li == 0;
            if (Ly.G) sm_layer_run<T, MT, true>(P, Ly, bar, xbar, Ly.pending, sb + Ly.b_off, smem, tl, &s_last, pre, hp, li);
            else sm_layer_run<T, MT, false>(P, Ly, bar, xbar, Ly.pending, sb + Ly.b_off, smem, tl, &s_last, pre, hp, li);
            SM_STAMP(li ? 11 : 6, 0);
        }
        if (li + 1 < L) { /* grid barrier (cooperative launch): h_{i+1} of every block is visible after it */
            cooperative_groups::this_grid().sync();
            SM_STAMP(7, 0);
        }
    }
    SM_STAMP(15, 0);
}

/* ========================================================================== */
/* The lean kernel (v5): the common decode shapes on sm_90                      */
/* ========================================================================== */
/* ncu on the H100 (v4, 1024-4096-1024 M=1): ~2,100 instructions per warp at 17.5 cycles
 * each, 43% of the stalls waiting for instructions (the v4 kernel is 208 KB of SASS and
 * runs most of it once: general tile math with 64-bit divisions, batched bias fetches,
 * padding, fallback modes). This kernel takes only the shapes where every layer is
 * streamed from entry by bulk copies, whole K per block, K a multiple of 32 (no padding
 * to zero), every layer input staged in shared memory (16-bit), and at most 448 bias rows
 * per block and layer; fmlp_forward_small_m_cuda picks it then (dev knob FMLP_SM_LEAN=0:
 * always the v4 kernel). Same layout (sm_plan), same MMA unit and epilogue as v4; the
 * prologue is a few dozen instructions: mbarriers, the bulk stream, the biases. */

template <typename T, int MT>
__global__ void __launch_bounds__(FMLP_SM_THREADS, 1) fmlp_small_m_lean_kernel(const __grid_constant__ sm_params P) {
    extern __shared__ __align__(128) char smem[];
    __shared__ __align__(8) uint64_t mbar[FMLP_SM_MAX_LAYERS + 1]; /* per layer's weights; [MAX]: staged x */
    const int L = P.L, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float* sb = (float*)smem;
    float* red = (float*)(smem + P.red_off);
    uint64_t* xbar = &mbar[FMLP_SM_MAX_LAYERS];
    SM_STAMP(0, 0);
    if (warp == FMLP_SM_WARPS - 1) {
        /* producer: mbarriers, then x's rows (layer 0's input, always staged here), then
         * every layer's weight row segments, each layer on its own mbarrier */
        if (lane == 0) sm_init_mbars(mbar, L);
        __syncwarp();
        SM_STAMP(14, FMLP_SM_ISSUE);
        sm_issue_all_bulk<T, true>(P, P.layer, smem, mbar, lane);
        SM_STAMP(1, FMLP_SM_ISSUE);
    } else {
        /* biases of the block's rows -> shared fp32, two layers at a time: both layers'
         * loads are issued before either store (one memory round trip per pair) */
        const int tid = threadIdx.x;
        for (int l0 = 0; l0 < L; l0 += 2) {
            float v[2][2];
            int dst[2][2];
#pragma unroll
            for (int q = 0; q < 2; q++) {
                const int li = l0 + q < L ? l0 + q : l0;
                const sm_layer& Ly = P.layer[li];
                const sm_tile tl = sm_lean_tile(Ly);
#pragma unroll
                for (int k = 0; k < 2; k++) {
                    const int i = tid + k * FMLP_SM_ISSUE;
                    const int j = i >= tl.R ? 1 : 0, r = i - j * tl.R;
                    const bool ok = l0 + q < L && i < (1 + Ly.G) * tl.R;
                    const T* b = (const T*)Ly.b[j];
                    dst[q][k] = ok ? Ly.b_off + j * Ly.Rmax + r : -1;
                    v[q][k] = ok && b ? sm_type<T>::to_f(b[tl.r0 + r]) : 0.f;
                }
            }
#pragma unroll
            for (int q = 0; q < 2; q++)
#pragma unroll
                for (int k = 0; k < 2; k++)
                    if (dst[q][k] >= 0) sb[dst[q][k]] = v[q][k];
        }
        SM_STAMP(2, 0);
    }
    __syncthreads(); /* biases stored, mbarriers initialised */
    for (int li = 0; li < L; li++) {
        const sm_layer& Ly = P.layer[li];
        const sm_tile tl = sm_lean_tile(Ly);
        if (tl.R > 0) {
            SM_STAMP(li ? 8 : 3, 0);
            /* layer 0's input came with the stream (xbar); later layers' (h, written by every
             * block before the grid barrier, in L2) is fetched now, all in flight at once */
            if (li > 0) sm_stage_input_async<T>(Ly, smem, P.M);
            else mbar_wait0(xbar);
            mbar_wait0(&mbar[li]);
            if (li > 0) cp_async_wait(0);
            __syncthreads();
            SM_STAMP(li ? 9 : 4, 0);
            if (Ly.G) {
                for (int u = warp; u < Ly.units; u += FMLP_SM_WARPS) sm_unit_mma_staged<T, MT, true>(P, Ly, smem, tl, u, lane, red);
            } else {
                for (int u = warp; u < Ly.units; u += FMLP_SM_WARPS) sm_unit_mma_staged<T, MT, false>(P, Ly, smem, tl, u, lane, red);
            }
            __syncthreads();
            SM_STAMP(li ? 10 : 5, 0);
            if (Ly.G) sm_epilogue<T, true>(P, Ly, tl, sb + Ly.b_off, red);
            else sm_epilogue<T, false>(P, Ly, tl, sb + Ly.b_off, red);
            SM_STAMP(li ? 11 : 6, 0);
        }
        if (li + 1 < L) { /* grid barrier (cooperative launch): h_{i+1} of every block is visible after it */
            cooperative_groups::this_grid().sync();
            SM_STAMP(7, 0);
        }
    }
    SM_STAMP(15, 0);
}

/* ========================================================================== */
/* Host: plan (shared by support, workspace sizing and launch), entry points    */
/* ========================================================================== */

typedef struct {
    int MT, grid, smem, red_off, RS;
    int Rmax[FMLP_SM_MAX_LAYERS], Kp[FMLP_SM_MAX_LAYERS], wstride[FMLP_SM_MAX_LAYERS], KS[FMLP_SM_MAX_LAYERS],
        KB[FMLP_SM_MAX_LAYERS], units[FMLP_SM_MAX_LAYERS], w_off[FMLP_SM_MAX_LAYERS], b_off[FMLP_SM_MAX_LAYERS],
        issue_at[FMLP_SM_MAX_LAYERS], pending[FMLP_SM_MAX_LAYERS];
    int S[FMLP_SM_MAX_LAYERS], RG[FMLP_SM_MAX_LAYERS], KT[FMLP_SM_MAX_LAYERS];
    int stage_off[FMLP_SM_MAX_LAYERS], hstride[FMLP_SM_MAX_LAYERS]; /* staged input (-1: none) */
    int mode; /* 0: all layers streamed from entry, 1: two alternating regions, 2: one region */
    size_t zero_bytes;                         /* workspace: [split acc | counters] zeroed in-kernel */
    size_t off_acc, off_cnt;
    size_t off_h[FMLP_SM_MAX_LAYERS + 1], total;  /* then h_1 .. h_{L-1} */
} sm_plan;

/* lean: the v5 kernel (16-bit types only) */
static const void* sm_kernel_ptr(fmlp_dtype dt, int MT, int lean) {
#define FMLP_SM_K(KER, TY)                                                          \
    switch (MT) {                                                                   \
    case 1: return (const void*)KER<TY, 1>;                                         \
    case 2: return (const void*)KER<TY, 2>;                                         \
    case 4: return (const void*)KER<TY, 4>;                                         \
    default: return (const void*)KER<TY, 8>;                                        \
    }
    if (dt == FMLP_F32) { FMLP_SM_K(fmlp_forward_small_m_kernel, float) }
    if (dt == FMLP_BF16 && lean) { FMLP_SM_K(fmlp_small_m_lean_kernel, __nv_bfloat16) }
    if (dt == FMLP_BF16) { FMLP_SM_K(fmlp_forward_small_m_kernel, __nv_bfloat16) }
    if (lean) { FMLP_SM_K(fmlp_small_m_lean_kernel, __half) }
    FMLP_SM_K(fmlp_forward_small_m_kernel, __half)
#undef FMLP_SM_K
}

static size_t sm_align(size_t v, size_t a) { return (v + a - 1) / a * a; }

/* static shared memory of the kernel (the layer copies, mbarriers, flag), rounded up */
#define FMLP_SM_STATIC_SMEM (sizeof(sm_layer) * FMLP_SM_MAX_LAYERS + 8 * FMLP_SM_MAX_LAYERS + 512)

/* Per-device facts queried once (host API calls cost microseconds per call otherwise). */
#define FMLP_SM_MAX_DEV FMLP_CUDA_MAX_DEV

/* How the last layer splits K across blocks: returns S (1 = whole K per block) and the
 * row groups / rows per group / columns per tile. Split-K trades the L2 reads of the
 * layer input (whole K: every block reads all of h, grid·M·K·es bytes) for fp32 adds
 * (S·M·N·4 bytes). FMLP_SM_SPLIT (dev knob): 0 = never split, n > 0 = n row groups. */
static int sm_split_choice(int N, int K, int64_t M, int es, int grid, int* RG, int* Rg, int* KT) {
    static int cache = -2;
    const int env = fmlp_env_knob("FMLP_SM_SPLIT", &cache);
    /* default (env < 0): whole K. Measured (H100, NOTES.md "v3"): the fp32 atomics of the
     * split made every target shape slower (M=1: 17.5 vs 16.2 us, M=16: 22.8 vs 19.5, GeGLU
     * M=64: 43.1 vs 30.6), though it reads 8x fewer input bytes. */
    if (env <= 0 || K < 64 || grid < 4) return 1;
    double best = -1;
    int bS = 1;
    for (int rows = 16; rows < N + 16; rows += 16) {
        const int rg = (N + rows - 1) / rows;
        if (env > 0 && rg != env) continue;
        const int smax = grid / rg;
        if (smax < 2) continue;
        const int kt = (int)sm_align((size_t)((K + smax - 1) / smax), 32);
        const int s = (K + kt - 1) / kt;
        if (s < 2) continue;
        /* bytes through L2: input reads + fp32 adds (weighted 2: atomics) */
        const double cost = (double)rg * M * K * es + 2.0 * s * M * N * 4 + (double)rows * 16; /* + tie-break: fewer rows */
        if (best < 0 || cost < best) { best = cost; bS = s; *RG = rg; *Rg = rows; *KT = kt; }
        if (rows >= N) break;
    }
    return bS;
}

/* FMLP_SM_STAGE=0 (dev knob): never stage layer inputs in shared memory (v3 behaviour). */
static int sm_stage_enabled(void) {
    static int cache = -2;
    const int env = fmlp_env_knob("FMLP_SM_STAGE", &cache);
    return env != 0;
}

/* Deterministic in (d, dt, M, ctx). Returns NULL, or why the shape is not supported. */
static const char* sm_make_plan(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx,
                                sm_plan* pl) {
    const int es = (int)fmlp_dtype_size(dt);
    const int L = d->n_layers, grid = ctx->sm_count;
    memset(pl, 0, sizeof *pl);
    pl->MT = M <= 8 ? 1 : M <= 16 ? 2 : M <= 32 ? 4 : 8;
    const int Mpad = pl->MT * 8;
    pl->RS = Mpad + 1;
    pl->grid = grid;
    size_t bias_f = 0, red_f = 0, wbytes = 0;
    for (int i = 0; i < L; i++) {
        const int N = (int)d->width[i + 1], K = (int)d->width[i], G = d->gated && i == 0, NM = 1 + G;
        int S = 1, RGn = 0, Rg = 0, KT = 0;
        if (i == L - 1 && L >= 2 && !G) S = sm_split_choice(N, K, M, es, grid, &RGn, &Rg, &KT);
        const int Rmax = S > 1 ? Rg : (N + grid - 1) / grid, RT = (Rmax + 15) / 16;
        const int Kp = S > 1 ? KT : (K + 31) / 32 * 32, nkb = Kp / 32;
        int KS = RT >= FMLP_SM_WARPS ? 1 : FMLP_SM_WARPS / RT;
        if (KS > nkb) KS = nkb;
        const int KB = (nkb + KS - 1) / KS;
        KS = (nkb + KB - 1) / KB;
        /* row stride: 128-byte multiple + 64 (16-bit: the 2 rows of a quarter-warp's 16-byte
         * loads fall in distinct banks) or + 16 (fp32: 8 consecutive rows) */
        const int wstride = (int)sm_align((size_t)Kp * es, 128) + (es == 2 ? 64 : 16);
        pl->S[i] = S; pl->RG[i] = RGn; pl->KT[i] = KT;
        pl->Rmax[i] = Rmax; pl->Kp[i] = Kp; pl->wstride[i] = wstride;
        pl->KS[i] = KS; pl->KB[i] = KB; pl->units[i] = RT * KS;
        pl->b_off[i] = (int)bias_f;
        bias_f += (size_t)NM * Rmax;
        size_t rf = (size_t)RT * KS * NM * 16 * pl->RS;
        red_f = rf > red_f ? rf : red_f;
        pl->w_off[i] = (int)wbytes; /* relative; rebased below */
        wbytes += sm_align((size_t)NM * Rmax * wstride, 128);
    }
    const size_t red_off = sm_align(bias_f * 4, 128), w0 = sm_align(red_off + red_f * 4, 128);
    const int optin = fmlp_optin_smem(ctx->device);
    if (optin <= 0) return "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin) failed";
    size_t wmax[2] = {0, 0};
    for (int i = 0; i < L; i++) {
        const int NM = 1 + (d->gated && i == 0);
        const size_t b = sm_align((size_t)NM * pl->Rmax[i] * pl->wstride[i], 128);
        wmax[i & 1] = b > wmax[i & 1] ? b : wmax[i & 1];
    }
    const size_t cap = (size_t)optin - FMLP_SM_STATIC_SMEM; /* static shared: layer copies, mbarriers, flag */
    size_t total;
    for (int i = 0; i < L; i++) pl->stage_off[i] = -1;
    if (w0 + wbytes <= cap) {
        /* mode 0: every layer's slice streams from kernel entry. Laid out last layer first,
         * so that once layer i-1 is done everything from its slice on is free: layer i's
         * input is staged there (layer 0's after the last slice), when its M rows fit. */
        pl->mode = 0;
        size_t off = w0;
        for (int i = L - 1; i >= 0; i--) {
            const int NM = 1 + (d->gated && i == 0);
            pl->w_off[i] = (int)off;
            off += sm_align((size_t)NM * pl->Rmax[i] * pl->wstride[i], 128);
            pl->issue_at[i] = -1;
            pl->pending[i] = L - 1 - i;
        }
        total = off;
        for (int i = 0; i < L; i++) {
            const size_t base = i == 0 ? off : (size_t)pl->w_off[i - 1];
            const int hs = (int)sm_align((size_t)pl->Kp[i] * es, 128) + 64;
            const size_t end = base + (size_t)M * hs;
            if (es != 2 || pl->S[i] > 1 || M < 1 || end > cap || !sm_stage_enabled()) continue;
            pl->stage_off[i] = (int)base;
            pl->hstride[i] = hs;
            total = end > total ? end : total;
        }
    } else if (L >= 2 && w0 + wmax[0] + wmax[1] <= cap) {
        /* mode 1: even layers in region A, odd in region B; layer i+1 is issued when layer i
         * starts (layer i-1, the region's previous user, is done: grid barrier) */
        pl->mode = 1;
        total = w0 + wmax[0] + wmax[1];
        for (int i = 0; i < L; i++) {
            pl->w_off[i] = (int)(w0 + ((i & 1) ? wmax[0] : 0));
            pl->issue_at[i] = i >= 2 ? i - 1 : -1;
            pl->pending[i] = i + 1 < L ? 1 : 0;
        }
    } else {
        /* mode 2: one region, each layer issued at its own start (no overlap: slow, correct) */
        const size_t m = wmax[0] > wmax[1] ? wmax[0] : wmax[1];
        if (w0 + m > cap)
            return "one layer's per-block weight slice (plus the reduction buffer) does not fit in shared "
                   "memory (the kernel streams weight rows whole into shared memory)";
        pl->mode = 2;
        total = w0 + m;
        for (int i = 0; i < L; i++) { pl->w_off[i] = (int)w0; pl->issue_at[i] = i; pl->pending[i] = 0; }
    }
    pl->red_off = (int)red_off;
    pl->smem = (int)total;
    /* workspace: [acc (M, N_last) fp32 | RG counters] (split only; zeroed in-kernel),
     * then h_1 .. h_{L-1} (M, width[i]) dtype, each 256-aligned */
    size_t off = 0;
    if (pl->S[L - 1] > 1) {
        pl->off_acc = 0;
        pl->off_cnt = sm_align((size_t)M * d->width[L] * 4, 16);
        pl->zero_bytes = sm_align(pl->off_cnt + (size_t)pl->RG[L - 1] * 4, 16);
        off = sm_align(pl->zero_bytes, 256);
    }
    for (int i = 1; i < L; i++) {
        pl->off_h[i] = off;
        off += sm_align((size_t)M * (size_t)d->width[i] * es, 256);
    }
    pl->total = off > 256 ? off : 256;
    return NULL;
}

/* Raises the kernel's shared limit to the device maximum and checks that one block per
 * SM is resident there — once per (device, kernel): any smaller plan then fits too. */
static unsigned char g_prepared[FMLP_SM_MAX_DEV][3][4][2];

static int sm_prepare(fmlp_dtype dt, const sm_plan* pl, int lean, int device) {
    const int di = dt == FMLP_F32 ? 0 : dt == FMLP_BF16 ? 1 : 2;
    const int mi = pl->MT == 1 ? 0 : pl->MT == 2 ? 1 : pl->MT == 4 ? 2 : 3;
    if (device >= 0 && device < FMLP_SM_MAX_DEV && g_prepared[device][di][mi][lean]) return FMLP_OK;
    const void* fn = sm_kernel_ptr(dt, pl->MT, lean);
    const int smax = fmlp_optin_smem(device) - FMLP_SM_STATIC_SMEM;
    if (cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, smax) != cudaSuccess)
        return FMLP_ERR_BACKEND;
    int occ = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, fn, FMLP_SM_THREADS, smax) != cudaSuccess)
        return FMLP_ERR_BACKEND;
    if (occ < 1) return FMLP_ERR_UNSUPPORTED;
    if (device >= 0 && device < FMLP_SM_MAX_DEV) g_prepared[device][di][mi][lean] = 1;
    return FMLP_OK;
}

static const char* sm_check_uncached(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx,
                                     sm_plan* pl);

/* The last answer of this thread: one call asks four times (dispatch and workspace size,
 * then dispatch and launch), and at decode sizes the host time per call is what a Python
 * loop waits for. Keyed on everything the plan reads (the env knobs are read once). */
typedef struct {
    int valid;
    fmlp_desc d;
    fmlp_dtype dt;
    int64_t M;
    int device, sm_count, cc_major;
    const char* w;
    sm_plan pl;
} sm_memo;
static __thread sm_memo g_sm_memo;

/* Every support check and, when supported, the plan. */
static const char* sm_check(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx, sm_plan* pl) {
    sm_memo* c = &g_sm_memo;
    if (ctx && c->valid && c->dt == dt && c->M == M && c->device == ctx->device && c->sm_count == ctx->sm_count &&
        c->cc_major == ctx->cc_major && memcmp(&c->d, d, sizeof *d) == 0) {
        if (!c->w) *pl = c->pl;
        return c->w;
    }
    const char* w = sm_check_uncached(d, dt, M, ctx, pl);
    if (ctx) {
        c->valid = 1;
        c->d = *d;
        c->dt = dt;
        c->M = M;
        c->device = ctx->device;
        c->sm_count = ctx->sm_count;
        c->cc_major = ctx->cc_major;
        c->w = w;
        if (!w) c->pl = *pl;
    }
    return w;
}

static const char* sm_check_uncached(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx,
                                     sm_plan* pl) {
    const char* w = NULL;
    if (fmlp_desc_validate(d, NULL) != FMLP_OK) w = "invalid MLP description";
    else if (dt != FMLP_F32 && dt != FMLP_BF16 && dt != FMLP_F16) w = "dtype must be float32, bfloat16 or float16";
    else if (M > FMLP_SM_MAX_M) w = "M > 64 rows: the small-M kernel streams weights for at most 64 tokens";
    else if (d->n_layers > FMLP_SM_MAX_LAYERS) w = "more than 8 layers (the single launch's parameters hold 8)";
    else if (M < 0) w = "M < 0";
    else if (ctx == NULL || ctx->sm_count < 1) w = "ctx->sm_count not set (call fmlp_cuda_ctx_init)";
    else if (ctx->cc_major < 8) w = "needs compute capability 8.0 or newer (mma.sync bf16)";
    else {
        for (int i = 0; i <= d->n_layers; i++)
            if (d->width[i] > (1 << 24)) { w = "a width exceeds 2^24 (32-bit indexing inside the kernel)"; break; }
        if (!w) w = sm_make_plan(d, dt, M, ctx, pl);
    }
    return w;
}

extern "C" int fmlp_small_m_supported(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx,
                                      const char** why) {
    sm_plan pl;
    const char* w = sm_check(d, dt, M, ctx, &pl);
    if (why) *why = w ? w : "single launch, weights streamed once over all SMs (M <= 64)";
    return w == NULL;
}

extern "C" size_t fmlp_small_m_workspace_bytes(const fmlp_desc* d, fmlp_dtype dt, int64_t M,
                                               const fmlp_cuda_ctx* ctx) {
    sm_plan pl;
    return sm_check(d, dt, M, ctx, &pl) ? 0 : pl.total;
}

/* dev hook (dev/cuda/small_m harness): whether the last launch on this process used the lean kernel */
static int g_sm_last_lean;
extern "C" int fmlp_small_m_dev_last_lean(void) { return g_sm_last_lean; }

/* The shapes the lean kernel takes (its header comment): bulk stream, 16-bit, every layer
 * staged, whole K, K % 32 == 0 (no shared padding to zero), every block owns >= 1 row of
 * every layer (each mbarrier is waited on), <= 448 bias rows per block and layer, 32-bit
 * tile arithmetic. FMLP_SM_LEAN=0 (dev knob): never. */
static int sm_lean_fits(const sm_params* P, const sm_plan* pl, int es) {
    static int cache = -2;
    const int env = fmlp_env_knob("FMLP_SM_LEAN", &cache);
    if (env == 0 || !P->bulk || es != 2) return 0;
    for (int i = 0; i < P->L; i++) {
        const sm_layer* Ly = &P->layer[i];
        if (Ly->stage_off < 0 || Ly->S != 1 || Ly->K % 32 != 0 || Ly->N < pl->grid ||
            (1 + Ly->G) * Ly->Rmax > 2 * FMLP_SM_ISSUE || (uint64_t)Ly->N * (uint64_t)pl->grid >= (1ull << 32))
            return 0;
    }
    return 1;
}

extern "C" int fmlp_forward_small_m_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x,
                                         const fmlp_params* p, void* out, void* const* saved, void* ws,
                                         const fmlp_cuda_ctx* ctx, fmlp_status* st) {
    if (fmlp_desc_validate(d, st) != FMLP_OK) return st ? st->code : FMLP_ERR_INVALID;
    sm_plan pl;
    const char* why = sm_check(d, dt, M, ctx, &pl);
    if (why) return fmlp_fail(st, FMLP_ERR_UNSUPPORTED, "small-M forward: %s", why);
    if (M == 0) return FMLP_OK;
    if (ws == NULL || ((uintptr_t)ws & 255))
        return fmlp_fail(st, FMLP_ERR_INVALID, "small-M forward: workspace must be non-NULL and 256-byte aligned");

    const int L = d->n_layers, es = (int)fmlp_dtype_size(dt);
    char* wsb = (char*)ws;
    sm_params P;
    memset(&P, 0, sizeof P);
    P.L = L;
    P.M = (int)M;
    P.slope = d->negative_slope;
    P.red_off = pl.red_off;
    P.RS = pl.RS;
    P.zero = (float*)wsb;
    P.nzero = (int)(pl.zero_bytes / 4);
    int all_wvec = 1;
    for (int i = 0; i < L; i++) {
        sm_layer* Ly = &P.layer[i];
        const int g = d->gated && i == 0;
        const int k0 = i == 0 ? 0 : i + d->gated; /* weight index of layer i (plain / gate) */
        Ly->N = (int)d->width[i + 1];
        Ly->K = (int)d->width[i];
        Ly->act = d->act[i];
        Ly->G = g;
        Ly->Kp = pl.Kp[i];
        Ly->wstride = pl.wstride[i];
        Ly->Rmax = pl.Rmax[i];
        Ly->KS = pl.KS[i];
        Ly->KB = pl.KB[i];
        Ly->units = pl.units[i];
        Ly->w_off = pl.w_off[i];
        Ly->b_off = pl.b_off[i];
        Ly->issue_at = pl.issue_at[i];
        Ly->pending = pl.pending[i];
        Ly->S = pl.S[i];
        Ly->RG = pl.RG[i];
        Ly->KT = pl.KT[i];
        if (Ly->S > 1) {
            Ly->acc = (float*)(wsb + pl.off_acc);
            Ly->cnt = (unsigned*)(wsb + pl.off_cnt);
        }
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
        Ly->in = i == 0 ? x : (const void*)(wsb + pl.off_h[i]);
        Ly->out = i == L - 1 ? out : (void*)(wsb + pl.off_h[i + 1]);
        Ly->wvec = ((Ly->K * es) % 16 == 0) && fmlp_aligned16(Ly->w[0]) && (!g || fmlp_aligned16(Ly->w[1]));
        Ly->hvec = ((Ly->K * es) % 16 == 0) && fmlp_aligned16(Ly->in);
        Ly->stage_off = pl.stage_off[i];
        Ly->hstride = pl.hstride[i];
        all_wvec &= Ly->wvec;
    }
    /* bulk copies (TMA) need sm_90, 16-byte row segments, and every tile resident at once */
    static int env_bulk = -2;
    P.bulk = ctx->cc_major >= 9 && pl.mode == 0 && all_wvec && fmlp_env_knob("FMLP_SM_BULK", &env_bulk) != 0;
    P.x = x;
    static int env_early = -2;
    P.early = fmlp_env_knob("FMLP_SM_EARLY", &env_early) != 0;
    /* staging needs the bulk path (layer 0's rows are bulk copies; the sm_80 cp.async
     * stream's commit groups would be mixed with the staging group) and 16-byte rows */
    for (int i = 0; i < L; i++)
        if (!P.bulk || !P.layer[i].hvec) P.layer[i].stage_off = -1;
    const int lean = sm_lean_fits(&P, &pl, es);
    g_sm_last_lean = lean;
    int rc = sm_prepare(dt, &pl, lean, ctx->device);
    if (rc != FMLP_OK)
        return fmlp_fail(st, rc, "small-M forward: shared-memory attribute / occupancy query failed (%s)",
                         cudaGetErrorString(cudaGetLastError()));
    cudaStream_t stream = (cudaStream_t)ctx->stream;
    const void* fn = sm_kernel_ptr(dt, pl.MT, lean);
    void* args[] = {&P};
    /* cooperative: all blocks resident, grid barrier without a zeroed counter (no memset) */
    cudaError_t e = cudaLaunchCooperativeKernel(fn, dim3(pl.grid), dim3(FMLP_SM_THREADS), args, (size_t)pl.smem, stream);
    if (e != cudaSuccess)
        return fmlp_fail(st, FMLP_ERR_BACKEND, "small-M forward: kernel launch failed: %s", cudaGetErrorString(e));
    return FMLP_OK;
}
