"""The recovery bar of a fixed run: what "trains well again" means, checked from its metrics.

A run recovers when
  1. every step's loss is finite,
  2. its final test accuracy is within the solution's measured tolerance of the clean run
     (same seed, epochs and threads, break none, at the same base commit), and
  3. none of the break's own symptom checks (the rule book, breaklab.rules) still fires on it.
The third part matters for the breaks whose accuracy barely moves (amp_no_scaling, eval_mode,
double_softmax): accuracy alone would pass their broken run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from breaklab import rules

# The symptom checks a solution's rubric may name: the rule book's rules, and its recovery rules
# (the symptoms only the recovery check reads).
SYMPTOM_CHECKS = {**rules.RULES, **rules.RECOVERY_RULES}


def fired_checks(records: list[dict[str, Any]], names) -> list[str]:
    """The named rules that still fire on a run (a name that is no rule is never fired)."""
    steps, epochs = rules.step_records(records), rules.epoch_records(records)
    fired = []
    for name in names:
        if name not in SYMPTOM_CHECKS:
            continue
        kind, rule = SYMPTOM_CHECKS[name]
        if rule(steps if kind == "steps" else epochs) is not None:
            fired.append(name)
    return fired


def final_test_acc(records: list[dict[str, Any]]) -> float | None:
    epochs = rules.epoch_records(records)
    return epochs[-1].get("test_acc") if epochs else None


@dataclass
class Recovery:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    fixed_acc: float | None = None
    clean_acc: float | None = None


def check_recovery(fixed: list[dict[str, Any]], clean: list[dict[str, Any]], bar: dict[str, Any]) -> Recovery:
    """Judge the fixed run against the clean run with the solution's bar (rubric "recovery")."""
    reasons, ok = [], True
    steps = rules.step_records(fixed)
    if not steps:
        return Recovery(False, ["the fixed run has no training steps"])
    nonfinite = [r["step"] for r in steps if r.get("loss") is None or not r.get("loss_finite", True)]
    if nonfinite:
        ok = False
        reasons.append(f"loss is non-finite from step {nonfinite[0]}")
    fixed_acc, clean_acc = final_test_acc(fixed), final_test_acc(clean)
    tol = float(bar["max_acc_drop"])
    if fixed_acc is None or clean_acc is None:
        ok = False
        reasons.append("no final test accuracy to compare")
    elif fixed_acc < clean_acc - tol:
        ok = False
        reasons.append(f"test accuracy {fixed_acc:.3f} is more than {tol} below the clean run's {clean_acc:.3f}")
    else:
        reasons.append(f"test accuracy {fixed_acc:.3f} vs clean {clean_acc:.3f} (tolerance {tol})")
    still = fired_checks(fixed, bar.get("symptom_checks", []))
    if still:
        ok = False
        reasons.append("the break's symptom is still there: " + ", ".join(still))
    return Recovery(ok, reasons, fixed_acc, clean_acc)
