// fmlp_skinny.cu — the skinny forward: one tensor-core launch per layer for M <= 64 rows,
// bias, activation and gating in the same kernel, successive layers overlapped with
// programmatic dependent launch (PDL) on sm_90.
//
// Regime: decode and small batches at transformer widths, where a layer is a weight stream
// (N x K weights, M <= 64 tokens) and cuBLAS tiles leave most SMs idle. Per layer, block
// (cb, s) owns 32 weight rows (plain: output columns 32cb..; gated: 16 gate rows and the
// same 16 up rows) over the K slice s. Its warps split the slice into 32-wide steps and load
// both operands straight from global memory into mma.sync fragments, 16 bytes per lane: the
// weights as the A operand (16 rows), the tokens as B (8 per MMA), with K permuted the same
// way on both sides (lane c holds k = 8c..8c+7 of a step), so no shared-memory staging. The
// warps' partial sums meet in shared memory; with one K slice the block then adds the bias,
// stores z (training) and h = act(z) (gated: act(zg)·zu), else it stores a float32 partial,
// and the last block of the column (an atomic counter) sums the slices in order
// (deterministic) and runs that epilogue. On sm_90 every layer after the first is launched
// as a programmatic dependent of the one before: its blocks start while that layer runs,
// prefetch their weight rows into L2, and only then wait for its output, so the weight
// streams of all layers overlap. At M <= 16 a plain layer that would split K (N = 1024 at K =
// 4096: 32 column blocks) runs blocks of 8 weight rows with the MMA's operands swapped instead
// (SWAP below): enough blocks to stream without a split, so no cross-block reduction.
//
// Numerics: float32 accumulation; z rounded once to the dtype (what eager's nn.Linear
// stores), act applied to that rounded z in float32, h rounded once.
//
// Measured (NOTES.md "CUDA skinny kernel"): fastest in GPU time at M <= 16 with <= 2 layers;
// at 32-64 tokens slower than cuBLAS (each warp waits out its load batches in turn). There, on
// sm_90, every layer with 16-byte rows runs the staged tile kernel instead
// (fmlp_skinny_tile.cu), which the dispatcher takes for gated first layers and, up to 32
// rows, for plain ones. Any M <= 64 is correct (FUSED_MLP_STRATEGY=skinny).
#include "fmlp_skinny.cuh"
#include <stdlib.h>
#include <string.h>

#define SK_ROWS 32 // weight rows per block (two 16-row MMA tiles)
#define SK_RT 2    // 16-row tiles per block
#define SK_MAX_M 64
#define SK_RED_STRIDE (SK_ROWS + 4) // conflict-free stores of the accumulator fragments
#define SK_ROWS8 8  // weight rows per block of the swapped (8-row) kernel


// 8 consecutive elements row[k..k+7], 0 where !ok or at / past kend. VEC (K % 8 == 0, 16-byte
// aligned rows): one 16-byte load under a predicate, straight-line code, so a batch of them is
// in flight at once (branches around each load made ptxas wait for every load in turn:
// NOTES "skinny v1"). STREAM: weights, read once (no L1 allocation).
template <typename T, bool VEC, bool STREAM>
static __device__ __forceinline__ uint4 sk_load8(const T* row, int k, int kend, bool ok) {
    uint4 r;
    if constexpr (VEC) {
        const int pred = ok && k < kend;
        const T* p = row + (pred ? k : 0);
        if (STREAM)
            asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %5, 0;\n"
                         " mov.b32 %0, 0; mov.b32 %1, 0; mov.b32 %2, 0; mov.b32 %3, 0;\n"
                         " @p ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n}"
                         : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p), "r"(pred));
        else
            asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %5, 0;\n"
                         " mov.b32 %0, 0; mov.b32 %1, 0; mov.b32 %2, 0; mov.b32 %3, 0;\n"
                         " @p ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];\n}"
                         : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p), "r"(pred));
    } else {
        unsigned short e[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            e[i] = 0;
            if (ok && k + i < kend) e[i] = __ldg(reinterpret_cast<const unsigned short*>(row + k + i));
        }
        r.x = e[0] | ((unsigned)e[1] << 16);
        r.y = e[2] | ((unsigned)e[3] << 16);
        r.z = e[4] | ((unsigned)e[5] << 16);
        r.w = e[6] | ((unsigned)e[7] << 16);
    }
    return r;
}

