// fmlp_cuda_common.cuh — device helpers shared by the CUDA kernels: element loads and
// stores of float32 / bfloat16 / float16 as float32, 16-byte vector access.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include "../fmlp.h"

__device__ __forceinline__ float fmlp_to_f32(float v) { return v; }
__device__ __forceinline__ float fmlp_to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float fmlp_to_f32(__half v) { return __half2float(v); }

template <typename T> __device__ __forceinline__ T fmlp_from_f32(float v);
template <> __device__ __forceinline__ float fmlp_from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 fmlp_from_f32<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ __half fmlp_from_f32<__half>(float v) { return __float2half(v); }

// A 16-byte chunk of T, for vectorised elementwise passes.
template <typename T> struct alignas(16) fmlp_vec {
    static constexpr int N = 16 / sizeof(T);
    T v[N];
};

// Calls F<T> with T the element type of dt (host side).
#define FMLP_DISPATCH_DTYPE(dt, ...)                     \
    do {                                                 \
        if ((dt) == FMLP_BF16) {                         \
            typedef __nv_bfloat16 T;                     \
            __VA_ARGS__;                                 \
        } else if ((dt) == FMLP_F16) {                   \
            typedef __half T;                            \
            __VA_ARGS__;                                 \
        } else {                                         \
            typedef float T;                             \
            __VA_ARGS__;                                 \
        }                                                \
    } while (0)

// Shared memory a block may opt into on `device` (cudaDevAttrMaxSharedMemoryPerBlockOptin),
// queried once per device and translation unit (the query costs microseconds per call);
// 0 if the query fails or the index is out of range.
#define FMLP_CUDA_MAX_DEV 64
static inline int fmlp_optin_smem(int device) {
    static int optin[FMLP_CUDA_MAX_DEV];
    if (device < 0 || device >= FMLP_CUDA_MAX_DEV) return 0;
    if (optin[device] == 0) {
        int v = 0;
        if (cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) return 0;
        optin[device] = v;
    }
    return optin[device];
}

static inline int fmlp_cuda_check(cudaError_t e, fmlp_status* st, const char* what) {
    if (e == cudaSuccess) return FMLP_OK;
    return fmlp_fail(st, FMLP_ERR_BACKEND, "%s: CUDA error %s (%s)", what, cudaGetErrorName(e),
                     cudaGetErrorString(e));
}
