// Chooses the CPU kernels once, when the library loads, and registers that
// capability's copy of every kernel with the dispatcher: after that a call
// costs exactly what it did when only one copy existed (no per-call branch).
//
// This file is compiled for the baseline CPU. The chosen capability's
// registration functions are the first code of theirs that runs, so a CPU
// never executes an instruction it lacks (setup.py links the baseline objects
// first, so every inline function torch's headers define resolves to a
// baseline copy; tests/test_cpu_capability.py checks the disassembly).
#include "cpu_shared/capability.h"

#include <torch/library.h>

#include <ATen/Version.h>

#include <array>
#include <cctype>
#include <cstdlib>

namespace fastact::cpu {
namespace {

using RegisterAll = void (*)(CpuKernels&);

#define FASTACT_CALL_FAMILY(capability, family) capability::register_##family(kernels);
#define FASTACT_DEFINE_REGISTER_ALL(capability) \
  void register_all_##capability(CpuKernels& kernels) {     \
    FASTACT_CPU_KERNEL_FAMILIES(FASTACT_CALL_FAMILY, capability) \
  }

// setup.py defines FASTACT_CPU_HAS_<capability> for each copy it compiled.
#if defined(FASTACT_CPU_HAS_DEFAULT)
FASTACT_DEFINE_REGISTER_ALL(DEFAULT)
#endif
#if defined(FASTACT_CPU_HAS_AVX2)
FASTACT_DEFINE_REGISTER_ALL(AVX2)
#endif
#if defined(FASTACT_CPU_HAS_AVX512)
FASTACT_DEFINE_REGISTER_ALL(AVX512)
#endif

struct Capability {
  const char* name;
  RegisterAll register_all;  // nullptr: not in this build
};

// In FASTACT_CPU_CAPABILITIES order: a higher index needs more of the CPU.
const std::array<Capability, 3> kCapabilities = {{
    {"DEFAULT",
#if defined(FASTACT_CPU_HAS_DEFAULT)
     &register_all_DEFAULT
#else
     nullptr
#endif
    },
    {"AVX2",
#if defined(FASTACT_CPU_HAS_AVX2)
     &register_all_AVX2
#else
     nullptr
#endif
    },
    {"AVX512",
#if defined(FASTACT_CPU_HAS_AVX512)
     &register_all_AVX512
#else
     nullptr
#endif
    },
}};

int rank_of(std::string name) {
  for (auto& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (size_t i = 0; i < kCapabilities.size(); ++i) {
    if (name == kCapabilities[i].name) return static_cast<int>(i);
  }
  return -1;
}

// What this CPU runs, as torch decided it (cpuinfo, and ATEN_CPU_CAPABILITY
// if set). torch names other architectures' capabilities (SVE256, VSX, ...):
// fastact compiles only DEFAULT there.
int supported_rank() {
#if defined(__x86_64__) || defined(_M_X64)
  const int rank = rank_of(at::get_cpu_capability());
  return rank < 0 ? 0 : rank;
#else
  return 0;
#endif
}

CapabilityChoice choose() {
  CapabilityChoice choice;
  for (const auto& c : kCapabilities) {
    if (c.register_all) choice.compiled += (choice.compiled.empty() ? "" : " ") + std::string(c.name);
  }
  const int supported = supported_rank();
  int limit = supported;
  bool overridden = false;
  std::string why = "the best this CPU supports (torch.backends.cpu.get_cpu_capability() = " +
                    std::string(kCapabilities[supported].name) + ")";
  if (const char* requested = std::getenv("FASTACT_CPU_CAPABILITY"); requested && *requested) {
    const int rank = rank_of(requested);
    if (rank < 0) {
      choice.warning = "FASTACT_CPU_CAPABILITY=" + std::string(requested) +
                       " is not one of avx512, avx2, default: ignored";
    } else if (rank > supported) {
      choice.warning = "FASTACT_CPU_CAPABILITY=" + std::string(requested) + " asks for more than this CPU supports (" +
                       kCapabilities[supported].name + "): ignored";
    } else {
      limit = rank;
      overridden = true;
      why = "FASTACT_CPU_CAPABILITY=" + std::string(requested);
    }
  }
  int rank = limit;
  while (rank >= 0 && !kCapabilities[rank].register_all) --rank;
  if (rank < 0) {
    // Only a build for another CPU (FASTACT_MARCH) lands here: run its
    // kernels anyway, as such a build always did.
    rank = static_cast<int>(kCapabilities.size()) - 1;
    while (!kCapabilities[rank].register_all) --rank;
    if (overridden) {
      choice.warning = why + " asks for less than this build has (" + choice.compiled + ", built with " +
                       "FASTACT_MARCH): using " + kCapabilities[rank].name;
    } else {
      choice.warning = "this build has only " + choice.compiled + " kernels (built with FASTACT_MARCH), more " +
                       "than this CPU supports (" + kCapabilities[supported].name + ")";
    }
    why = "the only kernels in this build";
  } else if (rank != limit) {
    if (overridden) {
      choice.warning = "FASTACT_CPU_CAPABILITY=" + std::string(std::getenv("FASTACT_CPU_CAPABILITY")) +
                       ": this build has no " + kCapabilities[limit].name + " kernels (it has " + choice.compiled +
                       "): using " + kCapabilities[rank].name;
    }
    why += ", the best of this build's (" + choice.compiled + ")";
  }
  choice.name = kCapabilities[rank].name;
  choice.reason = why;
  return choice;
}

}  // namespace

const CapabilityChoice& chosen_capability() {
  static const CapabilityChoice choice = choose();
  return choice;
}

TORCH_LIBRARY_IMPL(fastact, CPU, m) {
  CpuKernels kernels;
  for (const auto& c : kCapabilities) {
    if (c.name == chosen_capability().name) c.register_all(kernels);
  }
#define FASTACT_OP(name, ...) \
  if (kernels.name) m.impl(#name, kernels.name);
#include "op_list.h"
#undef FASTACT_OP
  if (kernels._vec_exp) m.impl("_vec_exp", kernels._vec_exp);
}

}  // namespace fastact::cpu
