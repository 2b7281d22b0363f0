// CPU kernels of the layer chain: fastact's own matmul for the small layers
// of tutorial models (both feature sizes up to kSmallFeatures), where MKL's
// per-call cost is most of the time (a 1000x2 @ 2x10 addmm costs 15-20 us
// for 20k multiply-adds); larger layers keep torch's (linear_chain.h).
//
// Forward, per row: y = act(x W^T + b), the outputs in vectors (W^T is
// packed once, padded to whole vectors), the activation applied before the
// store. Backward, per row: the activation's derivative applied to the
// incoming gradient as it is read, then in the same pass the bias gradient
// (summed), the weight gradient (x^T g, summed in per-thread partials) and
// the input gradient (g W). Not bit-identical to MKL's summation order: each
// value is a dot product of at most 64 terms (forward, input gradient) or a
// sum over the batch (weight and bias gradients), in the dtype.
#include "cpu/vec_io.h"
#include "cpu_shared/capability.h"
#include "linear_chain.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <array>
#include <type_traits>
#include <vector>

namespace fastact::cpu::CPU_CAPABILITY {
namespace {

using linear_act::Activation;
using linear_chain::Layer;

// Rows per task: enough multiply-adds that a thread's wake-up is worth it.
int64_t row_grain(int64_t in, int64_t out) { return std::max<int64_t>(1, (int64_t(1) << 18) / (in * out)); }

template <typename T>
C10_ALWAYS_INLINE Vectorized<T> activate(const Vectorized<T>& v, Activation act, const Vectorized<T>& slope) {
  using Vec = Vectorized<T>;
  switch (act) {
    case Activation::None: return v;
    case Activation::Relu: return at::vec::clamp_min(v, Vec(0));
    case Activation::LeakyRelu: return Vec::blendv(v * slope, v, v > Vec(0));
    case Activation::Sigmoid: return Vec(1) / (Vec(1) + vec_exp(Vec(0) - v));
    case Activation::Tanh: return vec_tanh(v);
  }
  return v;
}

// The derivative from the output y, as fastact's *_backward kernels.
template <typename T>
C10_ALWAYS_INLINE Vectorized<T> activation_grad(const Vectorized<T>& g, const Vectorized<T>& y, Activation act,
                                                const Vectorized<T>& slope) {
  using Vec = Vectorized<T>;
  switch (act) {
    case Activation::None: return g;
    case Activation::Relu: return Vec::blendv(g, Vec(0), y <= Vec(0));
    case Activation::LeakyRelu: return Vec::blendv(g * slope, g, y > Vec(0));
    case Activation::Sigmoid: return g * (Vec(1) - y) * y;
    case Activation::Tanh: return g * (Vec(1) - y * y);
  }
  return g;
}

template <typename T>
int64_t padded(int64_t n) {
  constexpr int64_t kSize = Vectorized<T>::size();
  return (n + kSize - 1) / kSize * kSize;
}

template <typename T>
bool takes(const at::Tensor& x, const at::Tensor& weight) {
  return weight.size(0) <= linear_chain::kSmallFeatures && weight.size(1) <= linear_chain::kSmallFeatures &&
         x.device().is_cpu() && weight.device().is_cpu();
}

// Vectors of outputs per row a loop is compiled for: 1 to 4, 8 or 16.
template <typename T>
int64_t compiled_blocks(int64_t out) {
  const int64_t needed = padded<T>(out) / Vectorized<T>::size();
  return needed <= 4 ? needed : needed <= 8 ? 8 : 16;
}

template <typename T, typename F>
void with_blocks(int64_t blocks, const F& f) {
  switch (blocks) {
    case 1: return f(std::integral_constant<int, 1>());
    case 2: return f(std::integral_constant<int, 2>());
    case 3: return f(std::integral_constant<int, 3>());
    case 4: return f(std::integral_constant<int, 4>());
    case 8: return f(std::integral_constant<int, 8>());
    default: return f(std::integral_constant<int, 16>());
  }
}

// y[rows, out] = act(x[rows, in] W^T + b), kBlocks vectors of outputs per row
// (W^T and b packed to that width, zero past `out`). Several rows at once
// where the vectors are few: each output is a chain of dependent
// multiply-adds, and independent rows keep the FMA units busy.
template <typename T, int kBlocks>
void forward_rows(const T* x, const T* packed_wt, const T* packed_bias, int64_t in, int64_t out, int64_t begin,
                  int64_t end, Activation act, T slope, T* y) {
  using Vec = Vectorized<T>;
  constexpr int64_t kSize = Vec::size();
  constexpr int kRows = kBlocks <= 4 ? 4 : 1;
  const int64_t width = kBlocks * kSize;
  const Vec slope_vec(slope);
  auto rows_at = [&](int64_t r, auto rows_tag) {
    constexpr int kR = decltype(rows_tag)::value;
    std::array<std::array<Vec, kBlocks>, kR> acc;
    for (int i = 0; i < kR; ++i) {
      for (int j = 0; j < kBlocks; ++j) acc[i][j] = Vec::loadu(packed_bias + j * kSize);
    }
    for (int64_t k = 0; k < in; ++k) {
      for (int j = 0; j < kBlocks; ++j) {
        const Vec wk = Vec::loadu(packed_wt + k * width + j * kSize);
        for (int i = 0; i < kR; ++i) acc[i][j] = at::vec::fmadd(Vec(x[(r + i) * in + k]), wk, acc[i][j]);
      }
    }
    for (int i = 0; i < kR; ++i) {
      for (int j = 0; j < kBlocks && j * kSize < out; ++j) {
        const int64_t count = std::min<int64_t>(kSize, out - j * kSize);
        activate(acc[i][j], act, slope_vec).store(y + (r + i) * out + j * kSize, count);
      }
    }
  };
  int64_t r = begin;
  for (; r + kRows <= end; r += kRows) rows_at(r, std::integral_constant<int, kRows>());
  for (; r < end; ++r) rows_at(r, std::integral_constant<int, 1>());
}

template <typename T>
at::Tensor small_forward(const at::Tensor& x_in, const at::Tensor& weight_in, const at::Tensor& bias_in,
                         const Layer& layer) {
  const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  const int64_t rows = x.size(0), in = weight.size(1), out = weight.size(0);
  const int64_t blocks = compiled_blocks<T>(out), width = blocks * Vectorized<T>::size();
  // W^T packed [in, width], and the bias [width], zero-padded.
  std::vector<T> wt(in * width, T(0)), bias(width, T(0));
  const T* w = weight.const_data_ptr<T>();
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t k = 0; k < in; ++k) wt[k * width + o] = w[o * in + k];
  }
  if (bias_in.defined()) {
    const at::Tensor b = bias_in.contiguous();
    std::copy(b.const_data_ptr<T>(), b.const_data_ptr<T>() + out, bias.begin());
  }
  at::Tensor y = at::empty({rows, out}, x.options());
  const T* xp = x.const_data_ptr<T>();
  T* yp = y.mutable_data_ptr<T>();
  const T slope = T(layer.slope);
  at::parallel_for(0, rows, row_grain(in, out), [&](int64_t begin, int64_t end) {
    with_blocks<T>(blocks, [&](auto blocks_tag) {
      forward_rows<T, decltype(blocks_tag)::value>(xp, wt.data(), bias.data(), in, out, begin, end, layer.act, slope,
                                                   yp);
    });
  });
  return y;
}

