"""same_order_every_epoch: the training batches are shuffled once; every epoch uses that order."""
from __future__ import annotations

from typing import Iterator

import torch

from breaklab.canonical_setup import minibatches
from breaklab.breaks.base import Break


class SameOrderEveryEpoch(Break):
    name = "same_order_every_epoch"
    category = "data"
    description = "one shuffled order of the training batches, reused every epoch"
    symptom = "none measurable: test accuracy as the clean run's"
    metric = "test_acc"
    hook = "batch_order"
    control = True

    def batch_order(self, n: int, batch_size: int, seed: int, epoch: int) -> Iterator[torch.Tensor]:
        return minibatches(n, batch_size, seed, 0)
