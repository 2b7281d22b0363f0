// CUDA kernels for the pointwise activations and their backward. One
// elementwise kernel serves them all: it
// walks the storage in 16-byte packs (grid-stride, int64 offsets) and applies
// a functor in acc_t, so each activation is only its math, written below.
//   relu(x)       = max(x, 0)                  d: g * (y > 0)
//   leaky_relu(x) = x > 0 ? x : a x            d: g * (s > 0 ? 1 : a)
//   sigmoid(x)    = 1 / (1 + exp(-x))          d: g * y (1 - y)
//   tanh(x)                                    d: g * (1 - y^2)
//   gelu(x)       = x Phi(x), or 0.5 x (1 + tanh(b (x + k x^3)))
//   selu(x)       = l (x > 0 ? x : a (exp(x) - 1))
//                 d: g * (x <= 0 ? a l exp(x) : l), or from y: g * (y <= 0 ? y + a l : l)
#include "cuda/device.cuh"

namespace fastact::cuda {
namespace {

constexpr double kGeluBeta = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kGeluKappa = 0.044715;
constexpr double kSqrtHalf = 0.7071067811865476;
constexpr double kInvSqrt2Pi = 0.3989422804014327;

// Forward functors: y = op(x). Backward functors: dx = op(g, saved).
struct Relu {
  template <typename A>
  __device__ A operator()(A x) const {
    if constexpr (std::is_unsigned_v<A>) {
      return x;
    } else {
      return x < A(0) ? A(0) : x;  // NaN stays NaN, as torch's clamp_min
    }
  }
  template <typename A>
  __device__ A operator()(A g, A y) const {
    return y <= A(0) ? A(0) : g;  // torch's threshold_backward(g, y, 0)
  }
};

struct LeakyRelu {
  double slope;
  template <typename A>
  __device__ A operator()(A x) const {
    return x > A(0) ? x : x * A(slope);
  }
  template <typename A>
  __device__ A operator()(A g, A s) const {
    return s > A(0) ? g : g * A(slope);
  }
};

struct Sigmoid {
  template <typename A>
  __device__ A operator()(A x) const {
    return A(1) / (A(1) + math::exp(-x));
  }
  template <typename A>
  __device__ A operator()(A g, A y) const {
    return g * (A(1) - y) * y;
  }
};

struct Tanh {
  template <typename A>
  __device__ A operator()(A x) const {
    return math::tanh(x);
  }
  template <typename A>
  __device__ A operator()(A g, A y) const {
    return g * (A(1) - y * y);
  }
};

struct GeluErf {
  template <typename A>
  __device__ A operator()(A x) const {
    return A(0.5) * x * (A(1) + math::erf(x * A(kSqrtHalf)));
  }
  template <typename A>
  __device__ A operator()(A g, A x) const {
    const A cdf = A(0.5) * (A(1) + math::erf(x * A(kSqrtHalf)));
    const A pdf = math::exp(A(-0.5) * x * x) * A(kInvSqrt2Pi);
    return g * (cdf + x * pdf);
  }
};

struct GeluTanh {
  template <typename A>
  __device__ A operator()(A x) const {
    return A(0.5) * x * (A(1) + math::tanh(A(kGeluBeta) * (x + A(kGeluKappa) * x * x * x)));
  }
  template <typename A>
  __device__ A operator()(A g, A x) const {
    const A x_sq = x * x;
    const A t = math::tanh(A(kGeluBeta) * (x + A(kGeluKappa) * x_sq * x));
    const A left = A(0.5) * (A(1) + t);
    const A right = A(0.5) * x * (A(1) - t * t) * A(kGeluBeta) * (A(1) + A(3) * A(kGeluKappa) * x_sq);
    return g * (left + right);
  }
};

struct Selu {
  bool is_result;  // backward: the saved tensor is the output (selu_), else the input
  template <typename A>
  __device__ A operator()(A x) const {
    return x > A(0) ? A(kSeluScale) * x : A(kSeluAlpha * kSeluScale) * math::expm1(x);
  }
  // torch's elu_backward (NaN in, NaN out, as its vectorized CPU loop)
  template <typename A>
  __device__ A operator()(A g, A s) const {
    if (s > A(0)) return g * A(kSeluScale);
    return is_result ? g * (s + A(kSeluAlpha * kSeluScale)) : g * (A(kSeluAlpha * kSeluScale) * math::exp(s));
  }
};

// out = op(in[0], ..., in[N-1]) over n elements, V at a time; the last
// n % V elements (V > 1) go one per thread of the first block.
template <typename T, int V, int N, typename Op>
__global__ void map_kernel(const T* __restrict__ in0, const T* __restrict__ in1, T* out, int64_t n, Op op) {
  auto apply = [&](int64_t i, int count) {
    Pack<T, V> a, b, r;
    if (count == V) {
      a = load_pack<T, V>(in0 + i);
      if constexpr (N == 2) b = load_pack<T, V>(in1 + i);
    } else {
      a.v[0] = in0[i];
      if constexpr (N == 2) b.v[0] = in1[i];
    }
    for (int k = 0; k < count; ++k) {
      if constexpr (N == 1) {
        r.v[k] = from_acc<T>(op(to_acc(a.v[k])));
      } else {
        r.v[k] = from_acc<T>(op(to_acc(a.v[k]), to_acc(b.v[k])));
      }
    }
    if (count == V) {
      store_pack<T, V>(out + i, r);
    } else {
      out[i] = r.v[0];
    }
  };
  const int64_t packs = n / V;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < packs; p += int64_t(gridDim.x) * blockDim.x) {
    apply(p * V, V);
  }
  if (blockIdx.x == 0 && threadIdx.x < n - packs * V) apply(packs * V + threadIdx.x, 1);
}

template <typename T, int N, typename Op>
cudaError_t launch_map(const T* in0, const T* in1, T* out, int64_t n, Op op, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t max_blocks = int64_t(sm_count()) * (2048 / kThreads) * 4;
  auto blocks_for = [&](int64_t packs) {
    return std::max<int64_t>(1, std::min(max_blocks, (packs + kThreads - 1) / kThreads));
  };
  if (n == 0) return cudaSuccess;
  if (packs_aligned(in0, in1, out)) {
    constexpr int V = kPack<T>;
    return launch(map_kernel<T, V, N, Op>, blocks_for(n / V), kThreads, stream, in0, in1, out, n, op);
  }
  return launch(map_kernel<T, 1, N, Op>, blocks_for(n), kThreads, stream, in0, in1, out, n, op);
}

// Calls f(functor) for `act`.
template <typename F>
cudaError_t with_activation(Activation act, double param, F&& f) {
  switch (act) {
    case Activation::Relu: return f(Relu{});
    case Activation::LeakyRelu: return f(LeakyRelu{param});
    case Activation::Sigmoid: return f(Sigmoid{});
    case Activation::Tanh: return f(Tanh{});
    case Activation::GeluErf: return f(GeluErf{});
    case Activation::GeluTanh: return f(GeluTanh{});
    case Activation::Selu: return f(Selu{param != 0});
  }
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t launch_activation(Activation act, ScalarType type, const void* x, void* out, int64_t n, double param,
                              cudaStream_t stream) {
  auto run = [&](auto tag) {
    using T = decltype(tag);
    return with_activation(act, param, [&](auto op) {
      return launch_map<T, 1>(static_cast<const T*>(x), nullptr, static_cast<T*>(out), n, op, stream);
    });
  };
  // Only relu is defined on integers (as torch's); the glue lets nothing else through.
  if (act == Activation::Relu) {
    return dispatch_all(type, [&](auto tag) {
      using T = decltype(tag);
      return launch_map<T, 1>(static_cast<const T*>(x), nullptr, static_cast<T*>(out), n, Relu{}, stream);
    });
  }
  return dispatch_floating(type, run);
}

cudaError_t launch_activation_backward(Activation act, ScalarType type, const void* grad, const void* saved,
                                       void* grad_input, int64_t n, double param, cudaStream_t stream) {
  return dispatch_floating(type, [&](auto tag) {
    using T = decltype(tag);
    return with_activation(act, param, [&](auto op) {
      return launch_map<T, 2>(static_cast<const T*>(grad), static_cast<const T*>(saved), static_cast<T*>(grad_input),
                              n, op, stream);
    });
  });
}

}  // namespace fastact::cuda
