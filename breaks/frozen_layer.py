"""frozen_layer: the first linear layer has requires_grad set to False."""
from __future__ import annotations

from typing import Iterable

from torch import nn

from breaklab.breaks.base import Break


class FrozenLayer(Break):
    name = "frozen_layer"
    category = "optimization"
    description = "the first layer frozen (requires_grad_(False))"
    symptom = "the first layer's gradient is exactly 0 while its units are active"
    metric = "grad_norm_by_layer.fc1.weight"
    hook = "trained_parameters"

    def trained_parameters(self, model: nn.Module) -> Iterable[nn.Parameter]:
        model.fc1.requires_grad_(False)
        return model.parameters()
