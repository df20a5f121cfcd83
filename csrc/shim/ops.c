/* ops.c — the boxed torch kernels of fused_mlp::forward and fused_mlp::backward.
 *
 * Each kernel unpacks the dispatcher's stack (StableIValues), checks every argument
 * against the op's contract (a failure names the argument and the expectation, and
 * raises RuntimeError through fmlp_throw), allocates outputs and the workspace through
 * torch's allocator, and calls the C core for the tensors' device. Schemas: module.c.
 *
 * Ownership (LibTorch stable ABI): each Tensor argument arrives as an owning handle;
 * list arguments arrive as owning list handles whose items we then own. Everything is
 * released before returning or throwing; result handles are handed to torch. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../fmlp.h"
#ifdef FMLP_WITH_CUDA
#include <cuda_runtime_api.h>
#include "../fmlp_cuda.h"
#endif
#include "configs.h"
#include "gemm.h"
#include "ops.h"
#include "stable_abi.h"
#include "ws_cache.h"

void fmlp_throw(const char* msg); /* throw.cpp; never returns */

/* ---- ownership arena ------------------------------------------------------ */
#define MAX_OWNED (4 * (FMLP_MAX_LAYERS + 2) + 16)
typedef struct {
    AtenTensorHandle t[MAX_OWNED];
    int n;
} arena;

static void arena_release(arena* a) {
    for (int i = 0; i < a->n; i++)
        if (a->t[i]) aoti_torch_delete_tensor_object(a->t[i]);
    a->n = 0;
}

static void fail(arena* a, const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    arena_release(a);
    fmlp_throw(buf);
}

static void own(arena* a, AtenTensorHandle t) {
    if (a->n >= MAX_OWNED) {
        aoti_torch_delete_tensor_object(t);
        fail(a, "fused_mlp: too many tensors in one call (at most %d layers)", FMLP_MAX_LAYERS);
    }
    a->t[a->n++] = t;
}

/* Hands a result over to torch: forget it in the arena. */
static void disown(arena* a, AtenTensorHandle t) {
    for (int i = 0; i < a->n; i++)
        if (a->t[i] == t) a->t[i] = NULL;
}

/* ---- StableIValue unpacking ----------------------------------------------- */
static AtenTensorHandle iv_tensor(StableIValue v) { AtenTensorHandle h; memcpy(&h, &v, sizeof h); return h; }
static StableIValue tensor_iv(AtenTensorHandle h) { StableIValue v = 0; memcpy(&v, &h, sizeof h); return v; }
static StableListHandle iv_list(StableIValue v) { StableListHandle h; memcpy(&h, &v, sizeof h); return h; }
static StableIValue list_iv(StableListHandle h) { StableIValue v = 0; memcpy(&v, &h, sizeof h); return v; }
static double iv_double(StableIValue v) { double d; memcpy(&d, &v, sizeof d); return d; }
static int iv_bool(StableIValue v) { unsigned char b; memcpy(&b, &v, 1); return b != 0; }

typedef struct {
    AtenTensorHandle h;
    int32_t dtype, dev_type, dev_index;
    int64_t dim;
    int64_t* sizes;
    int64_t* strides;
    void* data;
} tinfo;

static tinfo info_of(AtenTensorHandle h) {
    tinfo t;
    t.h = h;
    aoti_torch_get_dtype(h, &t.dtype);
    aoti_torch_get_device_type(h, &t.dev_type);
    aoti_torch_get_device_index(h, &t.dev_index);
    aoti_torch_get_dim(h, &t.dim);
    aoti_torch_get_sizes(h, &t.sizes);
    aoti_torch_get_strides(h, &t.strides);
    aoti_torch_get_data_ptr(h, &t.data);
    return t;
}

