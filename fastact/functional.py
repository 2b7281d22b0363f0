"""Drop-in replacements for the torch.nn.functional functions fastact
implements: same names, parameters, defaults and results.

    relu(x)           = max(x, 0)
    leaky_relu(x, a)  = x if x > 0 else a * x
    softmax(x, d)     = exp(x - max) / sum_d exp(x - max)
    log_softmax(x, d) = x - max - log sum_d exp(x - max)

Each is one registered op (torch.ops.fastact.*) with a C++ autograd kernel;
backward saves the output only.
"""
import warnings
from typing import Optional

import torch
from torch import Tensor
from torch.compiler import is_compiling
from torch.overrides import handle_torch_function, has_torch_function_unary

from fastact import _ops

__all__ = ["relu", "relu_", "leaky_relu", "leaky_relu_", "softmax", "log_softmax"]


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    r"""relu(input, inplace=False) -> Tensor: max(input, 0) elementwise."""
    if has_torch_function_unary(input):
        return handle_torch_function(relu, (input,), input, inplace=inplace)
    ops = _ops.traced if is_compiling() else _ops.eager
    if inplace:
        ops.relu_(input)
        return input
    return ops.relu(input)


def relu_(input: Tensor) -> Tensor:
    r"""relu_(input) -> Tensor: in-place relu."""
    return relu(input, inplace=True)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    r"""leaky_relu(input, negative_slope=0.01, inplace=False) -> Tensor:
    input where input > 0, negative_slope * input elsewhere."""
    if has_torch_function_unary(input):
        return handle_torch_function(
            leaky_relu, (input,), input, negative_slope=negative_slope, inplace=inplace
        )
    ops = _ops.traced if is_compiling() else _ops.eager
    if inplace:
        ops.leaky_relu_(input, float(negative_slope))
        return input
    return ops.leaky_relu(input, float(negative_slope))


def leaky_relu_(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    r"""leaky_relu_(input, negative_slope=0.01) -> Tensor: in-place leaky_relu."""
    return leaky_relu(input, negative_slope, inplace=True)


def _get_softmax_dim(name: str, ndim: int, stacklevel: int) -> int:
    # torch's legacy rule for dim=None, warning included.
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. "
        "Change the call to include dim=X as an argument.",
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def _softmax_family(name, input, dim, _stacklevel, dtype):
    if dim is None:
        dim = _get_softmax_dim(name, input.dim(), _stacklevel + 1)
    if dtype is not None:
        input = input.to(dtype)
    ops = _ops.traced if is_compiling() else _ops.eager
    return getattr(ops, name)(input, dim)


def softmax(input: Tensor, dim: Optional[int] = None, _stacklevel: int = 3,
            dtype: Optional[torch.dtype] = None) -> Tensor:
    r"""softmax(input, dim=None, _stacklevel=3, dtype=None) -> Tensor:
    exp(input) / sum(exp(input), dim), computed stably (max subtracted),
    in float32 for float16/bfloat16 inputs. With dtype, input is cast first."""
    if has_torch_function_unary(input):
        return handle_torch_function(
            softmax, (input,), input, dim=dim, _stacklevel=_stacklevel, dtype=dtype
        )
    return _softmax_family("softmax", input, dim, _stacklevel, dtype)


def log_softmax(input: Tensor, dim: Optional[int] = None, _stacklevel: int = 3,
                dtype: Optional[torch.dtype] = None) -> Tensor:
    r"""log_softmax(input, dim=None, _stacklevel=3, dtype=None) -> Tensor:
    input - max - log(sum(exp(input - max), dim))."""
    if has_torch_function_unary(input):
        return handle_torch_function(
            log_softmax, (input,), input, dim=dim, _stacklevel=_stacklevel, dtype=dtype
        )
    return _softmax_family("log_softmax", input, dim, _stacklevel, dtype)
