// fmlp_epilogue.cu — elementwise kernels of the GEMM strategy (large M, any shape).
//
// cuBLAS (through aten::linear / aten::mm, see csrc/shim/gemm.c) computes each layer's
// product; these kernels do the rest in one pass over the product: bias + activation
// (saving the pre-activation when training), GLU gating, the activation's backward, bias
// gradients. Memory-bound and, at small M, latency-bound, so the shape follows torch's
// vectorized elementwise kernel: 128-thread blocks, no grid-stride loop, a few 16-byte
// vectors per thread with all loads issued before any math, and the activation a template
// parameter (one host switch instead of a per-element one). The 16-byte path needs every
// row to be a whole number of vectors (N % (16 / sizeof(T)) == 0) and every pointer
// 16-byte aligned; otherwise the same kernel runs one element per slot. Both paths do the
// same float32 math per element, so they give bit-identical results.
// Contract: fmlp_epilogue.h. Built by setup.py (nvcc, sm_80 + sm_90a); tested by
// tests/test_cuda.py (test_epilogue_*).
#include <stdint.h>
#include "fmlp_cuda_common.cuh"
#include "fmlp_epilogue.h"
#include "../fmlp_activation.h"

namespace {

constexpr int kThreads = 128;     // torch's elementwise block size
constexpr int kUnrollVec = 2;     // 16-byte vectors per thread on the vector path
constexpr int kUnrollScalar = 4;  // elements per thread on the scalar path
// Vector passes of at most this many vectors put one vector in each thread instead: they are
// latency-bound, and twice the blocks keep twice the loads in flight from the start
// (1024-4096-1024 bf16 M = 64: gelu_tanh over 64 x 4096 took 1.78 us at two vectors per
// thread, torch's gelu 1.54; NOTES "Session 11"). FMLP_EW_SMALL (dev knob) overrides it.
constexpr int64_t kSmallPassVec = 1 << 16;

// V consecutive elements of T held as float32 (V = 1: the scalar path).
template <typename T, int V> struct Chunk {
    float f[V];
    __device__ __forceinline__ void load(const T* p, int64_t i) {
        if constexpr (V == 1) {
            f[0] = fmlp_to_f32(p[i]);
        } else {
            fmlp_vec<T> v = *reinterpret_cast<const fmlp_vec<T>*>(p + i);
#pragma unroll
            for (int j = 0; j < V; j++) f[j] = fmlp_to_f32(v.v[j]);
        }
    }
    __device__ __forceinline__ void store(T* p, int64_t i) const {
        if constexpr (V == 1) {
            p[i] = fmlp_from_f32<T>(f[0]);
        } else {
            fmlp_vec<T> v;
#pragma unroll
            for (int j = 0; j < V; j++) v.v[j] = fmlp_from_f32<T>(f[j]);
            *reinterpret_cast<fmlp_vec<T>*>(p + i) = v;
        }
    }
    __device__ __forceinline__ void add(const Chunk& o) {
#pragma unroll
        for (int j = 0; j < V; j++) f[j] += o.f[j];
    }
};

// The index space of one launch: nvec slots of V elements, rows of rowvec slots.
// Block b owns U * kThreads consecutive slots; its thread t takes slots
// b*U*kThreads + k*kThreads + t (k < U), so each k is one coalesced sweep of the block.
struct Geom {
    int64_t nvec, rowvec;
    int narrow;  // nvec < 2^32: the column of a slot in 32-bit arithmetic
    unsigned blocks;
};

template <int U> __device__ __forceinline__ int64_t slot(int k) {
    return (int64_t)blockIdx.x * (U * kThreads) + k * kThreads + threadIdx.x;
}

// First element of the bias that slot v adds (only called with a bias).
template <int V> __device__ __forceinline__ int64_t bias_at(const Geom& g, int64_t v) {
    int64_t c = g.narrow ? (int64_t)((uint32_t)v % (uint32_t)g.rowvec) : v % g.rowvec;
    return c * V;
}

// Row of slot v.
__device__ __forceinline__ int64_t row_at(const Geom& g, int64_t v) {
    return g.narrow ? (int64_t)((uint32_t)v / (uint32_t)g.rowvec) : v / g.rowvec;
}

// z (M, N): z += bias; h = act(z); z written back only when h != z. act sees the float32
// sum, not z rounded to T (one rounding per output, as before).
template <typename T, int V, int U, int ACT>
__global__ void __launch_bounds__(kThreads)
    fmlp_gemm_bias_act_kernel(Geom g, T* z, const T* bias, T* h, float slope) {
    Chunk<T, V> a[U];
#pragma unroll
    for (int k = 0; k < U; k++)
        if (slot<U>(k) < g.nvec) a[k].load(z, slot<U>(k) * V);
    if (bias) {
#pragma unroll
        for (int k = 0; k < U; k++)
            if (slot<U>(k) < g.nvec) {
                Chunk<T, V> b;
                b.load(bias, bias_at<V>(g, slot<U>(k)));
                a[k].add(b);
            }
        if (h != z) {
#pragma unroll
            for (int k = 0; k < U; k++)
                if (slot<U>(k) < g.nvec) a[k].store(z, slot<U>(k) * V);
        }
    }  // without a bias z is unchanged: no write-back
#pragma unroll
    for (int k = 0; k < U; k++)
        if (slot<U>(k) < g.nvec) {
#pragma unroll
            for (int j = 0; j < V; j++) a[k].f[j] = fmlp_act(ACT, a[k].f[j], slope);
            a[k].store(h, slot<U>(k) * V);
        }
}

// zg, zu (M, N): += biases (kept when keep); h = act(zg) * zu.
template <typename T, int V, int U, int ACT>
__global__ void __launch_bounds__(kThreads)
    fmlp_gemm_glu_kernel(Geom g, T* zg, T* zu, const T* bg, const T* bu, T* h, float slope, int keep) {
    Chunk<T, V> a[U], u[U];
#pragma unroll
    for (int k = 0; k < U; k++)
        if (slot<U>(k) < g.nvec) {
            a[k].load(zg, slot<U>(k) * V);
            u[k].load(zu, slot<U>(k) * V);
        }
    if (bg || bu) {
#pragma unroll
        for (int k = 0; k < U; k++)
            if (slot<U>(k) < g.nvec) {
                Chunk<T, V> b;
                if (bg) {
                    b.load(bg, bias_at<V>(g, slot<U>(k)));
                    a[k].add(b);
                }
                if (bu) {
                    b.load(bu, bias_at<V>(g, slot<U>(k)));
                    u[k].add(b);
                }
                if (keep) {
                    a[k].store(zg, slot<U>(k) * V);
                    u[k].store(zu, slot<U>(k) * V);
                }
            }
    }
#pragma unroll
    for (int k = 0; k < U; k++)
        if (slot<U>(k) < g.nvec) {
#pragma unroll
            for (int j = 0; j < V; j++) a[k].f[j] = fmlp_act(ACT, a[k].f[j], slope) * u[k].f[j];
            a[k].store(h, slot<U>(k) * V);
        }
}

// dz = g * act'(z); h = act(z) when h != NULL. dz may alias g (each slot is read before
// it is written, by the same thread).
template <typename T, int V, int U, int ACT>
__global__ void __launch_bounds__(kThreads)
    fmlp_gemm_dact_kernel(Geom gm, const T* g, const T* z, T* dz, T* h, float slope) {
    Chunk<T, V> a[U], b[U];
#pragma unroll
    for (int k = 0; k < U; k++)
        if (slot<U>(k) < gm.nvec) {
            a[k].load(g, slot<U>(k) * V);
            b[k].load(z, slot<U>(k) * V);
        }
#pragma unroll
    for (int k = 0; k < U; k++)
        if (slot<U>(k) < gm.nvec) {
#pragma unroll
            for (int j = 0; j < V; j++) a[k].f[j] *= fmlp_dact(ACT, b[k].f[j], slope);
            a[k].store(dz, slot<U>(k) * V);
            if (h) {
#pragma unroll
                for (int j = 0; j < V; j++) b[k].f[j] = fmlp_act(ACT, b[k].f[j], slope);
                b[k].store(h, slot<U>(k) * V);
            }
        }
}

// dzg = g * zu * act'(zg); dzu = g * act(zg); h = act(zg) * zu when h != NULL.
template <typename T, int V, int U, int ACT>
__global__ void __launch_bounds__(kThreads)
    fmlp_gemm_dglu_kernel(Geom gm, const T* g, const T* zg, const T* zu, T* dzg, T* dzu, T* h, float slope) {
    Chunk<T, V> a[U], zgc[U], zuc[U];
#pragma unroll
    for (int k = 0; k < U; k++)
        if (slot<U>(k) < gm.nvec) {
            a[k].load(g, slot<U>(k) * V);
            zgc[k].load(zg, slot<U>(k) * V);
            zuc[k].load(zu, slot<U>(k) * V);
        }
#pragma unroll
    for (int k = 0; k < U; k++)
        if (slot<U>(k) < gm.nvec) {
            Chunk<T, V> outg, outu;
#pragma unroll
            for (int j = 0; j < V; j++) {
                float ag = fmlp_act(ACT, zgc[k].f[j], slope);
                outg.f[j] = a[k].f[j] * zuc[k].f[j] * fmlp_dact(ACT, zgc[k].f[j], slope);
                outu.f[j] = a[k].f[j] * ag;
                zgc[k].f[j] = ag * zuc[k].f[j];
            }
            outg.store(dzg, slot<U>(k) * V);
            outu.store(dzu, slot<U>(k) * V);
            if (h) zgc[k].store(h, slot<U>(k) * V);
        }
}

// out (N, K) = a ⊗ b: row n is a[n]·b, float32 product rounded once (a GEMM with inner
// dimension 1). b is read like a bias (by the slot's column), a once per slot (its row).
template <typename T, int V, int U>
__global__ void __launch_bounds__(kThreads) fmlp_gemm_outer_kernel(Geom g, const T* a, const T* b, T* out) {
    Chunk<T, V> c[U];
    float an[U];
#pragma unroll
    for (int k = 0; k < U; k++)
        if (slot<U>(k) < g.nvec) {
            c[k].load(b, bias_at<V>(g, slot<U>(k)));
            an[k] = fmlp_to_f32(a[row_at(g, slot<U>(k))]);
        }
#pragma unroll
    for (int k = 0; k < U; k++)
        if (slot<U>(k) < g.nvec) {
#pragma unroll
            for (int j = 0; j < V; j++) c[k].f[j] = an[k] * c[k].f[j];
            c[k].store(out, slot<U>(k) * V);
        }
}

// y += t
template <typename T, int V, int U>
__global__ void __launch_bounds__(kThreads) fmlp_gemm_add_kernel(Geom g, T* y, const T* t) {
    Chunk<T, V> a[U], b[U];
#pragma unroll
    for (int k = 0; k < U; k++)
        if (slot<U>(k) < g.nvec) {
            a[k].load(y, slot<U>(k) * V);
            b[k].load(t, slot<U>(k) * V);
        }
#pragma unroll
    for (int k = 0; k < U; k++)
        if (slot<U>(k) < g.nvec) {
            a[k].add(b[k]);
            a[k].store(y, slot<U>(k) * V);
        }
}

// Column sums: block (32, 8) owns 32 columns and walks all rows, 8 at a time.
template <typename T>
__global__ void fmlp_gemm_colsum_kernel(int64_t M, int64_t N, const T* dz, T* db) {
    __shared__ float part[8][33];
    int64_t n = blockIdx.x * 32 + threadIdx.x;
    float s = 0.f;
    if (n < N)
        for (int64_t m = threadIdx.y; m < M; m += 8) s += fmlp_to_f32(dz[m * N + n]);
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && n < N) {
        float t = 0.f;
#pragma unroll
        for (int k = 0; k < 8; k++) t += part[k][threadIdx.x];
        db[n] = fmlp_from_f32<T>(t);
    }
}

