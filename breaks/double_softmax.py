"""The double_softmax break: one hook of breaks.base.Break, overridden (see `breaklab list`)."""
import torch

from breaklab.breaks.base import Break


class DoubleSoftmax(Break):
    name = "double_softmax"
    category = "objective"
    description = "softmax applied to the logits before F.cross_entropy"
    symptom = "outputs fed to the loss are probabilities (rows sum to 1); loss stalls near 1.5 (floor 1.46); small gradients"
    metric = "logit_rowsum_mean"
    hook = "outputs"

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=1)
