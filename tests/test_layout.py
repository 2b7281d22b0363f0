"""The layout the code keeps: imports point one way (apps -> public API ->
backends -> checks/spec), the op list is one list (Python's _spec.OPS, C++'s
csrc/op_list.h, the C++ and Numba libraries agree), each op family has the
same file stem in every backend folder, and production headers carry no test
hooks. Read from the source tree (these tests run from a checkout)."""
import ast
import os
import re

import pytest
import torch

import fastact  # noqa: F401  (registers both libraries' ops)
from fastact import _spec

# read from the source tree and the op registries: no backend changes it
pytestmark = pytest.mark.once

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")

# Each module's layer: a module may import only modules of a lower layer,
# or of its own layer inside its own package.
LAYERS = {
    "fastact._spec": 0,
    "fastact._checks": 1,
    "fastact._backends.numba.cache": 2,
    "fastact._backends.numba.fastmath": 2,
    "fastact._backends.numba.outputs": 2,
    "fastact._backends.numba.kernels": 2,
    "fastact._backends.numba.warmup": 2,
    "fastact._backends.numba.library": 3,
    "fastact._backends.numba.autograd": 4,
    "fastact._backends.numba": 5,
    "fastact._backends.cpp": 5,
    "fastact._backends.fake": 5,
    "fastact._backends.batching": 5,
    "fastact._backends": 6,
    "fastact.functional": 7,
    "fastact.modules": 8,
    "fastact.optim": 8,
    "fastact.data": 8,
    "fastact.surgery": 9,
    "fastact.train_step": 10,
    "fastact": 11,
    "fastact._C": 0,  # the compiled extension: imports nothing of ours
}
APPS = 20  # every fastact_apps module


def _module_files():
    for package in ("fastact", "fastact_apps"):
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    yield module.removesuffix(".__init__"), path


def _imports(module, path):
    """Every fastact/fastact_apps module `path` imports, anywhere in the file."""
    is_package = path.endswith("__init__.py")
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative
                parts = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if _is_module(candidate) else base


def _is_module(name):
    path = os.path.join(ROOT, *name.split("."))
    return os.path.exists(path + ".py") or os.path.exists(os.path.join(path, "__init__.py")) or name == "fastact._C"


def _layer(module):
    if module.startswith("fastact_apps"):
        return APPS
    return LAYERS[module]


def test_every_module_has_a_layer():
    modules = [m for m, _ in _module_files() if not m.startswith("fastact_apps") and m != "fastact.__main__"]
    assert sorted(set(modules) - set(LAYERS)) == []


@pytest.mark.parametrize("module,path", sorted(_module_files()))
def test_imports_point_one_way(module, path):
    if module == "fastact.__main__":  # `python -m fastact`: the command line's entry, imported by nobody
        assert set(_imports(module, path)) == {"fastact_apps.cli"}
        return
    mine = _layer(module)
    for target in _imports(module, path):
        if not target.startswith(("fastact.", "fastact_apps")) and target != "fastact":
            continue
        if module.startswith("fastact_apps"):
            # the apps use the public API only
            assert target.startswith("fastact_apps") or not any(p.startswith("_") for p in target.split(".")), \
                f"{module} imports the private {target}"
            continue
        below = _layer(target) < mine or (_layer(target) == mine and target.rsplit(".", 1)[0] == module.rsplit(".", 1)[0])
        assert below, f"{module} (layer {mine}) imports {target} (layer {_layer(target)}): an upward import"


def test_the_numba_backend_imports_only_checks_spec_and_itself():
    for module, path in _module_files():
        if module.startswith("fastact._backends.numba"):
            for target in _imports(module, path):
                if target.startswith("fastact"):
                    assert target in ("fastact._checks", "fastact._spec") or \
                        target.startswith("fastact._backends.numba"), f"{module} imports {target}"


def _cpp_op_list():
    """(the op names, the names their schemas give) of csrc/op_list.h"""
    text = open(os.path.join(CSRC, "op_list.h")).read()
    entries = re.findall(r"^FASTACT_OP\((\w+),\s*\"(\w+)\(", text, flags=re.M)
    return [e[0] for e in entries], [e[1] for e in entries]