/* Reads a Tensor[] argument into infos (owning); returns its length. */
static int take_tensor_list(arena* a, StableIValue v, tinfo* out, int cap, const char* name) {
    StableListHandle l = iv_list(v);
    size_t n = 0;
    torch_list_size(l, &n);
    for (size_t i = 0; i < n; i++) {
        StableIValue item;
        torch_list_get_item(l, i, &item);
        if (i < (size_t)cap) {
            own(a, iv_tensor(item));
            out[i] = info_of(iv_tensor(item));
        } else {
            aoti_torch_delete_tensor_object(iv_tensor(item));
        }
    }
    torch_delete_list(l);
    if (n > (size_t)cap) fail(a, "fused_mlp: %s has %zu tensors, at most %d are supported", name, n, cap);
    return (int)n;
}

static int take_int_list(arena* a, StableIValue v, int64_t* out, int cap, const char* name) {
    StableListHandle l = iv_list(v);
    size_t n = 0;
    torch_list_size(l, &n);
    for (size_t i = 0; i < n && i < (size_t)cap; i++) {
        StableIValue item;
        torch_list_get_item(l, i, &item);
        memcpy(&out[i], &item, sizeof(int64_t));
    }
    torch_delete_list(l);
    if (n > (size_t)cap) fail(a, "fused_mlp: %s has %zu entries, at most %d are supported", name, n, cap);
    return (int)n;
}

/* ---- checks --------------------------------------------------------------- */
static const char* dtype_name(int32_t dt) {
    if (dt == aoti_torch_dtype_float32()) return "torch.float32";
    if (dt == aoti_torch_dtype_bfloat16()) return "torch.bfloat16";
    if (dt == aoti_torch_dtype_float16()) return "torch.float16";
    if (dt == aoti_torch_dtype_float64()) return "torch.float64";
    return "an unsupported dtype";
}

static const char* device_name(const tinfo* t, char* buf, size_t n) {
    if (t->dev_type == aoti_torch_device_type_cpu()) snprintf(buf, n, "cpu");
    else if (t->dev_type == aoti_torch_device_type_cuda()) snprintf(buf, n, "cuda:%d", t->dev_index);
    else snprintf(buf, n, "device type %d", t->dev_type);
    return buf;
}

static void shape_str(const tinfo* t, char* buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int64_t i = 0; i < t->dim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->sizes[i]);
    if (t->dim == 1 && k < n) k += (size_t)snprintf(buf + k, n - k, ",");
    if (k < n) snprintf(buf + k, n - k, ")");
}

static int is_contiguous(const tinfo* t) {
    for (int64_t i = 0; i < t->dim; i++)
        if (t->sizes[i] == 0) return 1; /* no elements: any strides will do (as in torch) */
    int64_t expect = 1;
    for (int64_t i = t->dim - 1; i >= 0; i--) {
        if (t->sizes[i] != 1 && t->strides[i] != expect) return 0;
        expect *= t->sizes[i];
    }
    return 1;
}

/* Every tensor of a call: same dtype and device as x, contiguous, 16-byte aligned
 * (the vectorised kernels load 16 bytes at a time), the expected 2-D or 1-D shape.
 * The tensor's name is a format (e.g. "weights[%d]", given i and j) expanded only when a
 * check fails: formatting every name on every call was ~7% of a tiny call (perf). */
static void check_tensor(arena* a, const tinfo* t, const tinfo* x, const char* fmt, int i, int j, int64_t d0,
                         int64_t d1, int dim) {
    int shape_ok = t->dim == dim && (d0 < 0 || t->sizes[0] == d0) && (dim == 1 || t->sizes[1] == d1);
    if (t->dtype == x->dtype && t->dev_type == x->dev_type && t->dev_index == x->dev_index && shape_ok &&
        is_contiguous(t) && ((uintptr_t)t->data & 15u) == 0)
        return;
    char name[64], b1[96], b2[96];
    snprintf(name, sizeof name, fmt, i, j);
    if (t->dtype != x->dtype)
        fail(a, "fused_mlp: %s must have the dtype of x (%s), got %s", name, dtype_name(x->dtype),
             dtype_name(t->dtype));
    if (t->dev_type != x->dev_type || t->dev_index != x->dev_index)
        fail(a, "fused_mlp: %s must be on x's device (%s), got %s", name, device_name(x, b1, sizeof b1),
             device_name(t, b2, sizeof b2));
    if (!shape_ok) {
        shape_str(t, b1, sizeof b1);
        if (dim == 1) fail(a, "fused_mlp: %s must have shape (%lld,), got %s", name, (long long)d0, b1);
        else if (d0 < 0) fail(a, "fused_mlp: %s must have shape (out, %lld), got %s", name, (long long)d1, b1);
        else fail(a, "fused_mlp: %s must have shape (%lld, %lld), got %s", name, (long long)d0, (long long)d1, b1);
    }
    if (!is_contiguous(t)) fail(a, "fused_mlp: %s must be contiguous (call .contiguous())", name);
    fail(a, "fused_mlp: %s must be 16-byte aligned (its data pointer is offset by %u bytes; "
            "call .clone())", name, (unsigned)((uintptr_t)t->data & 15u));
}

