// The fastact library: its ops (op_list.h, through schemas.h), a few private
// ops (the build's description, the CPU output cache, a test probe), and the
// direct Python bindings. Backends add kernels with TORCH_LIBRARY_IMPL in
// their own folders (cpu/, cuda/, autograd/, autocast/, composite/), one
// file per op family with the same stem in each.
#include <torch/python.h>
#include <torch/library.h>

#include <algorithm>
#include <string>

#include "op_handles.h"
#include "constants.h"
#include "cpu_shared/capability.h"
#include "cpu_shared/output_allocator.h"
#include "schemas.h"
#include "train_epoch.h"

// Casters for the list arguments of the private ops (the optimizer steps,
// the layer chain): at::TensorList and at::ArrayRef<double> are views that
// own nothing, so the caster holds the converted values for the call's
// duration; a Tensor?[] is a c10::List of optionals (None: no tensor).
namespace pybind11::detail {

template <typename T>
bool load_sequence(handle src, bool convert, std::vector<T>& out) {
  if (!PySequence_Check(src.ptr()) || PyUnicode_Check(src.ptr())) return false;
  const auto seq = reinterpret_borrow<sequence>(src);
  out.clear();
  out.reserve(seq.size());
  for (const auto item : seq) {
    if constexpr (std::is_same_v<T, at::Tensor>) {
      if (!THPVariable_Check(item.ptr())) return false;
      out.push_back(THPVariable_Unpack(item.ptr()));
    } else if constexpr (std::is_same_v<T, std::optional<at::Tensor>>) {
      if (item.is_none()) {
        out.emplace_back();
      } else if (THPVariable_Check(item.ptr())) {
        out.emplace_back(THPVariable_Unpack(item.ptr()));
      } else {
        return false;
      }
    } else {
      make_caster<T> element;
      if (!element.load(item, convert)) return false;
      out.push_back(cast_op<T>(element));
    }
  }
  return true;
}

template <typename T>
struct array_ref_caster {
  PYBIND11_TYPE_CASTER(c10::ArrayRef<T>, _("list"));
  bool load(handle src, bool convert) {
    if (!load_sequence(src, convert, held_)) return false;
    value = held_;
    return true;
  }
  static handle cast(c10::ArrayRef<T>, return_value_policy, handle) {
    throw cast_error("fastact: a list view is only ever an argument");
  }

 private:
  std::vector<T> held_;
};

template <>
struct type_caster<at::TensorList> : array_ref_caster<at::Tensor> {};
template <>
struct type_caster<at::ArrayRef<double>> : array_ref_caster<double> {};

template <>
struct type_caster<c10::List<std::optional<at::Tensor>>> {
  PYBIND11_TYPE_CASTER(c10::List<std::optional<at::Tensor>>, _("list[torch.Tensor | None]"));
  bool load(handle src, bool convert) {
    std::vector<std::optional<at::Tensor>> items;
    if (!load_sequence(src, convert, items)) return false;
    value = c10::List<std::optional<at::Tensor>>(items);
    return true;
  }
  static handle cast(const c10::List<std::optional<at::Tensor>>&, return_value_policy, handle) {
    throw cast_error("fastact: a list of optional tensors is only ever an argument");
  }
};

}  // namespace pybind11::detail

