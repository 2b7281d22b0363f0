"""Drop-in replacements for the torch.nn.functional functions fastact
implements: same names, parameters, defaults and results.

    relu(x)           = max(x, 0)
    leaky_relu(x, a)  = x if x > 0 else a * x
    sigmoid(x)        = 1 / (1 + exp(-x)),  tanh(x)
    gelu(x)           = x Phi(x)  (or its tanh approximation)
    selu(x)           = scale * (x if x > 0 else alpha * (exp(x) - 1))
    softmax(x, d)     = exp(x - max) / sum_d exp(x - max)
    log_softmax(x, d) = x - max - log sum_d exp(x - max)
    cross_entropy     = softmax + negative log likelihood, fused (see below)
    binary_cross_entropy_with_logits = sigmoid + binary cross entropy, fused

Each is one registered op (torch.ops.fastact.*, or torch.ops.fastact_numba.*
on the Numba backend) with its own autograd; backward saves the output
wherever the derivative allows.
"""
import warnings
from typing import Optional, Sequence

import torch
from torch import Tensor
from torch.compiler import is_dynamo_compiling
from torch.nn import _reduction
from torch.overrides import handle_torch_function, has_torch_function_unary, has_torch_function_variadic

from fastact import _backends, _checks, _spec

__all__ = ["relu", "relu_", "leaky_relu", "leaky_relu_", "sigmoid", "tanh", "gelu", "selu", "selu_",
           "softmax", "log_softmax", "cross_entropy", "binary_cross_entropy_with_logits", "linear", "fused_linear"]


def _ops():
    # eager calls take the backend's direct bindings; torch.compile traces the
    # OpOverloads. Dynamo is the one tracer that cannot see through a direct
    # binding (a dispatcher call: make_fx, non-strict export and the fake
    # tensors below dynamo see the op), and is_dynamo_compiling costs a
    # third of is_compiling, on every call.
    return _backends.traced if is_dynamo_compiling() else _backends.eager


# torch's own functions, held here: a user who patches fastact's into the
# torch namespace (torch.sigmoid = fastact.sigmoid) must not make the complex
# fallback call fastact again
_torch_sigmoid, _torch_tanh = torch._C._VariableFunctions.sigmoid, torch._C._VariableFunctions.tanh


def _real_or_torch(name: str, input: Tensor, torch_op) -> Tensor:
    """fastact's op, or torch's for a complex input (as torch computes it).
    Eager calls find out from the kernel's NotImplementedError: asking
    is_complex() first cost 150 ns a call, 10% of a small sigmoid."""
    if is_dynamo_compiling():
        return torch_op(input) if input.is_complex() else getattr(_backends.traced, name)(input)
    try:
        return getattr(_backends.eager, name)(input)
    except NotImplementedError:
        if input.is_complex():
            return torch_op(input)
        raise


def _in_place(op, input: Tensor, *args) -> Tensor:
    op(input, *args)
    return input


# The activations choose the ops as _ops() does, written out: on a 5x10
# input that helper's frame, a second one and a lookup by name cost 240 of
# the 1400 ns of relu.


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    r"""relu(input, inplace=False) -> Tensor: max(input, 0) elementwise."""
    if has_torch_function_unary(input):
        return handle_torch_function(relu, (input,), input, inplace=inplace)
    ops = _backends.traced if is_dynamo_compiling() else _backends.eager
    return _in_place(ops.relu_, input) if inplace else ops.relu(input)


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
    ops = _backends.traced if is_dynamo_compiling() else _backends.eager
    slope = float(negative_slope)
    return _in_place(ops.leaky_relu_, input, slope) if inplace else ops.leaky_relu(input, slope)


