"""Cross entropy: fastact against torch.nn.functional.cross_entropy, class
indices and class probabilities, 1000x10 to 4096x32000.

    pytest bench/test_bench_cross_entropy.py --benchmark-group-by=param"""
import pytest
import torch.nn.functional as TF

import fastact.functional as F
from fastact.bench import LOSS_SIZES, OPS

TARGETS = {"index": OPS["cross_entropy"].aux, "probs": OPS["cross_entropy_probs"].aux}
CASES = [(target, mode, shape) for target in TARGETS for mode in ("fwd", "fwd+bwd") for shape in LOSS_SIZES]
IDS = [f"{target}-{mode}-{shape[0]}x{shape[1]}" for target, mode, shape in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_torch(run_case, case):
    target, mode, shape = case
    run_case(TF.cross_entropy, shape, mode, TARGETS[target](shape))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fastact(run_case, case):
    target, mode, shape = case
    run_case(F.cross_entropy, shape, mode, TARGETS[target](shape))
