// fmlp_skinny_tile.cu — the skinny forward's staged layer kernel for 16 < M <= 64 tokens on
// sm_90: the whole K slice of a block in shared memory at once, K split reduced inside a
// thread-block cluster.
//
// Why (NOTES.md "CUDA skinny kernel"): at 32-64 tokens the register kernel (fmlp_skinny.cu)
// holds one batch of fragments per warp and waits out a load latency per batch, and every
// 32-row block re-reads the tokens (x is 2/3 of its traffic). Here block (cb, s) owns 64 weight
// rows (plain: 64 output columns; gated: 32 gate rows and the same 32 up rows) and all MT
// tokens over K slice s, and puts every byte of that slice in flight at entry: TMA tiles of
// 64 k x the block's rows (128-byte swizzle, zero fill past every edge), one chunk of 64 k per
// mbarrier. The weight tiles are issued before griddepcontrol.wait (they depend on no earlier
// layer), x's after. Warps start on chunk c as soon as it landed: 4 warps per K parity (even /
// odd 16-wide steps), each a 32-row x MT/2-token tile, ldmatrix from the swizzled rows
// (conflict-free), mma.sync m16n8k16 with float32 accumulators. The two parities meet in
// registers (each finishes half the tokens, one 16-byte exchange per thread); with one K
// slice every thread then finishes its outputs from registers; with S > 1 slices the S blocks
// of a column form a cluster (1, S, 1), and block s sums 1/S of the tile over every block's
// shared memory (distributed shared memory, in slice order: deterministic). The epilogue
// (sk_finish_n) adds the bias, stores z (training) and h = act(z) (gated: act(zg)·zu).
#include "fmlp_skinny.cuh"
#include <cuda.h>
#include <cudaTypedefs.h>
#include <string.h>

#define ST_ROWS 64        // weight rows per block
#define ST_CK 64          // K elements per chunk: one 128-byte line per row
#define ST_MAX_CHUNKS 16  // mbarriers per block: the K slice is at most 1024 elements
#define ST_MAX_S 8        // K slices = cluster size (portable limit)
#define ST_THREADS 256
#define ST_XCH_BYTES (ST_THREADS * 64) // the parity exchange: 4 x 16 bytes per thread (MT = 64)
#define ST_RED_STRIDE (ST_ROWS + 4) // K split: float32 tile [token][row], conflict-free fragment stores

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// Byte offset of 16-byte unit q (0..7) of row r in a chunk: 128-byte rows, the units XOR-ed
// with r & 7, so eight rows' unit q sit in eight different bank groups.
static __device__ __forceinline__ uint32_t st_off(int r, int q) { return (uint32_t)(r * 128 + ((q ^ (r & 7)) << 4)); }

// Tile (k0..k0+63, rows r0..) of the tensor map into shared memory at dst, completing on bar.
static __device__ __forceinline__ void st_tma(uint32_t dst, const CUtensorMap* map, int k0, int r0, uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
                 ::"r"(dst), "l"(reinterpret_cast<uint64_t>(map)), "r"(k0), "r"(r0), "r"(bar) : "memory");
}
static __device__ __forceinline__ void st_expect(uint32_t bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
static __device__ __forceinline__ void st_wait0(uint32_t bar) {
    uint32_t done = 0;
    while (!done)
        asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0;\n selp.u32 %0, 1, 0, p;\n}"
                     : "=r"(done) : "r"(bar) : "memory");
}
static __device__ __forceinline__ void st_ldsm4(uint32_t* r, uint32_t a) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
static __device__ __forceinline__ void st_cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n barrier.cluster.wait.acquire.aligned;" ::: "memory");
}
// 16 bytes at shared address a (16-byte aligned) of cluster block `rank`
static __device__ __forceinline__ float4 st_ld_remote4(uint32_t a, int rank) {
    uint32_t ra;
    float4 v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(ra) : "r"(a), "r"(rank));
    asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "r"(ra) : "memory");
    return v;
}
#endif

