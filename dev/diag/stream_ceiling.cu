// stream_ceiling.cu — what a two-layer decode MLP could cost on this GPU, without the MLP.
//
// Question (NOTES "v11"): the skinny forward of 1024->4096->1024 at M = 1 replays in ~8.5 µs,
// the target is 1.3x the weight-streaming floor (~7.7 µs). How much of that is the graph's
// own cost, how fast can 16.8 MB of L2-resident weights reach the SMs at all, and what does
// a layer-to-layer dependency cost when nothing else does? And does loading the second
// layer's weights before its PDL wait (v5, v9f, v10e: all slower) lose in principle, or did
// those kernels lose for their own reasons?
//
// Proxies, no arithmetic beyond an xor (each block writes one word so nothing is dead):
//   A: "layer 0": 128 blocks x 256 threads, each streams 64 KiB of its own weights (16-byte
//      loads, all in flight) plus XA bytes of a shared input, then writes its 64 / (XB/128)
//      bytes of h; triggers its dependents at entry.
//   B: "layer 1": 128 blocks, each 64 KiB of its own weights plus XB bytes of h (all of h).
//      variants: after_wait (weights and h loaded after griddepcontrol.wait), tma_early
//      (weights bulk-copied into shared memory before the wait, h after), reg_early (weights
//      loaded into registers before the wait).
// Every variant is a CUDA graph replayed back to back (10 per timed batch, median of 60
// batches), as bench/gpu_sweep.py times the fused op.
//
//   nvcc -O3 -gencode arch=compute_90a,code=sm_90a -o /tmp/stream_ceiling dev/diag/stream_ceiling.cu
//   /tmp/stream_ceiling          (graph replay table)
//   ncu --cache-control none --clock-control none -k regex:k_ /tmp/stream_ceiling once
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <vector>

#define CK(x)                                                                                \
    do {                                                                                     \
        cudaError_t e_ = (x);                                                                \
        if (e_ != cudaSuccess) {                                                             \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

#define BLOCKS 128
#define THREADS 256
#define WBYTES (64 << 10) // weights per block per layer
#define PER_T (WBYTES / 16 / THREADS) // 16-byte loads per thread: 16

__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}
__device__ __forceinline__ uint4 ld_plain(const uint4* p) {
    uint4 r;
    asm volatile("ld.global.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}
__device__ __forceinline__ unsigned xr(uint4 v) { return v.x ^ v.y ^ v.z ^ v.w; }

// bytes / 16 loads of a shared buffer per thread-strided pass, 8 in flight at a time
__device__ __forceinline__ unsigned read_shared_input(const uint4* x, int bytes) {
    unsigned a = 0;
    const int n = bytes / 16;
    for (int i = threadIdx.x; i < n; i += THREADS * 8) {
        uint4 v[8];
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = i + j * THREADS < n ? ld_plain(x + i + j * THREADS) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int j = 0; j < 8; j++) a ^= xr(v[j]);
    }
    return a;
}

__device__ __forceinline__ unsigned stream_weights(const uint4* w) {
    uint4 v[PER_T];
#pragma unroll
    for (int j = 0; j < PER_T; j++) v[j] = ld_stream(w + j * THREADS + threadIdx.x);
    unsigned a = 0;
#pragma unroll
    for (int j = 0; j < PER_T; j++) a ^= xr(v[j]);
    return a;
}

__device__ __forceinline__ void block_out(unsigned a, unsigned* out, int words) {
    // h: `words` words per block, written by the first threads (every thread's xor folded in
    // through a shared reduction would add a barrier; one word per thread is enough to keep
    // the loads alive)
    __shared__ unsigned s[THREADS];
    s[threadIdx.x] = a;
    __syncthreads();
    for (int i = threadIdx.x; i < words; i += THREADS) out[(size_t)blockIdx.x * words + i] = s[i % THREADS] ^ i;
}

__global__ void __launch_bounds__(32) k_empty(int pdl_wait) {
    if (pdl_wait) asm volatile("griddepcontrol.wait;" ::: "memory");
}

// "layer 0": trigger, stream own weights + XA bytes of x, write h
__global__ void __launch_bounds__(THREADS) k_a(const uint4* w, const uint4* x, int xa, unsigned* h, int hwords,
                                               int trigger) {
    if (trigger == 1) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    unsigned a = stream_weights(w + (size_t)blockIdx.x * (WBYTES / 16));
    if (trigger == 2) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    a ^= read_shared_input(x, xa);
    block_out(a, h, hwords);
}

__device__ __forceinline__ unsigned smem_u32(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }

// thread 0: `bytes` from src into shared dst as 16 KiB bulk copies completing on bar
__device__ __forceinline__ void bulk_in(void* dst, const void* src, int bytes, unsigned long long* bar) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(bar)));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
    for (int c = 0; c < bytes; c += 16384)
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                         smem_u32((char*)dst + c)),
                     "l"((const char*)src + c), "r"(16384), "r"(smem_u32(bar))
                     : "memory");
}
__device__ __forceinline__ void bulk_wait(unsigned long long* bar) {
    unsigned done = 0;
    while (!done)
        asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0;\n selp.u32 %0, 1, 0, p;\n}"
                     : "=r"(done) : "r"(smem_u32(bar)) : "memory");
}

