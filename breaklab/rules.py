"""The rule book: every symptom breaklab judges a run by, with its measurement and its threshold.

One set of rules, three readers:
  * the end-of-run summary (breaklab.symptoms) prints the rules that fire on a run;
  * the doctor's detectors (breaklab.doctor) combine them into a diagnosis with its evidence;
  * the grader's recovery check (breaklab.grader.recovery) asks whether a fixed run still shows
    its break's symptom (solutions/<break>/rubric.json names the rules).

Each rule reads only metrics records (the step and epoch records of metrics.jsonl), never a
break's name or the configuration. It returns the numbers it saw when its symptom is present (a
`Sighting`), and None otherwise. A logged value of None means "not measured or not finite"; a
logged 0.0 is a measurement like any other.

Each threshold is named here once, with the measurements behind it (docs/DOCTOR.md has the
tables: 8 variants x 11 configurations on the bundled data).
"""
from __future__ import annotations

import math
from typing import Any, Callable

LN10 = math.log(10)
Sighting = dict[str, Any]
Records = list[dict[str, Any]]

# ---------------------------------------------------------------------------------------------
# Thresholds
# ---------------------------------------------------------------------------------------------

# A summed loss starts near batch_size x ln 10; a mean near ln 10. Measured: summed 2.3-2.4 per
# example; every other run 0.009-0.15 (2.3 / batch size, batch 16-256). Under 8 examples the two
# scales are too close to tell apart.
SUMMED_LOSS_MIN_BATCH = 8
SUMMED_LOSS_TOLERANCE = 0.25          # |loss0 / batch - ln 10| within this share of ln 10

# Outputs that lie in [0, 1] and sum to 1 per row are probabilities. Measured: double softmax,
# 100% of steps; every other run 0% (logit rows sum to anything from -5 to 8).
PROBABILITY_ROWSUM_TOLERANCE = 1e-3
PROBABILITY_STEP_SHARE = 0.9          # of the steps with finite outputs
PROBABILITY_MIN_STEPS = 5

# BatchNorm's running statistics move at every train-mode step. Measured: eval mode, exactly 0/1 in
# all 11 runs; no other run has them there after step 0.
FROZEN_BATCHNORM_MIN_STEPS = 5

# The loss should fall from the first steps. Measured: lr x100 passes 1.5x its start by step 2;
# clean runs never pass 1.2x.
LOSS_RISE_FACTOR = 1.5
LOSS_RISE_WINDOW = 30                 # steps looked at by the summary
LOSS_RISE_ONSET_WINDOW = 10           # steps within which the doctor wants the rise of a huge step

# Gradients that pile up (no zero_grad) grow step after step. Measured: missing zero_grad rises in
# 18-19 of the first 19 steps and ends 5.1-16x its start; every other run with a normal first step
# at most 13 rises and 2.2x.
GRAD_GROWTH_WINDOW = 20
GRAD_GROWTH_MIN_RISES = 17            # of GRAD_GROWTH_WINDOW - 1
GRAD_GROWTH_FACTOR = 3.0

# A classifier that learns nothing predicts uniform probabilities: loss ln 10.
CHANCE_LOSS_WINDOW = 20
CHANCE_LOSS_TOLERANCE = 0.1           # mean of the last window within 10% of ln 10
CHANCE_ACCURACY = 0.2                 # test accuracy below this after training: chance (0.1)

# Exact zeros of the first layer's weight gradient outside whole dead rows: float16 underflow.
# Measured: float16 without scaling 4.7-16%; float32 runs 0-1.5% (1.5% at batch 256); float16 with
# a GradScaler 0.02%. 2.5% sits 1.9x from both sides: the tightest margin of the doctor.
SCATTERED_ZERO_FRAC = 0.025
SCATTERED_ZERO_WINDOW = 10

# Hidden units whose weight rows get no gradient at all (dead ReLUs, or a layer that gets no
# gradient: the doctor tells them apart from the activations). Clean runs: under 10%.
DEAD_UNIT_FRAC = 0.3                  # worth reporting at the last step
DEAD_UNIT_MAJORITY = 0.5              # what an oversized step does to the layer

# Step 0's update ||delta theta|| / ||theta||. Measured: clean runs and every break that leaves
# the learning rate alone 1.3e-5-0.0047 (lr 0.02-0.5, batch 16-256, momentum 0 or 0.9, 10 warmup
# steps); lr x100 0.014-0.37. 0.008 is their geometric middle, 1.7x from each.
OVERSIZED_FIRST_UPDATE = 0.008


