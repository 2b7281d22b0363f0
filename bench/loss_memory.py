"""What a Linear -> cross entropy step holds in memory, torch against fastact:
resident memory held between the loss's forward and its backward (the
logits are a temporary, as in a training step) and the peak of forward +
backward, each in a fresh process, in units of the logits' size N*C*4.

    python -P bench/loss_memory.py [N C]
"""
import subprocess
import sys

_CHILD = """
import sys, torch, torch.nn.functional as TF
impl, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if impl == "fastact":
    import fastact
    fn = fastact.functional.cross_entropy
else:
    fn = TF.cross_entropy
torch.manual_seed(0)
lin = torch.nn.Linear(256, c)
x, y = torch.randn(n, 256), torch.randint(0, c, (n,))
fn(lin(x[:8]), y[:8]).backward()  # warm up (libraries, small buffers)
def rss(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1]) * 1024
base = rss("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM)
loss = fn(lin(x), y)
held = rss("VmRSS:") - base
loss.backward()
print(held, rss("VmHWM:") - base)
"""


def main(n: int = 4096, c: int = 32000) -> None:
    nc = n * c * 4
    for impl in ("torch", "fastact"):
        out = subprocess.run([sys.executable, "-P", "-c", _CHILD, impl, str(n), str(c)],
                             capture_output=True, text=True, check=True)
        held, peak = map(int, out.stdout.split()[-2:])
        print(f"{impl:8s} Linear(256, {c}) -> cross entropy, batch {n}: held between forward and backward "
              f"{held / nc:.2f} x N*C*4, peak {peak / nc:.2f} x N*C*4")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:3]))
