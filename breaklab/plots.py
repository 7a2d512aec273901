"""Pictures of a run: `report.png` (one page, one panel per measurement that can show a symptom)
and a comparison of two runs (typically broken and fixed).

report.png is read next to a clean run: each panel draws the run as a thin line over the clean
run of the same seed as a wide grey band (runs/none_SEED beside the run folder, or a folder given
with `breaklab plot --reference`). Where the two agree the line sits inside the band; where they
differ the gap is visible without reading any text. Each panel's scale is chosen from the values
it shows: logarithmic where they span two decades or more (symmetric logarithmic for values of
both signs), linear otherwise and from 0 for values never negative, counts linear, fractions as
percentages, every x axis from step 0. Every fault of the catalogue shows in at least one panel
(tests/test_plots.py says which); the last panel, the loss's difference from the clean run's, is
blank while the two runs agree, so a run that parts from the clean one late shows where.

Drawn with matplotlib's Agg canvas directly (no pyplot: no global state, a faster import). PNG
files are written without the "Software" metadata matplotlib would stamp with its version, so the
same run always gives the same bytes. The figure's first title line is also stored as the PNG's
"Title" text, so a program can tell which run a picture shows without reading pixels.

Drawing is most of a short run's own cost, so the figure is laid out at fixed places rather than
measured: titles, axis labels and margins (matplotlib would measure every tick label of every
panel, several times); the pixels are the same as with matplotlib's measured layout
(tests/test_plots.py draws both).
"""
from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

from breaklab.atomic import atomic_write_bytes

LAYERS = ["fc1.weight", "fc1.bias", "bn1.weight", "bn1.bias", "fc2.weight", "fc2.bias"]
MAX_LAYER_CURVES = 6
LAYER_MARKERS = ["o", "s", "^", "v", "D", "x"]  # one per curve of the per-layer panel
RUN_COLOR = "#1f77b4"
TEST_COLOR = "#ff7f0e"
REFERENCE_COLOR = "#8c8c8c"
SYMPTOM_COLOR = "#d62728"
DECADES_FOR_LOG = 2.0  # a panel whose positive values span this many powers of ten gets a log axis
SHOWN_APART = 0.1      # the median gap between run and clean, as a fraction of the panel's height,
                       # from which the subtitle names a panel as different from the clean run
# The training options two runs must share for one to serve as the other's clean reference.
COMPARABLE_OPTIONS = ("seed", "epochs", "batch_size", "lr", "momentum", "weight_decay", "warmup_steps",
                      "clip_grad", "hidden", "dropout", "data", "dry_run")


# ============================================================================
# Series: one value per step (or per epoch) read from a run's records
# ============================================================================

def _number(v: Any) -> float:
    """null (a non-finite value in metrics.jsonl) becomes NaN: a gap in the curve."""
    return math.nan if v is None else float(v)


def _series(steps: list[dict], key: str, sub: str | None = None) -> list[float]:
    out = []
    for r in steps:
        v = r.get(key)
        if sub is not None:
            v = (v or {}).get(sub)
        out.append(_number(v))
    return out


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


def _finite(values) -> list[float]:
    return [v for v in values if not math.isnan(v) and not math.isinf(v)]


def _step_metric(key: str, sub: str | None = None) -> Callable[[Any], tuple[list[int], list[float]]]:
    def values(run) -> tuple[list[int], list[float]]:
        return [r["step"] for r in run.steps], _series(run.steps, key, sub)
    return values


def _scattered_zero_frac(run) -> tuple[list[int], list[float]]:
    """First-layer weight-gradient entries that are exactly zero outside whole dead rows (the
    zeros float16 underflow leaves, as opposed to dead ReLUs)."""
    zeros = _series(run.steps, "zero_grad_frac_by_layer", layers_of(run.steps)[0])
    dead = _series(run.steps, "dead_unit_frac")
    return [r["step"] for r in run.steps], [max(0.0, z - d) for z, d in zip(zeros, dead)]


def _first_layer_grad(run) -> tuple[list[int], list[float]]:
    """The gradient norm of the first layer's weight (trainer.py's fc1.weight)."""
    return [r["step"] for r in run.steps], _series(run.steps, "grad_norm_by_layer", layers_of(run.steps)[0])


def _steps_without_update(run) -> tuple[list[int], list[float]]:
    """Steps so far whose loss was non-finite or whose update was skipped: a count that stays at 0
    in a run where every step is a valid update, and climbs from the first one that is not."""
    count, out = 0, []
    for r in run.steps:
        count += r.get("loss_finite") is False or bool(r.get("step_skipped"))
        out.append(float(count))
    return [r["step"] for r in run.steps], out


