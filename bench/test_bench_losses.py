"""The fused losses against torch: cross entropy (class indices and class
probabilities, 1000x10 to 4096x32000) and binary cross entropy with logits.

    pytest bench/test_bench_losses.py --benchmark-group-by=param"""
import pytest
import torch.nn.functional as TF

import fastact.functional as F
from fastact_apps.bench.specs import LOSS_SIZES, OPS

TARGETS = {"index": OPS["cross_entropy"].aux, "probs": OPS["cross_entropy_probs"].aux,
           "bce": OPS["bce_with_logits"].aux}
LOSSES = {"index": (TF.cross_entropy, F.cross_entropy), "probs": (TF.cross_entropy, F.cross_entropy),
          "bce": (TF.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits)}
CASES = [(target, mode, shape) for target in TARGETS for mode in ("fwd", "fwd+bwd")
         for shape in (OPS["bce_with_logits"].sizes if target == "bce" else LOSS_SIZES)]
IDS = [f"{target}-{mode}-{shape[0]}x{shape[1]}" for target, mode, shape in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_torch(run_case, case):
    target, mode, shape = case
    run_case(LOSSES[target][0], shape, mode, TARGETS[target])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fastact(run_case, fastact_backend, case):
    target, mode, shape = case
    run_case(LOSSES[target][1], shape, mode, TARGETS[target])
