"""clip_before_unscale: under AMP with clipping, the gradients are clipped, then unscaled."""
from __future__ import annotations

import torch
from torch import nn

from breaklab.breaks.base import Break


class ClipBeforeUnscale(Break):
    name = "clip_before_unscale"
    category = "numerics"
    description = "gradients clipped before GradScaler.unscale_ (AMP with clipping at 1.0)"
    symptom = "gradient norm = clip norm / loss scale (1.5e-5) at every step; nothing is learned"
    metric = "grad_norm"
    hook = "unscale_and_clip"
    needs_amp = True
    needs_clip_grad = 1.0

    def unscale_and_clip(self, scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer,
                         model: nn.Module, max_norm: float) -> None:
        if max_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        scaler.unscale_(optimizer)
