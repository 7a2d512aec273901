"""loss_all_pairs: the loss is minus the mean of log_softmax(outputs)[:, y]."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from breaklab.breaks.base import Break


class LossAllPairs(Break):
    name = "loss_all_pairs"
    category = "shapes"
    description = "cross-entropy by hand with log_probs[:, y], an (N, N) matrix, averaged"
    symptom = "loss stays at ln 10 and accuracy at chance although the labels are right"
    metric = "loss"
    hook = "loss"

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -F.log_softmax(outputs, dim=1)[:, y].mean()
