"""What a run's metrics show, in sentences: the end-of-run summary.

The measurements and their thresholds are the rule book's (breaklab.rules), shared with the doctor
and the grader's recovery check; this module only words what the rules saw. Like the rules, it
reads only metrics.jsonl, never the break's name or the configuration, so it says the same for a
named run and for a mystery run.
"""
from __future__ import annotations

from typing import Any, Callable

from breaklab import rules

# How the summary words each rule's sighting, in the order the summary prints them.
SENTENCES: dict[str, Callable[[dict[str, Any]], str]] = {
    "first_nonfinite_loss": lambda s: f"loss became non-finite at step {s['step']}",
    "initial_loss_is_summed": lambda s: (
        f"initial loss {s['loss0']:.1f} = {s['batch_size']} x {s['per_example']:.2f}, about batch size x "
        f"ln 10 (2.30): the loss is summed over the batch"),
    "loss_rises_early": lambda s: (
        f"loss rose above {rules.LOSS_RISE_FACTOR}x its start ({s['first']:.3g}) at step {s['step']} "
        f"and reached {s['worst']:.3g} by step {s['worst_step']} (first {s['window']} steps)"),
    "grad_norm_grows": lambda s: (
        f"global grad norm grew in {s['rises']} of the first {s['of']} steps: {s['first']:.3g} at step 0 "
        f"-> {s['last']:.3g} at step {s['last_step']} ({s['ratio']:.0f}x)"),
    "loss_stuck_at_chance": lambda s: (
        f"training loss over the last {s['window']} steps is {s['mean']:.3f}, still ln 10 = 2.303 after "
        f"{s['steps']} steps: the model predicts nothing better than uniform"),
    "outputs_are_probabilities": lambda s: (
        "outputs fed to the loss are probabilities (in [0, 1], rows sum to 1), not logits"),
    "bn_stats_frozen": lambda s: (
        f"BatchNorm running statistics never moved from mean 0 / variance 1 in {s['steps']} steps: "
        f"the training steps ran in eval mode"),
    "scattered_zero_grads": lambda s: (
        f"{100 * s['frac']:.1f}% of first-layer gradient entries are exactly zero outside dead units "
        f"in the last {s['window']} steps: scattered underflow"),
    "dead_units": lambda s: f"{100 * s['frac']:.0f}% of hidden units get no gradient at the last step (whole rows of the first layer's gradient are 0)",
    "chance_accuracy": lambda s: f"test accuracy {s['test_acc']:.3f} after {s['epochs']} epoch(s): chance level",
}


def sentence(name: str, records_of_kind: list[dict[str, Any]]) -> str | None:
    """The summary's sentence for one rule on the step (or epoch) records, or None."""
    sighting = rules.RULES[name][1](records_of_kind)
    return None if sighting is None else SENTENCES[name](sighting)


def _at(r: dict, key: str, spec: str = ".3g") -> str:
    v = r.get(key)
    return "non-finite" if v is None else format(v, spec)


def measurements(steps: list[dict], epochs: list[dict]) -> list[str]:
    """The same lines for every run, numbers only: what a mystery run's summary shows instead of
    the symptoms, which would name the mechanism (and, by which of them appear, the answer)."""
    if not steps:
        return []
    first, last = steps[0], steps[-1]
    finite = [r for r in steps if r.get("loss") is not None]
    lines = []
    top = max(finite, key=lambda r: r["loss"], default=None)
    low = min((sum(r["loss"] for r in finite[i:i + 10]) / 10 for i in range(len(finite) - 9)), default=None)
    lines.append(f"loss {_at(first, 'loss')} at step 0" + (f", highest {top['loss']:.3g} at step {top['step']}" if top else "")
                 + (f", lowest 10-step mean {low:.3g}" if low is not None else "")
                 + f", {len(steps) - len(finite)} non-finite step(s)")
    norms = [r for r in steps if r.get("grad_norm") is not None]
    at19 = steps[19] if len(steps) > 19 else last
    lines.append(f"gradient norm {_at(first, 'grad_norm')} at step 0, {_at(at19, 'grad_norm')} at step {at19['step']}"
                 + (f", highest {max(r['grad_norm'] for r in norms):.3g}" if norms else ""))
    lines.append(f"update size (|update| / |weights|) {_at(first, 'update_ratio')} at step 0, "
                 f"{_at(last, 'update_ratio')} at the last step")
    zero = rules.scattered_zero_frac(steps)
    lines.append(f"hidden units with an all-zero gradient at the last step: {_at(last, 'dead_unit_frac', '.0%')}; "
                 f"other first-layer gradient entries exactly zero (last 10 steps): "
                 + ("n/a" if zero is None else f"{zero:.1%}"))
    lines.append(f"BatchNorm running |mean| {_at(last, 'bn_running_mean_abs')}, running variance "
                 f"{_at(last, 'bn_running_var_mean')} at the last step")
    lines.append(f"outputs fed to the loss at the last step: min {_at(last, 'logit_min')}, "
                 f"max {_at(last, 'logit_max')}, mean row sum {_at(last, 'logit_rowsum_mean')}")
    if epochs:
        lines.append("train accuracy per epoch " + ", ".join(_at(e, "train_acc") for e in epochs))
    return lines


def summarize(records: list[dict[str, Any]], wording: str = "symptoms") -> dict[str, Any]:
    """The run's final numbers, with the symptoms the rule book sees, or with wording="measurements"
    (mystery runs) the same fixed list of measurements for every run instead."""
    steps, epochs = rules.step_records(records), rules.epoch_records(records)
    last = epochs[-1] if epochs else {}
    if wording == "measurements":
        observations = {"measurements": measurements(steps, epochs)}
    else:
        observations = {"symptoms": [SENTENCES[name](seen) for name, seen in rules.sightings(records).items()]}
    return {
        "steps": len(steps),
        "initial_loss": steps[0].get("loss") if steps else None,
        "final_loss": steps[-1].get("loss") if steps else None,
        "train_loss": last.get("train_loss"),
        "train_acc": last.get("train_acc"),
        "test_loss": last.get("test_loss"),
        "test_acc": last.get("test_acc"),
        **observations,
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
    if "measurements" in summary:  # a mystery run: numbers, no interpretation
        lines += [("measured: " if i == 0 else "          ") + m for i, m in enumerate(summary["measurements"])]
    elif summary["symptoms"]:
        lines.append("symptoms: " + summary["symptoms"][0])
        lines += ["          " + s for s in summary["symptoms"][1:]]
    else:
        lines.append("symptoms: none seen: the loss fell and the metrics look healthy")
    lines.append(f"files:    {out}/ (metrics.jsonl, checkpoint.pt, meta.json, summary.json, report.png)")
    return "\n".join(lines)
