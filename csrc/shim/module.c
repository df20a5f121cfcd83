/* module.c — PyInit__C: the CPython extension module fused_mlp._C (abi3, Python >= 3.9).
 *
 * Importing it registers the fused_mlp::forward, ::backward and ::infer ops with the
 * torch dispatcher through the LibTorch stable C ABI (CPU and CUDA kernels: ops.c).
 * The Python side (fused_mlp/_ops.py) adds fake kernels, autograd and autocast. */
#define PY_SSIZE_T_CLEAN
#define Py_LIMITED_API 0x03090000
#include <Python.h>
#include "configs.h"
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
static const char* SCHEMA_INFER = "infer(Tensor x, Tensor[] params, int config) -> Tensor";

static TorchLibraryHandle lib_def, lib_cpu, lib_cuda;

static int register_ops(void) {
    if (aoti_torch_library_init_def("fused_mlp", __FILE__, __LINE__, &lib_def)) return -1;
    if (aoti_torch_library_def(lib_def, SCHEMA_FORWARD)) return -1;
    if (aoti_torch_library_def(lib_def, SCHEMA_BACKWARD)) return -1;
    if (aoti_torch_library_def(lib_def, SCHEMA_INFER)) return -1;
    const char* keys[2] = {"CPU", "CUDA"};
    TorchLibraryHandle* libs[2] = {&lib_cpu, &lib_cuda};
    for (int i = 0; i < 2; i++) {
        /* The CUDA slot is registered in every build; a build without nvcc raises a
         * clear error there instead of torch's "no kernel for CUDA". */
        if (aoti_torch_library_init_impl("fused_mlp", keys[i], __FILE__, __LINE__, libs[i])) return -1;
        if (torch_library_impl(*libs[i], "forward", fmlp_boxed_forward, FMLP_TORCH_ABI_2_10)) return -1;
        if (torch_library_impl(*libs[i], "backward", fmlp_boxed_backward, FMLP_TORCH_ABI_2_10)) return -1;
        if (torch_library_impl(*libs[i], "infer", fmlp_boxed_infer, FMLP_TORCH_ABI_2_10)) return -1;
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

/* Reads a sequence of ints into out[0..cap); returns its length, -1 with an exception set. */
static Py_ssize_t int_seq(PyObject* seq, int* out, Py_ssize_t cap, const char* name) {
    Py_ssize_t n = PySequence_Size(seq);
    if (n < 0) return -1;
    if (n > cap) {
        PyErr_Format(PyExc_ValueError, "config_id: %s has %zd entries, at most %zd are supported", name, n, cap);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject* o = PySequence_GetItem(seq, i);
        if (!o) return -1;
        long v = PyLong_AsLong(o);
        Py_DECREF(o);
        if (v == -1 && PyErr_Occurred()) return -1;
        out[i] = (int)v;
    }
    return n;
}

/* config_id(activations, has_bias, negative_slope, gated) -> int: the id fused_mlp::infer
 * takes for this configuration (configs.h). Checked here like the op checks its lists. */
static PyObject* config_id(PyObject* self, PyObject* args) {
    (void)self;
    PyObject *acts, *bias;
    double slope;
    int gated;
    if (!PyArg_ParseTuple(args, "OOdp", &acts, &bias, &slope, &gated)) return NULL;
    fmlp_config c;
    memset(&c, 0, sizeof c);
    Py_ssize_t na = int_seq(acts, c.act, FMLP_MAX_LAYERS, "activations");
    if (na < 0) return NULL;
    Py_ssize_t nb = int_seq(bias, c.has_bias, FMLP_MAX_LAYERS + 1, "has_bias");
    if (nb < 0) return NULL;
    if (na < 1 || nb != na + (gated ? 1 : 0)) {
        PyErr_Format(PyExc_ValueError, "config_id: need 1..%d activations and one has_bias entry per weight "
                     "(%zd for %zd layers%s), got %zd", FMLP_MAX_LAYERS, na + (gated ? 1 : 0), na,
                     gated ? ", gated" : "", nb);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < na; i++)
        if (c.act[i] < 0 || c.act[i] >= FMLP_ACT_COUNT) {
            PyErr_Format(PyExc_ValueError, "config_id: activations[%zd] = %d is not an activation code (0..%d)", i,
                         c.act[i], FMLP_ACT_COUNT - 1);
            return NULL;
        }
    for (Py_ssize_t k = 0; k < nb; k++)
        if (c.has_bias[k] != 0 && c.has_bias[k] != 1) {
            PyErr_Format(PyExc_ValueError, "config_id: has_bias[%zd] must be 0 or 1, got %d", k, c.has_bias[k]);
            return NULL;
        }
    c.n_layers = (int)na;
    c.n_weights = (int)nb;
    c.gated = gated;
    c.negative_slope = (float)slope;
    int id = fmlp_config_intern(&c);
    if (id < 0) {
        PyErr_Format(PyExc_RuntimeError, "config_id: more than %d distinct MLP configurations", FMLP_MAX_CONFIGS);
        return NULL;
    }
    return PyLong_FromLong(id);
}

/* config_info(id) -> (activations, has_bias, negative_slope, gated), for the fake kernel. */
static PyObject* config_info(PyObject* self, PyObject* args) {
    (void)self;
    long long id;
    if (!PyArg_ParseTuple(args, "L", &id)) return NULL;
    const fmlp_config* c = fmlp_config_get(id);
    if (!c) {
        PyErr_Format(PyExc_ValueError, "config %lld is not a registered configuration", id);
        return NULL;
    }
    PyObject* acts = PyTuple_New(c->n_layers);
    PyObject* bias = PyTuple_New(c->n_weights);
    if (!acts || !bias) {
        Py_XDECREF(acts);
        Py_XDECREF(bias);
        return NULL;
    }
    for (int i = 0; i < c->n_layers; i++) PyTuple_SetItem(acts, i, PyLong_FromLong(c->act[i]));
    for (int k = 0; k < c->n_weights; k++) PyTuple_SetItem(bias, k, PyLong_FromLong(c->has_bias[k]));
    return Py_BuildValue("(NNdO)", acts, bias, (double)c->negative_slope, c->gated ? Py_True : Py_False);
}

static PyMethodDef methods[] = {
    {"config_id", config_id, METH_VARARGS, "The fused_mlp::infer config id of (activations, has_bias, negative_slope, gated)."},
    {"config_info", config_info, METH_VARARGS, "(activations, has_bias, negative_slope, gated) of a config id."},
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
