"""Which layers of an arbitrary model the metrics describe, found by watching one forward pass.

The metrics (docs/METRICS.md) name a "first layer" (its activations, its dead units), a "last
layer" (the output fed to the loss), every BatchNorm and the parameters the optimizer updates.
trainer.py's MLP names them in code; for anyone else's model they are found here:

* every module that owns parameters or has no children gets a forward hook for one pass, which
  records the order the modules run in (definition order says little: a model may define its
  head first) and each one's last input and output;
* the first layer is the first module to run that owns a weight matrix or kernel (a `weight`
  of two or more dimensions) the optimizer updates; embeddings are skipped, since their rows
  are tokens, not units;
* its activations are what the next module receives after the normalisations and activation
  functions that follow it, the way `relu(bn(fc(x)))` reaches a Dropout or the next layer
  (an activation applied with torch.nn.functional has no module: it is seen as the next
  module's input). When that tensor does not have the first layer's units, the first layer's
  own output is used;
* the last layer is the last module to run that owns a weight matrix or kernel.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

# Modules whose output is still "the first layer's activations": normalisations and
# element-wise activation functions (MultiheadAttention lives in torch.nn.modules.activation
# too, but is a layer).
PASS_THROUGH = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.Identity)
_ACTIVATION_MODULE = "torch.nn.modules.activation"


def is_pass_through(module: nn.Module) -> bool:
    if isinstance(module, PASS_THROUGH):
        return True
    return type(module).__module__ == _ACTIVATION_MODULE and not isinstance(module, nn.MultiheadAttention)


def weight_matrix(module: nn.Module) -> torch.Tensor | None:
    """The module's own weight when it is a matrix or kernel (Linear, ConvNd, a custom layer),
    not a norm's scale vector or an embedding table."""
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return None
    weight = module._parameters.get("weight")
    return weight if weight is not None and weight.dim() >= 2 else None


def unit_dim_of(module: nn.Module) -> int:
    """Where a layer's output holds its units: channels (dim 1) for a convolution, the last
    dimension for a linear layer (features of (batch, features) or (batch, time, features))."""
    return 1 if isinstance(module, nn.modules.conv._ConvNd) else -1


@dataclass
class Layers:
    """What the metrics describe in one model."""

    parameters: list[tuple[str, nn.Parameter]]   # the optimizer's, the first layer's weight first
    first: str | None = None                     # module name of the first layer
    first_weight: str | None = None              # its weight's parameter name
    activation: str | None = None                # where its activations are read, in words
    activation_module: nn.Module | None = None   # the module whose input or output they are
    activation_is_input: bool = False
    unit_dim: int = -1
    last: str | None = None
    last_module: nn.Module | None = None
    batchnorms: list[tuple[str, nn.Module]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"first": self.first, "activations": self.activation, "last": self.last,
                "batchnorms": [n for n, _ in self.batchnorms],
                "parameters": [n for n, _ in self.parameters]}


def optimizer_parameters(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) for every parameter the optimizer holds, in the model's order; one the
    model does not own is named by its place in the optimizer."""
    held = {id(p): (g, j) for g, group in enumerate(optimizer.param_groups) for j, p in enumerate(group["params"])}
    named, seen = [], set()
    for name, p in model.named_parameters():
        if id(p) in held and id(p) not in seen:
            named.append((name, p))
            seen.add(id(p))
    for g, group in enumerate(optimizer.param_groups):
        for j, p in enumerate(group["params"]):
            if id(p) not in seen:
                named.append((f"param_groups.{g}.params.{j}", p))
                seen.add(id(p))
    return named


class ForwardWatch:
    """Forward hooks on every module that owns parameters or has no children: the order in
    which they run and each one's last input and output, under autograd only (an evaluation
    under torch.no_grad() is not a training step). A forward of the whole model starts a new
    record, so with gradient accumulation the last forward is the one described."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.order: list[nn.Module] = []
        self.io: dict[int, tuple[Any, Any]] = {}
        self._handles = [model.register_forward_pre_hook(self._new_pass)]
        for module in model.modules():
            if module is model and next(module.children(), None) is not None and not module._parameters:
                continue
            if module._parameters or next(module.children(), None) is None:
                self._handles.append(module.register_forward_hook(self._seen))

    def _new_pass(self, module, args) -> None:
        if torch.is_grad_enabled():
            self.order, self.io = [], {}

    def _seen(self, module, args, output) -> None:
        if not torch.is_grad_enabled():
            return
        if id(module) not in self.io:
            self.order.append(module)
        self.io[id(module)] = (args[0] if args else None, output)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def discover(model: nn.Module, optimizer: torch.optim.Optimizer, watch: ForwardWatch | None) -> Layers:
    """The layers, from the forward pass `watch` saw (or, without one, definition order)."""
    names = {id(m): n for n, m in model.named_modules()}
    params = optimizer_parameters(model, optimizer)
    held = {id(p) for _, p in params}
    order = watch.order if watch is not None and watch.order else list(model.modules())
    weight_layers = [m for m in order if (w := weight_matrix(m)) is not None and id(w) in held]
    layers = Layers(parameters=params,
                    batchnorms=[(n, m) for n, m in model.named_modules()
                                if isinstance(m, nn.modules.batchnorm._BatchNorm)
                                and m.track_running_stats and m.running_mean is not None])
    if not weight_layers:
        return layers
    first, last = weight_layers[0], weight_layers[-1]
    layers.first, layers.last, layers.last_module = names.get(id(first), "?"), names.get(id(last), "?"), last
    weight = weight_matrix(first)
    layers.first_weight = next(n for n, p in params if p is weight)
    layers.parameters = ([(layers.first_weight, weight)]
                         + [(n, p) for n, p in params if p is not weight])
    layers.unit_dim = unit_dim_of(first)
    layers.activation_module, layers.activation = first, f"output of {layers.first}"
    if watch is None or not watch.order:
        return layers
    units = weight.shape[0]
    position = order.index(first)
    source, as_input, passed = first, False, []
    for module in order[position + 1:]:
        if is_pass_through(module):
            source, as_input = module, False
            passed.append(names.get(id(module), "?"))
            continue
        source, as_input = module, True
        break
    tensor = _tensor_of(watch.io.get(id(source)), as_input)
    if _has_units(tensor, units, layers.unit_dim, _tensor_of(watch.io.get(id(first)), False)):
        layers.activation_module, layers.activation_is_input = source, as_input
        if as_input:
            layers.activation = f"input of {names.get(id(source), '?')}"
        elif source is not first:
            layers.activation = f"output of {names.get(id(source), '?')}"
    return layers


def _tensor_of(io: tuple[Any, Any] | None, as_input: bool) -> torch.Tensor | None:
    if io is None:
        return None
    value = io[0] if as_input else io[1]
    return value if isinstance(value, torch.Tensor) else None


def _has_units(tensor: torch.Tensor | None, units: int, unit_dim: int, first_output: torch.Tensor | None) -> bool:
    """Whether `tensor` is shaped like the first layer's output: same batch, same units."""
    if tensor is None or first_output is None or tensor.dim() != first_output.dim() or tensor.dim() < 2:
        return False
    return tensor.shape[0] == first_output.shape[0] and tensor.shape[unit_dim] == units