// NT: 8-token MMA columns (M <= 8 NT); WARPS: warps per block; U: K steps loaded per batch;
// VEC: 16-byte loads of x and weights (K % 8 == 0, 16-byte aligned x and weights).
// SWAP (plain layers, M <= 16; VEC or element loads): a block owns only 8 weight rows and the operands trade
// places, the tokens the MMA's 16-row A operand (rows past M zero), the 8 weight rows its B
// operand, so 4x as many blocks stream a layer and a narrow layer (N = 1024 at K = 4096) needs
// no K split: no partials, fences and counters, which were ~2.5 µs of the last layer's tail at
// M = 1 (NOTES "v9").
template <typename T, int NT, int WARPS, int U, bool GATED, bool VEC, bool SWAP = false>
__global__ void __launch_bounds__(WARPS * 32, 2) sk_kernel(const __grid_constant__ sk_layer L) {
    extern __shared__ float sk_red[]; // [WARPS][NT * 8 tokens][SK_RED_STRIDE]
    __shared__ unsigned sk_last;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int cb = blockIdx.x, s = blockIdx.y;
    const int cols = SWAP ? SK_ROWS8 : GATED ? SK_ROWS / 2 : SK_ROWS; // output columns per block
    const int n0 = cb * cols;
    const int k0 = s * L.KS, k1 = min(L.K, k0 + L.KS);
    const T* W0 = (const T*)L.w[0];
    const T* W1 = GATED ? (const T*)L.w[1] : W0;

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    // Let the next layer's blocks start now: they prefetch their weights, then wait for us
    // (unless late_trigger: below).
    if (!L.late_trigger) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    if (L.prefetch && warp == 0) {
        const int t = lane >> 4, r = lane & 15; // lane = one weight row of the block
        const int n = (GATED ? n0 : n0 + 16 * t) + r;
        if (n < L.N && k1 > k0 && (!SWAP || lane < SK_ROWS8)) {
            const T* p = (GATED && t ? W1 : W0) + (size_t)n * L.K + k0;
            asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"((unsigned)(k1 - k0) * 2u)
                         : "memory");
        }
    }
    // The previous layer's output (our x) and our counters are only valid after this.
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
    if (cb == 0 && s == 0)
        for (int i = threadIdx.x; i < L.nzero; i += WARPS * 32) L.zero[i] = 0;

    float* red = sk_red + (size_t)warp * NT * 8 * SK_RED_STRIDE; // this warp's partial sums
    if constexpr (SWAP) {
        // Lane (g = lane / 4, c = lane % 4) loads k = 8c..8c+7 of each 32-wide step from weight
        // row n0 + g and from tokens g and g + 8, and both sides use the same K permutation:
        // MMA 1 takes words x, y (k 8c..8c+3) as the logical k pairs (2c, 2c + 8), MMA 2 words z, w.
        const int g8 = lane >> 2;
        const int n = n0 + g8;
        const bool wok = n < L.N;
        const T* wr = W0 + (size_t)(wok ? n : 0) * L.K;
        const bool xok0 = g8 < L.M, xok1 = NT > 1 && g8 + 8 < L.M;
        const T* xr0 = (const T*)L.x + (size_t)(xok0 ? g8 : 0) * L.K;
        const T* xr1 = (const T*)L.x + (size_t)(xok1 ? g8 + 8 : 0) * L.K;
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
        const int c8 = (lane & 3) * 8;
        for (int kk = k0 + 32 * warp; kk < k1; kk += 32 * WARPS * U) {
            uint4 b[U], a0[U], a1[U];
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int k = kk + 32 * WARPS * u + c8;
                b[u] = sk_load8<T, VEC, true>(wr, k, k1, wok);
                a0[u] = sk_load8<T, VEC, false>(xr0, k, k1, xok0);
                a1[u] = NT > 1 ? sk_load8<T, VEC, false>(xr1, k, k1, xok1) : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                const uint32_t lo[4] = {a0[u].x, a1[u].x, a0[u].y, a1[u].y};
                const uint32_t hi[4] = {a0[u].z, a1[u].z, a0[u].w, a1[u].w};
                fmlp_mma16816<T>(acc, lo, b[u].x, b[u].y);
                fmlp_mma16816<T>(acc, hi, b[u].z, b[u].w);
            }
        }
        // C fragment: token g8 + 8 (q >> 1), weight row 2 (lane % 4) + (q & 1)
