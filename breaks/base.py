"""The clean behaviour of every step a break can change.

`trainer.py` calls these hooks at the places marked ``# BREAK HOOK`` in its loop. The base
class does the right thing at each of them; a break is a subclass that overrides exactly one
hook, so each bug reads as a small, obvious difference from this file.

Every clean hook does exactly what trainer.py did before the hook existed, in the same order and
without drawing a random number, so a clean run's files are the same bytes with or without them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, ContextManager, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from breaklab.canonical_setup import Dataset

CATEGORIES = ("data", "target", "objective", "shapes", "numerics", "optimization", "mode", "memory",
              "checkpoint")


class Break:
    """No bug: the canonical training step."""

    name: ClassVar[str] = "none"
    category: ClassVar[str] = "none"  # one of CATEGORIES
    description: ClassVar[str] = "the clean training loop"
    symptom: ClassVar[str] = "none: loss falls, test accuracy about 94% after 3 epochs"
    metric: ClassVar[str] = "test_acc"  # the metric (metrics.jsonl field) that shows the symptom
    hook: ClassVar[str] = ""  # the hook this break overrides
    # A control looks like a classic bug but does no measurable harm in this setup: part of the
    # catalogue, so that "is this a bug?" has an honest "no" among its answers.
    control: ClassVar[bool] = False
    # What a break needs switched on to exist at all (the run switches it on for it):
    needs_amp: ClassVar[bool] = False        # mixed precision (float16 autocast)
    needs_clip_grad: ClassVar[float] = 0.0   # gradient clipping, at this max norm unless --clip-grad sets one
    accumulation_steps: ClassVar[int] = 1    # micro-batches per optimizer step (1: none)
    restart_after: ClassVar[int | None] = None  # epochs after which the run continues from its checkpoint

    def __init__(self, seed: int = 0):
        self.seed = seed

    # -- data --------------------------------------------------------------------------
    def training_data(self, data: "Dataset") -> tuple[torch.Tensor, torch.Tensor]:
        """The examples the model trains on: the training split, inputs and labels."""
        return data.x_train, data.y_train

    def test_data(self, data: "Dataset") -> tuple[torch.Tensor, torch.Tensor]:
        """The examples the model is evaluated on: the test split, preprocessed like the
        training split."""
        return data.x_test, data.y_test

    def batch_order(self, n: int, batch_size: int, seed: int, epoch: int) -> Iterator[torch.Tensor]:
        """The epoch's minibatches of example indices: a new seeded shuffle every epoch."""
        from breaklab.canonical_setup import minibatches

        return minibatches(n, batch_size, seed, epoch)

    # -- model and optimisation setup ----------------------------------------------------
    def init_weights(self, model: nn.Module) -> None:
        """The model's initial weights: it keeps the ones MLP.__init__ gave it (He init for the
        hidden layer, a small normal init for the output layer, zero biases)."""

    def trained_parameters(self, model: nn.Module) -> Iterable[nn.Parameter]:
        """The parameters the optimizer updates: all of them."""
        return model.parameters()

    def learning_rate(self, lr: float) -> float:
        """The learning rate given to the optimizer."""
        return lr

    def warmup_steps(self, steps: int) -> int:
        """Steps of linear learning-rate warmup before the cosine decay: the configured ones."""
        return steps

    def use_grad_scaler(self, amp: bool) -> bool:
        """Whether the GradScaler scales the loss (it must whenever float16 autocast is on)."""
        return amp

    # -- inside the training step --------------------------------------------------------
    def set_mode(self, model: nn.Module) -> None:
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

    def micro_batch_loss(self, loss: torch.Tensor, micro_batches: int) -> torch.Tensor:
        """The share of one micro-batch's loss in the step's loss when the batch is split into
        `micro_batches` whose gradients add up (gradient accumulation): its mean loss divided by
        their number, so that the summed gradient is the whole batch's mean gradient."""
        return loss / micro_batches

    def unscale_and_clip(self, scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer,
                         model: nn.Module, max_norm: float) -> None:
        """Divide the loss scale out of the gradients (true gradients from here on), then clip
        their global norm to max_norm (0: no clipping)."""
        scaler.unscale_(optimizer)
        if max_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), max_norm)

    def optimizer_step(self, scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> None:
        """Apply the gradients once, through the GradScaler (which skips the step when a
        gradient is inf or NaN)."""
        scaler.step(optimizer)

    # -- around the training step ---------------------------------------------------------
    def scheduler_step(self, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        """Move the learning-rate schedule on by one step, after every optimizer step."""
        scheduler.step()

    def running_loss(self, total: float, loss: torch.Tensor) -> float:
        """Add a step's loss to the epoch's running total, as a Python number: the total is
        for the log, so it keeps no tensor (and no autograd graph) alive."""
        return total + loss.item()

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """The predicted class of each example, shape (N,), to compare with the labels."""
        return outputs.argmax(dim=1)

    # -- evaluation -------------------------------------------------------------------------
    def eval_mode(self, model: nn.Module) -> None:
        """Put the model in evaluation mode for the test pass: BatchNorm uses its running
        statistics and leaves them alone, Dropout passes everything through."""
        model.eval()

    def eval_grad_mode(self) -> ContextManager:
        """The autograd mode of the test pass: no_grad, so no graph is recorded."""
        return torch.no_grad()

    # -- checkpoints ------------------------------------------------------------------------
    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict) -> None:
        """On resume: the optimizer's saved state (momentum buffers, learning rates)."""
        optimizer.load_state_dict(state)

    def restore_rng_state(self, state: dict) -> None:
        """On resume: every RNG's saved state (Python, NumPy, torch), so that dropout draws
        the numbers the uninterrupted run would have drawn."""
        from breaklab.canonical_setup import set_rng_state

        set_rng_state(state)
