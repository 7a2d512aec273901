"""The missing_zero_grad break: one hook of breaks.base.Break, overridden (see `breaklab list`)."""
import torch

from breaklab.breaks.base import Break


class MissingZeroGrad(Break):
    name = "missing_zero_grad"
    category = "optimization"
    description = "optimizer.zero_grad() is missing: gradients accumulate over steps"
    symptom = "global gradient norm grows step over step; the loss then explodes"
    metric = "grad_norm"
    hook = "zero_grad"

    def zero_grad(self, optimizer: torch.optim.Optimizer) -> None:
        pass
