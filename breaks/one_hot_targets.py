"""one_hot_targets: cross-entropy is given one-hot probability targets."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from breaklab.breaks.base import Break


class OneHotTargets(Break):
    name = "one_hot_targets"
    category = "target"
    description = "F.cross_entropy with one-hot float targets"
    symptom = "none measurable: the same loss to 1e-6"
    metric = "loss"
    hook = "loss"
    control = True

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, F.one_hot(y, outputs.shape[1]).float())
