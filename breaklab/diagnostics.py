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
* the parameters are copied once before the optimizer step, into the gradient matrix (its |g|
  is used up by then: one scratch buffer, not two, competes with the training step for the
  cache), and the update is that snapshot minus the new parameters, in place: one pass of
  per-parameter norms gives each layer's update and, combined on the host, the whole update of
  the update ratio;
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


# The gradient matrix's row width when the first layer's rows are shorter than MIN_ROW_WIDTH.
MIN_ROW_WIDTH, WIDE_ROWS = 64, 1024

# The raw values of a step, in the order they are synchronised, after the per-parameter sums.
SCALARS = ("dead_rows", "weight_norm", "loss", "h_sum", "h_var", "h_dead", "out_sum",
           "out_var", "out_min", "out_max", "pre_clip_norm", "carried_norm")


FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def forward_float_max(device_type: str) -> float:
    """The largest finite number of the dtype autocast computes in at this moment on this device
    type: 65504 for float16, 3.39e38 for bfloat16, float32's 3.40e38 when autocast is off.
    Called inside the forward pass, it is what the step actually ran in, whatever the
    configuration says. A number rather than the dtype's name, so that a mystery run's metrics
    carry no word of a mechanism."""
    if not torch.is_autocast_enabled(device_type):
        return FLOAT32_MAX
    return float(torch.finfo(torch.get_autocast_dtype(device_type)).max)