# ---------------------------------------------------------------------------------------------
# Records and shared measurements
# ---------------------------------------------------------------------------------------------

def step_records(records: Records) -> Records:
    return [r for r in records if r.get("type") == "step"]


def epoch_records(records: Records) -> Records:
    return [r for r in records if r.get("type") == "epoch"]


def losses(steps: Records) -> list[float]:
    return [r["loss"] for r in steps if r.get("loss") is not None]


def rolling_min(values: list[float], width: int = 10) -> float | None:
    """The lowest mean of `width` consecutive values (None with fewer values)."""
    if len(values) < width:
        return None
    return min(sum(values[i:i + width]) / width for i in range(len(values) - width + 1))


def first_update_ratio(steps: Records) -> float | None:
    return steps[0].get("update_ratio") if steps else None


def per_example_scale(steps: Records) -> bool:
    """Whether the first loss is on the scale of one example's cross-entropy (about ln 10 at
    initialisation), rather than a batch's sum of them."""
    loss0 = steps[0].get("loss") if steps else None
    return loss0 is not None and loss0 < 2 * LN10


def first_layer(by_layer: dict[str, Any]) -> str | None:
    """The first layer's weight in a per-layer dictionary: its first key (trainer.py's
    fc1.weight; breaklab.Monitor writes the first weight layer it found first)."""
    return next(iter(by_layer), None)


def first_layer_zero_frac(record: dict[str, Any]) -> float | None:
    by_layer = record.get("zero_grad_frac_by_layer") or {}
    return by_layer.get(first_layer(by_layer))


def scattered_zero_frac(steps: Records, window: int = SCATTERED_ZERO_WINDOW) -> float | None:
    """Mean fraction of first-layer weight-gradient entries that are exactly zero outside whole
    dead rows, over the last `window` steps (None when the metrics lack it)."""
    values = []
    for r in steps[-window:]:
        zero = first_layer_zero_frac(r)
        if zero is None or r.get("dead_unit_frac") is None:
            return None
        values.append(zero - r["dead_unit_frac"])
    return sum(values) / len(values) if values else None


def is_probability_row(r: dict[str, Any]) -> bool:
    """A step whose outputs fed to the loss lie in [0, 1] and sum to 1 per example."""
    rowsum, low, high = r.get("logit_rowsum_mean"), r.get("logit_min"), r.get("logit_max")
    return (rowsum is not None and low is not None and high is not None
            and abs(rowsum - 1) < PROBABILITY_ROWSUM_TOLERANCE and low >= 0 and high <= 1)


# An oversized first step did harm when the loss is above LOSS_RISE_FACTOR x step 0's on at least
# two of the first 10 steps, or half the hidden units are dead. Two steps, not one: a single high
# step is what an adaptive optimizer's first step can do in a sound run (measured with
# breaklab.Monitor on examples/mnist_cnn.py, Adadelta at lr 1.0: the loss at step 1 is 1.17x step
# 0's, and 1.51x with shuffled labels, back under 1.5x from step 2), while lr x100 keeps it up: in
# trainer.py (SGD, 1 epoch; seeds 0, 1, 2 and five other batch sizes, learning rates and momenta)
# 5-9 of the first 10 steps are above 1.5x in 7 of 8 runs, and the eighth (lr 0.02 x 100: one
# step above) has 82% of its units dead.
OVERSIZED_RISE_STEPS = 2


def oversized_step_harm(steps: Records) -> tuple[Records, float]:
    """What a learning rate far too large does next: the first LOSS_RISE_ONSET_WINDOW steps whose
    loss is above LOSS_RISE_FACTOR x step 0's (or non-finite), and the largest dead-unit fraction
    (from the activations)."""
    loss0 = steps[0]["loss"]
    above = [r for r in steps[:LOSS_RISE_ONSET_WINDOW] if r.get("loss") is None or r["loss"] > LOSS_RISE_FACTOR * loss0]
    # Dead units from the activations (0 for every example of a batch) where they are logged: a
    # layer without any gradient is not a layer of dead units.
    key = "act_first_dead_frac" if any(r.get("act_first_dead_frac") is not None for r in steps) else "dead_unit_frac"
    return above, max((r.get(key) or 0 for r in steps), default=0)


def did_harm(above: Records, dead: float) -> bool:
    return len(above) >= OVERSIZED_RISE_STEPS or dead >= DEAD_UNIT_MAJORITY


