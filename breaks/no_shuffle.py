"""no_shuffle: the training batches follow the dataset's stored order, every epoch."""
from __future__ import annotations

from typing import Iterator

import torch

from breaklab.breaks.base import Break


class NoShuffle(Break):
    name = "no_shuffle"
    category = "data"
    description = "training batches in the dataset's stored order every epoch (no shuffling)"
    symptom = "training accuracy in the loop near 0 (each batch is one class), test accuracy near chance"
    metric = "train_acc"
    hook = "batch_order"

    def batch_order(self, n: int, batch_size: int, seed: int, epoch: int) -> Iterator[torch.Tensor]:
        return iter(torch.arange(n).split(batch_size))
