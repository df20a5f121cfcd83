/* fmlp.h — the fused_mlp C core API.
 *
 * One call runs a whole MLP stack, forward or backward:
 *
 *   plain stack (gated == 0), n_layers = L >= 1:
 *     h_0 = x;  z_i = h_i · W_iᵀ + b_i;  h_{i+1} = act_i(z_i);  out = h_L
 *   gated first layer (gated == 1), e.g. GeGLU / SwiGLU (L >= 2):
 *     h_1 = act_0(x · W_gᵀ + b_g) ⊙ (x · W_uᵀ + b_u);  then layers 1..L-1 as above
 *
 * Weight tensors, in order: plain: W_0..W_{L-1}; gated: W_g, W_u, W_1..W_{L-1}.
 * So there are n_weights = L + gated weight tensors; weight k has shape
 * (out_k, in_k) (the nn.Linear layout), row-major, contiguous.
 *
 * Dtypes: x, weights, biases, out, saved tensors and gradients all share one dtype
 * (float32, bfloat16 or float16); arithmetic accumulates in float32. float64 runs on the
 * CPU only, entirely in double (fmlp_*_cpu_f64).
 *
 * Memory: the caller owns every buffer, including the workspace whose size the
 * *_workspace_bytes functions return (the torch shim allocates it through torch's
 * allocator, so CUDA scratch is graph-safe). The core never allocates device memory
 * and never aborts: every failure returns a non-zero fmlp_status code with a message.
 *
 * Backends: fmlp_cpu.c (this file's *_cpu functions) and csrc/cuda (the *_cuda ones,
 * declared in fmlp_cuda.h).
 */
#ifndef FMLP_H
#define FMLP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ========================================================================== */
/* Description of an MLP                                                      */
/* ========================================================================== */

#define FMLP_MAX_LAYERS 32

typedef enum {
    FMLP_F32 = 0,
    FMLP_BF16 = 1,
    FMLP_F16 = 2,
    FMLP_F64 = 3, /* CPU only, computed in double (gradcheck, high-precision users) */
} fmlp_dtype;

/* Activation codes; the Python layer uses the same numbers (fused_mlp/_activations.py). */
typedef enum {
    FMLP_ACT_IDENTITY = 0,
    FMLP_ACT_RELU = 1,
    FMLP_ACT_GELU = 2,      /* exact, erf form */
    FMLP_ACT_GELU_TANH = 3, /* tanh approximation */
    FMLP_ACT_SILU = 4,
    FMLP_ACT_TANH = 5,
    FMLP_ACT_SIGMOID = 6,
    FMLP_ACT_LEAKY_RELU = 7, /* slope = fmlp_desc.negative_slope */
    FMLP_ACT_COUNT = 8,
} fmlp_activation;

typedef struct {
    int n_layers;                       /* L, 1..FMLP_MAX_LAYERS                    */
    int gated;                          /* 1: layer 0 is a gate/up pair (L >= 2)    */
    int64_t width[FMLP_MAX_LAYERS + 1]; /* width[0] = in, width[i+1] = out of layer i */
    int act[FMLP_MAX_LAYERS];           /* activation after layer i (gated: on gate) */
    int has_bias[FMLP_MAX_LAYERS + 1];  /* per weight tensor (n_weights entries)     */
    float negative_slope;               /* for FMLP_ACT_LEAKY_RELU                   */
} fmlp_desc;

/* Pointers to the parameters, one entry per weight tensor (n_weights = L + gated).
 * w[k]: (out_k, in_k) row-major; b[k]: (out_k,) or NULL when has_bias[k] == 0. */
typedef struct {
    const void* w[FMLP_MAX_LAYERS + 1];
    const void* b[FMLP_MAX_LAYERS + 1];
} fmlp_params;

/* Gradient outputs, same indexing as fmlp_params. Entries may be NULL to skip. */
typedef struct {
    void* dw[FMLP_MAX_LAYERS + 1];
    void* db[FMLP_MAX_LAYERS + 1];
} fmlp_grads;

/* ========================================================================== */
/* Status                                                                     */
/* ========================================================================== */

typedef enum {
    FMLP_OK = 0,
    FMLP_ERR_INVALID = 1,     /* a description or argument breaks the contract */
    FMLP_ERR_UNSUPPORTED = 2, /* valid, but this backend cannot run it          */
    FMLP_ERR_BACKEND = 3,     /* the device reported an error (CUDA)            */
} fmlp_code;

typedef struct {
    int code;       /* fmlp_code */
    char msg[512];  /* human-readable, names the argument and the expectation */
} fmlp_status;