def harmful_first_step(steps: Records) -> bool:
    """Step 0 was oversized and did what an oversized step does.

    The size alone says "oversized" only for SGD, which moves the weights by lr x gradient. An
    adaptive optimizer moves every weight by about lr at step 0 whatever the gradient: measured
    with breaklab.Monitor on examples/, a clean Adam MLP (lr 1e-3) moves the weights by 1.9% of
    their norm at step 0 and the pytorch/examples CNN (Adadelta, lr 1.0) by 21%, with the loss
    falling from step 1. So the detectors that need "a normal first step" ask for this instead."""
    ratio = first_update_ratio(steps)
    if ratio is None or ratio <= OVERSIZED_FIRST_UPDATE or not per_example_scale(steps):
        return False
    return did_harm(*oversized_step_harm(steps))


# ---------------------------------------------------------------------------------------------
# The rules: each returns what it saw when its symptom is present, else None
# ---------------------------------------------------------------------------------------------

def first_nonfinite_loss(steps: Records) -> Sighting | None:
    for r in steps:
        if not r.get("loss_finite", True):
            return {"step": r["step"]}
    return None


def loss_rises_early(steps: Records, window: int = LOSS_RISE_WINDOW) -> Sighting | None:
    """The loss passes LOSS_RISE_FACTOR x its first value within the first `window` steps."""
    if not steps or steps[0].get("loss") is None:
        return None
    first = steps[0]["loss"]
    early = [r for r in steps[:window] if r.get("loss") is not None]
    above = [r for r in early if r["loss"] > LOSS_RISE_FACTOR * first]
    if not above:
        return None
    worst = max(early, key=lambda r: r["loss"])
    return {"first": first, "step": above[0]["step"], "worst": worst["loss"], "worst_step": worst["step"],
            "window": window}


def grad_norm_grows(steps: Records) -> Sighting | None:
    """The global gradient norm rises at almost every one of the first steps and ends well above
    its start. Read before clipping where that was measured: clipping caps the logged norm."""
    norms = pre_clip_norms(steps[:GRAD_GROWTH_WINDOW])
    if len(norms) < GRAD_GROWTH_WINDOW or None in norms or norms[0] <= 0:
        return None
    rises = sum(b > a for a, b in zip(norms, norms[1:]))
    if rises < GRAD_GROWTH_MIN_RISES or norms[-1] <= GRAD_GROWTH_FACTOR * norms[0]:
        return None
    return {"rises": rises, "of": len(norms) - 1, "first": norms[0], "last": norms[-1],
            "last_step": GRAD_GROWTH_WINDOW - 1, "ratio": norms[-1] / norms[0]}


def initial_loss_is_summed(steps: Records) -> Sighting | None:
    """The first loss is about batch size x ln 10: summed over the batch, not averaged."""
    if not steps or steps[0].get("loss") is None:
        return None
    loss0, batch = steps[0]["loss"], steps[0].get("batch_size") or 0
    if batch < SUMMED_LOSS_MIN_BATCH or abs(loss0 / batch - LN10) > SUMMED_LOSS_TOLERANCE * LN10:
        return None
    return {"loss0": loss0, "batch_size": batch, "per_example": loss0 / batch}


def outputs_are_probabilities(steps: Records) -> Sighting | None:
    """On nearly every step the outputs fed to the loss are probabilities, not logits."""
    checked = [r for r in steps if r.get("logit_rowsum_mean") is not None]
    if len(checked) < PROBABILITY_MIN_STEPS:
        return None
    probability_steps = sum(is_probability_row(r) for r in checked)
    if probability_steps < PROBABILITY_STEP_SHARE * len(checked):
        return None
    return {"probability_steps": probability_steps, "checked": len(checked)}


def bn_stats_frozen(steps: Records) -> Sighting | None:
    """BatchNorm's running statistics never left their initial mean 0 / variance 1."""
    if len(steps) < FROZEN_BATCHNORM_MIN_STEPS:
        return None
    last = steps[-1]
    if last.get("bn_running_mean_abs") != 0.0 or last.get("bn_running_var_mean") != 1.0:
        return None
    if any(r.get("bn_running_mean_abs") not in (0.0, None) for r in steps):
        return None
    return {"steps": len(steps)}


def loss_stuck_at_chance(steps: Records) -> Sighting | None:
    """After a few windows of training the loss is still ln 10."""
    if len(steps) < 3 * CHANCE_LOSS_WINDOW:
        return None
    tail = [r.get("loss") for r in steps[-CHANCE_LOSS_WINDOW:]]
    if None in tail:
        return None
    mean = sum(tail) / len(tail)
    if abs(mean - LN10) >= CHANCE_LOSS_TOLERANCE * LN10:
        return None
    return {"mean": mean, "window": CHANCE_LOSS_WINDOW, "steps": len(steps)}


