"""torch.optim's SGD, Adam and AdamW, each param group stepped in one C++ call.

    optimizer = fastact.optim.Adam(model.parameters(), lr=0.01)

Each class subclasses torch's, so the constructor, param groups, state,
state_dict (interchangeable with torch's: load either into the other),
hooks, closures and LR schedulers are torch's own. Only step() differs:
torch's default implementation runs a Python loop of about ten tensor ops
per parameter; here one call (torch.ops.fastact._sgd_step_ /
_adam_step_) updates every parameter of a group, with torch's per-element
formulas in torch's order and roundings, so parameters and state equal
torch's default implementation's bit for bit, step after step
(tests/test_optim.py checks with torch.equal).

What runs torch's own implementation instead, for that param group only:
differentiable=True, capturable=True, fused=True (torch's fused kernels,
with GradScaler's grad_scale/found_inf), a tensor lr, betas or weight
decay, sparse gradients (SGD; Adam refuses them with torch's error), and
every group on the Numba backend (fastact.optim is then torch.optim, foreach= included).
On the C++ backend foreach= is accepted and changes nothing: the one call
replaces both of torch's loops. Parameters of other dtypes,
layouts or devices (half, complex, non-contiguous, CUDA) go through the
same call, op by op in ATen, with the same results as torch's default
loop.

zero_grad() and step() skip torch's profiler annotation (a
record_function costs about 8 us, more than a tutorial model's whole
update) unless a profiler is running; step hooks run as torch runs them.
"""
import torch
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

from fastact import _backends

__all__ = ["SGD", "Adam", "AdamW"]


def _scalar(a, b, c=0.0, d=0.0) -> bool:
    """No tensor among the hyperparameters (torch's tensor lr and betas take its own path)."""
    Tensor = torch.Tensor
    return not (isinstance(a, Tensor) or isinstance(b, Tensor) or isinstance(c, Tensor) or isinstance(d, Tensor))


class _OneCallStep:
    """What fastact's optimizers share: the step's skeleton (closure, one C++
    call per group the call takes, torch's own step for the others), and a
    zero_grad without the profiler annotation. A subclass names its op and
    says, per group, whether the call takes it (_takes) and makes the call
    (_step_group, False for a group it hands back to torch after all)."""

    _torch_class: type  # the torch optimizer this one subclasses
    _op_name: str

    def step(self, closure=None):
        """Perform a single optimization step (torch's step; one C++ call per param group)."""
        # torch's Optimizer.profile_hook_step (step hooks, the profiler's
        # record_function) only when there are hooks or a profiler: it costs
        # more than a tiny model's whole update
        if (_global_optimizer_pre_hooks or _global_optimizer_post_hooks or self._optimizer_step_pre_hooks
                or self._optimizer_step_post_hooks or torch.autograd._profiler_enabled()):
            return _OneCallStep._annotated_step(self, closure)
        return _OneCallStep._plain_step(self, closure)

    step.hooked = True  # Optimizer.__init__ leaves it unwrapped

    def _plain_step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        op = getattr(_backends.cpp._C, self._op_name) if _backends.current == "cpp" else None
        elsewhere = []
        for group in self.param_groups:
            if op is None or not self._takes(group) or not self._step_group(op, group):
                elsewhere.append(group)
        if elsewhere:
            self._torch_step(elsewhere)
        return loss

    def _torch_step(self, groups) -> None:
        """torch's own step() over `groups` only (hooks and closure already done)."""
        step = self._torch_class.step
        if getattr(step, "hooked", False):  # Optimizer.__init__ wrapped it for a torch instance
            step = step.__wrapped__
        all_groups = self.param_groups
        self.param_groups = groups
        try:
            step(self)
        finally:
            self.param_groups = all_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none or torch.autograd._profiler_enabled():
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad = None

    zero_grad.__doc__ = torch.optim.Optimizer.zero_grad.__doc__


_OneCallStep._annotated_step = torch.optim.Optimizer.profile_hook_step(_OneCallStep._plain_step)


class SGD(_OneCallStep, torch.optim.SGD):
    __doc__ = torch.optim.SGD.__doc__
    _torch_class = torch.optim.SGD
    _op_name = "_sgd_step_"

    @staticmethod
    def _takes(group) -> bool:
        Tensor = torch.Tensor  # _scalar, inlined: a tutorial's whole step is a few microseconds
        return not (group["differentiable"] or group["fused"] or isinstance(group["lr"], Tensor)
                    or isinstance(group["weight_decay"], Tensor))

    def _step_group(self, op, group) -> bool:
        momentum = group["momentum"]
        if momentum == 0:
            # torch's _init_group, less what a group without momentum does
            # not use: a sparse gradient takes the op's composite path, which
            # is torch's loop, op by op
            params, grads = [], []
            for p in group["params"]:
                g = p.grad
                if g is not None:
                    params.append(p)
                    grads.append(g)
            op(params, grads, [], group["lr"], group["weight_decay"], 0.0, group["dampening"], group["nesterov"],
               group["maximize"], False)
            return True
        else:
            params, grads, buffers = [], [], []
            sparse = self._init_group(group, params, grads, buffers)
        if sparse:  # sparse gradients: torch's own path
            return False
        settings = (group["lr"], group["weight_decay"], momentum, group["dampening"], group["nesterov"],
                    group["maximize"])
        if momentum == 0 or all(b is not None for b in buffers):
            op(params, grads, buffers, *settings, False)
            return True
        # The first step of some parameters: buf = grad, as torch's clone.
        fresh = [i for i, b in enumerate(buffers) if b is None]
        kept = [i for i, b in enumerate(buffers) if b is not None]
        for i in fresh:
            buffers[i] = torch.empty_like(grads[i])
            self.state[params[i]]["momentum_buffer"] = buffers[i]
        for indices, is_fresh in ((fresh, True), (kept, False)):
            if indices:
                op([params[i] for i in indices], [grads[i] for i in indices], [buffers[i] for i in indices],
                   *settings, is_fresh)
        return True


class _AdamStep(_OneCallStep):
    _op_name = "_adam_step_"

    @staticmethod
    def _takes(group) -> bool:
        beta1, beta2 = group["betas"]
        return (not (group["differentiable"] or group["fused"] or group["capturable"])
                and _scalar(group["lr"], beta1, beta2, group["weight_decay"]))

    def _step_group(self, op, group) -> bool:
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = [], [], [], [], [], []
        # torch's own: creates the state on a parameter's first step, refuses sparse gradients
        self._init_group(group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps)
        beta1, beta2 = group["betas"]
        op(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, group["lr"], beta1, beta2,
           group["weight_decay"], group["eps"], group["amsgrad"], group["maximize"], group["decoupled_weight_decay"])
        return True


class Adam(_AdamStep, torch.optim.Adam):
    __doc__ = torch.optim.Adam.__doc__
    _torch_class = torch.optim.Adam


class AdamW(_AdamStep, torch.optim.AdamW):
    __doc__ = torch.optim.AdamW.__doc__
    _torch_class = torch.optim.AdamW
