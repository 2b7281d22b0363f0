"""Timing side by side: alternating rounds, medians, a training step's share
of an op, and the machine's copy bandwidth for reference."""
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch


def per_call_seconds(fn: Callable[[], None], reps: int, sync: Callable[[], None] = lambda: None) -> float:
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()  # a GPU's work is done when its queue is, not when the launches return
    return (time.perf_counter() - start) / reps

def device_sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

def compare(fns: Dict[str, Callable[[], None]], budget_s: float = 1.0, rounds: int = 15,
            before: Optional[Dict[str, Callable[[], None]]] = None,
            sync: Callable[[], None] = lambda: None) -> Dict[str, float]:
    """Median seconds per call of each fn, measured in alternating rounds;
    before[name], if given, runs untimed ahead of each of name's rounds
    (e.g. selecting the fastact backend it measures); sync waits for the
    device (torch.cuda.synchronize on a GPU)."""
    before = before or {}
    for name, fn in fns.items():  # warm up: allocator, caches, first-call paths
        before.get(name, lambda: None)()
        fn()
        fn()
    probe = 0.0
    for name, fn in fns.items():
        before.get(name, lambda: None)()
        probe = max(probe, per_call_seconds(fn, 1, sync))
    reps = max(1, int(budget_s / rounds / len(fns) / max(probe, 1e-7)))
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            before.get(name, lambda: None)()
            samples[name].append(per_call_seconds(fn, reps, sync))
    return {name: statistics.median(s) for name, s in samples.items()}

def interleaved_medians(fns: Dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> Dict[str, float]:
    """Median seconds of one call of each fn, timed call by call with the
    fns taking turns, round after round, after `warmup` untimed calls of
    each: for work long enough to time alone (an epoch, a training step)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}

def training_step(fn: Callable, x: torch.Tensor, g: Optional[torch.Tensor], backward: bool,
                  aux=None) -> Callable[[], None]:
    """One call of fn(x, aux); with backward, a training step's share:
    forward, backward with gradient g (None for a scalar loss), and freeing
    x.grad as zero_grad(set_to_none=True) does. Each implementation gets its
    own x, so neither pays for freeing the other's tensors."""
    if not backward:
        return lambda: fn(x, aux)

    def fwd_bwd():
        out = fn(x, aux)
        out.backward(g if out.dim() else None)
        x.grad = None

    return fwd_bwd

def copy_bandwidth_gbps(n_bytes: int = 64 << 20, device: str = "cpu") -> float:
    """GB/s of dst.copy_(src) between existing buffers (bytes read + written)."""
    src = torch.randn(n_bytes // 4, device=device)
    dst = torch.empty_like(src)
    t = compare({"copy": lambda: dst.copy_(src)}, sync=device_sync(device))["copy"]
    return 2 * n_bytes / t / 1e9

def on_device(t, device: str, dtype: torch.dtype):
    """An aux tensor (targets, weights) moved to the case's device; floating
    ones take its dtype."""
    if t is None:
        return None
    return t.to(device, dtype) if t.is_floating_point() else t.to(device)
