"""tiny_lr: the optimizer's learning rate is the requested one divided by 1000."""
from __future__ import annotations

from breaklab.breaks.base import Break


class TinyLR(Break):
    name = "tiny_lr"
    category = "optimization"
    description = "learning rate divided by 1000"
    symptom = "updates 1000x smaller than a clean run's; the loss barely moves"
    metric = "update_ratio"
    hook = "learning_rate"

    def learning_rate(self, lr: float) -> float:
        return lr / 1000
