"""fastact.TrainStep: a training step without the autograd engine.

    model = fastact.fuse(model)
    step = fastact.TrainStep(model, criterion, optimizer)
    for x, y in batches:
        loss = step(x, y)

Each call is the step every tutorial writes, and equals it:

    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.detach()

Where the model is one chain (an nn.Sequential that fastact.fuse turned into
a LinearChain and its Chained and Fused placeholders, with ChainedDropouts
that do not drop (eval mode, p=0), optionally after an nn.Flatten of all but
the batch dim) and the criterion is cross entropy, MSE
or binary cross entropy with logits (without weight and pos_weight), the
forward, the loss, its gradient and the backward are one C++ op that builds
no autograd graph
(torch.ops.fastact._linear_chain_loss_grad). Its gradients go to each
parameter's .grad as loss.backward() would put them there (set, or added to
a gradient the optimizer did not zero), and the optimizer steps as always
(fastact.optim: one more C++ call). On CPU, with every layer at most 64
features wide (float, double) and cross entropy or MSE, the op is one kernel over blocks of rows
held feature-major: losses and gradients within float rounding of the step
above (sums over rows run in another order; tests/test_train_step.py bounds
them). Elsewhere it is the chain's and the loss's ops in turn, the same
values as the step above on the same fused model.

Everything else takes the step above: another model or loss, reduction='none',
hooks (module, forward or tensor hooks anywhere in the step), a parameter
used twice or not contiguous, an input or target that needs a gradient,
autocast, grad mode off, torch.compile tracing, a torch function
mode or tensor subclass, and the Numba backend.
"""
import _signal
import operator
import threading
from typing import Callable, List, Optional

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _module
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks
from torch.overrides import has_torch_function_variadic

from fastact import _backends, _checks, _spec, data, modules, optim

__all__ = ["TrainStep"]

_REDUCTIONS = {"mean": _spec.REDUCTION_MEAN, "sum": _spec.REDUCTION_SUM}
_CROSS_ENTROPY, _MSE, _BCE = (_spec.CHAIN_LOSSES.index(name)
                              for name in ("cross_entropy", "mse_loss", "binary_cross_entropy_with_logits"))


def _global_hooks() -> bool:
    return bool(_module._global_forward_hooks or _module._global_forward_pre_hooks
                or _module._global_backward_hooks or _module._global_backward_pre_hooks)


class _BatchBoundaries:
    """Ctrl-C at a batch boundary: while active (on the main thread, with
    Python's own SIGINT handler installed), a SIGINT only marks itself, and
    check() raises the KeyboardInterrupt between steps, so an interrupted
    epoch leaves the parameters, .grad and optimizer state of its last whole
    step, never of half a step. Elsewhere (another thread, a user's
    handler) signals are left as they are."""

    def __init__(self) -> None:
        self.pending = False
        # _signal's own functions: the signal module's wrappers convert
        # enums, which costs more than a small epoch's C++ loop
        self.active = (threading.current_thread() is threading.main_thread()
                       and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler)

    def _mark(self, signum, frame) -> None:
        self.pending = True

    def __enter__(self):
        if self.active:
            _signal.signal(_signal.SIGINT, self._mark)
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)

    def check(self) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def native(self, on: bool) -> None:
        """Python's handler back (on), for a C++ loop that asks it between
        steps; then the marking one again (off)."""
        if self.active:
            _signal.signal(_signal.SIGINT, _signal.default_int_handler if on else self._mark)


def _interrupted(exception: BaseException, batches_done: int) -> BaseException:
    exception.batches_done = batches_done
    return exception


def _chain_reads(layers) -> list:
    """What TrainStep._build_chain reads from each layer of the chain, the
    objects themselves: its weight and bias, whether each needs a gradient,
    its activation and negative_slope."""
    reads = []
    for layer in layers:
        params = layer._parameters
        weight, bias = params["weight"], params["bias"]
        reads += (weight, bias, weight is not None and weight.requires_grad, bias is not None and bias.requires_grad,
                  layer.activation, layer.negative_slope)
    return reads


