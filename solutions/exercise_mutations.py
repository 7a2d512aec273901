"""The mutations: one per catalogue bug that a plain script can hold, each a small rewrite of the
clean script (instructor-only: with the template, the answers of every exercise).

A mutation is either a rule, which names the site it rewrites (a ``#@name`` marker in
solutions/exercise_template.py) and rewrites that line as a function of the line and the variant
(an empty list deletes it), or data: the clean and buggy lines of the break's standalone-script
mutation, solutions/<break>/mutation.json, found in the rendered script by their text (spacing
aside) and put in with the script's indentation. Either way the key tells an instructor the fix
in words and two or three probing questions. The catalogue's other bugs (no place in a plain
script, or no symptom the check can see, measured) are in NOT_WOVEN, each with the reason.

A mutation that does no measurable harm in some shape (see `applies`) is never put there: every
bug of an exercise shows a symptom in the run's measurements. Every rewrite keeps the line's
indentation and the script's style, so the buggy script reads like any other
(tests/test_exercises.py checks it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from breaklab.exercises.variants import Variant
from breaklab.solutions import SOLUTIONS_DIR
from breaklab.solutions.exercise_template import Script, render


@dataclass(frozen=True)
class Mutation:
    name: str                                   # the catalogue's name for the bug (`breaklab list`)
    rewrite: Callable[[str, Variant], list[str]] | None  # the site line -> the buggy line(s); None: data
    fix: str                                    # what the fix is, in words
    questions: tuple[str, ...]                  # probing questions for an interview
    applies: Callable[[Variant], bool] = lambda variant: True  # the shapes where it shows a symptom
    # Why its symptom shows whatever else is wrong, when that holds by construction (then the
    # calibration measures it alone and in pairs, not in every larger combination).
    certain: str | None = None
    site: str | None = None                     # the marker it rewrites, when not its own name
    data: tuple[tuple[str, ...], tuple[str, ...]] | None = None  # (clean, buggy) of mutation.json

    def span(self, clean: Script) -> tuple[int, int] | None:
        """[start, end) of the clean lines this mutation replaces in the script, or None when the
        script has no such lines."""
        if self.data is None:
            site = clean.sites.get(self.site or self.name)
            return None if site is None else (site, site + 1)
        return _find_block(clean.lines, *self.data)

    def apply(self, lines: list[str], variant: Variant) -> list[str]:
        """The buggy lines for the clean lines of its span."""
        new = self.rewrite(lines[0], variant) if self.data is None else _rewrite_block(lines, *self.data)
        if new == lines:
            raise ValueError(f"mutation {self.name} does not change {lines!r}")
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


# ============================================================================
# The later catalogue bugs: their mutation is data (solutions/<break>/mutation.json)
# ============================================================================

def _strip(lines) -> list[str]:
    return [line.strip() for line in lines]


def _changed_part(clean, buggy) -> tuple[int, int]:
    """How many leading and trailing lines the clean and buggy blocks share (context lines)."""
    a, b = _strip(clean), _strip(buggy)
    prefix = 0
    while prefix < min(len(a), len(b)) and a[prefix] == b[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(a), len(b)) - prefix and a[-1 - suffix] == b[-1 - suffix]:
        suffix += 1
    return prefix, suffix


def _find_block(lines: list[str], clean, buggy) -> tuple[int, int] | None:
    """Where the clean block stands in the script (one place, or none), narrowed to the lines the
    mutation changes; an insertion's span is the line it follows, which it keeps."""
    wanted, have = _strip(clean), _strip(lines)
    found = [i for i in range(len(have) - len(wanted) + 1) if have[i:i + len(wanted)] == wanted]
    if not found:
        return None
    if len(found) > 1:
        raise ValueError(f"{wanted[0]!r}: the clean block stands {len(found)} times in the script")
    prefix, suffix = _changed_part(clean, buggy)
    start, end = found[0] + prefix, found[0] + len(wanted) - suffix
    if start == end:  # a pure insertion after the shared line
        if prefix == 0:
            raise ValueError(f"{wanted!r}: an insertion needs the line before it")
        start -= 1
    return start, end


