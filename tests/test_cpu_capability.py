"""One build for every x86-64 CPU (csrc/cpu_shared/capability.cpp): the
kernels in csrc/cpu/ are compiled once per CPU capability, the best copy the
CPU runs is registered when _C loads, and FASTACT_CPU_CAPABILITY lowers it.
CI runs the kernel tests under every capability (.ci/run); these check the
choice, how it is reported, that nothing outside a capability's own kernels
uses instructions past the baseline, and what the loader does with a build
it must not load (another torch's, or one that failed)."""
import json
import os
import platform
import re
import shutil
import subprocess
import sys

import pytest
import torch

import fastact
from fastact._backends import cpp

pytestmark = pytest.mark.cpp_only

RANKS = ("DEFAULT", "AVX2", "AVX512")
COMPILED = cpp.build_record().get("cpu_kernels", [])
SUPPORTED = torch.backends.cpu.get_cpu_capability()
PORTABLE = cpp.build_record().get("march") == "portable"


def run_python(code, pythonpath=None, **env):
    """Run `code` in a fresh interpreter that imports this fastact, with the
    given environment variables (None removes one)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("FASTACT_CPU_CAPABILITY", "FASTACT_BACKEND")}
    environ["PYTHONPATH"] = pythonpath or os.path.dirname(cpp.PACKAGE)
    for key, value in env.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    done = subprocess.run([sys.executable, "-P", "-c", code], env=environ, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


CHOICE = "import fastact; from fastact._backends import cpp; print(cpp._C._cpu_capability()[0])"


def test_the_build_has_every_capability_of_its_kind():
    if not PORTABLE:
        pytest.skip("built with FASTACT_MARCH: one capability by design")
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert COMPILED == (list(RANKS) if x86 else ["DEFAULT"])
    assert cpp._C._cpu_capability()[3].split() == COMPILED


def test_the_best_capability_the_cpu_supports_runs_by_default():
    if SUPPORTED not in COMPILED:
        pytest.skip(f"this build has no {SUPPORTED} kernels")
    done = run_python(CHOICE + "; print(fastact.backend())")
    assert done.stdout.splitlines()[0] == SUPPORTED
    assert f"get_cpu_capability() = {SUPPORTED}" in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize("capability", RANKS)
def test_the_override_chooses_a_lower_capability_whose_kernels_agree_with_torch(capability):
    if capability not in COMPILED or (SUPPORTED in RANKS and RANKS.index(capability) > RANKS.index(SUPPORTED)):
        pytest.skip(f"{capability} is not in this build or not supported by this CPU")
    # sizes with vector tails, every dtype path (fp32 math for reduced ones)
    check = CHOICE + """
import torch, fastact.functional as F
torch.manual_seed(0)
for dtype in (torch.float32, torch.float64, torch.bfloat16):
    x = torch.randn(37, 1031, dtype=dtype)
    t = torch.randint(0, 1031, (37,))
    tol = dict(atol=1e-2, rtol=1e-2) if dtype == torch.bfloat16 else dict(atol=1e-5, rtol=1e-5)
    for ours, theirs in ((F.gelu(x), torch.nn.functional.gelu(x)), (F.softmax(x, 1), torch.softmax(x, 1)),
                         (F.sigmoid(x), torch.sigmoid(x)), (F.relu(x), torch.relu(x)),
                         (F.cross_entropy(x, t), torch.nn.functional.cross_entropy(x, t))):
        torch.testing.assert_close(ours, theirs, **tol)
