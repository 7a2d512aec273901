"""Pictures of a run: `report.png` (one page, every curve that shows a symptom) and a comparison
of two runs (typically broken and fixed).

Drawn with matplotlib's Agg canvas directly (no pyplot: no global state, a faster import). PNG
files are written without the "Software" metadata matplotlib would stamp with its version, so the
same run always gives the same bytes.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from breaklab.canonical_setup import atomic_write_bytes

LAYERS = ["fc1.weight", "fc1.bias", "bn1.weight", "bn1.bias", "fc2.weight", "fc2.bias"]
MAX_LAYER_CURVES = 6


def layers_of(steps: list[dict]) -> list[str]:
    """The parameter tensors a run measured, first layer first (trainer.py's: LAYERS). A model
    with more than MAX_LAYER_CURVES of them shows its weights only, first and last kept."""
    names = list((steps[0].get("grad_norm_by_layer") or {}) if steps else []) or LAYERS
    if len(names) <= MAX_LAYER_CURVES:
        return names
    weights = [n for n in names[1:] if n.endswith("weight")] or names[1:]
    middle, last = weights[:-1], weights[-1]
    step = max(1, -(-len(middle) // (MAX_LAYER_CURVES - 2)))
    return [names[0], *middle[::step][:MAX_LAYER_CURVES - 2], last]
SYMPTOM_COLOR = "#d62728"


def _series(steps: list[dict], key: str, sub: str | None = None) -> list[float]:
    """One metric per step; null (non-finite) becomes NaN, a gap in the curve."""
    out = []
    for r in steps:
        v = r.get(key)
        if sub is not None:
            v = (v or {}).get(sub)
        out.append(math.nan if v is None else float(v))
    return out


def _positive(values: list[float]) -> bool:
    return any(v > 0 for v in values if not math.isnan(v))


def _scale_to_fit(ax, *curves: list[float]) -> None:
    """A symmetric log scale when a curve spans more than ~3 orders of magnitude, so a blow-up
    does not flatten every other curve of the panel."""
    finite = [abs(v) for c in curves for v in c if not math.isnan(v)]
    if finite and max(finite) > 100:
        ax.set_yscale("symlog", linthresh=1.0)


def _mark(ax, step: int | None) -> None:
    if step is not None:
        ax.axvline(step, color=SYMPTOM_COLOR, linestyle="--", linewidth=1.2)


def _figure(rows: int, cols: int, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, height), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols).ravel()
    return fig, axes


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _epoch_x(run) -> list[int]:
    """Epoch records are plotted at the step where the epoch ended."""
    return [max(0, (e.get("step") or 1) - 1) for e in run.epochs]


def report_png(run, diagnosis) -> bytes:
    """The one-page figure of a run. `diagnosis` only supplies the symptom's first step and a
    description of the symptom; the cause's name is never drawn (mystery runs get figures too)."""
    st = run.steps
    x = [r["step"] for r in st]
    onset = diagnosis.onset_step
    fig, axes = _figure(4, 2, 14)

    ax = axes[0]
    loss = _series(st, "loss")
    ax.plot(x, loss, lw=0.9, label="train loss (per step)")
    ex = _epoch_x(run)
    ax.plot(ex, [e.get("test_loss") if e.get("test_loss") is not None else math.nan for e in run.epochs],
            "o-", label="test loss (per epoch)")
    if _positive(loss):
        ax.set_yscale("log")
    ax.axhline(math.log(10), color="grey", lw=0.8, ls=":", label="ln 10 (uniform guess)")
    ax.set_title("loss")

    ax = axes[1]
    for key in ("train_acc", "test_acc"):
        ax.plot(ex, [e.get(key) if e.get(key) is not None else math.nan for e in run.epochs], "o-",
                label=key.replace("_", " "))
    ax.axhline(0.1, color="grey", lw=0.8, ls=":", label="chance")
    ax.set_ylim(0, 1.02)
    ax.set_title("accuracy (per epoch)")

    ax = axes[2]
    ax.plot(x, _series(st, "lr"), label="learning rate")
    ax.set_title("learning rate used by the optimizer")

    ax = axes[3]
    layers = layers_of(st)
    ax.plot(x, _series(st, "grad_norm"), color="black", lw=1.5, label="global")
    for layer in layers:
        ax.plot(x, _series(st, "grad_norm_by_layer", layer), lw=0.8, label=layer)
    global_norm = [v for v in _series(st, "grad_norm") if not math.isnan(v)]
    if global_norm and max(global_norm) > 0:
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(global_norm) * 1e-6)  # exact zeros and 1e-20s would hide the rest
    ax.set_title("gradient norm: global and per layer")

    ax = axes[4]
    ax.plot(x, _series(st, "zero_grad_frac"), label="all gradient entries")
    first = layers[0]
    ax.plot(x, _series(st, "zero_grad_frac_by_layer", first), label=f"{first} entries")
    ax.plot(x, _series(st, "dead_unit_frac"),
            label=f"dead units (whole {first.rsplit('.', 1)[0]} rows)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("fraction of gradients exactly zero")

    ax = axes[5]
    ax.plot(x, _series(st, "update_ratio"), label="|update| / |weights|")
    if _positive(_series(st, "update_ratio")):
        ax.set_yscale("log")
    ax.set_title("step size relative to the weights")

    ax = axes[6]
    curves = [_series(st, k) for k in ("act_first_mean", "act_first_var", "act_first_dead_frac",
                                       "bn_running_mean_abs", "bn_running_var_mean")]
    for c, label, style in zip(curves, ["mean", "variance", "dead fraction", "BatchNorm running |mean|",
                                        "BatchNorm running var"], ["-", "-", "-", ":", "--"]):
        ax.plot(x, c, style, lw=1, label=label)
    _scale_to_fit(ax, *curves)
    ax.set_title("first layer activations (after BatchNorm + ReLU)")

    ax = axes[7]
    curves = [_series(st, k) for k in ("act_last_mean", "act_last_var", "logit_rowsum_mean")]
    for c, label in zip(curves, ["mean", "variance", "row sum (1.0: probabilities)"]):
        ax.plot(x, c, lw=1, label=label)
    _scale_to_fit(ax, *curves)
    ax.set_title("last layer outputs (as fed to the loss)")

    for ax in axes:
        _mark(ax, onset)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    last = run.epochs[-1] if run.epochs else {}
    acc = last.get("test_acc")
    title = f"{Path(run.source).name}: {len(st)} steps, test accuracy " + (
        f"{acc:.3f}" if acc is not None else "n/a")
    if onset is not None:
        title += f"\nsymptom starts at step {onset} (red dashed line): {diagnosis.onset}"
    elif diagnosis.verdict == "healthy":
        title += "\nno symptom found: the loss fell and no detector fired"
    else:
        title += "\nno known symptom pattern: " + "; ".join(diagnosis.observations[:2])
    fig.suptitle(title, fontsize=11)
    # Fixed margins rather than tight_layout, which measures every label and costs seconds.
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.04, top=0.92, hspace=0.42, wspace=0.16)
    return _png(fig)


