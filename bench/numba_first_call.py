"""How long the Numba backend takes to its first results after an install:
a fresh process with an empty kernel cache (cold), then a second process that
finds the kernels cached (warm). Each process imports fastact on the Numba
backend and runs the forward and backward of every op once, at 2048x1024
float32 (above the size where the backend hands calls to torch's kernels,
so the Numba kernels compile).

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
for f in [F.relu, F.sigmoid, F.tanh, F.gelu, lambda v: F.gelu(v, approximate="tanh"), F.selu,
          lambda v: F.softmax(v, -1), lambda v: F.log_softmax(v, -1), lambda v: F.leaky_relu(v, 0.1)]:
    f(x).sum().backward()
F.cross_entropy(x, torch.randint(0, 1024, (2048,))).backward()
F.cross_entropy(x, torch.softmax(torch.randn(2048, 1024), 1)).backward()
F.binary_cross_entropy_with_logits(x, torch.rand(2048, 1024)).backward()
print(f"{t1 - t0:.2f} {time.time() - t1:.2f}")
'''


def main():
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "FASTACT_NUMBA_CACHE_DIR": cache}
        for label in ("cold (empty cache)", "warm (cached kernels)"):
            start = time.time()
            out = subprocess.run([sys.executable, "-P", "-c", ONE_PROCESS], env=env, capture_output=True, text=True,
                                 check=True)
            imported, first_calls = out.stdout.split()
            print(f"{label}: {time.time() - start:.2f} s in all; import + set_backend {imported} s, "
                  f"first forward+backward of every op {first_calls} s")


if __name__ == "__main__":
    main()
