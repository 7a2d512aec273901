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

from breaklab import symptoms
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


def load_run(path: Path | str) -> Run:
    files = read_run_files(path)
    if "metrics.jsonl" not in files:
        raise RunReadError(f"{path} has no metrics.jsonl: not a breaklab run (train one with "
                           f"./demo_run.sh SEED BREAK)")
    warnings: list[str] = []
    records = _parse_metrics(files["metrics.jsonl"].decode("utf-8", errors="replace"), str(path), warnings)
    validate_records(records, f"{path}/metrics.jsonl")
    st, ep = symptoms.steps(records), symptoms.epochs(records)
    if not st:
        raise RunReadError(f"{path}: metrics.jsonl has no training steps; the run stopped before step 0")
    model_state = load_model_state(files["checkpoint.pt"]) if "checkpoint.pt" in files else None
    meta = None
    if "meta.json" in files:
        try:
            meta = json.loads(files["meta.json"])
        except ValueError:
            warnings.append("meta.json is not valid JSON; ignored")
    return Run(str(path), st, ep, model_state, meta if isinstance(meta, dict) else None, warnings)


# The value types of schema v1 (docs/METRICS.md). A record that breaks them is refused with the
# field named, rather than trusted: the detectors compare and index these values.
_NUMBER_FIELDS = ("lr", "loss", "grad_norm", "zero_grad_frac", "dead_unit_frac", "act_first_mean",
                  "act_first_var", "act_first_dead_frac", "act_last_mean", "act_last_var", "logit_min",
                  "logit_max", "logit_rowsum_mean", "update_ratio", "bn_running_mean_abs",
                  "bn_running_var_mean", "amp_scale", "train_loss", "train_acc", "test_loss", "test_acc")
_INT_FIELDS = ("step", "epoch", "batch_size")
_LAYER_FIELDS = ("grad_norm_by_layer", "grad_mean", "zero_grad_frac_by_layer")
_FLAG_FIELDS = ("step_skipped", "loss_finite", "grads_finite")
KNOWN_SCHEMA_VERSIONS = (1,)


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

        def bad(field: str, want: str) -> RunReadError:
            return RunReadError(f"{where}: record {i} ({kind}) has {field!r} = {rec.get(field)!r}, "
                                f"expected {want}; the file is damaged or not a breaklab metrics file")

        for field in ("step", "epoch"):
            if not isinstance(rec.get(field), int) or isinstance(rec.get(field), bool):
                raise bad(field, "an integer")
        for field in _INT_FIELDS:
            if field in rec and (not isinstance(rec[field], int) or isinstance(rec[field], bool)):
                raise bad(field, "an integer")
        for field in _NUMBER_FIELDS:
            if rec.get(field) is not None and not _is_number(rec[field]):
                raise bad(field, "a number or null")
        for field in _LAYER_FIELDS:
            if field in rec and not (isinstance(rec[field], dict) and all(
                    v is None or _is_number(v) for v in rec[field].values())):
                raise bad(field, "an object of per-layer numbers")
        for field in _FLAG_FIELDS:
            if field in rec and not isinstance(rec[field], bool):
                raise bad(field, "true or false")


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


def _losses(st: list[dict]) -> list[float]:
    return [r["loss"] for r in st if r.get("loss") is not None]


def _rolling_min(values: list[float], width: int = 10) -> float | None:
    if len(values) < width:
        return None
    return min(sum(values[i:i + width]) / width for i in range(len(values) - width + 1))


def per_example_scale(st: list[dict]) -> bool:
    """Whether the first loss is on the scale of one example's cross-entropy (about ln 10 at
    initialisation), rather than a batch's sum of them."""
    loss0 = st[0].get("loss")
    return loss0 is not None and loss0 < 2 * LN10


# Step 0's update, ||delta theta|| / ||theta||. Measured (docs/DOCTOR.md): clean runs and every
# break that leaves the learning rate alone, 1.3e-5-0.0047 (lr 0.02-0.5, batch 16-256, momentum 0
# or 0.9, 10 warmup steps); lr x100, 0.014-0.37. 0.008 is their geometric middle, 1.7x from each.
OVERSIZED_FIRST_UPDATE = 0.008


