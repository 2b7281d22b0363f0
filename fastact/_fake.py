"""Shape-only (fake) kernels, so torch.compile and torch.export trace the
fastact ops without running them. Each mirrors the layout its CPU kernel
returns: elementwise ops keep the layout torch.empty_like gives, softmax and
its backward return contiguous tensors."""
import torch

from fastact._loader import has_ops


def _floating(name, x):
    if not x.dtype.is_floating_point:
        raise NotImplementedError(f"{name}: expected a floating point input, got {x.dtype}")


def _not_bool(x):
    if x.dtype == torch.bool:
        raise RuntimeError("Boolean inputs not supported for relu")


def _check_dim(x, dim):
    lo, hi = -max(x.dim(), 1), max(x.dim(), 1) - 1
    if not lo <= dim <= hi:
        raise IndexError(f"Dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})")


def check_approximate(approximate):
    if approximate not in ("none", "tanh"):
        raise RuntimeError("approximate argument must be either none or tanh.")


LINEAR_ACTIVATIONS = ("none", "relu", "leaky_relu", "sigmoid", "tanh")


def check_linear_activation(activation):
    if activation not in LINEAR_ACTIVATIONS:
        raise ValueError(f"fastact.linear: activation must be one of {LINEAR_ACTIVATIONS}, got {activation!r}")


_registered = set()


def register(lib="fastact::"):
    """Fake kernels for the ops of namespace `lib` (the C++ ops, or the Numba
    backend's, which share their schemas)."""
    if (lib == "fastact::" and not has_ops()) or lib in _registered:
        return
    _registered.add(lib)

    @torch.library.register_fake(lib + "relu")
    def _(x):
        _not_bool(x)
        return torch.empty_like(x)

    @torch.library.register_fake(lib + "relu_")
    def _(x):
        _not_bool(x)
        return None

    @torch.library.register_fake(lib + "relu_backward")
    def _(grad, result):
        return torch.empty_like(result)

    @torch.library.register_fake(lib + "leaky_relu")
    def _(x, negative_slope=0.01):
        _floating("leaky_relu", x)
        return torch.empty_like(x)

    @torch.library.register_fake(lib + "leaky_relu_")
    def _(x, negative_slope=0.01):
        _floating("leaky_relu_", x)
        return None

    @torch.library.register_fake(lib + "leaky_relu_backward")
    def _(grad, self_or_result, negative_slope):
        return torch.empty_like(self_or_result)

    def promoted_like(x):
        # sigmoid/tanh compute integer and bool inputs in the default float dtype
        return torch.empty_like(x, dtype=torch.get_default_dtype()) if not x.is_floating_point() \
            else torch.empty_like(x)

    for name in ("sigmoid", "tanh"):
        torch.library.register_fake(lib + name, promoted_like)
    for name in ("sigmoid_backward", "tanh_backward"):
        torch.library.register_fake(lib + name, lambda grad, result: torch.empty_like(result))
    torch.library.register_fake(lib + "selu_backward",
                                lambda grad, self_or_result, is_result: torch.empty_like(self_or_result))

    @torch.library.register_fake(lib + "gelu")
    def _(x, approximate="none"):
        check_approximate(approximate)
        _floating("gelu", x)
        return torch.empty_like(x)

    @torch.library.register_fake(lib + "gelu_backward")
    def _(grad, x, approximate="none"):
        check_approximate(approximate)
        return torch.empty_like(x)

    @torch.library.register_fake(lib + "selu")
    def _(x):
        _floating("selu", x)
        return torch.empty_like(x)

    @torch.library.register_fake(lib + "selu_")
    def _(x):
        _floating("selu_", x)
        return None

    def softmax_like(name):
        def fake(x, dim):
            _check_dim(x, dim)
            _floating(name, x)
            return x.new_empty(x.shape)

        def fake_backward(grad, output, dim):
            _check_dim(output, dim)
            return output.new_empty(output.shape)

        torch.library.register_fake(lib + name, fake)
        torch.library.register_fake(lib + name + "_backward", fake_backward)

    softmax_like("softmax")
    softmax_like("log_softmax")

    @torch.library.register_fake(lib + "cross_entropy")
    def _(input, target, weight, reduction, ignore_index, label_smoothing, compute_grad):
        rows = input.shape[0]
        loss = input.new_empty((rows,)) if reduction == 0 else input.new_empty(())
        grad = input.new_empty(input.shape) if compute_grad else input.new_empty((0,))
        return loss, grad

    @torch.library.register_fake(lib + "binary_cross_entropy_with_logits")
    def _(input, target, weight, pos_weight, reduction, compute_grad):
        loss = input.new_empty(input.shape) if reduction == 0 else input.new_empty(())
        grad = input.new_empty(input.shape) if compute_grad else input.new_empty((0,))
        return loss, grad

    @torch.library.register_fake(lib + "linear_act")
    def _(input, weight, bias=None, activation="none", negative_slope=0.01):
        check_linear_activation(activation)
        if input.dim() < 1 or weight.dim() != 2:
            raise RuntimeError("fastact.linear: input must be at least 1-D and weight 2-D")
        if input.shape[-1] != weight.shape[1]:
            raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({input.shape[-1]} and {weight.shape[1]})")
        if input.dtype != weight.dtype or (bias is not None and bias.dtype != input.dtype):
            raise RuntimeError("fastact.linear: input, weight and bias must have the same dtype")
        return input.new_empty((*input.shape[:-1], weight.shape[0]))
