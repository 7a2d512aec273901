"""The doctor: a diagnosis of a finished run from what its metrics measured.

`diagnose(run)` reads only the run's measurements: the step and epoch records of metrics.jsonl
and the model's tensors in checkpoint.pt. It never reads the break's name, meta.json, the command
or summary.json, so a mystery run and a run whose configuration was blanked get the same verdict
as the named run.

Each detector below is one small function for one symptom. It returns a `Finding` (a hypothesis
with a score, the evidence as a person would cite it, the step where the symptom starts, the
check to run next and the minimal fix) or None. The thresholds were chosen from measurements of
every break and of clean runs over several seeds, epochs, batch sizes and learning rates, with a
margin on both sides; docs/DOCTOR.md records those measurements.

The seeds' categories frame the detectors: data, target, objective, shapes, numerics,
optimization step, train/eval mode (docs/DOCTOR.md says which symptoms each one covers).
"""
from __future__ import annotations

import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from breaklab import rules, symptoms
from breaklab.remedies import remedy
from breaklab.metric_log import parse_metrics

LN10 = math.log(10)


# ============================================================================
# Reading a run: a folder or a tarball
# ============================================================================

class RunReadError(Exception):
    """The path is not a readable run (message says what is wrong and what to do)."""


# The files a run may hold, with the most bytes the doctor will read from each. Tarballs are read
# by breaklab.untrusted, with the same limits as the grader's intake.
MiB = 1 << 20
RUN_FILE_CAPS = {"metrics.jsonl": 64 * MiB, "checkpoint.pt": 64 * MiB, "checkpoint.pt.sha256": 4096,
                 "meta.json": 1 * MiB, "summary.json": 1 * MiB, "command.txt": 64 * 1024,
                 "report.png": 16 * MiB}


@dataclass
class Run:
    """What the doctor reads from a run. `meta` is kept for `reveal` and `triage` (which need the
    seed and configuration to re-run it); the detectors never look at it."""

    source: str
    steps: list[dict[str, Any]]
    epochs: list[dict[str, Any]]
    model_state: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


def read_tarball_members(path: Path) -> dict[str, bytes]:
    """The run files inside a tarball (basename -> bytes), read into memory, nothing extracted.

    Untrusted input, read by breaklab.untrusted: only regular files and folders, relative plain
    names, capped member count and sizes. Only the known run files at the top or one folder down
    are read (each under its own cap); anything else is skipped unread."""
    from breaklab import untrusted

    def accept(name: str) -> int | None:
        parts = name.split("/")
        return RUN_FILE_CAPS.get(parts[-1]) if len(parts) <= 2 else None

    with open(path, "rb") as f:
        head = f.read(512)
    if not head.startswith(b"\x1f\x8b") and head[257:262] != b"ustar":
        raise RunReadError(f"{path}: not a readable run tarball (not a tar or gzip archive); give a .tgz "
                           f"made by demo_run.sh or breaklab pack, or a run folder")
    try:
        members = untrusted.read_tar(path, accept, require_gzip=False)
    except untrusted.Untrusted as e:
        raise RunReadError(f"{path}: not a readable run tarball ({e}); give a .tgz made by "
                           f"demo_run.sh or breaklab pack, or a run folder") from None
    files: dict[str, bytes] = {}
    for name, data in sorted(members.items(), key=lambda kv: kv[0].count("/")):
        files.setdefault(name.split("/")[-1], data)
    return files


def read_run_files(path: Path | str) -> dict[str, bytes]:
    """The run's files (name -> bytes) from a folder or a tarball, read without following links
    (breaklab.untrusted): a link, FIFO or device where a run file should be is an error."""
    from breaklab import untrusted

    path = Path(path)
    if path.is_dir():
        files, problems = untrusted.read_folder_files(path, RUN_FILE_CAPS)
        if problems:
            raise RunReadError(f"{path}: {problems[0]}")
        return files
    if path.is_file() and path.name.endswith(".sha256"):
        tarball = path.name.removesuffix(".sha256")
        raise RunReadError(f"{path} is a checksum file, not a run: give the tarball {tarball} "
                           f"itself (check it with: sha256sum -c {path.name})")
    if path.is_file():
        return read_tarball_members(path)
    raise RunReadError(f"{path} does not exist: give a run folder (runs/NAME) or a run tarball (.tgz)")


def load_model_state(data: bytes) -> dict[str, Any] | None:
    """The model's tensors from checkpoint.pt, loaded with weights_only=True (no code runs, even
    for a checkpoint from someone else). The checkpoint's numpy RNG state needs numpy's array
    reconstruction allow-listed; anything else makes the load fail, and the doctor goes on
    without the checkpoint."""
    import numpy as np
    import torch

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    allowed = [np.ndarray, np.dtype, _reconstruct, type(np.dtype("uint32"))]
    try:
        with torch.serialization.safe_globals(allowed):
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:
        return None
    model = state.get("model") if isinstance(state, dict) else None
    return model if isinstance(model, dict) else None


def load_run(path: Path | str, model: bool = True) -> Run:
    """model=False leaves the checkpoint unopened (a figure needs the metrics only)."""
    files = read_run_files(path)
    if "metrics.jsonl" not in files:
        raise RunReadError(f"{path} has no metrics.jsonl: not a breaklab run (train one with "
                           f"./demo_run.sh SEED BREAK)")
    warnings: list[str] = []
    records = _parse_metrics(files["metrics.jsonl"].decode("utf-8", errors="replace"), str(path), warnings)
    validate_records(records, f"{path}/metrics.jsonl")
    steps, epochs = rules.step_records(records), rules.epoch_records(records)
    if not steps:
        raise RunReadError(f"{path}: metrics.jsonl has no training steps; the run stopped before step 0")
    model_state = load_model_state(files["checkpoint.pt"]) if model and "checkpoint.pt" in files else None
    meta = None
    if "meta.json" in files:
        try:
            meta = json.loads(files["meta.json"])
        except ValueError:
            warnings.append("meta.json is not valid JSON; ignored")
    return Run(str(path), steps, epochs, model_state, meta if isinstance(meta, dict) else None, warnings)


# The value types of schema v1 (docs/METRICS.md). A record that breaks them is refused with the
# field named, rather than trusted: the detectors compare and index these values.
_NUMBER_FIELDS = ("lr", "loss", "grad_norm", "zero_grad_frac", "dead_unit_frac", "act_first_mean",
                  "act_first_var", "act_first_dead_frac", "act_last_mean", "act_last_var", "logit_min",
                  "logit_max", "logit_rowsum_mean", "update_ratio", "bn_running_mean_abs",
                  "bn_running_var_mean", "amp_scale", "train_loss", "train_acc", "test_loss", "test_acc")