def first_update_ratio(st: list[dict]) -> float | None:
    return st[0].get("update_ratio")


# ============================================================================
# Detectors: one symptom each
# ============================================================================

def detect_summed_loss(st: list[dict], ep: list[dict], model: dict | None) -> Finding | None:
    """Objective. A mean cross-entropy over 10 classes starts at ln 10 = 2.30 (the output layer
    starts near zero); a sum over the batch starts at batch_size x 2.30.

    Threshold: loss at step 0 / batch size within 25% of ln 10. Measured: summed loss 2.3-2.4
    per example; every other run 0.009-0.15 (2.3 / batch size, batch 16-256). Batches under 8 are skipped:
    there the two scales are too close to tell apart."""
    loss0, bs = st[0].get("loss"), st[0].get("batch_size") or 0
    if loss0 is None or bs < 8 or abs(loss0 / bs - LN10) > 0.25 * LN10:
        return None
    evidence = [f"step 0: loss {loss0:.1f} = {bs} x {loss0 / bs:.2f}, i.e. batch size x ln 10 (2.30): "
                f"the loss is summed over the batch, not averaged"]
    gn0 = st[0].get("grad_norm")
    if gn0:
        evidence.append(f"step 0: gradient norm {gn0:.3g}, about {bs} times the 1.4-3.3 a mean loss gives")
    return Finding("loss_sum", "objective", 0.95, evidence, 0, f"step 0: loss {loss0:.3g} = {bs} x ln 10",
                   "compute the loss by hand on one batch (F.cross_entropy(logits, y), reduction 'mean') "
                   "and compare it with the code's loss: they differ by the batch size",
                   "average the loss over the batch: F.cross_entropy(outputs, y) (reduction='mean', "
                   "the default), not reduction='sum'")


def detect_probability_outputs(st: list[dict], ep: list[dict], model: dict | None) -> Finding | None:
    """Objective. F.cross_entropy expects logits (any real numbers). If every output row the loss
    sees lies in [0, 1] and sums to 1, softmax was applied first, and the loss has a floor
    (about 1.46: the largest logit gap it can see is 1).

    Threshold: at least 90% of the steps with finite outputs have rows summing to 1 within 1e-3
    and all values in [0, 1]. Measured: double softmax, 100% of steps in every run; every other
    run, 0% (logit rows sum to anything from -5 to 8)."""
    checked = [r for r in st if r.get("logit_rowsum_mean") is not None]
    if len(checked) < 5:
        return None
    probs = [r for r in checked if abs(r["logit_rowsum_mean"] - 1) < 1e-3
             and (r.get("logit_min") or -1) >= 0 and (r.get("logit_max") or 2) <= 1]
    if len(probs) < 0.9 * len(checked):
        return None
    evidence = [f"the outputs fed to the loss lie in [0, 1] and sum to 1 per example on {len(probs)} of "
                f"{len(checked)} steps: they are probabilities, not logits"]
    low = _rolling_min(_losses(st))
    acc = max((e.get("train_acc") or 0 for e in ep), default=None)
    if low is not None:
        evidence.append(f"the training loss never fell below {low:.2f} (lowest 10-step mean)"
                        + (f" although train accuracy reached {acc:.2f}" if acc else "")
                        + ": cross-entropy on probabilities cannot go below about 1.46")
    return Finding("double_softmax", "objective", 0.95, evidence, 0,
                   "step 0: outputs sum to 1 (probabilities)",
                   "print logits.sum(dim=1) right before the loss: 1.0 for every row means a softmax "
                   "was applied before F.cross_entropy",
                   "feed raw logits to F.cross_entropy (it applies log-softmax itself): remove the softmax")


