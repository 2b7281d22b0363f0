// The activations fastact::linear_act applies to its output (the Python
// side's list: _spec.LINEAR_ACTIVATIONS), parsed once from the schema's
// string so kernels switch on an enum.
#pragma once
#include <c10/util/Exception.h>

#include <cstdint>
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

// The chain ops (_linear_chain) pass activations as codes: the enum's order,
// which is _spec.LINEAR_ACTIVATIONS's.
inline Activation activation_from_code(int64_t code) {
  TORCH_CHECK_VALUE(code >= 0 && code <= static_cast<int64_t>(Activation::Tanh),
                    "fastact._linear_chain: activation code must be 0 to 4 (none, relu, leaky_relu, sigmoid, tanh), "
                    "got ", code);
  return static_cast<Activation>(code);
}

inline const char* activation_name(Activation act) {
  switch (act) {
    case Activation::None: return "none";
    case Activation::Relu: return "relu";
    case Activation::LeakyRelu: return "leaky_relu";
    case Activation::Sigmoid: return "sigmoid";
    case Activation::Tanh: return "tanh";
  }
  return "none";
}

}  // namespace fastact::linear_act