// one kernel bulk-copying `bytes` per block into shared memory (TMA engine, no registers)
__global__ void __launch_bounds__(THREADS) k_tma(const uint4* w, int bytes, unsigned* h) {
    extern __shared__ __align__(128) uint4 sw[];
    __shared__ __align__(8) unsigned long long bar;
    if (threadIdx.x == 0) {
        bulk_in(sw, w + (size_t)blockIdx.x * (bytes / 16), bytes, &bar);
        bulk_wait(&bar);
    }
    __syncthreads();
    block_out(sw[threadIdx.x].x, h, 1);
}

// "layer 1" reading h once per cluster of cs blocks: block r of the cluster bulk-copies slice r
// of h (xb / cs bytes) into every block's shared memory at once (.multicast::cluster), so L2
// serves h once per cluster instead of once per block; weights as after_wait.
__global__ void __launch_bounds__(THREADS) k_bmc(const uint4* w, const uint4* h, int xb, unsigned* out, int cs) {
    extern __shared__ __align__(128) uint4 sh[];
    __shared__ __align__(8) unsigned long long bar;
    unsigned rank;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
    if (threadIdx.x == 0) {
        asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(&bar)));
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(&bar)), "r"(xb) : "memory");
    }
    // every block's mbarrier exists before any block's multicast lands on it
    asm volatile("barrier.cluster.arrive.release.aligned;\n barrier.cluster.wait.acquire.aligned;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
    if (threadIdx.x == 0) {
        const int part = xb / cs;
        const unsigned short mask = (unsigned short)((1u << cs) - 1);
        for (int c = 0; c < part; c += 16384) {
            const int n = part - c < 16384 ? part - c : 16384;
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
                         " [%0], [%1], %2, [%3], %4;" ::"r"(smem_u32((char*)sh + rank * part + c)),
                         "l"((const char*)h + rank * part + c), "r"(n), "r"(smem_u32(&bar)), "h"(mask)
                         : "memory");
        }
    }
    unsigned a = stream_weights(w + (size_t)blockIdx.x * (WBYTES / 16));
    if (threadIdx.x == 0) bulk_wait(&bar);
    __syncthreads();
    for (int i = threadIdx.x; i < xb / 16; i += THREADS) a ^= xr(sh[i]);
    // no block leaves while a copy it issued may still be landing in another's shared memory
    asm volatile("barrier.cluster.arrive.release.aligned;\n barrier.cluster.wait.acquire.aligned;" ::: "memory");
    block_out(a, out, 1);
}

