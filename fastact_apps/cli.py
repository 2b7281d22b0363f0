"""The fastact command line.

    fastact train    train the tutorial models with stock torch and with fastact
    fastact bench    fastact against stock torch, op by op, side by side
    fastact info     which backend runs the ops, on what, built how
"""
import argparse
import importlib
import importlib.util
import os
import sys

# command -> (the app module, its one-line help); a module is imported only
# when its command runs, so `fastact info` loads neither app.
APPS = {
    "train": ("fastact_apps.train", "train the tutorial models, torch vs fastact"),
    "bench": ("fastact_apps.bench", "fastact against stock torch, op by op"),
}


def info(args) -> int:
    import torch

    import fastact

    print(fastact.backend())
    print(f"fastact {fastact.__version__}, torch {torch.__version__}, "
          f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads")
    thp = "/sys/kernel/mm/transparent_hugepage/enabled"
    if os.path.exists(thp):
        with open(thp) as f:
            print(f"transparent huge pages: {f.read().strip()} "
                  f"(THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}, "
                  f"FASTACT_HUGE_PAGES={os.environ.get('FASTACT_HUGE_PAGES', 'unset')})")
    return 0 if fastact.backend().name != "unavailable" else 1


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="fastact", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="which backend runs the ops and why").set_defaults(func=info)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, text) in APPS.items():
        if name != chosen:
            sub.add_parser(name, help=text)
            continue
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=text, description=module.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(func=module.main)
    args = parser.parse_args(argv)
    # checked before any work: a plot asked for must not fail after minutes of training
    if getattr(args, "plot", None) and importlib.util.find_spec("matplotlib") is None:
        parser.error("--plot needs matplotlib, which is not installed: pip install matplotlib "
                     "(or install fastact with its [plot] extra)")
    return args.func(args)