static fmlp_dtype check_x(arena* a, const tinfo* x, const char* name) {
    char b[96];
    fmlp_dtype dt;
    if (x->dtype == aoti_torch_dtype_float32()) dt = FMLP_F32;
    else if (x->dtype == aoti_torch_dtype_bfloat16()) dt = FMLP_BF16;
    else if (x->dtype == aoti_torch_dtype_float16()) dt = FMLP_F16;
    else if (x->dtype == aoti_torch_dtype_float64()) dt = FMLP_F64;
    else { fail(a, "fused_mlp: %s must be float32, bfloat16 or float16 (or float64 on the CPU), got %s", name, dtype_name(x->dtype)); return FMLP_F32; }
    if (x->dev_type != aoti_torch_device_type_cpu() && x->dev_type != aoti_torch_device_type_cuda())
        fail(a, "fused_mlp: %s must be on a CPU or CUDA device, got %s", name, device_name(x, b, sizeof b));
    if (dt == FMLP_F64 && x->dev_type != aoti_torch_device_type_cpu())
        fail(a, "fused_mlp: %s is float64, which runs on the CPU only; use float32, bfloat16 or float16 on %s",
             name, device_name(x, b, sizeof b));
    if (x->dim != 2) {
        shape_str(x, b, sizeof b);
        fail(a, "fused_mlp: %s must be 2-D (rows, features), got shape %s", name, b);
    }
    check_tensor(a, x, x, name, 0, 0, x->sizes[0], x->sizes[1], 2);
    return dt;
}

/* ---- the MLP description shared by forward and backward -------------------- */
typedef struct {
    fmlp_desc d;
    fmlp_params p;
    tinfo w[FMLP_MAX_LAYERS + 1];
    tinfo b[FMLP_MAX_LAYERS + 1];
    int n_weights, n_biases;
} mlp_args;

/* Checks x and the chain of shapes of m's tensors (m->w, m->b, n_weights, n_biases,
 * d.negative_slope and d.gated already set) against has_bias / acts; fills m->d and m->p. */
