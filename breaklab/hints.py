"""Graded hints for a run, a mystery run above all: level 1 says which measurement to look at,
level 2 the category of the fault, level 3 the answer. Each level repeats the ones below it.

The hints speak of measurements (metrics.jsonl fields and report.png's panels), never of the
mechanism, up to level 3. The answer comes from the run's commitment opened with the secret
(breaklab/mystery.py); where the secret is not there, from the doctor's verdict, and the hint says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Level 1: where the symptom shows, as a measurement. A break without an entry points at its
# `metric` attribute.
LOOK_AT = {
    "label_permute": "the training loss next to ln 10 = 2.30 and the train accuracy per epoch, while the "
                     "step size stays normal (metrics.jsonl: loss, train_acc, update_ratio)",
    "huge_lr": "the step size at step 0 and the loss over the first 10 steps (metrics.jsonl: update_ratio, "
               "loss; report.png: 'step size relative to the weights')",
    "missing_zero_grad": "the global gradient norm over the first 20 steps, step by step (metrics.jsonl: "
                         "grad_norm; report.png: 'gradient norm')",
    "loss_sum": "the loss at step 0 next to the batch size, and the gradient norm at step 0 "
                "(metrics.jsonl: loss, batch_size, grad_norm)",
    "amp_no_scaling": "the first-layer gradient entries that are exactly zero outside all-zero units, over the "
                      "last steps (metrics.jsonl: zero_grad_frac_by_layer.fc1.weight minus dead_unit_frac)",
    "double_softmax": "the outputs fed to the loss: their minimum, maximum and row sum, next to where the loss "
                      "levels off (metrics.jsonl: logit_min, logit_max, logit_rowsum_mean)",
    "eval_mode": "BatchNorm's running mean and variance over the whole run (metrics.jsonl: "
                 "bn_running_mean_abs, bn_running_var_mean)",
    "none": "the loss and accuracy curves next to a run of another seed with `./demo_run.sh SEED none`, "
            "then every other panel of report.png the same way",
}

# Level 2: the categories of `breaklab list`, said as where in the training the fault sits.
CATEGORIES = {
    "data": "data / target: which label the loss is asked to predict for which input",
    "objective": "objective: the loss the optimizer minimises, and what it is computed from",
    "optimization": "optimization step: how the gradients become updates of the weights",
    "numerics": "numerics: the precision the numbers of the step are computed in",
    "mode": "train/eval mode: the state the model's layers are in while they train",
    "none": "none: no fault category; the run is what the code should give",
}


@dataclass
class Hints:
    levels: list[str]          # the hint of each level shown, level 1 first
    answer: str
    from_doctor: bool          # the answer is the doctor's verdict, not the run's own (no secret)
    note: str = ""


def hints(run: Any, level: int, secret: str | None = None) -> Hints:
    """The hints up to `level` (1-3) for a loaded run (breaklab.doctor.Run)."""
    from breaklab.breaks import REGISTRY
    from breaklab.doctor import diagnose
    from breaklab.mystery import RevealError, find_answer

    dx = diagnose(run)
    note, from_doctor = "", False
    try:
        answer = find_answer(run.meta, secret)[0]
    except RevealError as e:
        answer = {"healthy": "none"}.get(dx.verdict, dx.verdict)
        from_doctor = True
        note = f"the run's own answer cannot be opened ({e}); these hints follow the doctor's verdict"
    finding = next((h for h in dx.hypotheses if h.name == answer), None)
    if answer in REGISTRY:  # "none" is the registry's clean Break, category "none"
        look = LOOK_AT.get(answer) or f"the metric {REGISTRY[answer].metric} in metrics.jsonl"
        category = CATEGORIES.get(REGISTRY[answer].category, REGISTRY[answer].category)
    else:  # the doctor found no known fault
        look = ("no single measurement: compare every panel of report.png with a clean run "
                "(`./demo_run.sh SEED none`), or run `breaklab triage RUN --spoil`")
        category = "unknown to the doctor"
    if finding is not None and finding.onset_step is not None:
        look += f"; it stands out from step {finding.onset_step}"
    shown = [f"look at {look}", f"category: {category}",
             f"answer: {answer}" + (" (the doctor's verdict)" if from_doctor else "")]
    return Hints(shown[:level], answer, from_doctor, note)
