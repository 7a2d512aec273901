"""What a run's metrics show: small measurements that the end-of-run summary prints.

These read only metrics.jsonl, never the break's name or the configuration, so they say the
same for a named run and for a mystery run. Each returns a sentence when its symptom is present
and None otherwise. The thresholds were measured on the bundled data (see tests/test_breaks.py).
"""
from __future__ import annotations

import math
from typing import Any, Callable

LN10 = math.log(10)


def steps(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("type") == "step"]


def epochs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("type") == "epoch"]


def first_nonfinite_loss(st: list[dict]) -> str | None:
    for r in st:
        if not r.get("loss_finite", True):
            return f"loss became non-finite at step {r['step']}"
    return None


def loss_rises_early(st: list[dict], window: int = 30, factor: float = 1.5) -> str | None:
    """The loss should fall from the first steps; 1.5x its first value is a clear rise."""
    if not st or st[0].get("loss") is None:
        return None
    first = st[0]["loss"]
    early = [r for r in st[:window] if r.get("loss") is not None]
    above = [r for r in early if r["loss"] > factor * first]
    if above:
        worst = max(early, key=lambda r: r["loss"])
        return (f"loss rose above {factor}x its start ({first:.3g}) at step {above[0]['step']} "
                f"and reached {worst['loss']:.3g} by step {worst['step']} (first {window} steps)")
    return None


def grad_norm_grows(st: list[dict], window: int = 20, factor: float = 3.0) -> str | None:
    """Gradients that accumulate grow step after step; healthy ones stay within a few x."""
    gn = [r.get("grad_norm") for r in st[:window]]
    if len(gn) < window or None in gn or gn[0] <= 0:
        return None
    rises = sum(b > a for a, b in zip(gn, gn[1:]))
    if gn[-1] > factor * gn[0] and rises >= 0.85 * (len(gn) - 1):
        return (f"global grad norm grew in {rises} of the first {len(gn) - 1} steps: "
                f"{gn[0]:.3g} at step 0 -> {gn[-1]:.3g} at step {window - 1} ({gn[-1] / gn[0]:.0f}x)")
    return None


def initial_loss_is_summed(st: list[dict]) -> str | None:
    """A mean cross-entropy over 10 classes starts near ln(10) = 2.30; a sum starts near
    batch_size x ln(10)."""
    if not st or st[0].get("loss") is None:
        return None
    loss0, bs = st[0]["loss"], st[0].get("batch_size", 0)
    if bs > 1 and abs(loss0 / bs - LN10) < 0.25 * LN10:
        return (f"initial loss {loss0:.1f} = {bs} x {loss0 / bs:.2f}, about batch size x ln 10 (2.30): "
                f"the loss is summed over the batch")
    return None


def outputs_are_probabilities(st: list[dict]) -> str | None:
    """Logits are unbounded; softmax outputs lie in [0, 1] and every row sums to 1."""
    tail = st[-10:]
    if not tail:
        return None
    ok = all(r.get("logit_rowsum_mean") is not None and abs(r["logit_rowsum_mean"] - 1) < 1e-3
             and r.get("logit_min", -1) >= 0 and r.get("logit_max", 2) <= 1 for r in tail)
    if ok:
        return "outputs fed to the loss are probabilities (in [0, 1], rows sum to 1), not logits"
    return None


def bn_stats_frozen(st: list[dict]) -> str | None:
    """In train mode BatchNorm's running averages move every step; in eval mode never."""
    if len(st) < 5:
        return None
    last = st[-1]
    if last.get("bn_running_mean_abs") == 0.0 and last.get("bn_running_var_mean") == 1.0:
        return (f"BatchNorm running statistics never moved from mean 0 / variance 1 in "
                f"{len(st)} steps: the training steps ran in eval mode")
    return None


def loss_stuck_at_chance(st: list[dict], window: int = 20) -> str | None:
    """A classifier that learns nothing keeps predicting uniform probabilities: loss ln(10)."""
    if len(st) < 3 * window:
        return None
    tail = [r.get("loss") for r in st[-window:]]
    if None in tail:
        return None
    mean = sum(tail) / len(tail)
    if abs(mean - LN10) < 0.1 * LN10:
        return (f"training loss over the last {window} steps is {mean:.3f}, still ln 10 = 2.303 "
                f"after {len(st)} steps: the model predicts nothing better than uniform")
    return None


