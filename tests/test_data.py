"""fastact.DataLoader and fastact.fast_loader against torch's DataLoader,
built side by side: the same batches (values, dtype, shape, strides,
container), in the same order, under the global RNG and under generator=,
with the RNGs left in the same state after an epoch and after a break; the
gather taken where it applies, torch's iterator where it does not."""
import pickle
from contextlib import nullcontext

import pytest
import torch
from torch.utils.data import (BatchSampler, DataLoader, IterableDataset, RandomSampler, SequentialSampler,
                              TensorDataset)
from torch.utils.data._utils import collate as torch_collate
from torch.utils.data.dataloader import _SingleProcessDataLoaderIter

import fastact
from fastact.data import _GatherIter, _gatherable_tensors

# Python-level, the same on every fastact backend: run on the first one only
pytestmark = pytest.mark.once


def dataset(n, *extra):
    return TensorDataset(torch.randn(n, 3, 2), torch.arange(n) * 7, *extra)


def assert_same_batch(got, want):
    assert type(got) is type(want)
    if isinstance(want, torch.Tensor):
        assert got.dtype == want.dtype and got.shape == want.shape and got.stride() == want.stride()
        assert got.is_pinned() == want.is_pinned()
        assert torch.equal(got, want)
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_same_batch(g, w)
    else:
        assert got == want


def run(loader, stop=None):
    """The batches of one epoch, or of its first `stop` batches then a break."""
    batches = []
    for batch in loader:
        if stop is not None and len(batches) == stop:
            break
        batches.append(batch)
    return batches


def epochs_side_by_side(make, seeded, epochs=2, stop=None):
    """Runs torch's loader then fastact's (make(cls, generator)) from the same
    seed; asserts the batches and the RNG states after each epoch are equal."""
    states = []
    for cls in (DataLoader, fastact.DataLoader):
        torch.manual_seed(seeded)
        g = torch.Generator().manual_seed(seeded + 1)
        loader = make(cls, g)
        out = []
        for _ in range(epochs):
            out.append(run(loader, stop))
            out.append((torch.get_rng_state(), g.get_state()))
        states.append((loader, out))
    (want_loader, want), (got_loader, got) = states
    assert len(got_loader) == len(want_loader)
    for g_out, w_out in zip(got, want):
        if isinstance(w_out, tuple):  # the RNG states
            assert all(torch.equal(a, b) for a, b in zip(g_out, w_out))
        else:
            assert len(g_out) == len(w_out)
            for g_b, w_b in zip(g_out, w_out):
                assert_same_batch(g_b, w_b)
    return got_loader


@pytest.mark.parametrize("n,batch_size", [(10, 3), (12, 4), (10, 1), (10, 16)])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("rng", ["global", "generator"])
def test_epochs_equal_torch(n, batch_size, shuffle, drop_last, rng):
    ds = dataset(n)

    def make(cls, g):
        return cls(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                   generator=g if rng == "generator" else None)

    loader = epochs_side_by_side(make, seeded=n + batch_size)
    assert type(iter(loader)) is _GatherIter  # else this compared torch with itself


@pytest.mark.parametrize("stop", [0, 1, 2, 3])  # 3: after the last batch, before StopIteration
@pytest.mark.parametrize("rng", ["global", "generator"])
def test_break_leaves_the_rngs_as_torch(stop, rng):
    # 10 rows in batches of 3: 4 batches, the last partial; RandomSampler draws a
    # second permutation when it runs out, which a break before the end skips
    ds = dataset(10)
    epochs_side_by_side(lambda cls, g: cls(ds, batch_size=3, shuffle=True, generator=g if rng == "generator" else None),
                        seeded=stop, epochs=3, stop=stop)


def test_random_sampler_with_replacement_and_num_samples():
    # draws in chunks of 32, lazily: a break at 5 batches of 7 is inside the second chunk
    ds = dataset(10)

    def make(cls, g):
        return cls(ds, batch_size=7, sampler=RandomSampler(ds, replacement=True, num_samples=80, generator=g))

    loader = epochs_side_by_side(make, seeded=3, stop=5)
    epochs_side_by_side(make, seeded=4)
    assert type(iter(loader)) is _GatherIter


