#include "train_epoch.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <chrono>

#include "op_handles.h"

namespace fastact::train_epoch {
namespace {

// How often stop() is asked: a Ctrl-C ends the epoch within this, and
// asking (the GIL, Python's signal flags) costs ~0.3 us, a few percent of a
// tutorial step if asked every batch.
constexpr auto kStopInterval = std::chrono::milliseconds(5);

void step_group(const Optimizer& g, const std::vector<at::Tensor>& chain_grads) {
  std::vector<at::Tensor> grads;
  grads.reserve(g.grad_slots.size());
  for (int64_t slot : g.grad_slots) grads.push_back(chain_grads[slot]);
  if (g.kind == Optimizer::Kind::Sgd) {
    // the buffers exist (TrainStep.epoch steps a fresh optimizer's first batch in Python): never fresh
    ops::_sgd_step_(g.params, grads, g.first, g.lr, g.weight_decay, g.momentum, g.dampening, g.nesterov,
                    g.maximize, false);
  } else {
    ops::_adam_step_(g.params, grads, g.first, g.exp_avg_sqs, g.max_exp_avg_sqs, g.steps, g.lr, g.beta1, g.beta2,
                     g.weight_decay, g.eps, g.amsgrad, g.maximize, g.decoupled_weight_decay);
  }
}

}  // namespace

Result run(const at::Tensor& data, const at::Tensor& targets, const at::Tensor& order, int64_t batch_size,
           bool drop_last, const Chain& chain, const std::vector<Optimizer>& groups,
           const std::function<bool()>& stop) {
  TORCH_CHECK(batch_size > 0, "fastact: batch_size must be positive, got ", batch_size);
  TORCH_CHECK(order.dim() == 1 && order.scalar_type() == at::kLong, "fastact: the epoch's order is a 1-d int64 tensor");
  const int64_t rows = order.size(0);
  const int64_t batches = drop_last ? rows / batch_size : (rows + batch_size - 1) / batch_size;
  Result result;
  result.done = 0;
  // The batches the gather fills: reused, since nothing the step returns
  // holds them (the op reads its input and target and keeps neither).
  auto shaped = [](const at::Tensor& t, int64_t n) {
    std::vector<int64_t> sizes(t.sizes().begin(), t.sizes().end());
    sizes[0] = n;
    return at::empty(sizes, t.options().memory_format(at::MemoryFormat::Contiguous));
  };
  at::Tensor x = shaped(data, std::min(batch_size, rows)), y = shaped(targets, std::min(batch_size, rows));
  std::vector<double> losses;
  losses.reserve(batches);
  at::ScalarType loss_dtype = data.scalar_type();
  auto last_asked = std::chrono::steady_clock::now();
  for (int64_t b = 0; b < batches; ++b) {
    const int64_t begin = b * batch_size, n = std::min(batch_size, rows - begin);
    if (n != x.size(0)) x = shaped(data, n), y = shaped(targets, n);
    const at::Tensor index = order.narrow(0, begin, n);
    at::index_select_out(x, data, 0, index);
    at::index_select_out(y, targets, 0, index);
    auto [loss, grads] = ops::_linear_chain_loss_grad(x, y, chain.weights, chain.biases, chain.activations,
                                                       chain.negative_slopes, chain.needs, chain.loss,
                                                       chain.class_weight, chain.reduction, chain.ignore_index,
                                                       chain.label_smoothing);
    for (const auto& group : groups) step_group(group, grads);
    loss_dtype = loss.scalar_type();
    // read in place (item() is a dispatcher call): exact, a double holds every loss dtype
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, loss_dtype, "fastact::train_epoch", [&] {
      losses.push_back(double(*loss.const_data_ptr<scalar_t>()));
    });
    result.grads = std::move(grads);
    result.done = b + 1;
    const auto now = std::chrono::steady_clock::now();
    if (b + 1 < batches && now - last_asked >= kStopInterval) {
      last_asked = now;
      if (stop()) break;
    }
  }
  result.losses = at::tensor(losses, at::TensorOptions().dtype(at::kDouble)).to(loss_dtype);
  return result;
}

}  // namespace fastact::train_epoch
