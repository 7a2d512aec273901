"""log_of_softmax_amp: under float16 autocast, the loss is F.nll_loss of torch.log(softmax)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from breaklab.breaks.base import Break


class LogOfSoftmaxAmp(Break):
    name = "log_of_softmax_amp"
    category = "numerics"
    description = "F.nll_loss(torch.log(softmax(logits))) under float16 autocast"
    symptom = "finite loss, but most steps skipped by the GradScaler (NaN gradients); lower accuracy"
    metric = "step_skipped"
    hook = "loss"
    needs_amp = True

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(torch.log(F.softmax(outputs, dim=1)), y)