// The TMA descriptors of a layer: the weights (gated: gate, up; box 64 k x the block's rows of
// each) and x (box 64 k x MT tokens), 128-byte swizzle, zero fill past every edge.
struct st_maps {
    CUtensorMap w[2];
    CUtensorMap x;
};

// MT: tokens held (32 or 64, M <= MT).
template <typename T, int MT, bool GATED>
__global__ void __launch_bounds__(ST_THREADS, 1) st_kernel(const __grid_constant__ sk_layer L,
                                                            const __grid_constant__ st_maps TM) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    // [chunk][ST_ROWS + MT rows][128 B] from a 1024-byte aligned base (the swizzle's period),
    // later the float32 tile
    extern __shared__ unsigned char st_raw[];
    __shared__ __align__(8) uint64_t st_bar[ST_MAX_CHUNKS];
    constexpr int CB = (ST_ROWS + MT) * 128;                 // bytes per chunk
    constexpr int cols = GATED ? ST_ROWS / 2 : ST_ROWS;       // output columns per block
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int cb = blockIdx.x, s = blockIdx.y;
    const int n0 = cb * cols;
    const int k0 = s * L.KS, k1 = min(L.K, k0 + L.KS);
    const int nch = (k1 - k0 + ST_CK - 1) / ST_CK;
    const uint32_t raw = (uint32_t)__cvta_generic_to_shared(st_raw);
    const uint32_t buf = (raw + 1023u) & ~1023u;
    unsigned char* st_buf = st_raw + (buf - raw);
    const uint32_t bar0 = (uint32_t)__cvta_generic_to_shared(st_bar);

    // Chunk c's mbarrier completes when both copy threads arrived and all its bytes landed.
    if (tid < nch)
        asm volatile("mbarrier.init.shared::cta.b64 [%0], 2;" ::"r"(bar0 + 8 * tid) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    __syncthreads();
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");

    // Copies (TMA): thread 0 the weight tiles of every chunk, before the wait for the previous
    // layer (they depend on none); thread 128 x's tiles, after it. (Spreading the issue over
    // eight warps measured slower: NOTES "v6".)
    if (tid == 0) {
        for (int c = 0; c < nch; c++) {
            const uint32_t bar = bar0 + 8 * c, dst = buf + c * CB;
            st_expect(bar, ST_ROWS * 128);
            st_tma(dst, &TM.w[0], k0 + ST_CK * c, n0, bar);
            if (GATED) st_tma(dst + cols * 128, &TM.w[1], k0 + ST_CK * c, n0, bar);
        }
    }
    // The previous layer's output (our x) and the counters we reset are valid only after this;
    // it also orders our stores of h after the previous layer's reads of that buffer.
    asm volatile("griddepcontrol.wait;" ::: "memory");
    if (cb == 0 && s == 0)
        for (int i = tid; i < L.nzero; i += ST_THREADS) L.zero[i] = 0;
    if (tid == 128) {
        for (int c = 0; c < nch; c++) {
            const uint32_t bar = bar0 + 8 * c;
            st_expect(bar, MT * 128);
            st_tma(buf + c * CB + ST_ROWS * 128, &TM.x, k0 + ST_CK * c, 0, bar);
        }
    }

    // Warp w: K parity kg (16-wide steps 2j + kg of each chunk), row group rg, token half tg.
    // Its A tiles: plain rows 32 rg + 16 t; gated gate rows 16 rg (t = 0) and the same up rows
    // 32 + 16 rg (t = 1), so one thread holds gate and up of the same outputs.
    constexpr int NTW = MT / 16; // 8-token MMA tiles per warp
    const int kg = warp >> 2, rg = warp & 1, tg = (warp >> 1) & 1;
    const int arow = (GATED ? 16 : 32) * rg + (lane & 15);
    constexpr int TSTEP_ROWS = GATED ? 32 : 16;
    const int aunit = lane >> 4;
    const int btok = tg * (MT / 2) + (lane & 7) + ((lane >> 4) << 3), bunit = (lane >> 3) & 1;
    // This thread's output column for A tile t, fragment half hh (plain: row rowbase + 16t + 8hh;
    // gated: gate / up row rowbase + 8hh). With one K slice their biases are loaded now, so
    // their latency hides under the copies.
    const int rowbase = (GATED ? 16 : 32) * rg + (lane >> 2);
    auto out_col = [&](int t, int hh) { return n0 + rowbase + (GATED ? 0 : 16 * t) + 8 * hh; };
    float bz[2][2], bup[2];
#pragma unroll
    for (int t = 0; t < 2; t++)
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            const int n = out_col(t, hh);
            const bool ok = L.S == 1 && n < L.N;
            bz[t][hh] = ok ? sk_bias<T>(L, 0, n) : 0.f;
            if (t == 0) bup[hh] = GATED && ok ? sk_bias<T>(L, 1, n) : 0.f;
        }
    float acc[2][NTW][4];
