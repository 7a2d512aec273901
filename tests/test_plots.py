"""Figures: every run writes report.png (byte-reproducible, symptom step marked, drawn over the
clean run of the same seed), `plot` draws one for a folder or a tarball, `compare` overlays two
runs. The checks read the figure's own data (its lines, axes scales and limits), not pixels.

Fast tests draw made-up runs (written as real run folders); the slow ones train every break for
one epoch next to a clean run of the same seed.
"""
from __future__ import annotations

import copy
import json
import math
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from breaklab import plots
from breaklab.catalogue import entries
from breaklab.cli import cli
from breaklab.doctor import diagnose, load_run

PNG = b"\x89PNG\r\n\x1a\n"
SEED = 1  # the figures were looked at while being designed on seeds 0 and 42
APART = 0.2  # "obvious": run and clean at least a fifth of the panel's height apart (median over steps)
# A control's accuracy curves (test and training) lie within this fraction of the accuracy panel's
# height of the clean run's: a few points of accuracy (measured at seeds 1 and 0, one epoch: up
# to 0.033 apart, accumulation_not_divided's training accuracy).
CLOSE = 0.05
FIGURE_SIZE = (1500, 1923)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG
    return struct.unpack(">II", data[16:24])


# ============================================================================
# What the checks read from a figure
# ============================================================================

def axes_by_key(fig) -> dict:
    return {ax.get_gid(): ax for ax in fig.axes if ax.get_gid()}


def line(ax, gid: str):
    found = [ln for ln in ax.get_lines() if ln.get_gid() == gid]
    assert len(found) == 1, f"{ax.get_gid()}: {len(found)} lines with gid {gid}"
    return found[0]


def ydata(ln) -> list[float]:
    return [float(v) for v in ln.get_ydata()]


def same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b))


def median_gap(ax, run_line, ref_line, by_order: bool = False, from_step: float = 0) -> float:
    """Median vertical distance between two lines at the steps both have (from `from_step` on),
    as a fraction of the panel's height, on the panel's own scale (log or linear)."""
    import numpy as np

    pairs = [p for p in plots.paired_points(ax, run_line, ref_line, by_order) if p[0] >= from_step]
    gaps = plots.vertical_gaps(ax, pairs)
    assert gaps.size, f"{ax.get_gid()}: no step where both curves are drawn"
    return float(np.median(gaps))


# ============================================================================
# Made-up runs, written as run folders (no training)
# ============================================================================