def chance_accuracy(ep: list[dict], below: float = 0.2) -> str | None:
    if ep and ep[-1].get("test_acc") is not None and ep[-1]["test_acc"] < below:
        return f"test accuracy {ep[-1]['test_acc']:.3f} after {len(ep)} epoch(s): chance level"
    return None


def first_layer(by_layer: dict[str, Any]) -> str | None:
    """The first layer's weight in a per-layer dictionary: its first key (trainer.py's
    fc1.weight; breaklab.Monitor writes the first weight layer it found first)."""
    return next(iter(by_layer), None)


def scattered_zero_frac(st: list[dict], window: int = 10) -> float | None:
    """Mean fraction of first-layer weight-gradient entries that are exactly zero outside whole
    dead rows, over the last `window` steps (None when the metrics lack it)."""
    vals = []
    for r in st[-window:]:
        by_layer = r.get("zero_grad_frac_by_layer") or {}
        z = by_layer.get(first_layer(by_layer))
        if z is None or r.get("dead_unit_frac") is None:
            return None
        vals.append(z - r["dead_unit_frac"])
    return sum(vals) / len(vals) if vals else None


def scattered_zero_grads(st: list[dict], threshold: float = 0.025) -> str | None:
    """Exact zeros outside whole dead units: float16 underflow, not dead ReLUs."""
    frac = scattered_zero_frac(st)
    if frac is not None and frac > threshold:
        return (f"{100 * frac:.1f}% of first-layer gradient entries are exactly zero "
                f"outside dead units in the last {min(10, len(st))} steps: scattered underflow")
    return None


def dead_units(st: list[dict], threshold: float = 0.3) -> str | None:
    if st and (st[-1].get("dead_unit_frac") or 0) > threshold:
        return f"{100 * st[-1]['dead_unit_frac']:.0f}% of hidden units get no gradient at the last step (dead ReLUs)"
    return None


STEP_CHECKS: list[Callable] = [first_nonfinite_loss, initial_loss_is_summed, loss_rises_early,
                               grad_norm_grows, loss_stuck_at_chance, outputs_are_probabilities, bn_stats_frozen,
                               scattered_zero_grads, dead_units]


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    st, ep = steps(records), epochs(records)
    observations = [msg for check in STEP_CHECKS if (msg := check(st))]
    if msg := chance_accuracy(ep):
        observations.append(msg)
    last = ep[-1] if ep else {}
    return {
        "steps": len(st),
        "initial_loss": st[0].get("loss") if st else None,
        "final_loss": st[-1].get("loss") if st else None,
        "train_loss": last.get("train_loss"),
        "train_acc": last.get("train_acc"),
        "test_loss": last.get("test_loss"),
        "test_acc": last.get("test_acc"),
        "symptoms": observations,
    }


def _fmt(v: Any, spec: str = ".4g") -> str:
    return "non-finite" if v is None else format(v, spec)


def format_summary(summary: dict[str, Any], out: str, what: str | None = None) -> str:
    lines = []
    if what:
        lines.append(f"ran:      {what}")
    lines.append(f"trained:  {summary.get('epochs_done', '?')}/{summary.get('epochs_total', '?')} epochs, "
                 f"{summary['steps']} steps" + (f" in {summary['seconds']:.1f} s" if "seconds" in summary else "")
                 + (f" ({summary['total_seconds']:.1f} s with data, checkpoints and figure)"
                    if "total_seconds" in summary else ""))
    lines.append(f"loss:     {_fmt(summary['initial_loss'])} at step 0 -> {_fmt(summary['final_loss'])} at the last step")
    lines.append(f"test:     accuracy {_fmt(summary['test_acc'], '.3f')}, loss {_fmt(summary['test_loss'])}")
    if summary["symptoms"]:
        lines.append("symptoms: " + summary["symptoms"][0])
        lines += ["          " + s for s in summary["symptoms"][1:]]
    else:
        lines.append("symptoms: none seen: the loss fell and the metrics look healthy")
    lines.append(f"files:    {out}/ (metrics.jsonl, checkpoint.pt, meta.json, summary.json, report.png)")
    return "\n".join(lines)
