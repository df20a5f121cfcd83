/* gemm.h — the shim's GEMM provider for the CUDA core (gemm.c). */
#ifndef FMLP_SHIM_GEMM_H
#define FMLP_SHIM_GEMM_H
#include "stable_abi.h"
#include "../fmlp.h"
typedef struct {
    int32_t device_type, device_index;
} fmlp_shim_gemm_ctx;
/* fmlp_gemm_fn (fmlp_cuda.h) over aten::mm.out */
int fmlp_shim_gemm(void* gemm_ctx, fmlp_dtype dt, int64_t M, int64_t N, int64_t K, const void* A, int64_t a_rs,
                   int64_t a_cs, const void* B, int64_t b_rs, int64_t b_cs, void* C, int64_t ldc, fmlp_status* st);
/* fmlp_linear_fn (fmlp_cuda.h) over aten::linear.out */
int fmlp_shim_linear(void* gemm_ctx, fmlp_dtype dt, int64_t M, int64_t N, int64_t K, const void* A, const void* W,
                     const void* bias, void* C, fmlp_status* st);
#endif