def chance_accuracy(epochs: Records) -> Sighting | None:
    if epochs and epochs[-1].get("test_acc") is not None and epochs[-1]["test_acc"] < CHANCE_ACCURACY:
        return {"test_acc": epochs[-1]["test_acc"], "epochs": len(epochs)}
    return None


def scattered_zero_grads(steps: Records) -> Sighting | None:
    """Exact zeros outside whole dead units, above SCATTERED_ZERO_FRAC over the last steps."""
    frac = scattered_zero_frac(steps)
    if frac is None or frac <= SCATTERED_ZERO_FRAC:
        return None
    return {"frac": frac, "window": min(SCATTERED_ZERO_WINDOW, len(steps))}


def dead_units(steps: Records) -> Sighting | None:
    if steps and (steps[-1].get("dead_unit_frac") or 0) > DEAD_UNIT_FRAC:
        return {"frac": steps[-1]["dead_unit_frac"]}
    return None


def oversized_first_update(steps: Records) -> Sighting | None:
    """Step 0 moved the weights by more than OVERSIZED_FIRST_UPDATE of their norm."""
    ratio = first_update_ratio(steps)
    if ratio is None or ratio <= OVERSIZED_FIRST_UPDATE:
        return None
    return {"ratio": ratio}


# ---------------------------------------------------------------------------------------------
# The doctor's rules for the rest of the catalogue (schema 3 fields where they need them).
# Measured with `python -m breaklab.doctor_calibration` on its calibration runs (docs/DOCTOR.md has
# the tables): seeds 0-1 x default, --clip-grad 1.0, --amp, batch 128 and seeds 2-3 x batch 32,
# lr 0.05, --amp --clip-grad 0.5; 1 epoch (2 for the resume entries).
# ---------------------------------------------------------------------------------------------

