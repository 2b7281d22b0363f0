// The fastact library: its ops (schemas in schemas.h, declared once), the
// build's description and the direct Python bindings. Backends add kernels
// with TORCH_LIBRARY_IMPL in their own folders (cpu/, cuda/, autograd/,
// composite/).
#include <torch/extension.h>
#include <torch/library.h>

#include <string>

#include "autograd/op_handles.h"
#include "cpu/output_allocator.h"
#include "cpu/vec_io.h"
#include "schemas.h"

// `import fastact._C` loads this library, whose static initializers register
// the ops below. It also binds each op for eager calls from Python: a
// torch.ops call is boxed (arguments parsed against the schema into a stack,
// then unboxed again), which costs more than the whole kernel on a tutorial-
// sized tensor. These go straight to the typed dispatcher handle, so autograd,
// FakeTensor and vmap still apply; fastact.functional uses torch.ops while
// torch.compile traces. Like torch's bindings, they release the GIL.
PYBIND11_MODULE(_C, m) {
  namespace ops = fastact::autograd::ops;
  using release = pybind11::call_guard<pybind11::gil_scoped_release>;
  m.def("relu", &ops::relu, release());
  m.def("relu_", [](at::Tensor x) { ops::relu_(x); }, release());
  m.def("leaky_relu", &ops::leaky_relu, release());
  m.def("leaky_relu_", [](at::Tensor x, double slope) { ops::leaky_relu_(x, slope); }, release());
  m.def("sigmoid", &ops::sigmoid, release());
  m.def("tanh", &ops::tanh, release());
  m.def("gelu", [](const at::Tensor& x, const std::string& approximate) { return ops::gelu(x, approximate); },
        release());
  m.def("selu", &ops::selu, release());
  m.def("selu_", [](at::Tensor x) { ops::selu_(x); }, release());
  m.def("softmax", &ops::softmax, release());
  m.def("cross_entropy", &ops::cross_entropy, release());
  m.def("binary_cross_entropy_with_logits", &ops::binary_cross_entropy_with_logits, release());
  m.def("log_softmax", &ops::log_softmax, release());
  m.def("linear_act",
        [](const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b, const std::string& act,
           double slope) { return ops::linear_act(x, w, b, act, slope); },
        release());
}

namespace {
// What the compiled kernels were built for, for `python -m fastact info`.
std::string build_info() {
#define FASTACT_STR2(x) #x
#define FASTACT_STR(x) FASTACT_STR2(x)
  return std::string("cpu_capability=") + FASTACT_STR(CPU_CAPABILITY) +
         " huge_page_threshold_bytes=" + std::to_string(fastact::cpu::huge_page_threshold_bytes()) +
         " streaming_store_bytes=" + std::to_string(fastact::cpu::kStreamingStoreBytes) +
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
