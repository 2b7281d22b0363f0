// CPU kernels of the optimizer steps: every parameter of a group in one
// call, each in one pass over its tensors (torch's default implementation
// makes 4 passes for SGD with momentum and about 10 for Adam, each an op
// dispatched from Python). The arithmetic is torch's op by op (see
// optimizer.h): each line below is one ATen kernel's vector formula, rounded
// to the dtype where that kernel stores its result. Parameters the loop does
// not take (half, bfloat16, complex, non-contiguous) go through the
// composite path, which is torch's loop in ATen calls.
#include "cpu/vec_io.h"
#include "cpu_shared/capability.h"
#include "optimizer.h"

#include <ATen/Dispatch.h>

#include <cmath>
#include <cstring>
#include <type_traits>

namespace fastact::cpu::CPU_CAPABILITY {
namespace {

using optimizer::AdamOptions;
using optimizer::SgdOptions;

// a * b + c as torch's kernels compute it: rounded once (kFused) or twice.
template <bool kFused, typename T>
C10_ALWAYS_INLINE Vectorized<T> madd(const Vectorized<T>& a, const Vectorized<T>& b, const Vectorized<T>& c) {
  if constexpr (!kFused) {
    return a * b + c;
  } else {
#if defined(__FMA__)
    return at::vec::fmadd(a, b, c);
#else
    // This copy has no FMA instructions but torch's kernels use them
    // (FASTACT_CPU_CAPABILITY set below torch's): round once all the same.
    constexpr int64_t kSize = Vectorized<T>::size();
    alignas(64) T x[kSize], y[kSize], z[kSize];
    a.store(x);
    b.store(y);
    c.store(z);
    for (int64_t i = 0; i < kSize; ++i) x[i] = std::fma(x[i], y[i], z[i]);
    return Vectorized<T>::loadu(x);
#endif
  }
}

// Calls body(i, n) for the vectors of [begin, end): full ones (n a constant,
// so loads and stores are unmasked), then the last, partial one.
template <typename T, typename Body>
C10_ALWAYS_INLINE void for_each_vector(int64_t begin, int64_t end, const Body& body) {
  constexpr int64_t kSize = Vectorized<T>::size();
  int64_t i = begin;
  for (; i + kSize <= end; i += kSize) body(i, kSize);
  if (i < end) body(i, end - i);
}

// The loop takes a parameter when every tensor of it is a contiguous CPU
// float or double tensor of the parameter's shape and dtype.
bool loop_takes(const at::Tensor& param, std::initializer_list<const at::Tensor*> others) {
  if (!param.device().is_cpu() || param.layout() != at::kStrided || !param.is_contiguous()) return false;
  if (param.scalar_type() != at::kFloat && param.scalar_type() != at::kDouble) return false;
  for (const at::Tensor* t : others) {
    if (!t->defined()) continue;
    if (t->layout() != at::kStrided || !t->is_contiguous() || t->scalar_type() != param.scalar_type() ||
        !t->device().is_cpu() || t->sizes() != param.sizes()) {
      return false;
    }
  }
  return true;
}

// Runs span(begin, end) over n elements, split across threads when large.
template <typename Span>
void for_each_span(int64_t n, const Span& span) {
  if (n < kSerialGrain) {
    span(0, n);
  } else {
    at::parallel_for(0, n, kSerialGrain, span);
  }
}

// torch: grad = -grad (maximize); grad = grad.add(param, alpha=wd);
// buf.mul_(momentum).add_(grad, alpha=1 - dampening) (or buf = grad, fresh);
// grad = grad.add(buf, alpha=momentum) (nesterov) or buf;
// param.add_(grad, alpha=-lr). add with alpha is fmadd(other, alpha, self).
template <bool kFused, typename T>
void sgd_span(T* param, const T* grad, T* buf, int64_t begin, int64_t end, const SgdOptions& o) {
  using Vec = Vectorized<T>;
  const Vec weight_decay(T(o.weight_decay)), momentum(T(o.momentum)), keep(T(1 - o.dampening)), neg_lr(T(-o.lr));
  for_each_vector<T>(begin, end, [&](int64_t i, int64_t n) {
    const Vec p = Vec::loadu(param + i, n);
    Vec g = Vec::loadu(grad + i, n);
    if (o.maximize) g = g.neg();
    if (o.weight_decay != 0) g = madd<kFused>(p, weight_decay, g);
    if (o.momentum != 0) {
      const Vec b = o.fresh_buffers ? g : madd<kFused>(g, keep, Vec::loadu(buf + i, n) * momentum);
      b.store(buf + i, n);
      g = o.nesterov ? madd<kFused>(b, momentum, g) : b;
    }
    madd<kFused>(g, neg_lr, p).store(param + i, n);
  });
}

// torch's float sqrt written inline, where it can be. torch's sqrt kernel is
// MKL's vector sqrt (sqrt_as_torch), and which MKL code path runs depends on
// the CPU; on this project's AMD machines it is MKL's SSE kernel: rsqrtps,
// then one Newton step for sqrt and for half its reciprocal, then a residual
// correction, each product and sum rounded on its own (no FMA), and the
// largest floats, zero, subnormals, negatives, inf and NaN through the
// correctly rounded sqrt. That computes in registers at memory speed, where
// the call costs a second pass. Which of these matches is decided by
// comparing each with sqrt_as_torch itself, once (inline_sqrt_mode).
enum class InlineSqrt { kNone, kCorrectlyRounded, kRsqrtNewton };

#if defined(__x86_64__) && (defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2))
// A product the compiler may not contract with the sum that reads it (GCC
// contracts across intrinsics too).
template <typename Raw>
C10_ALWAYS_INLINE Raw opaque(Raw v) {
  asm("" : "+v"(v));
  return v;
}

#if defined(CPU_CAPABILITY_AVX512)
using RawFloats = __m512;
using RawDoubles = __m512d;
#else
using RawFloats = __m256;
using RawDoubles = __m256d;
#endif

C10_ALWAYS_INLINE Vectorized<float> rounded(const Vectorized<float>& v) { return opaque(RawFloats(v)); }
C10_ALWAYS_INLINE Vectorized<double> rounded(const Vectorized<double>& v) { return opaque(RawDoubles(v)); }
#else
// Through memory: other compilers' and CPUs' register constraints differ.
template <typename T>
C10_ALWAYS_INLINE Vectorized<T> rounded(const Vectorized<T>& v) {
  Vectorized<T> out = v;
  asm volatile("" : : "r"(&out) : "memory");
  return out;
}
#endif

#if defined(__x86_64__) && (defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2))
constexpr bool kHasRsqrtNewton = true;

// rsqrtps's own approximation (AVX-512's rsqrt14 is another), 8 lanes at a
// time; and MKL's test for the lanes it sends to its scalar path: bits +
// 0x7f800000 > 0xfefff000, as signed integers.
C10_ALWAYS_INLINE Vectorized<float> rsqrtps(const Vectorized<float>& vx) {
#if defined(CPU_CAPABILITY_AVX512)
  const __m512 x = vx;
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_rsqrt_ps(_mm512_castps512_ps256(x))),
                            _mm256_rsqrt_ps(_mm512_extractf32x8_ps(x, 1)), 1);
#else
  return _mm256_rsqrt_ps(vx);
#endif
}