# Memory kept across steps: earlier steps' autograd graphs alive (clean 0 at every step, the
# running sum of loss tensors 62 by the end of one epoch) and autograd bytes saved during an
# evaluation pass (clean 0, evaluation without no_grad 6.3 MB).
GRAPHS_ALIVE_MIN = 2
# A parameter that never changes: its update norm is exactly 0 at every step. With tiny steps
# float32 rounding alone can leave a small tensor unchanged (clip_before_unscale: bn1.weight, at
# a median update ratio of 2e-7), so the rule needs steps of normal size elsewhere.
NEVER_UPDATED_MIN_STEPS = 5
NORMAL_UPDATE_MEDIAN = 1e-4           # median update ratio; clean 1.5e-3 - 1.5e-2, tiny_lr 2e-5
# ... and a gradient of its own that is not tiny next to the run's: its largest per-layer norm at
# least this share of the median global gradient norm (layer left out of the optimizer: its
# gradient is never cleared and grows to 3-30x the global norm; rounding case: 1e-2).
OWN_GRADIENT_SHARE = 0.1
# Hidden units inactive for every example of the batch, from the activations themselves.
DEAD_ACTIVATIONS_ALL = 0.99           # zero_init: 1.0 at every step; every other run 0 at step 0
# A loss that goes below zero is not a cross-entropy or a squared error.
NEGATIVE_LOSS_STEPS = 1
# The initial loss of a mean squared error between near-zero outputs and one-hot targets over 10
# classes: 1/10 plus the outputs' variance. Measured 0.115-0.125.
MSE_ONEHOT_LOSS0 = (0.08, 0.16)
# Cross-entropy over the batch dimension starts at ln(batch size). Measured: within 1% of ln 64
# and ln 128; with 10 examples the two are the same number, so the batch must be 2x away from 10.
BATCH_SOFTMAX_TOLERANCE = 0.05        # |loss0 - ln(batch)| / ln(batch)
BATCH_SOFTMAX_MIN_RATIO = 2.0         # batch size at least 2x from 10 classes (either way)
# A learning rate too small to learn: the median update ratio. Measured: lr / 1000 1.5e-5-2.5e-5;
# every run that learns >= 1.4e-3, scheduler_not_stepped 2e-3.
TINY_UPDATE_MEDIAN = 2e-4
# Clipping in the scaled space: the clipped gradient norm is this much below the norm before
# clipping (unscaled), with a loss scale above 1. Measured: clip_before_unscale 1e-5 (1 / 65536);
# clean clipped runs >= 0.2.
CLIP_SCALED_RATIO = 1e-3
# Steps skipped by a GradScaler (inf/NaN gradients) out of all steps. Measured on the calibration
# runs: float16 log of a softmax 33-88%; clean float16 runs 0%, every other float16 entry at most
# 12.7% (summed loss). On the held-out runs lr 0.07 with momentum 0.8 skipped only 22-24%: missed.
# (Its own name: the recovery rules' SKIPPED_STEP_SHARE below is another threshold.)
FLOAT16_SKIPPED_STEP_SHARE = 0.25
# A near miss of the rule above (doctor.near_miss_signs): more than this share skipped, a finite
# loss, but under FLOAT16_SKIPPED_STEP_SHARE. A healthy verdict with it gets the calibrated
# confidence of such runs (low), not a clean run's. Measured on the 326 calibration runs under
# float16 with a GradScaler: the 86 clean runs, controls and not-visible entries skipped 0 steps;
# the bugs outside the catalogue (all called healthy or unknown, never named) at most 3.2% (loss
# x10, 2 of 63); the two bugs called healthy, float16 log of a softmax at lr 0.07 with momentum 0.8,
# 22-24%; the other float16 entries (named by their own detectors) 0-12.7%.
FLOAT16_SKIPPED_STEP_NEAR_MISS = 0.05
# The accuracy the loop reports is above 1: it is not an accuracy.
IMPOSSIBLE_ACCURACY = 1.0
# Training fits its labels while the test set is scored below chance: the labels of the two
# disagree. Measured: shifted labels train 0.79-0.80, test 0.01; clean test >= 0.88.
TRAIN_FITS = 0.5
BELOW_CHANCE = 0.05
# Test loss far above the loss of the last training steps while both use one scale, and test
# accuracy not above the epoch's training accuracy: the test inputs are not what training saw.
# Measured (calibration runs): raw test inputs 1.97-3.68x, 0.40+ nats above, test accuracy
# 0.67-0.75 against training's 0.73-0.80; clean runs up to 1.73x and 0.1 nats above (2 epochs,
# where the training loss is low), and after 1 epoch test accuracy 0.1+ above training's.
TEST_LOSS_GAP = 1.85
TEST_LOSS_EXCESS = 0.25
TEST_ACC_MARGIN = 0.05
TEST_ABOVE_CHANCE = 0.2               # raw test inputs 0.6-0.82; every label 0 (out of catalogue) 0.1
TRAIN_TAIL_STEPS = 10
# One-class batches (no shuffling): some single steps reach a loss far below ln 10 while the
# epoch's training accuracy stays near chance. Measured (lowest step loss): no shuffle 0 (batch 32)
# to 1.06 (batch 128, seed 3); shuffled labels and the all-pairs loss >= 2.2.
ONE_CLASS_BATCH_LOSS = 0.5 * LN10     # 0 - 1.06 with one class per batch; shuffled labels >= 2.2
ONE_CLASS_MAX_TRAIN_ACC = 0.35        # one class per batch 0.06-0.23; clean runs 0.7+ in one epoch
# A resumed run that lost the optimizer's state: the step after an epoch boundary moves the
# weights by a small share of the step before. Measured: 0.02-0.03x; clean 0.9x.
RESUME_UPDATE_DROP = 0.2


def first_layer_acts_all_dead(steps: Records) -> Sighting | None:
    """Every hidden unit of the first layer is 0 for every example, at every step (from the
    activations, not the gradients)."""
    fracs = [r.get("act_first_dead_frac") for r in steps]
    if not steps or None in fracs or min(fracs) < DEAD_ACTIVATIONS_ALL:
        return None
    return {"min": min(fracs), "steps": len(steps)}


def dead_activations(steps: Records) -> Sighting | None:
    """Hidden units that are 0 for every example of the last step's batch (dead ReLUs, measured
    on the activations: a layer that gets no gradient is not a layer of dead units)."""
    frac = steps[-1].get("act_first_dead_frac") if steps else None
    if frac is None or frac <= DEAD_UNIT_FRAC:
        return None
    return {"frac": frac}


def parameters_never_updated(steps: Records) -> Sighting | None:
    """Parameter tensors whose update norm is exactly 0 at every step that was not skipped,
    with how many steps had a gradient for them (update_norm_by_layer, schema 3)."""
    applied = [r for r in steps if not r.get("step_skipped") and r.get("update_norm_by_layer")]
    if len(applied) < NEVER_UPDATED_MIN_STEPS:
        return None
    names = list(applied[0]["update_norm_by_layer"])
    frozen = [n for n in names if all(r["update_norm_by_layer"].get(n) == 0.0 for r in applied)]
    if not frozen or len(frozen) == len(names):
        return None
    grads = {n: [(r.get("grad_norm_by_layer") or {}).get(n) for r in applied] for n in frozen}
    return {"names": frozen, "steps": len(applied), "grads": grads, "of": len(names)}


