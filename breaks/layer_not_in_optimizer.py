"""layer_not_in_optimizer: the optimizer is given the parameters of bn1 and fc2 only."""
from __future__ import annotations

from typing import Iterable

from torch import nn

from breaklab.breaks.base import Break


class LayerNotInOptimizer(Break):
    name = "layer_not_in_optimizer"
    category = "optimization"
    description = "the first layer's parameters left out of the optimizer"
    symptom = "the first layer's gradient norm grows step after step; the other layers' do not"
    metric = "grad_norm_by_layer.fc1.weight"
    hook = "trained_parameters"

    def trained_parameters(self, model: nn.Module) -> Iterable[nn.Parameter]:
        return [*model.bn1.parameters(), *model.fc2.parameters()]