def loss_difference(run, reference) -> tuple[list[int], list[float]]:
    """|loss - the clean run's loss| at each step both have. Exactly equal steps are NaN: nothing
    is drawn there on the panel's log axis, so the curve starts where the two runs part."""
    ref_loss = {r["step"]: r.get("loss") for r in reference.steps}
    x, y = [], []
    for r in run.steps:
        if r["step"] not in ref_loss:
            continue
        a, b = _number(r.get("loss")), _number(ref_loss[r["step"]])
        x.append(r["step"])
        y.append(math.nan if a == b else abs(a - b))
    return x, y


def _megabytes(key: str) -> Callable[[Any], tuple[list[int], list[float]]]:
    def values(run) -> tuple[list[int], list[float]]:
        return _epoch_x(run), [_number(e.get(key)) / 1e6 for e in run.epochs]
    return values


def _epoch_x(run) -> list[int]:
    """Epoch records are plotted at the last step of the epoch."""
    return [max(0, (e.get("step") or 1) - 1) for e in run.epochs]


def _epoch_metric(key: str) -> Callable[[Any], tuple[list[int], list[float]]]:
    def values(run) -> tuple[list[int], list[float]]:
        return _epoch_x(run), [_number(e.get(key)) for e in run.epochs]
    return values


# ============================================================================
# The panels of report.png, in reading order (three per row)
# ============================================================================

@dataclass(frozen=True)
class Panel:
    key: str        # what is drawn (a metrics.jsonl field, or a name for a derived measurement)
    title: str
    values: Callable[[Any], tuple[list[int], list[float]]]
    percent: bool = False
    guides: tuple[tuple[float, str], ...] = ()  # horizontal reference values with their meaning
    short: str = ""  # how the subtitle names it
    per_epoch: bool = False  # one point per epoch (drawn with markers: one epoch is one point)
    count: bool = False      # a count from 0: always a linear axis, where 0 stays in view

    @property
    def name(self) -> str:
        return self.short or self.title


PANELS = [
    Panel("loss", "training loss (per step)", _step_metric("loss"),
          guides=((math.log(10), "ln 10 = 2.30: equal odds on 10 classes"),), short="loss"),
    Panel("test_acc", "accuracy (per epoch)", _epoch_metric("test_acc"), percent=True,
          guides=((0.1, "one in 10 classes: 10%"),), short="test accuracy", per_epoch=True),
    Panel("test_loss", "test loss (per epoch)", _epoch_metric("test_loss"), short="test loss",
          per_epoch=True),
    Panel("lr", "learning rate used by the optimizer", _step_metric("lr"), short="learning rate"),
    Panel("grad_norm", "gradient norm (all parameters)", _step_metric("grad_norm"), short="gradient norm"),
    Panel("grad_norm_by_layer", "gradient norm per parameter tensor", _step_metric("grad_norm"),
          short="gradient norm per layer"),
    Panel("first_layer_grad", "gradient norm of the first layer's weight", _first_layer_grad,
          short="first-layer gradient norm"),
    Panel("update_ratio", "step size: |update| / |weights|", _step_metric("update_ratio"),
          short="step size"),
    Panel("steps_without_update", "steps so far with a non-finite loss or no update",
          _steps_without_update, short="steps with a non-finite loss or no update", count=True),
    Panel("dead_unit_frac", "hidden units with no gradient at all", _step_metric("dead_unit_frac"),
          percent=True, short="hidden units with no gradient"),
    Panel("scattered_zero_frac", "first-layer gradients exactly zero, outside whole zero rows",
          _scattered_zero_frac, percent=True, short="scattered zero gradients"),
    Panel("bn_running_var_mean", "BatchNorm running variance (mean over units)",
          _step_metric("bn_running_var_mean"), short="BatchNorm running variance"),
    Panel("logit_rowsum_mean", "outputs fed to the loss: sum over the 10 classes",
          _step_metric("logit_rowsum_mean"), short="output row sum"),
    Panel("act_first_var", "first layer activations: variance", _step_metric("act_first_var"),
          short="first-layer activation variance"),
    Panel("act_last_var", "outputs fed to the loss: variance", _step_metric("act_last_var"),
          short="output variance"),
    Panel("loss_graphs_alive", "memory: earlier steps' autograd graphs still held",
          _step_metric("loss_graphs_alive"), short="earlier graphs held", count=True),
    Panel("test_autograd_mb", "memory: MB saved for backward during the test pass",
          _megabytes("test_autograd_bytes"), short="MB saved during the test pass", per_epoch=True),
    Panel("loss_vs_clean", "|loss - clean run's loss| (blank where equal)", lambda run: ([], []),
          short="loss difference"),
]
COLUMNS = 3
PANEL_HEIGHT = 2.82   # inches per row of panels
HEADER_HEIGHT = 2.31  # inches for the title, the subtitle, the key and the x labels below
DPI = 100
PNG_COMPRESSION = 3   # zlib level: 6 (PIL's default) makes report.png 5% smaller in 1.7 times the time
# Where matplotlib would put the "step" label's top, in points below the axes: tick 3.5 + pad 3.5
# + a tick label 10 high (the default size) + labelpad 4.
XLABEL_BELOW = 21.0


