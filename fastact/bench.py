"""Side-by-side op benchmarks: fastact against stock torch, in one process.

Each case alternates the two implementations round by round (so drift on a
shared machine hits both alike), takes the median time per call over the
rounds, and reports ratio = torch time / fastact time. Large cases also get
GB/s from the bytes the op must move, next to a measured copy bandwidth.

    python -m fastact bench                     # default settings
    THP_MEM_ALLOC_ENABLE=1 python -m fastact bench   # torch on huge pages too
    python -m fastact bench --device cuda --dtype bfloat16   # on a GPU (GPU sizes)

It ends with the bytes autograd saves for a LeakyReLU MLP, torch and fastact
(and, with --memory, the peak resident memory of cross entropy).
"""
import json
import math
import sys
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as TF

import fastact.functional as F

SIZES = [(5, 10), (1000, 10), (256, 1024), (4096, 4096)]
LOSS_SIZES = [(1000, 10), (4096, 4096), (4096, 32000)]
# On a GPU: the tutorial size (launch-bound) and vocabulary-sized rows.
GPU_SIZES = [(1000, 10), (8192, 32000)]
GPU_LOSS_SIZES = [(1000, 10), (8192, 32000), (8192, 128256)]


def _class_indices(shape):
    return torch.randint(0, shape[1], (shape[0],), generator=torch.Generator().manual_seed(1))


def _class_probabilities(shape):
    return torch.softmax(torch.randn(shape, generator=torch.Generator().manual_seed(1)), 1)


@dataclass(frozen=True)
class OpSpec:
    torch_fn: Callable  # (x, aux) -> output
    fastact_fn: Callable
    # bytes per element (in units of x's element size) each mode must move.
    # Activations: forward reads x, writes y; backward reads the gradient and
    # the saved tensor, writes the input's gradient. Losses: forward reads x;
    # forward+backward reads x and writes its gradient once.
    fwd_bytes: int = 2
    fwdbwd_bytes: int = 5
    sizes: Tuple[Tuple[int, int], ...] = tuple(SIZES)
    aux: Callable = lambda shape: None  # e.g. the targets of a loss
    gpu_sizes: Tuple[Tuple[int, int], ...] = tuple(GPU_SIZES)


OPS: Dict[str, OpSpec] = {
    "relu": OpSpec(lambda x, _: TF.relu(x), lambda x, _: F.relu(x)),
    "leaky_relu": OpSpec(lambda x, _: TF.leaky_relu(x, 0.01), lambda x, _: F.leaky_relu(x, 0.01)),
    "sigmoid": OpSpec(lambda x, _: torch.sigmoid(x), lambda x, _: F.sigmoid(x)),
    "tanh": OpSpec(lambda x, _: torch.tanh(x), lambda x, _: F.tanh(x)),
    "gelu": OpSpec(lambda x, _: TF.gelu(x), lambda x, _: F.gelu(x)),
    "selu": OpSpec(lambda x, _: TF.selu(x), lambda x, _: F.selu(x)),
    "softmax": OpSpec(lambda x, _: TF.softmax(x, -1), lambda x, _: F.softmax(x, -1)),
    "log_softmax": OpSpec(lambda x, _: TF.log_softmax(x, -1), lambda x, _: F.log_softmax(x, -1)),
    "cross_entropy": OpSpec(TF.cross_entropy, F.cross_entropy, 1, 2, tuple(LOSS_SIZES), _class_indices,
                            tuple(GPU_LOSS_SIZES)),
    "cross_entropy_probs": OpSpec(TF.cross_entropy, F.cross_entropy, 2, 3, tuple(LOSS_SIZES), _class_probabilities,
                                  tuple(GPU_LOSS_SIZES)),
    # reads x and t; forward+backward also writes the gradient
    "bce_with_logits": OpSpec(TF.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, 2, 3,
                              ((1000, 10), (4096, 4096)), lambda shape: torch.rand(shape)),
}


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


def _per_call_seconds(fn: Callable[[], None], reps: int, sync: Callable[[], None] = lambda: None) -> float:
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
        probe = max(probe, _per_call_seconds(fn, 1, sync))
    reps = max(1, int(budget_s / rounds / len(fns) / max(probe, 1e-7)))
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            before.get(name, lambda: None)()
            samples[name].append(_per_call_seconds(fn, reps, sync))
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


def _on_device(t, device: str, dtype: torch.dtype):
    """An aux tensor (targets, weights) moved to the case's device; floating
    ones take its dtype."""
    if t is None:
        return None
    return t.to(device, dtype) if t.is_floating_point() else t.to(device)


