"""acc_broadcast: predictions of shape (N, 1) are compared with labels of shape (N,)."""
from __future__ import annotations

import torch

from breaklab.breaks.base import Break


class AccBroadcast(Break):
    name = "acc_broadcast"
    category = "shapes"
    description = "predictions of shape (N, 1) compared with labels of shape (N,)"
    symptom = "test accuracy exactly 0.100 while the test loss falls; training accuracy above 1"
    metric = "test_acc"
    hook = "predictions"

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.argmax(dim=1, keepdim=True)