def test_one_op_list_for_both_languages():
    names, schemas = _cpp_op_list()
    assert sorted(names) == sorted(_spec.OPS + _spec.LISTED_PRIVATE_OPS) and len(set(names)) == len(names)
    assert schemas == names  # each line's schema is its own op's
    assert set(_spec.LISTED_PRIVATE_OPS) <= set(_spec.PRIVATE_OPS)


@pytest.mark.cpp_only
def test_the_cpp_and_numba_libraries_have_the_same_ops_and_schemas():
    from fastact._backends import numba  # noqa: F401  (defines torch.ops.fastact_numba)

    for name in _spec.OPS:
        cpp = str(getattr(torch.ops.fastact, name).default._schema)
        nb = str(getattr(torch.ops.fastact_numba, name).default._schema)
        # custom_op numbers its alias sets (a0!), the C++ schemas name them
        # (a!); and it declares a Python int as SymInt, which takes an int too
        nb = re.sub(r"\(a\d+!\)", "(a!)", nb).replace("SymInt ", "int ")
        assert cpp.replace("fastact::", "") == nb.replace("fastact_numba::", ""), name
    defined = {n.split("::")[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("fastact::")}
    assert defined == set(_spec.OPS) | set(_spec.PRIVATE_OPS)


@pytest.mark.parametrize("family", sorted(_spec.OPS_BY_FAMILY))
def test_each_family_has_one_file_stem_in_every_backend_folder(family):
    if family == "linear_act":  # torch's matmul and the activation ops: one kernel for every device
        expected = ["composite/linear_act.cpp", "autograd/linear_act.cpp"]
    else:
        expected = [f"cpu/{family}.cpp", f"cuda/{family}.cpp", f"cuda/{family}_kernel.cu", f"autograd/{family}.cpp"]
    missing = [f for f in expected if not os.path.exists(os.path.join(CSRC, f))]
    assert not missing


def test_production_sources_carry_no_test_hooks():
    for folder, _, files in os.walk(CSRC):
        for name in files:
            text = open(os.path.join(folder, name)).read()
            assert "EMULATION" not in text and "cuda_emulation" not in text, os.path.join(folder, name)


def test_selu_constants_agree():
    text = open(os.path.join(CSRC, "constants.h")).read()
    alpha = float(re.search(r"kSeluAlpha = ([0-9.]+)", text).group(1))
    scale = float(re.search(r"kSeluScale = ([0-9.]+)", text).group(1))
    assert (alpha, scale) == (_spec.SELU_ALPHA, _spec.SELU_SCALE)
    x = torch.tensor([-1.0], dtype=torch.float64)
    assert torch.nn.functional.selu(x).item() == pytest.approx(scale * alpha * (torch.exp(x) - 1).item(), rel=1e-15)


def test_every_file_in_cpu_is_a_kernel_family_registered_for_every_capability():
    """setup.py compiles csrc/cpu/*.cpp once per CPU capability and
    capability.cpp registers the families FASTACT_CPU_KERNEL_FAMILIES lists:
    a file missing from the list would never be registered, and glue put in
    cpu/ would be compiled three times (it belongs in cpu_shared/)."""
    text = open(os.path.join(CSRC, "cpu_shared", "capability.h")).read()
    body = re.search(r"#define FASTACT_CPU_KERNEL_FAMILIES\(X, arg\)(.*?)\n\n", text, re.S).group(1)
    listed = re.findall(r"X\(arg, (\w+)\)", body)
    files = sorted(f[: -len(".cpp")] for f in os.listdir(os.path.join(CSRC, "cpu")) if f.endswith(".cpp"))
    assert sorted(listed) == files
    for family in files:
        source = open(os.path.join(CSRC, "cpu", f"{family}.cpp")).read()
        assert f"void register_{family}(CpuKernels& kernels)" in source
        assert "namespace fastact::cpu::CPU_CAPABILITY {" in source and "TORCH_LIBRARY" not in source
