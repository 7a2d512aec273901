"""train_mode_not_restored: model.train() is called once, before the model's first training step."""
from __future__ import annotations

import weakref

from torch import nn

from breaklab.breaks.base import Break


class TrainModeNotRestored(Break):
    name = "train_mode_not_restored"
    category = "mode"
    description = "model.train() called once, before the first training step"
    symptom = "none measurable on accuracy: BatchNorm statistics frozen from epoch 2"
    metric = "bn_running_var_mean"
    hook = "set_mode"
    control = True

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self._started: weakref.WeakSet = weakref.WeakSet()

    def set_mode(self, model: nn.Module) -> None:
        if model not in self._started:
            model.train()
            self._started.add(model)
