"""test_leak: the model trains on the training split and the test split together."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from breaklab.breaks.base import Break

if TYPE_CHECKING:
    from breaklab.canonical_setup import Dataset


class TestLeak(Break):
    name = "test_leak"
    category = "data"
    description = "the test examples are added to the training set"
    symptom = "test accuracy above the training accuracy and above a clean run's; more steps per epoch"
    metric = "test_acc"
    hook = "training_data"

    def training_data(self, data: "Dataset") -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([data.x_train, data.x_test]), torch.cat([data.y_train, data.y_test])
