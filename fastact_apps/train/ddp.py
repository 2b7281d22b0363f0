"""Training under torchrun: DistributedDataParallel, every rank on its share
of each batch (gloo on CPU, nccl on CUDA)."""
import gc
import os
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

import fastact
from fastact_apps.train.datasets import Data
from fastact_apps.train.trainer import Run, Trainer, batches, save_state
from fastact_apps.train.tutorials import TUTORIALS


def _train(name: str, epochs: Optional[int], fast: bool, seed: int, device: str,
           wrap: Callable[[nn.Module], nn.Module] = lambda m: m,
           share: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> Tuple[nn.Module, Trainer, Data]:
    """Builds `name` (fused if fast), wraps it, and trains it on share(batch) of every batch."""
    tutorial = TUTORIALS[name]
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = tutorial.build().to(dev)
    if fast:
        model = fastact.fuse(model)
    trainer = Trainer(wrap(model), tutorial, "fastact" if fast else "torch")
    x, y = (t.to(dev) for t in tutorial.data())
    for _ in range(tutorial.epochs if epochs is None else epochs):
        for xb, yb in batches(x, y, tutorial.batch):
            trainer.step(share(xb), share(yb))
    return model, trainer, (x, y)

def _state(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

def ddp_train(name: str, epochs: Optional[int] = None, fast: bool = True, seed: int = 0,
              device: str = "cpu") -> Tuple[Dict[str, torch.Tensor], Run]:
    """Trains `name` under DistributedDataParallel in an initialized process
    group: the same initial weights on every rank (DDP broadcasts rank 0's),
    each rank on its contiguous share of every batch. Mean-reduced losses
    and DDP's gradient averaging give the full batch's gradient, so the
    parameters follow a single process trained on the whole batch.
    Returns the final parameters and this rank's run."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank, world = dist.get_rank(), dist.get_world_size()
    dev = torch.device(device)

    def share(t):
        size = (len(t) + world - 1) // world
        return t[rank * size:(rank + 1) * size]

    def wrap(model):
        return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    model, trainer, data = _train(name, epochs, fast, seed, device, wrap, share)
    return _state(model), trainer.result(*data)

def single_process_train(name: str, epochs: Optional[int] = None, fast: bool = True,
                         seed: int = 0) -> Dict[str, torch.Tensor]:
    """The same training as ddp_train in one process on the full batches."""
    return _state(_train(name, epochs, fast, seed, "cpu")[0])

def main_distributed(args, names: List[str]) -> int:
    import torch.distributed as dist

    device = args.device
    if device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        lines = []
        for name in names:
            runs = {}
            for fast in (False, True):
                params, runs[fast] = ddp_train(name, args.epochs, fast, device=device)
                if fast and args.save and rank == 0:
                    save_state(params, args.save, name)
            lines.append(f"{name:16s} {runs[False].steps_per_s:13.0f} {runs[True].steps_per_s:15.0f} "
                         f"{runs[True].steps_per_s / runs[False].steps_per_s:7.2f} "
                         f"{runs[False].final_loss:10.4f} {runs[True].final_loss:12.4f}")
        if rank == 0:
            print(f"DistributedDataParallel, {world} processes ({dist.get_backend()}), "
                  f"{torch.get_num_threads()} threads each, fastact backend: {fastact.backend().name}")
            head = (f"{'model':16s} {'torch steps/s':>13s} {'fastact steps/s':>15s} {'speedup':>7s} "
                    f"{'loss torch':>10s} {'loss fastact':>12s}")
            print("\n".join([head, "-" * len(head)] + lines))
        # Before the group goes: free the DDP wrappers that reference cycles
        # still hold (their reducers own gloo work; freed at interpreter exit
        # instead, that can abort the process: "terminate called without an
        # active exception", seen once in CI on rank 1), and wait for every
        # rank, so that no rank tears the group down while another still uses it.
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0
