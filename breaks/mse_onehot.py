"""mse_onehot: the loss is the mean squared error between the outputs and one-hot targets."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from breaklab.breaks.base import Break


class MSEOneHot(Break):
    name = "mse_onehot"
    category = "objective"
    description = "mean squared error between the logits and one-hot targets"
    symptom = "initial loss about 0.1, not ln 10; a few points of test accuracy lost"
    metric = "loss"
    hook = "loss"

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs, F.one_hot(y, outputs.shape[1]).to(outputs.dtype))
