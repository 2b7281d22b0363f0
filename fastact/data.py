"""A drop-in torch.utils.data.DataLoader that batches a TensorDataset with one gather per tensor.

    loader = fastact.DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True)
    loader = fastact.fast_loader(loader)      # or convert a loader already built

torch's loader turns each batch of indices b = (i_1, ..., i_B) from its batch
sampler into `default_collate([dataset[i_1], ..., dataset[i_B]])`. For a
TensorDataset over tensors T_1..T_k, each of shape (n, *s_j), `dataset[i]` is
the tuple (T_1[i], ..., T_k[i]) and default_collate of B such tuples is the
list [torch.stack([T_j[i_1], ..., T_j[i_B]]) for j in 1..k]: for each j a new
contiguous tensor of shape (B, *s_j) and T_j's dtype whose row r is T_j[i_r].
`T_j.index_select(0, tensor(b))` is, by definition, that same tensor: new,
contiguous, shape (B, *s_j), dtype of T_j, row r = T_j[i_r]. Both only copy
elements (no arithmetic), so the batches are bitwise equal; this loader yields
the same list of them, one gather per tensor instead of B row views, B tuples
and k stacks.

The order is the same by construction, not by imitation: the index batches are
drawn from torch's own batch sampler by torch's own iterator
(_SingleProcessDataLoaderIter: its `_base_seed` draw, its sampler iterator,
advanced one batch per `next`), so every draw from the global RNG and from
`generator=` happens in the same order and at the same step as in torch's
loader, after a whole epoch or a `break`. Only the fetch+collate step differs.

The gather is taken only where that equality is certain: a TensorDataset
(or a subclass keeping its __getitem__, without __getitems__) of plain, dense,
CPU tensors of equal length that do not require grad; torch's default_collate
with its stock tensor and tuple handling; torch's BatchSampler over torch's
SequentialSampler or RandomSampler of that dataset (which yield ints in
[0, n)); one process. Anything else (workers, another collate_fn, other
samplers, batch_size=None, an IterableDataset, other datasets) is torch's
loader unchanged. pin_memory is torch's step, applied to the gathered batch.
"""
import array

import torch
import torch.utils.data as tud
from torch.utils.data._utils import collate as _collate
from torch.utils.data._utils import pin_memory as _pinning
from torch.utils.data.dataloader import _SingleProcessDataLoaderIter

__all__ = ["DataLoader", "fast_loader"]


def _default_collate_is_stock() -> bool:
    """True when default_collate stacks a tuple of plain tensors as torch
    ships it: users may extend default_collate_fn_map in place, and a handler
    for tuples or a new one for torch.Tensor would change the batch."""
    handlers = _collate.default_collate_fn_map
    if handlers.get(torch.Tensor) is not _collate.collate_tensor_fn:
        return False
    return not any(isinstance((), kind) for kind in handlers)


def _gatherable_tensor(t) -> bool:
    # dense, untagged CPU storage where `index_select` and `stack` of row views
    # give the same tensor; requires_grad is left to torch (autograd records a
    # different graph for the two, though of the same gradient)
    return (type(t) is torch.Tensor and t.layout == torch.strided and t.device.type == "cpu"
            and not (t.is_nested or t.is_quantized or t.requires_grad or t.is_conj() or t.is_neg())
            and t.dim() >= 1)


def _gatherable_tensors(loader):
    """The dataset's tensors when the gather yields what `loader`'s torch
    iterator would, else None (then torch's iterator runs)."""
    ds, bs = loader.dataset, loader.batch_sampler
    if loader.num_workers != 0 or tud.get_worker_info() is not None:
        return None  # inside a worker default_collate writes to shared memory
    if not isinstance(ds, tud.TensorDataset) or type(ds).__getitem__ is not tud.TensorDataset.__getitem__:
        return None
    if getattr(ds, "__getitems__", None):  # torch's fetcher calls it instead of __getitem__
        return None
    if loader.collate_fn is not _collate.default_collate or not _default_collate_is_stock():
        return None  # batch_size=None lands here too: torch then uses default_convert
    if type(bs) is not tud.BatchSampler or type(bs.sampler) not in (tud.SequentialSampler, tud.RandomSampler):
        return None
    if bs.sampler.data_source is not ds:  # the sampler's indices are in range of this dataset
        return None
    tensors = tuple(ds.tensors)
    if not tensors or not all(map(_gatherable_tensor, tensors)):
        return None
    if any(t.size(0) != tensors[0].size(0) for t in tensors):
        return None  # changed since TensorDataset checked them: torch's row views say what that does
    return tensors


