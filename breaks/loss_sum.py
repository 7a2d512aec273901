"""loss_sum: the loss is summed over the batch instead of averaged.

`reduction="sum"` makes the loss, and every gradient, batch_size times larger: the initial loss
is batch_size x ln(10) instead of ln(10), and the effective learning rate is batch_size times
the one you set.
"""
import torch
import torch.nn.functional as F

from breaklab.breaks.base import Break


class LossSum(Break):
    name = "loss_sum"
    category = "objective"
    description = "cross-entropy with reduction='sum' instead of 'mean'"
    symptom = "initial loss = batch_size x ln(10) (about 147 at batch 64); gradients batch_size times larger"
    metric = "loss"
    hook = "loss"

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, y, reduction="sum")  # BUG: sum. Fix: reduction="mean"
