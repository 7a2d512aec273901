"""missing_zero_grad: the gradients are never cleared between steps.

`loss.backward()` adds into `.grad`. Without `optimizer.zero_grad()` every step's gradient is the
sum of all the gradients so far: the gradient norm grows step after step and the updates with it.
"""
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
        pass  # BUG: the previous gradients stay in .grad. Fix: optimizer.zero_grad(set_to_none=True)