// Access patterns of the register kernels (question: does the MMA-fragment order cost L2
// throughput?). A block reads its R rows x K bf16 (64 KiB), 16 loads per lane in flight.
// pattern 0, as sk_kernel: lane (g = lane/4, c = lane%4) reads 16 B at k = 8c of a 32-wide
// step, so one warp instruction touches 8 rows x 64 B (half lines); R = 32: rows 16t + g + 8hh,
// steps 32·warp + 256u (layer 0); R = 8: row g (the 8-row kernel, layer 1).
// pattern 1: 8 lanes per 128-byte line, one instruction = 4 rows x 128 B (whole lines).
__global__ void __launch_bounds__(THREADS) k_pat(const unsigned short* w, int K, int R, int pattern, unsigned* h) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const unsigned short* wb = w + (size_t)blockIdx.x * R * K;
    uint4 v[PER_T];
#pragma unroll
    for (int j = 0; j < PER_T; j++) {
        int row, k;
        if (pattern == 0) {
            if (R == 32) {
                row = 16 * ((j >> 1) & 1) + g + 8 * (j & 1);
                k = 32 * warp + 256 * (j >> 2) + 8 * c;
            } else {
                row = g;
                k = 32 * warp + 256 * j + 8 * c;
            }
        } else {
            if (R == 32) {
                row = (lane >> 3) + 4 * (j & 7);
                k = 64 * (warp * 2 + (j >> 3)) + 8 * (lane & 7);
            } else {
                row = (lane >> 3) + 4 * (j & 1);
                k = 64 * (warp * 8 + (j >> 1)) + 8 * (lane & 7);
            }
        }
        v[j] = ld_stream((const uint4*)(wb + (size_t)row * K + k));
    }
    unsigned a = 0;
#pragma unroll
    for (int j = 0; j < PER_T; j++) a ^= xr(v[j]);
    block_out(a, h, 1);
}

// one kernel streaming both layers' weights (2 x 64 KiB per block): the one-pass ceiling
__global__ void __launch_bounds__(THREADS) k_both(const uint4* w, unsigned* h) {
    unsigned a = stream_weights(w + (size_t)blockIdx.x * (WBYTES / 16));
    a ^= stream_weights(w + (size_t)(BLOCKS + blockIdx.x) * (WBYTES / 16));
    block_out(a, h, 1);
}


// "layer 1": mode 0 after_wait, 1 tma_early, 2 reg_early
__global__ void __launch_bounds__(THREADS) k_b(const uint4* w, const uint4* h, int xb, unsigned* out, int mode) {
    extern __shared__ __align__(128) uint4 sw[];
    __shared__ __align__(8) unsigned long long bar;
    const uint4* wb = w + (size_t)blockIdx.x * (WBYTES / 16);
    unsigned a = 0;
    if (mode == 1) {
        if (threadIdx.x == 0) bulk_in(sw, wb, WBYTES, &bar);
        asm volatile("griddepcontrol.wait;" ::: "memory");
        a ^= read_shared_input(h, xb);
        if (threadIdx.x == 0) bulk_wait(&bar);
        __syncthreads();
#pragma unroll
        for (int j = 0; j < PER_T; j++) a ^= xr(sw[j * THREADS + threadIdx.x]);
    } else if (mode == 2) {
        uint4 v[PER_T];
#pragma unroll
        for (int j = 0; j < PER_T; j++) v[j] = ld_stream(wb + j * THREADS + threadIdx.x);
        asm volatile("griddepcontrol.wait;" ::: "memory");
        a ^= read_shared_input(h, xb);
#pragma unroll
        for (int j = 0; j < PER_T; j++) a ^= xr(v[j]);
    } else {
        asm volatile("griddepcontrol.wait;" ::: "memory");
        a ^= stream_weights(wb);
        a ^= read_shared_input(h, xb);
    }
    block_out(a, out, 1);
}

