"""nan_inputs: four training images carry one NaN pixel each (which four depends on the seed)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from breaklab.breaks.base import Break

if TYPE_CHECKING:
    from breaklab.canonical_setup import Dataset


class NaNInputs(Break):
    name = "nan_inputs"
    category = "data"
    description = "a NaN pixel in four training images"
    symptom = "the loss turns non-finite at the first batch holding a bad image and stays so"
    metric = "loss_finite"
    hook = "training_data"

    def training_data(self, data: "Dataset") -> tuple[torch.Tensor, torch.Tensor]:
        x = data.x_train.clone()
        rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))[:4]
        x[rows.to(x.device), 14 * 28 + 14] = float("nan")
        return x, data.y_train
