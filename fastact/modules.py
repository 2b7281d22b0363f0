"""nn.Module drop-ins. Each subclasses the torch module it replaces, so the
constructor, attributes, repr, state_dict, pickling and isinstance checks are
torch's own; only forward runs fastact."""
from typing import Optional

from torch import Tensor, nn
from torch.nn import functional as TF

from fastact import functional as F
from fastact._checks import check_linear_activation
from fastact._spec import activation_parameter

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "SELU", "Softmax", "LogSoftmax", "CrossEntropyLoss",
           "BCEWithLogitsLoss", "FusedLinear", "LinearChain", "Chained", "Fused", "ChainedDropout"]


def has_hooks(module: nn.Module) -> bool:
    """Whether a forward or backward hook is registered on the module itself:
    a hook sees the module's own input and output, which fusing changes (a
    Linear's forward hook would see the activation's output) and which
    TrainStep's op never makes. Read directly: TrainStep asks on every step."""
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks)


def clone_as(module: nn.Module, cls: type) -> nn.Module:
    """A `cls` carrying `module`'s state: the same settings, Parameters (the
    objects, not copies), buffers, training flag and hooks. Its dicts are
    copies, so later registrations on one do not show on the other."""
    new = cls.__new__(cls)
    new.__dict__.update({k: (v.copy() if isinstance(v, dict) else v) for k, v in module.__dict__.items()})
    return new


class ReLU(nn.ReLU):
    __doc__ = nn.ReLU.__doc__

    def forward(self, input: Tensor) -> Tensor:
        return F.relu(input, inplace=self.inplace)


class LeakyReLU(nn.LeakyReLU):
    __doc__ = nn.LeakyReLU.__doc__

    def forward(self, input: Tensor) -> Tensor:
        return F.leaky_relu(input, self.negative_slope, self.inplace)


class Sigmoid(nn.Sigmoid):
    __doc__ = nn.Sigmoid.__doc__

    def forward(self, input: Tensor) -> Tensor:
        return F.sigmoid(input)


class Tanh(nn.Tanh):
    __doc__ = nn.Tanh.__doc__

    def forward(self, input: Tensor) -> Tensor:
        return F.tanh(input)


class GELU(nn.GELU):
    __doc__ = nn.GELU.__doc__

    def forward(self, input: Tensor) -> Tensor:
        return F.gelu(input, approximate=self.approximate)


class SELU(nn.SELU):
    __doc__ = nn.SELU.__doc__

    def forward(self, input: Tensor) -> Tensor:
        return F.selu(input, self.inplace)


class Softmax(nn.Softmax):
    __doc__ = nn.Softmax.__doc__

    def forward(self, input: Tensor) -> Tensor:
        return F.softmax(input, self.dim, _stacklevel=5)


class LogSoftmax(nn.LogSoftmax):
    __doc__ = nn.LogSoftmax.__doc__

    def forward(self, input: Tensor) -> Tensor:
        return F.log_softmax(input, self.dim, _stacklevel=5)


class CrossEntropyLoss(nn.CrossEntropyLoss):
    __doc__ = nn.CrossEntropyLoss.__doc__

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class BCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    __doc__ = nn.BCEWithLogitsLoss.__doc__

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(input, target, self.weight, pos_weight=self.pos_weight,
                                                  reduction=self.reduction)


# the activations whose parameter FusedLinear's negative_slope holds
_PARAMETRIZED = ("leaky_relu", "elu", "softplus")


class FusedLinear(nn.Linear):
    r"""nn.Linear followed by an activation, as one fastact op and one
    autograd node: y = activation(x W^T + b), activation one of
    fastact.functional.fused_linear's ('none', 'relu', 'leaky_relu',
    'sigmoid', 'tanh', 'gelu', 'gelu_tanh', 'silu', 'elu', 'selu',
    'softplus'), negative_slope its parameter (LeakyReLU's slope, ELU's
    alpha, Softplus's beta; None: torch's default for the activation, 0.01
    for LeakyReLU and 1.0 for the others).

    Parameters, their names and initialization are nn.Linear's (it is one),
    so state_dicts load either way; values and gradients equal the unfused
    Linear + activation bit for bit. fastact.fuse builds these from existing
    layers, sharing their Parameter objects."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,
                 activation: str = "none", negative_slope: Optional[float] = None) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self._set_activation(activation, negative_slope)

    def _set_activation(self, activation: str, negative_slope: Optional[float]) -> None:
        check_linear_activation(activation)
        self.activation = activation
        self.negative_slope = activation_parameter(activation, negative_slope)

    @classmethod
    def from_linear(cls, linear: nn.Linear, activation: str = "none",
                    negative_slope: Optional[float] = None) -> "FusedLinear":
        """A FusedLinear over `linear`'s own Parameters (not copies) and settings."""
        new = clone_as(linear, cls)
        new._set_activation(activation, negative_slope)
        return new

    def forward(self, input: Tensor) -> Tensor:
        return F.fused_linear(input, self.weight, self.bias, self.activation, self.negative_slope)

    def extra_repr(self) -> str:
        act = self.activation + (f"({self.negative_slope})" if self.activation in _PARAMETRIZED else "")
        return f"{super().extra_repr()}, activation={act}"