namespace {

// TrainStep.epoch's loop (train_epoch.h), with the GIL released for the
// epoch and taken back only to look at Python's signal flags. A signal
// handler's exception (Ctrl-C's KeyboardInterrupt) ends the loop after a
// whole step and is returned, not raised, so that Python gets the finished
// batches' gradients and count with it: (losses, grads, done, exception or
// None). Each group is (kind 'sgd' or 'adam', params, grad_slots, first
// state list, exp_avg_sqs, max_exp_avg_sqs, steps, the param group dict).
pybind11::tuple train_epoch_binding(const at::Tensor& data, const at::Tensor& targets, const at::Tensor& order,
                                    int64_t batch_size, bool drop_last, std::vector<at::Tensor> weights,
                                    std::vector<std::optional<at::Tensor>> biases, std::vector<int64_t> activations,
                                    std::vector<double> negative_slopes, std::vector<int64_t> needs, int64_t loss,
                                    std::optional<at::Tensor> class_weight, int64_t reduction, int64_t ignore_index,
                                    double label_smoothing, const pybind11::list& groups) {
  namespace te = fastact::train_epoch;
  te::Chain chain{std::move(weights), c10::List<std::optional<at::Tensor>>(), std::move(activations),
                  std::move(negative_slopes), std::move(needs), loss, std::move(class_weight), reduction,
                  ignore_index, label_smoothing};
  for (auto& b : biases) chain.biases.push_back(b);
  std::vector<te::Optimizer> steps;
  for (const auto item : groups) {
    const auto g = item.cast<pybind11::tuple>();
    const auto settings = g[7].cast<pybind11::dict>();
    te::Optimizer o{};
    const auto kind = g[0].cast<std::string>();
    TORCH_CHECK(kind == "sgd" || kind == "adam", "fastact._train_epoch: unknown optimizer ", kind);
    o.kind = kind == "sgd" ? te::Optimizer::Kind::Sgd : te::Optimizer::Kind::Adam;
    o.params = g[1].cast<std::vector<at::Tensor>>();
    o.grad_slots = g[2].cast<std::vector<int64_t>>();
    o.first = g[3].cast<std::vector<at::Tensor>>();
    o.exp_avg_sqs = g[4].cast<std::vector<at::Tensor>>();
    o.max_exp_avg_sqs = g[5].cast<std::vector<at::Tensor>>();
    o.steps = g[6].cast<std::vector<at::Tensor>>();
    o.lr = settings["lr"].cast<double>();
    o.weight_decay = settings["weight_decay"].cast<double>();
    o.maximize = settings["maximize"].cast<bool>();
    if (o.kind == te::Optimizer::Kind::Sgd) {
      o.momentum = settings["momentum"].cast<double>();
      o.dampening = settings["dampening"].cast<double>();
      o.nesterov = settings["nesterov"].cast<bool>();
    } else {
      const auto betas = settings["betas"].cast<pybind11::sequence>();
      o.beta1 = betas[0].cast<double>();
      o.beta2 = betas[1].cast<double>();
      o.eps = settings["eps"].cast<double>();
      o.amsgrad = settings["amsgrad"].cast<bool>();
      o.decoupled_weight_decay = settings["decoupled_weight_decay"].cast<bool>();
    }
    steps.push_back(std::move(o));
  }
  // The exception a signal handler raised. Declared before the GIL is
  // released, so it is destroyed with the GIL held even if the loop throws.
  pybind11::object pending;
  // with the GIL held
  auto take_signal = [&pending] {
    if (PyErr_CheckSignals() == 0) return false;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback) PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    pending = pybind11::reinterpret_steal<pybind11::object>(value);
    return true;
  };
  auto stop = [&take_signal] {
    pybind11::gil_scoped_acquire gil;
    return take_signal();
  };
  te::Result result;
  {
    pybind11::gil_scoped_release no_gil;
    result = te::run(data, targets, order, batch_size, drop_last, chain, steps, stop);
  }
  // a signal during the last batches, which the loop no longer asks about
  if (!pending) take_signal();
  return pybind11::make_tuple(result.losses, result.grads, result.done,
                              pending ? pending : pybind11::object(pybind11::none()));
}

}  // namespace

// `import fastact._C` loads this library, whose static initializers register
// the ops below. It also binds each op for eager calls from Python: a
// torch.ops call is boxed (arguments parsed against the schema into a stack,
// then unboxed again), which costs more than the whole kernel on a tutorial-
// sized tensor. These go straight to the typed dispatcher handle, so autograd,
// FakeTensor and vmap still apply; fastact.functional uses torch.ops while
// torch.compile traces. Like torch's bindings, they release the GIL. Every
// op of op_list.h is bound (fastact/_backends/cpp.py falls back to torch.ops
// for a name _C lacks).
PYBIND11_MODULE(_C, m) {
  namespace ops = fastact::ops;
  using release = pybind11::call_guard<pybind11::gil_scoped_release>;
#define FASTACT_OP(name, ...) m.def(#name, &ops::name, release());
#include "op_list.h"
#undef FASTACT_OP
  // Which CPU kernels run, and why: (name, reason, warning, compiled).
  m.def("_cpu_capability", [] {
    const auto& c = fastact::cpu::chosen_capability();
    return pybind11::make_tuple(c.name, c.reason, c.warning, c.compiled);
  });
  m.def("_train_epoch", &train_epoch_binding);
}

namespace {
// What the compiled kernels were built for, for `python -m fastact info`.
std::string build_info() {
#define FASTACT_STR2(x) #x
#define FASTACT_STR(x) FASTACT_STR2(x)
  std::string compiled = fastact::cpu::chosen_capability().compiled;
  std::replace(compiled.begin(), compiled.end(), ' ', ',');
  return std::string("cpu_capability=") + fastact::cpu::chosen_capability().name + " cpu_kernels=" + compiled +
#if defined(FASTACT_MARCH)
         " march=" + FASTACT_STR(FASTACT_MARCH) +
#else
         " march=portable" +
#endif
         " huge_page_threshold_bytes=" + std::to_string(fastact::cpu::huge_page_threshold_bytes()) +
         " streaming_store_bytes=" + std::to_string(fastact::kStreamingStoreBytes) +
         " output_cache_capacity_bytes=" + std::to_string(fastact::cpu::cache_capacity()) +
#if defined(FASTACT_WITH_CUDA)
         " cuda=1";
#else
         " cuda=0";
#endif
#undef FASTACT_STR
#undef FASTACT_STR2
}
}  // namespace

TORCH_LIBRARY(fastact, m) {
  using fastact::define_op_schemas;
  m.def("_build_info() -> str", &build_info);
  // The CPU output cache (cpu/output_allocator.cpp): release it, measure it.
  m.def("_empty_cache() -> ()", &fastact::cpu::empty_cache);
  m.def("_cached_bytes() -> int", &fastact::cpu::cached_bytes);
  // The vector exp the CPU kernels use, exposed so tests can sweep its error.
  m.def("_vec_exp(Tensor x) -> Tensor");

  define_op_schemas(m);
}