#pragma unroll
        for (int q = 0; q < 4; q++)
            if ((q >> 1) < NT) red[(g8 + 8 * (q >> 1)) * SK_RED_STRIDE + 2 * (lane & 3) + (q & 1)] = acc[q];
    } else {
        // This lane's rows: tile t, half hh -> weight row r = lane/4 + 8hh of the tile.
        const T* wrow[SK_RT][2];
        int wok[SK_RT][2];
#pragma unroll
        for (int t = 0; t < SK_RT; t++)
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                const int n = (GATED ? n0 : n0 + 16 * t) + (lane >> 2) + 8 * hh;
                wok[t][hh] = n < L.N;
                wrow[t][hh] = (GATED && t ? W1 : W0) + (size_t)(n < L.N ? n : 0) * L.K;
            }
        const T* xrow[NT];
        int xok[NT];
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const int tok = 8 * j + (lane >> 2);
            xok[j] = tok < L.M;
            xrow[j] = (const T*)L.x + (size_t)(tok < L.M ? tok : 0) * L.K;
        }

        float acc[SK_RT][NT][4];
#pragma unroll
        for (int t = 0; t < SK_RT; t++)
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int q = 0; q < 4; q++) acc[t][j][q] = 0.f;

        const int c8 = (lane & 3) * 8;
        for (int kk = k0 + 32 * warp; kk < k1; kk += 32 * WARPS * U) {
            uint4 a[U][SK_RT][2], b[U][NT];
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int k = kk + 32 * WARPS * u + c8;
#pragma unroll
                for (int t = 0; t < SK_RT; t++)
#pragma unroll
                    for (int hh = 0; hh < 2; hh++)
                        a[u][t][hh] = sk_load8<T, VEC, true>(wrow[t][hh], k, k1, wok[t][hh]);
#pragma unroll
                for (int j = 0; j < NT; j++)
                    b[u][j] = sk_load8<T, VEC, false>(xrow[j], k, k1, xok[j]);
            }
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int t = 0; t < SK_RT; t++)
#pragma unroll
                    for (int j = 0; j < NT; j++) {
                        // words x,y of the lane's 8 elements feed the first MMA, z,w the second
                        const uint32_t lo[4] = {a[u][t][0].x, a[u][t][1].x, a[u][t][0].y, a[u][t][1].y};
                        const uint32_t hi[4] = {a[u][t][0].z, a[u][t][1].z, a[u][t][0].w, a[u][t][1].w};
                        fmlp_mma16816<T>(acc[t][j], lo, b[u][j].x, b[u][j].y);
                        fmlp_mma16816<T>(acc[t][j], hi, b[u][j].z, b[u][j].w);
                    }
        }

        // Warps' partial sums -> shared memory, [warp][token][row].
