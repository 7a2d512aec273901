"""label_shift: each training label is replaced by the next class: 0 -> 1, ..., 9 -> 0."""
from __future__ import annotations

import torch

from breaklab.breaks.base import Break


class LabelShift(Break):
    name = "label_shift"
    category = "target"
    description = "training labels shifted by one class ((y + 1) mod 10); test labels unchanged"
    symptom = "high training accuracy, test accuracy below chance"
    metric = "test_acc"
    hook = "targets"

    def targets(self, y: torch.Tensor, step: int) -> torch.Tensor:
        return (y + 1) % 10