C10_ALWAYS_INLINE Vectorized<float> mkl_rare_lanes(const Vectorized<float>& x) {
  using Ints = Vectorized<int32_t>;
  const Ints biased = at::vec::cast<int32_t>(x) + Ints(0x7f800000);
  return at::vec::cast<float>(biased > Ints(int32_t(0xfefff000)));
}

C10_ALWAYS_INLINE bool any_lane(const Vectorized<float>& mask) {
#if defined(CPU_CAPABILITY_AVX512)
  return _mm512_movepi32_mask(_mm512_castps_si512(mask)) != 0;
#else
  return _mm256_movemask_ps(mask) != 0;
#endif
}

C10_ALWAYS_INLINE Vectorized<float> rsqrt_newton_sqrt(const Vectorized<float>& x) {
  using Vec = Vectorized<float>;
  const Vec y = rsqrtps(x), half(0.5f);
  const Vec s = x * y, h = half * y;
  const Vec e = half - rounded(s * h);
  const Vec s1 = rounded(s * e) + s;
  const Vec h1 = rounded(h * e) + h;
  const Vec r = x - rounded(s1 * s1);
  const Vec root = rounded(r * h1) + s1;
  // The correctly rounded sqrt only where a lane needs it: computed for
  // every vector, it costs as much as the rest of the sqrt.
  const Vec rare = mkl_rare_lanes(x);
  if (C10_UNLIKELY(any_lane(rare))) return Vec::blendv(root, x.sqrt(), rare);
  return root;
}
#else
constexpr bool kHasRsqrtNewton = false;