static fmlp_dtype check_mlp(arena* a, const tinfo* x, mlp_args* m, const int64_t* has_bias, int nhb,
                            const int64_t* acts, int nact) {
    fmlp_dtype dt = check_x(a, x, "x");

    if (m->n_weights == 0) fail(a, "fused_mlp: weights must hold at least one weight tensor, got an empty list");
    if (m->d.gated && m->n_weights < 3)
        fail(a, "fused_mlp: a gated MLP needs weights [gate, up, down, ...] (at least 3), got %d", m->n_weights);
    int L = m->n_weights - m->d.gated;
    if (nact != L)
        fail(a, "fused_mlp: activations must have one entry per layer (%d for %d weights%s), got %d", L,
             m->n_weights, m->d.gated ? ", gate and up counting as one layer" : "", nact);
    if (nhb != m->n_weights)
        fail(a, "fused_mlp: has_bias must have one entry per weight (%d), got %d", m->n_weights, nhb);
    m->d.n_layers = L;
    for (int i = 0; i < L; i++) {
        if (acts[i] < 0 || acts[i] >= FMLP_ACT_COUNT)
            fail(a, "fused_mlp: activations[%d] = %lld is not a supported activation code (0..%d)", i,
                 (long long)acts[i], FMLP_ACT_COUNT - 1);
        m->d.act[i] = (int)acts[i];
    }

    /* widths from the weights, checked as a chain starting at x's width */
    m->d.width[0] = x->sizes[1];
    for (int k = 0; k < m->n_weights; k++) {
        int layer = m->d.gated ? (k > 0 ? k - 1 : 0) : k;
        int64_t out = (m->d.gated && k == 1) ? m->d.width[1] : -1; /* up must match gate */
        check_tensor(a, &m->w[k], x, "weights[%d]", k, 0, out, m->d.width[layer], 2);
        m->d.width[layer + 1] = m->w[k].sizes[0];
        if (m->d.width[layer + 1] < 1) fail(a, "fused_mlp: weights[%d] must have at least one output row", k);
        m->p.w[k] = m->w[k].data;
    }
    int nb = 0;
    for (int k = 0; k < m->n_weights; k++) {
        if (has_bias[k] != 0 && has_bias[k] != 1)
            fail(a, "fused_mlp: has_bias[%d] must be 0 or 1, got %lld", k, (long long)has_bias[k]);
        m->d.has_bias[k] = (int)has_bias[k];
        nb += (int)has_bias[k];
    }
    if (nb != m->n_biases)
        fail(a, "fused_mlp: biases must hold one tensor per has_bias entry set (%d), got %d", nb, m->n_biases);
    for (int k = 0, j = 0; k < m->n_weights; k++) {
        if (!m->d.has_bias[k]) continue;
        check_tensor(a, &m->b[j], x, "biases[%d] (bias of weights[%d])", j, k, m->w[k].sizes[0], 0, 1);
        m->p.b[k] = m->b[j].data;
        j++;
    }
    fmlp_status st;
    if (fmlp_desc_validate(&m->d, &st) != FMLP_OK) fail(a, "fused_mlp: %s", st.msg);
    return dt;
}

/* stack[i0..i0+5] = weights, biases, has_bias, activations, negative_slope, gated.
 * Takes ownership of the lists first, then checks x and the chain of shapes. */
static fmlp_dtype take_mlp(arena* a, StableIValue* s, const tinfo* x, mlp_args* m) {
    memset(m, 0, sizeof *m);
    int64_t has_bias[FMLP_MAX_LAYERS + 1], acts[FMLP_MAX_LAYERS];
    m->n_weights = take_tensor_list(a, s[0], m->w, FMLP_MAX_LAYERS + 1, "weights");
    m->n_biases = take_tensor_list(a, s[1], m->b, FMLP_MAX_LAYERS + 1, "biases");
    int nhb = take_int_list(a, s[2], has_bias, FMLP_MAX_LAYERS + 1, "has_bias");
    int nact = take_int_list(a, s[3], acts, FMLP_MAX_LAYERS, "activations");
    m->d.negative_slope = (float)iv_double(s[4]);
    m->d.gated = iv_bool(s[5]);
    return check_mlp(a, x, m, has_bias, nhb, acts, nact);
}

/* stack[i0..i0+1] = params (the weights, then the biases that exist), config id. */
static fmlp_dtype take_mlp_config(arena* a, StableIValue* s, const tinfo* x, mlp_args* m) {
    memset(m, 0, sizeof *m);
    tinfo all[2 * FMLP_MAX_LAYERS + 2];
    int n = take_tensor_list(a, s[0], all, 2 * FMLP_MAX_LAYERS + 2, "params");
    int64_t id;
    memcpy(&id, &s[1], sizeof id);
    const fmlp_config* c = fmlp_config_get(id);
    if (!c) fail(a, "fused_mlp: config %lld is not a registered configuration (use fused_mlp._C.config_id)",
                 (long long)id);
    int64_t has_bias[FMLP_MAX_LAYERS + 1], acts[FMLP_MAX_LAYERS];
    int nb = 0;
    for (int k = 0; k < c->n_weights; k++) nb += has_bias[k] = c->has_bias[k];
    for (int i = 0; i < c->n_layers; i++) acts[i] = c->act[i];
    if (n != c->n_weights + nb)
        fail(a, "fused_mlp: params must hold the %d weights and then the %d biases of config %lld, got %d tensors",
             c->n_weights, nb, (long long)id, n);
    m->n_weights = c->n_weights;
    m->n_biases = nb;
    memcpy(m->w, all, sizeof(tinfo) * (size_t)c->n_weights);
    memcpy(m->b, all + c->n_weights, sizeof(tinfo) * (size_t)nb);
    m->d.negative_slope = c->negative_slope;
    m->d.gated = c->gated;
    return check_mlp(a, x, m, has_bias, c->n_weights, acts, c->n_layers);
}