# Gradients left in .grad when the backward pass starts (grad_norm_carried, schema 3): 0 at every
# step of a loop that clears them; without zero_grad, the previous steps' sum at every step from 1
# (measured 0.4-1.0x the step's own norm before clipping, with --clip-grad 1.0 too). A parameter
# the optimizer does not hold keeps its gradient as well (rules.parameters_never_updated).
CARRIED_STEP_SHARE = 0.9              # of the steps after step 0
CARRIED_GRAD_SHARE = 0.05             # carried norm / the step's norm before clipping


def gradients_carried_over(steps: Records) -> Sighting | None:
    """On nearly every step after step 0, .grad already held a sizeable gradient when the
    backward pass started."""
    later = [r for r in steps[1:] if r.get("grad_norm_carried") is not None]
    if len(later) < NEVER_UPDATED_MIN_STEPS:
        return None
    norms = pre_clip_norms(later)
    carried = [(r, r["grad_norm_carried"] / n) for r, n in zip(later, norms)
               if n and r["grad_norm_carried"] >= CARRIED_GRAD_SHARE * n]
    if len(carried) < CARRIED_STEP_SHARE * len(later):
        return None
    values = sorted(r["grad_norm_carried"] for r, _ in carried)
    shares = sorted(share for _, share in carried)
    return {"steps": len(carried), "of": len(later), "median": values[len(values) // 2],
            "share": shares[len(shares) // 2], "onset": carried[0][0]["step"]}


# When the loss stays at ln 10, how much gradient reaches the first layer compared with the last
# (median over steps of the first weight's gradient norm / the last weight's). A loss that pairs
# every input with every label sends the same gradient to every example's outputs, which
# BatchNorm's backward pass (it subtracts the batch mean) removes before the first layer:
# measured 0.02-0.09; labels that carry no signal give each example its own gradient: 0.45-0.79.
# 0.2 is their geometric middle. The outputs' spread within a batch (logit_max - logit_min) is
# quoted as corroboration: 1.1-2.4 against 2.2-6.1, which overlap.
FIRST_TO_LAST_GRAD_RATIO = 0.2


def first_to_last_grad_ratio(steps: Records) -> float | None:
    """Median over steps of the first weight's gradient norm over the last weight's."""
    ratios = []
    for r in steps:
        by_layer = r.get("grad_norm_by_layer") or {}
        weights = [k for k in by_layer if k.endswith("weight")]
        if len(weights) < 2 or not by_layer.get(weights[-1]) or by_layer.get(weights[0]) is None:
            continue
        ratios.append(by_layer[weights[0]] / by_layer[weights[-1]])
    return sorted(ratios)[len(ratios) // 2] if ratios else None



def median_output_spread(steps: Records) -> float | None:
    spreads = sorted(r["logit_max"] - r["logit_min"] for r in steps
                     if r.get("logit_max") is not None and r.get("logit_min") is not None)
    return spreads[len(spreads) // 2] if spreads else None


def pre_clip_norms(steps: Records) -> list[float | None]:
    """The global gradient norm before clipping where it was measured (schema 3), else the logged
    norm (after clipping when there was any: a growth seen there is real, one capped is missed)."""
    return [r["grad_norm_pre_clip"] if "grad_norm_pre_clip" in r and r["grad_norm_pre_clip"] is not None
            else r.get("grad_norm") for r in steps]


FLOAT16_MAX = 65504.0                 # the largest float16: forward_float_max under float16 autocast


def float16_in_use(steps: Records) -> bool | None:
    """Whether every step ran its forward pass under float16 autocast (forward_float_max is
    float16's largest number): True / False as measured, None when the run does not record it
    (schema < 3, or a step where it was not seen)."""
    ranges = [r.get("forward_float_max") for r in steps]
    if not steps or None in ranges:
        return None
    return all(v == FLOAT16_MAX for v in ranges)


def scaler_state(steps: Records) -> bool | None:
    """Whether a GradScaler scaled the loss at every step (True), at none (False), mixed or not
    recorded (None)."""
    states = {r.get("grad_scaler_enabled") for r in steps}
    return states.pop() if len(states) == 1 and None not in states else None


# The rules by name, with the records each one reads ("steps" or "epochs"). The solutions' rubrics
# name them (symptom_checks), and so does the summary's order of sentences.
RULES: dict[str, tuple[str, Callable[[Records], Sighting | None]]] = {
    "first_nonfinite_loss": ("steps", first_nonfinite_loss),
    "initial_loss_is_summed": ("steps", initial_loss_is_summed),
    "loss_rises_early": ("steps", loss_rises_early),
    "grad_norm_grows": ("steps", grad_norm_grows),
    "loss_stuck_at_chance": ("steps", loss_stuck_at_chance),
    "outputs_are_probabilities": ("steps", outputs_are_probabilities),
    "bn_stats_frozen": ("steps", bn_stats_frozen),
    "scattered_zero_grads": ("steps", scattered_zero_grads),
    "dead_units": ("steps", dead_units),
    "chance_accuracy": ("epochs", chance_accuracy),
}


def sightings(records: Records, names=None) -> dict[str, Sighting]:
    """The rules (all, or those named) that fire on a run, with what each saw, in RULES order."""
    steps, epochs = step_records(records), epoch_records(records)
    seen = {}
    for name, (kind, rule) in RULES.items():
        if names is not None and name not in names:
            continue
        if (sighting := rule(steps if kind == "steps" else epochs)) is not None:
            seen[name] = sighting
    return seen


# =============================================================================================
# Recovery rules: symptoms the grader's recovery check reads
# =============================================================================================
# The rules above are the summary's and the doctor's. The rules below are read only by the
# grader's recovery check (grader/recovery.py; solutions/<bug>/rubric.json names them under
# `symptom_checks`): each reads the symptom of a bug whose broken run no rule above sees. They
# follow the same contract (records in, a Sighting or None out, never a break's name).
#
# Measured on the broken and the reference-fixed run (fix.patch applied) of seeds 0 and 1, one
# epoch (two for the resume bug, one and three for the test-input bug); solutions/MEASUREMENTS.md
# has the table. Every rule fires on every broken run there and on no fixed run.

# A cross-entropy is never negative; a loss that goes below 0 is not one. Measured: nll_on_logits
# below 0 at 62 of 63 steps (to -4e4); fixed runs never (lowest 0.16).
NEGATIVE_LOSS = 0.0

# A 10-class classifier's cross-entropy starts near ln 10 = 2.30. Measured: mse_onehot starts at
# 0.12 (seeds 0, 1); fixed runs at 2.29-2.30. A quarter of ln 10 (0.58) is 4.8x above the one and
# 4x below the other.
INITIAL_LOSS_FLOOR = 0.25 * LN10

# The loop keeps earlier steps' autograd graphs alive (a running total of loss tensors). Measured:
# loss_kept up to 62 graphs at once; fixed runs 0 at every step (an exact count, not a sample).
EARLIER_GRAPHS_ALLOWED = 0

# Autograd saved tensors during the test pass (evaluation without no_grad). Measured:
# eval_with_grad 6,309,316 bytes per test pass; fixed runs 0 (an exact count).
TEST_PASS_AUTOGRAD_BYTES_ALLOWED = 0

# The GradScaler skips a step when a gradient is inf or NaN; a sound AMP run skips a few at most.
# Measured: log_of_softmax_amp skips 49-50 of 63 steps (78-79%); fixed runs 0 of 63.
SKIPPED_STEP_SHARE = 0.5

# A schedule that moves (warmup, decay) changes the learning rate at nearly every step. Measured:
# scheduler_not_stepped logs one value over all 63 steps; fixed runs 62 distinct values in 63.
LR_CONSTANT_MIN_STEPS = 20

# Test inputs preprocessed unlike the training inputs: the test pass does worse than training on
# both loss and accuracy. Measured (last epoch): raw_test_inputs test loss above train loss and
# test accuracy 0.064-0.125 below train accuracy after 1 epoch, 0.150-0.303 after 3; fixed runs:
# test loss below train loss after 1 epoch (ratio 0.39-0.46), and after 3 epochs test loss above
# (1.9-2.3x) but test accuracy only 0.019-0.035 below train accuracy. The margin of 0.05 is thin
# on both sides (1.3x below the smallest broken gap, 1.4x above the largest fixed one).
TEST_BELOW_TRAIN_ACC = 0.05

# A resume that drops the optimizer's state (momentum buffers, learning rate) makes the first step
# after it tiny. Measured at every epoch boundary: the update ratio of an epoch's first step over
# the step before it is 0.035-0.039 for resume_without_optimizer_state; fixed runs 0.90-0.92
# (2 epochs), and 0.88-0.95 at both boundaries of 3-epoch fixed runs of another bug. 0.2 sits near their geometric middle (0.18), 5x from the one, 4.5x from the other.
RESUME_UPDATE_DROP = 0.2


def loss_negative(steps: Records) -> Sighting | None:
    """Some step's loss is below 0: the objective is not a cross-entropy (e.g. NLL on logits)."""
    below = [r for r in steps if r.get("loss") is not None and r["loss"] < NEGATIVE_LOSS]
    if not below:
        return None
    lowest = min(below, key=lambda r: r["loss"])
    return {"step": below[0]["step"], "steps": len(below), "lowest": lowest["loss"], "lowest_step": lowest["step"]}


def initial_loss_far_below_ln10(steps: Records) -> Sighting | None:
    """The first loss is far below ln 10: not the cross-entropy of an untrained 10-class model."""
    loss0 = steps[0].get("loss") if steps else None
    if loss0 is None or loss0 >= INITIAL_LOSS_FLOOR:
        return None
    return {"loss0": loss0, "floor": INITIAL_LOSS_FLOOR}


def earlier_graphs_alive(steps: Records) -> Sighting | None:
    """Some step still held the autograd graphs of earlier steps (loss tensors kept)."""
    counts = [(r.get("loss_graphs_alive") or 0, r["step"]) for r in steps]
    most, at = max(counts, default=(0, None))
    if most <= EARLIER_GRAPHS_ALLOWED:
        return None
    return {"most": most, "step": at}


def test_pass_records_graph(epochs: Records) -> Sighting | None:
    """Autograd saved tensors during a test pass: evaluation ran with gradients recorded."""
    saved = [(e.get("test_autograd_bytes") or 0, e.get("epoch")) for e in epochs]
    most, at = max(saved, default=(0, None))
    if most <= TEST_PASS_AUTOGRAD_BYTES_ALLOWED:
        return None
    return {"bytes": most, "epoch": at}


def most_steps_skipped(steps: Records) -> Sighting | None:
    """The GradScaler skipped more than SKIPPED_STEP_SHARE of the steps (inf/NaN gradients)."""
    if not steps:
        return None
    skipped = sum(bool(r.get("step_skipped")) for r in steps)
    if skipped <= SKIPPED_STEP_SHARE * len(steps):
        return None
    return {"skipped": skipped, "steps": len(steps)}


def lr_never_changes(steps: Records) -> Sighting | None:
    """The logged learning rate is the same at every step: the schedule never moved."""
    lrs = [r.get("lr") for r in steps]
    if len(lrs) < LR_CONSTANT_MIN_STEPS or None in lrs or len(set(lrs)) != 1:
        return None
    return {"lr": lrs[0], "steps": len(lrs)}


def test_worse_than_train(epochs: Records) -> Sighting | None:
    """At the last epoch the test loss is above the training loss and the test accuracy is more
    than TEST_BELOW_TRAIN_ACC below the training accuracy."""
    last = epochs[-1] if epochs else {}
    values = [last.get(k) for k in ("test_loss", "train_loss", "test_acc", "train_acc")]
    if None in values:
        return None
    test_loss, train_loss, test_acc, train_acc = values
    if test_loss <= train_loss or train_acc - test_acc <= TEST_BELOW_TRAIN_ACC:
        return None
    return {"test_loss": test_loss, "train_loss": train_loss, "test_acc": test_acc, "train_acc": train_acc,
            "epoch": last.get("epoch")}


def update_collapses_at_epoch_start(steps: Records) -> Sighting | None:
    """At some epoch's first step the update is less than RESUME_UPDATE_DROP x the step before
    (where a resumed run starts: an optimizer without its saved state)."""
    for before, first in zip(steps, steps[1:]):
        if first.get("epoch") == before.get("epoch"):
            continue
        prev, now = before.get("update_ratio"), first.get("update_ratio")
        if prev and now is not None and now < RESUME_UPDATE_DROP * prev:
            return {"step": first["step"], "epoch": first["epoch"], "ratio": now / prev}
    return None


# The recovery rules by name, with the records each reads, as in RULES.
RECOVERY_RULES: dict[str, tuple[str, Callable[[Records], Sighting | None]]] = {
    "loss_negative": ("steps", loss_negative),
    "initial_loss_far_below_ln10": ("steps", initial_loss_far_below_ln10),
    "earlier_graphs_alive": ("steps", earlier_graphs_alive),
    "test_pass_records_graph": ("epochs", test_pass_records_graph),
    "most_steps_skipped": ("steps", most_steps_skipped),
    "lr_never_changes": ("steps", lr_never_changes),
    "test_worse_than_train": ("epochs", test_worse_than_train),
    "update_collapses_at_epoch_start": ("steps", update_collapses_at_epoch_start),
}