def make_run(folder: Path, break_name: str = "none", seed: int = 7, steps: int = 40, epochs: int = 2,
             status: str = "complete", **curves) -> Path:
    """A run folder with every metric; `curves` overrides a metric with a function of the step."""
    per_epoch = steps // epochs
    defaults = {
        "lr": lambda s: 0.1, "loss": lambda s: 2.3 * 0.9 ** s + 0.05, "grad_norm": lambda s: 1.0 + 0.01 * s,
        "zero_grad_frac": lambda s: 0.0, "dead_unit_frac": lambda s: 0.0, "act_first_mean": lambda s: 0.4,
        "act_first_var": lambda s: 0.33, "act_first_dead_frac": lambda s: 0.0, "act_last_mean": lambda s: 0.0,
        "act_last_var": lambda s: 1.0 + s, "logit_min": lambda s: -1.0, "logit_max": lambda s: 1.0,
        "logit_rowsum_mean": lambda s: -0.05, "update_ratio": lambda s: 0.005,
        "bn_running_mean_abs": lambda s: 0.5, "bn_running_var_mean": lambda s: 1 + 5 * (1 - 0.9 ** s),
        "fc1_zero": lambda s: 0.0, "layer": lambda s, i: 0.1 * (i + 1),
    }
    f = {**defaults, **curves}
    records = [{"type": "header", "schema": "breaklab.metrics", "version": 1}]
    for s in range(steps):
        records.append({
            "type": "step", "step": s, "epoch": s // per_epoch, "batch_size": 64,
            **{k: f[k](s) for k in ("lr", "loss", "grad_norm", "zero_grad_frac", "dead_unit_frac",
                                    "act_first_mean", "act_first_var", "act_first_dead_frac", "act_last_mean",
                                    "act_last_var", "logit_min", "logit_max", "logit_rowsum_mean",
                                    "update_ratio", "bn_running_mean_abs", "bn_running_var_mean")},
            "grad_norm_by_layer": {name: f["layer"](s, i) for i, name in enumerate(plots.LAYERS)},
            "zero_grad_frac_by_layer": {name: (f["fc1_zero"](s) if name == "fc1.weight" else 0.0)
                                        for name in plots.LAYERS},
            "amp_scale": 1.0, "step_skipped": False, "loss_finite": True, "grads_finite": True})
        if (s + 1) % per_epoch == 0:
            records.append({"type": "epoch", "epoch": s // per_epoch, "step": s + 1, "train_loss": 0.5,
                            "train_acc": 0.8 + 0.05 * (s // per_epoch), "test_loss": 0.4,
                            "test_acc": 0.85 + 0.05 * (s // per_epoch)})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = {"seed": seed, "break_name": break_name, "epochs": epochs, "batch_size": 64, "lr": 0.1,
              "momentum": 0.9, "weight_decay": 0.0, "warmup_steps": 10, "clip_grad": 0.0, "hidden": 256,
              "dropout": 0.1, "data": "sample", "dry_run": False}
    (folder / "meta.json").write_text(json.dumps({"seed": seed, "break": break_name, "config": config,
                                                  "status": status}))
    return folder


def figure_of(path: Path, reference=True):
    report = plots.prepare_report(path, reference)
    return report, plots.report_figure(report.run, report.diagnosis, report.reference,
                                       report.reference_label, report.name, report.reference_note)


def test_log_axis_only_where_values_span_decades(tmp_path):
    run = make_run(tmp_path / "runs" / "x_7", loss=lambda s: 2.9 - 0.01 * s,          # 2.9 .. 2.5
                   lr=lambda s: 10 ** (-s / 10), act_last_var=lambda s: 3.0)           # 1 .. 1e-4
    _, fig = figure_of(run, reference=False)
    axes = axes_by_key(fig)
    assert axes["loss"].get_yscale() == "linear"  # one decade or less: linear, no "2.9x10^0" ticks
    assert axes["lr"].get_yscale() == "log"
    assert axes["act_last_var"].get_yscale() == "linear"
    for key in ("lr", "grad_norm_by_layer"):
        ax = axes[key]
        labels = [ax.yaxis.get_major_formatter()(v, i) for i, v in enumerate(ax.get_yticks())]
        assert labels and not any("$" in t or "times" in t for t in labels), labels


def test_x_axes_from_step_0_and_fractions_as_percentages(tmp_path):
    from matplotlib.ticker import PercentFormatter

    _, fig = figure_of(make_run(tmp_path / "x_7"), reference=False)
    for key, ax in axes_by_key(fig).items():
        assert ax.get_xlim()[0] == 0, key
    axes = axes_by_key(fig)
    for key in ("test_acc", "dead_unit_frac", "scattered_zero_frac"):
        assert isinstance(axes[key].yaxis.get_major_formatter(), PercentFormatter), key
    assert axes["test_acc"].yaxis.get_major_formatter()(0.5, 0).startswith("50")


def test_equal_series_never_hide_each_other(tmp_path):
    """Every layer with the same gradient norm (and a run identical to its clean reference): each
    layer keeps its own marker at its own offset, and the run is a thin line on a wide band."""
    root = tmp_path / "runs"
    make_run(root / "none_7")
    run = make_run(root / "copy_7", layer=lambda s, i: 0.5)
    _, fig = figure_of(run)
    for key, ax in axes_by_key(fig).items():
        lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1]
        for i, a in enumerate(lines):
            for b in lines[i + 1:]:
                if not same(ydata(a), ydata(b)):
                    continue
                told_apart = (a.get_marker() != b.get_marker()
                              or a.get_markevery() != b.get_markevery()
                              or max(a.get_linewidth(), b.get_linewidth())
                              >= 3 * min(a.get_linewidth(), b.get_linewidth()))
                assert told_apart, f"{key}: {a.get_label()} and {b.get_label()} draw on top of each other"
    layer_lines = [ln for ln in axes_by_key(fig)["grad_norm_by_layer"].get_lines()
                   if str(ln.get_gid()).startswith("layer:")]
    assert len({ln.get_marker() for ln in layer_lines}) == len(plots.LAYERS)
    assert len({str(ln.get_markevery()) for ln in layer_lines}) == len(plots.LAYERS)


def test_reference_is_the_clean_sibling_with_the_same_options(tmp_path):
    root = tmp_path / "runs"
    run = make_run(root / "huge_lr_7", break_name="huge_lr", lr=lambda s: 10.0)
    report = plots.prepare_report(run)
    assert report.reference is None and "./demo_run.sh 7 none" in report.reference_note

    make_run(root / "none_7", epochs=1)  # other options: not a fair reference
    assert plots.prepare_report(run).reference is None
    make_run(root / "none_7", status="running")  # still training: not yet a fixed reference
    assert plots.prepare_report(run).reference is None
    make_run(root / "none_7")
    report = plots.prepare_report(run)
    assert report.reference_path == root / "none_7" and report.reference_label == "clean run none_7"
    clean = plots.prepare_report(root / "none_7")
    assert clean.reference is None and clean.reference_note is None  # the clean run needs none
    assert plots.prepare_report(run, reference=False).reference is None


def test_subtitle_names_what_differs_from_the_clean_run(tmp_path):
    root = tmp_path / "runs"
    make_run(root / "none_7")
    run = make_run(root / "frozen_7", break_name="eval_mode", bn_running_var_mean=lambda s: 1.0)
    report, fig = figure_of(run)
    gaps = [g for ax, p in zip(fig.axes, plots.PANELS) if (g := plots.panel_gap(ax, p))]
    text = plots.describe_gaps(gaps)
    assert text.startswith("apart from the clean run") and "BatchNorm running variance 1 throughout" in text
    assert "learning rate" not in text  # identical curves are not called different
    same_run = make_run(root / "twin_7")
    report, fig = figure_of(same_run)
    gaps = [g for ax, p in zip(fig.axes, plots.PANELS) if (g := plots.panel_gap(ax, p))]
    assert plots.describe_gaps(gaps).startswith("every curve stays close")


def test_report_png_is_byte_reproducible_and_titled_from_the_run(tmp_path):
    root = tmp_path / "runs"
    make_run(root / "none_7")
    run = make_run(root / "huge_lr_7", break_name="huge_lr", lr=lambda s: 10.0,
                   loss=lambda s: 2.3 * 1.2 ** s)
    first = plots.write_report(run, tmp_path / "a.png").read_bytes()
    again = plots.write_report(run, tmp_path / "b.png").read_bytes()
    assert first == again
    assert b"Software" not in first and b"matplotlib" not in first.lower()
    assert png_size(first) == FIGURE_SIZE
    assert plots.png_title(first).startswith("huge_lr_7: 40 steps, test accuracy 90.0%")


def test_fixed_layout_draws_the_pixels_of_the_measured_layout(tmp_path, monkeypatch):
    """Axis labels at fixed places and tick objects only for ticks in view (which spare matplotlib
    its measuring) draw exactly the pixels of matplotlib's own measured layout: log, symmetric log,
    linear and percentage axes, drawn over a clean run."""
    import numpy as np

    root = tmp_path / "runs"
    make_run(root / "none_7")
    run = make_run(root / "huge_lr_7", break_name="huge_lr", lr=lambda s: 10 ** (-s / 10),
                   loss=lambda s: 2.3 * 1.2 ** s, logit_rowsum_mean=lambda s: -(1.5 ** s))
    report = plots.prepare_report(run)

    def pixels(fig):
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba()).copy()

    def both(draw):
        fig = draw()
        fixed = pixels(fig)
        with monkeypatch.context() as patch:
            patch.setattr(plots, "_fixed_axis_layout", lambda ax: None)
            measured = pixels(draw())
        assert fixed.shape == measured.shape and (fixed == measured).all(), \
            f"{int((fixed != measured).any(axis=2).sum())} pixels differ"
        return fig

    fig = both(lambda: plots.report_figure(report.run, report.diagnosis, report.reference,
                                           report.reference_label, report.name))
    scales = {ax.get_gid(): ax.get_yscale() for ax in fig.axes}
    assert {"log", "symlog", "linear"} <= set(scales.values()), scales
    both(lambda: plots.compare_figure(report.run, report.reference, "a", "b"))


def test_grader_figures_are_titled_by_submission_and_run(tmp_path):
    from breaklab.grader.report import make_plots

    work = tmp_path / "work"
    runs = {"broken": str(make_run(work / "broken", loss=lambda s: 2.3 + s)),
            "fixed": str(make_run(work / "fixed"))}
    (tmp_path / "out").mkdir()
    made = make_plots(tmp_path / "out", runs, "alice_huge_lr_42")
    assert made == {"broken": "broken.png", "fixed": "fixed.png", "compare": "compare.png"}, made
    titles = {k: plots.png_title((tmp_path / "out" / v).read_bytes()) for k, v in made.items()}
    assert titles["broken"].startswith("alice_huge_lr_42: broken run (re-run by the grader)")
    assert titles["fixed"].startswith("alice_huge_lr_42: fixed run")
    assert titles["compare"] == "broken (thin line) vs fixed (wide band)"
    assert not any("-plot" in t for t in titles.values())


def test_compare_learning_rate_on_a_log_axis_and_fractions_as_percentages(tmp_path):
    a = make_run(tmp_path / "huge_lr_7", lr=lambda s: 10.0, dead_unit_frac=lambda s: 1.0)
    b = make_run(tmp_path / "none_7")
    fig = plots.compare_figure(load_run(a), load_run(b), "huge_lr_7", "none_7")
    axes = axes_by_key(fig)
    assert axes["lr"].get_yscale() == "log"
    assert all(ax.get_xlim()[0] == 0 for ax in axes.values())
    result = CliRunner().invoke(cli, ["compare", str(a), str(b), "--out", str(tmp_path / "cmp.png")])
    assert result.exit_code == 0, result.output
    dead = next(ln for ln in result.output.splitlines() if ln.startswith("dead units at the end"))
    assert dead.split()[-2:] == ["100.0%", "0.0%"]
    acc = next(ln for ln in result.output.splitlines() if ln.startswith("test accuracy"))
    assert acc.split()[-2:] == ["90.0%", "90.0%"]


def test_compare_needs_two_runs(tmp_path):
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "missing"), str(tmp_path)])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_plot_reference_options_contradict(tmp_path):
    run = make_run(tmp_path / "x_7")
    result = CliRunner().invoke(cli, ["plot", str(run), "--reference", str(run), "--no-reference"])
    assert result.exit_code == 2 and "contradict" in result.output