#pragma unroll
        for (int t = 0; t < SK_RT; t++)
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    const int row = 16 * t + (lane >> 2) + 8 * (q >> 1);
                    const int tok = 8 * j + 2 * (lane & 3) + (q & 1);
                    red[tok * SK_RED_STRIDE + row] = acc[t][j][q];
                }
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    // Late trigger: the next layer's blocks launch once every block of ours is past its main
    // loop (a block counts from its first warp here).
    // Where we run more blocks than SMs (two on some), the next layer's early blocks crowded
    // two to an SM beside ours (GeGLU 768/3072 M = 1: 96 blocks on 72 SMs) and ended last;
    // launched now they spread (NOTES "v9f").
    if (L.late_trigger) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
    __syncthreads();

    // Epilogue: thread -> one output column c and tokens tok0 + TSTEP·i. Every load a thread
    // needs is issued before the arithmetic that uses it (biases once; the K-slice partials
    // for all its tokens per slice), so no thread waits on a chain of L2 round trips.
    constexpr int TSTEP = WARPS * 32 / cols;             // token rows per pass of the block
    constexpr int EPT = (NT * 8 + TSTEP - 1) / TSTEP;    // tokens per thread
    const int c = threadIdx.x % cols, tok0 = threadIdx.x / cols, n = n0 + c;
    const bool live = n < L.N; // no early return: the K-split path has block barriers below
    float g[EPT], u[EPT];
#pragma unroll
    for (int i = 0; i < EPT; i++) {
        const int tok = tok0 + TSTEP * i;
        g[i] = u[i] = 0.f;
        if (live && tok < L.M) {
#pragma unroll
            for (int w = 0; w < WARPS; w++) {
                const float* r = sk_red + ((size_t)w * NT * 8 + tok) * SK_RED_STRIDE;
                g[i] += r[c];
                if (GATED) u[i] += r[16 + c];
            }
        }
    }
    const int PW = GATED ? 2 * L.N : L.N;
    if (L.S > 1) {
        // K split: this slice's sums to the partial buffer; the last block of the column sums
        // every slice in order (deterministic) and finishes.
#pragma unroll
        for (int i = 0; i < EPT; i++) {
            const int tok = tok0 + TSTEP * i;
            if (live && tok < L.M) {
                float* p = L.part + ((size_t)s * L.M + tok) * PW;
                p[n] = g[i];
                if (GATED) p[L.N + n] = u[i];
            }
        }
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0) sk_last = atomicAdd(L.cnt + cb, 1u) == (unsigned)(L.S - 1);
        __syncthreads();
        if (!sk_last || !live) return;
        __threadfence();
#pragma unroll
        for (int i = 0; i < EPT; i++) g[i] = u[i] = 0.f;
        // SB slices' partials in flight at once, summed in slice order (deterministic; the
        // zeros past the last slice change nothing), not one load and add per slice (-0.25 µs
        // on GeGLU 768/3072 at M = 1 / 16 with a 6-way split: NOTES "v9").
        constexpr int SB = EPT <= 2 ? 8 : EPT <= 4 ? 4 : 2;
        for (int q0 = 0; q0 < L.S; q0 += SB) {
            float pg[SB][EPT], pu[SB][EPT];
#pragma unroll
            for (int r = 0; r < SB; r++)
#pragma unroll
                for (int i = 0; i < EPT; i++) {
                    const int tok = tok0 + TSTEP * i, q = q0 + r;
                    const float* p = L.part + ((size_t)(q < L.S ? q : 0) * L.M + (tok < L.M ? tok : 0)) * PW;
                    pg[r][i] = q < L.S ? __ldcg(p + n) : 0.f;
                    pu[r][i] = GATED && q < L.S ? __ldcg(p + L.N + n) : 0.f;
                }
#pragma unroll
            for (int r = 0; r < SB; r++)
#pragma unroll
                for (int i = 0; i < EPT; i++) {
                    g[i] += pg[r][i];
                    if (GATED) u[i] += pu[r][i];
                }
        }
    }
    if (!live) return;
    const float bg = sk_bias<T>(L, 0, n);
    const float bu = GATED ? sk_bias<T>(L, 1, n) : 0.f;
    unsigned off[EPT];
    bool ok[EPT];
