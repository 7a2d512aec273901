"""log_of_softmax: the loss is F.nll_loss on torch.log of the softmax of the outputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from breaklab.breaks.base import Break


class LogOfSoftmax(Break):
    name = "log_of_softmax"
    category = "objective"
    description = "F.nll_loss(torch.log(softmax(logits))) as the loss, in float32"
    symptom = "none measurable in float32: the same loss to 1e-6"
    metric = "loss"
    hook = "loss"
    control = True

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(torch.log(F.softmax(outputs, dim=1)), y)
