"""eval_mode: the model trains in evaluation mode.

The usual way in: `model.eval()` for a validation pass and no `model.train()` after it. In eval
mode BatchNorm normalises with its running averages instead of the batch statistics and never
updates them, and Dropout is off. Accuracy can look fine on a small MLP: the measurable symptom is
that BatchNorm's running statistics never move from their initial values (mean 0, variance 1),
and that ReLU units die that batch statistics would have kept alive.
"""
import torch

from breaklab.breaks.base import Break


class EvalMode(Break):
    name = "eval_mode"
    category = "mode"
    description = "training steps run with model.eval() instead of model.train()"
    symptom = "BatchNorm running statistics stay at mean 0 / variance 1 for the whole run; Dropout inactive"
    metric = "bn_running_var_mean"
    hook = "set_mode"

    def set_mode(self, model: torch.nn.Module) -> None:
        model.eval()  # BUG: should be model.train()