class StepDiagnostics:
    """Measures one training step. Call `before_step` before optimizer.step() (after unscale_),
    and `after_step` once the step is done.

    `StepDiagnostics(model)` measures trainer.py's MLP: every parameter, `fc1.weight` as the first
    layer (its rows are the hidden units), `bn1` as the BatchNorm. `breaklab.monitor.Monitor`
    passes what it discovered in any model instead: the (name, parameter) pairs the optimizer
    holds, the first weight layer's parameter name (None: there is none), every BatchNorm, and
    the dimension of the first activation that holds its units (1 for a convolution's channels,
    -1 for a linear layer's features)."""

    def __init__(self, model: nn.Module, *, parameters: list[tuple[str, torch.Tensor]] | None = None,
                 first_layer: str | None = "fc1.weight", batchnorms: list[nn.Module] | None = None,
                 unit_dim: int = 1):
        named = list(model.named_parameters()) if parameters is None else list(parameters)
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.numel = [p.numel() for p in self.params]
        self.first_index = self.names.index(first_layer) if first_layer in self.names else None
        first = self.params[self.first_index] if self.first_index is not None else None
        self.hidden_units = first.shape[0] if first is not None else 0  # a weight's rows are its units
        self.bns = [model.bn1] if batchnorms is None else list(batchnorms)
        self.bn_features = sum(bn.num_features for bn in self.bns)
        self.unit_dim = unit_dim
        device = self.params[0].device
        n = len(self.params)

        # The gradient matrix: each parameter on whole rows. Its width is a row of the first
        # layer's weight, so that the first layer's dead units are whole rows of the matrix;
        # a first layer with short rows (a 3x3 convolution on one channel: 9) would make the
        # matrix too narrow for fast row reductions, so then the width is WIDE_ROWS and the
        # first layer's rows are counted on a view of their own.
        row_width = first[0].numel() if first is not None else 0
        width = row_width if row_width >= MIN_ROW_WIDTH else WIDE_ROWS
        rows = [-(-k // width) for k in self.numel]
        starts = [sum(rows[:i]) for i in range(n)]
        self._grad_matrix = torch.zeros(sum(rows), width, device=device)
        flat = self._grad_matrix.view(-1)
        self._grad_views = [flat[s * width:s * width + k].view_as(p)
                            for s, k, p in zip(starts, self.numel, self.params)]
        self._row_param = torch.repeat_interleave(torch.arange(n, device=device), torch.tensor(rows, device=device))
        self._rows = torch.empty(3, sum(rows), device=device)  # per row: sum |g|, sum g^2, nonzero
        self._row_nonzero = torch.empty(sum(rows), dtype=torch.int32, device=device)
        self._first_nonzero = None  # nonzero entries per unit of the first layer
        self._first_units_view = None  # the first layer's |g| as (units, row), when not whole matrix rows
        if first is not None and width == row_width:
            start = starts[self.first_index]
            self._first_nonzero = self._row_nonzero[start:start + rows[self.first_index]]
        elif first is not None:
            self._first_units_view = self._grad_views[self.first_index].view(self.hidden_units, row_width)
            self._first_nonzero = torch.empty(self.hidden_units, dtype=torch.int32, device=device)
        self._zeros = torch.zeros(3, n, device=device)  # index_add's starting point

        # The parameters before the step, in the gradient matrix: its |g| is used up by then, and
        # one buffer instead of two leaves the training step more of the cache (the padding
        # stays 0, so the norm of the whole matrix is the parameters' norm).
        self._before = self._grad_views

        # Every raw value of a step is written (out=) into one buffer, read with one .tolist():
        # the per-parameter sums, the scalars, each BatchNorm's two sums, then each parameter's
        # update norm.
        k = len(self.bns)
        bn_start = 3 * n + len(SCALARS)
        self._values = torch.zeros(bn_start + 2 * k + n, device=device)
        self._per_param = self._values[:3 * n].view(3, n)  # sum |g|, sum g^2, nonzero per parameter
        self._slot = dict(zip(SCALARS, self._values[3 * n:bn_start].unbind()))
        self._bn_slots = self._values[bn_start:bn_start + 2 * k].view(2, k)  # sum |running mean|, sum running var
        self._update_by_param = self._values[bn_start + 2 * k:]  # ||delta theta|| per parameter
        self._pre_clip_measured = False  # before_clip() was called this step
        self._carried_measured = False  # before_backward() was called this step

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
        if self._first_units_view is not None:  # before mags is overwritten: the first layer's units
            torch.sum(self._first_units_view.view(torch.int32).clamp_max(1), dim=1, dtype=torch.int32,
                      out=self._first_nonzero)
        torch.sum(mags.view(torch.int32).clamp_max_(1), dim=1, dtype=torch.int32, out=self._row_nonzero)
        self._rows[2].copy_(self._row_nonzero)  # an int32 sum, then a copy: faster than summing to float
        if self._first_nonzero is not None:
            torch.sum(self._first_nonzero == 0, dim=0, dtype=torch.float32, out=self._slot["dead_rows"])

    def per_parameter(self) -> None:
        """The row statistics summed per parameter."""
        torch.index_add(self._zeros, 1, self._row_param, self._rows, out=self._per_param)

    def snapshot_params(self) -> None:
        """Copy the parameters before the step, and their global L2 norm."""
        torch._foreach_copy_(self._before, self.params)
        torch.linalg.vector_norm(self._grad_matrix, out=self._slot["weight_norm"])

    def update_norm(self) -> None:
        """||theta_before - theta_after|| of each parameter, in place in the snapshot (the same
        norm as after - before: IEEE negation is exact). record() combines them into the norm
        over all parameters (in double precision): a second pass over the snapshot cost 13-16 us a
        step (benchmarks/bench_diagnostics.py --compare-with, the versions taking turns)."""
        torch._foreach_sub_(self._before, self.params)
        torch.stack(torch._foreach_norm(self._before), out=self._update_by_param)

    def activation_stats(self, hidden: torch.Tensor | None, outputs: torch.Tensor | None) -> None:
        """First layer's activations and the last layer's output as fed to the loss: sums (the
        means and the mean row sum follow), variances, range, and the hidden units that are 0
        for every example (their max over the batch, and over positions for a convolution, is 0:
        ReLU outputs are never negative, and a NaN is not 0). Either may be None (not seen)."""
        slot = self._slot
        if hidden is not None:
            h = hidden.float()
            every = tuple(range(h.dim()))
            others = tuple(d for d in every if d != self.unit_dim % h.dim())
            torch.sum(h, dim=every, out=slot["h_sum"])
            torch.var(h, dim=every, correction=0, out=slot["h_var"])
            torch.sum(h.amax(dim=others) == 0, dim=0, dtype=torch.float32, out=slot["h_dead"])
        if outputs is not None:
            out = outputs.float()
            every = tuple(range(out.dim()))
            torch.sum(out, dim=every, out=slot["out_sum"])
            torch.var(out, dim=every, correction=0, out=slot["out_var"])
            torch.aminmax(out, out=(slot["out_min"], slot["out_max"]))

    def batchnorm_stats(self) -> None:
        for i, bn in enumerate(self.bns):
            torch.linalg.vector_norm(bn.running_mean, 1, out=self._bn_slots[0, i])
            torch.sum(bn.running_var, dim=0, out=self._bn_slots[1, i])

    def _global_grad_norm(self, into: str) -> None:
        """The global L2 norm of the gradients .grad holds now (0 when none has one), written
        into the slot `into`."""
        grads = [p.grad for p in self.params if p.grad is not None]
        slot = self._slot[into]
        if grads:
            torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)), out=slot)
        else:
            slot.zero_()

    # -- the calls the training loop makes ---------------------------------------------------
    @torch.no_grad()
    def before_backward(self) -> None:
        """Optional, once per step, after the loop cleared the gradients and before backward:
        the global norm of what .grad still holds (0 or no .grad at all in a loop that clears
        them; the previous steps' gradients when it does not). Measured directly, it does not
        depend on clipping, which caps the growth a missing zero_grad otherwise shows."""
        self._global_grad_norm(into="carried_norm")
        self._carried_measured = True

    @torch.no_grad()
    def before_clip(self) -> None:
        """Optional, once per step, after backward and before any gradient clipping (and before
        unscale_): the global gradient norm as the backward pass left it. record() divides it
        by the step's loss scale, so it compares with grad_norm, which is taken after clipping:
        a detector of growing gradients needs the norm that clipping has not capped."""
        self._global_grad_norm(into="pre_clip_norm")
        self._pre_clip_measured = True

    @torch.no_grad()
    def before_step(self) -> None:
        mags = self.gradient_magnitudes()
        self.grad_norms(mags)
        self.zero_counts(mags)  # last: it overwrites mags
        self.per_parameter()
        self.snapshot_params()

    @torch.no_grad()
    def after_step(self, *, loss: torch.Tensor, outputs: torch.Tensor | None, hidden: torch.Tensor | None,
                   scale: float, step_skipped: bool, classes_dim: int = 1,
                   forward_max: float | None = None, scaler_enabled: bool = False) -> dict[str, Any]:
        """`classes_dim`: the dimension of `outputs` that holds the classes (its rows are the
        predictions whose sum logit_rowsum_mean averages). `forward_max`: what
        forward_float_max() returned inside the forward pass (None: not seen); `scaler_enabled`: whether a GradScaler scaled the loss."""
        self.update_norm()
        self._slot["loss"].copy_(loss.detach().reshape(()) if loss.dim() else loss)
        self.activation_stats(hidden, outputs)
        self.batchnorm_stats()
        values = self._values.tolist()  # the one synchronisation of the step
        pre_clip, self._pre_clip_measured = self._pre_clip_measured, False
        carried, self._carried_measured = self._carried_measured, False
        return self.record(values, scale=scale, step_skipped=step_skipped,
                           hidden_shape=None if hidden is None else hidden.shape,
                           output_shape=None if outputs is None else outputs.shape, classes_dim=classes_dim,
                           pre_clip_measured=pre_clip, carried_measured=carried, forward_max=forward_max,
                           scaler_enabled=scaler_enabled)

    def record(self, values: list[float], *, scale: float, step_skipped: bool,
               hidden_shape: torch.Size | None, output_shape: torch.Size | None,
               classes_dim: int = 1, pre_clip_measured: bool = False, carried_measured: bool = False,
               forward_max: float | None = None,
               scaler_enabled: bool = False) -> dict[str, Any]:
        """The step's metrics record (docs/METRICS.md order) from the synchronised raw values.
        JSON has no NaN or Infinity: a non-finite number is written as null (the *_finite flags
        say why); a statistic of something the model does not have (no BatchNorm) or that was
        not seen (no outputs passed) is null too."""
        n, numel, total, units = len(self.names), self.numel, sum(self.numel), self.hidden_units
        abs_sums, square_sums, nonzero = values[0:n], values[n:2 * n], values[2 * n:3 * n]
        v = dict(zip(SCALARS, values[3 * n:3 * n + len(SCALARS)]))
        k = len(self.bns)
        bn_values = values[3 * n + len(SCALARS):3 * n + len(SCALARS) + 2 * k]
        update_by_param = values[3 * n + len(SCALARS) + 2 * k:]
        nan = math.nan
        if hidden_shape is not None:
            h_numel, h_units = hidden_shape.numel(), hidden_shape[self.unit_dim]
            first = [v["h_sum"] / h_numel, v["h_var"], v["h_dead"] / h_units]
        else:
            first = [nan, nan, nan]
        if output_shape is not None:
            out_numel = output_shape.numel()
            rows = out_numel // output_shape[classes_dim] if output_shape.numel() else 1
            last = [v["out_sum"] / out_numel, v["out_var"], v["out_min"], v["out_max"], v["out_sum"] / rows]
        else:
            last = [nan] * 5
        if k:
            bn = [sum(bn_values[:k]) / self.bn_features, sum(bn_values[k:]) / self.bn_features]
        else:
            bn = [nan, nan]
        l2 = [math.sqrt(s) for s in square_sums]
        scalars = _finite([
            v["loss"], math.sqrt(sum(square_sums)), (total - sum(nonzero)) / total,
            v["dead_rows"] / units if units else nan,
            *first, *last,
            math.sqrt(math.fsum(u * u for u in update_by_param)) / max(v["weight_norm"], 1e-12),  # update ratio
            *bn, float(scale),
            v["pre_clip_norm"] / float(scale) if pre_clip_measured and scale else nan,
            v["carried_norm"] if carried_measured else nan])
        return {
            "loss": scalars[0],
            "grad_norm": scalars[1],
            "grad_norm_pre_clip": scalars[16],
            "grad_norm_carried": scalars[17],
            "grad_norm_by_layer": dict(zip(self.names, _finite(l2))),
            "grad_mean": dict(zip(self.names, _finite([a / m for a, m in zip(abs_sums, numel)]))),
            "zero_grad_frac": scalars[2],
            "zero_grad_frac_by_layer": dict(zip(self.names, [(m - z) / m for z, m in zip(nonzero, numel)])),
            "dead_unit_frac": scalars[3],
            "act_first_mean": scalars[4], "act_first_var": scalars[5], "act_first_dead_frac": scalars[6],
            "act_last_mean": scalars[7], "act_last_var": scalars[8],
            "logit_min": scalars[9], "logit_max": scalars[10], "logit_rowsum_mean": scalars[11],
            "update_ratio": scalars[12],
            "update_norm_by_layer": dict(zip(self.names, _finite(update_by_param))),
            "bn_running_mean_abs": scalars[13], "bn_running_var_mean": scalars[14],
            "amp_scale": scalars[15],
            "grad_scaler_enabled": bool(scaler_enabled),
            "forward_float_max": forward_max,
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