static AtenTensorHandle new_tensor(arena* a, const tinfo* like, int64_t d0, int64_t d1, int dim, int32_t dtype) {
    int64_t sizes[2] = {d0, d1}, strides[2] = {dim == 2 ? d1 : 1, 1};
    AtenTensorHandle h = NULL;
    if (aoti_torch_empty_strided(dim, sizes, strides, dtype, like->dev_type, like->dev_index, &h) != 0 || !h)
        fail(a, "fused_mlp: could not allocate a (%lld, %lld) tensor", (long long)d0, (long long)d1);
    own(a, h);
    return h;
}

static void* data_of(AtenTensorHandle h) { void* p; aoti_torch_get_data_ptr(h, &p); return p; }

static void* new_workspace(arena* a, const tinfo* like, size_t bytes) {
    if (bytes == 0) return NULL;
    AtenTensorHandle h = new_tensor(a, like, (int64_t)bytes, 0, 1, aoti_torch_dtype_uint8());
    return data_of(h);
}

/* A CPU forward's workspace is a few hundred bytes at decode sizes: there a buffer on the
 * caller's stack saves a torch allocation and free per call. It is filled with 0xFF (NaN in
 * every float dtype) so a kernel that reads scratch before writing it fails the tests
 * every time, as torch's poisoned allocations make it fail for the larger ones. */
#define SMALL_CPU_WS 4096
typedef struct {
    _Alignas(64) unsigned char b[SMALL_CPU_WS];
} small_ws;

static void* cpu_workspace(arena* a, const tinfo* like, size_t bytes, small_ws* local) {
    if (bytes == 0 || bytes > sizeof local->b) return new_workspace(a, like, bytes);
    memset(local->b, 0xFF, bytes);
    return local->b;
}

/* ---- backends --------------------------------------------------------------- */
static void cpu_parallel_for(int64_t n, int64_t grain, fmlp_range_fn body, void* ctx) {
    torch_parallel_for(0, n, grain, body, ctx);
}

static fmlp_cpu_ctx cpu_ctx(void) {
    uint32_t nt = 1;
    torch_get_num_threads(&nt);
    fmlp_cpu_ctx c = {cpu_parallel_for, nt ? (int)nt : 1};
    return c;
}

static int is_cpu(const tinfo* x) { return x->dev_type == aoti_torch_device_type_cpu(); }

#ifdef FMLP_WITH_CUDA
/* FUSED_MLP_STRATEGY=auto|gemm|small_m|narrow|skinny forces a strategy where it applies (tests, benchmarks);
 * -1 for any other value. Also used by module.c's cuda_plan. */
int fmlp_shim_forced_strategy(void) {
    const char* s = getenv("FUSED_MLP_STRATEGY");
    if (!s || !*s || !strcmp(s, "auto")) return FMLP_STRATEGY_AUTO;
    for (int k = 1; k < FMLP_STRATEGY_COUNT; k++)
        if (!strcmp(s, fmlp_strategy_name(k))) return k;
    return -1;
}

