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
_NUMBER_FIELDS += ("grad_norm_pre_clip",)
_LAYER_FIELDS = ("grad_norm_by_layer", "grad_mean", "zero_grad_frac_by_layer", "update_norm_by_layer")
_FLAG_FIELDS = ("step_skipped", "loss_finite", "grads_finite", "grad_scaler_enabled")
_TEXT_FIELDS = ("autocast_dtype",)
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
        for key in _TEXT_FIELDS:
            if rec.get(key) is not None and not isinstance(rec[key], str):
                raise bad(key, "a string or null")


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
    far: step 0 is normal, then the gradient norm grows almost every step, roughly with the step
    count (rules.grad_norm_grows). Preconditions: step 0 is not an oversized step that did harm
    (rules.harmful_first_step) and the loss is per-example (a summed loss or a huge learning rate
    also grows gradients, for other reasons)."""
    seen = rules.grad_norm_grows(steps)
    first_update = rules.first_update_ratio(steps)
    if (seen is None or first_update is None or rules.harmful_first_step(steps)
            or not rules.per_example_scale(steps)):
        return None
    onset = next(r["step"] for r in steps[:rules.GRAD_GROWTH_WINDOW] if r["grad_norm"] > 2 * seen["first"])
    evidence = [f"global gradient norm rose in {seen['rises']} of the first {seen['of']} steps: "
                f"{seen['first']:.3g} at step 0 -> {seen['last']:.3g} at step {seen['last_step']} "
                f"({seen['ratio']:.0f}x), growing like a running sum"]
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
        evidence.append(f"up to {100 * dead:.0f}% of hidden units got no gradient at all (dead ReLUs)")
    peak_lr = max((r.get("lr") or 0 for r in steps), default=0)
    evidence.append(f"the optimizer's learning rate peaked at {peak_lr:.3g} (logged lr)")
    onset = rise["step"] if rise is not None else 0
    return _finding("huge_lr", "optimization step", 0.9, evidence, onset,
                    f"step {onset}: loss rises" if rise is not None else "step 0: oversized update",
                    fix_detail=f" (it ran at up to {peak_lr:.3g})")


def detect_fp16_underflow(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
    """Numerics. float16 rounds magnitudes below about 6e-8 to zero. Unscaled float16 gradients
    then have scattered exact-zero entries, unlike dead ReLUs, which zero whole rows
    (rules.scattered_zero_grads). Precondition: a loss scale of 1.0 on every step, i.e. no
    GradScaler scaled the loss."""
    seen = rules.scattered_zero_grads(steps)
    if seen is None or {r.get("amp_scale") for r in steps} != {1.0}:
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
                "loss scale 1.0 on every step: no GradScaler scaled the loss"]
    return _finding("amp_no_scaling", "numerics", 0.9, evidence, onset, f"step {onset}: scattered zero gradients")


# Labels that carry no signal: the lowest 10-step mean loss stays above this share of ln 10.
# Measured: shuffled labels 1.0 x ln 10; clean 0.03-0.15 x ln 10.
NO_SIGNAL_LOSS_SHARE = 0.9
# ... while the steps are not tiny (a learning rate too small to learn is another fault).
NO_SIGNAL_MIN_MEDIAN_UPDATE = 5e-4


def detect_labels_carry_no_signal(steps: list[dict], epochs: list[dict], model: dict | None) -> Finding | None:
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
    evidence = [f"the training loss stayed at ln 10 = 2.30 for all {len(steps)} steps (lowest 10-step mean "
                f"{low:.2f}): the model predicts no better than uniform",
                "train accuracy per epoch " + ", ".join(f"{a:.2f}" for a in accs) + ": chance is 0.10",
                f"the steps were normal-sized (median update {100 * statistics.median(updates):.2f}% of the "
                f"weights) and nothing diverged: the inputs carry no information about these labels"]
    if epochs and epochs[-1].get("test_acc") is not None:
        evidence.append(f"test accuracy {epochs[-1]['test_acc']:.3f} after {len(epochs)} epoch(s)")
    return _finding("label_permute", "data / target", 0.85, evidence, 0, "loss stays at ln 10 from step 0")


DETECTORS: list[Callable[[list[dict], list[dict], dict | None], Finding | None]] = [
    detect_summed_loss, detect_probability_outputs, detect_frozen_batchnorm,
    detect_accumulating_gradients, detect_oversized_steps, detect_fp16_underflow,
    detect_labels_carry_no_signal,
]

# Rules that are not a cause by themselves: reported as context, and the reason for an "unknown"
# verdict when no detector explains them.
OBSERVATIONS = ["first_nonfinite_loss", "loss_rises_early", "dead_units", "loss_stuck_at_chance"]


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


def learned(steps: list[dict]) -> bool:
    """Whether the loss fell: the mean of the last 10 losses is below half the first loss, with
    every loss finite. Measured: clean runs end at 0.02-0.18 x their first loss."""
    losses = [r.get("loss") for r in steps]
    if None in losses or len(losses) < 10:
        return False
    return sum(losses[-10:]) / 10 < 0.5 * losses[0]


def diagnose(run: Run) -> Diagnosis:
    """Run every detector on the run's measurements, rank what fired, and decide."""
    steps, epochs, model = run.steps, run.epochs, run.model_state
    findings = sorted((f for d in DETECTORS if (f := d(steps, epochs, model))), key=lambda f: -f.score)
    observations = [msg for name in OBSERVATIONS if (msg := symptoms.sentence(name, steps))]
    if msg := symptoms.sentence("chance_accuracy", epochs):
        observations.append(msg)
    if findings:
        top = findings[0]
        second = findings[1].score if len(findings) > 1 else 0.0
        confidence = max(0.05, min(0.99, top.score - 0.5 * second))
        return Diagnosis(top.name, confidence, findings, top.next_check, top.suggested_fix,
                         observations, top.onset_step, top.onset, len(steps))
    if learned(steps) and not observations:
        ratio = sum(r["loss"] for r in steps[-10:]) / 10 / steps[0]["loss"]
        confidence = 0.9 if ratio < 0.25 else 0.7
        return Diagnosis("healthy", confidence, [], remedy("healthy").next_check, "none", observations,
                         None, None, len(steps))
    return Diagnosis("unknown", 0.0, [], remedy("unknown").next_check, "none known yet",
                     observations or ["the loss did not fall below half its start"], None, None, len(steps))


def format_diagnosis(run: Run, diagnosis: Diagnosis) -> str:
    """The report a person reads: verdict, evidence, the other hypotheses, what to do next."""
    width = 13
    lines = [f"{'run:':<{width}}{run.source} ({diagnosis.steps} steps, {len(run.epochs)} epoch(s))"]
    for w in run.warnings:
        lines.append(f"{'warning:':<{width}}{w}")
    if diagnosis.hypotheses:
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
    if diagnosis.observations and not diagnosis.hypotheses:  # with a verdict, its evidence already says it
        lines.append(f"{'also seen:':<{width}}- {diagnosis.observations[0]}")
        lines += [f"{'':<{width}}- {o}" for o in diagnosis.observations[1:]]
    lines.append(f"{'next check:':<{width}}{diagnosis.next_check}")
    lines.append(f"{'fix to try:':<{width}}{diagnosis.suggested_fix}")
    return "\n".join(lines)


def first_loss(run: Run) -> float:
    return run.steps[0].get("loss") or math.nan


def to_json_text(diagnosis: Diagnosis) -> str:
    return json.dumps(diagnosis.to_json(), indent=2)


