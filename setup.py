"""Builds fastact._C against the torch that is already installed.

    pip install --no-build-isolation .

--no-build-isolation matters: an isolated build would make pip resolve a
fresh torch (several GB of CUDA wheels) instead of compiling against yours.

Switches (environment variables):
    DEBUG=1             -O0 -g, assertions on
    FASTACT_MARCH=...   CPU target for the kernels (default: native, the
                        machine that builds is the machine that runs; use
                        e.g. x86-64-v3 to build something portable)
    FASTACT_CUDA=0/1    force the CUDA extension off/on (default: on when
                        torch has CUDA and CUDA_HOME exists)
"""
import glob
import os

from setuptools import setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError as e:  # pragma: no cover - a message for the user, not a code path
    raise SystemExit(
        "fastact compiles against an installed torch: install torch first, then "
        "`pip install --no-build-isolation .`"
    ) from e

HERE = os.path.dirname(os.path.abspath(__file__))


def sources(pattern):
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, "csrc", pattern)))


def want_cuda():
    forced = os.environ.get("FASTACT_CUDA")
    if forced is not None:
        return forced == "1"
    return torch.cuda.is_available() or (torch.version.cuda is not None and CUDA_HOME is not None)


debug = os.environ.get("DEBUG", "0") == "1"
march = os.environ.get("FASTACT_MARCH", "native")
cxx_flags = ["-O0", "-g"] if debug else ["-O3", "-DNDEBUG"]
cxx_flags += [f"-march={march}", "-fopenmp", "-Wall", "-Wno-unused-function", "-Wno-unknown-pragmas", "-Wno-maybe-uninitialized", "-Wno-uninitialized"]
# at::parallel_for expands to OpenMP pragmas in our code; at run time
# libgomp.so.1 resolves to the one torch has already loaded.
link_flags = ["-fopenmp"]

cpp_sources = (sources("*.cpp") + sources("cpu/*.cpp") + sources("autograd/*.cpp") + sources("autocast/*.cpp")
               + sources("composite/*.cpp"))
Extension = CppExtension
extra_compile_args = {"cxx": cxx_flags}
define_macros = []
if want_cuda():
    # The kernels (cuda/*_kernel.cu) include no torch header; the glue
    # (cuda/*.cpp) is plain C++ against torch's CUDA headers.
    Extension = CUDAExtension
    cpp_sources += sources("cuda/*.cpp") + sources("cuda/*.cu")
    define_macros.append(("FASTACT_WITH_CUDA", "1"))
    # No --use_fast_math: torch's kernels use the accurate expf/logf, and the
    # results are compared with torch's; these kernels are bound by memory.
    extra_compile_args["nvcc"] = ["-O0", "-g", "-G"] if debug else ["-O3", "-lineinfo"]

# Metadata lives in pyproject.toml; this file only describes the extension.
setup(
    ext_modules=[
        Extension(
            "fastact._C",
            cpp_sources,
            include_dirs=[os.path.join(HERE, "csrc")],
            extra_compile_args=extra_compile_args,
            define_macros=define_macros,
            extra_link_args=link_flags,
        )
    ],
    cmdclass={"build_ext": BuildExtension},
)