def detect_frozen_batchnorm(st: list[dict], ep: list[dict], model: dict | None) -> Finding | None:
    """Train/eval mode. In train mode BatchNorm updates its running mean and variance at every
    step; in eval mode it never does. Running statistics that are still exactly 0 and 1 (their
    initial values) after several steps mean the training steps ran in eval mode.

    Threshold: exactly 0.0 and 1.0 at the last step, after at least 5 steps. Measured: eval mode,
    exactly 0/1 in all 11 runs; no other run has them there after step 0 (clean ends at
    |mean| 0.6-3.0, variance 1.9-38). The checkpoint's num_batches_tracked (0 in eval mode) corroborates."""
    if len(st) < 5:
        return None
    last = st[-1]
    if last.get("bn_running_mean_abs") != 0.0 or last.get("bn_running_var_mean") != 1.0:
        return None
    moved = [r["step"] for r in st if r.get("bn_running_mean_abs") not in (0.0, None)]
    if moved:
        return None
    evidence = [f"BatchNorm running mean stayed exactly 0 and running variance exactly 1 for all "
                f"{len(st)} steps; a training-mode step moves them at step 0"]
    score = 0.93
    tracked = (model or {}).get("bn1.num_batches_tracked")
    if tracked is not None and int(tracked) == 0:
        evidence.append("checkpoint: bn1.num_batches_tracked = 0: BatchNorm never counted a training batch")
        score = 0.97
    dead = last.get("dead_unit_frac")
    if dead:
        evidence.append(f"last step: {100 * dead:.0f}% of hidden units got no gradient (batch statistics "
                        f"would have re-centred them)")
    return Finding("eval_mode", "train/eval mode", score, evidence, 0,
                   "BatchNorm statistics never move", "print model.training inside the training step "
                   "(it should be True) and look for a model.eval() with no model.train() after it",
                   "call model.train() before the training steps (after every evaluation)")


def detect_accumulating_gradients(st: list[dict], ep: list[dict], model: dict | None) -> Finding | None:
    """Optimization step. Without zero_grad, each step's .grad is the sum of all gradients so
    far: step 0 is normal, then the gradient norm grows almost every step, roughly with the step
    count.

    Threshold: over the first 20 steps the global gradient norm rises in at least 17 of 19 steps
    and ends more than 3x its step-0 value, while step 0's update is normal-sized and the loss
    per-example (a summed loss or a huge learning rate also grows gradients, for other reasons).
    Measured: missing zero_grad, 18-19 rises and 5.1-16x; every other run with a normal first
    step, at most 13 rises and 2.2x."""
    gn = [r.get("grad_norm") for r in st[:20]]
    if len(gn) < 20 or None in gn or gn[0] <= 0:
        return None
    ur0 = first_update_ratio(st)
    if ur0 is None or ur0 > OVERSIZED_FIRST_UPDATE or not per_example_scale(st):
        return None
    rises = sum(b > a for a, b in zip(gn, gn[1:]))
    if rises < 17 or gn[-1] <= 3 * gn[0]:
        return None
    onset = next(r["step"] for r in st[:20] if r["grad_norm"] > 2 * gn[0])
    evidence = [f"global gradient norm rose in {rises} of the first 19 steps: {gn[0]:.3g} at step 0 -> "
                f"{gn[-1]:.3g} at step 19 ({gn[-1] / gn[0]:.0f}x), growing like a running sum"]
    if msg := symptoms.loss_rises_early(st):
        evidence.append(msg)
    evidence.append(f"step 0 was a normal step (update {100 * ur0:.2f}% of the weights): the growth comes "
                    f"after it, as gradients pile up")
    return Finding("missing_zero_grad", "optimization step", 0.9, evidence, onset,
                   f"step {onset}: grad norm 2x step 0's and growing",
                   "after two steps on the same batch, compare p.grad with a fresh backward pass: "
                   "if it equals the sum of both, .grad is never cleared",
                   "call optimizer.zero_grad(set_to_none=True) before loss.backward() in every step")


