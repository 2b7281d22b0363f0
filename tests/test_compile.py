"""torch.compile traces the fastact ops without graph breaks, forward and
backward, and gives eager's numbers."""
import pytest
import torch
import torch.nn.functional as TF

import fastact
import fastact.functional as F
from reference import check_compiled_matches


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_model_matches_eager(backend):
    torch.manual_seed(0)
    ref = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(16, 5), torch.nn.Softmax(dim=-1),
    )
    import copy
    fast = fastact.swap(copy.deepcopy(ref))
    compiled = torch.compile(fast, fullgraph=True, backend=backend)
    x = torch.randn(32, 6)
    g = torch.randn(32, 5)
    y_ref, y = ref(x), compiled(x)
    torch.testing.assert_close(y, y_ref)
    y_ref.backward(g)
    y.backward(g)
    for p_ref, p in zip(ref.parameters(), fast.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad)


def test_compiled_functional_ops_including_inplace():
    def fn(x):
        a = F.log_softmax(x, 0)
        b = F.leaky_relu(x * 2, 0.1, inplace=True)
        return F.relu(a) + F.softmax(b, -1)

    def ref(x):
        a = TF.log_softmax(x, 0)
        b = TF.leaky_relu(x * 2, 0.1, inplace=True)
        return TF.relu(a) + TF.softmax(b, -1)

    check_compiled_matches(fn, ref)


def test_graph_holds_fastact_ops():
    seen = []

    def capture(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes)
        return gm

    torch.compile(lambda x: F.softmax(F.relu(x), -1), fullgraph=True, backend=capture)(torch.randn(3, 4))
    ns = {"cpp": "fastact", "numba": "fastact_numba"}[fastact.backend().name]
    assert any(f"{ns}.relu" in s for s in seen) and any(f"{ns}.softmax" in s for s in seen), seen


def test_dynamic_shapes():
    fn = torch.compile(lambda x: F.log_softmax(F.leaky_relu(x), 1), fullgraph=True, dynamic=True, backend="aot_eager")
    for n in (3, 5, 9):
        x = torch.randn(n, 7)
        torch.testing.assert_close(fn(x), TF.log_softmax(TF.leaky_relu(x), 1))


@pytest.mark.parametrize("strict", [True, False])
def test_export_records_fastact_ops(strict):
    """torch.export, strict (dynamo) and non-strict (Python run under fake
    tensors: the eager bindings' dispatcher calls are what it records)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), fastact.Tanh(), torch.nn.Linear(8, 8), fastact.Sigmoid(),
                                torch.nn.Linear(8, 4), fastact.GELU(), fastact.LogSoftmax(dim=-1))
    x = torch.randn(5, 6)
    exported = torch.export.export(model, (x,), strict=strict)
    ns = {"cpp": "fastact", "numba": "fastact_numba"}[fastact.backend().name]
    targets = [str(n.target) for n in exported.graph.nodes]
    for op in ("tanh", "sigmoid", "gelu", "log_softmax"):
        assert any(t.startswith(f"{ns}.{op}.") for t in targets), (op, targets)
    torch.testing.assert_close(exported.module()(x), model(x))