def write_report(run_path: Path | str, out: Path | str | None = None) -> Path:
    """Draw report.png for a run folder or tarball; by default into the run folder."""
    from breaklab.doctor import diagnose, load_run

    run = load_run(run_path)
    target = Path(out) if out is not None else Path(run_path) / "report.png"
    atomic_write_bytes(target, report_png(run, diagnose(run)))
    return target


def compare_png(run_a, run_b, label_a: str, label_b: str) -> bytes:
    """Two runs on the same axes: loss, accuracy, learning rate, gradient norm, zero gradients,
    first-layer dead units."""
    fig, axes = _figure(3, 2, 11)
    panels = [("loss", "loss (per step)", True), ("acc", "test accuracy (per epoch)", False),
              ("lr", "learning rate", False), ("grad_norm", "global gradient norm", True),
              ("zero_grad_frac", "fraction of gradients exactly zero", False),
              ("act_first_dead_frac", "first layer: dead unit fraction", False)]
    for ax, (key, title, log) in zip(axes, panels):
        for run, label, style in ((run_a, label_a, "-"), (run_b, label_b, "--")):
            if key == "acc":
                ax.plot(_epoch_x(run), [e.get("test_acc") if e.get("test_acc") is not None else math.nan
                                        for e in run.epochs], "o" + style, label=label)
            else:
                values = _series(run.steps, key)
                ax.plot([r["step"] for r in run.steps], values, style, lw=1, label=label)
                if log and _positive(values):
                    ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{label_a} (solid) vs {label_b} (dashed)", fontsize=11)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.06, top=0.92, hspace=0.4, wspace=0.18)
    return _png(fig)


def compare_summary(run_a, run_b) -> list[tuple[str, Any, Any]]:
    """The numbers that usually differ between a broken and a fixed run."""
    def last_epoch(run, key):
        return run.epochs[-1].get(key) if run.epochs else None

    def grad_max(run):
        vals = [r["grad_norm"] for r in run.steps if r.get("grad_norm") is not None]
        return max(vals) if vals else None

    rows = [("steps", len(run_a.steps), len(run_b.steps)),
            ("loss at step 0", run_a.steps[0].get("loss"), run_b.steps[0].get("loss")),
            ("loss at the last step", run_a.steps[-1].get("loss"), run_b.steps[-1].get("loss")),
            ("test accuracy", last_epoch(run_a, "test_acc"), last_epoch(run_b, "test_acc")),
            ("largest gradient norm", grad_max(run_a), grad_max(run_b)),
            ("dead units at the end", run_a.steps[-1].get("dead_unit_frac"), run_b.steps[-1].get("dead_unit_frac"))]
    return rows
