"""The mutations: one per catalogue bug, each a small rewrite of one line of the clean script.

A mutation names the site it rewrites (a ``#@name`` marker in solutions/exercise_template.py),
how it rewrites that line (a function of the line and the variant; an empty list deletes it), and
what the key tells an instructor: the fix in words and two or three probing questions. Adding a
bug to the exercises is one entry in MUTATIONS plus its site marker in the template.

A mutation that does no measurable harm in some shape (see `applies`) is never put there: every
bug of an exercise shows a symptom in the run's measurements. Every rewrite keeps the line's
indentation and the script's style, so the buggy script reads like any other
(tests/test_exercises.py checks it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from breaklab.exercises.variants import Variant


@dataclass(frozen=True)
class Mutation:
    name: str                                   # the catalogue's name for the bug (`breaklab list`)
    rewrite: Callable[[str, Variant], list[str]]  # the site line -> the buggy line(s)
    fix: str                                    # what the fix is, in words
    questions: tuple[str, ...]                  # probing questions for an interview
    applies: Callable[[Variant], bool] = lambda variant: True  # the shapes where it shows a symptom
    # Why its symptom shows whatever else is wrong, when that holds by construction (then the
    # calibration measures it alone and in pairs, not in every larger combination).
    certain: str | None = None

    def apply(self, line: str, variant: Variant) -> list[str]:
        new = self.rewrite(line, variant)
        if new == [line]:
            raise ValueError(f"mutation {self.name} does not change {line.strip()!r}")
        return new


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def _replace_once(line: str, old: str, new: str) -> str:
    if line.count(old) != 1:
        raise ValueError(f"expected {old!r} once in {line.strip()!r}")
    return line.replace(old, new)


def _times_100(line: str, variant: Variant) -> list[str]:
    """LR = 0.05 -> LR = 5.0; LR = 1e-3 -> LR = 1e-1: the slipped exponent, in the line's style."""
    name, value = line.split(" = ")
    if "e-" in value:
        mantissa, exponent = value.split("e-")
        new = f"{mantissa}e-{int(exponent) - 2}" if int(exponent) > 2 else repr(float(value) * 100)
    else:
        new = repr(round(float(value) * 100, 10))
    return [f"{name} = {new}"]


def _labels_unshuffled(line: str, variant: Variant) -> list[str]:
    return [_replace_once(line, "dataset.targets[order]", "dataset.targets")]


def _softmax_output(line: str, variant: Variant) -> list[str]:
    match = re.fullmatch(r"(\s*)return (.+)", line)
    if not match:
        raise ValueError(f"expected a return line, got {line.strip()!r}")
    return [f"{match.group(1)}return F.softmax({match.group(2)}, dim=1)"]


MUTATIONS: dict[str, Mutation] = {m.name: m for m in (
    Mutation(
        "label_permute", _labels_unshuffled,
        "index the labels with the same permutation as the images: dataset.targets[order]",
        ("The loss stays at 2.30 from the first step to the last: what does that number mean for a "
         "10-class classifier?",
         "How would you check that every image still carries its own label after loading?",
         "What would a model trained on shuffled labels score on the training set itself?"),
        certain="the test labels do not belong to the test images either: no model scores above "
                "chance (0.10) against them"),
    Mutation(
        "huge_lr", _times_100,
        "the learning rate is 100 times too large: restore it (0.05 for SGD with momentum, 1e-3 for Adam)",
        ("How large is one update compared with the weights it changes, at the first step?",
         "How would you choose a learning rate for a new model: what does a short sweep show?",
         "Why do ReLU units stop learning after a few oversized steps?")),
    Mutation(
        "missing_zero_grad", lambda line, variant: [],
        "clear the gradients once per step, before backward: optimizer.zero_grad()",
        ("What does loss.backward() do with the values already in .grad?",
         "How does the gradient norm evolve over the first 20 steps, and what would you expect?",
         "When is accumulating gradients over several batches on purpose useful, and how is it done?"),
        # Under a GradScaler the stale gradient is unscaled, 65536 times smaller than the new
        # scaled one: no symptom. Only the float32 shapes get this bug.
        applies=lambda variant: not variant.amp),
    Mutation(
        "loss_sum", lambda line, variant: [_replace_once(line, "nn.CrossEntropyLoss()",
                                                         'nn.CrossEntropyLoss(reduction="sum")')],
        'average the loss over the batch: nn.CrossEntropyLoss() (reduction="mean", the default)',
        ("What is the loss of an untrained 10-class classifier, and what did this run log at step 0?",
         "How does the loss's reduction change the gradients, and the learning rate you need?",
         "Which optimizers are sensitive to the scale of the loss, and which barely notice it?")),
    Mutation(
        "amp_no_scaling", lambda line, variant: [_replace_once(line, "enabled=USE_AMP",
                                                               'enabled=DEVICE == "cuda"')],
        "enable the GradScaler whenever float16 autocast is on: torch.amp.GradScaler(DEVICE, enabled=USE_AMP)",
        ("What is the smallest magnitude float16 can represent, and what happens to smaller gradients?",
         "What does a GradScaler do to the loss before backward, and to the gradients before the step?",
         "Which measurement would show float16 underflow when the accuracy looks fine?"),
        applies=lambda variant: variant.amp),
    Mutation(
        "double_softmax", _softmax_output,
        "return the raw logits from forward(): nn.CrossEntropyLoss applies log-softmax itself",
        ("What does nn.CrossEntropyLoss compute internally from its input?",
         "What is the lowest loss this run can reach if the model's outputs are probabilities?",
         "Why does the accuracy look fine while the loss stalls?")),
    Mutation(
        "eval_mode", lambda line, variant: [_replace_once(line, "model.train()", "model.eval()")],
        "put the model in training mode before the training steps: model.train()",
        ("What does BatchNorm do differently in model.train() and model.eval() (and Dropout, where "
         "there is one)?",
         "Which of BatchNorm's buffers change during training, and what would you expect them to read?",
         "Where in a training loop do model.train() and model.eval() belong?")),
)}
