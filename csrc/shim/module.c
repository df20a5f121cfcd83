/* module.c — PyInit__C: the CPython extension module fused_mlp._C (abi3, Python >= 3.9).
 *
 * Importing it registers the fused_mlp::forward and fused_mlp::backward ops with the
 * torch dispatcher through the LibTorch stable C ABI (CPU and CUDA kernels: ops.c).
 * The Python side (fused_mlp/_ops.py) adds fake kernels, autograd and autocast. */
#define PY_SSIZE_T_CLEAN
#define Py_LIMITED_API 0x03090000
#include <Python.h>
#include "ops.h"
#include "epilogue_hook.h"
#include "../fmlp.h"
#ifdef FMLP_WITH_CUDA
#include "../fmlp_cuda.h"
#endif
#include <stdlib.h>
#include <string.h>

static const char* SCHEMA_FORWARD =
    "forward(Tensor x, Tensor[] weights, Tensor[] biases, int[] has_bias, int[] activations, "
    "float negative_slope, bool gated, bool save) -> (Tensor, Tensor[])";
static const char* SCHEMA_BACKWARD =
    "backward(Tensor grad_out, Tensor x, Tensor[] saved, Tensor[] weights, Tensor[] biases, "
    "int[] has_bias, int[] activations, float negative_slope, bool gated, bool input_grad, "
    "bool param_grads) -> (Tensor, Tensor[], Tensor[])";

static TorchLibraryHandle lib_def, lib_cpu, lib_cuda;

static int register_ops(void) {
    if (aoti_torch_library_init_def("fused_mlp", __FILE__, __LINE__, &lib_def)) return -1;
    if (aoti_torch_library_def(lib_def, SCHEMA_FORWARD)) return -1;
    if (aoti_torch_library_def(lib_def, SCHEMA_BACKWARD)) return -1;
    const char* keys[2] = {"CPU", "CUDA"};
    TorchLibraryHandle* libs[2] = {&lib_cpu, &lib_cuda};
    for (int i = 0; i < 2; i++) {
        /* The CUDA slot is registered in every build; a build without nvcc raises a
         * clear error there instead of torch's "no kernel for CUDA". */
        if (aoti_torch_library_init_impl("fused_mlp", keys[i], __FILE__, __LINE__, libs[i])) return -1;
        if (torch_library_impl(*libs[i], "forward", fmlp_boxed_forward, FMLP_TORCH_ABI_2_10)) return -1;
        if (torch_library_impl(*libs[i], "backward", fmlp_boxed_backward, FMLP_TORCH_ABI_2_10)) return -1;
    }
    return 0;
}

static PyObject* has_cuda(PyObject* self, PyObject* args) {
    (void)self; (void)args;
#ifdef FMLP_WITH_CUDA
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

/* cuda_plan(device, dtype, M, widths, activations, gated, save, backward) -> (strategy, why)
 * dtype: 0 float32, 1 bfloat16, 2 float16 (fmlp_dtype). */
static PyObject* cuda_plan(PyObject* self, PyObject* args) {
    (void)self;
    int device, dtype, gated, save, backward;
    long long M;
    PyObject *widths, *acts;
    if (!PyArg_ParseTuple(args, "iiLOOppp", &device, &dtype, &M, &widths, &acts, &gated, &save, &backward))
        return NULL;
#ifdef FMLP_WITH_CUDA
    fmlp_desc d;
    memset(&d, 0, sizeof d);
    Py_ssize_t nw = PySequence_Size(widths), na = PySequence_Size(acts);
    if (nw < 2 || nw > FMLP_MAX_LAYERS + 1 || na != nw - 1) {
        PyErr_SetString(PyExc_ValueError, "cuda_plan: need len(widths) - 1 == len(activations), 1..32 layers");
        return NULL;
    }
    d.n_layers = (int)na;
    d.gated = gated;
    for (Py_ssize_t i = 0; i < nw; i++) {
        PyObject* o = PySequence_GetItem(widths, i);
        d.width[i] = PyLong_AsLongLong(o);
        Py_XDECREF(o);
    }
    for (Py_ssize_t i = 0; i < na; i++) {
        PyObject* o = PySequence_GetItem(acts, i);
        d.act[i] = (int)PyLong_AsLong(o);
        Py_XDECREF(o);
    }
    if (PyErr_Occurred()) return NULL;
    fmlp_cuda_ctx c;
    memset(&c, 0, sizeof c);
    c.device = device;
    int forced = fmlp_shim_forced_strategy();
    c.force_strategy = forced < 0 ? FMLP_STRATEGY_AUTO : forced; /* the op call reports an invalid value */
    fmlp_status st;
    if (fmlp_cuda_ctx_init(&c, &st) != FMLP_OK) {
        PyErr_SetString(PyExc_RuntimeError, st.msg);
        return NULL;
    }
    const char* why = "";
    int s = fmlp_cuda_plan(&d, (fmlp_dtype)dtype, M, save, backward, &c, &why);
    return Py_BuildValue("(ss)", fmlp_strategy_name(s), why);
#else
    (void)device; (void)dtype; (void)M; (void)widths; (void)acts; (void)gated; (void)save; (void)backward;
    PyErr_SetString(PyExc_RuntimeError, "fused_mlp was built without CUDA kernels");
    return NULL;
#endif
}

static PyMethodDef methods[] = {
    {"has_cuda", has_cuda, METH_NOARGS, "True when this build contains the CUDA kernels."},
    {"cuda_plan", cuda_plan, METH_VARARGS, "The CUDA strategy for a call, and why."},
    {"_epilogue", fmlp_py_epilogue, METH_VARARGS, "Test hook: one GEMM-strategy elementwise kernel."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_C", "fused_mlp C extension: registers torch.ops.fused_mlp.*", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__C(void) {
    if (register_ops() != 0) {
        PyErr_SetString(PyExc_ImportError, "fused_mlp: registering the torch ops failed");
        return NULL;
    }
    return PyModule_Create(&module_def);
}
