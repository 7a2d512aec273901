"""accumulation_not_divided: 4 micro-batches per step, each backpropagating its own mean loss."""
from __future__ import annotations

import torch

from breaklab.breaks.base import Break


class AccumulationNotDivided(Break):
    name = "accumulation_not_divided"
    category = "optimization"
    description = "gradient accumulation over 4 micro-batches, each micro-batch's mean loss backpropagated as is"
    symptom = "none measurable on accuracy at lr 0.1: loss and gradients 4x, some dead units"
    metric = "loss"
    hook = "micro_batch_loss"
    control = True
    accumulation_steps = 4

    def micro_batch_loss(self, loss: torch.Tensor, micro_batches: int) -> torch.Tensor:
        return loss
