// fastact._linear_chain (op_list.h): a run of Linear + activation layers as
// one op and one autograd node. This header holds what its kernels share:
// the checks, and the drivers that walk the layers (composite/
// linear_chain.cpp) with, per layer, torch's own arithmetic (addmm and the
// activation, as linear_act; torch's addmm derivative) unless the caller's
// small-layer kernel takes the layer (the CPU kernel's own matmul for
// feature sizes up to kSmallFeatures).
#pragma once
#include "linear_act.h"
#include "op_handles.h"

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <vector>

namespace fastact::linear_chain {

constexpr int64_t kSmallFeatures = 64;

struct Layer {
  linear_act::Activation act;
  double slope;  // the activation's parameter (linear_act.h)
};

// Whether the chain keeps only the layer's output for its backward; for the
// others (linear_act::differentiates_from_output) _linear_chain returns the
// pre-activation too, after the n outputs, in layer order.
inline bool keeps_output(const Layer& layer) {
  return linear_act::differentiates_from_output(layer.act, layer.slope);
}

// Checks the lists and shapes (torch's message for a shape mismatch) and
// parses the activations.
std::vector<Layer> check_chain(const at::Tensor& input, at::TensorList weights,
                               const c10::List<std::optional<at::Tensor>>& biases, at::IntArrayRef activations,
                               at::ArrayRef<double> negative_slopes);

// A layer's forward on a 2-D input [rows, in]: returns [rows, out]. The
// kernel returns an undefined tensor for a layer it does not take.
using SmallForward = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& weight,
                                              const at::Tensor& bias, const Layer& layer)>;

std::vector<at::Tensor> chain_forward(const at::Tensor& input, at::TensorList weights,
                                      const c10::List<std::optional<at::Tensor>>& biases,
                                      at::IntArrayRef activations, at::ArrayRef<double> negative_slopes,
                                      const SmallForward& small);

// d loss / d (x, W, b) of one layer from g = d loss / d y, all 2-D; each
// computed only where asked (undefined otherwise).
struct LayerGrads {
  at::Tensor input, weight, bias;
};
struct LayerNeeds {
  bool input, weight, bias;
};
// The kernel returns false for a layer it does not take.
using SmallBackward = std::function<bool(const at::Tensor& g, const at::Tensor& x, const at::Tensor& y,
                                         const at::Tensor& weight, const Layer& layer, LayerNeeds needs,
                                         LayerGrads& out)>;

std::vector<at::Tensor> chain_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                       at::TensorList outputs, at::TensorList weights, at::IntArrayRef activations,
                                       at::ArrayRef<double> negative_slopes, at::IntArrayRef needs,
                                       const SmallBackward& small);

// The losses _linear_chain_loss_grad applies to the chain's last output, by
// code (the order of _spec.CHAIN_LOSSES).
enum class ChainLoss : int64_t { CrossEntropy = 0, Mse = 1, BceWithLogits = 2 };

// Its loss code and reduction (a scalar loss: mean or sum).
void check_chain_loss(int64_t loss, int64_t reduction);

// _linear_chain_loss_grad as the ops it is made of (the chain's, the
// loss's), on any device: the CPU kernel's fallback for what its own step
// does not take.
TensorAndList chain_loss_grad(const at::Tensor& input, const at::Tensor& target, at::TensorList weights,
                              const c10::List<std::optional<at::Tensor>>& biases, at::IntArrayRef activations,
                              at::ArrayRef<double> negative_slopes, at::IntArrayRef needs, int64_t loss,
                              const std::optional<at::Tensor>& class_weight, int64_t reduction, int64_t ignore_index,
                              double label_smoothing);

}  // namespace fastact::linear_chain