#pragma unroll
    for (int i = 0; i < EPT; i++) {
        const int tok = tok0 + TSTEP * i;
        off[i] = (unsigned)tok * (unsigned)L.N + (unsigned)n;
        ok[i] = tok < L.M;
        g[i] += bg;
        u[i] += bu;
    }
    sk_finish_n<T, GATED, EPT>(L, off, ok, g, u);
}

/* ========================================================================== */
/* Host side                                                                  */
/* ========================================================================== */

// Launch shape for M tokens: NT 8-token MMA columns, warps per block, K steps per load batch
// (registers: the accumulators are 8·NT floats per tile, each batch holds U·(4 + NT) 16-byte
// fragments; <= 2 NT fits 256 threads at two blocks per SM, 4-8 NT 128 threads).
static int sk_nt(int64_t M) { return M <= 8 ? 1 : M <= 16 ? 2 : M <= 32 ? 4 : 8; }
static constexpr int sk_warps(int NT) { return NT <= 2 ? 8 : 4; }
static constexpr int sk_unroll(int NT) { return NT == 1 ? 4 : NT == 2 ? 3 : 2; }

template <typename T, int NT>
static const void* sk_fn(int gated, int vec, int rows8) {
    constexpr int W = sk_warps(NT), U = sk_unroll(NT);
    if constexpr (NT <= 2) {
        constexpr int U8 = NT == 1 ? 8 : 6; // K steps per batch of the 8-row kernel (registers)
        if (rows8 && !gated)
            return vec ? (const void*)sk_kernel<T, NT, W, U8, false, true, true>
                       : (const void*)sk_kernel<T, NT, W, U8, false, false, true>;
    }
    if (vec) return gated ? (const void*)sk_kernel<T, NT, W, U, true, true> : (const void*)sk_kernel<T, NT, W, U, false, true>;
    return gated ? (const void*)sk_kernel<T, NT, W, U, true, false> : (const void*)sk_kernel<T, NT, W, U, false, false>;
}

template <typename T>
static const void* sk_fn_t(int NT, int gated, int vec, int rows8) {
    switch (NT) {
    case 1: return sk_fn<T, 1>(gated, vec, rows8);
    case 2: return sk_fn<T, 2>(gated, vec, rows8);
    case 4: return sk_fn<T, 4>(gated, vec, 0);
    default: return sk_fn<T, 8>(gated, vec, 0);
    }
}

static const void* sk_kernel_ptr(fmlp_dtype dt, int NT, int gated, int vec, int rows8) {
    return dt == FMLP_BF16 ? sk_fn_t<__nv_bfloat16>(NT, gated, vec, rows8) : sk_fn_t<__half>(NT, gated, vec, rows8);
}

static size_t sk_red_bytes(int NT) { return (size_t)sk_warps(NT) * NT * 8 * SK_RED_STRIDE * sizeof(float); }

// Per layer: column blocks and K slices. A layer of 32-row blocks with fewer column blocks than
// 3/4 of the SMs splits K so that about one block per SM streams (each slice a whole number of
// 32-wide steps); at M <= 16 a plain one runs 8-row blocks instead, split only below half the SMs.
// When the first layer splits, its counters need a memset; later layers' are reset by the
// first layer's launch.
typedef struct {
    int L;
    int nb[FMLP_MAX_LAYERS], S[FMLP_MAX_LAYERS], KS[FMLP_MAX_LAYERS];
    int rows8[FMLP_MAX_LAYERS]; // the layer runs the 8-row (swapped) kernel
    size_t off_h[2], off_part, off_cnt[FMLP_MAX_LAYERS], total;
    int ncnt; // counters of layers >= 1 (contiguous from off_cnt[1])
} sk_plan;