// The backward of rows [begin, end) of one layer, into this task's partial
// weight (transposed, [in, width]) and bias ([width]) gradients and its
// rows of gx, in three passes over the rows, each keeping its running sums
// in registers: gp = act'(g, y) (kept, padded to whole vectors, in `gp`)
// with the bias sum; then wt_acc[k] += x[k] gp for tiles of kTile inputs;
// then gx = gp W for groups of four rows.
template <typename T, int kBlocks>
void backward_rows(const T* g, const T* y, const T* x, const T* w, int64_t in, int64_t out, int64_t begin,
                   int64_t end, const Layer& layer, linear_chain::LayerNeeds needs, T* gp, T* wt_acc, T* bias_acc,
                   T* gx) {
  using Vec = Vectorized<T>;
  constexpr int64_t kSize = Vec::size();
  constexpr int64_t width = kBlocks * kSize;
  const Vec slope(T(layer.slope));
  {
    std::array<Vec, kBlocks> bias_sum;
    for (int j = 0; j < kBlocks; ++j) bias_sum[j] = Vec::loadu(bias_acc + j * kSize);
    for (int64_t r = begin; r < end; ++r) {
      for (int j = 0; j < kBlocks; ++j) {
        const int64_t count = std::max<int64_t>(0, std::min<int64_t>(kSize, out - j * kSize));
        const Vec d = count == 0 ? Vec(0)
                                 : activation_grad(Vec::loadu(g + r * out + j * kSize, count),
                                                   Vec::loadu(y + r * out + j * kSize, count), layer.act, slope);
        d.store(gp + (r - begin) * width + j * kSize);
        bias_sum[j] = bias_sum[j] + d;
      }
    }
    for (int j = 0; j < kBlocks; ++j) bias_sum[j].store(bias_acc + j * kSize);
  }
  if (needs.weight) {
    constexpr int kTile = kBlocks <= 2 ? 8 : kBlocks <= 4 ? 4 : 1;
    for (int64_t k0 = 0; k0 < in; k0 += kTile) {
      const int tile = static_cast<int>(std::min<int64_t>(kTile, in - k0));
      std::array<std::array<Vec, kBlocks>, kTile> acc;
      for (int t = 0; t < kTile; ++t) {
        for (int j = 0; j < kBlocks; ++j) acc[t][j] = t < tile ? Vec::loadu(wt_acc + (k0 + t) * width + j * kSize) : Vec(0);
      }
      for (int64_t r = begin; r < end; ++r) {
        const T* xr = x + r * in + k0;
        for (int j = 0; j < kBlocks; ++j) {
          const Vec d = Vec::loadu(gp + (r - begin) * width + j * kSize);
          for (int t = 0; t < kTile; ++t) {
            if (t < tile) acc[t][j] = at::vec::fmadd(Vec(xr[t]), d, acc[t][j]);
          }
        }
      }
      for (int t = 0; t < tile; ++t) {
        for (int j = 0; j < kBlocks; ++j) acc[t][j].store(wt_acc + (k0 + t) * width + j * kSize);
      }
    }
  }
  if (needs.input) {
    const int64_t in_blocks = padded<T>(in) / kSize;
    constexpr int kRows = 4;
    for (int64_t r = begin; r < end; r += kRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kRows, end - r));
      for (int64_t i = 0; i < in_blocks; ++i) {
        const int64_t count = std::min<int64_t>(kSize, in - i * kSize);
        std::array<Vec, kRows> acc;
        acc.fill(Vec(0));
        for (int64_t o = 0; o < out; ++o) {
          const Vec wo = Vec::loadu(w + o * in + i * kSize, count);
          for (int q = 0; q < kRows; ++q) {
            if (q < rows) acc[q] = at::vec::fmadd(Vec(gp[(r + q - begin) * width + o]), wo, acc[q]);
          }
        }
        for (int q = 0; q < rows; ++q) acc[q].store(gx + (r + q) * in + i * kSize, count);
      }
    }
  }
}