# ============================================================================
# Every entry of the catalogue, trained next to a clean run of the same seed
# ============================================================================

# The panel of report.png that shows each bug's symptom (the catalogue's `metric` where a panel
# draws it; "train_acc" is the training-accuracy curve of the accuracy panel). Every bug needs
# one: a new entry makes test_every_bug_has_a_symptom_panel fail until it is given its panel.
SYMPTOM_PANEL = {
    "label_permute": "test_acc", "huge_lr": "loss", "missing_zero_grad": "grad_norm", "loss_sum": "loss",
    "amp_no_scaling": "scattered_zero_frac", "double_softmax": "logit_rowsum_mean",
    "eval_mode": "bn_running_var_mean",
    "no_shuffle": "train_acc", "raw_test_inputs": "test_loss", "test_leak": "test_loss",
    "nan_inputs": "steps_without_update", "label_shift": "test_acc",
    "nll_on_logits": "loss",               # below 0 and falling: a symmetric log axis
    "mse_onehot": "act_last_var",          # the outputs stay small (the catalogue: "never pass 1.9-2.3")
    "acc_broadcast": "train_acc",          # above 100%
    "softmax_over_batch": "loss", "loss_all_pairs": "loss", "clip_before_unscale": "grad_norm",
    "fp16_overflow": "steps_without_update", "log_of_softmax_amp": "steps_without_update",
    "tiny_lr": "update_ratio", "scheduler_not_stepped": "lr",
    "zero_init": "act_first_var",          # every hidden unit 0 for every input: variance 0
    "frozen_layer": "first_layer_grad", "layer_not_in_optimizer": "first_layer_grad",
    "loss_kept": "loss_graphs_alive", "eval_with_grad": "test_autograd_mb",
    "resume_without_optimizer_state": "update_ratio", "resume_without_rng_state": "loss_vs_clean",
}
# Entries whose change acts from the second epoch on (the checkpoint entries restart after the
# first): they train two epochs, next to a clean run of two epochs.
FROM_SECOND_EPOCH = {"resume_without_optimizer_state", "resume_without_rng_state", "same_order_every_epoch",
                     "train_mode_not_restored"}
