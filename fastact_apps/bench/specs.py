"""What `fastact bench` measures: each op's torch and fastact functions, the
bytes it must move, its auxiliary inputs and its default sizes."""
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import torch
import torch.nn.functional as TF

import fastact.functional as F


# tiny (per-call overhead: 5x10, the seed notebooks' 1000x10), cache-resident
# (kernel quality: 64x1024, 512x1024) and memory-bound (4096x4096): a win at
# one must not hide a loss at another
SIZES = [(5, 10), (1000, 10), (64, 1024), (512, 1024), (4096, 4096)]

LOSS_SIZES = SIZES + [(4096, 32000)]

# On a GPU: the tutorial size (launch-bound) and vocabulary-sized rows.
GPU_SIZES = [(1000, 10), (8192, 32000)]

GPU_LOSS_SIZES = [(1000, 10), (8192, 32000), (8192, 128256)]

def _class_indices(shape):
    return torch.randint(0, shape[1], (shape[0],), generator=torch.Generator().manual_seed(1))

def _class_probabilities(shape):
    return torch.softmax(torch.randn(shape, generator=torch.Generator().manual_seed(1)), 1)

@dataclass(frozen=True)
class OpSpec:
    torch_fn: Callable  # (x, aux) -> output
    fastact_fn: Callable
    # bytes per element (in units of x's element size) each mode must move.
    # Activations: forward reads x, writes y; backward reads the gradient and
    # the saved tensor, writes the input's gradient. Losses: forward reads x;
    # forward+backward reads x and writes its gradient once.
    fwd_bytes: int = 2
    fwdbwd_bytes: int = 5
    sizes: Tuple[Tuple[int, int], ...] = tuple(SIZES)
    aux: Callable = lambda shape: None  # e.g. the targets of a loss
    gpu_sizes: Tuple[Tuple[int, int], ...] = tuple(GPU_SIZES)

OPS: Dict[str, OpSpec] = {
    "relu": OpSpec(lambda x, _: TF.relu(x), lambda x, _: F.relu(x)),
    "leaky_relu": OpSpec(lambda x, _: TF.leaky_relu(x, 0.01), lambda x, _: F.leaky_relu(x, 0.01)),
    "sigmoid": OpSpec(lambda x, _: torch.sigmoid(x), lambda x, _: F.sigmoid(x)),
    "tanh": OpSpec(lambda x, _: torch.tanh(x), lambda x, _: F.tanh(x)),
    "gelu": OpSpec(lambda x, _: TF.gelu(x), lambda x, _: F.gelu(x)),
    "selu": OpSpec(lambda x, _: TF.selu(x), lambda x, _: F.selu(x)),
    "softmax": OpSpec(lambda x, _: TF.softmax(x, -1), lambda x, _: F.softmax(x, -1)),
    "log_softmax": OpSpec(lambda x, _: TF.log_softmax(x, -1), lambda x, _: F.log_softmax(x, -1)),
    "cross_entropy": OpSpec(TF.cross_entropy, F.cross_entropy, 1, 2, tuple(LOSS_SIZES), _class_indices,
                            tuple(GPU_LOSS_SIZES)),
    "cross_entropy_probs": OpSpec(TF.cross_entropy, F.cross_entropy, 2, 3, tuple(LOSS_SIZES), _class_probabilities,
                                  tuple(GPU_LOSS_SIZES)),
    # reads x and t; forward+backward also writes the gradient
    "bce_with_logits": OpSpec(TF.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, 2, 3,
                              tuple(SIZES), lambda shape: torch.rand(shape)),
}

def size_names(sizes) -> str:
    return " ".join(f"{r}x{c}" for r, c in sizes)

def default_sizes(spec: OpSpec, device: str) -> Tuple[Tuple[int, int], ...]:
    return spec.gpu_sizes if torch.device(device).type == "cuda" else spec.sizes
