"""scheduler_not_stepped: the learning-rate scheduler is built; scheduler.step() is not called."""
from __future__ import annotations

import torch

from breaklab.breaks.base import Break


class SchedulerNotStepped(Break):
    name = "scheduler_not_stepped"
    category = "optimization"
    description = "scheduler.step() never called (the schedule stays at its first value)"
    symptom = "the logged learning rate never changes from its first value"
    metric = "lr"
    hook = "scheduler_step"

    def scheduler_step(self, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        pass