def _rewrite_block(lines: list[str], clean, buggy) -> list[str]:
    """The buggy lines for `lines` (the script's copy of the changed clean lines), indented as the
    script indents them."""
    prefix, suffix = _changed_part(clean, buggy)
    inserted = prefix + suffix == len(clean)
    reference = clean[prefix - 1] if inserted else clean[prefix]
    shift = len(_indent(lines[0])) - len(_indent(reference))
    new = [" " * (len(_indent(line)) + shift) + line.strip() for line in buggy[prefix:len(buggy) - suffix]]
    return [lines[0], *new] if inserted else new


def _divided_by_1000(line: str, variant: Variant) -> list[str]:
    """LR = 0.05 -> LR = 0.05e-3; LR = 1e-3 -> LR = 1e-6: a slipped exponent, in the line's style."""
    name, value = line.split(" = ")
    if "e-" in value:
        mantissa, exponent = value.split("e-")
        return [f"{name} = {mantissa}e-{int(exponent) + 3}"]
    return [f"{name} = {value}e-3"]


@lru_cache(maxsize=None)
def _mutation_data(name: str) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    import json

    data = json.loads((SOLUTIONS_DIR / name / "mutation.json").read_text())
    return tuple(data["clean"]), tuple(data["buggy"]), data["fix"]


def _in_script(name: str, needs: Callable[[Variant], bool] = lambda variant: True) -> Callable[[Variant], bool]:
    """Applies where `needs` holds and the variant's clean script has the mutation's clean lines."""
    def applies(variant: Variant) -> bool:
        return needs(variant) and _has_block(name, variant)
    return applies


@lru_cache(maxsize=None)
def _has_block(name: str, variant: Variant) -> bool:
    clean, buggy, _ = _mutation_data(name)
    return _find_block(render(variant).lines, clean, buggy) is not None


def _from_data(name: str, questions: tuple[str, ...], needs: Callable[[Variant], bool] = lambda variant: True,
               certain: str | None = None, buggy: tuple[str, ...] | None = None) -> Mutation:
    """The mutation of mutation.json; `buggy` replaces its buggy lines where they do not fit the
    script's style (a line over 100 characters)."""
    clean, data_buggy, fix = _mutation_data(name)
    return Mutation(name, None, fix, questions, _in_script(name, needs), certain, data=(clean, buggy or data_buggy))


LATER = (
    _from_data("acc_broadcast", (
        "The test loss falls like a healthy run's while the accuracy reads about 0.10: which number "
        "would you trust, and why?",
        "What shape does logits.argmax(dim=1, keepdim=True) have, and what does comparing it with "
        "labels of shape (N,) give?",
        "How would you test an accuracy function on a batch whose answer you know?"),
        certain="the accuracy compares every prediction with every label ((N, 1) against (N,)), and the "
                "test set holds 100 of each digit: it reads exactly 0.10 whatever the model predicts"),
    _from_data("fp16_overflow", (
        "What is the largest number float16 holds, and how large must a logit be for exp() to pass it?",
        "Why do F.cross_entropy and torch.logsumexp not overflow where exp().sum().log() does?",
        "What does a GradScaler do with a step whose gradients hold inf or NaN?"),
        # measured: with Adam no symptom (test accuracy 0.936-0.937, the doctor calls it healthy)
        needs=lambda variant: variant.amp and variant.optimizer == "sgd"),
    _from_data("frozen_layer", (
        "Which layer's gradient is exactly zero at every step, and what can cause that?",
        "How do you list the parameters that will actually be trained?",
        "When is freezing a layer useful on purpose, and how would you check it took effect?"),
        needs=lambda variant: variant.model == "mlp"),
    _from_data("label_shift", (
        "Training accuracy is high and test accuracy below chance: what must differ between the splits?",
        "How would you check, for a few examples, that the label the model trains on matches the image?",
        "What does an accuracy below chance, rather than at chance, tell you?")),
    _from_data("layer_not_in_optimizer", (
        "Which parameters does the optimizer hold, and how do you compare them with model.parameters()?",
        "What happens to the .grad of a parameter that optimizer.zero_grad() never clears?",
        "Why does the model still learn something while one layer is never updated?"),
        needs=lambda variant: variant.model == "mlp",
        buggy=("    params = [*model.bn1.parameters(), *model.fc2.parameters()]",
               "    optimizer = torch.optim.SGD(params, lr=LR, momentum=0.9)")),
    _from_data("log_of_softmax_amp", (
        "Why is torch.log(F.softmax(x)) less stable than F.log_softmax(x), and why does float16 make it "
        "worse?",
        "What does the GradScaler's scale do over the run, and what does a falling scale mean?",
        "How many optimizer steps were skipped, and how would you find out?"),
        # measured: with Adam no symptom (test accuracy 0.933-0.941, the doctor calls it healthy)
        needs=lambda variant: variant.optimizer == "sgd" and variant.amp),
    _from_data("loss_all_pairs", (
        "What shape does log_probs[:, labels] have for a batch of 64, and what does its mean average over?",
        "The loss stays at ln 10 = 2.30: what does that say about what the model learned?",
        "How would you check a hand-written loss against F.cross_entropy on one batch?")),
    _from_data("nll_on_logits", (
        "What input does nn.NLLLoss expect, and what does it compute from it?",
        "The loss goes negative and keeps falling: what lower bound should a classification loss have?",
        "How large do the logits grow, and why?")),
    _from_data("raw_test_inputs", (
        "Training accuracy is high and test accuracy far lower: what differs in how the two splits reach "
        "the model?",
        "What mean and standard deviation do the training and the test inputs have, as the model sees them?",
        "Where should preprocessing live so that every split gets the same?")),
    _from_data("softmax_over_batch", (
        "Over which dimension should log_softmax normalise, and what does dim=0 normalise over instead?",
        "The first loss is about 4.16 = ln 64: what does that number point at?",
        "Why does the model still learn a little with this loss?")),
    Mutation(
        "tiny_lr", _divided_by_1000,
        "the learning rate is 1000 times too small: restore it (0.05 for SGD with momentum, 1e-3 for Adam)",
        ("How large is the first update compared with the weights it changes?",
         "The loss falls, but slowly: how do you tell a learning rate that is too small from a hard problem?",
         "What does a short learning-rate sweep show?"),
        site="huge_lr"),
    _from_data("zero_init", (
        "What does every hidden unit compute when all weights start at zero, and what gradient does each get?",
        "Why does a network need random initial weights?",
        "Which measurement shows that no hidden unit ever activates?"),
        needs=lambda variant: variant.model == "mlp"),
)
MUTATIONS.update({m.name: m for m in LATER})