# ============================================================================
# Axes: scale, limits, ticks
# ============================================================================

def _plain(value: float, _pos=None) -> str:
    """Tick labels as numbers a person reads aloud: 0.01, 10, 1e6 (never 10^0 or 2.9x10^0)."""
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
        return f"{value:.0e}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
    return f"{value:g}"


def _set_y_scale(ax, values: list[float], percent: bool, count: bool = False) -> None:
    """Percentages for fractions; a log axis where the positive values span decades (exact zeros
    then fall below the axis); a symmetric log axis where values of both signs reach decades past
    the small ones (a loss falling without bound below 0); linear otherwise, from 0 for values
    that are never negative (so that twice as high reads as twice as much)."""
    from matplotlib.ticker import PercentFormatter

    finite = _finite(values)
    if percent:
        top = max([0.05] + [1.08 * v for v in finite])
        ax.set_ylim(-0.03 * top, top)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0 if top >= 0.2 else 1))
        return
    if not finite:
        return
    positive = [v for v in finite if v > 0]
    if positive and min(finite) >= 0 and not count and math.log10(max(positive) / min(positive)) >= DECADES_FOR_LOG:
        _log_axis(ax)
    elif min(finite) < 0 and max(abs(v) for v in finite) >= 10 ** DECADES_FOR_LOG:
        _symlog_axis(ax)
    elif min(finite) >= 0:
        top = max(finite)
        ax.set_ylim(-0.03 * (top or 1), 1.05 * top if top > 0 else 1)


def _symlog_axis(ax) -> None:
    """Linear within -1..1, logarithmic beyond, labelled at powers of ten with plain numbers."""
    from matplotlib.ticker import FuncFormatter, NullLocator, SymmetricalLogLocator

    ax.set_yscale("symlog", linthresh=1.0)
    ax.yaxis.set_major_locator(SymmetricalLogLocator(base=10, linthresh=1.0))
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax.yaxis.set_minor_locator(NullLocator())


