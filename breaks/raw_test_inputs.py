"""raw_test_inputs: test images go in as 0..1 pixel values; training images are standardised."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from breaklab.canonical_setup import MNIST_MEAN, MNIST_STD
from breaklab.breaks.base import Break

if TYPE_CHECKING:
    from breaklab.canonical_setup import Dataset


class RawTestInputs(Break):
    name = "raw_test_inputs"
    category = "data"
    description = "test inputs scaled to 0..1 while training inputs are standardised (mean/std)"
    symptom = "test loss many times the training loss; test accuracy far below training accuracy"
    metric = "test_loss"
    hook = "test_data"

    def test_data(self, data: "Dataset") -> tuple[torch.Tensor, torch.Tensor]:
        return data.x_test * MNIST_STD + MNIST_MEAN, data.y_test
