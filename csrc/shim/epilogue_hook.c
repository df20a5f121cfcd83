/* epilogue_hook.c — fused_mlp._C._epilogue: one elementwise kernel of the GEMM strategy on
 * raw device pointers, so tests/test_cuda.py can choose alignments and widths the op never
 * produces (its buffers are all 256-byte aligned) and check the 16-byte path against the
 * scalar one. Not a public API. Contract: epilogue_hook.h. */
#define PY_SSIZE_T_CLEAN
#define Py_LIMITED_API 0x03090000
#include "epilogue_hook.h"
#include <string.h>
#include <stdint.h>
#include "../fmlp.h"
#ifdef FMLP_WITH_CUDA
#include <cuda_runtime_api.h>
#include "../cuda/fmlp_epilogue.h"
#endif

PyObject* fmlp_py_epilogue(PyObject* self, PyObject* args) {
    (void)self;
    const char* kind;
    int device, dtype, act;
    unsigned long long stream, q[6];
    long long M, N;
    float slope;
    if (!PyArg_ParseTuple(args, "siKiLLif(KKKKKK)", &kind, &device, &stream, &dtype, &M, &N, &act, &slope, &q[0],
                          &q[1], &q[2], &q[3], &q[4], &q[5]))
        return NULL;
#ifdef FMLP_WITH_CUDA
    void* p[6];
    for (int i = 0; i < 6; i++) p[i] = (void*)(uintptr_t)q[i];
    void* s = (void*)(uintptr_t)stream;
    fmlp_dtype dt = (fmlp_dtype)dtype;
    fmlp_status st;
    memset(&st, 0, sizeof st);
    int prev = 0, rc;
    cudaGetDevice(&prev);
    if (cudaSetDevice(device) != cudaSuccess) {
        PyErr_Format(PyExc_RuntimeError, "_epilogue: cudaSetDevice(%d) failed", device);
        return NULL;
    }
    if (!strcmp(kind, "bias_act"))
        rc = fmlp_launch_bias_act(dt, M, N, p[0], p[1], p[2], act, slope, s, &st);
    else if (!strcmp(kind, "glu"))
        rc = fmlp_launch_glu(dt, M, N, p[0], p[1], p[2], p[3], p[4], act, slope, s, &st);
    else if (!strcmp(kind, "dact"))
        rc = fmlp_launch_dact(dt, M, N, p[0], p[1], p[2], p[3], act, slope, s, &st);
    else if (!strcmp(kind, "dglu"))
        rc = fmlp_launch_dglu(dt, M, N, p[0], p[1], p[2], p[3], p[4], p[5], act, slope, s, &st);
    else if (!strcmp(kind, "add"))
        rc = fmlp_launch_add(dt, M * N, p[0], p[1], s, &st);
    else
        rc = fmlp_fail(&st, FMLP_ERR_INVALID, "_epilogue: unknown kind '%s'", kind);
    if (prev != device) cudaSetDevice(prev);
    if (rc != FMLP_OK) {
        PyErr_SetString(PyExc_RuntimeError, st.msg);
        return NULL;
    }
    Py_RETURN_NONE;
#else
    (void)kind; (void)device; (void)stream; (void)dtype; (void)M; (void)N; (void)act; (void)slope; (void)q;
    PyErr_SetString(PyExc_RuntimeError, "fused_mlp was built without CUDA kernels");
    return NULL;
#endif
}