def _log_axis(ax) -> None:
    """A log y axis labelled at powers of ten only, with plain numbers. Unlabelled minor ticks are
    left out: they cost more drawing time than the rest of the panel."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=8))
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax.yaxis.set_minor_locator(NullLocator())


def _draw_reference(ax, x, y, label: str | None, marker: str = "", gid: str = "reference") -> None:
    ax.plot(x, y, marker, color=REFERENCE_COLOR, lw=5, ms=9, alpha=0.45, solid_capstyle="butt",
            zorder=1, gid=gid, label=label)


def _up_to(x, y, last: int) -> tuple[list, list]:
    keep = [i for i, s in enumerate(x) if s <= last]
    return [x[i] for i in keep], [y[i] for i in keep]


def _draw_panel(ax, panel: Panel, run, reference) -> None:
    if panel.key == "loss_vs_clean":
        _draw_loss_difference(ax, run, reference)
        return
    x, y = panel.values(run)
    shown = list(y)
    last = x[-1] if x else 0
    marker = "o-" if panel.per_epoch else "-"
    if reference is not None:
        rx, ry = _up_to(*panel.values(reference), last)
        _draw_reference(ax, rx, ry, None, marker)
        shown += ry
    if panel.key == "test_acc":
        tx, ty = _epoch_metric("train_acc")(run)
        if reference is not None:
            rx, ry = _up_to(*_epoch_metric("train_acc")(reference), last)
            _draw_reference(ax, rx, ry, None, "s--", gid="reference-train")
            shown += ry
        ax.plot(tx, ty, "s--", color=RUN_COLOR, lw=1, ms=5, zorder=3, label="train accuracy", gid="run-train")
        ax.plot(x, y, "o-", color=TEST_COLOR, lw=1.2, ms=6, zorder=4, label="test accuracy", gid="run")
        shown += ty
    elif panel.key == "grad_norm_by_layer":
        layers = layers_of(run.steps)
        every = max(len(layers), len(x) // 8)  # at least one step of offset per layer
        for i, (layer, layer_marker) in enumerate(zip(layers, LAYER_MARKERS)):
            ly = _series(run.steps, "grad_norm_by_layer", layer)
            # each layer's markers at its own offset: two layers with equal norms stay apart
            ax.plot(x, ly, lw=0.8, marker=layer_marker, ms=4, markevery=(i * every // len(layers), every),
                    label=layer, gid=f"layer:{layer}")
        peak = max(_finite(_series(run.steps, "grad_norm")) or [0.0])
        if peak > 0:  # exact zeros and 1e-20s (a bias before BatchNorm) would hide the rest
            _log_axis(ax)
            ax.set_ylim(bottom=peak * 1e-6)
        ax.legend(fontsize=6.5, loc="lower left", ncol=3)
        return
    else:
        ax.plot(x, y, marker, color=RUN_COLOR, lw=1, ms=6, zorder=3, gid="run")
    for value, label in panel.guides:
        ax.axhline(value, color="black", lw=0.8, ls=":", zorder=2, label=label)
    _set_y_scale(ax, shown, panel.percent, panel.count)
    if panel.key in ("loss", "test_acc"):
        ax.legend(fontsize=7, loc="best")


def _draw_loss_difference(ax, run, reference) -> None:
    """Where the run leaves the clean run: blank while the two losses are equal, a curve from the
    first step where they are not (a resumed run that should have continued the same run)."""
    if reference is None:
        ax.text(0.5, 0.5, "no clean run to compare with", transform=ax.transAxes, ha="center",
                va="center", fontsize=9, color=REFERENCE_COLOR)
        return
    x, y = loss_difference(run, reference)
    ax.plot(x, y, color=RUN_COLOR, lw=1, zorder=3, gid="run")
    if _finite(y):
        _log_axis(ax)
        return
    # Nothing drawn: either the losses are equal at every step, or a non-finite loss leaves no
    # difference to draw (NaN - x is NaN).
    losses = _series(run.steps[:len(x)], "loss") + _series(reference.steps[:len(x)], "loss")
    note = ("equal at every step" if not any(math.isnan(v) or math.isinf(v) for v in losses)
            else "no step where both losses are finite and differ")
    ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=9,
            color=REFERENCE_COLOR)


def _mark_onset(ax, step: int) -> None:
    """A red dashed line at the symptom's first step, and a triangle above the panel that stays
    visible when the step is 0 (where the line runs along the axis)."""
    ax.axvline(step, color=SYMPTOM_COLOR, linestyle="--", linewidth=1.2, zorder=5)
    ax.plot([step], [1.0], marker="v", ms=7, color=SYMPTOM_COLOR, clip_on=False, zorder=6,
            transform=ax.get_xaxis_transform(), gid="onset")


def _start_x_at_zero(ax, run) -> None:
    """x from step 0 to a little past the last step: a point at the last step (one epoch's test
    accuracy) is drawn whole."""
    last = max(1, run.steps[-1]["step"] if run.steps else 1)
    ax.set_xlim(0, last + max(1, round(0.02 * last)))


# ============================================================================
# How far a run is from the clean run, panel by panel (for the subtitle)
# ============================================================================

class Gap(NamedTuple):
    panel: Panel
    apart: float  # median vertical distance between run and clean, as a fraction of the panel
    run_range: tuple[float, float]
    clean_range: tuple[float, float]


def _line(ax, gid: str):
    return next((line for line in ax.get_lines() if line.get_gid() == gid), None)


def paired_points(ax, run_line, ref_line, by_order: bool = False) -> list[tuple[float, float, float]]:
    """(x, run value, clean value) at the steps both lines have; by_order pairs the points one by
    one instead (per-epoch curves of runs whose epochs have other numbers of steps)."""
    run_x, run_y = list(map(float, run_line.get_xdata())), list(map(float, run_line.get_ydata()))
    ref_x, ref_y = list(map(float, ref_line.get_xdata())), list(map(float, ref_line.get_ydata()))
    if by_order:
        return [(x, v, r) for x, v, r in zip(run_x, run_y, ref_y)]
    ref_at = dict(zip(ref_x, ref_y))
    return [(x, v, ref_at[x]) for x, v in zip(run_x, run_y) if x in ref_at]


def vertical_gaps(ax, pairs: list[tuple[float, float, float]]):
    """The vertical distance between run and clean at each pair, in the panel's own coordinates
    (after its scale is set): 0 = on top of each other, 1 = a full panel apart. A value outside
    the panel (an exact zero on a log axis) counts at the panel's edge, where it leaves the view.
    Pairs where either value is not drawn (non-finite) are left out."""
    import numpy as np

    if not pairs:
        return np.array([])
    ax.get_ylim()  # settles the autoscaled limits before reading the transform
    to_axes = ax.transScale + ax.transLimits
    steps = np.array([p[0] for p in pairs])
    drawn = np.array([math.isfinite(p[1]) and math.isfinite(p[2]) for p in pairs])
    with np.errstate(all="ignore"):
        a = to_axes.transform(np.column_stack([steps, [p[1] for p in pairs]]))[:, 1]
        b = to_axes.transform(np.column_stack([steps, [p[2] for p in pairs]]))[:, 1]
        gaps = np.abs(np.clip(a, 0, 1) - np.clip(b, 0, 1))
    return gaps[drawn & np.isfinite(gaps)]


def panel_gap(ax, panel: Panel) -> Gap | None:
    """Compare the run's line with the clean run's band at the steps both have (epoch by epoch
    on a per-epoch panel): the median of vertical_gaps."""
    import numpy as np

    run, ref = _line(ax, "run"), _line(ax, "reference")
    if run is None or ref is None:
        return None
    pairs = paired_points(ax, run, ref, by_order=panel.per_epoch)
    gaps = vertical_gaps(ax, pairs)
    if not gaps.size:
        return None
    runs = _finite([p[1] for p in pairs]) or [math.nan]
    cleans = _finite([p[2] for p in pairs]) or [math.nan]
    return Gap(panel, float(np.median(gaps)), (min(runs), max(runs)), (min(cleans), max(cleans)))


def _value_range(lo: float, hi: float, percent: bool) -> str:
    def one(v: float) -> str:
        if math.isnan(v):
            return "non-finite"
        if percent:
            return f"{100 * v:.0f}%" if abs(v) >= 0.1 or v == 0 else f"{100 * v:.1f}%"
        return f"{v:.3g}"
    if one(lo) == one(hi):
        return f"{one(lo)} throughout"
    return f"{one(lo)} to {one(hi)}"


def describe_gaps(gaps: list[Gap], most: int = 4) -> str:
    apart = sorted((g for g in gaps if g.apart >= SHOWN_APART), key=lambda g: -g.apart)[:most]
    if not apart:
        return "every curve stays close to the clean run's (grey)"
    return "apart from the clean run (grey): " + "; ".join(
        f"{g.panel.name} {_value_range(*g.run_range, g.panel.percent)} "
        f"vs {_value_range(*g.clean_range, g.panel.percent)}" for g in apart)


# ============================================================================
# report.png
# ============================================================================

def run_name(source: str | Path) -> str:
    """A run's name as a person gave it: the folder's name, or the tarball's without .tgz."""
    return Path(source).name.removesuffix(".tgz")