def _on_backend(name: str) -> Callable[[], None]:
    import fastact

    return lambda: fastact.set_backend(name)


def default_sizes(spec: OpSpec, device: str) -> Tuple[Tuple[int, int], ...]:
    return spec.gpu_sizes if torch.device(device).type == "cuda" else spec.sizes


def run(ops: List[str], sizes: Optional[List[Tuple[int, int]]], modes: List[str], budget_s: float,
        with_compile: bool = False, progress: Callable[[str], None] = lambda s: None,
        with_numba: bool = False, device: str = "cpu", dtype: torch.dtype = torch.float32) -> List[Result]:
    import fastact

    start_backend = fastact.backend().name
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
                aux = _on_device(spec.aux(shape), device, dtype)
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
    import fastact

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
    import fastact

    x = torch.randn(batch, 784)
    theirs = saved_tensor_bytes(leaky_mlp(lambda: torch.nn.LeakyReLU(0.01)), x)
    ours = saved_tensor_bytes(leaky_mlp(lambda: fastact.LeakyReLU(0.01)), x)
    mib, activation = 1 << 20, batch * 1024 * 4
    return (f"saved for backward, 784-1024-1024-10 LeakyReLU MLP, batch {batch}: torch {theirs / mib:.1f} MiB, "
            f"fastact {ours / mib:.1f} MiB ({(theirs - ours) / activation:.1f} activations of {batch}x1024 less)")


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


def main(args) -> int:
    import os
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes] if args.sizes else None
    modes = ["fwd", "fwd+bwd"] if args.mode == "both" else [args.mode]
    ops = args.ops or list(OPS)
    dtype = getattr(torch, args.dtype)
    cuda = torch.device(args.device).type == "cuda"
    if cuda and args.numba:
        raise SystemExit("--numba times the CPU backend; it does not apply to --device cuda")
    where = (f"{torch.cuda.get_device_name(args.device)}" if cuda
             else f"{torch.get_num_threads()} threads, THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}")
    settings = f"torch {torch.__version__}, {args.device}: {where}, {args.dtype}"
    print(settings, flush=True)
    copy_gbps = copy_bandwidth_gbps(1 << 30 if cuda else 64 << 20, args.device)
    from tqdm.auto import tqdm

    total = sum(len(sizes or default_sizes(OPS[name], args.device)) * len(modes) for name in ops)
    with tqdm(total=total, unit="case", leave=False, disable=None, file=sys.stderr) as bar:
        def progress(case):
            bar.set_description(case)
            bar.update()
        results = run(ops, sizes, modes, args.budget, args.compile, progress=progress, with_numba=args.numba,
                      device=args.device, dtype=dtype)
    print(format_table(results, copy_gbps))
    if not cuda:
        print(saved_bytes_report())
    if args.memory:
        print(cuda_peak_memory_report(dtype=dtype) if cuda else peak_memory_report())
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": settings, "copy_gbps": copy_gbps,
                       "results": [asdict(r) for r in results]}, f, indent=1)
    if args.plot:
        plot(results, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def plot(results: List[Result], path: str) -> None:
    """Speedup over torch (ratio) against tensor size, one line per op and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for (op, mode) in dict.fromkeys((r.op, r.mode) for r in results):
        points = sorted((math.prod(r.shape), r.ratio) for r in results if r.op == op and r.mode == mode)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{op} {mode}")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("elements")
    ax.set_ylabel("speedup over torch (torch time / fastact time)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def add_arguments(parser) -> None:
    parser.add_argument("--ops", nargs="*", choices=list(OPS), help="ops to run (default: all)")
    parser.add_argument("--sizes", nargs="*", help="RxC sizes (default on CPU: 5x10 1000x10 256x1024 4096x4096; "
                        "losses: 1000x10 4096x4096 4096x32000; on CUDA: 1000x10 8192x32000, losses also 8192x128256)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the torch function")
    parser.add_argument("--memory", action="store_true",
                        help="also measure the peak memory of cross entropy fwd+bwd (CPU: resident memory at "
                             "4096x32000; CUDA: max_memory_allocated at 8192x32000)")
    parser.add_argument("--mode", choices=["fwd", "fwd+bwd", "both"], default="both")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per case (default 1)")
    parser.add_argument("--numba", action="store_true", help="also time fastact on its Numba backend")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: where the tensors live")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"])
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--plot", help="write speedup against size to this image")
