// The activations of linear_act and the layer chain as ops (linear_act.h
// names them): the forward and its derivative, each with the fastact op
// where fastact has one (what fastact.swap puts in a model: ReLU, LeakyReLU,
// Sigmoid, Tanh, GELU, SELU) and torch's own otherwise (SiLU, ELU,
// Softplus), so a fused layer computes what the unfused, swapped pair
// computes. Called above autograd they are recorded (double backward).
#pragma once
#include "linear_act.h"

#include <ATen/core/Tensor.h>

namespace fastact::linear_act {

// act(pre); ReLU and LeakyReLU in place on `pre` where `in_place`.
at::Tensor activate(at::Tensor pre, Activation act, double param, bool in_place);

// g * act'(x) from `saved`: the output where differentiates_from_output,
// the pre-activation otherwise.
at::Tensor activation_grad(Activation act, double param, const at::Tensor& g, const at::Tensor& saved);

}  // namespace fastact::linear_act
