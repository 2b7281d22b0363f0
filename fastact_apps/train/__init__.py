"""Train the seed notebooks' tutorial models with stock torch and with fastact.

Both start from the same weights, see the same data and use the same
optimizer settings; the fastact side is `fastact.fuse(model)` (its Linear +
activation layers as one chain) with fastact's loss and fastact.optim's
class of the notebook's optimizer, each step one fastact.TrainStep call
(zero_grad, forward, loss, backward and the optimizer's step, without the
autograd engine; --autograd-step: the same step through loss.backward()). The two are trained in lockstep in
this process, taking turns step by step, and the table gives steps/s for
each, the speedup, the final loss and accuracy of each, and how many leading
steps' losses agree to 1e-4 (see `agreement` for what "agree" requires).

    fastact train [--model NAME ...] [--epochs N] [--device cpu|cuda]
                            [--compile] [--optimizer-impl default|foreach|fused]
                            [--autograd-step] [--plot out.png] [--json out.json]

Under torchrun (WORLD_SIZE > 1) each model trains with DistributedDataParallel
instead, every rank on its share of each batch (gloo on CPU, nccl on CUDA):

    torchrun --nproc_per_node 2 -m fastact train --model circles
"""
import json
import os
import sys
from dataclasses import asdict

import torch

import fastact
from fastact_apps.train.trainer import compare, format_table, save_state
from fastact_apps.train.tutorials import TUTORIALS


def main(args) -> int:
    names = args.model or [n for n in TUTORIALS]
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"fastact train: --device {args.device} asked for, but this torch ({torch.__version__}) "
              "has no usable CUDA device", file=sys.stderr)
        return 2
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from fastact_apps.train.ddp import main_distributed

        return main_distributed(args, names)
    if args.profile:
        from fastact_apps.train.profiling import profile

        for name in names:
            print(profile(name, optimizer_impl=args.optimizer_impl, train_step=not args.autograd_step), end="\n\n")
        return 0
    rows, models = [], {}
    from tqdm.auto import tqdm

    show = not args.no_progress
    for name in tqdm(names, desc="models", unit="model", disable=None if show else True, file=sys.stderr):
        rows.append(compare(name, args.epochs, device=args.device, compile=args.compile,
                            optimizer_impl=args.optimizer_impl, progress=show,
                            keep_models=models if (args.plot or args.save) else None,
                            train_step=not args.autograd_step))
    settings = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
                f"optimizers: torch's {args.optimizer_impl} implementation (fastact: fastact.optim), "
                f"fastact step: {'autograd' if args.autograd_step else 'fastact.TrainStep'}, "
                f"fastact backend: {fastact.backend().name}")
    print(settings)
    print(format_table(rows))
    if args.save:
        for name in names:
            save_state(models[name]["fastact"].state_dict(), args.save, name)
    if args.json:  # before the plot: the numbers are the result, the plot a view of them
        def run_dict(run):
            return None if run is None else {k: v for k, v in asdict(run).items() if k != "losses"}
        with open(args.json, "w") as f:
            json.dump([{**asdict(r), "torch": run_dict(r.torch), "fastact": run_dict(r.fastact),
                        "compiled": run_dict(r.compiled)} for r in rows], f, indent=1)
    if args.plot:
        from fastact_apps.train.plots import plot

        plot(rows, models, args.plot, settings)
        print(f"plot written to {args.plot}")
    return 0 if all(r.agree for r in rows) else 1


def add_arguments(parser) -> None:
    parser.add_argument("--model", nargs="*", choices=list(TUTORIALS), help="models to train (default: all)")
    parser.add_argument("--epochs", type=int, help="override each model's epochs")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--compile", action="store_true",
                        help="also train a torch.compile'd copy of the torch step (compiles first: slow)")
    parser.add_argument("--optimizer-impl", choices=["default", "foreach", "fused"], default="default",
                        help="torch's optimizer implementation (default: the notebooks' own, i.e. torch's "
                             "default); fastact's side uses fastact.optim's class with the same option")
    parser.add_argument("--autograd-step", action="store_true",
                        help="fastact's side steps through loss.backward() (fuse + fastact.optim) instead of "
                             "fastact.TrainStep")
    parser.add_argument("--plot", help="write loss curves and decision regions to this image")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--save", metavar="DIR", help="write each fastact-trained model's state_dict to DIR/<model>.pt")
    parser.add_argument("--profile", action="store_true",
                        help="instead of training: where a step's time goes, by group of ops, torch and fastact")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
