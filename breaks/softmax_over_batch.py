"""softmax_over_batch: the loss is F.nll_loss of log_softmax over dim=0 of the (N, 10) outputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from breaklab.breaks.base import Break


class SoftmaxOverBatch(Break):
    name = "softmax_over_batch"
    category = "shapes"
    description = "log_softmax over dim=0 (the batch dimension) in the loss"
    symptom = "initial loss ln(batch size) = 4.16, not ln 10; lower test accuracy"
    metric = "loss"
    hook = "loss"

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(F.log_softmax(outputs, dim=0), y)
