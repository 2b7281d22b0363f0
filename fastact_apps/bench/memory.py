"""Memory, torch against fastact: what autograd saves for backward, and the
peak memory of one cross entropy forward+backward."""
from typing import Callable, List

import torch
import torch.nn.functional as TF

import fastact


_PEAK_CHILD = """
import sys, torch, fastact, torch.nn.functional as TF
impl, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fn = TF.cross_entropy if impl == "torch" else fastact.functional.cross_entropy
x = torch.randn(n, c, requires_grad=True)
y = torch.randint(0, c, (n,))
fn(x[:8], y[:8]).backward(); x.grad = None          # warm up (libraries, small buffers)
def kib(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])
base = kib("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")          # reset the peak (VmHWM)
fn(x, y).backward()
print((kib("VmHWM:") - base) * 1024)
"""

def peak_memory_report(n: int = 4096, c: int = 32000) -> str:
    """Peak extra resident memory of one cross entropy forward+backward, each
    implementation in a fresh process (input and targets allocated first)."""
    import subprocess
    import sys

    peaks = {}
    for impl in ("torch", "fastact"):
        out = subprocess.run([sys.executable, "-c", _PEAK_CHILD, impl, str(n), str(c)],
                             capture_output=True, text=True, check=True)
        peaks[impl] = int(out.stdout.split()[-1])
    nc = n * c * 4
    return (f"peak extra resident memory, cross entropy fwd+bwd {n}x{c} float32: "
            f"torch {peaks['torch'] / nc:.2f} x N*C*4 ({peaks['torch'] / 2**20:.0f} MiB), "
            f"fastact {peaks['fastact'] / nc:.2f} x N*C*4 ({peaks['fastact'] / 2**20:.0f} MiB), "
            f"ratio {peaks['fastact'] / peaks['torch']:.2f}")

def cuda_peak_memory_report(n: int = 8192, c: int = 32000, dtype: torch.dtype = torch.float32) -> str:
    """Peak GPU memory (torch.cuda.max_memory_allocated) of one cross entropy
    forward+backward, input and targets included, torch against fastact."""
    peaks = {}
    for impl, fn in (("torch", TF.cross_entropy), ("fastact", fastact.functional.cross_entropy)):
        x = torch.randn(n, c, device="cuda", dtype=dtype, requires_grad=True)
        y = torch.randint(0, c, (n,), device="cuda")
        fn(x[:8], y[:8]).backward()  # warm up
        x.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn(x, y).backward()
        torch.cuda.synchronize()
        peaks[impl] = torch.cuda.max_memory_allocated() - base + x.numel() * x.element_size() + y.numel() * 8
        del x, y
    nc = n * c * torch.empty((), dtype=dtype).element_size()
    return (f"peak GPU memory, cross entropy fwd+bwd {n}x{c} {dtype}, input included: "
            f"torch {peaks['torch'] / nc:.2f} x N*C ({peaks['torch'] / 2**20:.0f} MiB), "
            f"fastact {peaks['fastact'] / nc:.2f} x N*C ({peaks['fastact'] / 2**20:.0f} MiB), "
            f"ratio {peaks['fastact'] / peaks['torch']:.2f}")

def saved_tensor_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves for backward in one forward."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    return sum(storages.values())

def leaky_mlp(leaky_relu: Callable[[], torch.nn.Module], sizes=(784, 1024, 1024, 10)) -> torch.nn.Sequential:
    """Linear -> LeakyReLU -> ... -> Linear, seeded."""
    torch.manual_seed(0)
    layers: List[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(leaky_relu())
    return torch.nn.Sequential(*layers)

def saved_bytes_report(batch: int = 4096) -> str:
    """torch against fastact: what a 784-1024-1024-10 LeakyReLU MLP keeps for backward."""
    x = torch.randn(batch, 784)
    theirs = saved_tensor_bytes(leaky_mlp(lambda: torch.nn.LeakyReLU(0.01)), x)
    ours = saved_tensor_bytes(leaky_mlp(lambda: fastact.LeakyReLU(0.01)), x)
    mib, activation = 1 << 20, batch * 1024 * 4
    return (f"saved for backward, 784-1024-1024-10 LeakyReLU MLP, batch {batch}: torch {theirs / mib:.1f} MiB, "
            f"fastact {ours / mib:.1f} MiB ({(theirs - ours) / activation:.1f} activations of {batch}x1024 less)")
