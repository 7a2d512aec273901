"""nll_on_logits: the loss is F.nll_loss applied to the model's outputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from breaklab.breaks.base import Break


class NLLOnLogits(Break):
    name = "nll_on_logits"
    category = "objective"
    description = "F.nll_loss on the raw logits"
    symptom = "the loss starts near 0 and falls without bound (negative); logits explode"
    metric = "loss"
    hook = "loss"

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(outputs, y)