def _num(v: Any) -> str:
    return "non-finite" if v is None else f"{v:.3g}"


def subtitle(run, diagnosis, gaps: list[Gap] | None, reference_note: str | None) -> str:
    """The figure's text under the title: what the curves show, nothing more (no verdict, no
    cause). The one place where this text is chosen. diagnosis None (a mystery run): measurements
    only, in the same lines for every run, and no list of the panels that differ (it would point
    at the answer). Otherwise the marked step and the panels furthest from the clean run."""
    st = run.steps
    measured = (f"loss {_num(st[0].get('loss'))} at step 0 -> {_num(st[-1].get('loss'))} at step "
                f"{st[-1]['step']}; gradient norm {_num(st[0].get('grad_norm'))} -> "
                f"{_num(st[-1].get('grad_norm'))}")
    if diagnosis is None:
        lines = [measured]
        if gaps is not None:
            lines.append("grey: the clean run of the same seed")
        elif reference_note:
            lines.append(reference_note)
        return "\n".join(lines)
    lines = []
    if diagnosis.onset_step is not None:
        lines.append(f"red dashed line: step {diagnosis.onset_step}, where the first symptom shows "
                     f"({diagnosis.onset})")
    if gaps is not None:
        lines.append(describe_gaps(gaps))
    else:
        lines.append(measured)
        if reference_note:
            lines.append(reference_note)
    return "\n".join(lines)


