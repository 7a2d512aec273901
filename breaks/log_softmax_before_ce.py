"""log_softmax_before_ce: log_softmax is applied to the logits before F.cross_entropy."""
from __future__ import annotations

import torch

from breaklab.breaks.base import Break


class LogSoftmaxBeforeCE(Break):
    name = "log_softmax_before_ce"
    category = "objective"
    description = "log_softmax applied to the logits before F.cross_entropy"
    symptom = "none measurable: the same loss to 1e-6; the logged outputs are all <= 0"
    metric = "logit_max"
    hook = "outputs"
    control = True

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.log_softmax(dim=1)