// A software grid barrier (every block resident: 128 blocks, one per SM). gen_barrier: the
// last block to arrive zeroes the count and bumps a generation word that the others poll, so
// the count is 0 again after every use (needs a zero count once); memset_barrier: the count
// is zeroed by a memset node before the kernel, and every block polls until it reads 128.
__device__ __forceinline__ unsigned ld_acquire(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void grid_barrier(unsigned* cnt, unsigned* gen, int use_gen) {
    __syncthreads();
    if (threadIdx.x == 0) {
        if (use_gen) {
            const unsigned g = ld_acquire(gen);
            unsigned t;
            asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;" : "=r"(t) : "l"(cnt) : "memory");
            if (t == gridDim.x - 1) {
                *cnt = 0;
                asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(gen), "r"(g + 1) : "memory");
            } else
                while (ld_acquire(gen) == g) {
                }
        } else {
            asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(cnt) : "memory");
            while (ld_acquire(cnt) < gridDim.x) {
            }
        }
    }
    __syncthreads();
}

// One launch for both layers: thread 0 bulk-copies the block's slices of both weights into
// shared memory at entry (layer 0's first), the block "computes" layer 0 from shared memory,
// writes its h words, grid barrier, reads xb bytes of h, "computes" layer 1.
__global__ void __launch_bounds__(THREADS) k_single(const uint4* w, unsigned* h, int hwords, int xb,
                                                    unsigned* out, unsigned* bar_words, int use_gen, int late) {
    extern __shared__ __align__(128) uint4 sw[];
    __shared__ __align__(8) unsigned long long bar[2];
    if (threadIdx.x == 0) {
        bulk_in(sw, w + (size_t)blockIdx.x * (WBYTES / 16), WBYTES, &bar[0]);
        if (late) bulk_wait(&bar[0]); // layer 1's copies only once layer 0's have landed
        bulk_in(sw + WBYTES / 16, w + (size_t)(BLOCKS + blockIdx.x) * (WBYTES / 16), WBYTES, &bar[1]);
        if (!late) bulk_wait(&bar[0]);
    }
    __syncthreads();
    unsigned a = 0;
#pragma unroll
    for (int j = 0; j < PER_T; j++) a ^= xr(sw[j * THREADS + threadIdx.x]);
    block_out(a, h, hwords);
    grid_barrier(bar_words, bar_words + 32, use_gen);
    a ^= read_shared_input((const uint4*)h, xb);
    if (threadIdx.x == 0) bulk_wait(&bar[1]);
    __syncthreads();
#pragma unroll
    for (int j = 0; j < PER_T; j++) a ^= xr(sw[WBYTES / 16 + j * THREADS + threadIdx.x]);
    block_out(a, out, 1);
}

// pdl: a programmatic dependent of the launch before; cluster > 0: a cluster launch, clusters of that
// many blocks (1 included: k_bmc's rows measured the cluster launch itself)
static void launch(const void* fn, void** args, int grid, int block, size_t smem, int pdl, cudaStream_t s,
                   int cluster = 0) {
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = dim3(grid);
    cfg.blockDim = dim3(block);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute at[2];
    int n = 0;
    if (pdl) {
        at[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[n++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (cluster > 0) {
        at[n].id = cudaLaunchAttributeClusterDimension;
        at[n++].val.clusterDim = {(unsigned)cluster, 1, 1};
    }
    cfg.attrs = at;
    cfg.numAttrs = n;
    CK(cudaLaunchKernelExC(&cfg, fn, args));
}

struct Bufs {
    uint4 *w, *x;
    unsigned *h, *out, *bar;
};

// the variant's launches, captured into a graph
typedef void (*variant_fn)(const Bufs&, cudaStream_t, int);

static float replay_us(cudaGraphExec_t ge, cudaStream_t s) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 30; i++) CK(cudaGraphLaunch(ge, s));
    std::vector<float> t;
    for (int r = 0; r < 60; r++) {
        CK(cudaEventRecord(a, s));
        for (int i = 0; i < 10; i++) CK(cudaGraphLaunch(ge, s));
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms * 1e3f / 10);
    }
    std::sort(t.begin(), t.end());
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return t[t.size() / 2];
}