def report_figure(run, diagnosis, reference=None, reference_label: str | None = None,
                  name: str | None = None, reference_note: str | None = None):
    """The one-page figure of a run, optionally over a clean reference run. `diagnosis` only
    supplies the symptom's first step and its description; the cause's name is never drawn.
    None (a mystery run): no marked step, measurements only. `name` heads the title [default:
    the run's folder or tarball name]."""
    rows = math.ceil(len(PANELS) / COLUMNS)
    height = PANEL_HEIGHT * rows + HEADER_HEIGHT
    fig, axes = _figure(rows, COLUMNS, 15, height)
    onset = diagnosis.onset_step if diagnosis is not None else None
    for ax, panel in zip(axes, PANELS):
        _draw_panel(ax, panel, run, reference)
        _start_x_at_zero(ax, run)
        if onset is not None:
            _mark_onset(ax, onset)
        ax.set_title(panel.title, fontsize=10, y=1.0)  # a fixed place: finding one measures every tick
        ax.set_gid(panel.key)
        ax.grid(alpha=0.3)
    for ax in axes[-COLUMNS:]:
        ax.set_xlabel("step")
    for ax in axes:
        _fixed_axis_layout(ax)
    gaps = None
    if reference is not None:
        gaps = [g for ax, panel in zip(axes, PANELS) if (g := panel_gap(ax, panel)) is not None]
    def below_top(inches: float) -> float:
        return 1 - inches / height

    fig.suptitle(figure_title(run, name), fontsize=12, y=below_top(0.07), va="top")
    fig.text(0.5, below_top(0.38), _wrap(subtitle(run, diagnosis, gaps, reference_note)), ha="center",
             va="top", fontsize=9.5, linespacing=1.4)
    _key(fig, reference_label if reference is not None else None, onset, below_top(1.06))
    # Fixed margins (in inches from the top and bottom) rather than tight_layout, which measures
    # every label and costs seconds.
    fig.subplots_adjust(left=0.05, right=0.985, bottom=0.6 / height, top=below_top(1.7), hspace=0.42,
                        wspace=0.2)
    return fig


def figure_title(run, name: str | None = None) -> str:
    last = run.epochs[-1] if run.epochs else {}
    acc = last.get("test_acc")
    return (f"{name or run_name(run.source)}: {len(run.steps)} steps, test accuracy "
            + (f"{100 * acc:.1f}%" if acc is not None else "n/a"))


def _key(fig, reference_label: str | None, onset: int | None, y: float) -> None:
    """One legend for what every panel shares: this run, the clean run, the symptom's step."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=RUN_COLOR, lw=1.2, label="this run")]
    if reference_label:
        handles.append(Line2D([], [], color=REFERENCE_COLOR, lw=5, alpha=0.45, label=reference_label))
    if onset is not None:
        handles.append(Line2D([], [], color=SYMPTOM_COLOR, ls="--", lw=1.2,
                              label=f"first symptom (step {onset})"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, y), ncol=len(handles),
               fontsize=9, frameon=False)


def _wrap(text: str, width: int = 190) -> str:
    import textwrap

    return "\n".join(textwrap.fill(line, width, break_on_hyphens=False) for line in text.splitlines())


def report_png(run, diagnosis, reference=None, reference_label: str | None = None,
               name: str | None = None, reference_note: str | None = None) -> bytes:
    with _no_garbage_collection():
        fig = report_figure(run, diagnosis, reference, reference_label, name, reference_note)
        return _png(fig, figure_title(run, name))


# ============================================================================
# The clean reference run
# ============================================================================

def _options(run) -> dict[str, Any] | None:
    config = (run.meta or {}).get("config")
    return {k: config.get(k) for k in COMPARABLE_OPTIONS} if isinstance(config, dict) else None


def sibling_reference(run_path: Path, run) -> tuple[Path | None, str | None]:
    """The clean run of the same seed and options beside a run (runs/none_SEED next to
    runs/NAME_SEED; run_none_SEED.tgz next to a tarball), or None with a note saying how to get
    one. The trainer never trains it: that would double the cost of every run."""
    seed = (run.meta or {}).get("seed")
    if not isinstance(seed, int) or (run.meta or {}).get("break") == "none":
        return None, None  # a clean run is the reference itself
    run_path = Path(run_path)
    candidates = ([run_path.parent / f"none_{seed}"] if run_path.is_dir()
                  else [run_path.parent / f"run_none_{seed}.tgz", run_path.parent / "runs" / f"none_{seed}"])
    how = (f"no clean run of seed {seed} with the same options beside this run: "
           f"./demo_run.sh {seed} none (same options), then breaklab plot {run_path}")
    for path in candidates:
        if not path.exists() or path.resolve() == run_path.resolve():
            continue
        try:
            ref = load_reference(path)
        except Exception:  # an unreadable neighbour is no reason to lose the run's own figure
            continue
        meta = ref.meta or {}
        # A clean run still training (or interrupted) would make the figure depend on timing.
        if meta.get("break") == "none" and meta.get("status") == "complete" and _options(ref) == _options(run):
            return path, None
    return None, how


def load_reference(path: Path | str):
    """A reference run's metrics (its checkpoint is never opened)."""
    from breaklab.doctor import load_run

    return load_run(path, model=False)


