"""Which backend runs the fastact ops, and why."""
from dataclasses import dataclass
from typing import Tuple

import torch

from fastact import _loader


@dataclass(frozen=True)
class BackendInfo:
    name: str  # "cpp" or "unavailable"
    devices: Tuple[str, ...]
    reason: str
    build: str = ""

    def __str__(self) -> str:
        devices = ", ".join(self.devices) or "none"
        text = f"fastact backend: {self.name} (devices: {devices})\n  why: {self.reason}"
        return text + (f"\n  build: {self.build}" if self.build else "")


def backend() -> BackendInfo:
    """The backend the fastact ops run on, the devices it serves, and why it was chosen."""
    if not _loader.has_ops():
        return BackendInfo("unavailable", (), f"fastact._C did not load: {_loader.load_error!r}")
    devices = ["cpu"]
    if torch._C._dispatch_has_kernel_for_dispatch_key("fastact::relu", "CUDA"):
        devices.append("cuda")
    return BackendInfo(
        "cpp",
        tuple(devices),
        f"fastact._C loaded from {_loader._C.__file__}",
        torch.ops.fastact._build_info(),
    )
