"""Every (op, size, mode) case timed for torch and fastact (and, asked for,
torch.compile and fastact's Numba backend), and the table of ratios."""
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch

import fastact
from fastact_apps.bench.specs import OPS, default_sizes
from fastact_apps.bench.timing import compare, device_sync, on_device, training_step


@dataclass
class Result:
    op: str
    shape: Tuple[int, ...]
    mode: str
    torch_ms: float
    fastact_ms: float
    ratio: float
    fastact_gbps: Optional[float]
    torch_gbps: Optional[float]
    compile_ms: Optional[float] = None  # torch.compile of the torch function, with --compile
    ratio_compile: Optional[float] = None
    numba_ms: Optional[float] = None  # fastact on its Numba backend, with --numba
    numba_vs_cpp: Optional[float] = None  # numba time / C++ time

def _on_backend(name: str) -> Callable[[], None]:
    return lambda: fastact.set_backend(name)

def run(ops: List[str], sizes: Optional[List[Tuple[int, int]]], modes: List[str], budget_s: float,
        with_compile: bool = False, progress: Callable[[str], None] = lambda s: None,
        with_numba: bool = False, device: str = "cpu", dtype: torch.dtype = torch.float32) -> List[Result]:
    start_backend = fastact.backend().name
    if with_numba:
        fastact.set_backend("numba")
        fastact.wait_for_kernels()  # its kernels, not torch's ops while they compile in the background
        fastact.set_backend(start_backend)
    sync = device_sync(device)
    results = []
    for name in ops:
        spec = OPS[name]
        for shape in sizes or default_sizes(spec, device):
            for mode in modes:
                backward = mode == "fwd+bwd"
                torch.manual_seed(0)
                x = torch.randn(shape, device=device, dtype=dtype, requires_grad=backward)
                g = torch.randn(shape, device=device, dtype=dtype)
                aux = on_device(spec.aux(shape), device, dtype)
                clone = lambda: x.detach().clone().requires_grad_(backward)
                impls = {
                    "torch": training_step(spec.torch_fn, x, g, backward, aux),
                    "fastact": training_step(spec.fastact_fn, clone(), g, backward, aux),
                }
                if with_compile:
                    torch._dynamo.reset()
                    compiled = torch.compile(spec.torch_fn, fullgraph=True, dynamic=False)
                    impls["compile"] = training_step(compiled, clone(), g, backward, aux)
                before = {"fastact": _on_backend(start_backend)}
                if with_numba:
                    impls["numba"] = training_step(spec.fastact_fn, clone(), g, backward, aux)
                    before["numba"] = _on_backend("numba")
                times = compare(impls, budget_s, before=before, sync=sync)
                fastact.set_backend(start_backend)
                nbytes = x.numel() * x.element_size() * (spec.fwdbwd_bytes if backward else spec.fwd_bytes)
                big = x.numel() * x.element_size() >= (1 << 20)
                results.append(Result(
                    name, tuple(shape), mode, times["torch"] * 1e3, times["fastact"] * 1e3,
                    times["torch"] / times["fastact"],
                    nbytes / times["fastact"] / 1e9 if big else None,
                    nbytes / times["torch"] / 1e9 if big else None,
                    times["compile"] * 1e3 if with_compile else None,
                    times["compile"] / times["fastact"] if with_compile else None,
                    times["numba"] * 1e3 if with_numba else None,
                    times["numba"] / times["fastact"] if with_numba else None,
                ))
                progress(f"{name} {shape} {mode}")
    return results

def format_table(results: List[Result], copy_gbps: float) -> str:
    with_compile = any(r.compile_ms is not None for r in results)
    head = (f"{'op':19s} {'shape':>13s} {'mode':8s} {'torch ms':>10s} {'fastact ms':>11s} {'ratio':>6s} "
            f"{'GB/s torch':>10s} {'GB/s fastact':>12s}")
    with_numba = any(r.numba_ms is not None for r in results)
    if with_compile:
        head += f" {'compile ms':>11s} {'vs compile':>10s}"
    if with_numba:
        head += f" {'numba ms':>10s} {'numba/C++':>9s} {'torch/numba':>11s}"
    lines = [head, "-" * len(head)]
    for r in results:
        gb = (f"{r.torch_gbps:10.1f} {r.fastact_gbps:12.1f}" if r.fastact_gbps else f"{'':10s} {'':12s}")
        line = f"{r.op:19s} {str(r.shape):>13s} {r.mode:8s} {r.torch_ms:10.4f} {r.fastact_ms:11.4f} {r.ratio:6.2f} {gb}"
        if with_compile:
            line += f" {r.compile_ms:11.4f} {r.ratio_compile:10.2f}"
        if with_numba:
            line += f" {r.numba_ms:10.4f} {r.numba_vs_cpp:9.2f} {r.torch_ms / r.numba_ms:11.2f}"
        lines.append(line)
    lines.append(f"copy bandwidth (copy_, read+write): {copy_gbps:.1f} GB/s")
    return "\n".join(lines)
