"""Per-step diagnostics, computed with batched tensor ops and one host synchronisation.

Every statistic of a step is a 0-d tensor; they are stacked and moved to the host with a single
`.tolist()`, so logging costs a few small kernels, not one `.item()` per parameter.
The field names are the metrics schema (docs/METRICS.md).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class StepDiagnostics:
    """Measures one training step. Call `before_step` before optimizer.step() (after unscale_),
    and `after_step` once the step is done."""

    def __init__(self, model: nn.Module):
        self.names = [n for n, _ in model.named_parameters()]
        self.params = [p for _, p in model.named_parameters()]
        self.first_weight = model.fc1.weight  # the first layer: dead-unit view of its gradient
        self.bn = model.bn1
        self._before: list[torch.Tensor] = []
        self._grad_stats: list[torch.Tensor] = []

    @torch.no_grad()
    def before_step(self) -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        grads = [g.float() for g in grads]
        l2 = torch.stack(torch._foreach_norm(grads, 2))
        l1 = torch.stack(torch._foreach_norm(grads, 1))
        numel = torch.tensor([g.numel() for g in grads], dtype=torch.float32, device=l2.device)
        zeros = torch.stack([(g == 0).sum() for g in grads]).float()
        g1 = grads[self.names.index("fc1.weight")]
        dead_rows = (g1 == 0).all(dim=1).float().mean()
        self._grad_stats = [l2, l1 / numel, zeros / numel, zeros.sum() / numel.sum(),
                            dead_rows.reshape(1)]
        self._before = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def after_step(self, *, loss: torch.Tensor, outputs: torch.Tensor, hidden: torch.Tensor,
                   scale: float, step_skipped: bool) -> dict[str, Any]:
        l2, gmean, zfrac_layer, zfrac, dead_rows = self._grad_stats
        delta = torch._foreach_sub([p.detach() for p in self.params], self._before)
        upd = torch.stack(torch._foreach_norm(delta)).norm()
        wnorm = torch.stack(torch._foreach_norm(self._before)).norm()
        out = outputs.detach().float()
        h = hidden.detach().float()
        scalars = torch.stack([
            loss.detach().float().reshape(()),
            l2.norm(),
            zfrac,
            dead_rows.reshape(()),
            h.mean(), h.var(unbiased=False), (h == 0).all(dim=0).float().mean(),
            out.mean(), out.var(unbiased=False), out.min(), out.max(), out.sum(dim=1).mean(),
            upd / wnorm.clamp_min(1e-12),
            self.bn.running_mean.abs().mean(), self.bn.running_var.mean(),
        ])
        # The one synchronisation of the step.
        values = torch.cat([scalars, l2, gmean, zfrac_layer]).tolist()
        n = len(self.names)
        s, l2v, gm, zl = values[:15], values[15:15 + n], values[15 + n:15 + 2 * n], values[15 + 2 * n:]
        rec = {
            "loss": s[0],
            "grad_norm": s[1],
            "grad_norm_by_layer": dict(zip(self.names, l2v)),
            "grad_mean": dict(zip(self.names, gm)),
            "zero_grad_frac": s[2],
            "zero_grad_frac_by_layer": dict(zip(self.names, zl)),
            "dead_unit_frac": s[3],
            "act_first_mean": s[4], "act_first_var": s[5], "act_first_dead_frac": s[6],
            "act_last_mean": s[7], "act_last_var": s[8],
            "logit_min": s[9], "logit_max": s[10], "logit_rowsum_mean": s[11],
            "update_ratio": s[12],
            "bn_running_mean_abs": s[13], "bn_running_var_mean": s[14],
            "amp_scale": float(scale),
            "step_skipped": bool(step_skipped),
        }
        rec["loss_finite"] = math.isfinite(s[0])
        rec["grads_finite"] = all(math.isfinite(v) for v in l2v)
        return finite_or_none(rec)


def finite_or_none(obj: Any) -> Any:
    """JSON has no NaN or Infinity: non-finite numbers are written as null (the *_finite flags
    say why)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    return obj
