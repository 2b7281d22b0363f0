"""The fastact ops, listed once for the Python side, with the facts about
them that more than one module needs: which are in-place forms, which op
differentiates which, what each forward saves for backward, the fused
losses, the autocast policy, and the constants of the math.

The C++ side has its own single list (csrc/op_list.h, which generates the
library's schemas and the C++ handles); tests/test_layout.py checks that the
two lists, the C++ schemas and the Numba backend's agree. Imports nothing
from fastact: every other module may import this one."""

# Every public op of torch.ops.fastact (and of the Numba backend's
# torch.ops.fastact_numba), grouped by family as the source files are.
OPS_BY_FAMILY = {
    "activation": ("relu", "relu_", "relu_backward",
                   "leaky_relu", "leaky_relu_", "leaky_relu_backward",
                   "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
                   "gelu", "gelu_backward", "selu", "selu_", "selu_backward"),
    "softmax": ("softmax", "softmax_backward", "log_softmax", "log_softmax_backward"),
    "cross_entropy": ("cross_entropy",),
    "binary_cross_entropy": ("binary_cross_entropy_with_logits",),
    "linear_act": ("linear_act",),
}
OPS = tuple(name for names in OPS_BY_FAMILY.values() for name in names)

# The in-place forms: relu_ -> relu.
INPLACE = {name: name[:-1] for name in OPS if name.endswith("_")}

# The losses whose forward writes the input's gradient (compute_grad) and
# whose backward only scales it.
FUSED_LOSSES = ("cross_entropy", "binary_cross_entropy_with_logits")


def _slope(args) -> float:
    return args[0] if args else 0.01


# forward op -> (its backward op, whether it saves its output given its
# non-tensor arguments, the backward op's non-tensor arguments given the
# forward's). Saving the output (where the derivative is a function of it)
# lets autograd free the input; a leaky_relu with a negative slope loses
# the input's sign and gelu's derivative needs the input; selu differentiates
# from its input as torch does (its output loses exp(x) to rounding for
# x << 0), its in-place form from its output.
BACKWARD = {
    "relu": ("relu_backward", lambda args: True, lambda args: ()),
    "leaky_relu": ("leaky_relu_backward", lambda args: _slope(args) >= 0, lambda args: (_slope(args),)),
    "sigmoid": ("sigmoid_backward", lambda args: True, lambda args: ()),
    "tanh": ("tanh_backward", lambda args: True, lambda args: ()),
    "gelu": ("gelu_backward", lambda args: False, lambda args: tuple(args)),
    "selu": ("selu_backward", lambda args: False, lambda args: (False,)),
    "softmax": ("softmax_backward", lambda args: True, lambda args: tuple(args)),
    "log_softmax": ("log_softmax_backward", lambda args: True, lambda args: tuple(args)),
}


def saves_output(name: str, args) -> bool:
    """Whether forward op `name` with non-tensor arguments `args` saves its output."""
    return BACKWARD[name][1](args)


# Activations fastact::linear_act applies to its output (csrc/linear_act.h),
# in the order of the chain op's codes. Its float argument is the
# activation's parameter: leaky_relu's negative_slope, elu's alpha,
# softplus's beta (with torch's default threshold, SOFTPLUS_THRESHOLD).
LINEAR_ACTIVATIONS = ("none", "relu", "leaky_relu", "sigmoid", "tanh",
                      "gelu", "gelu_tanh", "silu", "elu", "selu", "softplus")
SOFTPLUS_THRESHOLD = 20.0
# torch's default for each parametrized activation's parameter (nn.LeakyReLU's
# negative_slope, nn.ELU's alpha, nn.Softplus's beta): what fused_linear and
# FusedLinear take when none is given. The others ignore theirs.
ACTIVATION_PARAMETER_DEFAULTS = {"leaky_relu": 0.01, "elu": 1.0, "softplus": 1.0}


def activation_parameter(activation: str, param) -> float:
    """`param` as a float, or the activation's torch default where it is None."""
    return ACTIVATION_PARAMETER_DEFAULTS.get(activation, 0.01) if param is None else float(param)
# linear_act's activation -> the backward op of its derivative, for those
# differentiated from their output
LINEAR_ACTIVATION_BACKWARD = {"relu": "relu_backward", "leaky_relu": "leaky_relu_backward",
                              "sigmoid": "sigmoid_backward", "tanh": "tanh_backward"}


def differentiates_from_output(activation: str, param: float) -> bool:
    """Whether linear_act's backward takes the derivative from its output
    (else from the pre-activation, which it keeps: csrc/linear_act.h)."""
    return (activation == "none" or activation in LINEAR_ACTIVATION_BACKWARD) and not (
        activation == "leaky_relu" and param < 0)

# Autocast (torch's policy for the torch op each replaces; csrc/autocast/):
# op -> "float32" (cast up) or "lower" (the autocast dtype). Per device.
AUTOCAST = {
    "cpu": {"cross_entropy": "float32", "binary_cross_entropy_with_logits": "float32", "linear_act": "lower"},
    "cuda": {"cross_entropy": "float32", "binary_cross_entropy_with_logits": "float32", "linear_act": "lower",
             "softmax": "float32", "log_softmax": "float32"},
}

# The losses fastact.TrainStep's chain op takes, in the order of its codes
# (csrc/linear_chain.h ChainLoss).
CHAIN_LOSSES = ("cross_entropy", "mse_loss", "binary_cross_entropy_with_logits")

# torch's reduction enum (torch.nn._reduction.get_enum)
REDUCTION_NONE, REDUCTION_MEAN, REDUCTION_SUM = 0, 1, 2

# SELU's constants, torch's (csrc/constants.h has the same for C++)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

# The ops of csrc/op_list.h that are not part of the API above (C++ only:
# the Numba backend does without them): the fused losses' backward, and
# fastact.optim's steps (fastact/optim.py calls them), fastact.fuse's chains of
# layers (modules.FusedLinear) and fastact.TrainStep's step over a chain.
LISTED_PRIVATE_OPS = ("_scale_grad_", "_sgd_step_", "_adam_step_", "_linear_chain", "_linear_chain_backward",
                      "_linear_chain_loss_grad")
# Every op of the C++ library outside the API: those, the build's
# description, the CPU output cache and a test probe.
PRIVATE_OPS = ("_build_info", "_empty_cache", "_cached_bytes", "_vec_exp") + LISTED_PRIVATE_OPS
