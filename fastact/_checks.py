"""Argument checks and error messages, the bottom layer of fastact's Python
side: the public API, the fake kernels and the Numba backend raise through
these, so one bad argument gets one message whichever path sees it. Where
torch has a message for the same mistake, it is torch's wording (and the C++
kernels', csrc/checks.h, carry the same). Imports nothing from fastact."""
import torch

from fastact import _spec

# dtype -> the name torch's C++ messages use
_SCALAR_TYPE_NAMES = {
    torch.uint8: "Byte", torch.int8: "Char", torch.int16: "Short", torch.int32: "Int", torch.int64: "Long",
    torch.float16: "Half", torch.bfloat16: "BFloat16", torch.float32: "Float", torch.float64: "Double",
    torch.bool: "Bool", torch.complex64: "ComplexFloat", torch.complex128: "ComplexDouble",
}

# torch's own messages, raised by fastact where torch would raise them
SECOND_BACKWARD = ("Trying to backward through the graph a second time (or directly access saved tensors after they "
                   "have already been freed). Specify retain_graph=True if you need to backward through the graph a "
                   "second time.")
INFERENCE_TENSOR_INPLACE = (
    "Inplace update to inference tensor outside InferenceMode is not allowed.You can make a clone to get a normal "
    "tensor before doing inplace update.See https://github.com/pytorch/rfcs/pull/17 for more details.")
LEAKY_RELU_INPLACE_NEGATIVE_SLOPE = (
    "In-place leakyReLu backward calculation is triggered with a negative slope which is not supported. This is "
    "caused by calling in-place forward function with a negative slope, please call out-of-place version instead.")


def type_name(dtype: torch.dtype) -> str:
    return _SCALAR_TYPE_NAMES.get(dtype, str(dtype))


def not_implemented_for(name: str, dtype: torch.dtype) -> NotImplementedError:
    """The error AT_DISPATCH raises for a dtype a kernel is not compiled for."""
    return NotImplementedError(f'"{name}" not implemented for \'{type_name(dtype)}\'')


def check_floating(name: str, x: torch.Tensor) -> None:
    if not x.is_floating_point():
        raise not_implemented_for(name, x.dtype)


def check_relu_input(x: torch.Tensor) -> None:
    if x.dtype == torch.bool:
        raise RuntimeError("Boolean inputs not supported for relu")


def check_dim(x: torch.Tensor, dim: int) -> None:
    lo, hi = -max(x.dim(), 1), max(x.dim(), 1) - 1
    if not lo <= dim <= hi:
        raise IndexError(f"Dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})")


def check_softmax_input(name: str, x: torch.Tensor, dim: int) -> None:
    check_dim(x, dim)
    if not x.is_floating_point():
        raise NotImplementedError(f"{name}: expected a floating point input, got {x.dtype} "
                                  "(pass dtype= to compute in a floating type)")


def check_approximate(approximate: str) -> None:
    if approximate not in ("none", "tanh"):
        raise RuntimeError("approximate argument must be either none or tanh.")


def check_linear_activation(activation: str) -> None:
    if activation not in _spec.LINEAR_ACTIVATIONS:
        raise ValueError(f"fastact.linear: activation must be one of {_spec.LINEAR_ACTIVATIONS}, got {activation!r}")


def check_linear_input(input) -> None:
    """torch.nn.functional.linear's TypeError for an input that is not a
    tensor (a list from a dataset of lists, say), not a binding's."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"linear(): argument 'input' (position 1) must be Tensor, not {type(input).__name__}")


def linear_activation_code(activation: str) -> int:
    """The code fastact's chain op takes for an activation (csrc/linear_act.h's enum)."""
    check_linear_activation(activation)
    return _spec.LINEAR_ACTIVATIONS.index(activation)


def check_index_target(input: torch.Tensor, target: torch.Tensor) -> None:
    """cross_entropy's class-index target against its input: torch's checks
    and messages (nll_loss_nd, nll_loss)."""
    if input.dim() == 2 and target.dim() == 1 and input.size(0) == target.size(0) and \
            target.dtype is torch.int64:
        return  # the common case, first: this runs on every call
    if target.dtype not in (torch.int64, torch.uint8):
        raise RuntimeError(f"expected target dtype to be Long or Byte, but got {type_name(target.dtype)}")
    if input.dim() == 1:
        if target.dim() > 1:
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
        if target.dim() == 1 and target.size(0) != 1:
            raise ValueError(f"For 1D input, 1D target must have size 1, but got target size: {target.size(0)}")
        return
    if target.dim() == 0 or input.size(0) != target.size(0):
        raise ValueError(f"Expected input batch_size ({input.size(0)}) to match target batch_size "
                         f"({target.size(0) if target.dim() else 0}).")
    if target.shape[1:] != input.shape[2:]:
        expected = [input.size(0), *input.shape[2:]]
        raise RuntimeError(f"Expected target size {expected}, got {list(target.shape)}")


def check_linear_shapes(input: torch.Tensor, weight: torch.Tensor, bias) -> None:
    if input.dim() < 1 or weight.dim() != 2:
        raise RuntimeError("fastact.linear: input must be at least 1-D and weight 2-D")
    if input.shape[-1] != weight.shape[1]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({input.shape[-1]} and {weight.shape[1]})")
    if input.dtype != weight.dtype or (bias is not None and bias.dtype != input.dtype):
        raise RuntimeError("fastact.linear: input, weight and bias must have the same dtype")