class _GatherIter(_SingleProcessDataLoaderIter):
    """torch's single-process iterator with its fetch+collate replaced by a
    gather; seeds, sampler, counters and pinning are torch's."""

    def __init__(self, loader, tensors):
        super().__init__(loader)
        self._tensors = tensors

    def _next_data(self):
        index = self._next_index()  # may raise StopIteration; never an empty list from BatchSampler
        # the ints read in place as int64: a third of torch.tensor(list)'s cost per batch
        rows = torch.frombuffer(array.array("q", index), dtype=torch.int64)
        data = [t.index_select(0, rows) for t in self._tensors]
        if self._pin_memory:
            data = _pinning.pin_memory(data, self._pin_memory_device)
        return data


def epoch_order(loader, tensors):
    """A whole epoch of `loader` (one _gatherable_tensors accepts) at once:
    (the rows its batches hold, in order, as one int64 tensor; a function to
    call once every batch is done, or None). Batch b is rows
    [b * batch_size, (b + 1) * batch_size) of the order, the last one
    shorter unless drop_last. The RNG draws are torch's iterator's, in its
    order: its base seed, then the sampler's; RandomSampler's permutation is
    drawn as its __iter__ draws it, and the permutation its generator draws
    only when the epoch's last index has been taken is left to the
    returned function, so an epoch cut short leaves every RNG where torch's
    loop cut short at a batch boundary leaves it."""
    # torch's _BaseDataLoaderIter.__init__ draws this base seed (for its
    # workers) every epoch, before the sampler draws anything
    torch.empty((), dtype=torch.int64).random_(generator=loader.generator)
    batch_sampler = loader.batch_sampler
    sampler, size = batch_sampler.sampler, batch_sampler.batch_size
    n = len(sampler.data_source)
    if type(sampler) is tud.SequentialSampler:
        order, finish = torch.arange(n), None
    elif not sampler.replacement and sampler.num_samples == n:
        generator = sampler.generator
        if generator is None:  # RandomSampler.__iter__'s own seeding
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            generator = torch.Generator()
            generator.manual_seed(seed)
        order = torch.randperm(n, generator=generator)

        def finish():
            torch.randperm(n, generator=generator)  # drawn, sliced to nothing, at the sampler's end
    else:  # other draws: torch's sampler, whole
        order = torch.tensor([i for batch in batch_sampler for i in batch], dtype=torch.int64)
        return order, None
    if batch_sampler.drop_last:
        order = order[: n // size * size]
    return order, finish


class DataLoader(tud.DataLoader):
    """torch.utils.data.DataLoader with the same arguments, attributes and
    batches; over a TensorDataset each batch is one `index_select` per tensor
    (see the module docstring for when, and why it is equal)."""

    def _get_iterator(self):
        # decided per epoch: collate_fn and the dataset's tensors can change between epochs
        tensors = _gatherable_tensors(self)
        if tensors is None:
            return super()._get_iterator()
        return _GatherIter(self, tensors)


def fast_loader(loader):
    """A fastact.DataLoader with `loader`'s state: the same dataset, sampler,
    batch_sampler, generator and collate_fn objects (so it draws from the same
    RNG streams) and the same attributes (batch_size, drop_last, ...); or
    `loader` itself where the gather does not apply (or for a subclass of
    torch's DataLoader, whose overrides a copy would lose)."""
    if type(loader) is not tud.DataLoader or _gatherable_tensors(loader) is None:
        return loader
    fast = DataLoader.__new__(DataLoader)
    # a copy of the attributes, not a call to __init__: __init__ would turn a
    # given batch_sampler into batch_size=None, drop_last=False
    fast.__dict__.update(loader.__dict__)
    fast.__dict__["_iterator"] = None
    return fast
