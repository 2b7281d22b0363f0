"""Large outputs of the Numba backend, reused: the Python counterpart of the
C++ backend's output cache (csrc/cpu_shared/output_allocator.cpp, which has
the reasoning). A fresh 64 MiB output costs its page faults and the kernel's
zeroing of every page on first touch, as much as the op itself or more; a
training loop allocates the same shapes every step. So the memory of a freed
output is kept and handed out again, already faulted in.

How, from Python: each output is a NumPy view of a pooled buffer, wrapped by
torch.from_numpy (the tensor holds the view); a weakref finalizer on the view
returns the buffer to the pool when the tensor (and anything sharing its
storage) is gone. New buffers come from NumPy's allocator, which advises
transparent huge pages (2 MiB faults instead of 4 KiB ones). The pool holds
at most the C++ cache's capacity (FASTACT_CACHE_MB, else 1/16 of physical
memory, at least 256 MiB); a buffer that would not fit is freed. Buffers are
reused by exact size. fastact.empty_cache() empties it. Unlike torch.empty's,
these tensors' storage cannot be resized in place."""
import math
import os
import threading
import weakref

import numpy as np
import torch

# Below this, torch's allocator: small blocks come back from malloc's free lists unfaulted anyway.
MIN_BYTES = 4 << 20
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _capacity() -> int:
    explicit = os.environ.get("FASTACT_CACHE_MB")
    if explicit:
        return int(explicit) << 20
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        physical = 0
    return max(256 << 20, physical // 16)


class _Pool:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.free = {}  # bytes -> [buffer]
        self.held = 0
        self.lock = threading.Lock()

    def take(self, nbytes: int) -> np.ndarray:
        with self.lock:
            buffers = self.free.get(nbytes)
            if buffers:
                self.held -= nbytes
                return buffers.pop()
        return np.empty(nbytes, dtype=np.uint8)

    def give(self, buffer: np.ndarray) -> None:
        with self.lock:
            if self.held + buffer.nbytes <= self.capacity:
                self.free.setdefault(buffer.nbytes, []).append(buffer)
                self.held += buffer.nbytes

    def clear(self) -> None:
        with self.lock:
            self.free.clear()
            self.held = 0


pool = _Pool(_capacity())


def empty(shape, dtype: torch.dtype) -> torch.Tensor:
    """torch.empty(shape, dtype=dtype), contiguous; large float outputs from the pool."""
    shape = tuple(shape)
    numel = math.prod(shape)
    if dtype not in _NUMPY_DTYPES or numel * dtype.itemsize < MIN_BYTES:
        return torch.empty(shape, dtype=dtype)
    buffer = pool.take(numel * dtype.itemsize)
    view = buffer.view(_NUMPY_DTYPES[dtype])
    weakref.finalize(view, pool.give, buffer)
    return torch.from_numpy(view).view(shape)


def _row_major_strides(shape):
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def empty_like(t: torch.Tensor) -> torch.Tensor:
    """torch.empty_like(t); from the pool where large and row-major
    (empty_like keeps any other dense layout, and the strides of size-1 dims
    as they are)."""
    if t.numel() * t.element_size() >= MIN_BYTES and t.stride() == _row_major_strides(t.shape):
        return empty(t.shape, t.dtype)
    return torch.empty_like(t)


def empty_cache() -> None:
    pool.clear()
