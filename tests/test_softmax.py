"""softmax and log_softmax against torch: every dim, layout and dtype,
special values, legacy dim=None, dtype=, bad input."""
import warnings

import pytest
import torch
import torch.nn.functional as TF

import fastact.functional as F
from reference import DTYPES, SHAPES, assert_same, backend_ops, check_against_torch, distinct_layouts, make_input

PAIRS = {"softmax": (F.softmax, TF.softmax), "log_softmax": (F.log_softmax, TF.log_softmax)}


def all_dims(shape):
    n = max(len(shape), 1)
    return list(range(-n, n))


CASES = [(shape, dim) for shape in SHAPES for dim in all_dims(shape)]


def matches_torch_cases():
    """Every (shape, dim, layout, dtype) combination (the layouts make_input
    tells apart), each on softmax or log_softmax in alternation, so that each
    op still runs with every (shape-dim, layout), (shape-dim, dtype) and
    (layout, dtype) pair; a 0-d shape, with one layout, on both ops."""
    for c, (shape, dim) in enumerate(CASES):
        layouts = distinct_layouts(shape)
        for l, layout in enumerate(layouts):
            for d, dtype in enumerate(DTYPES):
                for name in list(PAIRS) if len(layouts) == 1 else [list(PAIRS)[(c + l + d) % 2]]:
                    yield pytest.param(name, layout, dtype, shape, dim, id=f"{shape}-d{dim}-{layout}-{dtype}-{name}")


@pytest.mark.parametrize("name,layout,dtype,shape,dim", list(matches_torch_cases()))
def test_matches_torch(name, layout, dtype, shape, dim):
    fast, ref = PAIRS[name]
    y, _ = check_against_torch(lambda x: fast(x, dim), lambda x: ref(x, dim),
                               lambda: make_input(shape, dtype, layout))
    assert y.is_contiguous()


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_special_values_propagate_like_torch(name, dtype, dim):
    fast, ref = PAIRS[name]
    check_against_torch(lambda x: fast(x, dim), lambda x: ref(x, dim),
                        lambda: make_input((9, 40), dtype, special=True))


@pytest.mark.parametrize("name", PAIRS)
def test_special_rows(name):
    inf, nan = float("inf"), float("nan")
    rows = torch.tensor([[inf, 1.0, 2.0], [-inf, -inf, -inf], [nan, 1.0, 2.0],
                         [-inf, 0.0, 1.0], [1e4, -1e4, 0.0], [inf, inf, 1.0]])
    fast, ref = PAIRS[name]
    for dim in (0, 1):
        check_against_torch(lambda x: fast(x, dim), lambda x: ref(x, dim), lambda: rows.clone())


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_stable_for_large_logits(name, dtype):
    fast, ref = PAIRS[name]
    make = lambda: make_input((8, 100), dtype) * 3000  # ~ +-1e4
    y, _ = check_against_torch(lambda x: fast(x, -1), lambda x: ref(x, -1), make)
    assert torch.isfinite(y.float()).all() or name == "log_softmax"


@pytest.mark.parametrize("name", PAIRS)
# (4099, 13): short rows through tiles (csrc/cpu/rows.h), split across threads, the last tile partial
@pytest.mark.parametrize("shape,dim", [((256, 4096 + 5), -1), ((64, 300, 80), 1), ((2, 70000), 1), ((4099, 13), -1)])
def test_large_tensors_parallel_paths(name, shape, dim):
    fast, ref = PAIRS[name]
    check_against_torch(lambda x: fast(x, dim), lambda x: ref(x, dim), lambda: make_input(shape))


@pytest.mark.cpp_only  # the Numba backend has no streaming stores; its large rows are the test above's
def test_streaming_store_path_matches():
    # 32 MiB output, rows aligned to the vector width: non-temporal stores
    x = make_input((2048, 4096))
    for name, (fast, ref) in PAIRS.items():
        check_against_torch(lambda t: fast(t, -1), lambda t: ref(t, -1), lambda: x)


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_dtype_argument(name, dtype):
    fast, ref = PAIRS[name]
    for src in (make_input((4, 9), torch.float16), torch.arange(12).reshape(3, 4)):
        assert_same(fast(src, 1, dtype=dtype), ref(src, 1, dtype=dtype), exact=ref(src.double(), 1))


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("ndim", [0, 1, 2, 3, 4])
def test_legacy_implicit_dim_warns_and_picks_torchs_dim(name, ndim):
    fast, ref = PAIRS[name]
    x = make_input((3,) * ndim)
    with pytest.warns(UserWarning, match=f"Implicit dimension choice for {name}") as record:
        y = fast(x)
    assert record[0].filename == __file__, "the warning points at the caller"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same(y, ref(x))


@pytest.mark.parametrize("name", PAIRS)
def test_module_implicit_dim_warning_points_where_torchs_does(name):
    import fastact
    ours = {"softmax": fastact.Softmax, "log_softmax": fastact.LogSoftmax}[name]()
    theirs = {"softmax": torch.nn.Softmax, "log_softmax": torch.nn.LogSoftmax}[name]()
    locations = []
    for module in (ours, theirs):
        with pytest.warns(UserWarning) as record:
            module(torch.randn(2, 3))
        locations.append((record[0].filename, record[0].lineno))
    assert locations[0] == locations[1]


@pytest.mark.parametrize("name", PAIRS)
def test_gradcheck_and_gradgradcheck(name):
    fast, _ = PAIRS[name]
    for shape, dim in [((4, 7), 1), ((3, 4, 5), 0), ((), 0)]:
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t: fast(t, dim), (x,))
        assert torch.autograd.gradgradcheck(lambda t: fast(t, dim), (x,))


@pytest.mark.parametrize("name", PAIRS)
def test_bad_dim_raises_index_error_like_torch(name):
    fast, ref = PAIRS[name]
    x = torch.randn(2, 3)
    for dim in (2, -3):
        with pytest.raises(IndexError) as theirs:
            ref(x, dim)
        with pytest.raises(IndexError) as ours:
            fast(x, dim)
        assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("name", PAIRS)
def test_integer_input_raises_not_implemented_like_torch(name):
    fast, ref = PAIRS[name]
    x = torch.tensor([1, 2, 3])
    with pytest.raises(NotImplementedError):
        ref(x, 0)
    with pytest.raises(NotImplementedError, match="floating point"):
        fast(x, 0)


@pytest.mark.parametrize("op", ["softmax_backward", "log_softmax_backward"])
def test_backward_op_rejects_mismatched_inputs(op):
    fn = getattr(backend_ops(), op)
    with pytest.raises(RuntimeError, match="does not match"):
        fn(torch.randn(2, 3), torch.randn(3, 2), 1)
    with pytest.raises(RuntimeError, match="dtype"):
        fn(torch.randn(2, 3), torch.randn(2, 3, dtype=torch.float64), 1)


def test_softmax_saves_only_its_output():
    saved = []
    x = torch.randn(8, 16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = F.softmax(x, -1)
    assert len(saved) == 1 and saved[0].data_ptr() == y.data_ptr()


def test_input_is_not_mutated():
    x = make_input((5, 40), special=True)
    before = x.clone()
    F.softmax(x, 1)
    F.log_softmax(x, 0)
    torch.testing.assert_close(x, before, equal_nan=True)