static size_t sk_align(size_t v) { return (v + 255) & ~(size_t)255; }

// FMLP_SK_ROWS8=0 (dev knob): never the 8-row kernel, to compare.
static int sk_rows8_env(void) {
    static int env = -2;
    return fmlp_env_knob("FMLP_SK_ROWS8", &env) != 0;
}

// Column blocks and K slices of a layer with `rows` weight rows per block: with fewer than
// min_nb column blocks, K is split so that about one block per SM streams (each slice a whole
// number of 32-wide steps).
static void sk_split(int64_t N, int64_t K, int rows, int min_nb, int sm_count, int* nb_out, int* S_out, int* KS_out) {
    const int nb = (int)((N + rows - 1) / rows);
    const int64_t steps = (K + 31) / 32;
    int S = 1;
    if (nb < min_nb) S = (int)((sm_count + nb - 1) / nb);
    if (S > steps) S = (int)steps;
    if (S < 1) S = 1;
    const int KS = (int)(((steps + S - 1) / S) * 32);
    *nb_out = nb;
    *S_out = (int)((K + KS - 1) / KS);
    *KS_out = KS;
}

static void sk_make_plan(const fmlp_desc* d, fmlp_dtype dt, int64_t M, int sm_count, sk_plan* pl) {
    memset(pl, 0, sizeof *pl);
    const int L = d->n_layers;
    pl->L = L;
    size_t part = 0, hmax = 0;
    for (int i = 0; i < L; i++) {
        const int gated = d->gated && i == 0;
        const int64_t N = d->width[i + 1], K = d->width[i];
        int nb, S, KS;
        sk_split(N, K, gated ? 16 : 32, (3 * sm_count + 3) / 4, sm_count, &nb, &S, &KS);
        // A plain layer that would split K at M <= 16 runs 8-row blocks instead: four times as
        // many, and no split while they fill half the SMs.
        pl->rows8[i] = !gated && M <= 16 && S > 1 && sk_rows8_env();
        if (pl->rows8[i]) sk_split(N, K, SK_ROWS8, (sm_count + 1) / 2, sm_count, &nb, &S, &KS);
        pl->nb[i] = nb;
        pl->S[i] = S;
        pl->KS[i] = KS;
        if (S > 1) {
            size_t pb = (size_t)S * M * N * (gated ? 2 : 1) * sizeof(float);
            if (pb > part) part = pb;
        }
        if (i < L - 1) {
            size_t hb = (size_t)M * N * fmlp_dtype_size(dt);
            if (hb > hmax) hmax = hb;
        }
    }
    size_t at = 0;
    pl->off_h[0] = at;
    at = sk_align(at + hmax);
    pl->off_h[1] = at;
    at = sk_align(at + hmax);
    pl->off_part = at;
    at = sk_align(at + part);
    pl->off_cnt[0] = at; /* the first layer's counters: a memset when it splits K */
    at = sk_align(at + (size_t)pl->nb[0] * sizeof(unsigned));
    for (int i = 1; i < L; i++) { /* later layers': contiguous, reset by the first layer */
        pl->off_cnt[i] = at + (size_t)pl->ncnt * sizeof(unsigned);
        pl->ncnt += pl->nb[i];
    }
    at = sk_align(at + (size_t)pl->ncnt * sizeof(unsigned));
    pl->total = at;
}

static const char* sk_check(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx) {
    if (fmlp_desc_validate(d, NULL) != FMLP_OK) return "invalid MLP description";
    if (dt != FMLP_BF16 && dt != FMLP_F16) return "dtype must be bfloat16 or float16 (tensor-core MMA, no TF32)";
    if (M < 0) return "M < 0";
    if (M > SK_MAX_M) return "M > 64 rows: the skinny kernel holds at most 64 tokens per MMA column set";
    if (ctx == NULL || ctx->sm_count < 1) return "ctx->sm_count not set (call fmlp_cuda_ctx_init)";
    if (ctx->cc_major < 8) return "needs compute capability 8.0 or newer (mma.sync bf16)";
    for (int i = 0; i <= d->n_layers; i++)
        if (d->width[i] > (1 << 24)) return "a width exceeds 2^24 (32-bit indexing inside the kernel)";
    return NULL;
}

