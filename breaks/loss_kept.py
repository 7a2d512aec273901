"""loss_kept: the epoch's running loss adds up the loss tensors themselves."""
from __future__ import annotations

import torch

from breaklab.breaks.base import Break


class LossKept(Break):
    name = "loss_kept"
    category = "memory"
    description = "the running loss sums loss tensors (total += loss), not numbers"
    symptom = "the count of earlier steps' autograd graphs still alive grows by one per step"
    metric = "loss_graphs_alive"
    hook = "running_loss"

    def running_loss(self, total, loss: torch.Tensor):
        return total + loss
