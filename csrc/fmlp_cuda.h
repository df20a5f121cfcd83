/* fmlp_cuda.h — the CUDA backend of the fused_mlp core (csrc/cuda/).
 *
 * Same contract as the CPU functions in fmlp.h (descriptions, dtypes float32 /
 * bfloat16 / float16 with float32 accumulation, saved-tensor layout, caller-owned
 * buffers), plus:
 *   - every pointer is device memory on ctx->device; all work is enqueued on
 *     ctx->stream (torch's current stream); no synchronisation, no host or device
 *     allocation, so a call can be captured in a CUDA graph;
 *   - the workspace comes from the caller (torch's caching allocator) and must be at
 *     least the *_workspace_bytes_cuda size, 256-byte aligned;
 *   - float32 never uses TF32 in our kernels; GEMMs handed to ctx->gemm (aten::mm,
 *     cuBLAS) follow torch.backends.cuda.matmul.allow_tf32 as eager does.
 *
 * Strategies (chosen per call by fmlp_cuda_plan, csrc/cuda/fmlp_dispatch.c):
 *   FMLP_STRATEGY_GEMM     cuBLAS GEMMs through ctx->gemm + our fused bias/activation/
 *                          gating epilogue kernels (any shape; the large-M workhorse)
 *   FMLP_STRATEGY_SMALL_M  one launch for the whole forward, weights streamed from HBM
 *                          once across all SMs (M <= 64; csrc/cuda/fmlp_small_m.cu)
 *   FMLP_STRATEGY_NARROW   one launch for the whole forward, every layer's weights in each
 *                          block's shared memory, any M (widths <= 256; fmlp_narrow.cu)
 *   FMLP_STRATEGY_SKINNY   one tensor-core launch per layer with bias/activation/gating fused,
 *                          layers overlapped by programmatic dependent launch (M <= 64, 16-bit;
 *                          fmlp_skinny.cu; 16 < M <= 64 on sm_90: TMA-staged tiles, K split
 *                          over a cluster, fmlp_skinny_tile.cu)
 */
#ifndef FMLP_CUDA_H
#define FMLP_CUDA_H
#include "fmlp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FMLP_STRATEGY_AUTO = 0,
    FMLP_STRATEGY_GEMM = 1,
    FMLP_STRATEGY_SMALL_M = 2,
    FMLP_STRATEGY_NARROW = 3,
    FMLP_STRATEGY_SKINNY = 4,
    FMLP_STRATEGY_COUNT = 5,
} fmlp_strategy;

/* C (M, N), row stride ldc = C[m * ldc + n], dtype dt, = A·B (+ C when accumulate),
 * A[m, k] at A + m*a_rs + k*a_cs, B[k, n] at B + k*b_rs + n*b_cs (element strides),
 * float32 accumulation. Provided by the shim (aten::mm on torch's stream). */
typedef int (*fmlp_gemm_fn)(void* gemm_ctx, fmlp_dtype dt, int64_t M, int64_t N, int64_t K,
                            const void* A, int64_t a_rs, int64_t a_cs, const void* B, int64_t b_rs,
                            int64_t b_cs, void* C, int64_t ldc, fmlp_status* st);

/* C (M, N) row-major = A (M, K) row-major · W (N, K)ᵀ + bias (N,) (bias may be NULL), in
 * dtype dt with float32 accumulation and ONE rounding: the product eager's nn.Linear
 * computes (aten::linear, cuBLASLt's bias epilogue). Provided by the shim. */
typedef int (*fmlp_linear_fn)(void* gemm_ctx, fmlp_dtype dt, int64_t M, int64_t N, int64_t K, const void* A,
                              const void* W, const void* bias, void* C, fmlp_status* st);