extern "C" int fmlp_skinny_supported(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx,
                                     const char** why) {
    const char* w = sk_check(d, dt, M, ctx);
    if (why) *why = w ? w : "one tensor-core launch per layer, M <= 64, layers overlapped (PDL)";
    return w == NULL;
}

extern "C" size_t fmlp_skinny_workspace_bytes(const fmlp_desc* d, fmlp_dtype dt, int64_t M,
                                              const fmlp_cuda_ctx* ctx) {
    if (sk_check(d, dt, M, ctx)) return 0;
    sk_plan pl;
    sk_make_plan(d, dt, M, ctx->sm_count, &pl);
    return pl.total;
}

// FMLP_SK_PDL=0 (dev knob): plain stream-ordered launches, to measure what PDL buys.
static int sk_pdl_env(void) {
    static int env = -2;
    return fmlp_env_knob("FMLP_SK_PDL", &env) != 0;
}

// FMLP_SK_LATETRIG=0 (dev knob): never trigger the next layer late (late_trigger).
static int sk_late_trigger_env(void) {
    static int env = -2;
    return fmlp_env_knob("FMLP_SK_LATETRIG", &env) != 0;
}

// FMLP_SK_TILE=0 (dev knob): the register kernel at every M, to compare the two.
static int sk_tile_env(void) {
    static int env = -2;
    return fmlp_env_knob("FMLP_SK_TILE", &env) != 0;
}