template <typename T>
__global__ void fmlp_gemm_fill_ones_kernel(int64_t n, T* out) {
    for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < n; c += (int64_t)gridDim.x * blockDim.x)
        out[c] = fmlp_from_f32<T>(1.0f);
}


template <int V, int U> struct Shape {
    static constexpr int v = V, u = U;
};

// Calls launch(Shape<V, U>{}, geom) for a rows x cols pass: the 16-byte path when every row
// is a whole number of vectors and every pointer is aligned, else the scalar path.
// Returns 0, or -1 when the grid would exceed CUDA's limit (over 2^38 elements).
template <typename T, typename F> int launch_ew(int64_t rows, int64_t cols, bool aligned, F&& launch) {
    constexpr int V = fmlp_vec<T>::N;
    static int env_small = -2;
    const int64_t small_max = fmlp_env_knob("FMLP_EW_SMALL", &env_small) >= 0 ? env_small : kSmallPassVec;
    const bool vec = aligned && cols % V == 0;
    const int w = vec ? V : 1;
    const bool small = vec && rows * cols / w <= small_max;
    const int u = small ? 1 : vec ? kUnrollVec : kUnrollScalar;
    Geom g;
    g.nvec = rows * cols / w;
    g.rowvec = cols / w;
    g.narrow = g.nvec <= (int64_t)UINT32_MAX;
    int64_t blocks = (g.nvec + (int64_t)u * kThreads - 1) / ((int64_t)u * kThreads);
    if (blocks > INT32_MAX) return -1;
    g.blocks = (unsigned)blocks;
    if (small)
        launch(Shape<V, 1>{}, g);
    else if (vec)
        launch(Shape<V, kUnrollVec>{}, g);
    else
        launch(Shape<1, kUnrollScalar>{}, g);
    return 0;
}