/* Sets st (if non-NULL) and returns code. printf-style. */
int fmlp_fail(fmlp_status* st, int code, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ========================================================================== */
/* Description helpers (fmlp_desc.c)                                          */
/* ========================================================================== */

static inline int fmlp_n_weights(const fmlp_desc* d) { return d->n_layers + d->gated; }

/* Shape of weight tensor k: (out, in). Layer of weight k: gated ? max(k-1,0) : k. */
void fmlp_weight_shape(const fmlp_desc* d, int k, int64_t* out, int64_t* in);

/* Checks n_layers, gated, widths >= 1, activation codes; gated needs a gating
 * activation (gelu, gelu_tanh, silu, or any other code; SwiGLU/GeGLU are the usual). */
int fmlp_desc_validate(const fmlp_desc* d, fmlp_status* st);

/* Saved-for-backward tensors. The forward stores the pre-activation z of
 *   - every layer i < L-1 (it is, after act, the next layer's input), and
 *   - the last layer when its activation is not identity;
 * a gated layer 0 stores two: z_gate then z_up, each (M, width[1]).
 * Saved tensor s has shape (M, fmlp_saved_width(d, s)), dtype = the call's dtype.
 * The input x is needed too, and is kept by the caller (not counted here). */
int fmlp_saved_count(const fmlp_desc* d);
int64_t fmlp_saved_width(const fmlp_desc* d, int s);
/* Index of the first saved tensor holding layer i's pre-activation, or -1. */
int fmlp_saved_index(const fmlp_desc* d, int layer);

size_t fmlp_dtype_size(fmlp_dtype dt); /* bytes per element */

/* ========================================================================== */
/* CPU backend (csrc/cpu)                                                     */
/* ========================================================================== */

/* Runs body(begin, end, ctx) over [0, n) split in chunks of at least grain; the shim
 * passes torch's parallel_for so the core shares torch's thread pool and honours
 * torch.set_num_threads. NULL means serial. */
typedef void (*fmlp_range_fn)(int64_t begin, int64_t end, void* ctx);
typedef struct {
    void (*parallel_for)(int64_t n, int64_t grain, fmlp_range_fn body, void* ctx);
    int num_threads; /* upper bound on concurrent bodies, >= 1 */
} fmlp_cpu_ctx;

/* Bytes of scratch the CPU forward / backward need for M rows (may be 0). */
size_t fmlp_forward_workspace_bytes_cpu(const fmlp_desc* d, fmlp_dtype dt, int64_t M, int save,
                                        const fmlp_cpu_ctx* ctx);
size_t fmlp_backward_workspace_bytes_cpu(const fmlp_desc* d, fmlp_dtype dt, int64_t M,
                                         const fmlp_cpu_ctx* ctx);

/* Forward.
 *   x      (M, width[0])          input
 *   p      weights/biases as above
 *   out    (M, width[L])          written fully
 *   saved  NULL, or fmlp_saved_count(d) pointers, saved[s] (M, fmlp_saved_width(d, s))
 *   ws     workspace of fmlp_forward_workspace_bytes_cpu(...) bytes, 64-byte aligned
 * M may be 0. Buffers must not overlap. */
int fmlp_forward_cpu(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* x,
                     const fmlp_params* p, void* out, void* const* saved, void* ws,
                     const fmlp_cpu_ctx* ctx, fmlp_status* st);

/* Backward, from what the forward saved.
 *   dout   (M, width[L])          gradient of out
 *   x      (M, width[0])          the forward's input
 *   saved  fmlp_saved_count(d) tensors from a forward with the same d, p
 *   dx     (M, width[0]) or NULL  gradient of x (overwritten)
 *   g      dw[k] (out_k, in_k), db[k] (out_k,), entries NULL to skip (overwritten)
 * M may be 0 (then dw, db are zero-filled). */
int fmlp_backward_cpu(const fmlp_desc* d, fmlp_dtype dt, int64_t M, const void* dout,
                      const void* x, const void* const* saved, const fmlp_params* p, void* dx,
                      const fmlp_grads* g, void* ws, const fmlp_cpu_ctx* ctx, fmlp_status* st);

/* float64 variants (csrc/cpu/fmlp_cpu_f64.c): same contract, all arithmetic in double,
 * serial and unblocked: a precise path for gradcheck, not a fast one. No workspace. */
int fmlp_forward_cpu_f64(const fmlp_desc* d, int64_t M, const double* x, const fmlp_params* p,
                         double* out, void* const* saved, fmlp_status* st);
int fmlp_backward_cpu_f64(const fmlp_desc* d, int64_t M, const double* dout, const double* x,
                          const void* const* saved, const fmlp_params* p, double* dx,
                          const fmlp_grads* g, fmlp_status* st);

#ifdef __cplusplus
}
#endif
#endif /* FMLP_H */