C10_ALWAYS_INLINE Vectorized<float> rsqrt_newton_sqrt(const Vectorized<float>& x) { return x.sqrt(); }
#endif

template <InlineSqrt kMode>
C10_ALWAYS_INLINE Vectorized<float> inline_sqrt(const Vectorized<float>& x) {
  if constexpr (kMode == InlineSqrt::kRsqrtNewton) return rsqrt_newton_sqrt(x);
  return x.sqrt();
}

// Which inline sqrt equals sqrt_as_torch bit for bit (NaN for NaN), on
// every mantissa under both exponent parities (the formulas are exact under
// scaling by 4, MKL's too), every 4093rd float of every exponent and sign,
// and the top of the range, which MKL treats apart. Decided on first use,
// once per process.
InlineSqrt inline_sqrt_mode() {
  static const InlineSqrt mode = [] {
    struct Range {
      uint64_t begin, end, stride;
    };
    const Range ranges[] = {{uint64_t(127) << 23, uint64_t(129) << 23, 1},
                            {0, uint64_t(1) << 32, 4093},
                            {0x7f7fc000u, 0x7f800002u, 1}};
    constexpr int64_t kSize = Vectorized<float>::size();
    constexpr int64_t kChunk = int64_t(1) << 14;
    alignas(64) float in[kChunk], want[kChunk], got[kChunk];
    bool correctly_rounded = true, rsqrt_newton = kHasRsqrtNewton;
    const auto agrees = [&](int64_t n) {
      for (int64_t i = 0; i < n; ++i) {
        if (!(std::isnan(want[i]) && std::isnan(got[i])) && std::memcmp(&want[i], &got[i], sizeof(float)) != 0) {
          return false;
        }
      }
      return true;
    };
    // keeps `alive` only while the candidate's sqrt of in[0, n) is want's
    const auto compare = [&](auto mode, bool& alive, int64_t n) {
      if (!alive) return;
      for (int64_t i = 0; i < n; i += kSize) {
        inline_sqrt<decltype(mode)::value>(Vectorized<float>::loadu(in + i)).store(got + i);
      }
      alive = agrees(n);
    };
    const auto check = [&](int64_t n) {
      while (n % kSize) in[n++] = 1.0f;
      optimizer::sqrt_as_torch(in, want, n);
      compare(std::integral_constant<InlineSqrt, InlineSqrt::kCorrectlyRounded>(), correctly_rounded, n);
      compare(std::integral_constant<InlineSqrt, InlineSqrt::kRsqrtNewton>(), rsqrt_newton, n);
    };
    int64_t n = 0;
    for (const Range& r : ranges) {
      for (uint64_t bits = r.begin; bits < r.end && (correctly_rounded || rsqrt_newton); bits += r.stride) {
        const uint32_t word = uint32_t(bits);
        std::memcpy(&in[n++], &word, sizeof(float));
        if (n == kChunk - kSize) {
          check(n);
          n = 0;
        }
      }
    }
    check(n);
    if (correctly_rounded) return InlineSqrt::kCorrectlyRounded;
    return rsqrt_newton ? InlineSqrt::kRsqrtNewton : InlineSqrt::kNone;
  }();
  return mode;
}

// Below this a float parameter's sqrt goes through the call: the one-time
// check above would cost more than the inline sqrt saves a small model.
constexpr int64_t kInlineSqrtFrom = int64_t(1) << 18;

