// CPU capabilities: the kernels in csrc/cpu/ are compiled once per capability
// (setup.py: DEFAULT with the compiler's baseline flags, AVX2, AVX512 on
// x86-64; DEFAULT alone elsewhere), each copy in its own namespace
// fastact::cpu::<capability>, and one copy is registered with the dispatcher
// when the library loads (capability.cpp). As in ATen (native/cpu/ and
// DispatchStub), only the kernel files are multiplied; schemas, autograd and
// glue are compiled once, for the baseline.
#pragma once
#include "op_handles.h"

#include <string>

// Every file in csrc/cpu/ defines register_<family>(kernels) in each
// capability's namespace, which fills in its ops' entries of CpuKernels.
// tests/test_layout.py checks this list against the files. X(arg, family),
// so a caller can pass its capability.
#define FASTACT_CPU_KERNEL_FAMILIES(X, arg) \
  X(arg, activation) X(arg, softmax) X(arg, cross_entropy) X(arg, binary_cross_entropy) X(arg, optimizer) \
  X(arg, linear_chain)

// Capabilities from the least to the most demanding.
#define FASTACT_CPU_CAPABILITIES(X) X(DEFAULT) X(AVX2) X(AVX512)

namespace fastact::cpu {

// One capability's kernels: a pointer per op of op_list.h (null where the op
// has no CPU kernel of its own), typed by the op's C++ signature. The
// capability files only hand out pointers: the dispatcher registration
// (torch::Library::impl and the boxing wrappers it instantiates) is compiled
// once, for the baseline, in capability.cpp. Were it compiled in an AVX-512
// file, the linker could keep that copy for everyone.
struct CpuKernels {
#define FASTACT_OP(name, schema, Return, params, args) Return(*name) params = nullptr;
#include "op_list.h"
#undef FASTACT_OP
  at::Tensor (*_vec_exp)(const at::Tensor&) = nullptr;  // a private op (library.cpp)
};

#define FASTACT_DECLARE_FAMILY(unused, family) void register_##family(CpuKernels& kernels);
#define FASTACT_DECLARE_CAPABILITY(capability) \
  namespace capability {                       \
  FASTACT_CPU_KERNEL_FAMILIES(FASTACT_DECLARE_FAMILY, )  \
  }
FASTACT_CPU_CAPABILITIES(FASTACT_DECLARE_CAPABILITY)
#undef FASTACT_DECLARE_CAPABILITY
#undef FASTACT_DECLARE_FAMILY

// Which kernels run, decided once (the first call) from what this build
// compiled, what the CPU supports (torch's own choice,
// torch.backends.cpu.get_cpu_capability(), which ATEN_CPU_CAPABILITY also
// lowers) and FASTACT_CPU_CAPABILITY (avx512 | avx2 | default: at most that).
struct CapabilityChoice {
  std::string name;     // "AVX512", "AVX2" or "DEFAULT"
  std::string reason;   // why, in words, for `fastact info`
  std::string warning;  // non-empty when the override could not be honoured
  std::string compiled; // the capabilities this build has, e.g. "DEFAULT AVX2 AVX512"
};
const CapabilityChoice& chosen_capability();

}  // namespace fastact::cpu
