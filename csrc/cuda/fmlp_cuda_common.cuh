// fmlp_cuda_common.cuh — device helpers shared by the CUDA kernels: element loads and
// stores of float32 / bfloat16 / float16 as float32, 16-byte vector access.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
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

// Lets kernel fn use `bytes` of dynamic shared memory on `device` (the current device). The
// attribute is per device and costs host time to set, so it is raised only past what
// allowed[device] (the caller's per-device record for fn, zero-initialised) says it already is.
static inline cudaError_t fmlp_allow_smem(const void* fn, size_t bytes, int device, size_t* allowed) {
    const int known = device >= 0 && device < FMLP_CUDA_MAX_DEV;
    if (bytes <= 48 * 1024 || (known && allowed[device] >= bytes)) return cudaSuccess;
    cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e == cudaSuccess && known) allowed[device] = bytes;
    return e;
}

// 1 if p is 16-byte aligned (NULL counts as aligned): the vector paths' precondition.
static inline int fmlp_aligned16(const void* p) { return ((uintptr_t)p & 15) == 0; }

// A dev knob: the integer value of environment variable `name`, -1 when unset or empty,
// read once into *cache (a static of the caller, initialised to -2).
static inline int fmlp_env_knob(const char* name, int* cache) {
    if (*cache == -2) {
        const char* e = getenv(name);
        *cache = e && *e ? atoi(e) : -1;
    }
    return *cache;
}

// D (16x8, float32) += A (16x16, row) · B (16x8, col), bfloat16 or float16 operands: the
// mma.sync fragment layout (a: 4 registers, b: 2).
template <typename T>
__device__ __forceinline__ void fmlp_mma16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1);
// One specialisation per operand type; only the PTX type name differs.
#define FMLP_MMA16816_SPEC(T, PTX_T)                                                                  \
    template <>                                                                                       \
    __device__ __forceinline__ void fmlp_mma16816<T>(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) { \
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PTX_T "." PTX_T ".f32 {%0,%1,%2,%3}, "   \
                     "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"                                           \
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                   \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));                  \
    }
FMLP_MMA16816_SPEC(__nv_bfloat16, "bf16")
FMLP_MMA16816_SPEC(__half, "f16")
#undef FMLP_MMA16816_SPEC

static inline int fmlp_cuda_check(cudaError_t e, fmlp_status* st, const char* what) {
    if (e == cudaSuccess) return FMLP_OK;
    return fmlp_fail(st, FMLP_ERR_BACKEND, "%s: CUDA error %s (%s)", what, cudaGetErrorName(e),
                     cudaGetErrorString(e));
}