static fmlp_cuda_ctx cuda_ctx(arena* a, const tinfo* x, fmlp_shim_gemm_ctx* gctx) {
    static fmlp_get_stream_fn get_stream = NULL;
    if (!get_stream) {
        /* torch loads libtorch_cuda.so with RTLD_LOCAL, so RTLD_DEFAULT cannot see it */
        void* lib = dlopen("libtorch_cuda.so", RTLD_NOLOAD | RTLD_LAZY);
        if (lib) get_stream = (fmlp_get_stream_fn)dlsym(lib, "aoti_torch_get_current_cuda_stream");
    }
    if (!get_stream) fail(a, "fused_mlp: this torch has no CUDA support (libtorch_cuda.so is not loaded)");
    fmlp_cuda_ctx c;
    memset(&c, 0, sizeof c);
    c.device = x->dev_index;
    if (get_stream(x->dev_index, &c.stream) != 0) fail(a, "fused_mlp: could not get the current CUDA stream");
    gctx->device_type = x->dev_type;
    gctx->device_index = x->dev_index;
    c.gemm = fmlp_shim_gemm;
    c.linear = fmlp_shim_linear;
    c.gemm_ctx = gctx;
    c.force_strategy = fmlp_shim_forced_strategy();
    if (c.force_strategy < 0)
        fail(a, "fused_mlp: FUSED_MLP_STRATEGY must be auto, gemm, small_m, narrow or skinny, got '%s'", getenv("FUSED_MLP_STRATEGY"));
    fmlp_status st = {0, {0}};
    if (fmlp_cuda_ctx_init(&c, &st) != FMLP_OK) fail(a, "fused_mlp: %s", st.msg);
    enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    c.capturing = cudaStreamIsCapturing((cudaStream_t)c.stream, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone;
    return c;
}

/* The call's device scratch: the device's cached buffer where ws_cache.h allows, else a
 * fresh torch allocation (owned by the arena either way). */
static void* cuda_workspace(arena* a, const fmlp_cuda_ctx* c, size_t bytes) {
    if (bytes == 0) return NULL;
    AtenTensorHandle h = fmlp_ws_cache_take(c->device, c->stream, bytes, c->capturing);
    if (!h) fail(a, "fused_mlp: could not allocate a %zu-byte CUDA workspace", bytes);
    own(a, h);
    return data_of(h);
}
#endif

#ifndef FMLP_WITH_CUDA
static void no_cuda(arena* a) {
    fail(a, "fused_mlp: this build of fused_mlp has no CUDA kernels (it was built without nvcc or "
            "with FUSED_MLP_CUDA=0); reinstall with the CUDA toolkit on PATH to run on CUDA tensors");
}
#endif

/* ---- fused_mlp::forward ------------------------------------------------------ */
/* forward(Tensor x, Tensor[] weights, Tensor[] biases, int[] has_bias, int[] activations,
 *         float negative_slope, bool gated, bool save) -> (Tensor out, Tensor[] saved) */
/* The forward of a checked call: allocates out (and the saved tensors when save), runs
 * the backend for x's device. Result handles stay in the arena; the caller disowns them. */
static AtenTensorHandle run_forward(arena* a, const tinfo* xp, fmlp_dtype dt, const mlp_args* m, int save,
                                    AtenTensorHandle* saved, int* n_saved) {
    const tinfo x = *xp;
    const int64_t M = x.sizes[0];
    const fmlp_desc* d = &m->d;
    AtenTensorHandle out = new_tensor(a, &x, M, d->width[d->n_layers], 2, x.dtype);
    int ns = save ? fmlp_saved_count(d) : 0;
    void* saved_ptr[2 * FMLP_MAX_LAYERS + 2];
    for (int s = 0; s < ns; s++) {
        saved[s] = new_tensor(a, &x, M, fmlp_saved_width(d, s), 2, x.dtype);
        saved_ptr[s] = data_of(saved[s]);
    }
    *n_saved = ns;

    fmlp_status st = {0, {0}};
    int rc;
    if (dt == FMLP_F64) {
        rc = fmlp_forward_cpu_f64(d, M, x.data, &m->p, data_of(out), save ? saved_ptr : NULL, &st);
    } else if (is_cpu(&x)) {
        fmlp_cpu_ctx c = cpu_ctx();
        small_ws local;
        void* ws = cpu_workspace(a, &x, fmlp_forward_workspace_bytes_cpu(d, dt, M, save, &c), &local);
        rc = fmlp_forward_cpu(d, dt, M, x.data, &m->p, data_of(out), save ? saved_ptr : NULL, ws, &c, &st);
    } else {
#ifdef FMLP_WITH_CUDA
        fmlp_shim_gemm_ctx gctx;
        fmlp_cuda_ctx c = cuda_ctx(a, &x, &gctx);
        void* ws = cuda_workspace(a, &c, fmlp_forward_workspace_bytes_cuda(d, dt, M, save, &c));
        rc = fmlp_forward_cuda(d, dt, M, x.data, &m->p, data_of(out), save ? saved_ptr : NULL, ws, &c, &st);
#else
        no_cuda(a);
        rc = FMLP_ERR_UNSUPPORTED;
#endif
    }
    if (rc != FMLP_OK) fail(a, "fused_mlp.forward: %s", st.msg);
    return out;
}

void fmlp_boxed_forward(StableIValue* stack, uint64_t nargs, uint64_t nouts) {
    (void)nargs; (void)nouts;
    arena a = {{0}, 0};
    own(&a, iv_tensor(stack[0]));
    tinfo x = info_of(iv_tensor(stack[0]));
    mlp_args m;
    fmlp_dtype dt = take_mlp(&a, &stack[1], &x, &m);
    int save = iv_bool(stack[7]);
    AtenTensorHandle saved[2 * FMLP_MAX_LAYERS + 2];
    int ns = 0;
    AtenTensorHandle out = run_forward(&a, &x, dt, &m, save, saved, &ns);

    StableListHandle list;
    torch_new_list_reserve_size((size_t)ns, &list);
    for (int s = 0; s < ns; s++) {
        torch_list_push_back(list, tensor_iv(saved[s]));
        disown(&a, saved[s]);
    }
    disown(&a, out);
    arena_release(&a);
    stack[0] = tensor_iv(out);
    stack[1] = list_iv(list);
}

/* ---- fused_mlp::infer ------------------------------------------------------ */
/* infer(Tensor x, Tensor[] params, int config) -> Tensor: the forward without saved
 * tensors, for calls that need no gradient; params = the weights, then the biases that
 * exist; config = an id from fused_mlp._C.config_id (configs.h says why). */
void fmlp_boxed_infer(StableIValue* stack, uint64_t nargs, uint64_t nouts) {
    (void)nargs; (void)nouts;
    arena a = {{0}, 0};
    own(&a, iv_tensor(stack[0]));
    tinfo x = info_of(iv_tensor(stack[0]));
    mlp_args m;
    fmlp_dtype dt = take_mlp_config(&a, &stack[1], &x, &m);
    int ns = 0;
    AtenTensorHandle out = run_forward(&a, &x, dt, &m, 0, NULL, &ns);
    disown(&a, out);
    arena_release(&a);
    stack[0] = tensor_iv(out);
}

/* ---- fused_mlp::backward ----------------------------------------------------- */
/* backward(Tensor grad_out, Tensor x, Tensor[] saved, Tensor[] weights, Tensor[] biases,
 *          int[] has_bias, int[] activations, float negative_slope, bool gated,
 *          bool input_grad, bool param_grads)
 *   -> (Tensor grad_x, Tensor[] grad_weights, Tensor[] grad_biases)
 * grad_x is a (0,)-shaped tensor when input_grad is false; the lists are empty when
 * param_grads is false; grad_biases holds one tensor per bias that exists. */
void fmlp_boxed_backward(StableIValue* stack, uint64_t nargs, uint64_t nouts) {
    (void)nargs; (void)nouts;
    arena a = {{0}, 0};
    own(&a, iv_tensor(stack[0]));
    own(&a, iv_tensor(stack[1]));
    tinfo gout = info_of(iv_tensor(stack[0]));
    tinfo x = info_of(iv_tensor(stack[1]));
    tinfo sv[2 * FMLP_MAX_LAYERS + 2];
    int ns = take_tensor_list(&a, stack[2], sv, 2 * FMLP_MAX_LAYERS + 2, "saved");
    mlp_args m;
    fmlp_dtype dt = take_mlp(&a, &stack[3], &x, &m);
    int input_grad = iv_bool(stack[9]), param_grads = iv_bool(stack[10]);
    const fmlp_desc* d = &m.d;
    int64_t M = x.sizes[0];

    check_tensor(&a, &gout, &x, "grad_out", 0, 0, M, d->width[d->n_layers], 2);
    int need = fmlp_saved_count(d);
    if (ns != need)
        fail(&a, "fused_mlp.backward: saved must hold the %d tensors the forward saved for this MLP, got %d "
                 "(was the forward run with save=False?)", need, ns);
    const void* saved_ptr[2 * FMLP_MAX_LAYERS + 2];
    for (int s = 0; s < ns; s++) {
        check_tensor(&a, &sv[s], &x, "saved[%d]", s, 0, M, fmlp_saved_width(d, s), 2);
        saved_ptr[s] = sv[s].data;
    }

    AtenTensorHandle gx = new_tensor(&a, &x, input_grad ? M : 0, d->width[0], input_grad ? 2 : 1, x.dtype);
    AtenTensorHandle gw[FMLP_MAX_LAYERS + 1], gb[FMLP_MAX_LAYERS + 1];
    fmlp_grads g;
    memset(&g, 0, sizeof g);
    int nw = param_grads ? m.n_weights : 0, nb = 0;
    for (int k = 0; k < nw; k++) {
        int64_t o, i;
        fmlp_weight_shape(d, k, &o, &i);
        gw[k] = new_tensor(&a, &x, o, i, 2, x.dtype);
        g.dw[k] = data_of(gw[k]);
        if (d->has_bias[k]) {
            gb[nb] = new_tensor(&a, &x, o, 0, 1, x.dtype);
            g.db[k] = data_of(gb[nb++]);
        }
    }

    fmlp_status st = {0, {0}};
    int rc;
    void* dx = input_grad ? data_of(gx) : NULL;
    if (dt == FMLP_F64) {
        rc = fmlp_backward_cpu_f64(d, M, gout.data, x.data, saved_ptr, &m.p, dx, &g, &st);
    } else if (is_cpu(&x)) {
        fmlp_cpu_ctx c = cpu_ctx();
        void* ws = new_workspace(&a, &x, fmlp_backward_workspace_bytes_cpu(d, dt, M, &c));
        rc = fmlp_backward_cpu(d, dt, M, gout.data, x.data, saved_ptr, &m.p, dx, &g, ws, &c, &st);
    } else {
#ifdef FMLP_WITH_CUDA
        fmlp_shim_gemm_ctx gctx;
        fmlp_cuda_ctx c = cuda_ctx(&a, &x, &gctx);
        void* ws = cuda_workspace(&a, &c, fmlp_backward_workspace_bytes_cuda(d, dt, M, &c));
        rc = fmlp_backward_cuda(d, dt, M, gout.data, x.data, saved_ptr, &m.p, dx, &g, ws, &c, &st);
#else
        no_cuda(&a);
        rc = FMLP_ERR_UNSUPPORTED;
#endif
    }
    if (rc != FMLP_OK) fail(&a, "fused_mlp.backward: %s", st.msg);

    StableListHandle lw, lb;
    torch_new_list_reserve_size((size_t)nw, &lw);
    torch_new_list_reserve_size((size_t)nb, &lb);
    for (int k = 0; k < nw; k++) { torch_list_push_back(lw, tensor_iv(gw[k])); disown(&a, gw[k]); }
    for (int k = 0; k < nb; k++) { torch_list_push_back(lb, tensor_iv(gb[k])); disown(&a, gb[k]); }
    disown(&a, gx);
    arena_release(&a);
    stack[0] = tensor_iv(gx);
    stack[1] = list_iv(lw);
    stack[2] = list_iv(lb);
}
