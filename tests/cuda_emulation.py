"""Builds fastact's CUDA kernels and their torch glue for an emulated GPU
(tests/cuda_emulator/cuda_emulation.h: CUDA threads as host threads) and
loads them as torch.ops.fastact_cuda_emulation, registered for CPU tensors.
This is how the kernels' arithmetic, indexing, reductions and launch plans
are tested on machines without a GPU (tests/test_cuda_emulated.py); it says
nothing about their speed. Needs CUDA's headers (cuda_fp16.h and friends),
found where nvcc finds them; no GPU, no CUDA build of torch."""
import glob
import os
import shutil
import subprocess
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMULATOR = os.path.join(ROOT, "tests", "cuda_emulator")


def cuda_include_dir():
    """CUDA's include directory, as nvcc reports it (None without nvcc)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    out = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull], capture_output=True, text=True).stderr
    for line in out.splitlines():
        if "INCLUDES=" in line and '"-I' in line:
            path = line.split('"-I', 1)[1].split('"', 1)[0]
            if os.path.exists(os.path.join(path, "cuda_fp16.h")):
                return path
    return None


def load():
    """Compiles (once per source change; torch's JIT build caches it) and
    loads the emulated build; returns torch.ops.fastact_cuda_emulation."""
    from torch.utils import cpp_extension

    include = cuda_include_dir()
    if include is None:
        raise RuntimeError("CUDA headers not found (no nvcc on PATH)")
    build = os.path.join(tempfile.gettempdir(), f"fastact_cuda_emulation_{os.getuid()}")
    os.makedirs(build, exist_ok=True)
    # Each .cu becomes its own C++ translation unit, as nvcc would compile it.
    sources = []
    for kernel in sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu"))):
        wrapper = os.path.join(build, "emulated_" + os.path.basename(kernel).replace(".cu", ".cpp"))
        text = f'#include "cuda/{os.path.basename(kernel)}"\n'
        if not os.path.exists(wrapper) or open(wrapper).read() != text:
            with open(wrapper, "w") as f:
                f.write(text)
        sources.append(wrapper)
    sources += sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cpp")))
    sources.append(os.path.join(EMULATOR, "library.cpp"))
    cpp_extension.load(
        name="fastact_cuda_emulation", sources=sources, build_directory=build, is_python_module=False,
        # the emulator first: its cuda/platform.cuh and cuda/device_scope.h
        # stand in for csrc/cuda's (the GPU and the torch CUDA runtime)
        extra_include_paths=[EMULATOR, os.path.join(ROOT, "csrc"), include],
        extra_cflags=["-O1", "-pthread", "-Wno-attributes"],
        extra_ldflags=["-pthread"], verbose=False)
    return torch.ops.fastact_cuda_emulation
