// The activations fastact::linear_act applies to its output (the Python
// side's list: _spec.LINEAR_ACTIVATIONS), parsed once from the schema's
// string so kernels switch on an enum.
#pragma once
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <string>

namespace fastact::linear_act {

enum class Activation { None, Relu, LeakyRelu, Sigmoid, Tanh };

inline Activation parse_activation(c10::string_view name) {
  if (name == "none") return Activation::None;
  if (name == "relu") return Activation::Relu;
  if (name == "leaky_relu") return Activation::LeakyRelu;
  if (name == "sigmoid") return Activation::Sigmoid;
  if (name == "tanh") return Activation::Tanh;
  TORCH_CHECK_VALUE(false, "fastact.linear: activation must be one of 'none', 'relu', 'leaky_relu', 'sigmoid', "
                    "'tanh', got '", std::string(name), "'");
}

}  // namespace fastact::linear_act
