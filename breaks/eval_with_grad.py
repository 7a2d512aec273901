"""eval_with_grad: the test pass runs with autograd on."""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from breaklab.breaks.base import Break


class EvalWithGrad(Break):
    name = "eval_with_grad"
    category = "memory"
    description = "evaluation without torch.no_grad()"
    symptom = "autograd saves about 6 MB during every test pass (0 under no_grad)"
    metric = "test_autograd_bytes"
    hook = "eval_grad_mode"

    def eval_grad_mode(self) -> ContextManager:
        return contextlib.nullcontext()
