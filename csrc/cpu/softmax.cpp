// CPU kernels for softmax and log_softmax, forward and backward.
//
// The tensor is viewed as [outer, C, inner] around the reduced dim (rows.h);
// each op's math is written once, in the *_row functions below, against
// either row policy. Arithmetic is in acc_t (fp32 for half/bfloat16); softmax keeps exp(x - max)
// in an fp32 scratch row so reduced precision is rounded once, at the end.
#include "checks.h"
#include "cpu_shared/capability.h"
#include "cpu_shared/output_allocator.h"
#include "cpu/rows.h"

#include <ATen/Dispatch.h>

#include <limits>
#include <vector>

namespace fastact::cpu::CPU_CAPABILITY {
namespace {

// y = exp(x - max) / sum exp(x - max)
template <typename T, typename Row>
void softmax_row(const Row& row, const T* x, T* y, acc_t<T>* scratch) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  const Vec max = row.reduce(-std::numeric_limits<acc_t<T>>::infinity(), vec_max<Vec>,
                             [&](int64_t o, int64_t n) { return IO::load(x + o, n); });
  const Vec sum = row.reduce(0, vec_add<Vec>, [&](int64_t o, int64_t n) {
    Vec e = vec_exp(IO::load(x + o, n) - max);
    e.store(scratch + row.scratch_index(o));
    return e;
  });
  const Vec inv = Vec(1) / sum;
  row.map(y, [&](int64_t o, int64_t) { return Vec::loadu(scratch + row.scratch_index(o)) * inv; });
}

// y = x - max - log sum exp(x - max)
template <typename T, typename Row>
void log_softmax_row(const Row& row, const T* x, T* y, acc_t<T>*) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  const Vec max = row.reduce(-std::numeric_limits<acc_t<T>>::infinity(), vec_max<Vec>,
                             [&](int64_t o, int64_t n) { return IO::load(x + o, n); });
  const Vec sum = row.reduce(0, vec_add<Vec>,
                             [&](int64_t o, int64_t n) { return vec_exp(IO::load(x + o, n) - max); });
  const Vec log_sum = row.log(sum);
  row.map(y, [&](int64_t o, int64_t n) { return (IO::load(x + o, n) - max) - log_sum; });
}

// dx = y * (g - sum g * y)
template <typename T, typename Row>
void softmax_backward_row(const Row& row, const T* g, const T* y, T* dx) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  const Vec dot = row.reduce(0, vec_add<Vec>, [&](int64_t o, int64_t n) {
    return IO::load(g + o, n) * IO::load(y + o, n);
  });
  row.map(dx, [&](int64_t o, int64_t n) { return IO::load(y + o, n) * (IO::load(g + o, n) - dot); });
}

// dx = g - exp(y) * sum g
template <typename T, typename Row>
void log_softmax_backward_row(const Row& row, const T* g, const T* y, T* dx) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  const Vec sum = row.reduce(0, vec_add<Vec>, [&](int64_t o, int64_t n) { return IO::load(g + o, n); });
  row.map(dx, [&](int64_t o, int64_t n) { return IO::load(g + o, n) - vec_exp(IO::load(y + o, n)) * sum; });
}

template <bool kLog>
at::Tensor softmax_forward(const at::Tensor& self, int64_t dim) {
  const char* name = kLog ? "log_softmax" : "softmax";
  dim = check_softmax_input(name, self, dim);
  at::Tensor x = self.contiguous();
  at::Tensor y = empty_output(self.sizes(), self.options());
  if (y.numel() == 0) return y;
  const RowShape s = row_shape(x, dim);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  kLog ? "log_softmax" : "softmax", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const bool stream = use_streaming_stores(y.nbytes());
    for_each_row<scalar_t, 1>(s, stream, {xp}, yp, [&](const auto& row, const auto& in, scalar_t* out,
                                                       acc_t<scalar_t>* scratch) {
      if constexpr (kLog) {
        log_softmax_row<scalar_t>(row, in[0], out, scratch);
      } else {
        softmax_row<scalar_t>(row, in[0], out, scratch);
      }
    });
  });
  return y;
}

template <bool kLog>
at::Tensor softmax_backward(const at::Tensor& grad_output, const at::Tensor& output, int64_t dim) {
  const char* name = kLog ? "log_softmax_backward" : "softmax_backward";
  dim = check_softmax_backward(name, grad_output, output, dim);
  at::Tensor g = grad_output.contiguous(), y = output.contiguous();
  at::Tensor dx = empty_output(output.sizes(), output.options());
  if (dx.numel() == 0) return dx;
  const RowShape s = row_shape(y, dim);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(),
                                  kLog ? "log_softmax_backward" : "softmax_backward", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    scalar_t* dxp = dx.mutable_data_ptr<scalar_t>();
    const bool stream = use_streaming_stores(dx.nbytes());
    for_each_row<scalar_t, 2>(s, stream, {gp, yp}, dxp, [&](const auto& row, const auto& in, scalar_t* out,
                                                           acc_t<scalar_t>*) {
      if constexpr (kLog) {
        log_softmax_backward_row<scalar_t>(row, in[0], in[1], out);
      } else {
        softmax_backward_row<scalar_t>(row, in[0], in[1], out);
      }
    });
  });
  return dx;
}

}  // namespace

void register_softmax(CpuKernels& kernels) {
  kernels.softmax = &softmax_forward<false>;
  kernels.log_softmax = &softmax_forward<true>;
  kernels.softmax_backward = &softmax_backward<false>;
  kernels.log_softmax_backward = &softmax_backward<true>;
}

}  // namespace fastact::cpu::CPU_CAPABILITY