// torch: grad = -grad (maximize); param.mul_(1 - lr wd) (decoupled) or
// grad = grad.add(param, alpha=wd); exp_avg.lerp_(grad, 1 - beta1);
// exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2);
// torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq) (amsgrad);
// denom = (sqrt(v) / bias_correction2_sqrt).add_(eps);
// param.addcdiv_(exp_avg, denom, value=-step_size).
// lerp is ATen's vector form: fmadd(w, end - self, self) for |w| < 0.5,
// else fmadd(w - 1, end - self, end); addcmul is self + value * a * b and
// addcdiv self + value * a / b, as written. With the sqrt inline (kSqrt) it
// is one pass. Else the sqrt is the call over an array: each block of the
// tensors is done in two passes around it, the block small enough to stay
// in L1 (256 measured best against 32 to 1024, and against prefetching the
// next block during the call). The call also keeps the compiler from fusing
// the decayed parameter's rounding into the last update; the inline pass
// keeps it with rounded().
template <bool kFused, InlineSqrt kSqrt, typename T>
void adam_span(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t begin, int64_t end,
               const AdamOptions& o, const optimizer::AdamScalars& s) {
  using Vec = Vectorized<T>;
  constexpr int64_t kBlock = kSqrt == InlineSqrt::kNone ? 256 : 0;
  alignas(64) T root[std::max<int64_t>(kBlock, 1)];
  const T weight1 = T(1 - o.beta1);
  const bool small_weight = std::abs(weight1) < T(0.5);
  const Vec lerp_coeff = small_weight ? Vec(weight1) : Vec(weight1) - Vec(T(1));
  const Vec weight_decay(T(o.weight_decay)), decay(T(s.decoupled_decay)), beta2(T(o.beta2)),
      weight2(T(1 - o.beta2)), bias_correction2_sqrt(T(s.bias_correction2_sqrt)), eps(T(o.eps)),
      neg_step_size(T(-s.step_size));
  // param (decayed) and exp_avg as the first pass leaves them, v as the sqrt
  // reads it
  const auto moments = [&](int64_t i, int64_t n, Vec& p, Vec& m) {
    Vec g = Vec::loadu(grad + i, n);
    p = Vec::loadu(param + i, n);
    if (o.maximize) g = g.neg();
    if (o.weight_decay != 0) {
      if (o.decoupled_weight_decay) {
        p = rounded(p * decay);
      } else {
        g = madd<kFused>(p, weight_decay, g);
      }
    }
    const Vec m_old = Vec::loadu(exp_avg + i, n);
    m = madd<kFused>(lerp_coeff, g - m_old, small_weight ? m_old : g);
    m.store(exp_avg + i, n);
    Vec v = madd<kFused>(weight2 * g, g, Vec::loadu(exp_avg_sq + i, n) * beta2);
    v.store(exp_avg_sq + i, n);
    if (o.amsgrad) {
      v = at::vec::maximum(Vec::loadu(max_exp_avg_sq + i, n), v);
      v.store(max_exp_avg_sq + i, n);
    }
    return v;
  };
  const auto update = [&](int64_t i, int64_t n, const Vec& p, const Vec& m, const Vec& root_v) {
    const Vec denom = root_v / bias_correction2_sqrt + eps;
    (p + neg_step_size * m / denom).store(param + i, n);
  };
  if constexpr (kSqrt != InlineSqrt::kNone) {
    for_each_vector<T>(begin, end, [&](int64_t i, int64_t n) {
      Vec p, m;
      const Vec v = moments(i, n, p, m);
      update(i, n, p, m, inline_sqrt<kSqrt>(v));
    });
  } else {
    for (int64_t block = begin; block < end; block += kBlock) {
      const int64_t block_end = std::min(end, block + kBlock);
      for_each_vector<T>(block, block_end, [&](int64_t i, int64_t n) {
        Vec p, m;
        moments(i, n, p, m).store(root + (i - block), n);
        if (o.decoupled_weight_decay && o.weight_decay != 0) p.store(param + i, n);
      });
      optimizer::sqrt_as_torch(root, root, block_end - block);
      for_each_vector<T>(block, block_end, [&](int64_t i, int64_t n) {
        update(i, n, Vec::loadu(param + i, n), Vec::loadu(exp_avg + i, n), Vec::loadu(root + (i - block), n));
      });
    }
  }
}

