"""The loss_sum break: one hook of breaks.base.Break, overridden (see `breaklab list`)."""
import torch
import torch.nn.functional as F

from breaklab.breaks.base import Break


class LossSum(Break):
    name = "loss_sum"
    category = "objective"
    description = "cross-entropy summed over the batch (reduction='sum')"
    symptom = "initial loss = batch_size x ln(10) (about 147 at batch 64); gradients batch_size times larger"
    metric = "loss"
    hook = "loss"

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, y, reduction="sum")
