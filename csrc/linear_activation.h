// The activations fastact::linear_act can apply to its output, parsed once
// from the schema's string so kernels switch on an enum.
#pragma once
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

namespace fastact {

enum class LinearActivation { None, Relu, LeakyRelu, Sigmoid, Tanh };

inline LinearActivation parse_linear_activation(c10::string_view name) {
  if (name == "none") return LinearActivation::None;
  if (name == "relu") return LinearActivation::Relu;
  if (name == "leaky_relu") return LinearActivation::LeakyRelu;
  if (name == "sigmoid") return LinearActivation::Sigmoid;
  if (name == "tanh") return LinearActivation::Tanh;
  TORCH_CHECK_VALUE(false, "fastact.linear: activation must be one of 'none', 'relu', 'leaky_relu', 'sigmoid', "
                    "'tanh', got '", std::string(name), "'");
}

}  // namespace fastact
