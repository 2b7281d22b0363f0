"""The activations and softmax/log_softmax: fastact against stock torch.

Each case is one parameter, shared by test_torch and test_fastact, so
`pytest bench/ --benchmark-group-by=param` prints each pair in one group."""
import pytest
import torch.nn.functional as TF

import fastact.functional as F
from fastact_apps.bench.specs import SIZES

OPS = {
    "relu": (lambda x, _: TF.relu(x), lambda x, _: F.relu(x)),
    "leaky_relu": (lambda x, _: TF.leaky_relu(x, 0.01), lambda x, _: F.leaky_relu(x, 0.01)),
    "sigmoid": (lambda x, _: TF.sigmoid(x), lambda x, _: F.sigmoid(x)),
    "tanh": (lambda x, _: TF.tanh(x), lambda x, _: F.tanh(x)),
    "gelu": (lambda x, _: TF.gelu(x), lambda x, _: F.gelu(x)),
    "selu": (lambda x, _: TF.selu(x), lambda x, _: F.selu(x)),
    "softmax": (lambda x, _: TF.softmax(x, -1), lambda x, _: F.softmax(x, -1)),
    "log_softmax": (lambda x, _: TF.log_softmax(x, -1), lambda x, _: F.log_softmax(x, -1)),
}
MODES = ["fwd", "fwd+bwd"]
CASES = [(op, mode, shape) for op in OPS for mode in MODES for shape in SIZES]
IDS = [f"{op}-{mode}-{shape[0]}x{shape[1]}" for op, mode, shape in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_torch(run_case, case):
    op, mode, shape = case
    run_case(OPS[op][0], shape, mode)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fastact(run_case, fastact_backend, case):
    op, mode, shape = case
    run_case(OPS[op][1], shape, mode)
