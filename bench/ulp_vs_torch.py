"""How far fastact's float32 results are from torch's, in units in the last
place (ulp), op by op, forward and gradient: the numbers behind the README's
"within N ulp of torch". Run per CPU capability to see each copy's kernels:

    python -P bench/ulp_vs_torch.py
    FASTACT_CPU_CAPABILITY=avx2 python -P bench/ulp_vs_torch.py
"""
import torch

import fastact
import fastact.functional as F


def ordered(t: torch.Tensor) -> torch.Tensor:
    """float32 bits as integers that order like the floats (so a difference counts ulps)."""
    bits = t.contiguous().view(torch.int32).to(torch.int64)
    return torch.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


# Below this magnitude a result is counted by its absolute error instead: a
# result that cancels to about 0 (gelu at large negative x, 1 - tanh^2 at
# large |x|) has ulps of 1e-40, where any rounding of the inputs is
# "billions of ulps" and says nothing.
TINY = 1e-6


def ulps(ours: torch.Tensor, theirs: torch.Tensor):
    """(max ulp distance where |torch's| >= TINY, max absolute error below)."""
    assert torch.equal(torch.isnan(ours), torch.isnan(theirs))
    finite = torch.isfinite(theirs)
    ours, theirs = ours[finite], theirs[finite]
    large = theirs.abs() >= TINY
    ulp = int((ordered(ours[large]) - ordered(theirs[large])).abs().max()) if large.any() else 0
    small = float((ours[~large] - theirs[~large]).abs().max()) if (~large).any() else 0.0
    return ulp, small


CASES = {
    "relu": (F.relu, torch.relu),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.01), lambda x: torch.nn.functional.leaky_relu(x, 0.01)),
    "sigmoid": (F.sigmoid, torch.sigmoid),
    "tanh": (F.tanh, torch.tanh),
    "gelu": (F.gelu, torch.nn.functional.gelu),
    "gelu(tanh)": (lambda x: F.gelu(x, approximate="tanh"), lambda x: torch.nn.functional.gelu(x, approximate="tanh")),
    "selu": (F.selu, torch.selu),
    "softmax": (lambda x: F.softmax(x, -1), lambda x: torch.softmax(x, -1)),
    "log_softmax": (lambda x: F.log_softmax(x, -1), lambda x: torch.log_softmax(x, -1)),
}


def main() -> None:
    torch.manual_seed(0)
    # every exponent a network sees, both signs, plus a dense sweep of [-10, 10]
    x = torch.cat([torch.randn(1 << 20) * 10 ** torch.empty(1 << 20).uniform_(-6, 1.3),
                   torch.linspace(-10, 10, 1 << 20)]).reshape(-1, 1024)
    print(f"{fastact.backend().name} backend, cpu kernels: {fastact.backend().cpu_kernels or '-'}")
    print(f"ulp: max distance where |torch's value| >= {TINY:g}; abs: max |difference| below that")
    print(f"{'op':12s} {'forward ulp':>12s} {'abs':>8s} {'gradient ulp':>13s} {'abs':>8s}")
    for name, (ours, theirs) in CASES.items():
        a = x.clone().requires_grad_()
        b = x.clone().requires_grad_()
        ya, yb = ours(a), theirs(b)
        g = torch.randn_like(ya)
        ya.backward(g)
        yb.backward(g)
        (fu, fa), (gu, ga) = ulps(ya.detach(), yb.detach()), ulps(a.grad, b.grad)
        print(f"{name:12s} {fu:12d} {fa:8.1e} {gu:13d} {ga:8.1e}")


if __name__ == "__main__":
    main()
