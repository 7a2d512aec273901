"""Early warnings: the doctor's detectors run while training, so a fault is named the moment
its evidence is there, not after the run.

`EarlyWarnings.observe(record)` takes each metrics record as it is written (a step or an epoch,
docs/METRICS.md) and returns the lines to print: one per finding, the first time its detector
fires, with the step and the evidence. The detectors and their thresholds are the doctor's
(breaklab/doctor.py), unchanged: nothing here is a new threshold. A non-finite loss, which the
doctor reports as an observation, is warned about too.

The detectors read the whole history, so running all of them at every step would cost more as
the run grows. They run at every one of the first DENSE_STEPS steps (where the doctor's
signatures are: step 0's loss and update, the first 10-30 steps' rises), then every 16 steps or
every 10% of the run so far, whichever is longer, at every epoch record, and at a non-finite
loss; a finding that first appears late in a long run is reported within 16 steps or 10% of its
step. The history is kept without the
per-layer dictionaries, except the first layer's fraction of zero gradients and the per-layer
gradient and update norms, which is all the detectors read of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from breaklab import doctor, rules, symptoms

DENSE_STEPS = 32
SPARSE_EVERY = 16
NONFINITE = "nonfinite_loss"  # the name stop_on uses for a NaN or infinite loss


@dataclass
class EarlyWarning:
    name: str      # the finding (a catalogue name) or NONFINITE
    step: int      # the step at which it fired
    line: str      # what is printed


def _finding_names() -> set[str]:
    from breaklab.breaks import BREAK_NAMES

    return set(BREAK_NAMES)


def parse_stop_on(stop_on: Any) -> set[str] | None:
    """None/False: never stop. True or "any": stop on any finding. A name or several: stop on
    those. An unknown name is an error naming the valid ones."""
    if stop_on in (None, False):
        return None
    if stop_on is True or stop_on == "any":
        return {"any"}
    names = {stop_on} if isinstance(stop_on, str) else set(stop_on)
    valid = _finding_names() | {NONFINITE}
    unknown = sorted(names - valid)
    if unknown:
        raise ValueError(f"stop_on: unknown finding {', '.join(map(repr, unknown))}; use True (any finding) "
                         f"or some of: {', '.join(sorted(valid))}")
    return names


class EarlyWarnings:
    """Feed it every metrics record; it answers with the warnings that just fired."""

    def __init__(self, stop_on: Any = None):
        self.stop_on = parse_stop_on(stop_on)
        self.steps: list[dict[str, Any]] = []
        self.epochs: list[dict[str, Any]] = []
        self.fired: dict[str, EarlyWarning] = {}
        self.stop: EarlyWarning | None = None  # the first warning that stop_on names
        self._next_check = 0

    def observe(self, record: dict[str, Any]) -> list[str]:
        """The warning lines this record set off (usually none)."""
        kind = record.get("type")
        if kind == "step":
            self.steps.append(_slim(record))
            n = len(self.steps)
            if n <= DENSE_STEPS or n >= self._next_check:
                self._next_check = n + max(SPARSE_EVERY, n // 10)
                return self._check(record["step"])
            if record.get("loss_finite") is False:
                return self._check(record["step"])
            return []
        if kind == "epoch":
            self.epochs.append(record)
            if self.steps:
                return self._check(self.steps[-1]["step"])
        return []

    def _check(self, step: int) -> list[str]:
        new: list[EarlyWarning] = []
        if NONFINITE not in self.fired and (msg := symptoms.sentence("first_nonfinite_loss", self.steps)):
            new.append(EarlyWarning(NONFINITE, step, f"step {step}: {msg}"))
        for detect in doctor.DETECTORS:
            finding = detect(self.steps, self.epochs, None)
            if finding is None or finding.name in self.fired or any(w.name == finding.name for w in new):
                continue
            new.append(EarlyWarning(finding.name, step, format_warning(step, finding)))
        for w in new:
            self.fired[w.name] = w
            if self.stop is None and self.stop_on and ("any" in self.stop_on or w.name in self.stop_on):
                self.stop = w
        return [w.line for w in new]


def format_warning(step: int, finding: doctor.Finding) -> str:
    """One line: where, the evidence a person would cite, the likely cause and the check."""
    return (f"step {step}: {finding.evidence[0]}; likely {finding.name} ({finding.category}); "
            f"check: {finding.next_check}")


# The per-layer dictionaries the detectors read whole: which parameters never move, and whether
# those have a gradient (a frozen layer, a layer left out of the optimizer).
KEPT_PER_LAYER = ("update_norm_by_layer", "grad_norm_by_layer")


def _slim(record: dict[str, Any]) -> dict[str, Any]:
    """The record without its per-layer dictionaries, except the first layer's zero fraction
    and KEPT_PER_LAYER."""
    slim = {k: v for k, v in record.items() if not isinstance(v, dict) or k in KEPT_PER_LAYER}
    zeros = record.get("zero_grad_frac_by_layer") or {}
    first = rules.first_layer(zeros)
    if first is not None:
        slim["zero_grad_frac_by_layer"] = {first: zeros[first]}
    return slim


def observe_all(records: Iterable[dict[str, Any]], stop_on: Any = None) -> list[str]:
    """Every warning a finished run's records would have printed (for tests and for reading
    a run after the fact)."""
    watcher = EarlyWarnings(stop_on)
    return [line for r in records for line in watcher.observe(r)]
