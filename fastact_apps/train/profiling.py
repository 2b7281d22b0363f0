"""Where a training step's time goes, torch and fastact side by side."""
import contextlib
import copy
import os
import statistics
import sys
import tempfile

import torch

import fastact
from fastact_apps.train.trainer import Trainer, batches
from fastact_apps.train.tutorials import TUTORIALS


# Where a step's time goes: profiler self time by ATen/fastact op, grouped.
_GROUPS = (("matmul (MKL, shared)", ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul")),
           ("optimizer (shared)", ("Optimizer.", "aten::_fused_", "aten::_foreach_", "aten::add_", "aten::mul_",
                                   "aten::addcmul_", "aten::addcdiv_", "aten::sqrt", "aten::lerp_", "aten::div_")),
           ("fastact ops", ("fastact::",)),
           ("loss/activation (torch)", ("aten::relu", "aten::leaky_relu", "aten::sigmoid", "aten::tanh",
                                        "aten::threshold_backward", "aten::_log_softmax", "aten::nll_loss",
                                        "aten::mse_loss")),
           ("autograd bookkeeping", ("autograd::engine", "torch::autograd::AccumulateGrad", "aten::sum", "aten::t",
                                     "aten::zero_", "aten::fill_", "aten::ones_like", "aten::empty", "aten::detach")))

@contextlib.contextmanager
def _without_profiler_chatter():
    """torch's profiler (kineto) writes a line to the process's stderr each
    time it starts or stops ("USDT: ... profiler_start", "STAGE: ..."), past
    any log level. Capture file descriptor 2 meanwhile and pass on every
    other line, so real errors still show."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not line.startswith(("USDT:", "STAGE:")):
                    sys.stderr.write(line)


def profile(name: str, steps: int = 200, optimizer_impl: str = "default", train_step: bool = True) -> str:
    """A breakdown of one training step's time, torch and fastact side by
    side: microseconds per step by group of ops (profiler self times; the
    profiler's own overhead inflates small ops a little, alike for both)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    tutorial = TUTORIALS[name]
    torch.manual_seed(0)
    reference = tutorial.build()
    xb, yb = next(batches(*tutorial.data(), tutorial.batch))
    table = {}
    for kind in ("torch", "fastact"):
        model = fastact.fuse(copy.deepcopy(reference)) if kind == "fastact" else copy.deepcopy(reference)
        trainer = Trainer(model, tutorial, kind, optimizer_impl, train_step)
        for _ in range(20):
            trainer.step(xb, yb)
        with _without_profiler_chatter():
            with torch_profile(activities=[ProfilerActivity.CPU]):  # the profiler's own first-use costs
                trainer.step(xb, yb)
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(steps):
                    trainer.step(xb, yb)
        groups = {g: 0.0 for g, _ in _GROUPS} | {"other": 0.0}
        for event in prof.key_averages():
            group = next((g for g, prefixes in _GROUPS if event.key.startswith(prefixes)), "other")
            groups[group] += event.self_cpu_time_total / steps
        groups["step, unprofiled (median)"] = 1e6 * statistics.median(trainer.step_seconds[:20])
        table[kind] = groups
    lines = [f"{name}: microseconds per training step", f"{'':28s} {'torch':>8s} {'fastact':>8s}"]
    for group in table["torch"]:
        lines.append(f"{group:28s} {table['torch'][group]:8.1f} {table['fastact'][group]:8.1f}")
    return "\n".join(lines)
