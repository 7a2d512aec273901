"""eval_in_train_mode: the test pass runs in the mode the training steps left the model in."""
from __future__ import annotations

from torch import nn

from breaklab.breaks.base import Break


class EvalInTrainMode(Break):
    name = "eval_in_train_mode"
    category = "mode"
    description = "evaluation without model.eval() (BatchNorm batch statistics, Dropout on)"
    symptom = "none measurable: test accuracy as the clean run's"
    metric = "test_acc"
    hook = "eval_mode"
    control = True

    def eval_mode(self, model: nn.Module) -> None:
        pass