#pragma unroll
    for (int t = 0; t < 2; t++)
#pragma unroll
        for (int j = 0; j < NTW; j++)
#pragma unroll
            for (int q = 0; q < 4; q++) acc[t][j][q] = 0.f;
    for (int c = 0; c < nch; c++) {
        st_wait0(bar0 + 8 * c);
        const uint32_t base = buf + c * CB;
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            const int ks = 2 * h2 + kg; // 16-wide step of the chunk: units 2 ks, 2 ks + 1
            uint32_t a[2][4], b[NTW / 2][4];
#pragma unroll
            for (int t = 0; t < 2; t++) st_ldsm4(a[t], base + st_off(arow + TSTEP_ROWS * t, 2 * ks + aunit));
#pragma unroll
            for (int jj = 0; jj < NTW / 2; jj++) st_ldsm4(b[jj], base + st_off(ST_ROWS + btok + 16 * jj, 2 * ks + bunit));
#pragma unroll
            for (int t = 0; t < 2; t++)
#pragma unroll
                for (int j = 0; j < NTW; j++)
                    fmlp_mma16816<T>(acc[t][j], a[t], b[j >> 1][2 * (j & 1)], b[j >> 1][2 * (j & 1) + 1]);
        }
    }

    // Tail. The two K parities meet in registers: parity kg keeps token tiles [kg·NH, kg·NH + NH)
    // of its accumulators and hands the other half to its partner warp (warp ^ 4: same rows and
    // tokens, other parity) through shared memory, 16 bytes per lane and store (conflict-free).
    // Every thread then holds whole sums for its tiles: with one K slice it finishes them from
    // registers; with S slices it puts them in the block's float32 tile for the cluster's sum.
    // (The old tail, a shared-memory pass per parity and an epilogue re-reading the tile with
    // per-output index math, was ~900 instructions per warp at 8 warps per SM: NOTES "v7".)
    constexpr int NH = NTW / 2;
    const int own = kg * NH;
    float mine[2][NH][4]; // (static indices only: a runtime index would put acc in local memory)
    float4* xch = reinterpret_cast<float4*>(st_buf);
    __syncthreads(); // every warp is done with the chunks: the tail reuses their shared memory
#pragma unroll
    for (int t = 0; t < 2; t++)
#pragma unroll
        for (int jj = 0; jj < NH; jj++) {
            float g4[4];
#pragma unroll
            for (int q = 0; q < 4; q++) {
                mine[t][jj][q] = kg ? acc[t][NH + jj][q] : acc[t][jj][q];
                g4[q] = kg ? acc[t][jj][q] : acc[t][NH + jj][q];
            }
            xch[((warp * 2 + t) * NH + jj) * 32 + lane] = make_float4(g4[0], g4[1], g4[2], g4[3]);
        }
    __syncthreads();
#pragma unroll
    for (int t = 0; t < 2; t++)
