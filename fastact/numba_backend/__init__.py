"""The Numba backend: every fastact op as a torch custom op
(torch.ops.fastact_numba.*) whose kernels are Numba-compiled, for machines
where the C++ extension cannot be built or loaded. Same schemas, same
autograd (torch.library.register_autograd), same fake kernels, so opcheck and
torch.compile work on it too. Imported on first use: compiling its kernels
(cached on disk by Numba after the first process) costs time."""