class _Chain:
    """The model's share of the chain op's arguments (TrainStep._build_chain),
    kept for the next calls: the objects its build read, to find the model
    as it was (TrainStep._chain_holds), and what the op takes from them."""

    __slots__ = ("model", "children", "kinds", "flatten", "layers", "rest", "reads", "trained", "params", "lists")

    def __init__(self, model, flatten, layers, trained, params, lists) -> None:
        self.model = model
        self.children = tuple(model._modules.values())
        self.kinds = tuple(map(type, self.children))
        self.flatten = flatten
        self.layers = tuple(layers)
        self.rest = layers[0].rest
        self.reads = _chain_reads(layers)
        self.trained = tuple(trained)  # the Parameters that need a gradient
        self.params = params  # in the op's gradient order, None for a layer without bias
        self.lists = lists  # weights, biases, activation codes, negative slopes, needs


class TrainStep:
    r"""TrainStep(model, criterion, optimizer): a callable training step,
    step(input, target) -> the loss (detached), equal to

        optimizer.zero_grad(); loss = criterion(model(input), target)
        loss.backward(); optimizer.step()

    without the autograd engine where the model is one fastact.fuse'd chain
    and the criterion nn.CrossEntropyLoss, nn.MSELoss or nn.BCEWithLogitsLoss (see the module's
    docstring for what takes torch's path instead). Any optimizer works;
    fastact.optim's step is one C++ call."""

    def __init__(self, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.criterion = criterion
        self.optimizer = optimizer
        self.batches_done = 0  # by the last epoch() (so far, while it runs)
        self._targets_checked = None  # (target, its version, classes) that _check_targets found in range
        self._chain = None  # the model's _Chain from an earlier call, if it had one

    def __repr__(self) -> str:
        return (f"TrainStep(model={type(self.model).__name__}, criterion={type(self.criterion).__name__}, "
                f"optimizer={type(self.optimizer).__name__})")

    def __call__(self, input: Tensor, target: Tensor) -> Tensor:
        chain = self._chain_arguments(input, target)
        if chain is None:
            return self.autograd_step(input, target)
        params, arguments, input = chain
        self.optimizer.zero_grad()
        loss, grads = _backends.cpp._C._linear_chain_loss_grad(input, target, *arguments)
        for p, g in zip(params, grads[1:]):
            if p is None or not p.requires_grad:
                continue
            if p.grad is None:
                p.grad = g
            else:  # a parameter zero_grad left alone: accumulated, as backward does (in place)
                p.grad.add_(g)
        self.optimizer.step()
        return loss

    def autograd_step(self, input: Tensor, target: Tensor) -> Tensor:
        """The step through autograd, what __call__ equals."""
        self.optimizer.zero_grad()
        loss = self.criterion(self.model(input), target)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def epoch(self, loader) -> Tensor:
        """One pass over `loader` (batches of (input, target)), a step per
        batch: the per-batch losses as one 1-d tensor, equal to

            torch.stack([step(x, y) for x, y in loader])

        Where `loader` is a DataLoader that fastact.DataLoader gathers (a
        TensorDataset of (input, target), torch's default collate and
        samplers, no workers, no pin_memory), the model and criterion are
        ones __call__ takes to its op and the optimizer is fastact.optim's
        with no step hooks, the whole epoch is one C++ loop: gather, the
        chain's op, the optimizer's op, batch after batch, the same calls
        with the same arguments as that Python loop, so parameters,
        optimizer state and losses are the same bit for bit. It draws the
        epoch's order from the loader's own sampler as torch's iterator does
        (every RNG ends where torch's loader leaves it). Anything else runs
        that Python loop.

        Class-index targets of cross entropy are checked for the whole
        epoch before its first step (torch's IndexError), so a bad target
        leaves nothing half-trained. Ctrl-C stops at a batch boundary
        (within a few ms): the KeyboardInterrupt carries `batches_done`
        (also self.batches_done), and the model, .grad and optimizer state
        are those after that many steps."""
        self.batches_done = 0
        dataset = getattr(loader, "dataset", None)
        if isinstance(dataset, torch.utils.data.TensorDataset) and dataset.tensors and any(
                t.size(0) != dataset.tensors[0].size(0) for t in dataset.tensors):
            # TensorDataset's own check, which tensors replaced since have escaped:
            # torch's loop would fail mid-epoch, after steps
            raise AssertionError("Size mismatch between tensors")
        tensors = data._gatherable_tensors(loader) if isinstance(loader, torch.utils.data.DataLoader) else None
        if tensors is not None and len(tensors) == 2:
            self._check_targets(*tensors)
        with _BatchBoundaries() as boundaries:
            try:
                plan = self._epoch_plan(loader, tensors)
                if plan is None:
                    return self._python_epoch(loader, boundaries)
                return self._native_epoch(loader, tensors, plan, boundaries)
            except KeyboardInterrupt as e:
                raise _interrupted(e, self.batches_done)

    def fit(self, loader, epochs: int, *, progress: bool = True,
            callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None) -> List[Tensor]:
        """`epochs` calls of epoch(loader): the per-epoch loss tensors.

        progress shows a tqdm bar over the epochs, with the last epoch's mean
        loss. callback(epoch, losses), if given, runs after each epoch (the
        place for validation, checkpoints and LR schedulers' step(), as in
        the user's own loop); a true return value stops the fit there (early
        stopping). A KeyboardInterrupt carries `epochs_done` and
        `batches_done` (of the epoch it stopped)."""
        from tqdm.auto import tqdm

        history: List[Tensor] = []
        with tqdm(total=epochs, disable=not progress, unit="epoch", desc="fit") as bar:
            for i in range(epochs):
                try:
                    losses = self.epoch(loader)
                except KeyboardInterrupt as e:
                    e.epochs_done = i
                    raise
                history.append(losses)
                if losses.numel():
                    bar.set_postfix(loss=f"{losses.mean().item():.4g}", refresh=False)
                bar.update(1)
                if callback is not None and callback(i, losses):
                    break
        return history

    def _python_epoch(self, loader, boundaries: "_BatchBoundaries") -> Tensor:
        losses = []
        for input, target in loader:
            losses.append(self(input, target))
            self.batches_done += 1
            boundaries.check()
        return torch.stack(losses) if losses else torch.empty(0)

    def _check_targets(self, input: Tensor, target: Tensor) -> None:
        """torch's error for a class index out of range anywhere in the
        dataset, before the epoch's first step."""
        criterion = self.criterion
        if (type(criterion) not in (nn.CrossEntropyLoss, modules.CrossEntropyLoss) or target.dtype != torch.int64
                or target.dim() != 1 or type(self.model) is not nn.Sequential):
            return
        chain = self._layers()
        if chain is None or (input.dim() < 2 if chain[0] else input.dim() != 2):
            return
        classes = chain[1][-1].out_features
        key = (target, target._version, classes)  # checked once per version of the tensor
        if self._targets_checked is not None and self._targets_checked[0] is target and \
                self._targets_checked[1:] == key[1:]:
            return
        low, high = (int(v) for v in torch.aminmax(target)) if target.numel() else (0, 0)
        if 0 <= low and high < classes:
            self._targets_checked = key
            return
        bad = ((target < 0) | (target >= classes)) & (target != criterion.ignore_index)
        if bad.any():
            raise IndexError(f"Target {int(target[bad][0])} is out of bounds.")

    def _epoch_plan(self, loader, tensors):
        """(chain parameters, the op's arguments, the optimizer's groups as
        the C++ loop takes them, whether a first step in Python must create
        the optimizer's state) where the epoch can be one C++ call, else None."""
        if (tensors is None or len(tensors) != 2 or type(loader) not in (torch.utils.data.DataLoader, data.DataLoader)
                or loader.pin_memory or len(loader.dataset) == 0):
            return None
        optimizer = self.optimizer
        if (type(optimizer) not in (optim.SGD, optim.Adam, optim.AdamW) or _global_optimizer_pre_hooks
                or _global_optimizer_post_hooks or optimizer._optimizer_step_pre_hooks
                or optimizer._optimizer_step_post_hooks or torch.autograd._profiler_enabled()):
            return None
        # the whole tensors stand for a batch: the op's checks compare their
        # shapes dim by dim, and all rows agree in dim 0 as a batch's do
        x, y = tensors
        chain = self._chain_arguments(x, y)
        if chain is None:
            return None
        params, arguments, op_input = chain
        needs = arguments[4]
        slots = {id(p): i + 1 for i, p in enumerate(params) if p is not None and needs[i + 1]}
        groups, stepped, fresh = [], 0, False
        for group in optimizer.param_groups:
            if not optimizer._takes(group):
                return None
            mine = [p for p in group["params"] if id(p) in slots]
            stepped += len(mine)
            state = [optimizer.state.get(p, {}) for p in mine]
            settings = {k: group[k] for k in ("lr", "weight_decay", "maximize")}
            if isinstance(optimizer, optim.SGD):
                settings.update(momentum=group["momentum"], dampening=group["dampening"], nesterov=group["nesterov"])
                buffers = [s.get("momentum_buffer") for s in state] if group["momentum"] != 0 else []
                fresh |= any(b is None for b in buffers)
                groups.append(("sgd", mine, [slots[id(p)] for p in mine], buffers, [], [], [], settings))
            else:
                settings.update(betas=tuple(group["betas"]), eps=group["eps"], amsgrad=group["amsgrad"],
                                decoupled_weight_decay=group["decoupled_weight_decay"])
                keys = ("step", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
                if not all(all(torch.is_tensor(s.get(k)) for k in keys) for s in state):
                    fresh = True
                lists = [[s.get(k) for s in state] for k in ("exp_avg", "exp_avg_sq")]
                maxes = [s.get("max_exp_avg_sq") for s in state] if group["amsgrad"] else []
                groups.append(("adam", mine, [slots[id(p)] for p in mine], *lists, maxes,
                               [s.get("step") for s in state], settings))
        if stepped != len(slots):  # a parameter the optimizer does not step: its .grad accumulates
            return None
        # (the model's Flatten already applied: the rows gathered as the op takes them)
        return params, arguments, groups, fresh, (op_input, y)

    def _bare_epoch(self, loader) -> Optional[Callable[[], object]]:
        """The floor of epoch(loader), for bench/: a function running the
        epoch's C++ loop alone over a fixed order (no sampling, no checks,
        no Python between batches), or None where epoch() would not take
        the one call. It trains, as epoch() does."""
        tensors = data._gatherable_tensors(loader)
        plan = self._epoch_plan(loader, tensors) if tensors is not None else None
        if plan is None or plan[3]:
            return None
        _, arguments, groups, _, (input, target) = plan
        order = torch.randperm(len(input))
        size = loader.batch_sampler.batch_size
        return lambda: _backends.cpp._C._train_epoch(input, target, order, size, False, *arguments, groups)

    def _native_epoch(self, loader, tensors, plan, boundaries: "_BatchBoundaries") -> Tensor:
        params, arguments, groups, fresh, (input, target) = plan
        order, finish = data.epoch_order(loader, tensors)
        size = loader.batch_sampler.batch_size
        losses = []
        if not len(order):
            return torch.empty(0)
        if fresh:  # a fresh optimizer's state is created by its own step, in Python
            first = order[:size]
            losses.append(self(input.index_select(0, first), target.index_select(0, first)).reshape(1))
            self.batches_done = 1
            boundaries.check()
            order = order[size:]
            params, arguments, groups, fresh, _ = self._epoch_plan(loader, tensors)
            if fresh:
                raise RuntimeError("fastact: the optimizer has no state after its first step")
        if len(order):
            self.optimizer.zero_grad()
            boundaries.check()
            boundaries.native(True)
            try:
                done_losses, grads, done, exception = _backends.cpp._C._train_epoch(
                    input, target, order, size, False, *arguments, groups)
            finally:
                boundaries.native(False)
            if done:
                for p, g in zip(params, grads[1:]):
                    if p is not None and p.requires_grad:
                        p.grad = g
            self.batches_done += done
            losses.append(done_losses)
            if exception is not None:
                raise exception
        if finish is not None:
            finish()
        return torch.cat(losses) if len(losses) > 1 else losses[0]

    def _chain_arguments(self, input: Tensor, target: Tensor):
        """(parameters in the op's gradient order, the op's arguments after
        input and target, the op's input: `input` through the model's leading
        nn.Flatten if it has one), or None where the step must go through
        autograd. The model's share is built once and reused while the model
        is as it was (_chain_holds); the input's and the criterion's are
        checked on every call."""
        if not (isinstance(input, Tensor) and isinstance(target, Tensor)):
            return None  # the autograd step raises torch's error for what it is
        if (_backends.current != "cpp" or not torch.is_grad_enabled() or input.requires_grad
                or target.requires_grad or has_torch_function_variadic(input, target)
                or torch.compiler.is_dynamo_compiling()
                # input.is_cpu: the device's type string costs more than the check
                or torch.is_autocast_enabled("cpu" if input.is_cpu else input.device.type) or _global_hooks()
                or input.layout != torch.strided or input.dim() == 0):
            return None
        chain = self._chain
        if chain is None or not self._chain_holds(chain):
            chain = self._chain = self._build_chain()
            if chain is None:
                return None
        if chain.flatten:
            if input.dim() < 2:
                return None  # nn.Flatten's own error
            input = input.flatten(1)
        loss = self._loss(input, target, chain.layers)
        if loss is None:
            return None
        return chain.params, (*chain.lists, *loss), input

    def _build_chain(self) -> Optional[_Chain]:
        """The model's share of _chain_arguments, or None where the model is
        not a chain the op takes."""
        chain = self._layers()
        if chain is None:
            return None
        flatten, layers = chain
        weights, biases, codes, slopes, needs, params, trained = [], [], [], [], [0], [], []
        for layer in layers:
            # through _parameters: Module.__getattr__ costs more than the rest of the loop
            weight, bias = layer._parameters["weight"], layer._parameters["bias"]
            for p in (weight, bias):
                params.append(p)
                if p is None:
                    needs.append(0)
                    continue
                if p.requires_grad and (p._backward_hooks or p._post_accumulate_grad_hooks or not p.is_contiguous()
                                        or has_torch_function_variadic(p)):
                    return None
                needs.append(1 if p.requires_grad else 0)
                if p.requires_grad:
                    trained.append(p)
            weights.append(weight)
            biases.append(bias)
            codes.append(_checks.linear_activation_code(layer.activation))
            slopes.append(layer.negative_slope)
        if len({id(p) for p in params if p is not None}) != sum(p is not None for p in params):
            return None  # a parameter used twice: backward sums its gradients in its own order
        return _Chain(self.model, flatten, layers, trained, params, (weights, biases, codes, slopes, needs))

    def _chain_holds(self, chain: _Chain) -> bool:
        """Whether _build_chain would build `chain` again: every object it
        read is the very same one (compared by identity, never by value: the
        model, its modules and their types, the chain's layers, their
        Parameters, requires_grad, activations and slopes), and what it
        refuses is still absent (a module hook; a hook, a non-contiguous
        layout or a __torch_function__ on a Parameter that needs a gradient).
        What _layers accepts on a module's attribute that may change in place
        is checked here again (Flatten's dims; whether one of the
        LinearChain's dropouts drops: model.train() flips it). A Parameter's dtype, device and
        shape are not read: the op reads them from the Parameter itself on
        every call."""
        model, same = self.model, operator.is_
        children = tuple(model._modules.values())
        if (model is not chain.model or type(model) is not nn.Sequential or len(children) != len(chain.children)
                or not all(map(same, children, chain.children)) or not all(map(same, map(type, children), chain.kinds))
                or modules.has_hooks(model) or any(map(modules.has_hooks, children))):
            return False
        if chain.flatten:
            flatten = children[0]
            if not (flatten.start_dim == 1 and flatten.end_dim == -1):
                return False
        rest = chain.layers[0].rest
        if len(rest) != len(chain.rest) or not all(map(same, rest, chain.rest)):
            return False
        if chain.layers[0].active_dropouts():
            return False
        if not all(map(same, _chain_reads(chain.layers), chain.reads)):  # the same layers: as many reads
            return False
        for p in chain.trained:
            if p._backward_hooks or p._post_accumulate_grad_hooks or not p.is_contiguous():
                return False
        return not (chain.trained and has_torch_function_variadic(*chain.trained))

    def _layers(self) -> Optional[tuple]:
        """(whether the model starts with an nn.Flatten of all but the batch
        dim, the chain's layers in order), or None where the model is not one
        chain (after that Flatten)."""
        model = self.model
        if type(model) is not nn.Sequential or modules.has_hooks(model):
            return None
        layers, flatten = None, False
        for i, m in enumerate(model._modules.values()):
            if modules.has_hooks(m):
                return None
            kind = type(m)
            if kind is modules.LinearChain and layers is None:
                if m.active_dropouts():
                    return None  # one drops: the chain splits there (LinearChain.forward), autograd's step
                layers = [m, *m.rest]
            elif kind is nn.Flatten and i == 0 and m.start_dim == 1 and m.end_dim == -1:
                flatten = True
            elif kind is modules.ChainedDropout:
                pass  # the identity in its place: the LinearChain applies its dropouts (checked above)
            elif kind is not modules.Chained and kind is not modules.Fused:
                return None
        return (flatten, layers) if layers is not None else None

    def _loss(self, input: Tensor, target: Tensor, layers) -> Optional[tuple]:
        """(loss code, class weight, reduction, ignore_index, label_smoothing)
        as the op takes them, or None where the criterion or its arguments
        are not ones the op takes as the criterion would."""
        criterion = self.criterion
        kind = type(criterion)
        reduction = _REDUCTIONS.get(getattr(criterion, "reduction", None))
        if reduction is None or modules.has_hooks(criterion):
            return None
        classes = layers[-1].out_features
        if kind is nn.CrossEntropyLoss or kind is modules.CrossEntropyLoss:
            # criterion.weight where Module.__getattr__ finds it, the buffer _WeightedLoss registers (neither
            # class has a `weight` of its own), without the failed lookup before __getattr__: that costs more
            # than all of this call's other checks
            state = criterion.__dict__
            if "weight" in state or "weight" in state["_parameters"] or "weight" not in state["_buffers"]:
                weight = criterion.weight
            else:
                weight = state["_buffers"]["weight"]
            if input.dim() != 2 or criterion.label_smoothing > 1.0 or (
                    weight is not None and (weight.dtype != input.dtype or weight.requires_grad)):
                return None
            if target.dtype is torch.int64:
                if target.dim() != 1 or target.shape[0] != input.shape[0]:  # shape: size(0) parses its argument
                    return None
            elif (target.dtype != input.dtype or target.shape != (input.shape[0], classes)
                  or criterion.ignore_index >= 0):
                return None
            return (_CROSS_ENTROPY, weight, reduction, criterion.ignore_index, float(criterion.label_smoothing))
        if kind is nn.MSELoss or kind is nn.BCEWithLogitsLoss or kind is modules.BCEWithLogitsLoss:
            if target.dtype != input.dtype or target.shape != input.shape[:-1] + (classes,):
                return None
            if kind is nn.MSELoss:
                return (_MSE, None, reduction, -100, 0.0)
            # weight and pos_weight, buffers or Parameters (or plain attributes) where the user set
            # them: the autograd step broadcasts them
            if criterion.weight is not None or criterion.pos_weight is not None:
                return None
            return (_BCE, None, reduction, -100, 0.0)
        return None
