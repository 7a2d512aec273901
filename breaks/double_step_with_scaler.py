"""double_step_with_scaler: under AMP, optimizer.step() runs after scaler.step(optimizer)."""
from __future__ import annotations

import torch

from breaklab.breaks.base import Break


class DoubleStepWithScaler(Break):
    name = "double_step_with_scaler"
    category = "numerics"
    description = "optimizer.step() called again after scaler.step(optimizer) (AMP)"
    symptom = "none measurable on accuracy: larger steps, no skipped step"
    metric = "update_ratio"
    hook = "optimizer_step"
    control = True
    needs_amp = True

    def optimizer_step(self, scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> None:
        scaler.step(optimizer)
        optimizer.step()
