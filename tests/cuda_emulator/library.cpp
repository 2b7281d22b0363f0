// The emulated-GPU build's own pieces: fastact's op schemas under the
// namespace fastact_cuda_emulation (the glue in csrc/cuda/*.cpp registers
// its kernels there for CPU tensors), and the one CUDA runtime function the
// glue calls.
#include "cuda/launchers.h"
#include "schemas.h"

TORCH_LIBRARY(fastact_cuda_emulation, m) { fastact::define_op_schemas(m); }

const char* cudaGetErrorString(cudaError_t) { return "launch error (emulated GPU)"; }
