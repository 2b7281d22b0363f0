// The fastact ops (op_list.h) as C++ functions that go through the
// dispatcher, ops::relu(x) and so on, for every kernel that calls an op:
// autograd (called under AutoDispatchBelowADInplaceOrView they reach the
// backend kernel; called plainly, in double backward, they are recorded),
// autocast, the composite kernels and the Python bindings.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <tuple>
#include <vector>

namespace fastact {

// The C++ type of a schema's "-> (Tensor, Tensor)".
using TensorPair = std::tuple<at::Tensor, at::Tensor>;
// ... and of "-> (Tensor, Tensor[])".
using TensorAndList = std::tuple<at::Tensor, std::vector<at::Tensor>>;

template <typename Signature>
c10::TypedOperatorHandle<Signature> lookup_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").template typed<Signature>();
}

namespace ops {
// Each handle is looked up once, on first use.
#define FASTACT_OP(name, schema, Return, params, args)             \
  inline Return name params {                                      \
    static const auto op = lookup_op<Return params>("fastact::" #name); \
    return op.call args;                                           \
  }
#include "op_list.h"
#undef FASTACT_OP
}  // namespace ops

}  // namespace fastact