template <typename T>
void small_backward(const at::Tensor& g_in, const at::Tensor& x_in, const at::Tensor& y_in,
                    const at::Tensor& weight_in, const Layer& layer, linear_chain::LayerNeeds needs,
                    linear_chain::LayerGrads& result) {
  const at::Tensor g = g_in.contiguous(), x = x_in.contiguous(), y = y_in.contiguous(),
                   weight = weight_in.contiguous();
  const int64_t rows = g.size(0), in = weight.size(1), out = weight.size(0);
  const int64_t blocks = compiled_blocks<T>(out), width = blocks * Vectorized<T>::size();
  const int64_t slot = in * width + width;  // one task's partial weight and bias gradients
  const int64_t grain = row_grain(in, out);
  const int64_t tasks = rows > grain ? at::get_num_threads() : 1;
  std::vector<T> partials(tasks * slot, T(0));
  std::vector<T> gp(rows * width);
  at::Tensor gx = needs.input ? at::empty({rows, in}, g.options()) : at::Tensor();
  const T *gptr = g.const_data_ptr<T>(), *yp = y.const_data_ptr<T>(), *xp = x.const_data_ptr<T>(),
          *wp = weight.const_data_ptr<T>();
  T* gxp = needs.input ? gx.mutable_data_ptr<T>() : nullptr;
  auto run = [&](int64_t begin, int64_t end, int64_t task) {
    T* mine = partials.data() + task * slot;
    with_blocks<T>(blocks, [&](auto blocks_tag) {
      backward_rows<T, decltype(blocks_tag)::value>(gptr, yp, xp, wp, in, out, begin, end, layer, needs,
                                                    gp.data() + begin * width, mine, mine + in * width, gxp);
    });
  };
  if (tasks == 1) {
    run(0, rows, 0);
  } else {
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) { run(begin, end, at::get_thread_num()); });
  }
  for (int64_t t = 1; t < tasks; ++t) {
    for (int64_t i = 0; i < slot; ++i) partials[i] += partials[t * slot + i];
  }
  if (needs.weight) {
    result.weight = at::empty({out, in}, g.options());
    T* gw = result.weight.mutable_data_ptr<T>();
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t k = 0; k < in; ++k) gw[o * in + k] = partials[k * width + o];
    }
  }
  if (needs.bias) {
    result.bias = at::empty({out}, g.options());
    std::copy(partials.begin() + in * width, partials.begin() + in * width + out, result.bias.mutable_data_ptr<T>());
  }
  result.input = gx;
}