CONTROLS = sorted(e.name for e in entries() if e.control)
# resume_without_optimizer_state's symptom is one step: the first after the restart moves the
# weights 0.04x as much as the clean run's (a dip of 0.29 of the step-size panel at seed 1); the
# momentum builds up again within a few steps.
STEPS_AFTER_RESTART = 1


def epochs_of(name: str) -> int:
    return 2 if name in FROM_SECOND_EPOCH else 1


@pytest.fixture(scope="module")
def catalogue_runs(tmp_path_factory):
    """Every entry trained in-process (one epoch, two where the change acts from the second),
    each beside a clean run of the same seed and epochs: runs_1/none_1, runs_1/NAME_1, ... The
    runs write no figure: the tests draw it with the function that writes report.png."""
    from breaklab.breaks import BREAK_NAMES
    from breaklab.run_summary import train_and_summarize
    from breaklab.trainer import Config

    root = tmp_path_factory.mktemp("catalogue")
    for epochs in (1, 2):
        names = [n for n in BREAK_NAMES if epochs_of(n) == epochs]
        for name in ["none", *names]:
            out = root / f"runs_{epochs}" / f"{name}_{SEED}"
            train_and_summarize(Config(break_name=name, seed=SEED, epochs=epochs, out=str(out), quiet=True),
                                figure=False)
    return lambda name: root / f"runs_{epochs_of(name)}" / f"{name}_{SEED}"


