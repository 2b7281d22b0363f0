"""Which backend runs the fastact ops, and why; switching between them."""
from dataclasses import dataclass
from typing import Tuple

import torch

from fastact import _loader, _ops


@dataclass(frozen=True)
class BackendInfo:
    name: str  # "cpp", "numba" or "unavailable"
    devices: Tuple[str, ...]
    reason: str
    build: str = ""

    def __str__(self) -> str:
        devices = ", ".join(self.devices) or "none"
        text = f"fastact backend: {self.name} (devices: {devices})\n  why: {self.reason}"
        return text + (f"\n  build: {self.build}" if self.build else "")


def backend() -> BackendInfo:
    """The backend the fastact ops run on, the devices it serves, and why it was chosen."""
    if _ops.current == "cpp":
        devices = ["cpu"]
        if torch._C._dispatch_has_kernel_for_dispatch_key("fastact::relu", "CUDA"):
            devices.append("cuda")
        return BackendInfo("cpp", tuple(devices), _ops.why, torch.ops.fastact._build_info())
    if _ops.current == "numba":
        import numba

        from fastact.numba_backend import kernels

        return BackendInfo("numba", ("cpu",), _ops.why,
                           f"numba {numba.__version__}, threading layer {numba.config.THREADING_LAYER}, "
                           f"{numba.config.NUMBA_NUM_THREADS} threads, serial below {kernels.SERIAL_GRAIN} elements")
    return BackendInfo("unavailable", (), _ops.why)


def set_backend(name: str) -> BackendInfo:
    """Run the fastact ops on `name`: "cpp" (the compiled extension), "numba"
    (the Numba kernels), or "auto" (cpp when it loaded, else numba). Applies
    to calls made from now on; returns the new backend()."""
    if name == "auto":
        name = "cpp" if _loader.has_ops() else "numba"
    _ops.use(name)
    return backend()
