"""Side-by-side op benchmarks: fastact against stock torch, in one process.

Each case alternates the two implementations round by round (so drift on a
shared machine hits both alike), takes the median time per call over the
rounds, and reports ratio = torch time / fastact time. Large cases also get
GB/s from the bytes the op must move, next to a measured copy bandwidth.

    fastact bench                     # default settings (or: python -P -m fastact bench)
    THP_MEM_ALLOC_ENABLE=1 fastact bench   # torch on huge pages too
    fastact bench --device cuda --dtype bfloat16   # on a GPU (GPU sizes)

It ends with the bytes autograd saves for a LeakyReLU MLP, torch and fastact
(and, with --memory, the peak resident memory of cross entropy).
"""
import argparse
import json
import os
import re
import sys
from dataclasses import asdict

import torch

from fastact_apps.bench.cases import format_table, run
from fastact_apps.bench.memory import cuda_peak_memory_report, peak_memory_report, saved_bytes_report
from fastact_apps.bench.specs import GPU_LOSS_SIZES, GPU_SIZES, LOSS_SIZES, OPS, SIZES, default_sizes, size_names
from fastact_apps.bench.timing import copy_bandwidth_gbps


def size(text: str):
    """argparse type for --sizes: ROWSxCOLS (x or X)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: write ROWSxCOLS, e.g. 4096x4096")
    return int(match.group(1)), int(match.group(2))


def busy_machine_warning() -> str:
    """A line for the report when other work competes for the CPUs (load
    average over half of them): a stalled thread on either side skews a ratio
    (a "152x" was seen), so say so next to the numbers."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # not on this platform
        return ""
    cpus = os.cpu_count() or 1
    if load <= cpus / 2:
        return ""
    return (f"warning: the machine is busy (load average {load:.1f} on {cpus} CPUs): other work competes with "
            "both sides, so ratios may be off; rerun when it is quiet, or quote the median of several runs")


def main(args) -> int:
    sizes = args.sizes or None
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print(f"fastact bench: --device {args.device} asked for, but this torch ({torch.__version__}) "
              "has no usable CUDA device", file=sys.stderr)
        return 2
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
    busy_before = busy_machine_warning()
    if busy_before:
        print(busy_before, flush=True)
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
    busy_after = busy_machine_warning()
    if busy_after and not busy_before:
        print(busy_after)
    if not cuda and "leaky_relu" in ops:  # the report's MLP is a LeakyReLU one
        print(saved_bytes_report())
    if args.memory:
        print(cuda_peak_memory_report(dtype=dtype) if cuda else peak_memory_report())
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": settings, "copy_gbps": copy_gbps,
                       "results": [asdict(r) for r in results]}, f, indent=1)
    if args.plot:
        from fastact_apps.bench.plots import plot

        plot(results, args.plot, settings)
        print(f"plot written to {args.plot}")
    return 0


def add_arguments(parser) -> None:
    parser.add_argument("--ops", nargs="*", choices=list(OPS), help="ops to run (default: all)")
    parser.add_argument("--sizes", nargs="*", type=size, help=f"RxC sizes (default on CPU: {size_names(SIZES)}; cross entropy also "
                        f"{size_names(LOSS_SIZES[len(SIZES):])}; on CUDA: {size_names(GPU_SIZES)}, losses also "
                        f"{size_names(GPU_LOSS_SIZES[len(GPU_SIZES):])})")
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
