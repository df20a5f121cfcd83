// fmlp_epilogue.cu — elementwise kernels of the GEMM strategy (large M, any shape).
//
// cuBLAS (through aten::mm, see csrc/shim/gemm.c) computes each layer's product; these
// kernels do the rest in one pass over the product: bias + activation (saving the
// pre-activation when training), GLU gating, the activation's backward, bias gradients.
// Memory-bound: each reads and writes every element once, 16 bytes per access when the
// row width allows (N % (16 / sizeof(T)) == 0). Contract: fmlp_epilogue.h.
// Built by setup.py (nvcc, sm_80 + sm_90a); tested by tests/test_cuda.py.
#include "fmlp_cuda_common.cuh"
#include "fmlp_epilogue.h"
#include "../fmlp_activation.h"

namespace {

constexpr int kThreads = 256;

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
    __device__ __forceinline__ void add_bias(const T* b, int64_t n) {
        if (!b) return;
#pragma unroll
        for (int j = 0; j < V; j++) f[j] += fmlp_to_f32(b[n + j]);
    }
};

#define FMLP_GRID_LOOP(chunks) \
    for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < (chunks); c += (int64_t)gridDim.x * blockDim.x)

// z (M, N): z += bias; h = act(z); z written back only when h != z.
template <typename T, int V>
__global__ void fmlp_gemm_bias_act_kernel(int64_t chunks, int64_t N, T* z, const T* bias, T* h, int act, float slope) {
    FMLP_GRID_LOOP(chunks) {
        int64_t i = c * V;
        Chunk<T, V> a;
        a.load(z, i);
        a.add_bias(bias, i % N);
        if (h != z) a.store(z, i);
#pragma unroll
        for (int j = 0; j < V; j++) a.f[j] = fmlp_act(act, a.f[j], slope);
        a.store(h, i);
    }
}

// zg, zu (M, N): += biases; h = act(zg) * zu.
template <typename T, int V>
__global__ void fmlp_gemm_glu_kernel(int64_t chunks, int64_t N, T* zg, T* zu, const T* bg, const T* bu, T* h, int act,
                           float slope, int keep) {
    FMLP_GRID_LOOP(chunks) {
        int64_t i = c * V;
        Chunk<T, V> g, u;
        g.load(zg, i);
        u.load(zu, i);
        g.add_bias(bg, i % N);
        u.add_bias(bu, i % N);
        if (keep) {
            g.store(zg, i);
            u.store(zu, i);
        }
#pragma unroll
        for (int j = 0; j < V; j++) g.f[j] = fmlp_act(act, g.f[j], slope) * u.f[j];
        g.store(h, i);
    }
}

// dz = g * act'(z); h = act(z) when h != NULL
template <typename T, int V>
__global__ void fmlp_gemm_dact_kernel(int64_t chunks, const T* g, const T* z, T* dz, T* h, int act, float slope) {
    FMLP_GRID_LOOP(chunks) {
        int64_t i = c * V;
        Chunk<T, V> a, b;
        a.load(g, i);
        b.load(z, i);
#pragma unroll
        for (int j = 0; j < V; j++) a.f[j] *= fmlp_dact(act, b.f[j], slope);
        a.store(dz, i);
        if (h) {
#pragma unroll
            for (int j = 0; j < V; j++) b.f[j] = fmlp_act(act, b.f[j], slope);
            b.store(h, i);
        }
    }
}

// dzg = g * zu * act'(zg); dzu = g * act(zg)
template <typename T, int V>
__global__ void fmlp_gemm_dglu_kernel(int64_t chunks, const T* g, const T* zg, const T* zu, T* dzg, T* dzu, T* h,
                                      int act, float slope) {
    FMLP_GRID_LOOP(chunks) {
        int64_t i = c * V;
        Chunk<T, V> a, zgc, zuc, outg, outu;
        a.load(g, i);
        zgc.load(zg, i);
        zuc.load(zu, i);
#pragma unroll
        for (int j = 0; j < V; j++) {
            float ag = fmlp_act(act, zgc.f[j], slope);
            outg.f[j] = a.f[j] * zuc.f[j] * fmlp_dact(act, zgc.f[j], slope);
            outu.f[j] = a.f[j] * ag;
            zgc.f[j] = ag * zuc.f[j];
        }
        outg.store(dzg, i);
        outu.store(dzu, i);
        if (h) zgc.store(h, i);
    }
}

