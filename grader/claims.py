"""A student's claim about a run, matched against the run's records: the metric's value at the
claimed step or epoch, within the tolerance a rounded number allows. The rubric and the evidence
checks both read claims this way."""
from __future__ import annotations

import math
from typing import Any

CLAIM_RTOL, CLAIM_ATOL = 0.05, 5e-3   # a claimed value may be rounded to 2 significant digits
EPOCH_FIELDS = ("train_loss", "train_acc", "test_loss", "test_acc", "test_autograd_bytes")


def lookup(record: dict[str, Any], metric: str) -> tuple[bool, Any]:
    """A metric of a record, by name or dotted path into a per-layer dict (grad_mean.fc1.weight)."""
    if metric in record:
        return True, record[metric]
    for key, val in record.items():
        if isinstance(val, dict) and metric.startswith(key + "."):
            sub = metric[len(key) + 1:]
            if sub in val:
                return True, val[sub]
    return False, None


def claimed_record(records: list[dict], claim: dict[str, Any]) -> dict | None:
    metric = claim.get("metric", "")
    if metric.split(".")[0] in EPOCH_FIELDS:
        for r in records:
            if r.get("type") == "epoch" and (
                    r.get("epoch") == claim["epoch"] if "epoch" in claim else r.get("step") == claim.get("step")):
                return r
        return None
    for r in records:
        if r.get("type") == "step" and r.get("step") == claim.get("step"):
            return r
    return None


def _close(a: float | None, b: float | None, rtol: float, atol: float) -> bool:
    if a is None or b is None or not math.isfinite(a) or not math.isfinite(b):
        return (a is None or not math.isfinite(a)) and (b is None or not math.isfinite(b))
    return abs(a - b) <= max(rtol * abs(b), atol)