_INT_FIELDS = ("step", "epoch", "batch_size")
_NUMBER_FIELDS += ("grad_norm_pre_clip", "grad_norm_carried", "forward_float_max")
_LAYER_FIELDS = ("grad_norm_by_layer", "grad_mean", "zero_grad_frac_by_layer", "update_norm_by_layer")
_FLAG_FIELDS = ("step_skipped", "loss_finite", "grads_finite", "grad_scaler_enabled")
# 2 added two memory figures, 3 the measured preconditions (autocast dtype, GradScaler state,
# gradient norm before clipping, update per parameter); an older run reads the same, and a
# detector that needs a field it lacks does not fire.
KNOWN_SCHEMA_VERSIONS = (1, 2, 3)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_records(records: list[dict[str, Any]], where: str) -> None:
    """Refuse records whose fields have the wrong type, naming the record and the field."""
    for i, rec in enumerate(records, 1):
        kind = rec.get("type")
        if kind == "header":
            if rec.get("version") not in KNOWN_SCHEMA_VERSIONS:
                raise RunReadError(f"{where}: metrics schema version {rec.get('version')!r} is not one this "
                                   f"breaklab reads ({', '.join(map(str, KNOWN_SCHEMA_VERSIONS))}); "
                                   f"use the breaklab that wrote the run")
            continue
        if kind not in ("step", "epoch"):
            continue

        def bad(name: str, want: str) -> RunReadError:
            return RunReadError(f"{where}: record {i} ({kind}) has {name!r} = {rec.get(name)!r}, "
                                f"expected {want}; the file is damaged or not a breaklab metrics file")

        for key in ("step", "epoch"):
            if not isinstance(rec.get(key), int) or isinstance(rec.get(key), bool):
                raise bad(key, "an integer")
        for key in _INT_FIELDS:
            if key in rec and (not isinstance(rec[key], int) or isinstance(rec[key], bool)):
                raise bad(key, "an integer")
        for key in _NUMBER_FIELDS:
            if rec.get(key) is not None and not _is_number(rec[key]):
                raise bad(key, "a number or null")
        for key in _LAYER_FIELDS:
            if key in rec and not (isinstance(rec[key], dict) and all(
                    v is None or _is_number(v) for v in rec[key].values())):
                raise bad(key, "an object of per-layer numbers")
        for key in _FLAG_FIELDS:
            if key in rec and not isinstance(rec[key], bool):
                raise bad(key, "true or false")


def _parse_metrics(text: str, where: str, warnings: list[str]) -> list[dict[str, Any]]:
    """read_metrics' rules (a cut-off last line is dropped with a warning) on text in memory."""
    try:
        return parse_metrics(text, where + "/metrics.jsonl", warn=warnings.append)
    except ValueError as e:
        raise RunReadError(str(e)) from None


# ============================================================================
# Findings and the measurements they share
# ============================================================================

@dataclass
class Finding:
    name: str            # the hypothesis: a break's name
    category: str        # data, target, objective, shapes, numerics, optimization step, train/eval mode
    score: float         # 0..1: how specific and how strong the evidence is
    evidence: list[str]
    onset_step: int | None
    onset: str           # the symptom at onset_step, without naming the cause (used on figures)
    next_check: str
    suggested_fix: str


def _finding(name: str, category: str, score: float, evidence: list[str], onset_step: int | None,
             onset: str, fix_detail: str = "") -> Finding:
    """A finding with the fault's next check and fix from the shared remedies."""
    fix = remedy(name)
    return Finding(name, category, score, evidence, onset_step, onset, fix.next_check, fix.fix + fix_detail)


# ============================================================================
# Detectors: one symptom each. The measurements and thresholds are the rule book's
# (breaklab.rules); each detector adds the preconditions that tie a symptom to one cause.
# ============================================================================