# The catalogue's other bugs, and why no plain exercise script holds them. (The controls do no harm
# by design: an exercise's every bug shows a symptom, so they are never put in.)
NOT_WOVEN = {
    "clip_before_unscale": "the script clips no gradient: there is no clipping line to move before the unscale",
    "scheduler_not_stepped": "the script has no learning-rate scheduler to leave unstepped",
    "resume_without_optimizer_state": "the script neither saves a checkpoint nor resumes from one",
    "resume_without_rng_state": "the script neither saves a checkpoint nor resumes from one",
    "nan_inputs": "the bundled sample holds no blank image, so the per-image normalisation of its "
                  "mutation.json divides by zero nowhere; a script would have to plant NaN pixels on purpose",
    "eval_with_grad": "evaluate() runs outside the Monitor: nothing the script records shows the memory "
                      "autograd keeps there, so neither the learner's run nor the check could see it",
    "test_leak": "its symptom is a test accuracy above the clean run's, which the doctor does not read: "
                 "the check could not tell the bug fixed from left in",
    # Put in and measured (breaklab/exercises/calibration.json keeps the runs), no symptom:
    "no_shuffle": "load_mnist shuffles each split once as it loads it, so unshuffled batches still mix "
                  "every class: measured, test accuracy 0.938-0.949 and a healthy doctor in the loader shapes",
    "mse_onehot": "measured, a healthy doctor in every shape and a test accuracy of 0.919-0.945 against the "
                  "clean 0.937-0.957: past the tolerance in 2 of 8 shapes by at most 0.004, too close to count on",
    "loss_kept": "the Monitor records loss_graphs_alive, but the doctor does not read it and the accuracy "
                 "is the clean run's (measured in every shape): the check could not tell it fixed",
}

# The bugs whose every combination of 2-4 the calibration measured (about 15 minutes of CPU for the
# eight shapes). The later ones are measured alone everywhere, and in every pair in the CNN shapes
# (`--every-bug-up-to 2`); a combination with an unmeasured part is "not measured", so refused,
# until `python -m breaklab.solutions.exercise_calibrate --every-bug-up-to N` measures it.
MEASURED_IN_COMBINATION = ("label_permute", "huge_lr", "missing_zero_grad", "loss_sum", "amp_no_scaling",
                           "double_softmax", "eval_mode")