#pragma unroll
        for (int jj = 0; jj < NH; jj++) {
            const float4 v = xch[(((warp ^ 4) * 2 + t) * NH + jj) * 32 + lane];
            mine[t][jj][0] += v.x;
            mine[t][jj][1] += v.y;
            mine[t][jj][2] += v.z;
            mine[t][jj][3] += v.w;
        }
    // This thread's outputs: token tile own + jj, fragment element q: token tok0 + 8jj + (q & 1);
    // row (A tile t) rowbase + 16·(GATED ? 0 : t) + 8·(q >> 1), gated rows being gate (t = 0) /
    // up (t = 1) of output column row.
    const int tok0 = tg * (MT / 2) + 8 * own + 2 * (lane & 3);
    const int S = L.S;
    if (S == 1) {
        constexpr int NO = (GATED ? 1 : 2) * 2 * NH * 2; // outputs of this thread
        float gv[NO], uv[NO];
        unsigned off[NO];
        bool ok[NO];
#pragma unroll
        for (int t = 0; t < (GATED ? 1 : 2); t++)
#pragma unroll
            for (int hh = 0; hh < 2; hh++)
#pragma unroll
                for (int jj = 0; jj < NH; jj++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int i = ((t * 2 + hh) * NH + jj) * 2 + e, q = 2 * hh + e;
                        const int n = out_col(t, hh), tok = tok0 + 8 * jj + e;
                        ok[i] = n < L.N && tok < L.M;
                        off[i] = (unsigned)tok * (unsigned)L.N + (unsigned)n;
                        gv[i] = mine[t][jj][q] + bz[t][hh];
                        uv[i] = GATED ? mine[1][jj][q] + bup[hh] : 0.f;
                    }
        sk_finish_n<T, GATED, NO>(L, off, ok, gv, uv);
        return;
    }

    // K split: the merged sums into this block's tile [token][row]; block s of the cluster then
    // finishes its share of the (token, 4-column group)s, summing the S tiles in slice order
    // (deterministic) with 16-byte loads of distributed shared memory.
    float* red = reinterpret_cast<float*>(st_buf + ST_XCH_BYTES);
#pragma unroll
    for (int t = 0; t < 2; t++)
#pragma unroll
        for (int jj = 0; jj < NH; jj++)
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const int row = rowbase + TSTEP_ROWS * t + 8 * (q >> 1);
                red[(tok0 + 8 * jj + (q & 1)) * ST_RED_STRIDE + row] = mine[t][jj][q];
            }
    st_cluster_sync(); // every block's tile is complete and visible in the cluster
    constexpr int CG = cols / 4;
    const int total = L.M * CG, share = (total + S - 1) / S;
    const int e0 = s * share, e1 = min(total, e0 + share);
    const uint32_t red_a = (uint32_t)__cvta_generic_to_shared(red);
    for (int e = e0 + tid; e < e1; e += ST_THREADS) {
        const int tok = e / CG, c = 4 * (e - tok * CG);
        const uint32_t ag = red_a + 4u * (uint32_t)(tok * ST_RED_STRIDE + c);
        float4 vg[ST_MAX_S], vu[ST_MAX_S];
#pragma unroll
        for (int r = 0; r < ST_MAX_S; r++) {
            vg[r] = r < S ? st_ld_remote4(ag, r) : make_float4(0.f, 0.f, 0.f, 0.f);
            vu[r] = GATED && r < S ? st_ld_remote4(ag + 4u * cols, r) : make_float4(0.f, 0.f, 0.f, 0.f);
        }
        float4 g = vg[0], u = vu[0];
#pragma unroll
        for (int r = 1; r < ST_MAX_S; r++) {
            g.x += vg[r].x, g.y += vg[r].y, g.z += vg[r].z, g.w += vg[r].w;
            u.x += vu[r].x, u.y += vu[r].y, u.z += vu[r].z, u.w += vu[r].w;
        }
        float gs[4] = {g.x, g.y, g.z, g.w}, us[4] = {u.x, u.y, u.z, u.w};
        unsigned off[4];
        bool ok[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int n = n0 + c + i;
            ok[i] = n < L.N;
            off[i] = (unsigned)tok * (unsigned)L.N + (unsigned)n;
            gs[i] += ok[i] ? sk_bias<T>(L, 0, n) : 0.f;
            if (GATED) us[i] += ok[i] ? sk_bias<T>(L, 1, n) : 0.f;
        }
        sk_finish_n<T, GATED, 4>(L, off, ok, gs, us);
    }
    st_cluster_sync(); // no block leaves while another still reads its tile
