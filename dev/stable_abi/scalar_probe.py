"""Can the stable ABI's torch_call_dispatcher pass a Scalar (schema type NumberType)?

Calls aten::_addmm_activation.out (beta, alpha: Scalar) on CPU tensors through
torch_call_dispatcher with ctypes, Scalars as the bits of a double (how a `float` travels),
then aten::mm.out (no Scalar) as a control. Prints torch's error text on failure.
Seen (2026-11, this machine): torch 2.13.0+cpu: rc 1, "Not yet supported conversion from
StableIValue to IValue for schema type: Scalar"; the control passes. Run: python this_file.py
"""
import ctypes
import os
import struct

import torch

lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
ABI_2_10 = (2 << 56) | (10 << 48)
keep = []


def handle(t):
    keep.append(t)  # the blob must outlive the call
    h = ctypes.c_void_p()
    sizes = (ctypes.c_int64 * t.dim())(*t.shape)
    strides = (ctypes.c_int64 * t.dim())(*t.stride())
    rc = lib.aoti_torch_create_tensor_from_blob(
        ctypes.c_void_p(t.data_ptr()), ctypes.c_int64(t.dim()), sizes, strides, ctypes.c_int64(0),
        ctypes.c_int32(lib.aoti_torch_dtype_float32()), ctypes.c_int32(lib.aoti_torch_device_type_cpu()),
        ctypes.c_int32(0), ctypes.byref(h))
    assert rc == 0
    return h.value


def last_error():
    fn = getattr(lib, "_ZN5torch12aot_inductor14get_last_errorEv", None)
    if fn is None:
        return "(no get_last_error symbol)"
    fn.restype = ctypes.c_char_p
    return (fn() or b"").decode(errors="replace").split("\n")[0]


def call(op, stack):
    lib.torch_call_dispatcher.restype = ctypes.c_int32
    return lib.torch_call_dispatcher(op.encode(), b"out", stack, ctypes.c_uint64(ABI_2_10))


dbits = lambda d: struct.unpack("<Q", struct.pack("<d", d))[0]
x, w, b = torch.randn(3, 4), torch.randn(5, 4), torch.randn(5)
wt = w.t().contiguous()
out = torch.full((3, 5), float("nan"))
stack = (ctypes.c_uint64 * 7)(handle(b), handle(x), handle(wt), dbits(1.0), dbits(1.0), 0, handle(out))
rc = call("aten::_addmm_activation", stack)
print(f"torch {torch.__version__}: _addmm_activation.out rc {rc}",
      "ok, max err %.2e" % (out - torch.relu(x @ w.t() + b)).abs().max().item() if rc == 0 else last_error())
out2 = torch.full((3, 5), float("nan"))
rc = call("aten::mm", (ctypes.c_uint64 * 3)(handle(x), handle(wt), handle(out2)))
print(f"control mm.out rc {rc}, max err %.2e" % (out2 - x @ w.t()).abs().max().item())
