"""Builds fastact._C against the torch that is already installed.

    pip install --no-build-isolation .

--no-build-isolation matters: pip otherwise builds in a fresh, isolated
environment that has no torch to compile against.

One build runs on every x86-64 CPU: the kernels in csrc/cpu/ are compiled
once per CPU capability (DEFAULT: the compiler's baseline; AVX2; AVX512),
the rest once for the baseline, and the library registers the best copy the
CPU runs when it loads (csrc/cpu_shared/capability.cpp). Elsewhere (aarch64,
...) the kernels are compiled once, as plain C++.

Without a working C++ compiler the install still succeeds, without _C:
fastact then runs on its Numba backend and says so once, at import.

Switches (environment variables):
    DEBUG=1                      -O0 -g, assertions on
    FASTACT_MARCH=native         build everything for one CPU target instead
                                 (-march=...; for people who build where they
                                 run); the kernels of that capability only
    FASTACT_CUDA=0/1             force the CUDA extension off/on (default: on
                                 when torch has CUDA and CUDA_HOME exists)
    FASTACT_REQUIRE_EXTENSION=1  fail the install when _C does not build
                                 (CI; by default the install falls back)
    MAX_JOBS=N                   parallel compile jobs (ninja)
"""
import functools
import glob
import json
import os
import platform
import shutil
import subprocess
import sys

from setuptools import setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError as e:  # pragma: no cover - a message for the user, not a code path
    raise SystemExit(
        "fastact compiles against the torch you have installed, and this Python cannot import torch. "
        "If torch is installed, pip is building in an isolated environment (its default): run "
        "`pip install --no-build-isolation .`. Otherwise install torch first."
    ) from e

HERE = os.path.dirname(os.path.abspath(__file__))
DEBUG = os.environ.get("DEBUG", "0") == "1"
MARCH = os.environ.get("FASTACT_MARCH", "")
REQUIRE_EXTENSION = os.environ.get("FASTACT_REQUIRE_EXTENSION", "0") == "1"

# The flags of each capability: what torch's own AVX2/AVX512 kernels are
# compiled with (ATen's CPU_CAPABILITY builds), so fastact's copy runs
# wherever torch.backends.cpu.get_cpu_capability() names it.
CAPABILITY_FLAGS = {
    "DEFAULT": [],
    "AVX2": ["-mavx2", "-mfma", "-mf16c"],
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"],
}
# What csrc/cpu/vec_io.h checks each capability's flags against.
CAPABILITY_MACROS = {
    "AVX512": {"__AVX512F__", "__AVX512BW__", "__AVX512VL__", "__AVX512DQ__", "__FMA__"},
    "AVX2": {"__AVX2__", "__FMA__", "__F16C__"},
}