static cudaGraphExec_t capture(variant_fn f, const Bufs& B, int arg, cudaStream_t s) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    f(B, s, arg);
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    CK(cudaGraphDestroy(g));
    return ge;
}

// M tokens -> x bytes of layer 0 (1024 wide) and h bytes of layer 1 (4096 wide), bf16
static int xa_of(int m) { return m * 1024 * 2; }
static int xb_of(int m) { return m * 4096 * 2; }

static void v_empty1(const Bufs&, cudaStream_t s, int) {
    int z = 0;
    void* args[] = {&z};
    launch((const void*)k_empty, args, 1, 32, 0, 0, s);
}
static void v_empty2(const Bufs&, cudaStream_t s, int) {
    int z = 0, one = 1;
    void* a0[] = {&z};
    void* a1[] = {&one};
    launch((const void*)k_empty, a0, 1, 32, 0, 0, s);
    launch((const void*)k_empty, a1, 1, 32, 0, 1, s);
}
static void v_a_only(const Bufs& B, cudaStream_t s, int m) {
    int xa = xa_of(m), hw = xb_of(m) / 4 / BLOCKS, trig = 0;
    void* args[] = {(void*)&B.w, (void*)&B.x, &xa, (void*)&B.h, &hw, &trig};
    launch((const void*)k_a, args, BLOCKS, THREADS, 0, 0, s);
}
static void v_tma(const Bufs& B, cudaStream_t s, int bytes) {
    void* args[] = {(void*)&B.w, &bytes, (void*)&B.out};
    launch((const void*)k_tma, args, BLOCKS, THREADS, bytes, 0, s);
}
// arg = pattern * 2 + (R == 8)
static void v_pat(const Bufs& B, cudaStream_t s, int arg) {
    int pattern = arg / 2, R = arg % 2 ? 8 : 32, K = WBYTES / 2 / R;
    void* args[] = {(void*)&B.w, &K, &R, &pattern, (void*)&B.out};
    launch((const void*)k_pat, args, BLOCKS, THREADS, 0, 0, s);
}
// arg = m * 16 + cs: A -> k_bmc (PDL, clusters of cs)
static void v_chain_mc(const Bufs& B, cudaStream_t s, int arg) {
    const int m = arg / 16;
    int cs = arg % 16, xa = xa_of(m), hw = xb_of(m) / 4 / BLOCKS, trig = 1, xb = xb_of(m);
    void* a0[] = {(void*)&B.w, (void*)&B.x, &xa, (void*)&B.h, &hw, &trig};
    launch((const void*)k_a, a0, BLOCKS, THREADS, 0, 0, s);
    const uint4* w1 = B.w + (size_t)BLOCKS * (WBYTES / 16);
    void* a1[] = {(void*)&w1, (void*)&B.h, &xb, (void*)&B.out, &cs};
    launch((const void*)k_bmc, a1, BLOCKS, THREADS, xb, 1, s, cs);
}
static void v_both(const Bufs& B, cudaStream_t s, int) {
    void* args[] = {(void*)&B.w, (void*)&B.out};
    launch((const void*)k_both, args, BLOCKS, THREADS, 0, 0, s);
}
// arg = m * 16 + mode (mode 3: B without PDL, plain stream order; 4 + mode: A triggers B
// once its loads have landed)
static void v_chain(const Bufs& B, cudaStream_t s, int arg) {
    const int m = arg / 16, mode = arg % 4;
    int xa = xa_of(m), hw = xb_of(m) / 4 / BLOCKS, trig = arg % 16 >= 4 ? 2 : 1;
    void* a0[] = {(void*)&B.w, (void*)&B.x, &xa, (void*)&B.h, &hw, &trig};
    launch((const void*)k_a, a0, BLOCKS, THREADS, 0, 0, s);
    const uint4* w1 = B.w + (size_t)BLOCKS * (WBYTES / 16);
    int xb = xb_of(m), md = mode == 3 ? 0 : mode;
    void* a1[] = {(void*)&w1, (void*)&B.h, &xb, (void*)&B.out, &md};
    launch((const void*)k_b, a1, BLOCKS, THREADS, md == 1 ? WBYTES : 0, mode != 3, s);
}

