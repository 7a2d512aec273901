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

    def set_mode(self, model: nn.Module) -> None:
        started = self.__dict__.setdefault("_started", weakref.WeakSet())
        if model not in started:
            model.train()
            started.add(model)
