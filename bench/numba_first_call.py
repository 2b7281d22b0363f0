"""How long the Numba backend takes to its first results after an install:
a fresh process with an empty kernel cache (cold), then a second process that
finds the kernels cached (warm). Each process imports fastact on the Numba
backend and runs the forward and backward of every op once, at 2048x1024
float32 (above the size where the backend hands calls to torch's kernels,
so the Numba kernels are wanted).

Cold, the kernels compile in a background worker (fastact/_backends/numba/
warmup.py) while the calls run torch's ops; the script also times how long
until the worker is done and the same calls run the kernels. "cold, inline"
is the same with FASTACT_NUMBA_WARMUP=inline: the first calls compile the
kernels themselves (what every cold first use paid before the worker).

    python -P bench/numba_first_call.py
"""
import os
import subprocess
import sys
import tempfile
import time

ONE_PROCESS = r'''
import time
t0 = time.time()
import torch, fastact, fastact.functional as F
fastact.set_backend("numba")
t1 = time.time()
x = torch.randn(2048, 1024, requires_grad=True)
def every_op():
    for f in [F.relu, F.sigmoid, F.tanh, F.gelu, lambda v: F.gelu(v, approximate="tanh"), F.selu,
              lambda v: F.softmax(v, -1), lambda v: F.log_softmax(v, -1), lambda v: F.leaky_relu(v, 0.1)]:
        f(x).sum().backward()
    F.cross_entropy(x, torch.randint(0, 1024, (2048,))).backward()
    F.cross_entropy(x, torch.softmax(torch.randn(2048, 1024), 1)).backward()
    F.binary_cross_entropy_with_logits(x, torch.rand(2048, 1024)).backward()
every_op()
t2 = time.time()
fastact.wait_for_kernels()
t3 = time.time()
every_op()  # on the kernels (loaded from the cache, or compiled here when inline)
print(f"{t1 - t0:.2f} {t2 - t1:.2f} {t3 - t1:.2f} {time.time() - t3:.2f}")
'''


def one(label, env):
    start = time.time()
    out = subprocess.run([sys.executable, "-P", "-c", ONE_PROCESS], env=env, capture_output=True, text=True,
                         check=True)
    imported, first, ready, on_kernels = out.stdout.split()
    total = time.time() - start
    print(f"{label:>22s}: first results {float(imported) + float(first):5.2f} s after the import began "
          f"(import {imported}, the first forward+backward of every op {first}); kernels ready {ready} s after "
          f"import; the first calls on them {on_kernels} s; {total:.2f} s in all")


def main():
    for label, mode in (("cold", "background"), ("cold, inline", "inline")):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "FASTACT_NUMBA_CACHE_DIR": cache, "FASTACT_NUMBA_WARMUP": mode}
            one(label, env)
            if mode == "background":
                one("warm", env)


if __name__ == "__main__":
    main()
