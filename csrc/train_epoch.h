// fastact.TrainStep.epoch's loop in C++ (train_epoch.cpp): a whole epoch of
// TrainStep calls, gather -> _linear_chain_loss_grad -> the optimizer's
// step op, with no Python per batch. It calls the same ops TrainStep and
// fastact.optim call from Python, in the same order with the same
// arguments, so its parameters, optimizer state and losses are those of
// the Python loop bit for bit. Not an op: it trains, it has no graph, no
// fake kernel and no place in torch.compile; library.cpp binds it for
// Python only.
#pragma once
#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <vector>

namespace fastact::train_epoch {

// The chain and its loss, as _linear_chain_loss_grad takes them after
// input and target.
struct Chain {
  std::vector<at::Tensor> weights;
  c10::List<std::optional<at::Tensor>> biases;
  std::vector<int64_t> activations;
  std::vector<double> negative_slopes;
  std::vector<int64_t> needs;
  int64_t loss;
  std::optional<at::Tensor> class_weight;
  int64_t reduction, ignore_index;
  double label_smoothing;
};

// One param group of fastact.optim's SGD or Adam(W), with its state: the
// lists the group's step op takes, and for each parameter the index of its
// gradient in the chain's gradient list.
struct Optimizer {
  enum class Kind { Sgd, Adam } kind;
  std::vector<at::Tensor> params;
  std::vector<int64_t> grad_slots;
  // SGD: the momentum buffers (empty without momentum); Adam: exp_avgs.
  std::vector<at::Tensor> first, exp_avg_sqs, max_exp_avg_sqs, steps;
  double lr, weight_decay, momentum, dampening, beta1, beta2, eps;
  bool nesterov, maximize, amsgrad, decoupled_weight_decay;
};

struct Result {
  at::Tensor losses;               // [batches done], the loss's dtype
  std::vector<at::Tensor> grads;   // the last batch's, as _linear_chain_loss_grad returns them
  int64_t done;                    // batches done: fewer than asked when stop() said so
};

// Batches b = 0, 1, ... of rows order[b * batch_size : (b + 1) * batch_size]
// (the last one shorter, unless dropped) of data and targets. stop() is
// asked between batches, at most every few milliseconds: true ends the
// epoch there, after a whole step.
// Each batch steps the optimizer's groups in order, as fastact.optim's step.
Result run(const at::Tensor& data, const at::Tensor& targets, const at::Tensor& order, int64_t batch_size,
           bool drop_last, const Chain& chain, const std::vector<Optimizer>& groups,
           const std::function<bool()>& stop);

}  // namespace fastact::train_epoch