template <typename T, int V>
__global__ void fmlp_gemm_add_kernel(int64_t chunks, T* y, const T* t) {
    FMLP_GRID_LOOP(chunks) {
        int64_t i = c * V;
        Chunk<T, V> a, b;
        a.load(y, i);
        b.load(t, i);
#pragma unroll
        for (int j = 0; j < V; j++) a.f[j] += b.f[j];
        a.store(y, i);
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
    FMLP_GRID_LOOP(n) out[c] = fmlp_from_f32<T>(1.0f);
}

int grid_for(int64_t chunks) {
    int64_t b = (chunks + kThreads - 1) / kThreads;
    if (b > 65535 * 8) b = 65535 * 8;
    return (int)(b < 1 ? 1 : b);
}

// Runs K<T, V> with V = 16-byte vectors when every row is a whole number of vectors.
#define FMLP_LAUNCH_VEC(dt, rows, cols, KERNEL, ...)                                            \
    do {                                                                                         \
        if ((rows) * (cols) == 0) break;                                                         \
        FMLP_DISPATCH_DTYPE(dt, {                                                                \
            constexpr int V = fmlp_vec<T>::N;                                                    \
            if ((cols) % V == 0) {                                                               \
                int64_t chunks = (rows) * (cols) / V;                                            \
                KERNEL<T, V><<<grid_for(chunks), kThreads, 0, s>>>(chunks, __VA_ARGS__);         \
            } else {                                                                             \
                int64_t chunks = (rows) * (cols);                                                \
                KERNEL<T, 1><<<grid_for(chunks), kThreads, 0, s>>>(chunks, __VA_ARGS__);         \
            }                                                                                    \
        });                                                                                      \
    } while (0)

}  // namespace

extern "C" int fmlp_launch_bias_act(fmlp_dtype dt, int64_t M, int64_t N, void* z, const void* bias, void* h,
                                    int act, float slope, void* stream, fmlp_status* st) {
    cudaStream_t s = (cudaStream_t)stream;
    FMLP_LAUNCH_VEC(dt, M, N, fmlp_gemm_bias_act_kernel, N, (T*)z, (const T*)bias, (T*)h, act, slope);
    return fmlp_cuda_check(cudaGetLastError(), st, "bias+activation kernel");
}

extern "C" int fmlp_launch_glu(fmlp_dtype dt, int64_t M, int64_t N, void* zg, void* zu, const void* bg,
                               const void* bu, void* h, int act, float slope, void* stream, fmlp_status* st) {
    cudaStream_t s = (cudaStream_t)stream;
    int keep = h != zg;
    FMLP_LAUNCH_VEC(dt, M, N, fmlp_gemm_glu_kernel, N, (T*)zg, (T*)zu, (const T*)bg, (const T*)bu, (T*)h, act, slope, keep);
    return fmlp_cuda_check(cudaGetLastError(), st, "gated activation kernel");
}

extern "C" int fmlp_launch_dact(fmlp_dtype dt, int64_t M, int64_t N, const void* g, const void* z, void* dz,
                                void* h, int act, float slope, void* stream, fmlp_status* st) {
    cudaStream_t s = (cudaStream_t)stream;
    FMLP_LAUNCH_VEC(dt, M, N, fmlp_gemm_dact_kernel, (const T*)g, (const T*)z, (T*)dz, (T*)h, act, slope);
    return fmlp_cuda_check(cudaGetLastError(), st, "activation backward kernel");
}

extern "C" int fmlp_launch_dglu(fmlp_dtype dt, int64_t M, int64_t N, const void* g, const void* zg,
                                const void* zu, void* dzg, void* dzu, void* h, int act, float slope, void* stream,
                                fmlp_status* st) {
    cudaStream_t s = (cudaStream_t)stream;
    FMLP_LAUNCH_VEC(dt, M, N, fmlp_gemm_dglu_kernel, (const T*)g, (const T*)zg, (const T*)zu, (T*)dzg, (T*)dzu,
                    (T*)h, act, slope);
    return fmlp_cuda_check(cudaGetLastError(), st, "gated activation backward kernel");
}

extern "C" int fmlp_launch_fill_ones(fmlp_dtype dt, int64_t n, void* ones, void* stream, fmlp_status* st) {
    cudaStream_t s = (cudaStream_t)stream;
    if (n == 0) return FMLP_OK;
    FMLP_DISPATCH_DTYPE(dt, { fmlp_gemm_fill_ones_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, (T*)ones); });
    return fmlp_cuda_check(cudaGetLastError(), st, "fill kernel");
}

extern "C" int fmlp_launch_add(fmlp_dtype dt, int64_t n, void* y, const void* t, void* stream, fmlp_status* st) {
    cudaStream_t s = (cudaStream_t)stream;
    int64_t one = 1;
    FMLP_LAUNCH_VEC(dt, one, n, fmlp_gemm_add_kernel, (T*)y, (const T*)t);
    return fmlp_cuda_check(cudaGetLastError(), st, "add kernel");
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
