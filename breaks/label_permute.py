"""The label_permute break: one hook of breaks.base.Break, overridden (see `breaklab list`)."""
import torch

from breaklab.breaks.base import Break


class LabelPermute(Break):
    name = "label_permute"
    category = "data"
    description = "labels shuffled independently of the inputs (each label goes to a random image)"
    symptom = "training loss stays near ln(10) = 2.30 and test accuracy stays at chance (~10%)"
    metric = "test_acc"
    hook = "targets"

    def targets(self, y: torch.Tensor, step: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 7919 + step)
        return y[torch.randperm(len(y), generator=generator).to(y.device)]
