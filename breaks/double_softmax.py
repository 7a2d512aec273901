"""double_softmax: softmax is applied before cross_entropy, which applies log-softmax itself.

The loss then sees probabilities in [0, 1] as if they were logits. The largest "logit" gap it can
see is 1, so the loss cannot go below about 1.46 even for perfect predictions, the gradients are
squashed, and learning slows. Accuracy can still look decent: the symptom is the loss floor and
outputs that sum to 1.
"""
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
        return logits.softmax(dim=1)  # BUG: cross_entropy expects logits. Fix: return logits