class LinearChain(FusedLinear):
    r"""The first layer of a run of FusedLinear layers that fastact.fuse
    chained: its forward applies the whole run (itself, then `rest`) as one
    op and one autograd node (fastact.functional.fused_linear_chain). The
    other layers of the run stay in their places as Chained, owning their
    Parameters, so parameters and state_dict keys are those of the model
    before fusing."""

    rest: tuple = ()
    # (l, ChainedDropout) for each Dropout between layer l and layer l + 1 of the run, in order
    dropouts: tuple = ()

    @classmethod
    def from_layers(cls, layers, dropouts=()) -> "LinearChain":
        head = clone_as(layers[0], cls)
        # not submodules: each stays in its own place
        head.__dict__["rest"] = tuple(layers[1:])
        head.__dict__["dropouts"] = tuple(dropouts)
        return head

    def active_dropouts(self) -> list:
        """The run's Dropouts that drop (training, p > 0): the chain splits at them."""
        return [(after, d) for after, d in self.dropouts if d.training and d.p > 0]

    def forward(self, input: Tensor) -> Tensor:
        arguments = self.chain_arguments()
        active = self.active_dropouts() if self.dropouts else ()
        if not active:
            return F.fused_linear_chain(input, *arguments)
        # one chain per stretch between dropping Dropouts: torch's dropout on
        # the same tensor as the unfused model's, so the same mask from the same
        # generator state (out of place: the chain's node keeps its output)
        start = 0
        for after, dropout in active:
            if after >= start:  # Dropouts in a row: no layers between them
                input = F.fused_linear_chain(input, *(a[start:after + 1] for a in arguments))
            input = TF.dropout(input, dropout.p, True)
            start = after + 1
        return F.fused_linear_chain(input, *(a[start:] for a in arguments))

    def chain_arguments(self):
        """(weights, biases, activations, negative_slopes) of the run, as
        fastact.functional.fused_linear_chain takes them."""
        layers = (self,) + self.rest
        return ([m.weight for m in layers], [m.bias for m in layers], [m.activation for m in layers],
                [m.negative_slope for m in layers])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, applies the next {len(self.rest)} Linear layer(s) too"


class Chained(FusedLinear):
    r"""A layer of a chain (see LinearChain) in its place: the chain's first
    layer applies it, so its forward passes its input through."""

    def forward(self, input: Tensor) -> Tensor:
        return input

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, applied by the preceding LinearChain"


class ChainedDropout(nn.Dropout):
    r"""An nn.Dropout inside a chain (see LinearChain), in its place with its
    settings: the chain's first layer applies it, where it drops (training,
    p > 0), so its forward passes its input through. In eval mode or with
    p = 0 it is the identity, and the chain stays one op."""

    def forward(self, input: Tensor) -> Tensor:
        return input

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, applied by the preceding LinearChain"


class Fused(nn.Identity):
    r"""What fastact.fuse leaves where an activation was: the preceding
    FusedLinear applies it, and the placeholder keeps the container's
    indices (and so the state_dict keys) as they were."""

    def __init__(self, activation: str = "") -> None:
        super().__init__()
        self.activation = activation

    def extra_repr(self) -> str:
        return f"{self.activation}, applied by the preceding FusedLinear"


# torch module -> its fastact replacement; fastact.swap reads this.
REPLACEMENTS = {nn.ReLU: ReLU, nn.LeakyReLU: LeakyReLU, nn.Sigmoid: Sigmoid, nn.Tanh: Tanh, nn.GELU: GELU,
                nn.SELU: SELU, nn.Softmax: Softmax, nn.LogSoftmax: LogSoftmax,
                nn.CrossEntropyLoss: CrossEntropyLoss, nn.BCEWithLogitsLoss: BCEWithLogitsLoss}