#else
    (void)L;
    (void)TM;
    __trap(); // the host launches this kernel on sm_90 only
#endif
}

/* ========================================================================== */
/* Host side                                                                  */
/* ========================================================================== */

static int st_mt(int M) { return M <= 32 ? 32 : 64; }

static size_t st_chunk_bytes(int MT) { return (size_t)(ST_ROWS + MT) * 128; }

// cuTensorMapEncodeTiled from the driver (no link against libcuda), NULL if unavailable.
static PFN_cuTensorMapEncodeTiled_v12000 st_encoder(void) {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = NULL;
    static int tried = 0;
    if (!tried) {
        cudaDriverEntryPointQueryResult q;
        void* p = NULL;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) == cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
        tried = 1;
    }
    return fn;
}

// A (rows, K) row-major 16-bit matrix as TMA tiles of 64 k x box_rows rows.
static int st_map(CUtensorMap* m, const void* base, int rows, int K, int box_rows, fmlp_dtype dt) {
    const cuuint64_t dims[2] = {(cuuint64_t)K, (cuuint64_t)rows};
    const cuuint64_t strides[1] = {(cuuint64_t)K * 2};
    const cuuint32_t box[2] = {ST_CK, (cuuint32_t)box_rows};
    const cuuint32_t es[2] = {1, 1};
    return st_encoder()(m, dt == FMLP_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2,
                        const_cast<void*>(base), dims, strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
                        CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// FMLP_ST_S (dev knob): force the number of K slices where the layer allows it.
static int st_force_s(void) {
    static int env = -2;
    return fmlp_env_knob("FMLP_ST_S", &env);
}

int sk_tile_plan(int gated, int M, int N, int K, int sm_count, int optin_smem, int* S_out, int* KS_out,
                 size_t* smem_out) {
    if (M > 64 || K < 1 || N < 1 || !st_encoder()) return 0;
    const int MT = st_mt(M);
    const int cols = gated ? ST_ROWS / 2 : ST_ROWS;
    const int nb = (N + cols - 1) / cols;
    const size_t cb = st_chunk_bytes(MT);
    const int budget = optin_smem - 2048; // static shared memory (the mbarriers), base alignment
    int maxch = budget > 0 ? (int)((size_t)budget / cb) : 0;
    if (maxch > ST_MAX_CHUNKS) maxch = ST_MAX_CHUNKS;
    if (maxch < 1) return 0;
    const int chunks = (K + ST_CK - 1) / ST_CK;
    const int smin = (chunks + maxch - 1) / maxch;
    if (smin > ST_MAX_S) return 0;
    int S = sm_count / nb;
    if (S > ST_MAX_S) S = ST_MAX_S;
    if (st_force_s() > 0) S = st_force_s();
    if (S < smin) S = smin;
    if (S > chunks) S = chunks;
    if (S > ST_MAX_S) S = ST_MAX_S;
    const int cps = (chunks + S - 1) / S; // chunks per slice
    S = (chunks + cps - 1) / cps;
    size_t smem = (size_t)cps * cb;
    if (smem < ST_XCH_BYTES) smem = ST_XCH_BYTES;
    if (S > 1 && smem < ST_XCH_BYTES + (size_t)MT * ST_RED_STRIDE * sizeof(float))
        smem = ST_XCH_BYTES + (size_t)MT * ST_RED_STRIDE * sizeof(float);
    smem += 1024; // the base rounded up to the swizzle period
    *S_out = S;
    *KS_out = cps * ST_CK;
    *smem_out = smem;
    return 1;
}

template <typename T>
static const void* st_fn(int MT, int gated) {
    if (MT == 32) return gated ? (const void*)st_kernel<T, 32, true> : (const void*)st_kernel<T, 32, false>;
    return gated ? (const void*)st_kernel<T, 64, true> : (const void*)st_kernel<T, 64, false>;
}

// FMLP_ST_PACK=1 (dev knob): never raise a dependent launch's shared memory to keep its blocks
// apart (below); FMLP_ST_CARVE=0: keep the driver's default carveout.
static int st_pack_env(void) {
    static int env = -2;
    return fmlp_env_knob("FMLP_ST_PACK", &env) > 0;
}

cudaError_t sk_tile_launch(const sk_layer& L, fmlp_dtype dt, int gated, size_t smem, int pdl, size_t prev_smem,
                           int device, int sm_count, cudaStream_t stream, size_t* smem_used) {
    const int MT = st_mt(L.M);
    const void* fn = dt == FMLP_BF16 ? st_fn<__nv_bfloat16>(MT, gated) : st_fn<__half>(MT, gated);
    const int cols = gated ? ST_ROWS / 2 : ST_ROWS;
    const int nb = (L.N + cols - 1) / cols, blocks = nb * L.S; // column blocks x K slices
    // Where blocks go (NOTES "v8"). A dependent launch (PDL) starts while the layer before still
    // holds its multiprocessors. Its blocks fit beside the earlier layer's when both blocks'
    // shared memory does (every tile kernel asks for the maximum shared carveout, so the two
    // kernels' configurations match; with the default carveout they measured as if they never
    // shared a multiprocessor). Where they cannot share, the new blocks crowd two or three to
    // each idle multiprocessor and each cluster waits for its slowest block: then asking for
    // over half a multiprocessor's shared memory keeps them one per multiprocessor (when the
    // grid fits in one wave). GeGLU 768/3072 bf16, graph replay: M = 64 12.8-13.0 vs 14.7 µs,
    // M = 32 10.5-10.7 vs 13.1 (carveout alone).
    const size_t optin = (size_t)fmlp_optin_smem(device), block_extra = 1024 + 256; // reserved + static
    const size_t half = optin / 2 + 1024;
    const int share = prev_smem + smem + 2 * block_extra <= optin + 1024; // optin + 1 KB: one SM's shared memory
    if (pdl && !share && blocks <= sm_count && smem < half && !st_pack_env()) smem = half;
    *smem_used = smem;
    static size_t allowed[8][FMLP_CUDA_MAX_DEV]; // per kernel instance and device
    static unsigned char carved[8][FMLP_CUDA_MAX_DEV];
    const int slot = (dt == FMLP_BF16) * 4 + (MT == 64) * 2 + (gated != 0);
    cudaError_t e = fmlp_allow_smem(fn, smem, device, allowed[slot]);
    if (e != cudaSuccess) return e;
    static int env_carve = -2;
    if (device >= 0 && device < FMLP_CUDA_MAX_DEV && !carved[slot][device] && fmlp_env_knob("FMLP_ST_CARVE", &env_carve) != 0) {
        e = cudaFuncSetAttribute(fn, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
        if (e != cudaSuccess) return e;
        carved[slot][device] = 1;
    }

    st_maps tm;
    memset(&tm, 0, sizeof tm);
    if (!st_map(&tm.w[0], L.w[0], L.N, L.K, cols, dt) || (gated && !st_map(&tm.w[1], L.w[1], L.N, L.K, cols, dt)) ||
        !st_map(&tm.x, L.x, L.M, L.K, MT, dt))
        return cudaErrorInvalidValue;
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = dim3((unsigned)nb, (unsigned)L.S);
    cfg.blockDim = dim3(ST_THREADS);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[2];
    int na = 0;
    if (L.S > 1) {
        attr[na].id = cudaLaunchAttributeClusterDimension;
        attr[na].val.clusterDim.x = 1;
        attr[na].val.clusterDim.y = (unsigned)L.S;
        attr[na].val.clusterDim.z = 1;
        na++;
    }
    if (pdl) {
        attr[na].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[na].val.programmaticStreamSerializationAllowed = 1;
        na++;
    }
    cfg.attrs = attr;
    cfg.numAttrs = (unsigned)na;
    void* args[] = {(void*)&L, (void*)&tm};
    return cudaLaunchKernelExC(&cfg, fn, args);
}