def reference_label(path: Path | str, ref) -> str:
    kind = "clean run" if (ref.meta or {}).get("break") == "none" else "reference run"
    return f"{kind} {run_name(path)}"


class Report(NamedTuple):
    """What report.png is drawn from: the run, its diagnosis and the clean run (if any)."""
    run: Any
    diagnosis: Any
    reference: Any
    reference_path: Path | None
    reference_label: str | None
    reference_note: str | None  # why there is no clean run, and how to get one
    name: str | None

    def png(self) -> bytes:
        return report_png(self.run, self.diagnosis, self.reference, self.reference_label, self.name,
                          self.reference_note)


def prepare_report(run_path: Path | str, reference: Path | str | bool = True,
                   name: str | None = None) -> Report:
    """Read a run folder or tarball and its clean reference. reference: True looks for the clean
    run of the same seed beside the run, a path uses that run, False draws none."""
    from breaklab.doctor import diagnose, load_run

    run = load_run(run_path)
    ref_path, note = (sibling_reference(Path(run_path), run) if reference is True
                      else (None if reference is False else Path(reference), None))
    ref = load_reference(ref_path) if ref_path is not None else None
    label = reference_label(ref_path, ref) if ref is not None else None
    mystery = (run.meta or {}).get("break") == "mystery"  # no doctor's reading on its figure
    return Report(run, None if mystery else diagnose(run), ref, ref_path, label, note, name)


def write_report(run_path: Path | str, out: Path | str | None = None, reference: Path | str | bool = True,
                 name: str | None = None) -> Path:
    """Draw report.png for a run folder or tarball; by default into the run folder."""
    target = Path(out) if out is not None else Path(run_path) / "report.png"
    atomic_write_bytes(target, prepare_report(run_path, reference, name).png())
    return target


# ============================================================================
# Figure plumbing
# ============================================================================

def _figure(rows: int, cols: int, width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols).ravel()
    return fig, axes


def _no_garbage_collection():
    """Importing matplotlib and drawing a figure make tens of thousands of objects, each burst of
    allocations starting a collection that walks every object the process holds (a trainer holds
    torch's: about 300,000). Collection is switched back on (if it was on) when the PNG is made;
    the figure, which holds reference cycles, is collected then."""
    from breaklab.process_gc import collection_paused

    return collection_paused()


def _fixed_axis_layout(ax) -> None:
    """Place the axis labels at fixed offsets and give tick objects only to ticks in view.

    matplotlib places an axis label by measuring every tick label of the axis (and of its
    siblings) at each draw; a fixed place skips that: the x label (if any) goes XLABEL_BELOW
    points below the axes, where the measured place is for one row of tick labels at the default
    size. The panels have no y label. The locators' ticks outside the view are
    never drawn, but matplotlib builds a tick object (two lines, a grid line, two texts) for each
    before it drops them."""
    from matplotlib.transforms import offset_copy

    ax.xaxis.set_label_coords(0.5, 0.0, transform=offset_copy(ax.transAxes, ax.figure, y=-XLABEL_BELOW,
                                                                units="points"))
    ax.yaxis.set_label_coords(0.0, 0.5)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(_in_view(axis.get_major_locator()))


@functools.cache  # one class, made on first use: matplotlib is imported lazily
def _in_view_locator_class():
    from matplotlib.ticker import Locator

    class InView(Locator):
        """The ticks of another locator that lie in the axis's view (with a margin wider than
        matplotlib's own test for drawing one, so that every tick it would draw stays)."""

        def __init__(self, inner):
            self.inner = inner

        def set_axis(self, axis):
            super().set_axis(axis)
            self.inner.set_axis(axis)

        def __call__(self):
            import numpy as np

            locs = np.asarray(self.inner(), dtype=float)
            if locs.size == 0:
                return locs
            to_scale = self.axis.get_transform()
            low, high = sorted(to_scale.transform(np.asarray(self.axis.get_view_interval(), dtype=float)))
            with np.errstate(all="ignore"):
                scaled = to_scale.transform(locs)
            margin = 1e-6 * (high - low)
            keep = ~np.isfinite(scaled) | ((scaled >= low - margin) & (scaled <= high + margin))
            return locs[keep]

        def tick_values(self, vmin, vmax):
            return self.inner.tick_values(vmin, vmax)

        def nonsingular(self, v0, v1):
            return self.inner.nonsingular(v0, v1)

        def view_limits(self, vmin, vmax):
            return self.inner.view_limits(vmin, vmax)

    return InView


