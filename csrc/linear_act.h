// The activations fastact::linear_act applies to its output (the Python
// side's list: _spec.LINEAR_ACTIVATIONS), parsed once from the schema's
// string so kernels switch on an enum. The op's float argument is the
// activation's parameter: LeakyReLU's negative_slope, ELU's alpha,
// Softplus's beta (its threshold is torch's default, 20).
#pragma once
#include <c10/util/Exception.h>

#include <cstdint>
#include <c10/util/string_view.h>

#include <string>

namespace fastact::linear_act {

enum class Activation { None, Relu, LeakyRelu, Sigmoid, Tanh, Gelu, GeluTanh, Silu, Elu, Selu, Softplus };
constexpr int64_t kActivations = int64_t(Activation::Softplus) + 1;

inline const char* activation_name(Activation act) {
  switch (act) {
    case Activation::None: return "none";
    case Activation::Relu: return "relu";
    case Activation::LeakyRelu: return "leaky_relu";
    case Activation::Sigmoid: return "sigmoid";
    case Activation::Tanh: return "tanh";
    case Activation::Gelu: return "gelu";
    case Activation::GeluTanh: return "gelu_tanh";
    case Activation::Silu: return "silu";
    case Activation::Elu: return "elu";
    case Activation::Selu: return "selu";
    case Activation::Softplus: return "softplus";
  }
  return "none";
}

inline std::string activation_names() {
  std::string names;
  for (int64_t code = 0; code < kActivations; ++code) {
    names += std::string(code ? ", '" : "'") + activation_name(static_cast<Activation>(code)) + "'";
  }
  return names;
}

inline Activation parse_activation(c10::string_view name) {
  for (int64_t code = 0; code < kActivations; ++code) {
    if (name == activation_name(static_cast<Activation>(code))) return static_cast<Activation>(code);
  }
  TORCH_CHECK_VALUE(false, "fastact.linear: activation must be one of ", activation_names(), ", got '",
                    std::string(name), "'");
}

// Whether the activation's derivative is a function of its output (ReLU,
// LeakyReLU with a slope >= 0, Sigmoid, Tanh): then the output is all a
// backward keeps. The others (GELU, SiLU, ELU, SELU, Softplus, a negative
// slope that loses the input's sign) differentiate from the pre-activation,
// with torch's formulas, as torch's own layers do.
inline bool differentiates_from_output(Activation act, double slope) {
  return act <= Activation::Tanh && !(act == Activation::LeakyRelu && slope < 0);
}

// The chain ops (_linear_chain) pass activations as codes: the enum's order,
// which is _spec.LINEAR_ACTIVATIONS's.
inline Activation activation_from_code(int64_t code) {
  TORCH_CHECK_VALUE(code >= 0 && code < kActivations, "fastact._linear_chain: activation code must be 0 to ",
                    kActivations - 1, " (", activation_names(), "), got ", code);
  return static_cast<Activation>(code);
}

}  // namespace fastact::linear_act
