"""fastact.backend(), `python -m fastact info`, and a broken extension that
must degrade to a clear error instead of breaking `import fastact`."""
import os
import shutil
import subprocess
import sys
import sysconfig

import fastact


def test_backend_reports_cpp():
    info = fastact.backend()
    assert info.name == "cpp" and "cpu" in info.devices
    assert "_C" in info.reason and "cpu_capability=" in info.build
    assert "cpp" in str(info)


def run_python(code, cwd=None, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300, cwd=cwd)


def test_cli_info():
    out = subprocess.run([sys.executable, "-P", "-m", "fastact", "info"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "fastact backend: cpp" in out.stdout


def test_broken_extension_does_not_break_import(tmp_path):
    pkg = os.path.dirname(fastact.__file__)
    copy = tmp_path / "fastact"
    shutil.copytree(pkg, copy, ignore=shutil.ignore_patterns("_C*", "__pycache__"))
    (copy / ("_C" + sysconfig.get_config_var("EXT_SUFFIX"))).write_bytes(b"not a shared library")
    code = (
        "import torch, fastact\n"
        "assert fastact.__file__.startswith(%r), fastact.__file__\n"
        "print(fastact.backend().name)\n"
        "m = torch.nn.Sequential(fastact.ReLU())\n"
        "try:\n    m(torch.ones(2))\nexcept RuntimeError as e:\n    print('ERR', e)\n" % str(tmp_path)
    )
    out = run_python(code, cwd=str(tmp_path), PYTHONPATH=str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "unavailable"
    assert lines[1].startswith("ERR") and "pip install --no-build-isolation" in lines[1]


def test_output_cache_reuses_and_empties():
    import torch

    fastact.empty_cache()
    assert torch.ops.fastact._cached_bytes() == 0
    x = torch.randn(1024, 1024)  # 4 MiB: on fastact's own mappings
    y = fastact.functional.relu(x)
    ptr = y.data_ptr()
    del y
    assert torch.ops.fastact._cached_bytes() >= 4 << 20
    assert fastact.functional.relu(x).data_ptr() == ptr, "the freed output is reused"
    fastact.empty_cache()
    assert torch.ops.fastact._cached_bytes() == 0