@pytest.fixture(scope="module")
def trained(catalogue_runs):
    """The folder of the one-epoch runs (none_1, huge_lr_1, ...)."""
    return catalogue_runs("none").parent


def drawn(run, key: str) -> list[float]:
    """What a panel should draw for a run, computed here from its records."""
    def number(v):
        return math.nan if v is None else float(v)

    per_epoch = {"test_acc": "test_acc", "train_acc": "train_acc", "test_loss": "test_loss"}
    if key in per_epoch:
        return [number(e[per_epoch[key]]) for e in run.epochs]
    if key == "test_autograd_mb":
        return [e["test_autograd_bytes"] / 1e6 for e in run.epochs]
    if key == "scattered_zero_frac":  # outside whole zero rows (float16 underflow, not dead units)
        return [max(0.0, r["zero_grad_frac_by_layer"]["fc1.weight"] - r["dead_unit_frac"]) for r in run.steps]
    if key == "first_layer_grad":
        return [number(r["grad_norm_by_layer"]["fc1.weight"]) for r in run.steps]
    if key == "steps_without_update":
        flags = [(not r["loss_finite"]) or r["step_skipped"] for r in run.steps]
        return [float(sum(flags[:i + 1])) for i in range(len(flags))]
    return [number(r[key]) for r in run.steps]


def symptom_start(name: str, run) -> int:
    """The first step of the symptom, read from the run's records: where a late symptom begins
    (the first non-finite loss, the first step with no update, the restart), else step 0."""
    if name == "nan_inputs":
        return next(r["step"] for r in run.steps if not r["loss_finite"])
    if name in ("fp16_overflow", "log_of_softmax_amp"):
        return next(r["step"] for r in run.steps if r["step_skipped"] or not r["loss_finite"])
    if name in FROM_SECOND_EPOCH:
        return run.epochs[0]["step"]  # the first step after the restart
    return 0