typedef struct {
    void* stream;       /* cudaStream_t */
    int device;         /* device index; the caller has made it current */
    int sm_count;       /* multiprocessors of ctx->device (filled by fmlp_cuda_ctx_init) */
    int cc_major, cc_minor;
    fmlp_gemm_fn gemm;  /* may be NULL only if the plan never needs a GEMM */
    fmlp_linear_fn linear;
    void* gemm_ctx;     /* passed to gemm and linear */
    int force_strategy; /* FMLP_STRATEGY_AUTO, or a strategy to use when it supports the call */
    int capturing;      /* 1: ctx->stream is being captured into a CUDA graph (set by the caller) */
} fmlp_cuda_ctx;

/* Fills sm_count and compute capability of ctx->device; error if the GPU is older than
 * sm_80 (the kernels are built for sm_80 and sm_90a). */
int fmlp_cuda_ctx_init(fmlp_cuda_ctx* ctx, fmlp_status* st);

/* The strategy a call will use, and why (a static string). Deterministic in its
 * arguments, so workspace sizing and the call agree. backward != 0 plans the backward. */
int fmlp_cuda_plan(const fmlp_desc* d, fmlp_dtype dt, int64_t M, int save, int backward,
                   const fmlp_cuda_ctx* ctx, const char** why);
const char* fmlp_strategy_name(int strategy);

size_t fmlp_forward_workspace_bytes_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, int save,
                                         const fmlp_cuda_ctx* ctx);
size_t fmlp_backward_workspace_bytes_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M,
                                          const fmlp_cuda_ctx* ctx);

int fmlp_forward_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x,
                      const fmlp_params* p, void* out, void* const* saved, void* ws,
                      const fmlp_cuda_ctx* ctx, fmlp_status* st);
int fmlp_backward_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* dout,
                       const void* x, const void* const* saved, const fmlp_params* p, void* dx,
                       const fmlp_grads* g, void* ws, const fmlp_cuda_ctx* ctx, fmlp_status* st);

/* ---- the single-launch small-M forward (csrc/cuda/fmlp_small_m.cu) ---------------- */
/* 1 if the kernel handles (d, dt, M) — else 0 and *why says what it lacks. */
int fmlp_small_m_supported(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx,
                           const char** why);
size_t fmlp_small_m_workspace_bytes(const fmlp_desc* d, fmlp_dtype dt, int64_t M,
                                    const fmlp_cuda_ctx* ctx);
/* Forward in ONE kernel launch (plus at most one cudaMemsetAsync of ws, if the kernel
 * needs zeroed counters). Writes out and, when saved != NULL, the saved tensors. */
int fmlp_forward_small_m_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x,
                              const fmlp_params* p, void* out, void* const* saved, void* ws,
                              const fmlp_cuda_ctx* ctx, fmlp_status* st);

/* ---- the narrow forward (csrc/cuda/fmlp_narrow.cu) ----------------------------------- */
/* 1 if the kernel handles (d, dt, M): plain layers, every width <= 256, <= 16 layers, the
 * weights as float32 plus two row tiles in one block's shared memory — else 0 and *why. */
int fmlp_narrow_supported(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx,
                          const char** why);
/* Inference forward in ONE kernel launch, no workspace, no saved tensors. M may be 0. */
int fmlp_forward_narrow_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x,
                             const fmlp_params* p, void* out, const fmlp_cuda_ctx* ctx,
                             fmlp_status* st);

/* ---- the skinny forward (csrc/cuda/fmlp_skinny.cu) ----------------------------------- */
/* 1 if the kernel handles (d, dt, M): bfloat16 / float16, M <= 64, any widths (16-byte loads
 * where K % 8 == 0 and the pointers allow, element loads elsewhere) — else 0 and *why. */
int fmlp_skinny_supported(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx,
                          const char** why);
size_t fmlp_skinny_workspace_bytes(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const fmlp_cuda_ctx* ctx);
/* Forward in one kernel launch per layer (plus one cudaMemsetAsync of ws when the first
 * layer splits K). Writes out and, when saved != NULL, the saved tensors. M may be 0. */
int fmlp_forward_skinny_cuda(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x,
                             const fmlp_params* p, void* out, void* const* saved, void* ws,
                             const fmlp_cuda_ctx* ctx, fmlp_status* st);
#ifdef __cplusplus
}
#endif
#endif /* FMLP_CUDA_H */
