"""no_warmup: the cosine learning-rate decay starts at the full rate from step 0."""
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