extern "C" int fmlp_forward_skinny_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x,
                                        const fmlp_params* p, void* out, void* const* saved, void* ws,
                                        const fmlp_cuda_ctx* ctx, fmlp_status* st) {
    if (fmlp_desc_validate(d, st) != FMLP_OK) return st ? st->code : FMLP_ERR_INVALID;
    const char* why = sk_check(d, dt, M, ctx);
    if (why) return fmlp_fail(st, FMLP_ERR_UNSUPPORTED, "skinny forward: %s", why);
    if (M == 0) return FMLP_OK;
    if (ws == NULL || ((uintptr_t)ws & 255))
        return fmlp_fail(st, FMLP_ERR_INVALID, "skinny forward: workspace must be non-NULL and 256-byte aligned");
    sk_plan pl;
    sk_make_plan(d, dt, M, ctx->sm_count, &pl);
    char* wsb = (char*)ws;
    const int NT = sk_nt(M);
    const size_t smem = sk_red_bytes(NT);
    const int pdl = ctx->cc_major >= 9 && sk_pdl_env();
    // 16 < M <= 64 on sm_90: the staged tile kernel for every layer with 16-byte rows
    const int tile = ctx->cc_major >= 9 && M > 16 && sk_tile_env();
    const int optin = tile ? fmlp_optin_smem(ctx->device) : 0;
    cudaStream_t stream = (cudaStream_t)ctx->stream;
    const int L = d->n_layers;
    if (pl.S[0] > 1) {
        cudaError_t e = cudaMemsetAsync(wsb + pl.off_cnt[0], 0, (size_t)pl.nb[0] * sizeof(unsigned), stream);
        if (e != cudaSuccess) return fmlp_cuda_check(e, st, "skinny forward: counter reset");
    }
    const void* in = x;
    size_t prev_smem = 0; /* the previous layer's dynamic shared memory per block */
    for (int i = 0; i < L; i++) {
        const int gated = d->gated && i == 0;
        const int k0 = i == 0 ? 0 : i + d->gated; /* weight index of layer i (plain / gate) */
        sk_layer Ly;
        memset(&Ly, 0, sizeof Ly);
        Ly.x = in;
        for (int j = 0; j <= gated; j++) {
            Ly.w[j] = p->w[k0 + j];
            Ly.b[j] = d->has_bias[k0 + j] ? p->b[k0 + j] : NULL;
            if (Ly.w[j] == NULL) return fmlp_fail(st, FMLP_ERR_INVALID, "skinny forward: weights[%d] is NULL", k0 + j);
            if (d->has_bias[k0 + j] && p->b[k0 + j] == NULL)
                return fmlp_fail(st, FMLP_ERR_INVALID, "skinny forward: biases[%d] is NULL but has_bias is set", k0 + j);
        }
        const int si = saved ? fmlp_saved_index(d, i) : -1;
        if (si >= 0) {
            Ly.z[0] = saved[si];
            if (gated) Ly.z[1] = saved[si + 1];
        }
        Ly.h = i == L - 1 ? out : (void*)(wsb + pl.off_h[i & 1]);
        Ly.M = (int)M;
        Ly.N = (int)d->width[i + 1];
        Ly.K = (int)d->width[i];
        Ly.KS = pl.KS[i];
        Ly.S = pl.S[i];
        Ly.act = d->act[i];
        Ly.slope = d->negative_slope;
        Ly.part = (float*)(wsb + pl.off_part);
        Ly.cnt = (unsigned*)(wsb + pl.off_cnt[i]);
        if (i == 0 && L > 1) {
            Ly.zero = (unsigned*)(wsb + pl.off_cnt[1]);
            Ly.nzero = pl.ncnt;
        }
        const int kv = Ly.K % 8 == 0;
        const int wvec = kv && fmlp_aligned16(Ly.w[0]) && (!gated || fmlp_aligned16(Ly.w[1]));
        const int vec = wvec && fmlp_aligned16(in);
        Ly.prefetch = pdl && i > 0 && wvec;
        /* the next layer, 8-row, launches after our loads when we hold more blocks than SMs */
        Ly.late_trigger = pdl && i + 1 < L && pl.rows8[i + 1] && pl.nb[i] * pl.S[i] > ctx->sm_count &&
                          sk_late_trigger_env();

        int tS, tKS;
        size_t tsmem;
        if (tile && vec && sk_tile_plan(gated, (int)M, Ly.N, Ly.K, ctx->sm_count, optin, &tS, &tKS, &tsmem)) {
            Ly.S = tS;
            Ly.KS = tKS;
            cudaError_t e = sk_tile_launch(Ly, dt, gated, tsmem, pdl && i > 0, prev_smem, ctx->device, ctx->sm_count,
                                           stream, &prev_smem);
            if (e != cudaSuccess)
                return fmlp_fail(st, FMLP_ERR_BACKEND, "skinny forward: layer %d (staged tile kernel) launch failed: %s",
                                 i, cudaGetErrorString(e));
            in = Ly.h;
            continue;
        }
        const void* fn = sk_kernel_ptr(dt, NT, gated, vec, pl.rows8[i]);
        cudaLaunchConfig_t cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.gridDim = dim3((unsigned)pl.nb[i], (unsigned)pl.S[i]);
        cfg.blockDim = dim3((unsigned)(sk_warps(NT) * 32));
        cfg.dynamicSmemBytes = smem;
        cfg.stream = stream;
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = attr;
        cfg.numAttrs = (pdl && i > 0) ? 1 : 0;
        void* args[] = {&Ly};
        prev_smem = smem;
        cudaError_t e = cudaLaunchKernelExC(&cfg, fn, args);
        if (e != cudaSuccess)
            return fmlp_fail(st, FMLP_ERR_BACKEND, "skinny forward: layer %d launch failed: %s", i, cudaGetErrorString(e));
        in = Ly.h;
    }
    return FMLP_OK;
}
