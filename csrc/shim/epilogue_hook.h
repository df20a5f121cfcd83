/* epilogue_hook.h — fused_mlp._C._epilogue (epilogue_hook.c), a test hook. */
#ifndef FMLP_SHIM_EPILOGUE_HOOK_H
#define FMLP_SHIM_EPILOGUE_HOOK_H
#include <Python.h> /* after PY_SSIZE_T_CLEAN in the including file */
/* _epilogue(kind, device, stream, dtype, M, N, act, slope, (p0, .., p5)) -> None
 * Runs one kernel of csrc/cuda/fmlp_epilogue.h on raw device pointers (ints, 0 = NULL) on
 * the given cudaStream_t of `device`; kind and pointer order:
 *   "bias_act" (z, bias, h)   "glu" (zg, zu, bg, bu, h)   "dact" (g, z, dz, h)
 *   "dglu" (g, zg, zu, dzg, dzu, h)   "add" (y, t; M*N elements).
 * dtype is an fmlp_dtype (0 float32, 1 bfloat16, 2 float16), act an FMLP_ACT_* code.
 * RuntimeError with the kernel's message on failure; in a CPU-only build always. */
PyObject* fmlp_py_epilogue(PyObject* self, PyObject* args);
#endif
