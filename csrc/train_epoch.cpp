#include "train_epoch.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <chrono>
#include <cstring>

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

// Rows index[0..n) of `from` into `to` (both contiguous, rows of
// row_bytes): index_select's result, without its dispatch and checks,
// which cost more than copying a tutorial's batch.
void gather_rows(const at::Tensor& from, const int64_t* index, int64_t n, int64_t row_bytes, at::Tensor& to) {
  const char* src = static_cast<const char*>(from.const_data_ptr());
  char* dst = static_cast<char*>(to.mutable_data_ptr());
  for (int64_t r = 0; r < n; ++r) std::memcpy(dst + r * row_bytes, src + index[r] * row_bytes, row_bytes);
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
  // Contiguous dataset tensors are gathered row by row in place; the order
  // is checked against them once, so no copy reads past their rows.
  const bool direct = data.is_contiguous() && targets.is_contiguous() && order.is_contiguous() &&
                      data.size(0) == targets.size(0);
  const int64_t* index = order.const_data_ptr<int64_t>();
  if (direct && rows > 0) {
    const auto [low, high] = std::minmax_element(index, index + rows);
    TORCH_CHECK_INDEX((*low >= 0 && *high < data.size(0)), "fastact: an index of the epoch's order is "
                      "out of range for ", data.size(0), " rows");
  }
  const int64_t x_row = data.numel() ? data.nbytes() / data.size(0) : 0;
  const int64_t y_row = targets.numel() ? targets.nbytes() / targets.size(0) : 0;
  std::vector<double> losses;
  losses.reserve(batches);
  at::ScalarType loss_dtype = data.scalar_type();
  auto last_asked = std::chrono::steady_clock::now();
  for (int64_t b = 0; b < batches; ++b) {
    const int64_t begin = b * batch_size, n = std::min(batch_size, rows - begin);
    if (n != x.size(0)) x = shaped(data, n), y = shaped(targets, n);
    if (direct) {
      gather_rows(data, index + begin, n, x_row, x);
      gather_rows(targets, index + begin, n, y_row, y);
    } else {
      const at::Tensor rows_of = order.narrow(0, begin, n);
      at::index_select_out(x, data, 0, rows_of);
      at::index_select_out(y, targets, 0, rows_of);
    }
    // below autograd, where the op's Autograd kernel would send it anyway
    // (it builds no graph): one dispatch fewer per batch
    at::Tensor loss;
    std::vector<at::Tensor> grads;
    {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      std::tie(loss, grads) = ops::_linear_chain_loss_grad(x, y, chain.weights, chain.biases, chain.activations,
                                                           chain.negative_slopes, chain.needs, chain.loss,
                                                           chain.class_weight, chain.reduction, chain.ignore_index,
                                                           chain.label_smoothing);
    }
    // the optimizer's op through the whole dispatcher, as from Python: its
    // ADInplaceOrView kernel bumps the parameters' version counters
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