// Binds ACT (a constexpr int) to the activation code act; unknown codes act as identity,
// as fmlp_act does.
#define FMLP_DISPATCH_ACT(act, ...)                                                       \
    switch (act) {                                                                        \
    case FMLP_ACT_RELU: { constexpr int ACT = FMLP_ACT_RELU; __VA_ARGS__; } break;        \
    case FMLP_ACT_GELU: { constexpr int ACT = FMLP_ACT_GELU; __VA_ARGS__; } break;        \
    case FMLP_ACT_GELU_TANH: { constexpr int ACT = FMLP_ACT_GELU_TANH; __VA_ARGS__; } break; \
    case FMLP_ACT_SILU: { constexpr int ACT = FMLP_ACT_SILU; __VA_ARGS__; } break;        \
    case FMLP_ACT_TANH: { constexpr int ACT = FMLP_ACT_TANH; __VA_ARGS__; } break;        \
    case FMLP_ACT_SIGMOID: { constexpr int ACT = FMLP_ACT_SIGMOID; __VA_ARGS__; } break;  \
    case FMLP_ACT_LEAKY_RELU: { constexpr int ACT = FMLP_ACT_LEAKY_RELU; __VA_ARGS__; } break; \
    default: { constexpr int ACT = FMLP_ACT_IDENTITY; __VA_ARGS__; } break;               \
    }

