// Defines fastact's ops (op_list.h) in a library: namespace fastact
// (library.cpp), and the emulated-GPU test build's own namespace
// (tests/cuda_emulator).
#pragma once
#include <torch/library.h>

namespace fastact {

inline void define_op_schemas(torch::Library& m) {
#define FASTACT_OP(name, schema, ...) m.def(schema);
#include "op_list.h"
#undef FASTACT_OP
}

}  // namespace fastact
