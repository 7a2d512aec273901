"""fp16_overflow: under float16 autocast, the loss is log(sum(exp(outputs))) - label's output."""
from __future__ import annotations

import torch

from breaklab.breaks.base import Break


class FP16Overflow(Break):
    name = "fp16_overflow"
    category = "numerics"
    description = "cross-entropy by hand, log(sum(exp(logits))) - logit[label], under float16 autocast"
    symptom = "loss non-finite once the largest logit passes 11.1; most steps skipped by the GradScaler"
    metric = "step_skipped"
    hook = "loss"
    needs_amp = True

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        log_sum_exp = outputs.exp().sum(dim=1).log()
        return (log_sum_exp - outputs.gather(1, y[:, None]).squeeze(1)).mean()