int finish(int too_big, fmlp_status* st, const char* what) {
    if (too_big) return fmlp_fail(st, FMLP_ERR_INVALID, "%s: tensor too large for one launch", what);
    return fmlp_cuda_check(cudaGetLastError(), st, what);
}

}  // namespace

extern "C" int fmlp_launch_bias_act(fmlp_dtype dt, int64_t M, int64_t N, void* z, const void* bias, void* h,
                                    int act, float slope, void* stream, fmlp_status* st) {
    if (M * N == 0) return FMLP_OK;
    cudaStream_t s = (cudaStream_t)stream;
    bool al = fmlp_aligned16(z) && fmlp_aligned16(bias) && fmlp_aligned16(h);
    int rc = 0;
    FMLP_DISPATCH_DTYPE(dt, FMLP_DISPATCH_ACT(act, {
        rc = launch_ew<T>(M, N, al, [&](auto sh, const Geom& g) {
            fmlp_gemm_bias_act_kernel<T, decltype(sh)::v, decltype(sh)::u, ACT>
                <<<g.blocks, kThreads, 0, s>>>(g, (T*)z, (const T*)bias, (T*)h, slope);
        });
    }));
    return finish(rc, st, "bias+activation kernel");
}

extern "C" int fmlp_launch_glu(fmlp_dtype dt, int64_t M, int64_t N, void* zg, void* zu, const void* bg,
                               const void* bu, void* h, int act, float slope, void* stream, fmlp_status* st) {
    if (M * N == 0) return FMLP_OK;
    cudaStream_t s = (cudaStream_t)stream;
    int keep = h != zg;
    bool al = fmlp_aligned16(zg) && fmlp_aligned16(zu) && fmlp_aligned16(bg) && fmlp_aligned16(bu) && fmlp_aligned16(h);
    int rc = 0;
    FMLP_DISPATCH_DTYPE(dt, FMLP_DISPATCH_ACT(act, {
        rc = launch_ew<T>(M, N, al, [&](auto sh, const Geom& g) {
            fmlp_gemm_glu_kernel<T, decltype(sh)::v, decltype(sh)::u, ACT><<<g.blocks, kThreads, 0, s>>>(
                g, (T*)zg, (T*)zu, (const T*)bg, (const T*)bu, (T*)h, slope, keep);
        });
    }));
    return finish(rc, st, "gated activation kernel");
}

extern "C" int fmlp_launch_dact(fmlp_dtype dt, int64_t M, int64_t N, const void* g, const void* z, void* dz,
                                void* h, int act, float slope, void* stream, fmlp_status* st) {
    if (M * N == 0) return FMLP_OK;
    cudaStream_t s = (cudaStream_t)stream;
    bool al = fmlp_aligned16(g) && fmlp_aligned16(z) && fmlp_aligned16(dz) && fmlp_aligned16(h);
    int rc = 0;
    FMLP_DISPATCH_DTYPE(dt, FMLP_DISPATCH_ACT(act, {
        rc = launch_ew<T>(M, N, al, [&](auto sh, const Geom& gm) {
            fmlp_gemm_dact_kernel<T, decltype(sh)::v, decltype(sh)::u, ACT>
                <<<gm.blocks, kThreads, 0, s>>>(gm, (const T*)g, (const T*)z, (T*)dz, (T*)h, slope);
        });
    }));
    return finish(rc, st, "activation backward kernel");
}

