"""Per-step diagnostics: a few large batched kernels and one host synchronisation per step.

What logging costs is the number of passes over the first layer's 200,704 weights and the
number of small kernels (a few microseconds each, whatever their size), so every statistic comes
from a handful of whole-model passes:

* the gradients' absolute values are written once per step into one zero-padded matrix whose
  rows are as wide as a row of the first layer's weight (every parameter starts on a row of its
  own). Every gradient statistic needs only |g|, row by row: the row sums (L1),
  the row L2 norms, and the nonzero counts (|g|'s bit pattern, as int32, is 0 exactly for +-0.0
  and positive for every other value, NaN included); the first layer's dead units are its rows
  with no nonzero entry. One `index_add` turns rows into per-parameter sums;
* the parameters are copied once into one flat snapshot before the optimizer step, and the
  update is that snapshot minus the new parameters, in place: two norms give the update ratio;
* every kernel writes its result (out=) into one preallocated buffer, which goes to the host
  in one `.tolist()`; the divisions and square roots of a few dozen numbers are then done in
  Python, where they cost less than a kernel launch each.

Each group is its own method (gradient_magnitudes, grad_norms, zero_counts, per_parameter,
snapshot_params, update_norm, activation_stats, batchnorm_stats) so that
benchmarks/bench_diagnostics.py can time each one as a share of the training step. The field
names are the metrics schema (docs/METRICS.md).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


# The raw values of a step, in the order they are synchronised, after the per-parameter sums.
SCALARS = ("dead_rows", "weight_norm", "loss", "update_norm", "h_sum", "h_var", "h_dead", "out_sum",
           "out_var", "out_min", "out_max", "bn_mean_abs_sum", "bn_var_sum")


class StepDiagnostics:
    """Measures one training step. Call `before_step` before optimizer.step() (after unscale_),
    and `after_step` once the step is done."""

    def __init__(self, model: nn.Module):
        self.names = [n for n, _ in model.named_parameters()]
        self.params = [p for _, p in model.named_parameters()]
        self.numel = [p.numel() for p in self.params]
        self.first_index = self.names.index("fc1.weight")  # its rows are the hidden units
        self.hidden_units = self.params[self.first_index].shape[0]
        self.bn = model.bn1
        device = self.params[0].device
        n = len(self.params)

        # The gradient matrix: each parameter on whole rows of the first layer's row width.
        width = self.params[self.first_index].shape[1]
        rows = [-(-k // width) for k in self.numel]
        starts = [sum(rows[:i]) for i in range(n)]
        self._grad_matrix = torch.zeros(sum(rows), width, device=device)
        flat = self._grad_matrix.view(-1)
        self._grad_views = [flat[s * width:s * width + k].view_as(p)
                            for s, k, p in zip(starts, self.numel, self.params)]
        self._row_param = torch.repeat_interleave(torch.arange(n, device=device), torch.tensor(rows, device=device))
        self._rows = torch.empty(3, sum(rows), device=device)  # per row: sum |g|, sum g^2, nonzero
        self._row_nonzero = torch.empty(sum(rows), dtype=torch.int32, device=device)
        first = starts[self.first_index]
        self._first_nonzero = self._row_nonzero[first:first + rows[self.first_index]]
        self._zeros = torch.zeros(3, n, device=device)  # index_add's starting point

        # The parameters before the step, one flat buffer.
        self._before_flat = torch.empty(sum(self.numel), device=device)
        self._before = [v.view_as(p) for v, p in zip(self._before_flat.split(self.numel), self.params)]

        # Every raw value of a step is written (out=) into one buffer, read with one .tolist().
        self._values = torch.zeros(3 * n + len(SCALARS), device=device)
        self._per_param = self._values[:3 * n].view(3, n)  # sum |g|, sum g^2, nonzero per parameter
        self._slot = dict(zip(SCALARS, self._values[3 * n:].unbind()))

    # -- the groups of statistics, each a few batched kernels --------------------------------
    def gradient_magnitudes(self) -> torch.Tensor:
        """|g| of every parameter, written into the padded gradient matrix: one pass that reads
        each gradient and writes its absolute value (a copy and then an in-place abs would be
        two passes over the 800 kB, which in the training step come from memory, not cache)."""
        for p, view in zip(self.params, self._grad_views):
            torch.abs(p.grad if p.grad is not None else view.zero_(), out=view)
        return self._grad_matrix

    def grad_norms(self, mags: torch.Tensor) -> None:
        """Per row of the gradient matrix: sum of |g| (for the mean absolute gradient) and sum
        of g^2 (for the L2 norm)."""
        torch.sum(mags, dim=1, out=self._rows[0])
        torch.linalg.vector_norm(mags, dim=1, out=self._rows[1])
        self._rows[1].square_()

    def zero_counts(self, mags: torch.Tensor) -> None:
        """Per row: nonzero gradient entries; and the first layer's dead units, its whole
        gradient rows of 0 (as opposed to scattered float16 underflow). Overwrites `mags`.

        |g| as int32 bits is 0 for +-0.0 and >= 1 for any other float, NaN included, so
        clamping the bits to 1 and summing counts the nonzero entries (several times faster on
        CPU than comparisons, whose boolean reductions are slow)."""
        torch.sum(mags.view(torch.int32).clamp_max_(1), dim=1, dtype=torch.int32, out=self._row_nonzero)
        self._rows[2].copy_(self._row_nonzero)  # an int32 sum, then a copy: faster than summing to float
        torch.sum(self._first_nonzero == 0, dim=0, dtype=torch.float32, out=self._slot["dead_rows"])

    def per_parameter(self) -> None:
        """The row statistics summed per parameter."""
        torch.index_add(self._zeros, 1, self._row_param, self._rows, out=self._per_param)

    def snapshot_params(self) -> None:
        """Copy the parameters before the step, and their global L2 norm."""
        torch._foreach_copy_(self._before, self.params)
        torch.linalg.vector_norm(self._before_flat, out=self._slot["weight_norm"])

    def update_norm(self) -> None:
        """||theta_before - theta_after|| over all parameters, in place in the snapshot (the same
        norm as after - before: IEEE negation is exact)."""
        torch._foreach_sub_(self._before, self.params)
        torch.linalg.vector_norm(self._before_flat, out=self._slot["update_norm"])

    def activation_stats(self, hidden: torch.Tensor, outputs: torch.Tensor) -> None:
        """First layer's activations and the last layer's output as fed to the loss: sums (the
        means and the mean row sum follow), variances, range, and the hidden units that are 0
        for every example (their max over the batch is 0: ReLU outputs are never negative, and
        a NaN is not 0)."""
        slot = self._slot
        h, out = hidden.float(), outputs.float()
        torch.sum(h, dim=(0, 1), out=slot["h_sum"])
        torch.var(h, dim=(0, 1), correction=0, out=slot["h_var"])
        torch.sum(h.amax(dim=0) == 0, dim=0, dtype=torch.float32, out=slot["h_dead"])
        torch.sum(out, dim=(0, 1), out=slot["out_sum"])
        torch.var(out, dim=(0, 1), correction=0, out=slot["out_var"])
        torch.aminmax(out, out=(slot["out_min"], slot["out_max"]))

    def batchnorm_stats(self) -> None:
        torch.linalg.vector_norm(self.bn.running_mean, 1, out=self._slot["bn_mean_abs_sum"])
        torch.sum(self.bn.running_var, dim=0, out=self._slot["bn_var_sum"])

    # -- the two calls the training loop makes -----------------------------------------------
    @torch.no_grad()
    def before_step(self) -> None:
        mags = self.gradient_magnitudes()
        self.grad_norms(mags)
        self.zero_counts(mags)  # last: it overwrites mags
        self.per_parameter()
        self.snapshot_params()

    @torch.no_grad()
    def after_step(self, *, loss: torch.Tensor, outputs: torch.Tensor, hidden: torch.Tensor,
                   scale: float, step_skipped: bool) -> dict[str, Any]:
        self.update_norm()
        self._slot["loss"].copy_(loss)
        self.activation_stats(hidden, outputs)
        self.batchnorm_stats()
        values = self._values.tolist()  # the one synchronisation of the step
        return self.record(values, scale=scale, step_skipped=step_skipped,
                           hidden_shape=hidden.shape, output_shape=outputs.shape)

    def record(self, values: list[float], *, scale: float, step_skipped: bool,
               hidden_shape: torch.Size, output_shape: torch.Size) -> dict[str, Any]:
        """The step's metrics record (docs/METRICS.md order) from the synchronised raw values.
        JSON has no NaN or Infinity: a non-finite number is written as null (the *_finite flags
        say why)."""
        n, numel, total, units = len(self.names), self.numel, sum(self.numel), self.hidden_units
        abs_sums, square_sums, nonzero = values[0:n], values[n:2 * n], values[2 * n:3 * n]
        v = dict(zip(SCALARS, values[3 * n:]))
        batch, h_numel, out_numel = hidden_shape[0], hidden_shape.numel(), output_shape.numel()
        l2 = [math.sqrt(s) for s in square_sums]
        scalars = _finite([
            v["loss"], math.sqrt(sum(square_sums)), (total - sum(nonzero)) / total, v["dead_rows"] / units,
            v["h_sum"] / h_numel, v["h_var"], v["h_dead"] / hidden_shape[1],
            v["out_sum"] / out_numel, v["out_var"], v["out_min"], v["out_max"], v["out_sum"] / batch,
            v["update_norm"] / max(v["weight_norm"], 1e-12),
            v["bn_mean_abs_sum"] / self.bn.num_features, v["bn_var_sum"] / self.bn.num_features, float(scale)])
        return {
            "loss": scalars[0],
            "grad_norm": scalars[1],
            "grad_norm_by_layer": dict(zip(self.names, _finite(l2))),
            "grad_mean": dict(zip(self.names, _finite([a / m for a, m in zip(abs_sums, numel)]))),
            "zero_grad_frac": scalars[2],
            "zero_grad_frac_by_layer": dict(zip(self.names, [(m - z) / m for z, m in zip(nonzero, numel)])),
            "dead_unit_frac": scalars[3],
            "act_first_mean": scalars[4], "act_first_var": scalars[5], "act_first_dead_frac": scalars[6],
            "act_last_mean": scalars[7], "act_last_var": scalars[8],
            "logit_min": scalars[9], "logit_max": scalars[10], "logit_rowsum_mean": scalars[11],
            "update_ratio": scalars[12],
            "bn_running_mean_abs": scalars[13], "bn_running_var_mean": scalars[14],
            "amp_scale": scalars[15],
            "step_skipped": bool(step_skipped),
            "loss_finite": math.isfinite(v["loss"]),
            "grads_finite": all(math.isfinite(x) for x in l2),
        }


def _finite(values: list[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]  # JSON has no NaN or Infinity


def finite_or_none(obj: Any) -> Any:
    """JSON has no NaN or Infinity: non-finite numbers are written as null (the *_finite flags
    say why)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    return obj
