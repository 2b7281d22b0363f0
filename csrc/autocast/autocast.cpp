// Autocast for the fastact ops: torch's autocast policy for the torch op each
// one replaces, so that under torch.autocast a swapped model computes (and
// returns) what the torch model would.
//  - cross_entropy, binary_cross_entropy_with_logits: float32 (torch lists
//    them, or the nll_loss/log_softmax they are made of, as fp32 ops on CPU
//    and CUDA): reduced-precision logits, targets and weights are cast up.
//  - linear_act: the autocast dtype (torch's linear is a lower-precision op).
//  - _linear_chain: the autocast dtype for the input and every layer's weight
//    and bias, as each nn.Linear of the unfused model casts them (an
//    activation between runs in its input's dtype, the autocast dtype), so
//    the chain's node sees one dtype throughout.
//  - softmax, log_softmax: float32 on CUDA (torch's fp32_set_opt_dtype: the
//    dtype argument fastact takes in Python is left unset), unchanged on CPU.
//  - the pointwise activations: not listed by torch, so no kernel here: they
//    run in their input's dtype, as torch's.
// Each kernel casts with at::autocast::cached_cast (float64 and integer
// tensors pass through), excludes the autocast key and redispatches.
#include "op_handles.h"

#include <ATen/autocast_mode.h>
#include <torch/library.h>

namespace fastact::autocast {
namespace {

using at::autocast::CastPolicy;
namespace ops = fastact::ops;

template <CastPolicy policy, c10::DeviceType device, typename Signature, Signature* F>
constexpr auto wrap = &at::autocast::WrapFunction<policy, device, Signature, Signature, F>::type::call;

template <c10::DeviceType device>
void register_losses_and_linear(torch::Library& m) {
  m.impl("cross_entropy", wrap<CastPolicy::fp32, device, decltype(ops::cross_entropy), &ops::cross_entropy>);
  m.impl("binary_cross_entropy_with_logits",
         wrap<CastPolicy::fp32, device, decltype(ops::binary_cross_entropy_with_logits),
              &ops::binary_cross_entropy_with_logits>);
  m.impl("linear_act", wrap<CastPolicy::lower_precision_fp, device, decltype(ops::linear_act), &ops::linear_act>);
}

// WrapFunction casts Tensor and Tensor[] arguments but passes Tensor?[]
// through: the biases are cast here.
template <c10::DeviceType device>
std::vector<at::Tensor> linear_chain(const at::Tensor& input, at::TensorList weights,
                                     const c10::List<std::optional<at::Tensor>>& biases, at::IntArrayRef activations,
                                     at::ArrayRef<double> negative_slopes) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(at::autocast::get_autocast_dispatch_key_from_device_type(device));
  const at::ScalarType to = at::autocast::get_lower_precision_fp_from_device_type(device);
  c10::List<std::optional<at::Tensor>> cast_biases;
  cast_biases.reserve(biases.size());
  for (const std::optional<at::Tensor>& b : biases) cast_biases.push_back(at::autocast::cached_cast(to, b, device));
  return ops::_linear_chain(at::autocast::cached_cast(to, input, device), at::autocast::cached_cast(to, weights, device),
                            cast_biases, activations, negative_slopes);
}

template <c10::DeviceType device>
void register_linear_chain(torch::Library& m) {
  m.impl("_linear_chain", &linear_chain<device>);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, AutocastCPU, m) {
  register_losses_and_linear<c10::DeviceType::CPU>(m);
  register_linear_chain<c10::DeviceType::CPU>(m);
}

TORCH_LIBRARY_IMPL(fastact, AutocastCUDA, m) {
  register_losses_and_linear<c10::DeviceType::CUDA>(m);
  register_linear_chain<c10::DeviceType::CUDA>(m);
  m.impl("softmax", wrap<CastPolicy::fp32, c10::DeviceType::CUDA, decltype(ops::softmax), &ops::softmax>);
  m.impl("log_softmax", wrap<CastPolicy::fp32, c10::DeviceType::CUDA, decltype(ops::log_softmax), &ops::log_softmax>);
}

}  // namespace fastact::autocast
