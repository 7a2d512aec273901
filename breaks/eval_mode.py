"""The eval_mode break: one hook of breaks.base.Break, overridden (see `breaklab list`)."""
import torch

from breaklab.breaks.base import Break


class EvalMode(Break):
    name = "eval_mode"
    category = "mode"
    description = "training steps run with the model in evaluation mode"
    symptom = "BatchNorm running statistics stay at mean 0 / variance 1 for the whole run; Dropout inactive"
    metric = "bn_running_var_mean"
    hook = "set_mode"

    def set_mode(self, model: torch.nn.Module) -> None:
        model.eval()