def detect_oversized_steps(st: list[dict], ep: list[dict], model: dict | None) -> Finding | None:
    """Optimization step. A learning rate far too large moves the weights by a large fraction of
    their norm at the very first step; the loss then rises and ReLU units die.

    Threshold: step 0's update ||delta theta|| / ||theta|| above 0.008 (see OVERSIZED_FIRST_UPDATE)
    with the loss on a per-example scale (a summed loss makes steps large for another reason),
    and a consequence seen: the loss above 1.5x its start within 10 steps, or half the hidden
    units dead. Measured: lr x100 gives 0.014-0.37, a rise within the first steps, and up to
    95-100% dead units."""
    ur0 = first_update_ratio(st)
    if ur0 is None or ur0 <= OVERSIZED_FIRST_UPDATE or not per_example_scale(st):
        return None
    loss0 = st[0]["loss"]
    rise = next((r for r in st[:10] if r.get("loss") is None or r["loss"] > 1.5 * loss0), None)
    dead = max((r.get("dead_unit_frac") or 0 for r in st), default=0)
    if rise is None and dead < 0.5:
        return None
    evidence = [f"step 0: one update moved the weights by {100 * ur0:.1f}% of their norm; runs with a "
                f"sound learning rate move them by less than 0.5% at step 0"]
    if rise is not None:
        worst = max(st[:30], key=lambda r: r["loss"] if r.get("loss") is not None else math.inf)
        what = "non-finite" if worst.get("loss") is None else f"{worst['loss']:.3g}"
        evidence.append(f"step {rise['step']}: loss above 1.5x its start ({loss0:.2f}); it reached {what} "
                        f"at step {worst['step']}")
    if dead >= 0.5:
        evidence.append(f"up to {100 * dead:.0f}% of hidden units got no gradient at all (dead ReLUs)")
    peak_lr = max((r.get("lr") or 0 for r in st), default=0)
    evidence.append(f"the optimizer's learning rate peaked at {peak_lr:.3g} (logged lr)")
    onset = rise["step"] if rise is not None else 0
    return Finding("huge_lr", "optimization step", 0.9, evidence, onset,
                   f"step {onset}: loss rises" if rise is not None else "step 0: oversized update",
                   "a learning-rate sweep: a few steps at the learning rate / 1000, /100, /10 and x1; "
                   "and print optimizer.param_groups[0]['lr']",
                   f"pass the intended learning rate to the optimizer (it ran at up to {peak_lr:.3g})")


SCATTERED_ZERO_FRAC = 0.025


def detect_fp16_underflow(st: list[dict], ep: list[dict], model: dict | None) -> Finding | None:
    """Numerics. float16 rounds magnitudes below about 6e-8 to zero. Unscaled float16 gradients
    then have scattered exact-zero entries, unlike dead ReLUs, which zero whole rows. A loss
    scale of 1.0 on every step says no GradScaler scaled the loss.

    Threshold: first-layer weight-gradient entries that are exactly zero outside dead rows, over
    the last 10 steps, above 2.5% on average. Measured: float16 without scaling 4.7-16%; float32
    runs 0-1.5% (the 1.5% at batch 256), float16 with a GradScaler 0.02%. 2.5% sits 1.9x above
    the one and 1.9x below the other: the tightest margin of the doctor."""
    frac = symptoms.scattered_zero_frac(st, window=10)
    if frac is None or frac <= SCATTERED_ZERO_FRAC:
        return None
    scales = {r.get("amp_scale") for r in st}
    if scales != {1.0}:
        return None  # a GradScaler was active: underflow despite scaling is not this fault
    onset = next((r["step"] for r in st
                  if ((r.get("zero_grad_frac_by_layer") or {}).get("fc1.weight") or 0)
                  - (r.get("dead_unit_frac") or 0) > SCATTERED_ZERO_FRAC), st[-1]["step"])
    first = st[0].get("zero_grad_frac_by_layer", {}).get("fc1.weight") or 0
    evidence = [f"last {min(10, len(st))} steps: {100 * frac:.1f}% of first-layer weight-gradient "
                f"entries are exactly zero outside dead units (scattered, not whole rows): float16 underflow",
                f"the zeros grow as the gradients shrink: {100 * first:.1f}% at step 0, above "
                f"{100 * SCATTERED_ZERO_FRAC:.1f}% from step {onset}",
                "loss scale 1.0 on every step: no GradScaler scaled the loss"]
    return Finding("amp_no_scaling", "numerics", 0.9, evidence, onset,
                   f"step {onset}: scattered zero gradients",
                   "compute one batch's gradients with autocast off (float32) and count exact zeros "
                   "in fc1.weight.grad: none in float32, several % in unscaled float16",
                   "use torch.amp.GradScaler: scaler.scale(loss).backward(); scaler.step(optimizer); "
                   "scaler.update()")


