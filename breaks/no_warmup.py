"""no_warmup: the learning-rate schedule has no warmup: the cosine decay starts at the full
learning rate.
"""
from __future__ import annotations

from breaklab.breaks.base import Break


class NoWarmup(Break):
    name = "no_warmup"
    category = "optimization"
    description = "no learning-rate warmup (full learning rate from step 0)"
    symptom = "none measurable at lr 0.1: the first steps are 10x larger"
    metric = "lr"
    hook = "warmup_steps"
    control = True

    def warmup_steps(self, steps: int) -> int:
        return 0