def _in_view(inner):
    return _in_view_locator_class()(inner)


def _png(fig, title: str | None = None) -> bytes:
    """The figure as an RGB PNG (its background is opaque: an alpha channel would be all 255),
    zlib level PNG_COMPRESSION; no "Software" text (it would carry matplotlib's version), the
    title as "Title" text."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    fig.canvas.draw()
    width, height = fig.canvas.get_width_height()
    image = Image.frombuffer("RGBA", (width, height), fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    info = PngInfo()
    if title:
        info.add_text("Title", title.encode("latin-1", "replace").decode("latin-1"))
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="png", pnginfo=info, dpi=(DPI, DPI),
                              compress_level=PNG_COMPRESSION)
    return buf.getvalue()


def png_title(data: bytes) -> str | None:
    """The "Title" text stored in a PNG written here."""
    import struct

    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"tEXt":
            key, _, value = data[pos + 8:pos + 8 + length].partition(b"\0")
            if key == b"Title":
                return value.decode("latin-1")
        if kind == b"IEND":
            break
        pos += 12 + length
    return None


# ============================================================================
# Two runs on the same axes: `breaklab compare`
# ============================================================================

COMPARE_PANELS = ["loss", "test_acc", "lr", "grad_norm", "scattered_zero_frac", "dead_unit_frac"]


def compare_png(run_a, run_b, label_a: str, label_b: str) -> bytes:
    with _no_garbage_collection():
        return _png(compare_figure(run_a, run_b, label_a, label_b), compare_title(label_a, label_b))


def compare_title(label_a: str, label_b: str) -> str:
    return f"{label_a} (thin line) vs {label_b} (wide band)"


def compare_figure(run_a, run_b, label_a: str, label_b: str):
    """Two runs on the same axes: RUN_A as a thin line, RUN_B as a wide band under it (where the
    two agree the line sits inside the band). Loss, accuracy, learning rate, gradient norm, zero
    gradients, dead units; scales chosen as in report.png."""
    panels = {p.key: p for p in PANELS}
    fig, axes = _figure(2, 3, 15, 8.4)
    last = max(run_a.steps[-1]["step"], run_b.steps[-1]["step"], 1)
    for ax, key in zip(axes, COMPARE_PANELS):
        panel = panels[key]
        marker = "o-" if key == "test_acc" else "-"
        bx, by = panel.values(run_b)
        ax.plot(bx, by, marker, color=RUN_COLOR, lw=5, ms=9, alpha=0.4, solid_capstyle="butt",
                zorder=1, label=label_b, gid="run_b")
        ax_, ay = panel.values(run_a)
        ax.plot(ax_, ay, marker, color=SYMPTOM_COLOR, lw=1.1, ms=5, zorder=3, label=label_a, gid="run_a")
        _set_y_scale(ax, list(ay) + list(by), panel.percent)
        ax.set_xlim(0, last)
        ax.set_title(panel.title, fontsize=10, y=1.0)
        ax.set_gid(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        _fixed_axis_layout(ax)
    fig.suptitle(compare_title(label_a, label_b), fontsize=12)
    fig.subplots_adjust(left=0.05, right=0.985, bottom=0.07, top=0.9, hspace=0.35, wspace=0.2)
    return fig


class Row(NamedTuple):
    name: str
    a: Any
    b: Any
    percent: bool = False  # a fraction, printed as a percentage


def compare_summary(run_a, run_b) -> list[Row]:
    """The numbers that usually differ between a broken and a fixed run."""
    def last_epoch(run, key):
        return run.epochs[-1].get(key) if run.epochs else None

    def grad_max(run):
        vals = [r["grad_norm"] for r in run.steps if r.get("grad_norm") is not None]
        return max(vals) if vals else None

    return [Row("steps", len(run_a.steps), len(run_b.steps)),
            Row("loss at step 0", run_a.steps[0].get("loss"), run_b.steps[0].get("loss")),
            Row("loss at the last step", run_a.steps[-1].get("loss"), run_b.steps[-1].get("loss")),
            Row("test accuracy", last_epoch(run_a, "test_acc"), last_epoch(run_b, "test_acc"), True),
            Row("largest gradient norm", grad_max(run_a), grad_max(run_b)),
            Row("dead units at the end", run_a.steps[-1].get("dead_unit_frac"),
                run_b.steps[-1].get("dead_unit_frac"), True)]
