"""Whether a fix is a fix, judged with the grader's own code.

Four kinds of evidence, none of which the submission's code can write for itself:
  * scope: only the patch's changes to the break's own files are applied and run; a change
    anywhere else (trainer.py, the Config, another module) is named and never executed;
  * the hook probe (grader/probe.py): the patched break's hooks against the clean hooks on fixed
    inputs, and whether importing or calling them replaced the course's or torch's functions;
  * the checkpoint, evaluated by this grader's model, test set and evaluate() (grader/trusted.py),
    against the clean reference run of the same seed evaluated the same way, and against the
    test accuracy the run logged;
  * facts in the checkpoint (the optimizer's learning rate, the GradScaler, BatchNorm's batch
    count) against the clean run's.

The verdict's `kind`:
  fixed          the hooks behave like the clean ones and nothing was replaced
  not_fixed      an honest attempt that is not right (the hook does something else): it keeps
                 the points of a minimal patch and of a reproducible fixed run
  no_op          the break's hook still behaves like the broken one: nothing is fixed, whatever
                 else the patch does (a no-op, or the bug masked elsewhere)
  out_of_scope   nothing in the break's files changed: the rest was not run
  faked          the measurements were faked (functions replaced, or a logged accuracy that the
                 checkpoint does not give)
  unchecked      the probe could not run (an ordinary failure of the submission's code)
no_op, out_of_scope and faked earn no fix points and no points for the fixed run's
reproducibility.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from breaklab.grader.probe import HOOKS, describe, same_output

# A run's logged final test accuracy and loss against the same checkpoint evaluated by the grader:
# the same code on the same data, so they agree to float32 round-off (bit for bit when the grader
# and its re-runs use the same CPU kernels, as they do). The margin admits 2 of the 1,000 test
# digits and 0.1% of the loss, should the kernels differ; a faked accuracy is off by far more.
LOGGED_ACC_TOL = 0.002
LOGGED_LOSS_RTOL = 1e-3

NO_FIX_POINTS = ("no_op", "out_of_scope", "faked")


@dataclass
class FixVerdict:
    kind: str
    reasons: list[str] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)   # what a person should know was faked

    @property
    def earns_points(self) -> bool:
        return self.kind not in NO_FIX_POINTS


def out_of_scope(dropped: list[str], allowed_files: list[str]) -> FixVerdict:
    return FixVerdict("out_of_scope", [f"the patch changes only {', '.join(dropped) or 'nothing'}, outside the "
                                       f"break's files ({', '.join(allowed_files)}): not run, nothing fixed"])


def judge_probe(break_hook: str, probe: dict[str, Any] | None, clean: dict[str, Any], broken: dict[str, Any],
                inputs: dict[str, Any], why_not: str = "") -> FixVerdict:
    """The verdict of the hook probe alone (probe: what the sandboxed probe wrote, or None)."""
    if probe is None:
        return FixVerdict("unchecked", [f"the hooks could not be probed: {why_not or 'no probe output'}"])
    replaced = [str(r)[:120] for r in (probe.get("replaced") or []) if isinstance(r, str)][:8]
    if replaced or not isinstance(probe.get("replaced"), list):
        what = ", ".join(replaced) or "(unreadable probe report)"
        return FixVerdict("faked", [f"importing or calling the break replaced {what}: the fix changes how the run "
                                    "is measured, not what it computes"],
                          integrity=[f"the patched break replaces {what} (faked measurement)"])
    hooks = probe.get("hooks")
    if not isinstance(hooks, dict):
        error = str(probe.get("import_error") or "no hook outputs")[:200]
        return FixVerdict("unchecked", [f"the patched break could not be probed: {error}"])
    differs = {h: describe(h, hooks.get(h), clean[h], inputs) for h in HOOKS if not same_output(h, hooks.get(h), clean[h])}
    if break_hook not in HOOKS:  # a hook the probe does not call: the checkpoint decides
        if differs:
            return FixVerdict("not_fixed", ["the patched hooks differ from the clean ones: " + "; ".join(differs.values())])
        return FixVerdict("fixed", [f"the probe does not call {break_hook}; the hooks it calls behave like the clean "
                                    "ones, and the checkpoint decides"])
    if break_hook in differs and same_output(break_hook, hooks.get(break_hook), broken[break_hook]):
        return FixVerdict("no_op", [f"the hook {break_hook} still behaves like the broken one ({differs[break_hook]}): "
                                    "the bug is still there, whatever else the patch changes"])
    if differs:
        return FixVerdict("not_fixed", ["the patched hooks differ from the clean ones: " + "; ".join(differs.values())])
    return FixVerdict("fixed", [f"every hook behaves like the clean one on the probe's inputs "
                                f"({break_hook}: {_sample(break_hook, hooks.get(break_hook), inputs)})"])


def _sample(hook: str, got: Any, inputs: dict[str, Any]) -> str:
    if hook == "learning_rate" and isinstance(got, list) and got:
        return f"learning_rate({inputs['lrs'][0]}) = {got[0]:g}"
    return "same outputs"


def logged_final(records: list[dict[str, Any]] | None) -> tuple[float | None, float | None]:
    epochs = [r for r in records or [] if r.get("type") == "epoch"]
    return (epochs[-1].get("test_acc"), epochs[-1].get("test_loss")) if epochs else (None, None)


def judge_measurement(verdict: FixVerdict, trusted, logged: tuple[float | None, float | None]) -> FixVerdict:
    """A fixed run whose logged final accuracy or loss is not what its checkpoint gives was not
    measured by the course's evaluate(): faked."""
    if trusted is None or not trusted.ok:
        return verdict
    acc, loss = logged
    bad = []
    if acc is None or abs(acc - trusted.test_acc) > LOGGED_ACC_TOL:
        bad.append(f"test accuracy {_fmt(acc)} logged, {trusted.test_acc:.4f} measured from its checkpoint")
    if not math.isfinite(trusted.test_loss):
        loss_ok = loss is None  # the logger writes a non-finite number as null
    else:
        loss_ok = loss is not None and abs(loss - trusted.test_loss) <= LOGGED_LOSS_RTOL * max(abs(trusted.test_loss), 1e-12)
    if not loss_ok:
        bad.append(f"test loss {_fmt(loss)} logged, {trusted.test_loss:.4g} measured")
    if not bad:
        return verdict
    what = "; ".join(bad)
    return FixVerdict("faked", verdict.reasons + [f"the fixed run's metrics are not its checkpoint's: {what}"],
                      verdict.integrity + [f"the fixed run logged numbers its checkpoint does not give ({what})"])


