"""nn.Module drop-ins. Each subclasses the torch module it replaces, so the
constructor, attributes, repr, state_dict, pickling and isinstance checks are
torch's own; only forward runs fastact."""
from torch import Tensor, nn

from fastact import functional as F

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "SELU", "Softmax", "LogSoftmax", "CrossEntropyLoss",
           "BCEWithLogitsLoss"]


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


# torch module -> its fastact replacement; fastact.swap reads this.
REPLACEMENTS = {nn.ReLU: ReLU, nn.LeakyReLU: LeakyReLU, nn.Sigmoid: Sigmoid, nn.Tanh: Tanh, nn.GELU: GELU,
                nn.SELU: SELU, nn.Softmax: Softmax, nn.LogSoftmax: LogSoftmax,
                nn.CrossEntropyLoss: CrossEntropyLoss, nn.BCEWithLogitsLoss: BCEWithLogitsLoss}