// arg = m * 16 + kind: 0 gen barrier, 1 memset barrier, 2 gen barrier with the K-split
// share of h (a quarter: 32 columns x 1024 k per block instead of 8 x 4096); +4: layer 1's
// copies issued once layer 0's have landed
static void v_single(const Bufs& B, cudaStream_t s, int arg) {
    const int m = arg / 16, kind = arg % 4;
    int hw = xb_of(m) / 4 / BLOCKS, xb = kind == 2 ? xb_of(m) / 4 : xb_of(m), use_gen = kind != 1, late = arg % 16 >= 4;
    unsigned* bw = B.bar + (kind == 1 ? 64 : 0);
    if (kind == 1) CK(cudaMemsetAsync(bw, 0, 4, s));
    void* args[] = {(void*)&B.w, (void*)&B.h, &hw, &xb, (void*)&B.out, &bw, &use_gen, &late};
    launch((const void*)k_single, args, BLOCKS, THREADS, 2 * WBYTES, 0, s);
}
static void v_memset_empty(const Bufs& B, cudaStream_t s, int) {
    CK(cudaMemsetAsync(B.bar + 64, 0, 4, s));
    v_empty1(B, s, 0);
}

int main(int argc, char** argv) {
    const bool once = argc > 1 && !strcmp(argv[1], "once"); // each variant launched 3x, no graphs (for ncu)
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    Bufs B;
    const size_t wbytes = (size_t)2 * BLOCKS * WBYTES;
    CK(cudaMalloc(&B.w, wbytes));
    CK(cudaMalloc(&B.x, 1 << 20));
    CK(cudaMalloc(&B.h, 1 << 20));
    CK(cudaMalloc(&B.out, 1 << 20));
    CK(cudaMalloc(&B.bar, 4096));
    CK(cudaMemset(B.bar, 0, 4096));
    // random-ish contents (never time on zeros)
    {
        std::vector<unsigned> hst(wbytes / 4);
        unsigned r = 12345;
        for (auto& v : hst) v = r = r * 1664525u + 1013904223u;
        CK(cudaMemcpy(B.w, hst.data(), wbytes, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(B.x, hst.data(), 1 << 20, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(B.h, hst.data(), 1 << 20, cudaMemcpyHostToDevice));
    }
    CK(cudaFuncSetAttribute((const void*)k_b, cudaFuncAttributeMaxDynamicSharedMemorySize, WBYTES));
    CK(cudaFuncSetAttribute((const void*)k_single, cudaFuncAttributeMaxDynamicSharedMemorySize, 2 * WBYTES));
    CK(cudaFuncSetAttribute((const void*)k_bmc, cudaFuncAttributeMaxDynamicSharedMemorySize, xb_of(16)));
    CK(cudaFuncSetAttribute((const void*)k_tma, cudaFuncAttributeMaxDynamicSharedMemorySize, 2 * WBYTES));
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

    // copy bandwidth (read + write), as bench/gpu_sweep.py measures the floor
    float gbs;
    {
        const size_t n = (size_t)256 << 20;
        void *a, *b;
        CK(cudaMalloc(&a, n));
        CK(cudaMalloc(&b, n));
        CK(cudaMemset(a, 1, n));
        cudaEvent_t e0, e1;
        CK(cudaEventCreate(&e0));
        CK(cudaEventCreate(&e1));
        std::vector<float> t;
        for (int i = 0; i < 23; i++) {
            CK(cudaEventRecord(e0, s));
            CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, s));
            CK(cudaEventRecord(e1, s));
            CK(cudaEventSynchronize(e1));
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            if (i >= 3) t.push_back(ms);
        }
        std::sort(t.begin(), t.end());
        gbs = 2.0f * n / (t[t.size() / 2] * 1e-3f) / 1e9f;
        CK(cudaFree(a));
        CK(cudaFree(b));
    }
    printf("device %s, %d SMs; copy %.0f GB/s -> floor of %.1f MB: %.2f us\n", prop.name, prop.multiProcessorCount,
           gbs, wbytes / 1e6, wbytes / (gbs * 1e3));

    struct Row {
        const char* name;
        variant_fn f;
        int arg;
    };
    std::vector<Row> rows = {
        {"graph: 1 empty kernel", v_empty1, 0},
        {"graph: 2 empty kernels, PDL", v_empty2, 0},
        {"graph: memset 4 B + empty kernel", v_memset_empty, 0},
        {"A alone (8.4 MB), M=1", v_a_only, 1},
        {"one kernel, both layers' 16.8 MB", v_both, 0},
        {"8.4 MB, sk_kernel order, 32 rows x 1024", v_pat, 0},
        {"8.4 MB, sk_kernel order, 8 rows x 4096", v_pat, 1},
        {"8.4 MB, whole lines, 32 rows x 1024", v_pat, 2},
        {"8.4 MB, whole lines, 8 rows x 4096", v_pat, 3},
        {"one kernel, 8.4 MB by TMA", v_tma, WBYTES},
        {"one kernel, 16.8 MB by TMA", v_tma, 2 * WBYTES},
    };
    const char* mode_name[] = {"B after wait", "B tma_early", "B reg_early", "B no PDL",
                               "", "B tma_early, late trigger", "B reg_early, late trigger"};
    for (int m : {1, 16})
        for (int mode : {0, 1, 2, 3, 5, 6}) {
            static char names[16][64];
            static int k = 0;
            snprintf(names[k], 64, "A->%s, M=%d", mode_name[mode], m);
            rows.push_back({names[k++], v_chain, m * 16 + mode});
        }
    for (int m : {1, 16})
        for (int cs : {1, 2, 4}) {
            static char names[8][64];
            static int k = 0;
            snprintf(names[k], 64, "A->B, h multicast over %d, M=%d", cs, m);
            rows.push_back({names[k++], v_chain_mc, m * 16 + cs});
        }
    const char* single_name[] = {"gen barrier", "memset barrier", "gen barrier, K-split h", "",
                                 "late, gen barrier", "late, memset barrier", "late, gen barrier, K-split h"};
    for (int m : {1, 16})
        for (int kind : {0, 1, 2, 4, 5, 6}) {
            static char names[16][64];
            static int k = 0;
            snprintf(names[k], 64, "single launch, %s, M=%d", single_name[kind], m);
            rows.push_back({names[k++], v_single, m * 16 + kind});
        }
    if (once) {
        for (auto& r : rows)
            for (int i = 0; i < 3; i++) r.f(B, s, r.arg);
        CK(cudaStreamSynchronize(s));
        CK(cudaGetLastError());
        printf("launched every variant 3x\n");
        return 0;
    }
    std::vector<cudaGraphExec_t> ges;
    for (auto& r : rows) ges.push_back(capture(r.f, B, r.arg, s));
    std::vector<std::vector<float>> t(rows.size());
    for (int round = 0; round < 4; round++) // in turn, rotating, as side_by_side_us
        for (size_t i = 0; i < rows.size(); i++) {
            size_t j = (i + round) % rows.size();
            t[j].push_back(replay_us(ges[j], s));
        }
    CK(cudaDeviceSynchronize());
    printf("%-40s %s\n", "variant (graph replay, back to back)", "us per replay: 4 rounds");
    for (size_t i = 0; i < rows.size(); i++) {
        printf("%-40s", rows[i].name);
        for (float v : t[i]) printf(" %6.2f", v);
        printf("\n");
    }
    return 0;
}