def detect_labels_carry_no_signal(st: list[dict], ep: list[dict], model: dict | None) -> Finding | None:
    """Data / target. When the labels do not belong to the inputs, nothing can be learned: the
    loss stays at ln 10 (uniform predictions) and accuracy at chance, although the steps are of
    normal size and nothing diverges.

    Threshold: the lowest 10-step mean loss stays above 0.9 x ln 10, train accuracy stays below
    0.2 in every epoch, step 0 is normal-sized and on a per-example scale, and the median update
    is not tiny (above 5e-4; a learning rate too small to learn is another fault). Measured:
    shuffled labels, lowest 10-step mean 1.0 x ln 10 and best train accuracy 0.09-0.11; clean,
    0.03-0.15 x ln 10; the other runs that stay above 0.9 x ln 10 either reach train accuracy
    0.34 or more (missing zero_grad) or take an oversized first step (lr x100, summed loss)."""
    losses = _losses(st)
    low = _rolling_min(losses)
    if low is None or low < 0.9 * LN10 or len(losses) < len(st):
        return None
    accs = [e.get("train_acc") for e in ep]
    if not accs or None in accs or max(accs) >= 0.2:
        return None
    ur0 = first_update_ratio(st)
    updates = [r["update_ratio"] for r in st if r.get("update_ratio") is not None]
    if ur0 is None or ur0 > OVERSIZED_FIRST_UPDATE or not per_example_scale(st):
        return None
    if not updates or statistics.median(updates) < 5e-4:
        return None
    evidence = [f"the training loss stayed at ln 10 = 2.30 for all {len(st)} steps (lowest 10-step mean "
                f"{low:.2f}): the model predicts no better than uniform",
                "train accuracy per epoch " + ", ".join(f"{a:.2f}" for a in accs) + ": chance is 0.10",
                f"the steps were normal-sized (median update {100 * statistics.median(updates):.2f}% of the "
                f"weights) and nothing diverged: the inputs carry no information about these labels"]
    if ep and ep[-1].get("test_acc") is not None:
        evidence.append(f"test accuracy {ep[-1]['test_acc']:.3f} after {len(ep)} epoch(s)")
    return Finding("label_permute", "data / target", 0.85, evidence, 0,
                   "loss stays at ln 10 from step 0",
                   "show a grid of inputs with the labels the loss sees: do they match? And check that "
                   "images and labels are indexed by the same permutation",
                   "index images and labels with the same indices (one loader, one shuffle)")


DETECTORS: list[Callable[[list[dict], list[dict], dict | None], Finding | None]] = [
    detect_summed_loss, detect_probability_outputs, detect_frozen_batchnorm,
    detect_accumulating_gradients, detect_oversized_steps, detect_fp16_underflow,
    detect_labels_carry_no_signal,
]

# Observations that are not a cause by themselves: reported as context, and the reason for an
# "unknown" verdict when no detector explains them.
OBSERVATIONS = [symptoms.first_nonfinite_loss, symptoms.loss_rises_early, symptoms.dead_units,
                symptoms.loss_stuck_at_chance]


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