print(fastact.backend().cpu_kernels)
"""
    done = run_python(check, FASTACT_CPU_CAPABILITY=capability.lower())
    assert done.stdout.splitlines()[0] == capability
    assert f"FASTACT_CPU_CAPABILITY={capability.lower()}" in done.stdout
    assert done.stderr == ""


def test_an_unknown_override_warns_once_and_is_ignored():
    done = run_python(CHOICE, FASTACT_CPU_CAPABILITY="sse4")
    assert done.stdout.strip() == run_python(CHOICE).stdout.strip()
    assert done.stderr.count("FASTACT_CPU_CAPABILITY=sse4 is not one of avx512, avx2, default: ignored") == 1


def test_it_follows_torchs_cpu_capability_and_refuses_more():
    if SUPPORTED not in ("AVX2", "AVX512") or "AVX2" not in COMPILED:
        pytest.skip("needs an AVX2 CPU and a build with AVX2 kernels")
    # ATEN_CPU_CAPABILITY lowers what torch (and so fastact) takes this CPU to run
    assert run_python(CHOICE, ATEN_CPU_CAPABILITY="avx2").stdout.strip() == "AVX2"
    done = run_python(CHOICE, ATEN_CPU_CAPABILITY="avx2", FASTACT_CPU_CAPABILITY="avx512")
    assert done.stdout.strip() == "AVX2"
    assert "asks for more than this CPU supports (AVX2): ignored" in done.stderr


def test_backend_and_info_say_which_kernels_run_and_why():
    name, why, _, compiled = cpp._C._cpu_capability()
    info = fastact.backend()
    assert info.cpu_kernels.startswith(f"{name}: {why}") and compiled in info.cpu_kernels
    assert f"cpu_capability={name}" in info.build
    assert f"cpu kernels: {name}" in str(info)


def functions_using_vector_registers(library):
    """{function: first instruction} for the functions in `library` that use
    ymm/zmm or AVX-512 mask registers, i.e. need more than x86-64's baseline."""
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", library], capture_output=True, text=True,
                          check=True).stdout
    found, function = {}, None
    for line in text.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if header:
            function = header.group(1)
        elif function and re.search(r"%[yz]mm\d|%k[1-7]\b", line):
            found.setdefault(function, line.strip())
    return found


def test_nothing_outside_a_capabilitys_own_kernels_needs_more_than_the_baseline():
    """A CPU without AVX2 runs the glue, the registration and the DEFAULT
    kernels; if the linker kept an AVX2/AVX-512 copy of an inline function
    those share (the copy in a kernel file compiled with -mavx512f), that CPU
    would die with an illegal instruction. Such a copy was found and removed
    (torch::Library::impl, once called from the kernel files)."""
    if not PORTABLE or platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("only a portable x86-64 build promises this")
    if shutil.which("objdump") is None:
        pytest.skip("needs objdump (binutils)")
    capability_code = re.compile(r"(cpu|vec)::(AVX2|AVX512)::|3(cpu|vec)(4AVX2|6AVX512)")
    stray = {f: insn for f, insn in functions_using_vector_registers(cpp._C.__file__).items()
             if not capability_code.search(f)}
    assert not stray, "\n".join(f"{f[:160]}: {insn}" for f, insn in list(stray.items())[:10])


@pytest.fixture()
def package_copy(tmp_path):
    """A copy of this fastact package (its _C included), to edit its build record."""
    target = tmp_path / "fastact"
    shutil.copytree(cpp.PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__"))
    record = cpp.build_record() or {"torch": torch.__version__}

    def with_record(**changes):
        (target / "_build.json").write_text(json.dumps({**record, **changes}))
        return str(tmp_path)

    return with_record


FALLBACK = "import fastact; print(fastact.backend().name)"


def test_a_build_for_another_torch_is_not_loaded(package_copy):
    done = run_python(FALLBACK, package_copy(torch="1.0.0"))
    assert done.stdout.strip() == "numba"
    assert done.stderr.count("built against torch 1.0.0") == 1  # one warning, saying why
    assert "reinstall fastact" in done.stderr


def test_an_install_whose_build_failed_runs_on_numba_and_says_why(package_copy):
    done = run_python(FALLBACK, package_copy(error="no C++ compiler: `c++` is not on PATH"))
    assert done.stdout.strip() == "numba"
    assert done.stderr.count("did not build: no C++ compiler") == 1
