/* gemm.c — the GEMM provider the CUDA core's GEMM strategy calls (fmlp_gemm_fn):
 * cuBLAS through aten::mm.out, reached with the stable ABI's torch_call_dispatcher on
 * from_blob views of the core's buffers. aten runs it on torch's current stream and
 * applies torch.backends.cuda.matmul.allow_tf32 to float32, exactly as eager does. */
#include <string.h>
#include "../fmlp.h"
#include "gemm.h"

AOTITorchError aoti_torch_create_tensor_from_blob(void* data, int64_t ndim, const int64_t* sizes,
                                                  const int64_t* strides, int64_t storage_offset, int32_t dtype,
                                                  int32_t device_type, int32_t device_index, AtenTensorHandle* ret);
AOTITorchError torch_call_dispatcher(const char* op, const char* overload, StableIValue* stack,
                                     uint64_t extension_build_version);

static int32_t torch_dtype(fmlp_dtype dt) {
    switch (dt) {
    case FMLP_BF16: return aoti_torch_dtype_bfloat16();
    case FMLP_F16: return aoti_torch_dtype_float16();
    case FMLP_F64: return aoti_torch_dtype_float64();
    default: return aoti_torch_dtype_float32();
    }
}

uint64_t* fmlp_box_ivalue(uint64_t v); /* throw.cpp */

static StableIValue iv(AtenTensorHandle h) {
    StableIValue v = 0;
    memcpy(&v, &h, sizeof h);
    return v;
}

/* Calls an aten "out" overload; the call takes over the argument handles and leaves a new
 * reference to out in stack[0], released here. Returns the dispatcher's error code. */
static int call_out(const char* op, StableIValue* stack) {
    if (torch_call_dispatcher(op, "out", stack, FMLP_TORCH_ABI_2_10) != 0) return 1;
    AtenTensorHandle r;
    memcpy(&r, &stack[0], sizeof r);
    if (r) aoti_torch_delete_tensor_object(r);
    return 0;
}

int fmlp_shim_gemm(void* gemm_ctx, fmlp_dtype dt, int64_t M, int64_t N, int64_t K, const void* A, int64_t a_rs,
                   int64_t a_cs, const void* B, int64_t b_rs, int64_t b_cs, void* C, int64_t ldc, fmlp_status* st) {
    const fmlp_shim_gemm_ctx* g = (const fmlp_shim_gemm_ctx*)gemm_ctx;
    int32_t t = torch_dtype(dt);
    int64_t sa[2] = {M, K}, ta[2] = {a_rs, a_cs};
    int64_t sb[2] = {K, N}, tb[2] = {b_rs, b_cs};
    int64_t sc[2] = {M, N}, tc[2] = {ldc, 1};
    AtenTensorHandle ha = NULL, hb = NULL, hc = NULL;
    if (aoti_torch_create_tensor_from_blob((void*)A, 2, sa, ta, 0, t, g->device_type, g->device_index, &ha) ||
        aoti_torch_create_tensor_from_blob((void*)B, 2, sb, tb, 0, t, g->device_type, g->device_index, &hb) ||
        aoti_torch_create_tensor_from_blob(C, 2, sc, tc, 0, t, g->device_type, g->device_index, &hc)) {
        if (ha) aoti_torch_delete_tensor_object(ha);
        if (hb) aoti_torch_delete_tensor_object(hb);
        if (hc) aoti_torch_delete_tensor_object(hc);
        return fmlp_fail(st, FMLP_ERR_BACKEND, "could not wrap a GEMM operand as a tensor");
    }
    /* mm.out(Tensor self, Tensor mat2, *, Tensor(a!) out) */
    StableIValue stack[3] = {iv(ha), iv(hb), iv(hc)};
    if (call_out("aten::mm", stack))
        return fmlp_fail(st, FMLP_ERR_BACKEND, "aten::mm.out failed for a (%lld x %lld) @ (%lld x %lld) product",
                         (long long)M, (long long)K, (long long)K, (long long)N);
    return FMLP_OK;
}

int fmlp_shim_linear(void* gemm_ctx, fmlp_dtype dt, int64_t M, int64_t N, int64_t K, const void* A, const void* W,
                     const void* bias, void* C, fmlp_status* st) {
    const fmlp_shim_gemm_ctx* g = (const fmlp_shim_gemm_ctx*)gemm_ctx;
    int32_t t = torch_dtype(dt);
    int64_t sa[2] = {M, K}, ta[2] = {K, 1};
    int64_t sw[2] = {N, K}, tw[2] = {K, 1};
    int64_t sb[1] = {N}, tb[1] = {1};
    int64_t sc[2] = {M, N}, tc[2] = {N, 1};
    AtenTensorHandle ha = NULL, hw = NULL, hb = NULL, hc = NULL;
    int bad = aoti_torch_create_tensor_from_blob((void*)A, 2, sa, ta, 0, t, g->device_type, g->device_index, &ha) ||
              aoti_torch_create_tensor_from_blob((void*)W, 2, sw, tw, 0, t, g->device_type, g->device_index, &hw) ||
              aoti_torch_create_tensor_from_blob(C, 2, sc, tc, 0, t, g->device_type, g->device_index, &hc) ||
              (bias && aoti_torch_create_tensor_from_blob((void*)bias, 1, sb, tb, 0, t, g->device_type,
                                                          g->device_index, &hb));
    if (bad) {
        AtenTensorHandle all[4] = {ha, hw, hb, hc};
        for (int i = 0; i < 4; i++)
            if (all[i]) aoti_torch_delete_tensor_object(all[i]);
        return fmlp_fail(st, FMLP_ERR_BACKEND, "could not wrap a linear operand as a tensor");
    }
    /* linear.out(Tensor input, Tensor weight, Tensor? bias=None, *, Tensor(a!) out): a present
     * optional is a pointer to a heap-boxed StableIValue, absent is 0 */
    StableIValue opt = 0;
    if (hb) {
        uint64_t* box = fmlp_box_ivalue(iv(hb));
        memcpy(&opt, &box, sizeof box);
    }
    StableIValue stack[4] = {iv(ha), iv(hw), opt, iv(hc)};
    if (call_out("aten::linear", stack))
        return fmlp_fail(st, FMLP_ERR_BACKEND, "aten::linear.out failed for (%lld x %lld) -> %lld features",
                         (long long)M, (long long)K, (long long)N);
    return FMLP_OK;
}
