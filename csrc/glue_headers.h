// The torch headers the glue files (everything outside csrc/cpu/ and the
// .cu kernels) share. With GCC, setup.py compiles this file once into a
// precompiled header that every glue file starts with (-include): parsing
// these took half of each glue file's compile time. The files still include
// what they use; without the precompiled header (another compiler) this
// file is not read at all.
#pragma once

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>
