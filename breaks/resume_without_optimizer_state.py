"""resume_without_optimizer_state: on resume, the optimizer keeps the state it was built with."""
from __future__ import annotations

import torch

from breaklab.breaks.base import Break


class ResumeWithoutOptimizerState(Break):
    name = "resume_without_optimizer_state"
    category = "checkpoint"
    description = "resume without the optimizer's state (the run resumes itself after epoch 1)"
    symptom = "the first update after the resume is about 30x smaller than the one before; the run leaves the uninterrupted one"
    metric = "update_ratio"
    hook = "load_optimizer_state"
    restart_after = 1

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict) -> None:
        pass