def trusted_recovery(fixed, clean, max_acc_drop: float, needs_amp: bool) -> tuple[bool, list[str]]:
    """The fixed checkpoint against the clean one, both evaluated by the grader: accuracy within
    the rubric's bar, and the same training facts."""
    if fixed is None or not fixed.ok:
        return False, [f"the fixed run's checkpoint cannot be evaluated: {fixed.why if fixed else 'no checkpoint'}"]
    if clean is None or not clean.ok:
        return False, [f"the clean reference checkpoint cannot be evaluated: {clean.why if clean else 'none'}"]
    ok, reasons = True, []
    if fixed.test_acc < clean.test_acc - max_acc_drop:
        ok = False
        reasons.append(f"its checkpoint scores {fixed.test_acc:.3f} on the test set (the grader's evaluation), more "
                       f"than {max_acc_drop} below the clean run's {clean.test_acc:.3f}")
    else:
        reasons.append(f"its checkpoint scores {fixed.test_acc:.3f} on the test set (the grader's evaluation; clean "
                       f"{clean.test_acc:.3f})")
    expected = dict(clean.facts)
    expected["grad_scaler_on"] = True if needs_amp else clean.facts.get("grad_scaler_on")
    names = {"optimizer_lr": "the optimizer's learning rate", "grad_scaler_on": "GradScaler on",
             "bn_batches_tracked": "batches in BatchNorm's running statistics", "step": "steps trained"}
    for key, label in names.items():
        if fixed.facts.get(key) != expected.get(key):
            ok = False
            reasons.append(f"{label}: {fixed.facts.get(key)} in its checkpoint, {expected.get(key)} in the clean run's")
    return ok, reasons


def _fmt(v) -> str:
    return "none" if v is None else f"{v:.4g}"