def _read(path):
    """A file's text, or None where there is none."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def sources(pattern):
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, "csrc", pattern)))


def want_cuda():
    forced = os.environ.get("FASTACT_CUDA")
    if forced is not None:
        return forced == "1"
    return torch.cuda.is_available() or (torch.version.cuda is not None and CUDA_HOME is not None)


def capability_of(march):
    """The capability a -march target covers, from the macros the compiler defines for it."""
    cxx = os.environ.get("CXX", "c++")
    out = subprocess.run([cxx, f"-march={march}", "-dM", "-E", "-x", "c++", os.devnull],
                         capture_output=True, text=True, check=True).stdout
    defined = {line.split()[1] for line in out.splitlines() if line.startswith("#define ")}
    return next((name for name, needs in CAPABILITY_MACROS.items() if needs <= defined), "DEFAULT")


@functools.lru_cache(maxsize=None)
def capabilities():
    """[(name, flags)]: the copies of the csrc/cpu/ kernels this build compiles
    (asked by the compile and the build record: the compiler probe runs once)."""
    if MARCH:
        return [(capability_of(MARCH), [f"-march={MARCH}"])]
    if platform.machine().lower() in ("x86_64", "amd64"):
        return list(CAPABILITY_FLAGS.items())
    return [("DEFAULT", [])]


class FastactBuildExtension(BuildExtension):
    """torch's BuildExtension (ninja, parallel) plus: the kernels compiled once
    per capability, no debug info unless DEBUG=1, and a failed build that
    leaves an install without _C instead of no install."""

    def build_extensions(self):
        if not DEBUG:
            # Python's own CFLAGS carry -g: 38 MB of debug info in _C
            for attr in ("compiler", "compiler_so", "compiler_cxx", "linker_so"):
                command = getattr(self.compiler, attr, None)
                if isinstance(command, list):
                    setattr(self.compiler, attr, [f for f in command if not (f == "-g" or f.startswith("-g3"))])
        self.failures = {}
        try:
            super().build_extensions()
        except Exception as e:  # the compiler check in BuildExtension itself can fail
            self._give_up_on(self.extensions, e)
        # nothing to copy or install for them
        self.extensions = [ext for ext in self.extensions if ext.name not in self.failures]

    def build_extension(self, ext):
        try:
            self._compile_kernels(ext)
            self._precompile_glue_headers(ext)
            super().build_extension(ext)
        except Exception as e:
            self._give_up_on([ext], e)

    def _compile_kernels(self, ext):
        """Compile csrc/cpu/ once per capability; link them after the
        baseline objects, so that each inline function torch's headers define
        resolves to its baseline copy."""
        objects = []
        for name, flags in capabilities():
            args = dict(ext.extra_compile_args)
            args["cxx"] = ext.extra_compile_args["cxx"] + flags
            print(f"fastact: compiling the CPU kernels for {name} ({' '.join(flags) or 'baseline flags'})",
                  flush=True)
            objects += self.compiler.compile(
                KERNEL_SOURCES, output_dir=os.path.join(self.build_temp, f"cpu_{name}"),
                macros=ext.define_macros + [("CPU_CAPABILITY", name), (f"CPU_CAPABILITY_{name}", "1")],
                include_dirs=ext.include_dirs, debug=self.debug, extra_postargs=args, depends=ext.depends)
        ext.extra_objects = objects
        # for capability.cpp: which copies it may register (the kernels need not know)
        has = [(f"FASTACT_CPU_HAS_{name}", "1") for name, _ in capabilities()]
        ext.define_macros += [m for m in has if m not in ext.define_macros]

    def _precompile_glue_headers(self, ext):
        """With GCC: csrc/glue_headers.h compiled once, with the glue files'
        own command line, and -include'd by each of them (halves their
        compile time). Any other compiler, or a failure here, builds as
        before; -Winvalid-pch says so should GCC find the header unusable."""
        cxx = os.environ.get("CXX", "c++")
        try:
            banner = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return
        if "Free Software Foundation" not in banner:  # clang's precompiled headers work differently
            return
        out_dir = os.path.join(os.path.abspath(self.build_temp), "glue_pch")
        os.makedirs(out_dir, exist_ok=True)
        header = os.path.join(out_dir, "glue_headers.h")
        with open(os.path.join(HERE, "csrc", "glue_headers.h")) as f:
            text = f.read()
        # the order torch's ninja build writes: the compiler's flags, macros,
        # include directories, then the extension's own flags
        macros = [f"-D{name}" if value is None else f"-D{name}={value}" for name, value in ext.define_macros]
        includes = [f"-I{os.path.abspath(d)}" for d in ext.include_dirs + self.compiler.include_dirs]
        command = ([cxx] + self.compiler.compiler_so[1:] + macros + includes
                   + ["-x", "c++-header", header, "-o", header + ".gch"] + ext.extra_compile_args["cxx"])
        # Rebuilt only when the header or the command changed: a new one
        # would rebuild every glue object (a later `pip wheel` reuses them).
        stamp = text + "\n" + json.dumps(command)
        if not (os.path.exists(header + ".gch") and _read(header + ".stamp") == stamp):
            print("fastact: precompiling the glue's torch headers", flush=True)
            if _read(header) != text:
                with open(header, "w") as f:
                    f.write(text)
            if subprocess.run(command).returncode != 0:
                print("fastact: the precompiled header did not build; the glue parses the headers itself",
                      flush=True)
                return
            with open(header + ".stamp", "w") as f:
                f.write(stamp)
        ext.extra_compile_args["cxx"] = ext.extra_compile_args["cxx"] + ["-include", header, "-Winvalid-pch"]

    def _give_up_on(self, extensions, error):
        if REQUIRE_EXTENSION:
            raise error
        cxx = os.environ.get("CXX", "c++")
        if shutil.which(cxx) is None:
            why = f"no C++ compiler: `{cxx}` is not on PATH"
            fix = "install one (e.g. `apt install g++`) and reinstall"
        else:
            why = f"{type(error).__name__}: {error}"
            fix = "the compiler's messages are above (`pip install -v` shows them); fix the cause and reinstall"
        for ext in extensions:
            self.failures[ext.name] = why
        print(f"\nWARNING: fastact's C++ extension did not build ({why}). fastact is installed without it and "
              f"runs on its slower Numba backend. For the fast path, {fix}: "
              "`pip install --no-build-isolation --force-reinstall --no-deps .`\n", file=sys.stderr, flush=True)

    def run(self):
        super().run()
        self._record()

    def _record(self):
        """fastact/_build.json: what _C was built against, read by the loader
        (fastact/_backends/cpp.py) before it imports _C."""
        error = getattr(self, "failures", {}).get("fastact._C")
        record = {
            "torch": torch.__version__,
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "march": MARCH or "portable",
            "cpu_kernels": [] if error else [name for name, _ in capabilities()],
            "error": error,
        }
        if self.inplace:
            package = self.get_finalized_command("build_py").get_package_dir("fastact")
        else:
            package = os.path.join(self.build_lib, "fastact")
        os.makedirs(package, exist_ok=True)
        with open(os.path.join(package, "_build.json"), "w") as f:
            json.dump(record, f, indent=1)


# the standard torch's build would append, named here so that the
# precompiled header is compiled under it too (csrc/ needs C++20 anyway)
cxx_flags = ["-std=c++20"]
cxx_flags += ["-O0", "-g"] if DEBUG else ["-O3", "-DNDEBUG"]
cxx_flags += ["-fopenmp", "-Wall", "-Wno-unused-function", "-Wno-unknown-pragmas", "-Wno-maybe-uninitialized",
              "-Wno-uninitialized"]
define_macros = []
if MARCH:
    cxx_flags.append(f"-march={MARCH}")
    define_macros.append(("FASTACT_MARCH", MARCH))
# at::parallel_for expands to OpenMP pragmas in our code; at run time
# libgomp.so.1 resolves to the one torch has already loaded.
link_flags = ["-fopenmp"]

# csrc/cpu/: the kernels, compiled once per capability (above); everything
# else once.
KERNEL_SOURCES = sources("cpu/*.cpp")
cpp_sources = (sources("*.cpp") + sources("cpu_shared/*.cpp") + sources("autograd/*.cpp")
               + sources("autocast/*.cpp") + sources("composite/*.cpp"))
Extension = CppExtension
extra_compile_args = {"cxx": cxx_flags}
if want_cuda():
    # The kernels (cuda/*_kernel.cu) include no torch header; the glue
    # (cuda/*.cpp) is plain C++ against torch's CUDA headers.
    Extension = CUDAExtension
    cpp_sources += sources("cuda/*.cpp") + sources("cuda/*.cu")
    define_macros.append(("FASTACT_WITH_CUDA", "1"))
    # No --use_fast_math: torch's kernels use the accurate expf/logf, and the
    # results are compared with torch's; these kernels are bound by memory.
    extra_compile_args["nvcc"] = ["-O0", "-g", "-G"] if DEBUG else ["-O3", "-lineinfo"]

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
    cmdclass={"build_ext": FastactBuildExtension},
)
