"""Shape-only (fake) kernels, so torch.compile and torch.export trace the
fastact ops without running them. Each mirrors the layout its CPU kernel
returns: elementwise ops keep the layout torch.empty_like gives, softmax and
its backward return contiguous tensors. The same kernels serve the C++ ops
and the Numba backend's, which share their schemas."""
import torch

from fastact import _checks, _spec


def _floating(name, x):
    if not x.dtype.is_floating_point:
        raise NotImplementedError(f"{name}: expected a floating point input, got {x.dtype}")


_registered = set()


def register(namespace: str) -> None:
    """Fake kernels for every op of _spec.OPS in `namespace` ("fastact" or
    "fastact_numba"); once per namespace."""
    if namespace in _registered:
        return
    _registered.add(namespace)
    covered = []

    def fake(name, kernel=None):
        covered.append(name)
        return torch.library.register_fake(f"{namespace}::{name}", kernel)

    @fake("relu")
    def _(x):
        _checks.check_relu_input(x)
        return torch.empty_like(x)

    @fake("relu_")
    def _(x):
        _checks.check_relu_input(x)
        return None

    @fake("relu_backward")
    def _(grad, result):
        return torch.empty_like(result)

    @fake("leaky_relu")
    def _(x, negative_slope=0.01):
        _floating("leaky_relu", x)
        return torch.empty_like(x)

    @fake("leaky_relu_")
    def _(x, negative_slope=0.01):
        _floating("leaky_relu_", x)
        return None

    @fake("leaky_relu_backward")
    def _(grad, self_or_result, negative_slope):
        return torch.empty_like(self_or_result)

    def promoted_like(x):
        # sigmoid/tanh compute integer and bool inputs in the default float dtype
        return torch.empty_like(x, dtype=torch.get_default_dtype()) if not x.is_floating_point() \
            else torch.empty_like(x)

    for name in ("sigmoid", "tanh"):
        fake(name, promoted_like)
    for name in ("sigmoid_backward", "tanh_backward"):
        fake(name, lambda grad, result: torch.empty_like(result))
    fake("selu_backward",
                                lambda grad, self_or_result, is_result: torch.empty_like(self_or_result))

    @fake("gelu")
    def _(x, approximate="none"):
        _checks.check_approximate(approximate)
        _floating("gelu", x)
        return torch.empty_like(x)

    @fake("gelu_backward")
    def _(grad, x, approximate="none"):
        _checks.check_approximate(approximate)
        return torch.empty_like(x)

    @fake("selu")
    def _(x):
        _floating("selu", x)
        return torch.empty_like(x)

    @fake("selu_")
    def _(x):
        _floating("selu_", x)
        return None

    def softmax_like(name):
        def forward(x, dim):
            _checks.check_dim(x, dim)
            _floating(name, x)
            return x.new_empty(x.shape)

        def backward(grad, output, dim):
            _checks.check_dim(output, dim)
            return output.new_empty(output.shape)

        fake(name, forward)
        fake(name + "_backward", backward)

    softmax_like("softmax")
    softmax_like("log_softmax")

    @fake("cross_entropy")
    def _(input, target, weight, reduction, ignore_index, label_smoothing, compute_grad):
        rows = input.shape[0]
        loss = input.new_empty((rows,)) if reduction == 0 else input.new_empty(())
        grad = input.new_empty(input.shape) if compute_grad else input.new_empty((0,))
        return loss, grad

    @fake("binary_cross_entropy_with_logits")
    def _(input, target, weight, pos_weight, reduction, compute_grad):
        loss = input.new_empty(input.shape) if reduction == 0 else input.new_empty(())
        grad = input.new_empty(input.shape) if compute_grad else input.new_empty((0,))
        return loss, grad

    @fake("linear_act")
    def _(input, weight, bias=None, activation="none", negative_slope=0.01):
        _checks.check_linear_activation(activation)
        _checks.check_linear_shapes(input, weight, bias)
        return input.new_empty((*input.shape[:-1], weight.shape[0]))

    missing = set(_spec.OPS) - set(covered)
    assert not missing, f"no fake kernel for {sorted(missing)}"
