"""The clean behaviour of every step a break can change.

`trainer.py` calls these hooks at the places marked ``# BREAK HOOK`` in its loop. The base
class does the right thing at each of them; a break is a subclass that overrides exactly one
hook, so each bug reads as a small, obvious difference from this file.
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F


class Break:
    """No bug: the canonical training step."""

    name: ClassVar[str] = "none"
    category: ClassVar[str] = "none"  # data, target, objective, numerics, optimization, mode
    description: ClassVar[str] = "the clean training loop"
    symptom: ClassVar[str] = "none: loss falls, test accuracy about 94% after 3 epochs"
    metric: ClassVar[str] = "test_acc"  # the metric (metrics.jsonl field) that shows the symptom
    hook: ClassVar[str] = ""  # the hook this break overrides
    needs_amp: ClassVar[bool] = False  # the break only exists with mixed precision on

    def __init__(self, seed: int = 0):
        self.seed = seed

    # -- optimisation setup -------------------------------------------------------------
    def learning_rate(self, lr: float) -> float:
        """The learning rate given to the optimizer."""
        return lr

    def use_grad_scaler(self, amp: bool) -> bool:
        """Whether the GradScaler scales the loss (it must whenever float16 autocast is on)."""
        return amp

    # -- inside the training step --------------------------------------------------------
    def set_mode(self, model: torch.nn.Module) -> None:
        """Put the model in training mode: BatchNorm uses batch statistics and updates its
        running averages, Dropout drops."""
        model.train()

    def targets(self, y: torch.Tensor, step: int) -> torch.Tensor:
        """The labels the loss sees for this batch: the dataset's labels of these inputs."""
        return y

    def zero_grad(self, optimizer: torch.optim.Optimizer) -> None:
        """Clear the gradients of the previous step before the backward pass."""
        optimizer.zero_grad(set_to_none=True)

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        """What the model's raw scores become before the loss: nothing, they are logits."""
        return logits

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on logits, averaged over the batch."""
        return F.cross_entropy(outputs, y)