def detect_summed_loss(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Objective. A mean cross-entropy over 10 classes starts at ln 10 = 2.30 (the output layer
    starts near zero); a sum over the batch starts at batch_size x 2.30 (rules.initial_loss_is_summed)."""
    seen = rules.initial_loss_is_summed(steps)
    if seen is None:
        return None
    loss0, batch = seen["loss0"], seen["batch_size"]
    evidence = [f"step 0: loss {loss0:.1f} = {batch} x {seen['per_example']:.2f}, i.e. batch size x ln 10 "
                f"(2.30): the loss is summed over the batch, not averaged"]
    first_norm = steps[0].get("grad_norm")
    if first_norm:
        evidence.append(f"step 0: gradient norm {first_norm:.3g}, about {batch} times the 1.4-3.3 a mean loss gives")
    return _finding("loss_sum", "objective", 0.95, evidence, 0, f"step 0: loss {loss0:.3g} = {batch} x ln 10")


def detect_probability_outputs(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Objective. F.cross_entropy expects logits (any real numbers). If every output row the loss
    sees lies in [0, 1] and sums to 1, softmax was applied first, and the loss has a floor
    (about 1.46: the largest logit gap it can see is 1). Rule: rules.outputs_are_probabilities."""
    seen = rules.outputs_are_probabilities(steps)
    if seen is None:
        return None
    evidence = [f"the outputs fed to the loss lie in [0, 1] and sum to 1 per example on "
                f"{seen['probability_steps']} of {seen['checked']} steps: they are probabilities, not logits"]
    low = rules.rolling_min(rules.losses(steps))
    acc = max((e.get("train_acc") or 0 for e in epochs), default=None)
    if low is not None:
        evidence.append(f"the training loss never fell below {low:.2f} (lowest 10-step mean)"
                        + (f" although train accuracy reached {acc:.2f}" if acc else "")
                        + ": cross-entropy on probabilities cannot go below about 1.46")
    return _finding("double_softmax", "objective", 0.95, evidence, 0, "step 0: outputs sum to 1 (probabilities)")


def detect_frozen_batchnorm(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Train/eval mode. In train mode BatchNorm updates its running mean and variance at every
    step; in eval mode it never does (rules.bn_stats_frozen). The checkpoint's
    num_batches_tracked (0 in eval mode) corroborates."""
    if rules.bn_stats_frozen(steps) is None:
        return None
    evidence = [f"BatchNorm running mean stayed exactly 0 and running variance exactly 1 for all "
                f"{len(steps)} steps; a training-mode step moves them at step 0"]
    score = 0.93
    tracked = (model or {}).get("bn1.num_batches_tracked")
    if tracked is not None and int(tracked) == 0:
        evidence.append("checkpoint: bn1.num_batches_tracked = 0: BatchNorm never counted a training batch")
        score = 0.97
    dead = steps[-1].get("dead_unit_frac")
    if dead:
        evidence.append(f"last step: {100 * dead:.0f}% of hidden units got no gradient (batch statistics "
                        f"would have re-centred them)")
    return _finding("eval_mode", "train/eval mode", score, evidence, 0, "BatchNorm statistics never move")


def detect_accumulating_gradients(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Optimization step. Without zero_grad, each step's .grad is the sum of all gradients so
    far. Two measurements show it: (1) where it is logged (schema 3), .grad is not empty when
    the backward pass starts (rules.gradients_carried_over), which no clipping hides; (2) the
    gradient norm before clipping grows almost every step, roughly with the step count
    (rules.grad_norm_grows). Preconditions: every parameter moves (rules.parameters_never_updated:
    a parameter left out of the optimizer also keeps its gradient); for (2) also that step 0 is
    not an oversized step that did harm (rules.harmful_first_step) and the loss is per-example (a
    summed loss or a huge learning rate also grows gradients, for other reasons)."""
    if rules.parameters_never_updated(steps) is not None:
        return None  # some parameters never move: their gradient alone grows (left out of the optimizer)
    carried = rules.gradients_carried_over(steps)
    if carried is not None:
        evidence = [f"at {carried['steps']} of {carried['of']} steps after step 0, .grad already held gradients when "
                    f"the backward pass started (median norm {carried['median']:.3g}, "
                    f"{carried['share']:.2f}x the step's own gradient norm before clipping): nothing cleared them",
                    "step 0 started from empty gradients: they pile up from step 1 on"]
        if (seen := rules.grad_norm_grows(steps)) is not None:
            evidence.append(f"the gradient norm before clipping rose in {seen['rises']} of the first {seen['of']} "
                            f"steps ({seen['ratio']:.0f}x)")
        return _finding("missing_zero_grad", "optimization step", 0.95, evidence, carried["onset"],
                        f"step {carried['onset']}: old gradients still in .grad")
    if any(r.get("grad_norm_carried") is not None for r in steps):
        return None  # measured: the gradients were cleared at every step
    seen = rules.grad_norm_grows(steps)
    first_update = rules.first_update_ratio(steps)
    if (seen is None or first_update is None or rules.harmful_first_step(steps)
            or not rules.per_example_scale(steps)):
        return None
    norms = rules.pre_clip_norms(steps[:rules.GRAD_GROWTH_WINDOW])
    onset = next(r["step"] for r, n in zip(steps, norms) if n > 2 * seen["first"])
    evidence = [f"global gradient norm rose in {seen['rises']} of the first {seen['of']} steps: "
                f"{seen['first']:.3g} at step 0 -> {seen['last']:.3g} at step {seen['last_step']} "
                f"({seen['ratio']:.0f}x, read before clipping), growing like a running sum"]
    if rise := symptoms.sentence("loss_rises_early", steps):
        evidence.append(rise)
    evidence.append(f"step 0 was a normal step (update {100 * first_update:.2f}% of the weights): the growth "
                    f"comes after it, as gradients pile up")
    return _finding("missing_zero_grad", "optimization step", 0.9, evidence, onset,
                    f"step {onset}: grad norm 2x step 0's and growing")


def detect_oversized_steps(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Optimization step. A learning rate far too large moves the weights by a large fraction of
    their norm at the very first step (rules.oversized_first_update); the loss then rises and ReLU
    units die. Preconditions: the loss is on a per-example scale (a summed loss makes steps large
    for another reason), and a consequence is seen (rules.oversized_step_harm): the loss above
    1.5x its start on two of the first 10 steps, or half the hidden units dead. Measured: lr x100 gives 0.014-0.37, a rise within the first
    steps, and up to 95-100% dead units."""
    seen = rules.oversized_first_update(steps)
    if seen is None or not rules.per_example_scale(steps):
        return None
    loss0 = steps[0]["loss"]
    above, dead = rules.oversized_step_harm(steps)
    if not rules.did_harm(above, dead):
        return None
    rise = above[0] if above else None
    evidence = [f"step 0: one update moved the weights by {100 * seen['ratio']:.1f}% of their norm; runs "
                f"with a sound learning rate move them by less than 0.5% at step 0"]
    if rise is not None:
        worst = max(steps[:rules.LOSS_RISE_WINDOW], key=lambda r: r["loss"] if r.get("loss") is not None else math.inf)
        what = "non-finite" if worst.get("loss") is None else f"{worst['loss']:.3g}"
        evidence.append(f"step {rise['step']}: loss above {rules.LOSS_RISE_FACTOR}x its start ({loss0:.2f}); "
                        f"it reached {what} at step {worst['step']}")
    if dead >= rules.DEAD_UNIT_MAJORITY:
        evidence.append(f"up to {100 * dead:.0f}% of hidden units were 0 for every example of a batch (dead ReLUs)")
    peak_lr = max((r.get("lr") or 0 for r in steps), default=0)
    evidence.append(f"the optimizer's learning rate peaked at {peak_lr:.3g} (logged lr)")
    onset = rise["step"] if rise is not None else 0
    return _finding("huge_lr", "optimization step", 0.9, evidence, onset,
                    f"step {onset}: loss rises" if rise is not None else "step 0: oversized update",
                    fix_detail=f" (it ran at up to {peak_lr:.3g})")


def detect_fp16_underflow(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Numerics. float16 rounds magnitudes below about 6e-8 to zero. Unscaled float16 gradients
    then have scattered exact-zero entries, unlike dead ReLUs, which zero whole rows
    (rules.scattered_zero_grads). Preconditions, measured per step: the forward pass ran under
    float16 autocast (rules.float16_in_use) and no GradScaler was enabled (rules.scaler_state,
    loss scale 1.0)."""
    seen = rules.scattered_zero_grads(steps)
    if seen is None or rules.float16_in_use(steps) is not True:
        return None  # float16 not measured in use: scattered zeros have another cause
    if rules.scaler_state(steps) is not False or {r.get("amp_scale") for r in steps} != {1.0}:
        return None  # a GradScaler was active: underflow despite scaling is not this fault
    limit = rules.SCATTERED_ZERO_FRAC
    onset = next((r["step"] for r in steps
                  if (rules.first_layer_zero_frac(r) or 0) - (r.get("dead_unit_frac") or 0) > limit),
                 steps[-1]["step"])
    first = rules.first_layer_zero_frac(steps[0]) or 0
    evidence = [f"last {seen['window']} steps: {100 * seen['frac']:.1f}% of first-layer weight-gradient "
                f"entries are exactly zero outside dead units (scattered, not whole rows): float16 underflow",
                f"the zeros grow as the gradients shrink: {100 * first:.1f}% at step 0, above "
                f"{100 * limit:.1f}% from step {onset}",
                "the forward pass ran in float16 (forward_float_max 65504 at every step); no GradScaler was enabled "
                "(grad_scaler_enabled false, loss scale 1.0 on every step)"]
    return _finding("amp_no_scaling", "numerics", 0.9, evidence, onset, f"step {onset}: scattered zero gradients")


# Labels that carry no signal: the lowest 10-step mean loss stays above this share of ln 10.
# Measured: shuffled labels 1.0 x ln 10; clean 0.03-0.15 x ln 10.
NO_SIGNAL_LOSS_SHARE = 0.9
# ... while the steps are not tiny (a learning rate too small to learn is another fault).
NO_SIGNAL_MIN_MEDIAN_UPDATE = 5e-4


def _labels_carry_no_signal(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Data / target. When the labels do not belong to the inputs, nothing can be learned: the
    loss stays at ln 10 (uniform predictions) and accuracy at chance, although the steps are of
    normal size and nothing diverges.

    Threshold: the lowest 10-step mean loss stays above 0.9 x ln 10 and above 0.9x step 0's loss
    (a model with more than 10 classes starts above ln 10 and can learn down to it: a
    character-level transformer learns the letters' frequencies), train accuracy stays below 0.2
    in every epoch, step 0 is not an oversized step that did harm (rules.harmful_first_step) and
    is on a per-example scale, and the median update is not tiny. Measured: shuffled labels, lowest 10-step mean 1.0 x ln 10 and best train
    accuracy 0.09-0.11; the other runs that stay above 0.9 x ln 10 either reach train accuracy
    0.34 or more (missing zero_grad) or take an oversized first step (lr x100, summed loss)."""
    loss_values = rules.losses(steps)
    low = rules.rolling_min(loss_values)
    if low is None or low < NO_SIGNAL_LOSS_SHARE * LN10 or len(loss_values) < len(steps):
        return None
    accs = [e.get("train_acc") for e in epochs]
    if not accs or None in accs or max(accs) >= rules.CHANCE_ACCURACY:
        return None
    first_update = rules.first_update_ratio(steps)
    updates = [r["update_ratio"] for r in steps if r.get("update_ratio") is not None]
    if first_update is None or rules.harmful_first_step(steps) or not rules.per_example_scale(steps):
        return None
    if low < NO_SIGNAL_LOSS_SHARE * steps[0]["loss"]:
        return None  # it fell from its own start: something was learned
    if not updates or statistics.median(updates) < NO_SIGNAL_MIN_MEDIAN_UPDATE:
        return None
    if rules.parameters_never_updated(steps) is not None or not _alive_activations(steps):
        return None  # part of the model cannot learn: another fault
    if min(loss_values) < rules.ONE_CLASS_BATCH_LOSS or min(accs) < rules.BELOW_CHANCE:
        return None  # single batches fit perfectly, or accuracy far below chance: not random labels
    evidence = [f"the training loss stayed at ln 10 = 2.30 for all {len(steps)} steps (lowest 10-step mean "
                f"{low:.2f}): the model predicts no better than uniform",
                "train accuracy per epoch " + ", ".join(f"{a:.2f}" for a in accs) + ": chance is 0.10",
                f"the steps were normal-sized (median update {100 * statistics.median(updates):.2f}% of the "
                f"weights) and nothing diverged: the inputs carry no information about these labels"]
    if epochs and epochs[-1].get("test_acc") is not None:
        evidence.append(f"test accuracy {epochs[-1]['test_acc']:.3f} after {len(epochs)} epoch(s)")
    return _finding("label_permute", "data / target", 0.85, evidence, 0, "loss stays at ln 10 from step 0")


def detect_labels_carry_no_signal(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Data / target. The symptoms of _labels_carry_no_signal (thresholds there: Threshold and
    Measured), with a gradient that reaches the first layer (rules.first_to_last_grad_ratio at
    least rules.FIRST_TO_LAST_GRAD_RATIO): each example pulls its outputs its own way, toward
    its label, and the labels carry no signal."""
    finding = _labels_carry_no_signal(steps, epochs, model)
    ratio = rules.first_to_last_grad_ratio(steps)
    if finding is None or ratio is None:
        return None
    if not has_batchnorm(steps):  # the precondition of the split: both names fit, and they conflict
        finding.evidence.append(NO_BATCHNORM_TO_SPLIT)
        return finding
    if ratio < rules.FIRST_TO_LAST_GRAD_RATIO:
        return None
    finding.evidence.append(f"the first layer's gradient is {ratio:.2f}x the last layer's (median): each example "
                            f"pulls toward its own label")
    return finding


# The split between labels without signal and a loss that pairs every output with every label
# rests on BatchNorm's backward pass, which removes a gradient that is the same for every example
# (measured on trainer.py's model); without BatchNorm in the model, the first layer's gradient
# cannot tell the two apart.
NO_BATCHNORM_TO_SPLIT = ("no BatchNorm statistics were logged: the first layer's gradient cannot tell labels "
                         "without signal from a loss that pairs every output with every label")


def has_batchnorm(steps: list[dict]) -> bool:
    """Whether the model has BatchNorm layers: their running statistics were logged."""
    return any(r.get("bn_running_var_mean") is not None for r in steps)


def detect_loss_ignores_pairing(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Shapes. The symptoms of labels without signal (_labels_carry_no_signal's rules), with
    almost no gradient reaching the first layer (rules.first_to_last_grad_ratio below
    rules.FIRST_TO_LAST_GRAD_RATIO): every example's outputs get the same gradient, which
    BatchNorm's backward pass removes, as when the loss scores each example against every
    label of the batch (an (N, N) matrix averaged); the outputs hardly vary within a batch."""
    finding = _labels_carry_no_signal(steps, epochs, model)
    ratio = rules.first_to_last_grad_ratio(steps)
    if finding is None or ratio is None:
        return None
    if not has_batchnorm(steps):  # see detect_labels_carry_no_signal: both fit, and they conflict
        return _finding("loss_all_pairs", "shapes", finding.score, finding.evidence[:2] + [NO_BATCHNORM_TO_SPLIT],
                        0, "loss stays at ln 10")
    if ratio >= rules.FIRST_TO_LAST_GRAD_RATIO:
        return None
    spread = rules.median_output_spread(steps)
    evidence = finding.evidence[:2] + [
        f"the first layer's gradient is only {ratio:.2f}x the last layer's (median): every example's outputs get "
        f"the same gradient, which does not depend on which label goes with which input",
        f"the outputs spread over {spread:.2f} within a batch (median of max - min): nearly one output for every input"]
    return _finding("loss_all_pairs", "shapes", 0.8, evidence, 0, "loss stays at ln 10, outputs constant")


# ============================================================================
# Detectors for the rest of the catalogue. Each names what it measured and the preconditions
# that tie the symptom to one cause; when a precondition cannot be measured (an older run
# without the field) it does not fire. Thresholds: breaklab.rules, the doctor's section.
# ============================================================================

def _value(v: float | None, missing: float = math.nan) -> float:
    """A logged number, or `missing` when it was not logged. Never `v or missing`: a logged 0.0 (a
    float16 probability that rounded to zero, a loss scale that fell to zero) is a value."""
    return missing if v is None else v


def _layers(names: list[str]) -> str:
    return ", ".join(names)


def _alive_activations(steps: list[dict]) -> bool:
    return rules.first_layer_acts_all_dead(steps) is None


def detect_frozen_parameters(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Optimization step. Parameters that get no gradient at all and never change
    (rules.parameters_never_updated, with a gradient norm of exactly 0 at every step), while the
    first layer's activations are alive (rules.first_layer_acts_all_dead: all-zero activations
    also give zero gradients, and are another fault). No gradient and no update: frozen
    (requires_grad False)."""
    seen = rules.parameters_never_updated(steps)
    if seen is None or not _alive_activations(steps):
        return None
    no_grad = [n for n in seen["names"] if all(g == 0.0 for g in seen["grads"][n])]
    if not no_grad or len(no_grad) != len(seen["names"]):
        return None
    acts = max(r.get("act_first_dead_frac") or 0 for r in steps)
    evidence = [f"{_layers(no_grad)}: gradient exactly 0 (no gradient) at all {seen['steps']} steps, and the "
                f"weights never changed (update norm exactly 0): never updated",
                f"the other {seen['of'] - len(no_grad)} parameter tensors got gradients and moved",
                f"the first layer's activations are alive (at most {100 * acts:.0f}% of units inactive for a "
                f"whole batch): these are not dead units, the layer is cut off from training"]
    return _finding("frozen_layer", "optimization step", 0.9, evidence, 0,
                    "step 0: a layer gets no gradient and never moves")


def detect_parameters_left_out(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Optimization step. Parameters whose weights never change (rules.parameters_never_updated)
    although they have a gradient of their own, not tiny next to the run's (rules.OWN_GRADIENT_SHARE),
    in a run whose other steps are of normal size (rules.NORMAL_UPDATE_MEDIAN): the optimizer
    does not hold them. Their gradient, never cleared by optimizer.zero_grad, grows."""
    seen = rules.parameters_never_updated(steps)
    if seen is None:
        return None
    updates = [r["update_ratio"] for r in steps if r.get("update_ratio") is not None]
    norms = [r["grad_norm"] for r in steps if r.get("grad_norm") is not None]
    if not updates or not norms:
        return None
    scale = statistics.median(norms)
    # with tiny steps everywhere, float32 rounding can leave a small tensor unchanged: then its
    # gradient must dominate the run's, not merely be of its size
    share = rules.OWN_GRADIENT_SHARE if statistics.median(updates) >= rules.NORMAL_UPDATE_MEDIAN else 1.0
    own = {n: [g for g in seen["grads"][n] if g is not None] for n in seen["names"]}
    if not all(own[n] and max(own[n]) > 0 for n in seen["names"]):
        return None  # a parameter without any gradient: frozen, not left out
    left_out = seen["names"]
    large = [n for n in left_out if max(own[n]) >= share * scale]
    if not large:
        return None  # gradients too small to move the weights in float32: not evidence
    first = large[0]
    evidence = [f"{_layers(left_out)}: the weights never changed in {seen['steps']} steps (update norm exactly 0) "
                f"although they have a gradient: never updated by the optimizer",
                f"{first}'s gradient norm went {own[first][0]:.3g} -> {own[first][-1]:.3g} (the run's median "
                f"global norm is {scale:.3g}): nothing clears it, as zero_grad clears only the optimizer's parameters"]
    return _finding("layer_not_in_optimizer", "optimization step", 0.9, evidence, 0,
                    "step 0: a layer with a gradient never moves")


def detect_dead_first_layer(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Optimization step. Every hidden unit is 0 for every example at every step, from step 0
    (rules.first_layer_acts_all_dead: the activations, not the gradients): nothing can flow
    through the layer, so the layers before it get no gradient. From step 0, before any update,
    it is the initialisation."""
    seen = rules.first_layer_acts_all_dead(steps)
    if seen is None:
        return None
    evidence = [f"every hidden unit was 0 for every example at all {seen['steps']} steps, from step 0 "
                f"(act_first_dead_frac {seen['min']:.2f}): dead before the first update, i.e. at initialisation"]
    never = rules.parameters_never_updated(steps)
    if never is not None:
        evidence.append(f"{_layers(never['names'])}: no gradient passes the dead layer; they never changed")
    if (low := rules.rolling_min(rules.losses(steps))) is not None:
        evidence.append(f"the loss stayed at {low:.2f} or above (ln 10 = 2.30): the outputs cannot depend on the input")
    return _finding("zero_init", "optimization step", 0.9, evidence, 0, "step 0: every hidden unit is 0")


def detect_kept_graphs(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Memory. The loop keeps earlier steps' autograd graphs alive (loss_graphs_alive), one more
    each step: a running total of loss tensors, not numbers. Threshold: rules.GRAPHS_ALIVE_MIN."""
    alive = [(r["step"], r.get("loss_graphs_alive") or 0) for r in steps]
    peak_step, peak = max(alive, key=lambda a: a[1], default=(None, 0))
    if peak < rules.GRAPHS_ALIVE_MIN:
        return None
    onset = next(s for s, n in alive if n >= 1)
    evidence = [f"{peak} earlier steps' autograd graphs were alive at step {peak_step} (a loop that keeps "
                f"numbers holds 0): something accumulates loss tensors, not their values",
                "memory grows with every step although the numbers logged are unchanged"]
    return _finding("loss_kept", "memory", 0.95, evidence, onset, f"step {onset}: an earlier graph is kept alive")


def detect_evaluation_with_autograd(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Memory. Autograd saved tensors for a backward pass during the test pass
    (test_autograd_bytes > 0): the evaluation ran without torch.no_grad(). Threshold: any byte.
    Measured: 0 in every run that evaluates under no_grad, 6.3 MB per test pass without it."""
    saved = [(e["epoch"], e.get("test_autograd_bytes") or 0) for e in epochs]
    hits = [(ep, b) for ep, b in saved if b > 0]
    if not hits:
        return None
    evidence = [f"epoch {hits[0][0]}: autograd saved {hits[0][1] / 1e6:.1f} MB for a backward pass during the "
                f"test pass (0 under torch.no_grad()): evaluation builds a graph it never uses"]
    return _finding("eval_with_grad", "memory", 0.95, evidence, steps[-1]["step"], "evaluation records a graph")


def detect_nonfinite_inputs(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Data. The loss turns non-finite at a step whose first-layer activations are already
    non-finite, while the step before it was finite everywhere (loss, gradients, activations):
    the weights entering that step were finite, so the non-finite value came in with the batch.
    Threshold: the first non-finite loss (rules.first_nonfinite_loss)."""
    seen = rules.first_nonfinite_loss(steps)
    if seen is None:
        return None
    index = next(i for i, r in enumerate(steps) if r["step"] == seen["step"])
    onset = steps[index]
    if onset.get("act_first_mean") is not None or "act_first_mean" not in onset:
        return None  # the first layer's output was finite: the non-finite value arose later
    if index > 0:
        before = steps[index - 1]
        if (not before.get("loss_finite", True) or not before.get("grads_finite", True)
                or before.get("act_first_mean") is None or before.get("step_skipped")):
            return None
    evidence = [f"step {onset['step']}: the first layer's activations are already NaN/inf, and the loss with them",
                ("step 0: the weights were freshly initialised (finite)" if index == 0 else
                 f"step {steps[index - 1]['step']} was finite everywhere (loss, gradients, activations): the "
                 f"weights entering step {onset['step']} were finite"),
                "so the non-finite value came in with that batch's inputs"]
    return _finding("nan_inputs", "data", 0.85, evidence, onset["step"],
                    f"step {onset['step']}: non-finite activations from the inputs")


def detect_float16_overflow(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Numerics. The loss turns non-finite under float16 autocast (measured: forward_float_max at
    every step, rules.float16_in_use), with the first layer's activations still finite at that
    step and the outputs before it modest (largest below 1e4): a float16 intermediate of the
    loss overflowed (float16 ends at 65504; exp(11.1) passes it). Threshold:
    rules.first_nonfinite_loss."""
    seen = rules.first_nonfinite_loss(steps)
    if seen is None or rules.float16_in_use(steps) is not True:
        return None
    index = next(i for i, r in enumerate(steps) if r["step"] == seen["step"])
    if steps[index].get("act_first_mean") is None:
        return None  # non-finite from the first layer on: not the loss's own arithmetic
    before = [r["logit_max"] for r in steps[:index] if r.get("logit_max") is not None]
    if not before or max(before) >= 1e4:
        return None
    skipped = sum(bool(r.get("step_skipped")) for r in steps)
    evidence = [f"step {seen['step']}: loss non-finite while the forward pass ran in float16 (forward_float_max 65504 "
                f"float16 at every step) and the first layer's activations were finite",
                f"the largest output before it was {max(before):.3g}: finite in float32; exp of an output "
                f"above 11.1 overflows float16 (max 65504)",
                f"the GradScaler skipped {skipped} of {len(steps)} steps"]
    return _finding("fp16_overflow", "numerics", 0.85, evidence, seen["step"],
                    f"step {seen['step']}: non-finite loss in float16")


def _float16_steps_skipped_with_finite_loss(steps: list[dict]) -> list[dict] | None:
    """The steps a GradScaler skipped, where float16 autocast and the scaler were in use and the
    loss was finite at every step (both measured per step); None where that does not hold."""
    if not steps or rules.float16_in_use(steps) is not True or rules.scaler_state(steps) is not True:
        return None
    if any(not r.get("loss_finite", True) for r in steps):
        return None
    return [r for r in steps if r.get("step_skipped")]


def detect_float16_nonfinite_gradients(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Numerics. Under float16 autocast with a GradScaler (both measured per step:
    rules.float16_in_use, rules.scaler_state), the loss stays finite at every step but the
    scaler skips many steps for non-finite gradients (rules.FLOAT16_SKIPPED_STEP_SHARE): the backward
    pass of a float16 loss produces inf/NaN (log of a float16 probability that rounded to
    exactly 0.0: a value, whose log is -inf)."""
    skipped = _float16_steps_skipped_with_finite_loss(steps)
    if skipped is None or len(skipped) < rules.FLOAT16_SKIPPED_STEP_SHARE * len(steps):
        return None
    scales = [r["amp_scale"] for r in steps if r.get("amp_scale") is not None]
    evidence = [f"the GradScaler skipped {len(skipped)} of {len(steps)} steps (non-finite gradients) from step "
                f"{skipped[0]['step']}, while the loss was finite at every step",
                "the forward pass ran in float16 (forward_float_max 65504 at every step) with a GradScaler enabled",
                f"loss scale {scales[0]:g} -> {scales[-1]:.3g}: the scaler keeps lowering it, the inf does not go away"]
    return _finding("log_of_softmax_amp", "numerics", 0.8, evidence, skipped[0]["step"],
                    f"step {skipped[0]['step']}: steps skipped, loss finite")


def detect_clipping_scaled_gradients(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Numerics. With a GradScaler enabled and a loss scale above 1 (measured per step), the
    gradient the optimizer applied (grad_norm, after clipping) is a tiny share of the true norm
    measured before clipping (grad_norm_pre_clip, unscaled): clipping ran on the scaled
    gradients, which are then divided by the scale. Threshold: rules.CLIP_SCALED_RATIO on
    9 steps in 10."""
    if rules.scaler_state(steps) is not True:
        return None
    pairs = [(r["grad_norm"], r["grad_norm_pre_clip"], _value(r.get("amp_scale"), 1.0)) for r in steps
             if r.get("grad_norm") is not None and r.get("grad_norm_pre_clip")]
    if len(pairs) < 10:
        return None
    cut = [(post, pre, scale) for post, pre, scale in pairs if post < rules.CLIP_SCALED_RATIO * pre and scale > 1]
    if len(cut) < 0.9 * len(pairs):
        return None
    post, pre, scale = cut[0]
    evidence = [f"at {len(cut)} of {len(pairs)} steps the applied gradient norm is below {rules.CLIP_SCALED_RATIO:g}x "
                f"the norm before clipping (step 0: {post:.3g} vs {pre:.3g})",
                f"{post:.3g} x the loss scale {scale:g} = {post * scale:.3g}: the clip threshold was applied to the "
                f"scaled gradients, then the scale was divided out"]
    return _finding("clip_before_unscale", "numerics", 0.9, evidence, steps[0]["step"],
                    "step 0: clipped gradient tiny")


def detect_impossible_accuracy(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Shapes. The accuracy the loop measured is above 1 (rules.IMPOSSIBLE_ACCURACY): the
    comparison of predictions and labels broadcasts to a matrix."""
    bad = [e for e in epochs if e.get("train_acc") is not None and e["train_acc"] > rules.IMPOSSIBLE_ACCURACY]
    if not bad:
        return None
    evidence = [f"epoch {bad[0]['epoch']}: training accuracy {bad[0]['train_acc']:.3g}, above 1: the count of "
                f"correct predictions exceeds the examples (predictions of shape (N, 1) against labels (N,))"]
    if (test := bad[0].get("test_acc")) is not None:
        evidence.append(f"test accuracy {test:.3f} while the test loss is {_value(bad[0].get('test_loss')):.3g}")
    return _finding("acc_broadcast", "shapes", 0.9, evidence, steps[-1]["step"], "accuracy above 1")


def _tail_loss(steps: list[dict]) -> float | None:
    tail = [r.get("loss") for r in steps[-rules.TRAIN_TAIL_STEPS:]]
    return None if None in tail or not tail else sum(tail) / len(tail)


def _cross_entropy_scale(steps: list[dict]) -> bool:
    """Step 0's loss is about ln 10: a mean cross-entropy over 10 classes at initialisation."""
    loss0 = steps[0].get("loss")
    return loss0 is not None and abs(loss0 - LN10) < rules.SUMMED_LOSS_TOLERANCE * LN10


def detect_test_labels_disagree(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Target. Training fits its labels (train accuracy >= rules.TRAIN_FITS) while the test set
    is scored below chance (rules.BELOW_CHANCE; chance is 0.10): the model systematically
    predicts another class than the test labels say: training and test labels disagree."""
    last = epochs[-1] if epochs else {}
    train, test = last.get("train_acc"), last.get("test_acc")
    if train is None or test is None or not (rules.TRAIN_FITS <= train <= 1) or test >= rules.BELOW_CHANCE:
        return None
    evidence = [f"training accuracy {train:.3f} against the labels the loop used, test accuracy {test:.3f}: below "
                f"chance (0.10), i.e. systematically another class",
                f"test loss {_value(last.get('test_loss')):.3g}: confident and wrong"]
    return _finding("label_shift", "target", 0.85, evidence, steps[-1]["step"], "test accuracy below chance")


def detect_test_inputs_differ(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Data. With a cross-entropy loss (step 0 about ln 10), the test loss is far above the loss
    of the last training steps (rules.TEST_LOSS_GAP and rules.TEST_LOSS_EXCESS) and the test
    accuracy not above the epoch's training accuracy (rules.TEST_ACC_MARGIN; a sound run, whose
    training accuracy averages the epoch's early steps, scores higher on the test set) but well
    above chance (rules.TEST_ABOVE_CHANCE), while training fits: the test inputs are
    not prepared as the training inputs were. Overfitting gives the same picture, so the score
    stays below 0.7."""
    if not epochs or not _cross_entropy_scale(steps):
        return None
    last = epochs[-1]
    tail, test_loss, test, train = _tail_loss(steps), last.get("test_loss"), last.get("test_acc"), last.get("train_acc")
    if None in (tail, test_loss, test, train) or tail <= 0 or train < rules.TRAIN_FITS or train > 1:
        return None
    if test < rules.TEST_ABOVE_CHANCE or test_loss < rules.TEST_LOSS_GAP * tail or test > train + rules.TEST_ACC_MARGIN:
        return None
    if test_loss - tail < rules.TEST_LOSS_EXCESS:
        return None
    evidence = [f"test loss {test_loss:.3g} is {test_loss / tail:.1f}x the loss of the last {rules.TRAIN_TAIL_STEPS} "
                f"training steps ({tail:.3g}); test accuracy {test:.3f}",
                "both are the mean cross-entropy of the same model: the test inputs are not what training saw "
                "(preprocessing or normalisation differs)"]
    return _finding("raw_test_inputs", "data", 0.65, evidence, steps[-1]["step"], "test loss far above training loss")


def detect_negative_loss(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Objective. The loss went below 0 (rules.NEGATIVE_LOSS_STEPS): a cross-entropy of
    probabilities or a squared error never does; negative log-likelihood on raw logits does,
    without bound."""
    negative = [r for r in steps if r.get("loss") is not None and r["loss"] < 0]
    if len(negative) < rules.NEGATIVE_LOSS_STEPS:
        return None
    low = min(r["loss"] for r in negative)
    evidence = [f"step {negative[0]['step']}: loss {negative[0]['loss']:.3g}, below 0; it reached {low:.3g}: "
                f"not a cross-entropy (which is >= 0)",
                f"step 0: loss {_value(steps[0].get('loss')):.3g}, not ln 10 = 2.30"]
    return _finding("nll_on_logits", "objective", 0.93, evidence, negative[0]["step"],
                    f"step {negative[0]['step']}: loss below 0")


def detect_squared_error_scale(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Objective. Step 0's loss is 1/10 plus a little (rules.MSE_ONEHOT_LOSS0): the mean squared
    error between near-zero outputs and one-hot targets over 10 classes, not ln 10; and it
    never goes below 0."""
    loss0 = steps[0].get("loss")
    low, high = rules.MSE_ONEHOT_LOSS0
    if loss0 is None or not low <= loss0 <= high or any((r.get("loss") or 0) < 0 for r in steps):
        return None
    evidence = [f"step 0: loss {loss0:.3f}, not ln 10 = 2.30: about 1/10, what a squared error against one-hot "
                f"targets gives for near-zero outputs"]
    if epochs and epochs[-1].get("test_loss") is not None:
        evidence.append(f"the test cross-entropy of the same outputs is {epochs[-1]['test_loss']:.3g}: the outputs "
                        f"are trained as regression targets, not logits")
    return _finding("mse_onehot", "objective", 0.8, evidence, 0, f"step 0: loss {loss0:.3f}")


def detect_softmax_over_batch(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Shapes. Step 0's loss is ln(batch size), not ln 10 (rules.BATCH_SOFTMAX_TOLERANCE): the
    softmax was taken over the batch dimension. Only when the batch size is far from 10
    (rules.BATCH_SOFTMAX_MIN_RATIO), where the two differ."""
    loss0, batch = steps[0].get("loss"), steps[0].get("batch_size") or 0
    if loss0 is None or batch < 2 or max(batch / 10, 10 / batch) < rules.BATCH_SOFTMAX_MIN_RATIO:
        return None
    if abs(loss0 - math.log(batch)) > rules.BATCH_SOFTMAX_TOLERANCE * math.log(batch):
        return None
    evidence = [f"step 0: loss {loss0:.3f} = ln {batch} (the batch size), not ln 10 = 2.30: the softmax "
                f"normalises over the {batch} examples instead of the 10 classes"]
    return _finding("softmax_over_batch", "shapes", 0.85, evidence, 0, f"step 0: loss ln {batch}")


def detect_tiny_steps(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Optimization step. The median update moves the weights by less than
    rules.TINY_UPDATE_MEDIAN of their norm and the loss does not learn, while the gradients are
    not cut by clipping (the norm before clipping equals the applied one) and every parameter
    moves (rules.parameters_never_updated): the learning rate is too small."""
    updates = [r["update_ratio"] for r in steps if r.get("update_ratio") is not None and not r.get("step_skipped")]
    if len(updates) < 10 or statistics.median(updates) >= rules.TINY_UPDATE_MEDIAN or learned(steps):
        return None
    if rules.parameters_never_updated(steps) is not None:
        return None  # some parameters never move: not a learning rate too small for all of them
    pre, post = rules.pre_clip_norms(steps), [r.get("grad_norm") for r in steps]
    if any(a is not None and b is not None and b < rules.CLIP_SCALED_RATIO * a for a, b in zip(pre, post)):
        return None  # clipping cut the gradients to a sliver: another fault
    peak_lr = max((r.get("lr") or 0 for r in steps), default=0)
    losses = rules.losses(steps)
    evidence = [f"the median step moved the weights by {statistics.median(updates):.2g} of their norm (sound runs: "
                f"1e-3 to 1e-2)",
                f"the loss went {losses[0]:.3g} -> {losses[-1]:.3g} in {len(steps)} steps",
                f"the logged learning rate peaked at {peak_lr:.3g}; the gradients were not clipped"]
    return _finding("tiny_lr", "optimization step", 0.8, evidence, 0, "steps too small to learn",
                    fix_detail=f" (it ran at up to {peak_lr:.3g})")


def detect_lost_optimizer_state(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Checkpoint. At an epoch boundary the first step moves the weights by a small share of
    the step before (rules.RESUME_UPDATE_DROP) at the same logged learning rate: the optimizer
    restarted without its momentum (a resume that did not load the optimizer's state)."""
    for before, after in zip(steps, steps[1:]):
        if after.get("epoch") == before.get("epoch") or before.get("step_skipped") or after.get("step_skipped"):
            continue
        u0, u1 = before.get("update_ratio"), after.get("update_ratio")
        if not u0 or u1 is None or u1 >= rules.RESUME_UPDATE_DROP * u0:
            continue
        evidence = [f"step {after['step']} (first of epoch {after['epoch']}): the update is {u1 / u0:.2f}x the step "
                    f"before's ({u1:.2g} vs {u0:.2g}); within an epoch consecutive steps differ by far less",
                    f"the logged learning rate is {_value(after.get('lr')):.3g}: the optimizer lost its momentum "
                    f"(and its own learning rate) at the restart"]
        return _finding("resume_without_optimizer_state", "checkpoint", 0.75, evidence, after["step"],
                        f"step {after['step']}: the step shrinks at the restart")
    return None


def detect_one_class_batches(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Data. On the cross-entropy scale, single batches reach a loss far below ln 10
    (rules.ONE_CLASS_BATCH_LOSS: the model fits them) while the epoch's training accuracy over
    all batches stays near chance (rules.ONE_CLASS_MAX_TRAIN_ACC): each batch is easy on its own
    and the model forgets it at the next: each holds one class (sorted data, not shuffled)."""
    losses = rules.losses(steps)
    accs = [e.get("train_acc") for e in epochs]
    if not losses or len(losses) < len(steps) or not _cross_entropy_scale(steps) or not accs or None in accs:
        return None
    if min(losses) >= rules.ONE_CLASS_BATCH_LOSS or max(accs) >= rules.ONE_CLASS_MAX_TRAIN_ACC:
        return None
    easiest = min(steps, key=lambda r: r["loss"])
    fitted = sum(loss < rules.ONE_CLASS_BATCH_LOSS for loss in losses)
    evidence = [f"step {easiest['step']}: batch loss {easiest['loss']:.2g}, {fitted} of {len(losses)} batches below "
                f"{rules.ONE_CLASS_BATCH_LOSS:.2f}, while the training accuracy over the epoch was "
                f"{max(accs):.3f} (chance 0.10)",
                "each batch is easy on its own and forgotten at the next: each holds one class, in the data's "
                "stored order (no shuffling)"]
    if epochs[-1].get("test_acc") is not None:
        evidence.append(f"test accuracy {epochs[-1]['test_acc']:.3f}")
    return _finding("no_shuffle", "data", 0.8, evidence, easiest["step"], "single batches nearly perfect")


DETECTORS: list[Callable[[list[dict], list[dict], dict | None], Finding | None]] = [
    detect_summed_loss, detect_probability_outputs, detect_frozen_batchnorm,
    detect_accumulating_gradients, detect_oversized_steps, detect_fp16_underflow,
    detect_labels_carry_no_signal, detect_loss_ignores_pairing,
    detect_frozen_parameters, detect_parameters_left_out, detect_dead_first_layer, detect_kept_graphs,
    detect_evaluation_with_autograd, detect_nonfinite_inputs, detect_float16_overflow,
    detect_float16_nonfinite_gradients, detect_clipping_scaled_gradients, detect_impossible_accuracy,
    detect_test_labels_disagree, detect_test_inputs_differ, detect_negative_loss, detect_squared_error_scale,
    detect_softmax_over_batch, detect_tiny_steps, detect_lost_optimizer_state,
    detect_one_class_batches,
]

# Rules that are not a cause by themselves: reported as context, and the reason for an "unknown"
# verdict when no detector explains them.
OBSERVATIONS = ["first_nonfinite_loss", "loss_rises_early", "loss_stuck_at_chance"]

# Two findings of at least this score that do not explain each other are conflicting evidence:
# the verdict is "unknown", with both as hypotheses.
CONFLICT_SCORE = 0.5
# Findings that one fault produces together: (verdict, the other finding it explains), measured
# on the calibration runs (docs/DOCTOR.md).
EXPLAINS: set[tuple[str, str]] = {
    # a loss without a lower bound drives the logits and with them the gradients up
    ("nll_on_logits", "missing_zero_grad"), ("nll_on_logits", "huge_lr"),
}


def observations_of(steps: list[dict], epochs: list[dict]) -> list[str]:
    """What the rules see that is no cause by itself. Dead units come from the activations
    (rules.dead_activations), never from gradients alone; a loss "at chance" is judged only on
    the cross-entropy scale (step 0 near ln 10 per example)."""
    seen = []
    for name in OBSERVATIONS:
        if name == "loss_stuck_at_chance" and not rules.per_example_scale(steps):
            continue
        if msg := symptoms.sentence(name, steps):
            seen.append(msg)
    if (dead := rules.dead_activations(steps)) is not None:
        seen.append(f"{100 * dead['frac']:.0f}% of hidden units were 0 for every example of the last batch "
                    f"(dead ReLUs, from the activations)")
    if msg := symptoms.sentence("chance_accuracy", epochs):
        seen.append(msg)
    return seen


# ============================================================================
# The diagnosis
# ============================================================================

@dataclass
class Diagnosis:
    verdict: str                      # a break's name, "healthy" or "unknown"
    confidence: float
    hypotheses: list[Finding]
    next_check: str
    suggested_fix: str
    observations: list[str]
    onset_step: int | None
    onset: str | None
    steps: int
    calibrated_as: str | None = None  # the key of the precision table its confidence came from

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "confidence": round(self.confidence, 2),
            "hypotheses": [{"name": h.name, "category": h.category, "score": round(h.score, 2),
                            "evidence": h.evidence, "onset_step": h.onset_step} for h in self.hypotheses],
            "next_check": self.next_check,
            "suggested_fix": self.suggested_fix,
            "observations": self.observations,
            "onset_step": self.onset_step,
            "steps": self.steps,
        }


# Each detector's precision on the calibration runs (python -m breaklab.doctor_calibration
# writes it): a finding's confidence is its score capped by that precision, so a detector that
# named the wrong fault on calibration runs cannot claim more than it earned.
CALIBRATION_FILE = Path(__file__).with_name("doctor_calibration.json")


def _calibration() -> dict[str, float]:
    try:
        table = json.loads(CALIBRATION_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in table.get("precision", {}).items() if _is_number(v)}


_PRECISION: dict[str, float] | None = None


def _precision() -> dict[str, float]:
    """The precision table, read once per process."""
    global _PRECISION
    if _PRECISION is None:
        _PRECISION = _calibration()
    return _PRECISION


def calibrated(finding: Finding) -> float:
    return min(finding.score, _precision().get(finding.name, finding.score))


# A healthy verdict is calibrated as one of three kinds (the keys of the precision table): the
# loss fell below a quarter of its start; it fell below half only; or a near-miss sign below (a
# measurement under a detector's threshold but above anything the calibration's sound runs showed).
# Without a calibration table: these defaults.
HEALTHY_KINDS = {"healthy": 0.9, "healthy:slow_fall": 0.7, "healthy:near_miss": 0.5}


def near_miss_signs(steps: list[dict]) -> list[str]:
    """Measurements under a detector's threshold that the calibration's clean runs and controls
    never reached: the run may hold the fault, too weakly for its detector to name it.

    Under float16 autocast with a GradScaler and a loss finite throughout, the scaler skipped
    more steps than rules.FLOAT16_SKIPPED_STEP_NEAR_MISS but fewer than the
    rules.FLOAT16_SKIPPED_STEP_SHARE that names log_of_softmax_amp."""
    skipped_steps = _float16_steps_skipped_with_finite_loss(steps)
    if skipped_steps is None:
        return []
    skipped = len(skipped_steps)
    if not rules.FLOAT16_SKIPPED_STEP_NEAR_MISS * len(steps) < skipped < rules.FLOAT16_SKIPPED_STEP_SHARE * len(steps):
        return []
    return [f"near miss: the GradScaler skipped {skipped} of {len(steps)} steps ({skipped / len(steps):.0%}) for "
            f"non-finite gradients while the loss stayed finite: more than sound float16 runs skip (over "
            f"{rules.FLOAT16_SKIPPED_STEP_NEAR_MISS:.0%} never seen), under the {rules.FLOAT16_SKIPPED_STEP_SHARE:.0%} "
            f"that names log_of_softmax_amp"]


def healthy_kind(steps: list[dict], signs: list[str]) -> str:
    """Which kind of healthy verdict (a key of HEALTHY_KINDS) the run gets."""
    if signs:
        return "healthy:near_miss"
    return "healthy" if strongly_learned(steps) else "healthy:slow_fall"


def healthy_confidence(kind: str) -> float:
    """The kind's precision on the calibration runs (Laplace-smoothed, as a named verdict's cap),
    or its default when the calibration table has none."""
    return max(0.05, min(0.99, _precision().get(kind, HEALTHY_KINDS[kind])))


def learned(steps: list[dict]) -> bool:
    """Whether the loss fell: the mean of the last 10 losses is below half the first loss, with
    every loss finite. Measured: clean runs end at 0.02-0.18 x their first loss."""
    losses = [r.get("loss") for r in steps]
    if None in losses or len(losses) < 10:
        return False
    return sum(losses[-10:]) / 10 < 0.5 * losses[0]


def strongly_learned(steps: list[dict]) -> bool:
    """The last 10 losses average under a quarter of the first: an early rise that the run then
    left far behind is no fault by itself (measured: a doubled step at batch 32 rises 1.6x at
    step 16 and ends at test accuracy 0.92)."""
    return learned(steps) and sum(r["loss"] for r in steps[-10:]) / 10 < 0.25 * steps[0]["loss"]


def diagnose(run: Run) -> Diagnosis:
    """Run every detector on the run's measurements, rank what fired, and decide."""
    steps, epochs, model = run.steps, run.epochs, run.model_state
    findings = sorted((f for d in DETECTORS if (f := d(steps, epochs, model))), key=lambda f: -f.score)
    observations = observations_of(steps, epochs)
    if findings:
        top = findings[0]
        rivals = [f for f in findings[1:] if f.score >= CONFLICT_SCORE and (top.name, f.name) not in EXPLAINS]
        if rivals:  # conflicting evidence: no catalogue name
            conflict = [f"conflicting evidence: {top.name} (score {top.score:.2f}) and "
                        + ", ".join(f"{f.name} (score {f.score:.2f})" for f in rivals)
                        + " both fit; no single fault explains them"]
            return Diagnosis("unknown", 0.0, findings, remedy("unknown").next_check, "none known yet",
                             conflict + observations, top.onset_step, top.onset, len(steps))
        second = max((f.score for f in findings[1:] if (top.name, f.name) not in EXPLAINS), default=0.0)
        confidence = max(0.05, min(0.99, calibrated(top) - 0.5 * second))
        return Diagnosis(top.name, confidence, findings, top.next_check, top.suggested_fix,
                         observations, top.onset_step, top.onset, len(steps), calibrated_as=top.name)
    rise = symptoms.sentence("loss_rises_early", steps)
    if learned(steps) and (not observations or (observations == [rise] and strongly_learned(steps))):
        signs = near_miss_signs(steps)
        kind = healthy_kind(steps, signs)
        next_check = remedy("unknown" if signs else "healthy").next_check  # a near miss: look closer
        return Diagnosis("healthy", healthy_confidence(kind), [], next_check, "none",
                         signs + observations, None, None, len(steps), calibrated_as=kind)
    return Diagnosis("unknown", 0.0, [], remedy("unknown").next_check, "none known yet",
                     observations or ["the loss did not fall below half its start"], None, None, len(steps))


def format_diagnosis(run: Run, diagnosis: Diagnosis) -> str:
    """The report a person reads: verdict, evidence, the other hypotheses, what to do next."""
    width = 13
    lines = [f"{'run:':<{width}}{run.source} ({diagnosis.steps} steps, {len(run.epochs)} epoch(s))"]
    for w in run.warnings:
        lines.append(f"{'warning:':<{width}}{w}")
    if diagnosis.hypotheses and diagnosis.verdict == "unknown":
        lines.append(f"{'verdict:':<{width}}unknown  (confidence 0.00)")
        lines += [f"{'hypothesis:':<{width}}{h.name} (score {h.score:.2f}): {h.evidence[0]}" for h in diagnosis.hypotheses]
    elif diagnosis.hypotheses:
        top = diagnosis.hypotheses[0]
        lines.append(f"{'verdict:':<{width}}{diagnosis.verdict}  (confidence {diagnosis.confidence:.2f}; "
                     f"category: {top.category})")
        lines.append(f"{'evidence:':<{width}}- {top.evidence[0]}")
        lines += [f"{'':<{width}}- {e}" for e in top.evidence[1:]]
        if len(diagnosis.hypotheses) > 1:
            lines.append(f"{'also fits:':<{width}}" + "; ".join(
                f"{h.name} (score {h.score:.2f}: {h.evidence[0]})" for h in diagnosis.hypotheses[1:]))
        else:
            lines.append(f"{'ruled out:':<{width}}every other detector saw nothing "
                         f"({len(DETECTORS) - 1} checked)")
    else:
        lines.append(f"{'verdict:':<{width}}{diagnosis.verdict}  (confidence {diagnosis.confidence:.2f})")
        if diagnosis.verdict == "healthy":
            lines.append(f"{'evidence:':<{width}}- loss {first_loss(run):.3g} at step 0 -> "
                         f"{sum(r['loss'] for r in run.steps[-10:]) / 10:.3g} (last 10 steps); "
                         f"none of the {len(DETECTORS)} detectors fired")
    if diagnosis.observations and (not diagnosis.hypotheses or diagnosis.verdict == "unknown"):
        # with a verdict, its evidence already says it
        lines.append(f"{'also seen:':<{width}}- {diagnosis.observations[0]}")
        lines += [f"{'':<{width}}- {o}" for o in diagnosis.observations[1:]]
    lines.append(f"{'next check:':<{width}}{diagnosis.next_check}")
    lines.append(f"{'fix to try:':<{width}}{diagnosis.suggested_fix}")
    return "\n".join(lines)


def first_loss(run: Run) -> float:
    return _value(run.steps[0].get("loss"))


def to_json_text(diagnosis: Diagnosis) -> str:
    return json.dumps(diagnosis.to_json(), indent=2)


