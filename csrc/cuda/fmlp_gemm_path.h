/* fmlp_gemm_path.h — the GEMM strategy (fmlp_gemm_path.c): cuBLAS products through
 * ctx->gemm, elementwise epilogues from fmlp_epilogue.cu. Any shape, any M. */
#ifndef FMLP_GEMM_PATH_H
#define FMLP_GEMM_PATH_H
#include "../fmlp_cuda.h"
size_t fmlp_gemm_forward_ws(const fmlp_desc* d, fmlp_dtype dt, int64_t M, int save);
size_t fmlp_gemm_backward_ws(const fmlp_desc* d, fmlp_dtype dt, int64_t M);
int fmlp_forward_gemm_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x, const fmlp_params* p,
                           void* out, void* const* saved, void* ws, const fmlp_cuda_ctx* ctx, fmlp_status* st);
int fmlp_backward_gemm_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* dout, const void* x,
                            const void* const* saved, const fmlp_params* p, void* dx, const fmlp_grads* g,
                            void* ws, const fmlp_cuda_ctx* ctx, fmlp_status* st);
#endif
