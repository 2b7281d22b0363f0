// CUDA glue for softmax and log_softmax (kernels: softmax_kernel.cu). Like
// the CPU kernels, they read a contiguous input and return a contiguous
// result.
#include "checks.h"
#include "cuda/glue.h"

#include <ATen/ops/empty.h>
#include <torch/library.h>

namespace fastact::cuda {
namespace {

template <bool kLog>
at::Tensor softmax_forward(const at::Tensor& self, int64_t dim) {
  const char* name = kLog ? "log_softmax" : "softmax";
  dim = check_softmax_input(name, self, dim);
  const ScalarType type = scalar_type_of(self, name);
  const DeviceScope scope(self);
  const at::Tensor x = self.contiguous();
  at::Tensor y = at::empty(self.sizes(), self.options());
  check_launch(launch_softmax(kLog, type, x.const_data_ptr(), y.mutable_data_ptr(), row_shape(x, dim),
                              scope.stream()),
               name);
  return y;
}

template <bool kLog>
at::Tensor softmax_backward(const at::Tensor& grad_output, const at::Tensor& output, int64_t dim) {
  const char* name = kLog ? "log_softmax_backward" : "softmax_backward";
  dim = check_softmax_backward(name, grad_output, output, dim);
  const ScalarType type = scalar_type_of(output, name);
  const DeviceScope scope(output);
  const at::Tensor g = grad_output.contiguous(), y = output.contiguous();
  at::Tensor dx = at::empty(output.sizes(), output.options());
  check_launch(launch_softmax_backward(kLog, type, g.const_data_ptr(), y.const_data_ptr(), dx.mutable_data_ptr(),
                                       row_shape(y, dim), scope.stream()),
               name);
  return dx;
}

}  // namespace

FASTACT_CUDA_KERNELS(m) {
  m.impl("softmax", &softmax_forward<false>);
  m.impl("log_softmax", &softmax_forward<true>);
  m.impl("softmax_backward", &softmax_backward<false>);
  m.impl("log_softmax_backward", &softmax_backward<true>);
}

}  // namespace fastact::cuda
