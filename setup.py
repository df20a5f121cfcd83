"""Build of fused_mlp: one abi3 extension, fused_mlp._C, from C sources (+ CUDA).

Build knobs (environment variables):
  FUSED_MLP_CUDA=0|1     force the CUDA kernels off / on (default: on when nvcc is found;
                         1 without nvcc is an error)
  FUSED_MLP_CUDA_ARCHS   nvcc -gencode targets, default "90a;80" (H100/H200, A100)
  CUDA_HOME              CUDA toolkit root (default: from nvcc on PATH, /usr/local/cuda)

The build compiles against the torch already installed and never asks pip for one:
install with `pip install --no-build-isolation .` (an isolated build env has no torch).
It links libtorch_cpu, libc10 and a static CUDA runtime only; no pybind11, no C++
torch headers, so one build serves CPU-only and CUDA torch.
"""
import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
MIN_TORCH = (2, 10)


def fail(msg):
    sys.exit("fused_mlp build: " + msg)


def find_torch_lib():
    try:
        import torch
    except ImportError:
        fail(
            "torch is not importable in this Python. Install torch >= 2.10 first "
            "(e.g. `pip install torch`), then build with build isolation off: "
            "`pip install --no-build-isolation .`"
        )
    version = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])
    if version < MIN_TORCH:
        fail(f"torch >= 2.10 is required (its stable C ABI), found {torch.__version__}")
    return os.path.join(os.path.dirname(torch.__file__), "lib")


def find_nvcc():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
        return os.path.join(home, "bin", "nvcc")
    nvcc = shutil.which("nvcc")
    if nvcc:
        return nvcc
    if os.path.exists("/usr/local/cuda/bin/nvcc"):
        return "/usr/local/cuda/bin/nvcc"
    return None


def find_cuda_home(nvcc):
    """The toolkit root holding the runtime headers (nvcc may be a wrapper script)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                  os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), "/usr/local/cuda"]
    for c in filter(None, candidates):
        if os.path.exists(os.path.join(c, "include", "cuda_runtime_api.h")):
            return c
    fail(f"found nvcc ({nvcc}) but no CUDA toolkit headers (include/cuda_runtime_api.h); set CUDA_HOME")


def want_cuda():
    flag = os.environ.get("FUSED_MLP_CUDA", "").strip()
    if flag not in ("", "0", "1"):
        fail(f"FUSED_MLP_CUDA must be 0 or 1, got {flag!r}")
    nvcc = find_nvcc()
    if flag == "1" and nvcc is None:
        fail("FUSED_MLP_CUDA=1 but nvcc was not found: put the CUDA toolkit's bin/ on PATH or set CUDA_HOME")
    if flag == "0" or not cuda_sources():
        return None
    return nvcc


def cuda_sources():
    return sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))


class BuildExt(build_ext):
    """Compiles the C++ throw helper and the CUDA files to objects, then links them in."""

    def build_extension(self, ext):
        os.makedirs(self.build_temp, exist_ok=True)
        objects = []
        for src in ext.cxx_sources:
            obj = os.path.join(self.build_temp, os.path.basename(src) + ".o")
            self.spawn(["g++" if shutil.which("g++") else "c++", "-O2", "-fPIC", "-std=c++17", "-c", src, "-o", obj])
            objects.append(obj)
        if ext.nvcc:
            archs = os.environ.get("FUSED_MLP_CUDA_ARCHS", "90a;80").split(";")
            gencode = []
            for a in filter(None, (x.strip() for x in archs)):
                gencode += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
            for src in ext.cu_sources:
                obj = os.path.join(self.build_temp, os.path.basename(src) + ".o")
                cmd = [ext.nvcc, "-O3", "-std=c++17", "-Xcompiler", "-fPIC", "--expt-relaxed-constexpr",
                       "-DFMLP_WITH_CUDA", "-lineinfo", "-Icsrc", *gencode, "-c", src, "-o", obj]
                if self.force or not os.path.exists(obj) or os.path.getmtime(obj) < newest_input(src):
                    self.spawn(cmd)
                objects.append(obj)
        ext.extra_objects = objects + list(ext.extra_objects or [])
        super().build_extension(ext)


def newest_input(src):
    headers = glob.glob(os.path.join("csrc", "**", "*.h"), recursive=True)
    headers += glob.glob(os.path.join("csrc", "**", "*.cuh"), recursive=True)
    return max(os.path.getmtime(p) for p in [src, *headers])


def check_compilers():
    cc = os.environ.get("CC", "gcc").split()[0]
    if shutil.which(cc) is None and shutil.which("cc") is None:
        fail("no C compiler found (gcc, or $CC): install one, e.g. `apt-get install build-essential`")
    if shutil.which("g++") is None and shutil.which("c++") is None:
        fail("no C++ compiler found (g++ or c++) for the shim's one-line throw helper: "
             "install one, e.g. `apt-get install g++`")


def make_extension():
    check_compilers()
    torch_lib = find_torch_lib()
    nvcc = want_cuda()
    c_sources = sorted(
        glob.glob(os.path.join("csrc", "*.c"))
        + glob.glob(os.path.join("csrc", "cpu", "*.c"))
        + glob.glob(os.path.join("csrc", "shim", "*.c"))
    )
    macros = [("Py_LIMITED_API", "0x03090000")]
    libraries = ["torch_cpu", "c10", "stdc++", "m"]
    library_dirs = [torch_lib]
    include_dirs = ["csrc"]
    if nvcc:
        macros.append(("FMLP_WITH_CUDA", None))
        cuda_home = find_cuda_home(nvcc)
        # the C orchestration of the CUDA path includes cuda_runtime_api.h
        c_sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.c")))
        include_dirs.append(os.path.join(cuda_home, "include"))
        for sub in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib")):
            if os.path.exists(os.path.join(cuda_home, sub, "libcudart_static.a")):
                library_dirs.append(os.path.join(cuda_home, sub))
                break
        libraries += ["cudart_static", "dl", "rt", "pthread"]
    ext = Extension(
        "fused_mlp._C",
        sources=c_sources,
        include_dirs=include_dirs,
        define_macros=macros,
        libraries=libraries,
        library_dirs=library_dirs,
        runtime_library_dirs=[torch_lib],
        extra_compile_args=["-O3", "-std=gnu11", "-fexceptions", "-Wall", "-Wno-unused-function"],
        py_limited_api=True,
    )
    ext.cxx_sources = [os.path.join("csrc", "shim", "throw.cpp")]
    ext.nvcc = nvcc
    ext.cu_sources = cuda_sources() if nvcc else []
    if nvcc:
        print(f"fused_mlp build: CUDA kernels ON (nvcc {nvcc})")
    else:
        print("fused_mlp build: CUDA kernels OFF (CPU only)")
    return ext


setup(
    ext_modules=[make_extension()],
    cmdclass={"build_ext": BuildExt},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