def learned(st: list[dict]) -> bool:
    """Whether the loss fell: the mean of the last 10 losses is below half the first loss, with
    every loss finite. Measured: clean runs end at 0.02-0.18 x their first loss."""
    losses = [r.get("loss") for r in st]
    if None in losses or len(losses) < 10:
        return False
    return sum(losses[-10:]) / 10 < 0.5 * losses[0]


def diagnose(run: Run) -> Diagnosis:
    """Run every detector on the run's measurements, rank what fired, and decide."""
    st, ep, model = run.steps, run.epochs, run.model_state
    findings = sorted((f for d in DETECTORS if (f := d(st, ep, model))), key=lambda f: -f.score)
    observations = [msg for check in OBSERVATIONS if (msg := check(st))]
    if msg := symptoms.chance_accuracy(ep):
        observations.append(msg)
    if findings:
        top = findings[0]
        second = findings[1].score if len(findings) > 1 else 0.0
        confidence = max(0.05, min(0.99, top.score - 0.5 * second))
        return Diagnosis(top.name, confidence, findings, top.next_check, top.suggested_fix,
                         observations, top.onset_step, top.onset, len(st))
    if learned(st) and not observations:
        ratio = sum(r["loss"] for r in st[-10:]) / 10 / st[0]["loss"]
        confidence = 0.9 if ratio < 0.25 else 0.7
        return Diagnosis("healthy", confidence, [], "none needed: compare with a run of another seed "
                         "to see the spread", "none", observations, None, None, len(st))
    return Diagnosis("unknown", 0.0, [], "run `breaklab triage` on this run: it re-runs short "
                     "experiments (one-batch overfit, loss by hand, gradients, a learning-rate sweep)",
                     "none known yet", observations or ["the loss did not fall below half its start"],
                     None, None, len(st))


def format_diagnosis(run: Run, dx: Diagnosis) -> str:
    """The report a person reads: verdict, evidence, the other hypotheses, what to do next."""
    width = 13
    lines = [f"{'run:':<{width}}{run.source} ({dx.steps} steps, {len(run.epochs)} epoch(s))"]
    for w in run.warnings:
        lines.append(f"{'warning:':<{width}}{w}")
    if dx.hypotheses:
        top = dx.hypotheses[0]
        lines.append(f"{'verdict:':<{width}}{dx.verdict}  (confidence {dx.confidence:.2f}; "
                     f"category: {top.category})")
        lines.append(f"{'evidence:':<{width}}- {top.evidence[0]}")
        lines += [f"{'':<{width}}- {e}" for e in top.evidence[1:]]
        if len(dx.hypotheses) > 1:
            lines.append(f"{'also fits:':<{width}}" + "; ".join(
                f"{h.name} (score {h.score:.2f}: {h.evidence[0]})" for h in dx.hypotheses[1:]))
        else:
            lines.append(f"{'ruled out:':<{width}}every other detector saw nothing "
                         f"({len(DETECTORS) - 1} checked)")
    else:
        lines.append(f"{'verdict:':<{width}}{dx.verdict}  (confidence {dx.confidence:.2f})")
        if dx.verdict == "healthy":
            lines.append(f"{'evidence:':<{width}}- loss {st0(run):.3g} at step 0 -> "
                         f"{sum(r['loss'] for r in run.steps[-10:]) / 10:.3g} (last 10 steps); "
                         f"none of the {len(DETECTORS)} detectors fired")
    if dx.observations and not dx.hypotheses:  # with a verdict, its evidence already says it
        lines.append(f"{'also seen:':<{width}}- {dx.observations[0]}")
        lines += [f"{'':<{width}}- {o}" for o in dx.observations[1:]]
    lines.append(f"{'next check:':<{width}}{dx.next_check}")
    lines.append(f"{'fix to try:':<{width}}{dx.suggested_fix}")
    return "\n".join(lines)


def st0(run: Run) -> float:
    return run.steps[0].get("loss") or math.nan


def to_json_text(dx: Diagnosis) -> str:
    return json.dumps(dx.to_json(), indent=2)