def test_batch_sampler_given():
    ds = dataset(11)
    loader = epochs_side_by_side(lambda cls, g: cls(ds, batch_sampler=BatchSampler(RandomSampler(ds), 4, True)),
                                 seeded=5)
    assert type(iter(loader)) is _GatherIter and loader.batch_size is None


def test_dtypes_layouts_and_nd_tensors():
    n = 9
    ds = TensorDataset(torch.randn(n, 2, 3, 4).to(memory_format=torch.channels_last),  # stack makes it contiguous
                       torch.randn(4, n).t(),  # a transposed view
                       torch.randint(0, 255, (n, 5, 1), dtype=torch.uint8),
                       torch.rand(n) > 0.5, torch.randn(n, 2, dtype=torch.float16),
                       torch.randn(n, 3, dtype=torch.bfloat16), torch.randn(n, 2, dtype=torch.complex64),
                       torch.arange(n, dtype=torch.int32)[:, None].expand(n, 3))  # stride 0
    loader = epochs_side_by_side(lambda cls, g: cls(ds, batch_size=4, shuffle=True, generator=g), seeded=6)
    assert type(iter(loader)) is _GatherIter


class _Named(TensorDataset):
    pass


def test_subclass_keeping_getitem_takes_the_gather():
    ds = _Named(*dataset(10).tensors)
    loader = epochs_side_by_side(lambda cls, g: cls(ds, batch_size=4, shuffle=True, generator=g), seeded=12)
    assert type(iter(loader)) is _GatherIter


def test_batches_are_fresh_tensors():
    ds = dataset(8)
    batches = run(fastact.DataLoader(ds, batch_size=8))
    x, y = batches[0]
    assert x.data_ptr() != ds.tensors[0].data_ptr() and y.data_ptr() != ds.tensors[1].data_ptr()
    x.zero_()  # kept batches belong to the user
    assert torch.equal(run(fastact.DataLoader(ds, batch_size=8))[0][0], ds.tensors[0])
    assert not torch.equal(x, ds.tensors[0])


def test_two_loaders_interleaved():
    ds_a, ds_b = dataset(10), dataset(7)
    out = []
    for cls in (DataLoader, fastact.DataLoader):
        torch.manual_seed(7)
        a, b = cls(ds_a, batch_size=3, shuffle=True), cls(ds_b, batch_size=2, shuffle=True)
        out.append([list(zip(a, b)), list(zip(b, a)), torch.get_rng_state()])
    (want_ab, want_ba, want_state), (got_ab, got_ba, got_state) = out
    for got, want in zip(got_ab + got_ba, want_ab + want_ba):
        assert_same_batch(list(got), list(want))
    assert torch.equal(got_state, want_state)


def test_pin_memory_as_torch():
    ds = dataset(10)
    # pinned where torch pins (an accelerator); without one, torch's warning and unpinned batches
    unpinned = pytest.warns(UserWarning, match="pin_memory") if not torch.accelerator.is_available() else nullcontext()
    with unpinned:
        epochs_side_by_side(lambda cls, g: cls(ds, batch_size=4, shuffle=True, generator=g, pin_memory=True), seeded=8)


class _RowsTwice(TensorDataset):
    def __getitem__(self, i):
        return tuple(t[i] * 2 for t in self.tensors)


class _RowsInBulk(TensorDataset):
    def __getitems__(self, indices):  # torch's fetcher calls this instead of __getitem__
        return [tuple(-t[i] for t in self.tensors) for i in indices]


class _Rows(IterableDataset):
    def __iter__(self):
        return iter(torch.arange(10.0).view(5, 2))

    def __len__(self):
        return 5


def _unequal():
    ds = TensorDataset(torch.randn(8, 2), torch.arange(8))
    ds.tensors = (ds.tensors[0], torch.arange(10))  # after TensorDataset's check
    return ds


def _add_one(batch):
    return [torch.stack([s[0] for s in batch]) + 1]