def test_every_bug_has_a_symptom_panel():
    bugs = {e.name for e in entries() if not e.control}
    assert set(SYMPTOM_PANEL) == bugs and len(bugs) + len(CONTROLS) == len(entries())
    keys = {p.key for p in plots.PANELS} | {"train_acc"}
    assert set(SYMPTOM_PANEL.values()) <= keys


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SYMPTOM_PANEL))
def test_every_break_figure_shows_its_symptom_apart_from_clean(catalogue_runs, name):
    folder = catalogue_runs(name)
    report, fig = figure_of(folder)
    assert report.reference_path == folder.parent / f"none_{SEED}"
    key = SYMPTOM_PANEL[name]
    panel, run_gid, ref_gid = (("test_acc", "run-train", "reference-train") if key == "train_acc"
                               else (key, "run", "reference"))
    ax = axes_by_key(fig)[panel]
    run_line = line(ax, run_gid)
    start = symptom_start(name, report.run)
    if key == "loss_vs_clean":
        # No clean curve to draw (the clean run against itself is 0): the run's curve is blank
        # (equal losses) up to the restart and drawn at every step after it, on a log axis.
        x, y = run_line.get_xdata(), ydata(run_line)
        assert ax.get_yscale() == "log"
        assert all(math.isnan(v) for s, v in zip(x, y) if s < start), name
        after = [v for s, v in zip(x, y) if s >= start]
        assert after and sum(v > 0 for v in after) >= 0.9 * len(after), name
        return
    ref_line = line(ax, ref_gid)
    assert same(ydata(run_line), drawn(report.run, key))  # the measured values, not a picture of them
    shown = ydata(ref_line)
    assert shown and same(shown, drawn(report.reference, key)[:len(shown)])  # the clean run's
    per_epoch = panel in {p.key for p in plots.PANELS if p.per_epoch}
    pairs_to = start + STEPS_AFTER_RESTART if name == "resume_without_optimizer_state" else math.inf
    apart = [p for p in plots.paired_points(ax, run_line, ref_line, per_epoch) if start <= p[0] < pairs_to]
    gaps = plots.vertical_gaps(ax, apart)
    assert gaps.size, f"{name}: no step where both curves are drawn"
    gap = float(sorted(gaps)[len(gaps) // 2])
    assert gap >= APART, (f"{name}: {key} only {gap:.2f} of the panel apart from the clean run "
                          f"from step {start} on ({ax.get_yscale()} axis)")


@pytest.mark.slow
@pytest.mark.parametrize("name", CONTROLS)
def test_control_figures_claim_no_symptom_and_end_like_the_clean_run(catalogue_runs, name):
    """A control's figure marks no symptom step and its accuracy curves (test and training) lie
    on the clean run's: what the catalogue claims of a control, no accuracy harm. Other panels
    may differ: that is the change itself (a 4x loss, a learning rate without warmup), drawn as
    measured; after one epoch the test loss of accumulation_not_divided, for one, is 0.20 of its
    panel from the clean run's at seed 0."""
    report, fig = figure_of(catalogue_runs(name))
    assert report.reference is not None and report.diagnosis.onset_step is None
    assert not any(ln.get_gid() == "onset" for ax in fig.axes for ln in ax.get_lines())
    assert not any("symptom" in t.get_text() for t in fig.texts)
    ax = axes_by_key(fig)["test_acc"]
    for run_gid, ref_gid in (("run", "reference"), ("run-train", "reference-train")):
        gap = median_gap(ax, line(ax, run_gid), line(ax, ref_gid), by_order=True)
        assert gap <= CLOSE, f"{name}: {run_gid} accuracy {gap:.2f} of the panel from the clean run's"


@pytest.mark.slow
def test_report_png_of_a_catalogue_run_is_byte_reproducible(catalogue_runs, tmp_path):
    """Two figures with every kind of panel in use: a run with non-finite losses and a resumed one
    (whose loss-difference panel is blank up to the restart)."""
    for name in ("nan_inputs", "resume_without_rng_state"):
        first = plots.write_report(catalogue_runs(name), tmp_path / f"{name}_a.png").read_bytes()
        again = plots.write_report(catalogue_runs(name), tmp_path / f"{name}_b.png").read_bytes()
        assert first == again and png_size(first) == FIGURE_SIZE, name


@pytest.mark.slow
def test_huge_lr_learning_rate_panel_is_log_and_apart(trained):
    _, fig = figure_of(trained / f"huge_lr_{SEED}")
    ax = axes_by_key(fig)["lr"]
    assert ax.get_yscale() == "log"
    assert median_gap(ax, line(ax, "run"), line(ax, "reference")) >= APART


@pytest.mark.slow
def test_the_symptom_step_is_marked(trained):
    run = load_run(trained / f"huge_lr_{SEED}")
    dx = diagnose(run)
    assert dx.onset_step is not None and dx.onset_step < 10
    unmarked = copy.copy(dx)
    unmarked.onset_step = None
    assert plots.report_png(run, dx) != plots.report_png(run, unmarked)
    assert "huge_lr" not in dx.onset  # the figure describes the symptom, never names the cause
    fig = plots.report_figure(run, dx)
    assert all(line(ax, "onset").get_xdata()[0] == dx.onset_step for ax in fig.axes if ax.get_gid())


@pytest.mark.slow
def test_non_finite_values_leave_gaps_not_errors(trained):
    run = load_run(trained / f"huge_lr_{SEED}")
    for r in run.steps[5:15]:
        r["loss"] = None
        r["grad_norm"] = None
    assert png_size(plots.report_png(run, diagnose(run))) == FIGURE_SIZE


@pytest.mark.slow
def test_plot_command_on_a_tarball_with_a_reference(trained, tmp_path, monkeypatch):
    from breaklab.tarballs import read_folder, write_tarball

    tgz = tmp_path / "run_x.tgz"
    write_tarball(tgz, read_folder(trained / f"huge_lr_{SEED}", ["metrics.jsonl", "meta.json"]), "run_x")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["plot", str(tgz), "--reference", str(trained / f"none_{SEED}")])
    assert result.exit_code == 0, result.output
    assert f"in grey:  {trained / f'none_{SEED}'}" in result.output
    assert plots.png_title((tmp_path / "run_x_report.png").read_bytes()).startswith("run_x: ")


@pytest.mark.slow
def test_compare_overlays_a_broken_and_a_fixed_run(trained, tmp_path):
    out = tmp_path / "cmp.png"
    result = CliRunner().invoke(cli, ["compare", str(trained / f"huge_lr_{SEED}"), str(trained / f"none_{SEED}"),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "doctor's verdict" in result.output and "huge_lr" in result.output and "healthy" in result.output
    assert "test accuracy" in result.output and "%" in result.output
    assert png_size(out.read_bytes()) == (1500, 840)


def test_a_mystery_figure_gives_measurements_only(tmp_path):
    """No marked step, no doctor's reading and no list of the panels that differ from the clean
    run (it would point at the answer): the same lines for every mystery run."""
    root = tmp_path / "runs"
    make_run(root / "none_5", seed=5)
    run = make_run(root / "mystery_5", break_name="mystery", seed=5, bn_running_var_mean=lambda s: 1.0)
    report, fig = figure_of(run)
    assert report.diagnosis is None and report.reference is not None
    text = plots.subtitle(report.run, None, [], None)
    assert text.startswith("loss 2.35 at step 0 -> ") and "apart" not in text and "BatchNorm" not in text
    assert not any(ln.get_gid() == "onset" for ax in fig.axes for ln in ax.get_lines())


def test_layers_of_another_model_are_drawn(tmp_path):
    """A run of another model (the metrics name its own parameter tensors) is drawn with them."""
    names = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias"]
    run = make_run(tmp_path / "cnn_7")
    text = (run / "metrics.jsonl").read_text()
    for old, new in zip(plots.LAYERS, names):
        text = text.replace(f'"{old}"', f'"{new}"')
    (run / "metrics.jsonl").write_text(text)
    _, fig = figure_of(run, reference=False)
    drawn = [ln.get_gid() for ln in axes_by_key(fig)["grad_norm_by_layer"].get_lines()
             if str(ln.get_gid()).startswith("layer:")]
    assert drawn == [f"layer:{n}" for n in names]