def leaky_relu_(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    r"""leaky_relu_(input, negative_slope=0.01) -> Tensor: in-place leaky_relu."""
    return leaky_relu(input, negative_slope, inplace=True)


def sigmoid(input: Tensor) -> Tensor:
    r"""sigmoid(input) -> Tensor: 1 / (1 + exp(-input)); integer inputs give
    the default float dtype, as torch.sigmoid; complex inputs are torch's.
    Backward uses the output."""
    if has_torch_function_unary(input):
        return handle_torch_function(sigmoid, (input,), input)
    return _real_or_torch("sigmoid", input, _torch_sigmoid)


def tanh(input: Tensor) -> Tensor:
    r"""tanh(input) -> Tensor; integer inputs give the default float dtype,
    complex inputs are torch's.
    Backward uses the output: 1 - tanh(x)^2."""
    if has_torch_function_unary(input):
        return handle_torch_function(tanh, (input,), input)
    return _real_or_torch("tanh", input, _torch_tanh)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    r"""gelu(input, approximate='none') -> Tensor: x * Phi(x), or with
    approximate='tanh', 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if has_torch_function_unary(input):
        return handle_torch_function(gelu, (input,), input, approximate=approximate)
    return (_backends.traced if is_dynamo_compiling() else _backends.eager).gelu(input, approximate)


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    r"""selu(input, inplace=False) -> Tensor: scale * (x if x > 0 else
    alpha * (exp(x) - 1)) with torch's alpha and scale. Backward uses the
    output, so the in-place form is differentiable too."""
    if has_torch_function_unary(input):
        return handle_torch_function(selu, (input,), input, inplace=inplace)
    ops = _backends.traced if is_dynamo_compiling() else _backends.eager
    return _in_place(ops.selu_, input) if inplace else ops.selu(input)


def selu_(input: Tensor) -> Tensor:
    r"""selu_(input) -> Tensor: in-place selu."""
    return selu(input, inplace=True)


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
    return getattr(_backends.traced if is_dynamo_compiling() else _backends.eager, name)(input, dim)


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


def cross_entropy(input: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                  size_average: Optional[bool] = None, ignore_index: int = -100,
                  reduce: Optional[bool] = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    r"""cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
    reduce=None, reduction='mean', label_smoothing=0.0) -> Tensor

    torch.nn.functional.cross_entropy, fused: one pass over each row computes
    max and log-sum-exp and, when input needs a gradient, writes that
    gradient; the N x C log-probabilities are never formed, and backward is
    one scaling pass (none when the loss's gradient is exactly 1).

    input: (C), (N, C) or (N, C, d1, ..., dk). target: class indices (int64
    or uint8) of shape (), (N) or (N, d1, ..., dk), with ignore_index; or
    class probabilities of input's shape. Per sample, with p = softmax over
    the class dim and e = label_smoothing:
        indices:       (1 - e) w_y (-log p_y) + (e / C) sum_c w_c (-log p_c)
        probabilities: sum_c w_c t'_c (-log p_c),  t' = (1 - e) t + e / C
    'mean' divides by the sum of w_y over targets not ignored (indices) or by
    the number of samples (probabilities), as torch does.

    Autograd: reverse mode as above; double backward, forward-mode AD and
    gradients with respect to probability targets and weight as torch (see
    csrc/autograd/fused_loss.cpp for which path serves which).
    """
    if has_torch_function_variadic(input, target, weight):
        return handle_torch_function(
            cross_entropy, (input, target, weight), input, target, weight=weight,
            size_average=size_average, ignore_index=ignore_index, reduce=reduce,
            reduction=reduction, label_smoothing=label_smoothing,
        )
    if _backends.on_torch is not None and not is_dynamo_compiling() and _backends.on_torch(input):
        return torch.nn.functional.cross_entropy(input, target, weight, size_average, ignore_index, reduce,
                                                 reduction, label_smoothing)
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)
    reduction_enum = _reduction.get_enum(reduction)  # ValueError for an unknown name, as torch
    if input.dim() == 0:
        raise RuntimeError("cross_entropy: expected input of at least 1 dimension, got a 0-dim tensor")
    if not input.is_floating_point():  # the kernels' message (torch's names its log_softmax kernel)
        raise _checks.not_implemented_for("cross_entropy", input.dtype)
    if label_smoothing > 1.0:  # torch refuses only this; below 0 (and NaN) smoothing is off
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    probabilities = input.shape == target.shape
    if probabilities:
        if not target.is_floating_point():
            raise RuntimeError(f"Expected floating point type for target with class probabilities, got "
                               f"{_checks.type_name(target.dtype)}")
        if ignore_index >= 0:
            raise RuntimeError("ignore_index is not supported for floating point target")
        if target.dtype != input.dtype or (weight is not None and weight.dtype != input.dtype):
            # torch computes -(log_softmax(input) * target * weight): the three dtypes promote
            dtype = torch.promote_types(input.dtype, target.dtype)
            if weight is not None:
                dtype = torch.promote_types(dtype, weight.dtype)
            input = input.to(dtype)  # the cast is differentiable: the gradient keeps input's dtype
            weight = weight.to(dtype) if weight is not None else None
            target = target.to(dtype)
    else:
        _checks.check_index_target(input, target)
        if target.dtype is not torch.int64:
            target = target.long()

    if input.dim() == 2:
        # (N, C) is already [rows, classes]: no reshapes, which at tutorial
        # sizes cost more than the kernel
        rows, flat_target, batch_shape = input, target, None
    else:
        class_dim = 1 if input.dim() >= 2 else 0
        n_classes = input.size(class_dim)
        batch_shape = input.shape[:class_dim] + input.shape[class_dim + 1:]
        # to [rows, classes]: the class dim last (a copy only for (N, C, d...) inputs);
        # the row count is given, not inferred, so that zero classes reshape too
        rows = input.movedim(class_dim, -1).reshape(batch_shape.numel(), n_classes)
        flat_target = target.movedim(class_dim, -1).reshape(rows.shape) if probabilities else target.reshape(-1)

    # The gradient is written in the forward pass only when it will be needed.
    compute_grad = input.requires_grad and torch.is_grad_enabled()
    loss, _ = _ops().cross_entropy(rows, flat_target, weight, reduction_enum, ignore_index,
                                float(label_smoothing), compute_grad)
    if reduction_enum == 0 and batch_shape is not None:  # none: the per-sample shape
        loss = loss.reshape(batch_shape)
    return loss


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                                     size_average: Optional[bool] = None, reduce: Optional[bool] = None,
                                     reduction: str = "mean", pos_weight: Optional[Tensor] = None) -> Tensor:
    r"""binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
    reduce=None, reduction='mean', pos_weight=None) -> Tensor

    torch's function, fused: per element, with lw = 1 + (pos_weight - 1) t,
        loss = weight * ((1 - t) x + lw * softplus(-x))
    computed stably in one pass that also writes the gradient,
    weight * (lw * sigmoid(x) - pos_weight * t), when input needs it; backward
    only scales it. weight and pos_weight broadcast as in torch.
    """
    if has_torch_function_variadic(input, target, weight, pos_weight):
        return handle_torch_function(
            binary_cross_entropy_with_logits, (input, target, weight, pos_weight), input, target,
            weight=weight, size_average=size_average, reduce=reduce, reduction=reduction, pos_weight=pos_weight,
        )
    if _backends.on_torch is not None and not is_dynamo_compiling() and _backends.on_torch(input):
        return torch.nn.functional.binary_cross_entropy_with_logits(input, target, weight, size_average, reduce,
                                                                    reduction, pos_weight)
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)
    reduction_enum = _reduction.get_enum(reduction)
    if target.size() != input.size():
        raise ValueError(f"Target size ({target.size()}) must be the same as input size ({input.size()})")
    if not target.is_floating_point():
        raise RuntimeError(f"result type {_checks.type_name(input.dtype)} can't be cast to the desired output type "
                           f"{_checks.type_name(target.dtype)}")
    # torch's result has the target's dtype ((1 - target).mul_(input)...); where
    # that differs from the input's it is computed in the wider of the two and
    # cast (differentiably). Integer logits: the kernel's NotImplementedError, as torch.
    result_dtype = None
    if target.dtype != input.dtype and input.is_floating_point():
        result_dtype = target.dtype
        input = input.to(torch.promote_types(input.dtype, target.dtype))
    target = target.to(input.dtype)
    # broadcast as torch does (its errors for shapes that do not broadcast)
    if weight is not None:
        weight = torch.broadcast_to(weight, input.shape).to(input.dtype)
    if pos_weight is not None:
        pos_weight = torch.broadcast_to(pos_weight, input.shape).to(input.dtype)
    compute_grad = input.requires_grad and torch.is_grad_enabled()
    loss, _ = _ops().binary_cross_entropy_with_logits(input, target, weight, pos_weight, reduction_enum, compute_grad)
    # under autocast the op's autocast kernel decided, as torch's policy does (float32)
    if result_dtype is not None and not torch.is_autocast_enabled(input.device.type):
        loss = loss.to(result_dtype)
    return loss


def fused_linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, activation: str = "none",
                 negative_slope: Optional[float] = None) -> Tensor:
    r"""fused_linear(input, weight, bias=None, activation='none', negative_slope=None) -> Tensor

    activation(input @ weight^T + bias), one op and one autograd node, with
    activation one of 'none', 'relu', 'leaky_relu' (negative_slope its
    slope), 'sigmoid', 'tanh', 'gelu', 'gelu_tanh' (GELU's tanh
    approximation), 'silu', 'elu' (negative_slope its alpha), 'selu',
    'softplus' (negative_slope its beta; threshold 20, torch's default);
    negative_slope None is torch's default for the activation (0.01 for
    LeakyReLU, 1.0 for ELU's alpha and Softplus's beta). The
    matmul is torch's (addmm) and the activation is fastact's op where
    fastact has one (ReLU, LeakyReLU, Sigmoid, Tanh, GELU, SELU: applied in
    place on the matmul's output where its derivative comes from the output)
    and torch's otherwise, so values and gradients are those of
    torch.nn.functional.linear followed by the activation (as fastact.swap
    leaves it), bit for bit for 2-D and contiguous 3-D inputs. GELU, SiLU,
    ELU, SELU and Softplus keep the pre-activation for backward, as torch
    does. Not in torch.nn.functional: fastact.fuse puts it in models."""
    if has_torch_function_variadic(input, weight, bias):
        return handle_torch_function(fused_linear, (input, weight, bias), input, weight, bias=bias,
                                     activation=activation, negative_slope=negative_slope)
    _checks.check_linear_input(input)
    _checks.check_linear_activation(activation)
    return _ops().linear_act(input, weight, bias, activation, _spec.activation_parameter(activation, negative_slope))


# The activations fused_linear and fused_linear_chain take, in the order of
# the chain op's activation codes (torch.ops.fastact._linear_chain).
LINEAR_ACTIVATIONS = _spec.LINEAR_ACTIVATIONS


def fused_linear_chain(input: Tensor, weights: Sequence[Tensor], biases: Sequence[Optional[Tensor]],
                       activations: Sequence[str], negative_slopes: Sequence[float]) -> Tensor:
    r"""fused_linear_chain(input, weights, biases, activations, negative_slopes) -> Tensor

    A run of layers as one op and one autograd node: from x_0 = input,
    x_l = activation_l(x_{l-1} @ weights[l]^T + biases[l]) (a bias may be
    None; activations and their parameters as fused_linear's); returns the
    last x_l. Its backward is one call for every layer's gradients. On CPU,
    layers whose feature sizes are both at most 64 (float, double) and whose
    activation's derivative comes from its output (none, ReLU, LeakyReLU with
    a slope >= 0, Sigmoid, Tanh) use fastact's own matmul: values and
    gradients within float rounding of torch's (not bit-identical: another
    summation order), where MKL's per-call cost would dominate; other layers
    are torch's arithmetic, bit for bit. Double backward recomputes the layers' outputs with
    autograd; forward AD and vmap run layer by layer. On the Numba backend:
    fused_linear layer by layer.
    Not in torch.nn.functional: fastact.fuse puts it in models."""
    if has_torch_function_variadic(input, *weights, *[b for b in biases if b is not None]):
        return handle_torch_function(fused_linear_chain, (input, *weights), input, weights, biases, activations,
                                     negative_slopes)
    _checks.check_linear_input(input)
    if _backends.current != "cpp":
        for w, b, act, slope in zip(weights, biases, activations, negative_slopes, strict=True):
            input = fused_linear(input, w, b, act, slope)
        return input
    codes = [_checks.linear_activation_code(a) for a in activations]
    slopes = [float(s) for s in negative_slopes]
    chain = torch.ops.fastact._linear_chain.default if is_dynamo_compiling() else _backends.cpp._C._linear_chain
    # the op returns each layer's output, then the pre-activations it keeps
    return chain(input, list(weights), list(biases), codes, slopes)[len(codes) - 1]


def linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    r"""linear(input, weight, bias=None) -> Tensor: input @ weight^T + bias,
    as torch.nn.functional.linear, with one autograd node for the whole layer."""
    return fused_linear(input, weight, bias)
