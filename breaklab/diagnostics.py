"""Per-step diagnostics, computed with batched tensor ops and one host synchronisation.

Every statistic of a step is a tensor; they are concatenated and moved to the host with a single
`.tolist()`, so logging costs a few small kernels, not one `.item()` per parameter.
The field names are the metrics schema (docs/METRICS.md).

Each group of statistics is its own method (grad_norms, zero_fractions, snapshot_params,
update_ratio, activation_stats, batchnorm_stats) so that benchmarks/bench_diagnostics.py can time
each one as a share of the training step. Exact-zero tests use count_nonzero and a row-wise
max of |g|: the same counts as `(g == 0).sum()` and `(g == 0).all(dim=1)`, several times faster
on CPU, where reductions over booleans are slow.
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
        self.first_index = self.names.index("fc1.weight")  # the dead-unit view of its gradient
        self.bn = model.bn1
        self.numel = torch.tensor([p.numel() for p in self.params], dtype=torch.float32,
                                  device=self.params[0].device)
        self._before = [torch.empty_like(p) for p in self.params]  # parameters before the step
        self._grad_stats: list[torch.Tensor] = []

    # -- the groups of statistics, each a few batched kernels --------------------------------
    def gradients(self) -> list[torch.Tensor]:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        return [g.float() for g in grads]

    @staticmethod
    def grad_norms(grads: list[torch.Tensor], numel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2 norm and mean absolute value of each parameter's gradient."""
        l2 = torch.stack(torch._foreach_norm(grads, 2))
        l1 = torch.stack(torch._foreach_norm(grads, 1))
        return l2, l1 / numel

    @staticmethod
    def zero_fractions(grads: list[torch.Tensor], numel: torch.Tensor,
                       first_index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Exactly-zero gradient entries: per parameter, overall, and whole zero rows of the
        first layer's weight (dead units, as opposed to scattered float16 underflow)."""
        nonzero = torch.stack([torch.count_nonzero(g) for g in grads]).float()
        zeros = numel - nonzero  # integers below 2**24: exact in float32
        first = grads[first_index]
        dead_rows = (first.abs().amax(dim=1) == 0).float().mean()  # NaN rows are not dead
        return zeros / numel, zeros.sum() / numel.sum(), dead_rows.reshape(1)

    def snapshot_params(self) -> None:
        torch._foreach_copy_(self._before, [p.detach() for p in self.params])

    def update_ratio(self) -> torch.Tensor:
        """||theta_after - theta_before|| / ||theta_before|| over all parameters."""
        wnorm = torch.stack(torch._foreach_norm(self._before)).norm()
        # In place, as before - after: the same norm as after - before (IEEE negation is exact).
        torch._foreach_sub_(self._before, [p.detach() for p in self.params])
        upd = torch.stack(torch._foreach_norm(self._before)).norm()
        return upd / wnorm.clamp_min(1e-12)

    @staticmethod
    def activation_stats(hidden: torch.Tensor, outputs: torch.Tensor) -> list[torch.Tensor]:
        """First layer's activations and the last layer's output as fed to the loss."""
        h = hidden.detach().float()
        out = outputs.detach().float()
        return [h.mean(), h.var(unbiased=False), (h == 0).all(dim=0).float().mean(),
                out.mean(), out.var(unbiased=False), out.min(), out.max(), out.sum(dim=1).mean()]

    def batchnorm_stats(self) -> list[torch.Tensor]:
        return [self.bn.running_mean.abs().mean(), self.bn.running_var.mean()]

    # -- the two calls the training loop makes -----------------------------------------------
    @torch.no_grad()
    def before_step(self) -> None:
        grads = self.gradients()
        l2, gmean = self.grad_norms(grads, self.numel)
        zfrac_layer, zfrac, dead_rows = self.zero_fractions(grads, self.numel, self.first_index)
        self._grad_stats = [l2, gmean, zfrac_layer, zfrac, dead_rows]
        self.snapshot_params()

    @torch.no_grad()
    def after_step(self, *, loss: torch.Tensor, outputs: torch.Tensor, hidden: torch.Tensor,
                   scale: float, step_skipped: bool) -> dict[str, Any]:
        l2, gmean, zfrac_layer, zfrac, dead_rows = self._grad_stats
        act = self.activation_stats(hidden, outputs)
        scalars = torch.stack([
            loss.detach().float().reshape(()),
            l2.norm(),
            zfrac,
            dead_rows.reshape(()),
            *act,
            self.update_ratio(),
            *self.batchnorm_stats(),
        ])
        # The one synchronisation of the step.
        values = torch.cat([scalars, l2, gmean, zfrac_layer]).tolist()
        return self.record(values, scale=scale, step_skipped=step_skipped)

    def record(self, values: list[float], *, scale: float, step_skipped: bool) -> dict[str, Any]:
        """The step's metrics record (docs/METRICS.md order) from the synchronised values."""
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