extern "C" int fmlp_launch_dglu(fmlp_dtype dt, int64_t M, int64_t N, const void* g, const void* zg,
                                const void* zu, void* dzg, void* dzu, void* h, int act, float slope, void* stream,
                                fmlp_status* st) {
    if (M * N == 0) return FMLP_OK;
    cudaStream_t s = (cudaStream_t)stream;
    bool al = fmlp_aligned16(g) && fmlp_aligned16(zg) && fmlp_aligned16(zu) && fmlp_aligned16(dzg) &&
              fmlp_aligned16(dzu) && fmlp_aligned16(h);
    int rc = 0;
    FMLP_DISPATCH_DTYPE(dt, FMLP_DISPATCH_ACT(act, {
        rc = launch_ew<T>(M, N, al, [&](auto sh, const Geom& gm) {
            fmlp_gemm_dglu_kernel<T, decltype(sh)::v, decltype(sh)::u, ACT><<<gm.blocks, kThreads, 0, s>>>(
                gm, (const T*)g, (const T*)zg, (const T*)zu, (T*)dzg, (T*)dzu, (T*)h, slope);
        });
    }));
    return finish(rc, st, "gated activation backward kernel");
}

extern "C" int fmlp_launch_fill_ones(fmlp_dtype dt, int64_t n, void* ones, void* stream, fmlp_status* st) {
    cudaStream_t s = (cudaStream_t)stream;
    if (n == 0) return FMLP_OK;
    int64_t b = (n + 255) / 256;
    unsigned blocks = (unsigned)(b > 65535 * 8 ? 65535 * 8 : b);
    FMLP_DISPATCH_DTYPE(dt, { fmlp_gemm_fill_ones_kernel<T><<<blocks, 256, 0, s>>>(n, (T*)ones); });
    return fmlp_cuda_check(cudaGetLastError(), st, "fill kernel");
}

extern "C" int fmlp_launch_add(fmlp_dtype dt, int64_t n, void* y, const void* t, void* stream, fmlp_status* st) {
    if (n == 0) return FMLP_OK;
    cudaStream_t s = (cudaStream_t)stream;
    bool al = fmlp_aligned16(y) && fmlp_aligned16(t);
    int rc = 0;
    FMLP_DISPATCH_DTYPE(dt, {
        rc = launch_ew<T>(1, n, al, [&](auto sh, const Geom& g) {
            fmlp_gemm_add_kernel<T, decltype(sh)::v, decltype(sh)::u><<<g.blocks, kThreads, 0, s>>>(g, (T*)y, (const T*)t);
        });
    });
    return finish(rc, st, "add kernel");
}

extern "C" int fmlp_launch_colsum(fmlp_dtype dt, int64_t M, int64_t N, const void* dz, void* db, void* stream,
                                  fmlp_status* st) {
    cudaStream_t s = (cudaStream_t)stream;
    if (N == 0) return FMLP_OK;
    FMLP_DISPATCH_DTYPE(dt, {
        fmlp_gemm_colsum_kernel<T><<<(unsigned)((N + 31) / 32), dim3(32, 8), 0, s>>>(M, N, (const T*)dz, (T*)db);
    });
    return fmlp_cuda_check(cudaGetLastError(), st, "bias gradient kernel");
}

extern "C" int fmlp_launch_outer(fmlp_dtype dt, int64_t N, int64_t K, const void* a, const void* b, void* out,
                                 void* stream, fmlp_status* st) {
    if (N == 0 || K == 0) return FMLP_OK;
    cudaStream_t s = (cudaStream_t)stream;
    bool al = fmlp_aligned16(b) && fmlp_aligned16(out);
    int rc = 0;
    FMLP_DISPATCH_DTYPE(dt, {
        rc = launch_ew<T>(N, K, al, [&](auto sh, const Geom& g) {
            fmlp_gemm_outer_kernel<T, decltype(sh)::v, decltype(sh)::u>
                <<<g.blocks, kThreads, 0, s>>>(g, (const T*)a, (const T*)b, (T*)out);
        });
    });
    return finish(rc, st, "rank-1 weight gradient kernel");
}
