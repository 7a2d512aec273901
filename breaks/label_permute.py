"""label_permute: the labels are shuffled with their own permutation, not the images' one.

The classic way to get here: two loaders (or two `shuffle` calls) for images and labels. Each
label then belongs to a random image of the batch: no input carries information about its
target, so nothing can be learned and test accuracy sits at chance (about 10%).
"""
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
        # BUG: a second, independent permutation of the labels (seeded from the step, so the
        # run stays deterministic and resumable). Fix: return y unchanged.
        g = torch.Generator().manual_seed(self.seed * 7919 + step)
        return y[torch.randperm(len(y), generator=g).to(y.device)]