bool is_float_or_double(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble;
}

at::Tensor forward_layer(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const Layer& layer) {
  if (!is_float_or_double(x) || !takes<float>(x, weight)) return at::Tensor();
  at::Tensor y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastact::_linear_chain", [&] {
    y = small_forward<scalar_t>(x, weight, bias, layer);
  });
  return y;
}

bool backward_layer(const at::Tensor& g, const at::Tensor& x, const at::Tensor& y, const at::Tensor& weight,
                    const Layer& layer, linear_chain::LayerNeeds needs, linear_chain::LayerGrads& out) {
  if (!is_float_or_double(x) || g.scalar_type() != x.scalar_type() || !takes<float>(x, weight)) return false;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastact::_linear_chain_backward", [&] {
    small_backward<scalar_t>(g, x, y, weight, layer, needs, out);
  });
  return true;
}

std::vector<at::Tensor> linear_chain(const at::Tensor& input, at::TensorList weights,
                                     const c10::List<std::optional<at::Tensor>>& biases,
                                     at::IntArrayRef activations, at::ArrayRef<double> negative_slopes) {
  return linear_chain::chain_forward(input, weights, biases, activations, negative_slopes, &forward_layer);
}

std::vector<at::Tensor> linear_chain_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                              at::TensorList outputs, at::TensorList weights,
                                              at::IntArrayRef activations, at::ArrayRef<double> negative_slopes,
                                              at::IntArrayRef needs) {
  return linear_chain::chain_backward(grad_output, input, outputs, weights, activations, negative_slopes, needs,
                                      &backward_layer);
}

}  // namespace

void register_linear_chain(CpuKernels& kernels) {
  kernels._linear_chain = &linear_chain;
  kernels._linear_chain_backward = &linear_chain_backward;
}

}  // namespace fastact::cpu::CPU_CAPABILITY