FALLBACKS = {
    "custom collate_fn": lambda cls, ds, g: cls(ds, batch_size=3, shuffle=True, generator=g, collate_fn=_add_one),
    "batch_size=None": lambda cls, ds, g: cls(ds, batch_size=None, shuffle=True, generator=g),
    "custom sampler": lambda cls, ds, g: cls(ds, batch_size=3, sampler=[4, 0, 3, 3, 1]),
    "subset sampler": lambda cls, ds, g: cls(ds, batch_size=2, sampler=torch.utils.data.SubsetRandomSampler(
        [1, 5, 6], generator=g)),
    "custom batch_sampler": lambda cls, ds, g: cls(ds, batch_sampler=[[3, 1], [-1, 0, 2]]),
    "overridden __getitem__": lambda cls, ds, g: cls(_RowsTwice(*ds.tensors), batch_size=4, shuffle=True, generator=g),
    "__getitems__": lambda cls, ds, g: cls(_RowsInBulk(*ds.tensors), batch_size=4, shuffle=True, generator=g),
    "unequal lengths": lambda cls, ds, g: cls(_unequal(), batch_size=3, shuffle=True, generator=g),
    "requires_grad": lambda cls, ds, g: cls(TensorDataset(torch.randn(10, 2, requires_grad=True)), batch_size=4),
    "list dataset": lambda cls, ds, g: cls(list(zip(*ds.tensors)), batch_size=4, shuffle=True, generator=g),
    "IterableDataset": lambda cls, ds, g: cls(_Rows(), batch_size=2),
}


@pytest.mark.parametrize("case", FALLBACKS)
def test_fallbacks_are_torch(case):
    ds = dataset(10)
    loader = epochs_side_by_side(lambda cls, g: FALLBACKS[case](cls, ds, g), seeded=9)
    assert type(iter(loader)) is _SingleProcessDataLoaderIter


def test_workers_and_a_changed_collate_fn_fall_back():
    ds = dataset(10)
    assert _gatherable_tensors(fastact.DataLoader(ds, batch_size=2, num_workers=2)) is None  # not started here
    loader = fastact.DataLoader(ds, batch_size=2)
    assert type(iter(loader)) is _GatherIter
    loader.collate_fn = _add_one  # decided per epoch
    assert type(iter(loader)) is _SingleProcessDataLoaderIter


def test_extended_default_collate_falls_back(monkeypatch):
    ds = dataset(10)
    monkeypatch.setitem(torch_collate.default_collate_fn_map, tuple, lambda batch, collate_fn_map: "tuples")
    loader = epochs_side_by_side(lambda cls, g: cls(ds, batch_size=4), seeded=10)
    assert type(iter(loader)) is _SingleProcessDataLoaderIter and run(loader) == ["tuples"] * 3


def test_fast_loader_of_a_built_loader():
    ds = dataset(11)
    g = torch.Generator().manual_seed(11)
    loader = DataLoader(ds, batch_size=3, shuffle=True, drop_last=True, generator=g)
    fast = fastact.fast_loader(loader)
    assert type(fast) is fastact.DataLoader and isinstance(fast, DataLoader)
    for name in ("dataset", "sampler", "batch_sampler", "generator", "collate_fn"):  # shared, so one RNG stream
        assert getattr(fast, name) is getattr(loader, name), name
    for name in ("batch_size", "drop_last", "num_workers", "pin_memory", "timeout"):
        assert getattr(fast, name) == getattr(loader, name), name
    assert len(fast) == len(loader) == 3 and type(iter(fast)) is _GatherIter
    state = g.get_state()
    want = run(loader) + run(loader, stop=1)
    want_state = g.get_state()
    g.set_state(state)
    got = run(fast) + run(fast, stop=1)
    assert_same_batch(got, want)
    assert torch.equal(g.get_state(), want_state)
    with pytest.raises(ValueError, match="should not be set"):
        fast.batch_size = 4
    again = pickle.loads(pickle.dumps(fast))
    assert type(again) is fastact.DataLoader and len(again) == 3
    assert fastact.fast_loader(fast) is fast


def test_fast_loader_leaves_other_loaders():
    ds = dataset(10)
    for loader in (DataLoader(ds, batch_size=2, collate_fn=_add_one), DataLoader(ds, batch_size=None),
                   DataLoader(ds, batch_size=2, num_workers=2), DataLoader(list(ds), batch_size=2)):
        assert fastact.fast_loader(loader) is loader