void sgd_step(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers, double lr,
              double weight_decay, double momentum, double dampening, bool nesterov, bool maximize,
              bool fresh_buffers) {
  const SgdOptions o{lr, weight_decay, momentum, dampening, nesterov, maximize, fresh_buffers};
  optimizer::check_sgd_lists(params, grads, momentum_buffers, o);
  const bool fused = optimizer::torch_fuses_multiply_add();
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& param = params[i];
    const at::Tensor& grad = grads[i];
    const at::Tensor buf = momentum != 0 ? momentum_buffers[i] : at::Tensor();
    if (!loop_takes(param, {&grad, &buf})) {
      optimizer::sgd_param(param, grad, buf, o);
      continue;
    }
    AT_DISPATCH_FLOATING_TYPES(param.scalar_type(), "fastact::_sgd_step_", [&] {
      scalar_t* p = param.mutable_data_ptr<scalar_t>();
      const scalar_t* g = grad.const_data_ptr<scalar_t>();
      scalar_t* b = buf.defined() ? buf.mutable_data_ptr<scalar_t>() : nullptr;
      for_each_span(param.numel(), [&](int64_t begin, int64_t end) {
        fused ? sgd_span<true>(p, g, b, begin, end, o) : sgd_span<false>(p, g, b, begin, end, o);
      });
    });
  }
}

void adam_step(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
               at::TensorList max_exp_avg_sqs, at::TensorList state_steps, double lr, double beta1, double beta2,
               double weight_decay, double eps, bool amsgrad, bool maximize, bool decoupled_weight_decay) {
  const AdamOptions o{lr, beta1, beta2, weight_decay, eps, amsgrad, maximize, decoupled_weight_decay};
  optimizer::check_adam_lists(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, o);
  const bool fused = optimizer::torch_fuses_multiply_add();
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& param = params[i];
    const at::Tensor& grad = grads[i];
    const at::Tensor max_sq = amsgrad ? max_exp_avg_sqs[i] : at::Tensor();
    if (!loop_takes(param, {&grad, &exp_avgs[i], &exp_avg_sqs[i], &max_sq})) {
      optimizer::adam_param(param, grad, exp_avgs[i], exp_avg_sqs[i], max_sq, state_steps[i], o);
      continue;
    }
    const optimizer::AdamScalars s = optimizer::adam_scalars(o, optimizer::increment_step(state_steps[i]));
    AT_DISPATCH_FLOATING_TYPES(param.scalar_type(), "fastact::_adam_step_", [&] {
      scalar_t* p = param.mutable_data_ptr<scalar_t>();
      const scalar_t* g = grad.const_data_ptr<scalar_t>();
      scalar_t* m = exp_avgs[i].mutable_data_ptr<scalar_t>();
      scalar_t* v = exp_avg_sqs[i].mutable_data_ptr<scalar_t>();
      scalar_t* vmax = amsgrad ? max_sq.mutable_data_ptr<scalar_t>() : nullptr;
      const auto run = [&](auto fused_tag, auto sqrt_tag) {
        for_each_span(param.numel(), [&](int64_t begin, int64_t end) {
          adam_span<decltype(fused_tag)::value, decltype(sqrt_tag)::value>(p, g, m, v, vmax, begin, end, o, s);
        });
      };
      const auto with_sqrt = [&](auto fused_tag) {
        using Mode = InlineSqrt;
        if constexpr (std::is_same_v<scalar_t, float>) {
          switch (param.numel() >= kInlineSqrtFrom ? inline_sqrt_mode() : Mode::kNone) {
            case Mode::kCorrectlyRounded:
              return run(fused_tag, std::integral_constant<Mode, Mode::kCorrectlyRounded>());
            case Mode::kRsqrtNewton:
              return run(fused_tag, std::integral_constant<Mode, Mode::kRsqrtNewton>());
            case Mode::kNone:
              break;
          }
        }
        run(fused_tag, std::integral_constant<Mode, Mode::kNone>());
      };
      fused ? with_sqrt(std::true_type()) : with_sqrt(std::false_type());
    });
  }
}

}  // namespace

void register_optimizer(CpuKernels& kernels) {
  kernels._sgd_step_ = &sgd_step;
  kernels._adam_step_ = &adam_step;
}

}  // namespace fastact::cpu::CPU_CAPABILITY
